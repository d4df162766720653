//! StorageClasses: how volumes of a class are provisioned.

use serde_json::{Value, json};
use skiff_api::object::{field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("storage.k8s.io", "v1",
    "StorageClass", "storageclasses", "storageclass", namespaced: false, short: ["sc"],
    categories: [], sub: []);

/// What an update may not change.
const IMMUTABLE: [&str; 4] = [
    "provisioner",
    "parameters",
    "reclaimPolicy",
    "volumeBindingMode",
];

pub struct StorageClasses;

impl Kind for StorageClasses {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn default(&self, obj: &mut Value) {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        map.entry("reclaimPolicy").or_insert(json!("Delete"));
        map.entry("volumeBindingMode").or_insert(json!("Immediate"));
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if field_str(obj, &["provisioner"]).is_none_or(str::is_empty) {
            causes.push(Cause::required("provisioner"));
        }
        if let Some(p) = obj.get("reclaimPolicy")
            && !matches!(p.as_str(), Some("Delete" | "Retain"))
        {
            causes.push(Cause::not_supported(
                "reclaimPolicy",
                p,
                &["Delete", "Retain"],
            ));
        }
        if let Some(m) = obj.get("volumeBindingMode")
            && !matches!(m.as_str(), Some("Immediate" | "WaitForFirstConsumer"))
        {
            causes.push(Cause::not_supported(
                "volumeBindingMode",
                m,
                &["Immediate", "WaitForFirstConsumer"],
            ));
        }
        if let Some(old) = old {
            for key in IMMUTABLE {
                if obj.get(key) != old.get(key) {
                    causes.push(Cause::forbidden(
                        key,
                        &format!("updates to {key} are forbidden."),
                    ));
                }
            }
        }
        causes
    }
}

impl Printer for StorageClasses {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Provisioner",
                "string",
                0,
                "provisioner indicates the type of the provisioner.",
            ),
            Column::new(
                "ReclaimPolicy",
                "string",
                0,
                "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class.",
            ),
            Column::new(
                "VolumeBindingMode",
                "string",
                0,
                "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.",
            ),
            Column::new(
                "AllowVolumeExpansion",
                "string",
                0,
                "allowVolumeExpansion shows whether the storage class allow volume expand.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let default_class = obj
            .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
            .and_then(Value::as_str)
            == Some("true");
        let name = meta_str(obj, "name").unwrap_or_default();
        let name = if default_class {
            format!("{name} (default)")
        } else {
            name.to_string()
        };
        let expansion = obj
            .get("allowVolumeExpansion")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        vec![
            name.into(),
            text(field_str(obj, &["provisioner"])),
            text(field_str(obj, &["reclaimPolicy"])),
            text(field_str(obj, &["volumeBindingMode"])),
            expansion.to_string().into(),
            age_cell(obj, now),
        ]
    }
}
