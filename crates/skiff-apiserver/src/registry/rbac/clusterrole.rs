//! ClusterRoles: rules across the cluster, non-resource URLs included; an aggregation
//! rule's selectors gather other ClusterRoles' rules (the aggregation controller's, to come
//! with the authorizer, issue 17).

use serde_json::Value;
use skiff_api::selectors::Selector;
use skiff_api::table::{Printer, arr};
use skiff_api::validation::NameRule;
use skiff_api::{Cause, ResourceType};

use super::validate_rules;
use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("rbac.authorization.k8s.io",
    "v1", "ClusterRole", "clusterroles", "clusterrole", namespaced: false, short: [],
    categories: [], sub: []);

pub struct ClusterRoles;

impl Kind for ClusterRoles {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_rules(obj, false, &mut causes);
        let selectors = arr(obj, &["aggregationRule", "clusterRoleSelectors"]);
        for (i, s) in selectors.iter().enumerate() {
            if let Err(e) = Selector::from_label_selector(s) {
                causes.push(Cause::invalid(
                    format!("aggregationRule.clusterRoleSelectors[{i}]"),
                    s,
                    &e.to_string(),
                ));
            }
        }
        causes
    }
}

/// Upstream prints cluster roles with the default columns (name, creation time).
impl Printer for ClusterRoles {}
