//! ClusterRoleBindings: a ClusterRole granted to subjects across the cluster.

use serde_json::Value;
use skiff_api::table::{Column, Printer};
use skiff_api::validation::NameRule;
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::{
    binding_cells, binding_columns, default_subjects, validate_binding, validate_binding_update,
};
use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("rbac.authorization.k8s.io",
    "v1", "ClusterRoleBinding", "clusterrolebindings", "clusterrolebinding",
    namespaced: false, short: [],
    categories: [], sub: []);

pub struct ClusterRoleBindings;

impl Kind for ClusterRoleBindings {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn default(&self, obj: &mut Value) {
        default_subjects(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_binding(obj, false, &mut causes);
        if let Some(old) = old {
            validate_binding_update(obj, old, &mut causes);
        }
        causes
    }
}

impl Printer for ClusterRoleBindings {
    fn columns(&self) -> Vec<Column> {
        binding_columns()
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        binding_cells(obj, now)
    }
}
