//! `scheduling.k8s.io/v1`: PriorityClasses, the priorities pods name. The two system
//! classes exist in every cluster (`bootstrap.rs`); resolving a pod's class into its
//! priority (upstream's Priority admission) comes later in issue 15.

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("scheduling.k8s.io", "v1",
    "PriorityClass", "priorityclasses", "priorityclass", namespaced: false, short: ["pc"],
    categories: [], sub: []);

/// Priorities above this are the system classes' alone.
const HIGHEST_USER_DEFINABLE: i64 = 1_000_000_000;

/// The classes every cluster has: (name, value, description).
pub const SYSTEM_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

pub struct PriorityClasses;

impl Kind for PriorityClasses {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn default(&self, obj: &mut Value) {
        if obj.is_object() && obj.get("preemptionPolicy").is_none() {
            obj["preemptionPolicy"] = json!("PreemptLowerPriority");
        }
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let name = meta_str(obj, "name").unwrap_or_default();
        let value = obj.get("value").and_then(Value::as_i64);
        let system = SYSTEM_CLASSES
            .iter()
            .any(|(n, v, _)| *n == name && Some(*v) == value);
        if name.starts_with("system-") && !system {
            causes.push(Cause::forbidden(
                "metadata.name",
                "priority class names with 'system-' prefix are reserved for system use only. error: not a known system priority class",
            ));
        }
        match value {
            None => causes.push(Cause::required("value")),
            Some(v) if v > HIGHEST_USER_DEFINABLE && !system => causes.push(Cause::forbidden(
                "value",
                &format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE}"
                ),
            )),
            Some(_) => {}
        }
        if let Some(policy) = obj.get("preemptionPolicy")
            && !matches!(policy.as_str(), Some("PreemptLowerPriority" | "Never"))
        {
            causes.push(Cause::not_supported(
                "preemptionPolicy",
                policy,
                &["Never", "PreemptLowerPriority"],
            ));
        }
        if let Some(old) = old {
            for key in ["value", "preemptionPolicy"] {
                if obj.get(key) != old.get(key) {
                    causes.push(Cause::forbidden(key, "may not be changed in an update."));
                }
            }
        }
        causes
    }
}

impl Printer for PriorityClasses {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Value",
                "integer",
                0,
                "value represents the integer value of this priority class.",
            ),
            Column::new(
                "Global-Default",
                "boolean",
                0,
                "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class.",
            ),
            AGE,
            Column::new(
                "PreemptionPolicy",
                "string",
                0,
                "preemptionPolicy is the Policy for preempting pods with lower priority.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            obj.get("value").and_then(Value::as_i64).unwrap_or(0).into(),
            field(obj, &["globalDefault"])
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .into(),
            age_cell(obj, now),
            text(obj.get("preemptionPolicy").and_then(Value::as_str)),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_names_and_values_are_reserved() {
        let mine = json!({"metadata": {"name": "system-mine"}, "value": 5});
        assert!(
            PriorityClasses.validate(&mine, None)[0]
                .message
                .contains("reserved for system use only")
        );
        let high = json!({"metadata": {"name": "urgent"}, "value": 2_000_000_000i64});
        assert_eq!(
            PriorityClasses.validate(&high, None)[0].message,
            "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
        );
        let (name, value, _) = SYSTEM_CLASSES[0];
        let system = json!({"metadata": {"name": name}, "value": value});
        assert!(PriorityClasses.validate(&system, None).is_empty());
    }
}
