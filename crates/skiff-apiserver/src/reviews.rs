//! Review resources: computed answers, never stored. `SelfSubjectAccessReview` is how
//! `kubectl auth can-i` asks whether the caller may do something.
//!
//! Until RBAC lands every authenticated caller holds the admin token, so every action is
//! allowed, and the review says so and why. The authorizer RBAC brings answers here.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::{ApiError, Cause, ResourceType};

use crate::negotiate;
use crate::negotiate::respond;

pub fn create(rt: &ResourceType, headers: &HeaderMap, body: &[u8]) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, negotiate::Conversions::None)?;
    let mut review = negotiate::decode_body(headers, body)?;
    let spec = review.get("spec").cloned().unwrap_or(Value::Null);
    let has_attributes = ["resourceAttributes", "nonResourceAttributes"]
        .iter()
        .any(|k| spec.get(k).is_some_and(Value::is_object));
    if !has_attributes {
        return Err(ApiError::invalid(
            rt,
            "",
            vec![Cause::required("spec.resourceAttributes")],
        ));
    }
    review["apiVersion"] = rt.api_version().into();
    review["kind"] = rt.kind.into();
    review["status"] = json!({
        "allowed": true,
        "reason": "skiff allows every authenticated request until RBAC is enabled",
    });
    Ok(respond(StatusCode::CREATED, &review, output))
}
