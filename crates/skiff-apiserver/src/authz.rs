//! Authorization: whether a user may do something (upstream's `authorizer.Authorizer`),
//! and what a user may do (its rule resolver). The access reviews answer through it.
//!
//! The policy today is the one skiff has always enforced: every authenticated request is
//! allowed. RBAC (issue 17) replaces [`authorize`] and [`rules_for`]; nothing else asks.

use serde_json::{Value, json};

use crate::authn::UserInfo;

/// What is being asked (upstream's `authorizer.Attributes`), as a review states it.
#[derive(Debug, Default)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// Set for a non-resource request (`/healthz`).
    pub path: Option<String>,
}

impl Attributes {
    /// From a review's `resourceAttributes` or `nonResourceAttributes`.
    pub fn from_review_spec(spec: &Value) -> Attributes {
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_string();
        if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
            return Attributes {
                verb: text(r, "verb"),
                group: text(r, "group"),
                resource: text(r, "resource"),
                subresource: text(r, "subresource"),
                namespace: text(r, "namespace"),
                name: text(r, "name"),
                path: None,
            };
        }
        let n = &spec["nonResourceAttributes"];
        Attributes {
            verb: text(n, "verb"),
            path: Some(text(n, "path")),
            ..Attributes::default()
        }
    }
}

/// An authorizer's answer.
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

impl Decision {
    /// A review's `status`.
    pub fn to_status(&self) -> Value {
        json!({"allowed": self.allowed, "reason": self.reason})
    }
}

/// Whether `user` may do what `attributes` says.
pub fn authorize(user: &UserInfo, attributes: &Attributes) -> Decision {
    let authenticated = user.groups.iter().any(|g| g == "system:authenticated");
    let a = attributes;
    tracing::debug!(
        user = %user.username, verb = %a.verb, group = %a.group, resource = %a.resource,
        subresource = %a.subresource, namespace = %a.namespace, name = %a.name, path = ?a.path,
        allowed = authenticated, "authorization"
    );
    Decision {
        allowed: authenticated,
        reason: if authenticated {
            "skiff allows every authenticated request until RBAC is enabled".into()
        } else {
            "the request is not authenticated".into()
        },
    }
}

/// What `user` may do in `namespace` (a SelfSubjectRulesReview's status).
pub fn rules_for(user: &UserInfo, _namespace: &str) -> Value {
    let authenticated = user.groups.iter().any(|g| g == "system:authenticated");
    if !authenticated {
        return json!({"resourceRules": [], "nonResourceRules": [], "incomplete": false});
    }
    json!({
        "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
        "incomplete": false,
    })
}
