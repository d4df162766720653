//! API errors as Kubernetes `Status` objects, with upstream's codes, reasons and messages.
//!
//! Clients branch on `reason` and `code` (kubectl prints `message`; client-go's
//! `IsNotFound`/`IsConflict`/`IsAlreadyExists` read `reason`), so each constructor here
//! produces exactly what upstream's `k8s.io/apimachinery/pkg/api/errors` would.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// One field-level cause of an `Invalid` (422) error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Upstream's cause type: `FieldValueRequired`, `FieldValueInvalid`, `FieldValueNotSupported`,
    /// `FieldValueDuplicate`, `FieldValueForbidden`, `FieldValueTooLong`, …
    pub reason: &'static str,
    /// The whole message, `<field>: <detail>` as upstream formats it.
    pub message: String,
    /// The field path (`spec.replicas`, `metadata.name`).
    pub field: String,
}

impl Cause {
    pub fn required(field: impl Into<String>) -> Cause {
        let field = field.into();
        Cause {
            reason: "FieldValueRequired",
            message: format!("{field}: Required value"),
            field,
        }
    }

    /// `field: Required value: <detail>`.
    pub fn required_because(field: impl Into<String>, detail: &str) -> Cause {
        let field = field.into();
        Cause {
            reason: "FieldValueRequired",
            message: format!("{field}: Required value: {detail}"),
            field,
        }
    }

    /// `field: Invalid value: <value>: <detail>`.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Cause {
        let field = field.into();
        Cause {
            reason: "FieldValueInvalid",
            message: format!("{field}: Invalid value: {}: {detail}", go_value(value)),
            field,
        }
    }

    /// `field: Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Cause {
        let field = field.into();
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "{field}: Unsupported value: {}: supported values: {}",
                go_value(value),
                list.join(", ")
            ),
            field,
        }
    }

    /// `field: Duplicate value: <value>`.
    pub fn duplicate(field: impl Into<String>, value: &Value) -> Cause {
        let field = field.into();
        Cause {
            reason: "FieldValueDuplicate",
            message: format!("{field}: Duplicate value: {}", go_value(value)),
            field,
        }
    }

    /// `field: Too long: <detail>` (`may not be more than 5 bytes`).
    pub fn too_long(field: impl Into<String>, detail: &str) -> Cause {
        let field = field.into();
        Cause {
            reason: "FieldValueTooLong",
            message: format!("{field}: Too long: {detail}"),
            field,
        }
    }

    /// `field: Too many: <count>: must have at most <max> items`.
    pub fn too_many(field: impl Into<String>, count: usize, max: usize) -> Cause {
        let field = field.into();
        Cause {
            reason: "FieldValueTooMany",
            message: format!("{field}: Too many: {count}: must have at most {max} items"),
            field,
        }
    }

    /// `field: Forbidden: <detail>`.
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Cause {
        let field = field.into();
        Cause {
            reason: "FieldValueForbidden",
            message: format!("{field}: Forbidden: {detail}"),
            field,
        }
    }
}

/// How upstream's field errors print a value: strings quoted, numbers and booleans bare,
/// lists of strings as Go writes them (`[]string{"a", "b"}`).
fn go_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            let quoted: Vec<String> = items.iter().map(go_value).collect();
            format!("[]string{{{}}}", quoted.join(", "))
        }
        other => other.to_string(),
    }
}

/// An error the API answers with: an HTTP code and the `Status` body that goes with it.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    /// `StatusReason`: NotFound, AlreadyExists, Conflict, Invalid, BadRequest, Expired, …
    pub reason: &'static str,
    pub message: String,
    /// Boxed: errors travel in `Result`s everywhere and should stay small.
    pub details: Option<Box<Details>>,
}

