//! `coordination.k8s.io`: Leases (node heartbeats, leader election).

use serde_json::Value;
use skiff_api::ResourceType;
use skiff_api::object::{field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("coordination.k8s.io", "v1",
    "Lease", "leases", "lease", namespaced: true, short: [], categories: [], sub: []);

pub struct Leases;

impl Kind for Leases {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }
}

impl Printer for Leases {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Holder", "string", 0, "The holder of the lease"),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["spec", "holderIdentity"])),
            age_cell(obj, now),
        ]
    }
}
