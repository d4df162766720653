//! LimitRanges: per-container defaults and bounds in a namespace. Stored and validated;
//! applying them to new pods (upstream's LimitRanger admission) comes later in issue 15,
//! and every write says so.

use serde_json::Value;
use skiff_api::table::{Printer, arr};
use skiff_api::{Cause, ResourceType};

use crate::registry::{Kind, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "LimitRange",
    "limitranges", "limitrange", namespaced: true, short: ["limits"], categories: [], sub: []);

pub struct LimitRanges;

impl Kind for LimitRanges {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let types = ["Pod", "Container", "PersistentVolumeClaim"];
        for (i, item) in arr(obj, &["spec", "limits"]).iter().enumerate() {
            let ty = item.get("type").cloned().unwrap_or(Value::Null);
            if !ty.as_str().is_some_and(|t| types.contains(&t)) {
                causes.push(Cause::not_supported(
                    format!("spec.limits[{i}].type"),
                    &ty,
                    &types,
                ));
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "LimitRange",
            "skiff does not apply limit ranges to new pods yet",
        )
    }
}

/// Upstream prints limit ranges with the default columns (name, creation time).
impl Printer for LimitRanges {}
