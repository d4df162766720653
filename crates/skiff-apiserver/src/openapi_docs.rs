//! The OpenAPI documents of one set of served kinds (`/openapi/v3/<group version>` and
//! `/openapi/v2`), rendered once per set: each CustomResourceDefinition change makes a new
//! set (`registry::Served`), whose documents are rendered when first asked for.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use crate::registry::Kind;

/// The OpenAPI v3 documents (key, body, hash) per group version, and the v2 document.
pub struct OpenApiDocs {
    pub docs: Vec<(String, String, String)>,
    /// `/openapi/v2`, rendered as JSON and as protobuf.
    pub v2: String,
    pub v2_protobuf: bytes::Bytes,
}

impl OpenApiDocs {
    pub fn build(kinds: &[Arc<dyn Kind>]) -> OpenApiDocs {
        let types: Vec<&skiff_api::ResourceType> = kinds.iter().map(|k| k.resource()).collect();
        // A custom kind's schema is its definition's; built-in kinds have none here.
        let custom = |rt: &skiff_api::ResourceType| {
            kinds
                .iter()
                .find(|k| std::ptr::eq(k.resource(), rt))
                .and_then(|k| k.openapi_schema())
        };
        let docs = skiff_api::openapi::group_version_keys(&types)
            .into_iter()
            .filter_map(|key| {
                let parts: Vec<&str> = key.split('/').collect();
                let (group, version) = match parts.as_slice() {
                    ["api", v] => ("", *v),
                    ["apis", g, v] => (*g, *v),
                    _ => return None,
                };
                let doc = skiff_api::openapi::group_version_document(
                    &types,
                    group,
                    version,
                    skiff_api::GIT_VERSION,
                    &custom,
                )?;
                let body = doc.to_string();
                // A stable content hash: clients cache documents by it.
                let mut h = std::hash::DefaultHasher::new();
                body.hash(&mut h);
                Some((key, body, format!("{:016X}", h.finish())))
            })
            .collect();
        let swagger = skiff_api::openapi::swagger_document(&types, skiff_api::GIT_VERSION, &custom);
        OpenApiDocs {
            docs,
            v2: swagger.to_string(),
            v2_protobuf: skiff_api::openapi_v2_protobuf::encode(&swagger).into(),
        }
    }
}
