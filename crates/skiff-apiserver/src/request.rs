//! What a resource request asks for, read from its path and method (upstream's
//! `RequestInfoFactory`): the resource type, namespace, name, subresource and verb.

use std::sync::Arc;

use axum::http::Method;
use skiff_api::{ApiError, ResourceType, Subresource};

use crate::registry::{Kind, Registry};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

/// A parsed resource request.
pub struct ResourceRequest {
    /// The kind asked for, looked up once.
    pub kind: Arc<dyn Kind>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
    pub verb: Verb,
    /// What follows `proxy/` in a proxy request (`""` for `…/proxy` and `…/proxy/`).
    pub subpath: Option<String>,
}

impl std::fmt::Debug for ResourceRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResourceRequest")
            .field("resource", &self.rt().group_resource())
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("subresource", &self.subresource)
            .field("verb", &self.verb)
            .finish()
    }
}

impl ResourceRequest {
    /// The facts of the kind asked for.
    pub fn rt(&self) -> &ResourceType {
        self.kind.resource()
    }

    /// The object's name, empty for requests on a collection.
    pub fn name_or_empty(&self) -> &str {
        self.name.as_deref().unwrap_or_default()
    }
}

/// Namespace subresources that stay with the namespace instead of starting a new resource.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

/// Parses `/api/v1/...` and `/apis/<group>/<version>/...` resource paths. `watch` is the
/// `watch=true` query flag. Paths that name no resource answer 404; a known resource with an
/// unsupported method answers 405.
pub fn parse(
    registry: &Registry,
    method: &Method,
    path: &str,
    watch: bool,
) -> Result<ResourceRequest, ApiError> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, mut rest) = match parts.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_such_path()),
    };
    let mut watch = watch;
    if rest.first() == Some(&"watch") {
        watch = true;
        rest = &rest[1..];
    }
    let mut namespace = None;
    if rest.first() == Some(&"namespaces") && rest.len() > 1 {
        namespace = Some(rest[1].to_string());
        if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
            rest = &rest[2..];
        }
    }
    let (plural, name, sub, subpath) = match rest {
        [plural] => (*plural, None, None, None),
        [plural, name] => (*plural, Some(*name), None, None),
        [plural, name, sub] => (*plural, Some(*name), Some(*sub), None),
        // A proxy request's own path follows, kept as it was sent (a trailing slash too).
        [plural, name, "proxy", ..] => {
            let marker = format!("/{name}/proxy/");
            let subpath = path.find(&marker).map_or("", |i| &path[i + marker.len()..]);
            (
                *plural,
                Some(*name),
                Some("proxy"),
                Some(subpath.to_string()),
            )
        }
        _ => return Err(ApiError::no_such_path()),
    };
    let kind = registry
        .lookup(group, version, plural)
        .ok_or_else(ApiError::no_such_path)?;
    let rt = kind.resource();
    // `/api/v1/namespaces/x` names the namespace x itself, not a namespace of it.
    let namespace = if rt.namespaced { namespace } else { None };
    let subresource = match sub {
        None => None,
        Some(s) => match Subresource::parse(s) {
            Some(s) if rt.has_subresource(s) => Some(s),
            _ => return Err(ApiError::no_such_path()),
        },
    };
    let name = name.map(str::to_string);
    let verb = match (method, name.is_some()) {
        // A proxy request is any method; authorization sees upstream's verbs for them.
        _ if subresource == Some(Subresource::Proxy) => match *method {
            Method::POST => Verb::Create,
            Method::PUT => Verb::Update,
            Method::PATCH => Verb::Patch,
            Method::DELETE => Verb::Delete,
            _ => Verb::Get,
        },
        (&Method::GET, _) if watch => Verb::Watch,
        (&Method::GET, true) => Verb::Get,
        (&Method::GET, false) => Verb::List,
        (&Method::POST, _) => Verb::Create,
        (&Method::PUT, true) => Verb::Update,
        (&Method::PATCH, true) => Verb::Patch,
        (&Method::DELETE, true) => Verb::Delete,
        (&Method::DELETE, false) => Verb::DeleteCollection,
        _ => return Err(ApiError::method_not_supported(rt, method.as_str())),
    };
    Ok(ResourceRequest {
        kind: kind.clone(),
        namespace,
        name,
        subresource,
        verb,
        subpath: subpath.or_else(|| (subresource == Some(Subresource::Proxy)).then(String::new)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: &Method, path: &str, watch: bool) -> Result<ResourceRequest, ApiError> {
        super::parse(&Registry::builtin(), method, path, watch)
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let r = parse(&Method::GET, "/api/v1/namespaces/default/pods/web", false).unwrap();
        assert_eq!(r.rt().plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.verb, Verb::Get);

        let r = parse(&Method::GET, "/api/v1/namespaces/kube-system", false).unwrap();
        assert_eq!(r.rt().plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        assert_eq!(r.namespace, None);

        let r = parse(&Method::PUT, "/api/v1/namespaces/x/status", false).unwrap();
        assert_eq!(r.subresource, Some(Subresource::Status));

        let r = parse(&Method::GET, "/apis/apps/v1/deployments", true).unwrap();
        assert_eq!(r.verb, Verb::Watch);
        let r = parse(&Method::GET, "/api/v1/watch/namespaces/a/pods", false).unwrap();
        assert_eq!(r.verb, Verb::Watch);
        let r = parse(
            &Method::PATCH,
            "/apis/apps/v1/namespaces/a/deployments/d/scale",
            false,
        )
        .unwrap();
        assert_eq!(r.subresource, Some(Subresource::Scale));
    }

    #[test]
    fn unknown_paths_are_404_and_bad_methods_405() {
        assert_eq!(
            parse(&Method::GET, "/api/v1/widgets", false)
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(
            parse(&Method::GET, "/apis/apps/v2/deployments", false)
                .unwrap_err()
                .code,
            404
        );
        assert_eq!(
            parse(
                &Method::GET,
                "/api/v1/namespaces/a/configmaps/x/scale",
                false
            )
            .unwrap_err()
            .code,
            404
        );
        assert_eq!(
            parse(&Method::PUT, "/api/v1/namespaces/a/pods", false)
                .unwrap_err()
                .code,
            405
        );
    }
}