/// `Status.details`: what the error is about.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Details {
    pub name: String,
    pub group: String,
    /// The resource (plural) for most errors, the kind for `Invalid`.
    pub kind: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, rt: &ResourceType, name: &str) -> ApiError {
        self.details = Some(Box::new(Details {
            name: name.to_string(),
            group: rt.group.to_string(),
            kind: rt.plural.to_string(),
            ..Details::default()
        }));
        self
    }

    /// 404 `pods "web" not found`.
    pub fn not_found(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", rt.group_resource()),
        )
        .about(rt, name)
    }

    /// 404 for a path that names no resource: `the server could not find the requested
    /// resource`.
    pub fn no_such_path() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    /// 409 `pods "web" already exists`.
    pub fn already_exists(rt: &ResourceType, name: &str) -> ApiError {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", rt.group_resource()),
        )
        .about(rt, name)
    }

    /// 409 for an update against a stale resourceVersion.
    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> ApiError {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                rt.group_resource()
            ),
        )
        .about(rt, name)
    }

    /// The `why` of [`ApiError::conflict`] for optimistic-concurrency failures.
    pub const MODIFIED: &'static str = "the object has been modified; please apply your changes to the latest version and try again";

    /// 422 `Deployment.apps "web" is invalid: [spec.replicas: …, …]`.
    pub fn invalid(rt: &ResourceType, name: &str, causes: Vec<Cause>) -> ApiError {
        let summary = match causes.as_slice() {
            [] => String::new(),
            [one] => one.message.clone(),
            many => format!(
                "[{}]",
                many.iter()
                    .map(|c| c.message.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{} {name:?} is invalid: {summary}", rt.group_kind()),
            details: Some(Box::new(Details {
                name: name.to_string(),
                group: rt.group.to_string(),
                kind: rt.kind.to_string(),
                causes,
                retry_after_seconds: None,
            })),
        }
    }

    /// 400 with upstream's `BadRequest` reason.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    /// 410 for a watch or list from a compacted resourceVersion.
    pub fn expired(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// 415 for a body in a format this endpoint does not take.
    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format ({content_type}) - accepted media types include: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 406 when no representation the client accepts can be produced.
    pub fn not_acceptable(accepted: &[&str]) -> ApiError {
        ApiError::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: {}",
                accepted.join(", ")
            ),
        )
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_supported(rt: &ResourceType, verb: &str) -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            format!(
                "{verb} is not supported on resources of kind {:?}",
                rt.group_resource()
            ),
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    /// 413 for a body over the size limit.
    pub fn too_large(limit_bytes: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit_bytes}"),
        )
    }

    /// 500: something went wrong inside the server. The message says what, so the fix is
    /// findable; it never carries a panic.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// 503 while the datastore is unreachable; clients retry.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(503, "ServiceUnavailable", message);
        e.details = Some(Box::new(Details {
            retry_after_seconds: Some(1),
            ..Details::default()
        }));
        e
    }

    /// The `Status` object (apiVersion v1) for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            let mut details = serde_json::Map::new();
            if !d.name.is_empty() {
                details.insert("name".into(), d.name.clone().into());
            }
            if !d.group.is_empty() {
                details.insert("group".into(), d.group.clone().into());
            }
            if !d.kind.is_empty() {
                details.insert("kind".into(), d.kind.clone().into());
            }
            if !d.causes.is_empty() {
                let causes: Vec<Value> = d
                    .causes
                    .iter()
                    .map(|c| {
                        // A cause's message leaves its field out (upstream's `ErrorBody`):
                        // clients print it after the field.
                        let body = c
                            .message
                            .strip_prefix(c.field.as_str())
                            .and_then(|m| m.strip_prefix(": "))
                            .unwrap_or(&c.message);
                        json!({"reason": c.reason, "message": body, "field": c.field})
                    })
                    .collect();
                details.insert("causes".into(), causes.into());
            }
            if let Some(s) = d.retry_after_seconds {
                details.insert("retryAfterSeconds".into(), s.into());
            }
            status["details"] = Value::Object(details);
        }
        status
    }
}

/// The `Status` a successful delete of a collection or a streaming end answers with.
pub fn success_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// A selector that does not parse is the client's error.
impl From<skiff_apimachinery::labels::SelectorError> for ApiError {
    fn from(e: skiff_apimachinery::labels::SelectorError) -> ApiError {
        ApiError::bad_request(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{DEPLOYMENTS, PODS};

    #[test]
    fn not_found_matches_upstream() {
        let rt = &DEPLOYMENTS;
        let s = ApiError::not_found(rt, "web").to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["kind"], "deployments");
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_every_cause() {
        let rt = &DEPLOYMENTS;
        let one = ApiError::invalid(rt, "web", vec![Cause::required("spec.selector")]);
        assert_eq!(
            one.message,
            "Deployment.apps \"web\" is invalid: spec.selector: Required value"
        );
        let two = ApiError::invalid(
            rt,
            "web",
            vec![
                Cause::required("spec.selector"),
                Cause::invalid(
                    "spec.replicas",
                    &json!(-1),
                    "must be greater than or equal to 0",
                ),
            ],
        );
        assert_eq!(
            two.message,
            "Deployment.apps \"web\" is invalid: [spec.selector: Required value, spec.replicas: Invalid value: -1: must be greater than or equal to 0]"
        );
        assert_eq!(
            two.to_status()["details"]["causes"][1]["field"],
            "spec.replicas"
        );
        assert_eq!(
            two.to_status()["details"]["causes"][1]["message"],
            "Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(two.code, 422);
    }

    #[test]
    fn core_resources_have_no_group_suffix() {
        let rt = &PODS;
        let e = ApiError::conflict(rt, "p", ApiError::MODIFIED);
        assert!(
            e.message
                .starts_with("Operation cannot be fulfilled on pods \"p\": ")
        );
        assert!(e.to_status()["details"].get("group").is_none());
    }
}
