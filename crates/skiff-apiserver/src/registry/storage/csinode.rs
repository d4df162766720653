//! CSINodes: the CSI drivers installed on a node.

use serde_json::Value;
use skiff_api::ResourceType;
use skiff_api::object::meta_str;
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("storage.k8s.io", "v1",
    "CSINode", "csinodes", "csinode", namespaced: false, short: [], categories: [], sub: []);

pub struct CsiNodes;

impl Kind for CsiNodes {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }
}

impl Printer for CsiNodes {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Drivers",
                "integer",
                0,
                "Drivers indicates the number of CSI drivers registered on the node",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            arr(obj, &["spec", "drivers"]).len().into(),
            age_cell(obj, now),
        ]
    }
}
