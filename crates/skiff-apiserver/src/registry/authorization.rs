//! `authorization.k8s.io`: SelfSubjectAccessReviews ("can I?"), answered, never stored —
//! how `kubectl auth can-i` asks whether the caller may do something.
//!
//! Until RBAC is enforced every authenticated caller holds the admin token, so every action
//! is allowed, and the review says so and why. The authorizer (issue 17) answers here.

use serde_json::{Value, json};
use skiff_api::resources::CREATE_ONLY;
use skiff_api::table::Printer;
use skiff_api::{ApiError, Cause, ResourceType};

use crate::registry::{Kind, Pending};
use crate::state::ApiState;

pub static RESOURCE: ResourceType = ResourceType {
    verbs: CREATE_ONLY,
    ..skiff_api::resource_type!("authorization.k8s.io", "v1", "SelfSubjectAccessReview",
        "selfsubjectaccessreviews", "selfsubjectaccessreview", namespaced: false, short: [],
        categories: [], sub: [])
};

pub struct SelfSubjectAccessReviews;

impl Kind for SelfSubjectAccessReviews {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn create_unstored<'a>(
        &'a self,
        _state: &'a ApiState,
        _namespace: Option<&'a str>,
        mut review: Value,
    ) -> Pending<'a, Value> {
        Box::pin(async move {
            let spec = review.get("spec").cloned().unwrap_or(Value::Null);
            let has_attributes = ["resourceAttributes", "nonResourceAttributes"]
                .iter()
                .any(|k| spec.get(k).is_some_and(Value::is_object));
            if !has_attributes {
                return Err(ApiError::invalid(
                    &RESOURCE,
                    "",
                    vec![Cause::required("spec.resourceAttributes")],
                ));
            }
            review["apiVersion"] = RESOURCE.api_version().into();
            review["kind"] = RESOURCE.kind.into();
            review["status"] = json!({
                "allowed": true,
                "reason": "skiff allows every authenticated request until RBAC is enabled",
            });
            Ok(review)
        })
    }
}

impl Printer for SelfSubjectAccessReviews {}
