//! ConfigMaps: configuration data for pods.

use serde_json::Value;
use skiff_api::ResourceType;
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, len_of, text};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "ConfigMap",
    "configmaps", "configmap", namespaced: true, short: ["cm"], categories: [], sub: []);

pub struct ConfigMaps;

impl Kind for ConfigMaps {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }
}

impl Printer for ConfigMaps {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Data", "string", 0, "Data contains the configuration data."),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(skiff_api::object::meta_str(obj, "name")),
            (len_of(obj, "data") + len_of(obj, "binaryData")).into(),
            age_cell(obj, now),
        ]
    }
}
