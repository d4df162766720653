//! `authorization.k8s.io/v1`: the access reviews, answered by the authorizer (`authz.rs`)
//! and never stored — SelfSubjectAccessReview (`kubectl auth can-i`), SubjectAccessReview
//! and LocalSubjectAccessReview (may this user…?, as webhooks and controllers ask), and
//! SelfSubjectRulesReview (`kubectl auth can-i --list`).

use serde_json::Value;
use skiff_api::object::meta_str;
use skiff_api::resources::CREATE_ONLY;
use skiff_api::table::Printer;
use skiff_api::{ApiError, Cause, ResourceType};

use crate::authn::UserInfo;
use crate::authz::{self, Attributes};
use crate::registry::{Kind, Pending, answered};
use crate::state::ApiState;

macro_rules! review_type {
    ($kind:literal, $plural:literal, $singular:literal, namespaced: $ns:literal) => {
        ResourceType {
            verbs: CREATE_ONLY,
            ..skiff_api::resource_type!("authorization.k8s.io", "v1", $kind, $plural, $singular,
                namespaced: $ns, short: [], categories: [], sub: [])
        }
    };
}

pub static RESOURCE: ResourceType = review_type!("SelfSubjectAccessReview",
    "selfsubjectaccessreviews", "selfsubjectaccessreview", namespaced: false);
pub static SUBJECT: ResourceType = review_type!("SubjectAccessReview",
    "subjectaccessreviews", "subjectaccessreview", namespaced: false);
pub static LOCAL_SUBJECT: ResourceType = review_type!("LocalSubjectAccessReview",
    "localsubjectaccessreviews", "localsubjectaccessreview", namespaced: true);
pub static SELF_RULES: ResourceType = review_type!("SelfSubjectRulesReview",
    "selfsubjectrulesreviews", "selfsubjectrulesreview", namespaced: false);

/// Which access review a kind is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Review {
    SelfSubject,
    Subject,
    LocalSubject,
}

/// An access review kind: the caller's own, or any user's (cluster-wide or in a namespace).
pub struct AccessReviews(Review);

pub const SELF_SUBJECT_ACCESS_REVIEWS: AccessReviews = AccessReviews(Review::SelfSubject);
pub const SUBJECT_ACCESS_REVIEWS: AccessReviews = AccessReviews(Review::Subject);
pub const LOCAL_SUBJECT_ACCESS_REVIEWS: AccessReviews = AccessReviews(Review::LocalSubject);

/// The user a SubjectAccessReview asks about.
fn subject(spec: &Value) -> UserInfo {
    UserInfo {
        username: spec["user"].as_str().unwrap_or_default().to_string(),
        uid: spec["uid"].as_str().unwrap_or_default().to_string(),
        groups: skiff_api::object::string_list(spec.get("groups")),
        extra: spec["extra"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), skiff_api::object::string_list(Some(v))))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl AccessReviews {
    fn validate(&self, review: &Value, namespace: Option<&str>) -> Vec<Cause> {
        let spec = &review["spec"];
        let has = |k: &str| spec.get(k).is_some_and(Value::is_object);
        let mut causes = Vec::new();
        match (has("resourceAttributes"), has("nonResourceAttributes")) {
            (false, false) => causes.push(Cause::required_because(
                "spec.resourceAttributes",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )),
            (true, true) => causes.push(Cause::invalid(
                "spec.nonResourceAttributes",
                &spec["nonResourceAttributes"],
                "cannot be specified in combination with resourceAttributes",
            )),
            _ => {}
        }
        if self.0 != Review::SelfSubject {
            let user = spec["user"].as_str().unwrap_or_default();
            if user.is_empty() && spec["groups"].as_array().is_none_or(Vec::is_empty) {
                causes.push(Cause::invalid(
                    "spec.user",
                    &user.into(),
                    "at least one of user or group must be specified",
                ));
            }
        }
        if self.0 == Review::LocalSubject {
            if has("nonResourceAttributes") {
                causes.push(Cause::invalid(
                    "spec.nonResourceAttributes",
                    &spec["nonResourceAttributes"],
                    "disallowed on this kind of request",
                ));
            }
            let asked = spec["resourceAttributes"]["namespace"]
                .as_str()
                .unwrap_or_default();
            let ns = namespace.unwrap_or_default();
            if has("resourceAttributes") && asked != ns {
                causes.push(Cause::invalid(
                    "spec.resourceAttributes.namespace",
                    &asked.into(),
                    "must match metadata.namespace",
                ));
            }
        }
        causes
    }
}

