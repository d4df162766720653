//! `rbac.authorization.k8s.io/v1`: Roles and ClusterRoles (what may be done) and their
//! bindings (to whom). Stored, defaulted and validated as upstream's; enforcing them is the
//! authorizer's (issue 17).

use serde_json::Value;
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::validation::{NameRule, dns1123_subdomain_errors, path_segment_errors};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub mod clusterrole;
pub mod clusterrolebinding;
pub mod role;
pub mod rolebinding;

/// The group, as roleRefs and User/Group subjects name it.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// A role's rules (upstream's `ValidatePolicyRule`): verbs always; then either
/// non-resource URLs (cluster roles only, and nothing else) or API groups and resources.
pub(crate) fn validate_rules(obj: &Value, namespaced: bool, causes: &mut Vec<Cause>) {
    for (i, rule) in arr(obj, &["rules"]).iter().enumerate() {
        let at = format!("rules[{i}]");
        let list = |k: &str| rule.get(k).and_then(Value::as_array).map_or(0, Vec::len);
        if list("verbs") == 0 {
            causes.push(Cause::required_because(
                format!("{at}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        if list("nonResourceURLs") > 0 {
            let urls = &rule["nonResourceURLs"];
            if namespaced {
                causes.push(Cause::invalid(
                    format!("{at}.nonResourceURLs"),
                    urls,
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if list("apiGroups") > 0 || list("resources") > 0 || list("resourceNames") > 0 {
                causes.push(Cause::invalid(
                    format!("{at}.nonResourceURLs"),
                    urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if list("apiGroups") == 0 {
            causes.push(Cause::required_because(
                format!("{at}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if list("resources") == 0 {
            causes.push(Cause::required_because(
                format!("{at}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
}

/// A subject's defaults (upstream's `SetDefaults_Subject`): users and groups are this
/// group's, service accounts the core group's.
fn default_subjects(obj: &mut Value) {
    let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) else {
        return;
    };
    for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
        if s.get("apiGroup")
            .and_then(Value::as_str)
            .is_some_and(|g| !g.is_empty())
        {
            continue;
        }
        // A service account's is the core group's, "": which upstream leaves out (omitempty).
        if matches!(
            s.get("kind").and_then(Value::as_str),
            Some("User" | "Group")
        ) {
            s.insert("apiGroup".into(), GROUP.into());
        }
    }
}

/// A binding's roleRef and subjects (upstream's `ValidateRoleBinding` and
/// `ValidateClusterRoleBinding`): a cluster binding refers to a ClusterRole only, and its
/// service account subjects name their namespace.
fn validate_binding(obj: &Value, namespaced: bool, causes: &mut Vec<Cause>) {
    let role_ref = |k: &str| field_str(obj, &["roleRef", k]).unwrap_or_default();
    if role_ref("apiGroup") != GROUP {
        causes.push(Cause::not_supported(
            "roleRef.apiGroup",
            &role_ref("apiGroup").into(),
            &[GROUP],
        ));
    }
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&role_ref("kind")) {
        causes.push(Cause::not_supported(
            "roleRef.kind",
            &role_ref("kind").into(),
            kinds,
        ));
    }
    match role_ref("name") {
        "" => causes.push(Cause::required("roleRef.name")),
        name => {
            for e in path_segment_errors(name) {
                causes.push(Cause::invalid("roleRef.name", &name.into(), &e));
            }
        }
    }
    for (i, s) in arr(obj, &["subjects"]).iter().enumerate() {
        validate_subject(s, namespaced, &format!("subjects[{i}]"), causes);
    }
}

fn validate_subject(s: &Value, namespaced: bool, at: &str, causes: &mut Vec<Cause>) {
    let get = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or_default();
    let name = get("name");
    if name.is_empty() {
        causes.push(Cause::required(format!("{at}.name")));
    }
    match get("kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for e in dns1123_subdomain_errors(name) {
                    causes.push(Cause::invalid(format!("{at}.name"), &name.into(), &e));
                }
            }
            if !get("apiGroup").is_empty() {
                causes.push(Cause::not_supported(
                    format!("{at}.apiGroup"),
                    &get("apiGroup").into(),
                    &[""],
                ));
            }
            if !namespaced && get("namespace").is_empty() {
                causes.push(Cause::required(format!("{at}.namespace")));
            }
        }
        "User" | "Group" => {
            if get("apiGroup") != GROUP {
                causes.push(Cause::not_supported(
                    format!("{at}.apiGroup"),
                    &get("apiGroup").into(),
                    &[GROUP],
                ));
            }
        }
        other => causes.push(Cause::not_supported(
            format!("{at}.kind"),
            &other.into(),
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

/// A binding's roleRef never changes (upstream: delete and recreate the binding).
fn validate_binding_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let role_ref = field(new, &["roleRef"]);
    if role_ref != field(old, &["roleRef"]) {
        causes.push(Cause::invalid(
            "roleRef",
            role_ref.unwrap_or(&Value::Null),
            "cannot change roleRef",
        ));
    }
}

/// The two binding kinds, alike but for their facts and scope: a cluster binding refers
/// to a ClusterRole only, and its service account subjects name their namespace.
pub struct RbacBindings {
    pub(crate) resource: &'static ResourceType,
}

impl Kind for RbacBindings {
    fn resource(&self) -> &ResourceType {
        self.resource
    }

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn default(&self, obj: &mut Value) {
        default_subjects(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_binding(obj, self.resource.namespaced, &mut causes);
        if let Some(old) = old {
            validate_binding_update(obj, old, &mut causes);
        }
        causes
    }
}

/// Both bindings print the role, and (wide) who it binds.
impl Printer for RbacBindings {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Role", "string", 0, "RoleRef is the reference to the role."),
            AGE,
            Column::new("Users", "string", 1, "Users in the binding."),
            Column::new("Groups", "string", 1, "Groups in the binding."),
            Column::new(
                "ServiceAccounts",
                "string",
                1,
                "ServiceAccounts in the binding.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let role = format!(
            "{}/{}",
            field_str(obj, &["roleRef", "kind"]).unwrap_or_default(),
            field_str(obj, &["roleRef", "name"]).unwrap_or_default()
        );
        let of_kind = |kind: &str| -> Value {
            let names: Vec<String> = arr(obj, &["subjects"])
                .iter()
                .filter(|s| field_str(s, &["kind"]) == Some(kind))
                .map(|s| {
                    let name = field_str(s, &["name"]).unwrap_or_default();
                    match field_str(s, &["namespace"]) {
                        Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                        _ => name.to_string(),
                    }
                })
                .collect();
            names.join(", ").into()
        };
        vec![
            text(meta_str(obj, "name")),
            role.into(),
            age_cell(obj, now),
            of_kind("User"),
            of_kind("Group"),
            of_kind("ServiceAccount"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(causes: &[Cause]) -> Vec<&str> {
        causes.iter().map(|c| c.message.as_str()).collect()
    }

    #[test]
    fn rules_need_verbs_and_either_resources_or_urls() {
        let role = json!({"rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]},
            {"resources": ["pods"]},
            {"nonResourceURLs": ["/healthz"], "verbs": ["get"], "resources": ["pods"]},
        ]});
        let mut causes = Vec::new();
        validate_rules(&role, true, &mut causes);
        assert_eq!(
            messages(&causes),
            [
                "rules[1].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[2].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
                "rules[2].nonResourceURLs: Invalid value: []string{\"/healthz\"}: rules cannot apply to both regular resources and non-resource URLs",
            ]
        );
        let mut cluster = Vec::new();
        let urls = json!({"rules": [{"nonResourceURLs": ["/healthz"], "verbs": ["get"]}]});
        validate_rules(&urls, false, &mut cluster);
        assert!(cluster.is_empty(), "{cluster:?}");
    }

    #[test]
    fn bindings_name_a_role_and_known_subjects() {
        let mut b = json!({
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "User", "name": "jane"},
                         {"kind": "ServiceAccount", "name": "robot"},
                         {"kind": "Robot", "name": "x"}],
        });
        default_subjects(&mut b);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        assert!(b["subjects"][1].get("apiGroup").is_none());
        let mut causes = Vec::new();
        validate_binding(&b, true, &mut causes);
        assert_eq!(
            messages(&causes),
            [
                "subjects[2].kind: Unsupported value: \"Robot\": supported values: \"ServiceAccount\", \"User\", \"Group\""
            ]
        );
        let mut cluster = Vec::new();
        validate_binding(&b, false, &mut cluster);
        assert_eq!(
            messages(&cluster)[..2],
            [
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[1].namespace: Required value",
            ]
        );
    }

    #[test]
    fn binding_rows_show_the_role_and_subjects() {
        let b = json!({"metadata": {"name": "read"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "jane"}, {"kind": "Group", "name": "devs"},
                         {"kind": "ServiceAccount", "name": "robot", "namespace": "ci"}]});
        let kind = RbacBindings {
            resource: &rolebinding::RESOURCE,
        };
        let cells = kind.cells(&b, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(cells[1], "ClusterRole/view");
        assert_eq!(
            cells[3..],
            [json!("jane"), json!("devs"), json!("ci/robot")]
        );
    }
}
