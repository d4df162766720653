//! Namespaces: their lifecycle (Active, then Terminating until the namespace controller has
//! emptied them and cleared `spec.finalizers` through `namespaces/finalize`).

use serde_json::{Value, json};
use skiff_api::ResourceType;
use skiff_api::object::{field_str, meta_str, set_field};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use skiff_api::validation::NameRule;
use time::OffsetDateTime;

use crate::registry::{Kind, set_default};
use crate::state::ApiState;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "Namespace",
    "namespaces", "namespace", namespaced: false, short: ["ns"], categories: [],
    sub: [Finalize, Status]);

pub struct Namespaces;

impl Kind for Namespaces {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn default(&self, obj: &mut Value) {
        set_default(obj, "spec", "finalizers", json!(["kubernetes"]));
        set_default(obj, "status", "phase", json!("Active"));
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.phase"]
    }

    /// Terminating from the delete on; new content is refused from then (the lifecycle
    /// admission reads this server's note before its cache has the change).
    fn deleting(&self, state: &ApiState, obj: &mut Value) {
        if let Some(name) = meta_str(obj, "name") {
            state.namespace_deletions.note(name);
        }
        set_field(obj, &["status", "phase"], "Terminating".into());
    }
}

impl Printer for Namespaces {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Status", "string", 0, "The status of the namespace"),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            text(Some(
                field_str(obj, &["status", "phase"]).unwrap_or("Active"),
            )),
            age_cell(obj, now),
        ]
    }
}