impl Kind for AccessReviews {
    fn resource(&self) -> &ResourceType {
        match self.0 {
            Review::SelfSubject => &RESOURCE,
            Review::Subject => &SUBJECT,
            Review::LocalSubject => &LOCAL_SUBJECT,
        }
    }

    fn create_unstored<'a>(
        &'a self,
        _state: &'a ApiState,
        user: &'a UserInfo,
        namespace: Option<&'a str>,
        mut review: Value,
    ) -> Pending<'a, Value> {
        Box::pin(async move {
            let rt = self.resource();
            if self.0 == Review::LocalSubject && review["metadata"]["namespace"].is_null() {
                review["metadata"]["namespace"] = namespace.unwrap_or_default().into();
            }
            let causes = self.validate(&review, namespace);
            if !causes.is_empty() {
                let name = meta_str(&review, "name").unwrap_or_default().to_string();
                return Err(ApiError::invalid(rt, &name, causes));
            }
            let asker = match self.0 {
                Review::SelfSubject => user.clone(),
                _ => subject(&review["spec"]),
            };
            let decision = authz::authorize(&asker, &Attributes::from_review_spec(&review["spec"]));
            Ok(answered(review, rt, decision.to_status()))
        })
    }
}

impl Printer for AccessReviews {}

/// SelfSubjectRulesReview: what the caller may do in a namespace.
pub struct SelfSubjectRulesReviews;

impl Kind for SelfSubjectRulesReviews {
    fn resource(&self) -> &ResourceType {
        &SELF_RULES
    }

    fn create_unstored<'a>(
        &'a self,
        _state: &'a ApiState,
        user: &'a UserInfo,
        _namespace: Option<&'a str>,
        review: Value,
    ) -> Pending<'a, Value> {
        Box::pin(async move {
            let ns = review["spec"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            Ok(answered(review, &SELF_RULES, authz::rules_for(user, &ns)))
        })
    }
}

impl Printer for SelfSubjectRulesReviews {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reviews_refuse_what_upstream_refuses() {
        let no_attributes = json!({"spec": {"user": "jane"}});
        assert_eq!(
            SUBJECT_ACCESS_REVIEWS.validate(&no_attributes, None)[0].message,
            "spec.resourceAttributes: Required value: exactly one of nonResourceAttributes or resourceAttributes must be specified"
        );
        let nobody = json!({"spec": {"resourceAttributes": {"verb": "get", "resource": "pods"}}});
        assert_eq!(
            SUBJECT_ACCESS_REVIEWS.validate(&nobody, None)[0].message,
            "spec.user: Invalid value: \"\": at least one of user or group must be specified"
        );
        assert!(
            SELF_SUBJECT_ACCESS_REVIEWS
                .validate(&nobody, None)
                .is_empty()
        );
        let elsewhere = json!({"spec": {"user": "jane",
            "resourceAttributes": {"verb": "get", "resource": "pods", "namespace": "other"}}});
        assert_eq!(
            LOCAL_SUBJECT_ACCESS_REVIEWS.validate(&elsewhere, Some("mine"))[0].field,
            "spec.resourceAttributes.namespace"
        );
        let s = subject(&json!({"user": "jane", "groups": ["devs"], "extra": {"scopes": ["a"]}}));
        assert_eq!(
            (s.username.as_str(), s.groups.as_slice()),
            ("jane", &["devs".to_string()][..])
        );
        assert_eq!(s.extra["scopes"], ["a"]);
    }
}
