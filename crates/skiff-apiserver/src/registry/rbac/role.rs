//! Roles: rules within one namespace.

use serde_json::Value;
use skiff_api::table::Printer;
use skiff_api::validation::NameRule;
use skiff_api::{Cause, ResourceType};

use super::validate_rules;
use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("rbac.authorization.k8s.io",
    "v1", "Role", "roles", "role", namespaced: true, short: [], categories: [], sub: []);

pub struct Roles;

impl Kind for Roles {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_rules(obj, true, &mut causes);
        causes
    }
}

/// Upstream prints roles with the default columns (name, creation time).
impl Printer for Roles {}
