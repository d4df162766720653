//! `fieldValidation`: what happens to fields a type does not have. They are always dropped
//! (upstream decodes into Go structs, which have no place for them); `Strict` refuses the
//! request instead, `Warn` (the default) says so in `Warning` headers, `Ignore` stays silent.

use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::Value;
use skiff_api::ApiError;
use skiff_api::schema::prune_unknown_fields;

use crate::query::Query;
use crate::registry::Kind;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Directive {
    Strict,
    Warn,
    Ignore,
}

impl Directive {
    pub fn from_query(query: &Query) -> Result<Directive, ApiError> {
        match query.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(Directive::Warn),
            Some("Strict") => Ok(Directive::Strict),
            Some("Ignore") => Ok(Directive::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of \"Ignore\", \"Warn\", or \"Strict\", not {other:?}"
            ))),
        }
    }

    /// Drops the unknown fields of an object of `kind` and answers the warnings to send
    /// (unknown fields, and the body's `duplicates`), or the error under `Strict`.
    pub fn apply(
        self,
        kind: &dyn Kind,
        obj: &mut Value,
        duplicates: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let unknown = kind.prune_unknown(obj);
        let rt = kind.resource();
        self.judge(rt.version, rt.kind, &unknown, duplicates)
    }

    /// As [`Directive::apply`], for an `autoscaling/v1 Scale` written to a scale
    /// subresource.
    pub fn apply_to_scale(
        self,
        obj: &mut Value,
        duplicates: &[String],
    ) -> Result<Vec<String>, ApiError> {
        let unknown = prune_unknown_fields("autoscaling/v1", "Scale", obj);
        self.judge("v1", "Scale", &unknown, duplicates)
    }

    fn judge(
        self,
        version: &str,
        kind: &str,
        unknown: &[String],
        duplicates: &[String],
    ) -> Result<Vec<String>, ApiError> {
        if (unknown.is_empty() && duplicates.is_empty()) || self == Directive::Ignore {
            return Ok(Vec::new());
        }
        let list: Vec<String> = unknown
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .chain(duplicates.iter().map(|f| format!("duplicate field {f:?}")))
            .collect();
        if self == Directive::Strict {
            return Err(ApiError::bad_request(format!(
                "{kind} in version {version:?} cannot be handled as a {kind}: strict decoding error: {}",
                list.join(", ")
            )));
        }
        Ok(list)
    }
}

/// Adds one `Warning: 299 - "<text>"` header per warning (RFC 7234's warn-code 299, which
/// kubectl prints as `Warning: <text>`).
pub fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{text}\"")) {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}
