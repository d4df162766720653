//! ResourceQuotas: limits on what a namespace's objects may request in all. Stored and
//! validated as upstream's; `crate::quota` counts usage into their status and refuses
//! objects that would pass them.

use serde_json::{Map, Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "ResourceQuota",
    "resourcequotas", "resourcequota", namespaced: true, short: ["quota"], categories: [],
    sub: [Status]);

pub struct ResourceQuotas;

impl Kind for ResourceQuotas {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let hard = field(obj, &["spec", "hard"]).and_then(Value::as_object);
        for (name, q) in hard.into_iter().flatten() {
            let valid = q
                .as_str()
                .and_then(skiff_api::quantity::millis)
                .is_some_and(|m| m >= 0);
            if !valid {
                causes.push(Cause::invalid(
                    format!("spec.hard[{name}]"),
                    q,
                    "must be a non-negative quantity",
                ));
            }
        }
        causes
    }
}

/// `requests.cpu: 0/4, pods: 1/10`: used of hard, for the keys on one side of the quota.
fn usage(obj: &Value, limits: bool) -> String {
    let empty = Map::new();
    let hard = field(obj, &["status", "hard"])
        .or(field(obj, &["spec", "hard"]))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let used = field(obj, &["status", "used"]).and_then(Value::as_object);
    let mut keys: Vec<&String> = hard
        .keys()
        .filter(|k| k.starts_with("limits.") == limits)
        .collect();
    keys.sort();
    keys.iter()
        .map(|k| {
            let now = used
                .and_then(|u| u.get(*k))
                .and_then(Value::as_str)
                .unwrap_or("0");
            format!("{k}: {now}/{}", hard[*k].as_str().unwrap_or_default())
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Printer for ResourceQuotas {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            AGE,
            Column::new(
                "Request",
                "string",
                0,
                "Request represents a minimum amount of cpu/memory that a container may consume.",
            ),
            Column::new(
                "Limit",
                "string",
                0,
                "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            age_cell(obj, now),
            usage(obj, false).into(),
            usage(obj, true).into(),
        ]
    }
}
