//! Secrets: sensitive data for pods, typed (`Opaque` unless said otherwise).

use serde_json::Value;
use skiff_api::ResourceType;
use skiff_api::object::{field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, len_of, text};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "Secret", "secrets",
    "secret", namespaced: true, short: [], categories: [], sub: []);

pub struct Secrets;

impl Kind for Secrets {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn default(&self, obj: &mut Value) {
        if obj.get("type").is_none() {
            obj["type"] = "Opaque".into();
        }
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["type"]
    }
}

impl Printer for Secrets {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Type", "string", 0, "The type of the secret"),
            Column::new("Data", "string", 0, "Data contains the secret data."),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            text(Some(field_str(obj, &["type"]).unwrap_or("Opaque"))),
            len_of(obj, "data").into(),
            age_cell(obj, now),
        ]
    }
}
