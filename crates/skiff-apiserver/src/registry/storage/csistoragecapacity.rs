//! CSIStorageCapacities: how much a storage class can still provision, and where.

use serde_json::Value;
use skiff_api::object::{field_str, meta_str};
use skiff_api::table::{Column, NAME, Printer, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("storage.k8s.io", "v1",
    "CSIStorageCapacity", "csistoragecapacities", "csistoragecapacity", namespaced: true,
    short: [], categories: [], sub: []);

pub struct CsiStorageCapacities;

impl Kind for CsiStorageCapacities {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if field_str(obj, &["storageClassName"]).is_none_or(str::is_empty) {
            causes.push(Cause::required("storageClassName"));
        }
        causes
    }
}

impl Printer for CsiStorageCapacities {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "StorageClassName",
                "string",
                0,
                "The name of the StorageClass that the reported capacity applies to.",
            ),
            Column::new(
                "Capacity",
                "string",
                0,
                "Capacity is the value reported by the CSI driver in its GetCapacityResponse.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, _now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["storageClassName"])),
            text(Some(field_str(obj, &["capacity"]).unwrap_or("<unset>"))),
        ]
    }
}
