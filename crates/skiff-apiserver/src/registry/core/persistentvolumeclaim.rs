//! PersistentVolumeClaims: a pod's request for storage. Stored, defaulted and validated;
//! binding and provisioning come with the storage controllers (a later issue), and every
//! write says so.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, set_default, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1",
    "PersistentVolumeClaim", "persistentvolumeclaims", "persistentvolumeclaim",
    namespaced: true, short: ["pvc"], categories: [], sub: [Status]);

/// The access modes a volume can offer.
pub(crate) const ACCESS_MODES: [&str; 4] = [
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

pub struct PersistentVolumeClaims;

impl Kind for PersistentVolumeClaims {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn default(&self, obj: &mut Value) {
        set_default(obj, "spec", "volumeMode", json!("Filesystem"));
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_access_modes(obj, &mut causes);
        let storage = field(obj, &["spec", "resources", "requests", "storage"]);
        match storage.and_then(Value::as_str) {
            None => causes.push(Cause::required("spec.resources[storage]")),
            Some(q) if skiff_api::quantity::millis(q).is_none_or(|m| m <= 0) => {
                causes.push(Cause::invalid(
                    "spec.resources[storage]",
                    &q.into(),
                    "must be greater than zero",
                ));
            }
            Some(_) => {}
        }
        if let Some(old) = old
            && field_str(old, &["spec", "volumeName"]).is_some_and(|v| !v.is_empty())
        {
            // A bound claim's spec is fixed but for its requested size.
            let strip = |o: &Value| {
                let mut spec = o.get("spec").cloned().unwrap_or_default();
                if let Some(r) = spec.pointer_mut("/resources/requests") {
                    r.as_object_mut().map(|m| m.remove("storage"));
                }
                spec
            };
            if strip(obj) != strip(old) {
                causes.push(Cause::forbidden(
                    "spec",
                    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
                ));
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "PersistentVolumeClaim",
            "skiff binds and provisions no volumes yet: it stays Pending",
        )
    }
}

/// At least one access mode, each a known one (claims and volumes alike).
pub(crate) fn validate_access_modes(obj: &Value, causes: &mut Vec<Cause>) {
    let modes = arr(obj, &["spec", "accessModes"]);
    if modes.is_empty() {
        causes.push(Cause::required_because(
            "spec.accessModes",
            "at least 1 access mode is required",
        ));
    }
    for m in modes {
        if !m.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
            causes.push(Cause::not_supported("spec.accessModes", m, &ACCESS_MODES));
        }
    }
}

/// ACCESS MODES as kubectl abbreviates them (`RWO,ROX`).
pub(crate) fn access_modes_cell(obj: &Value, path: &[&str]) -> Value {
    let short: Vec<&str> = arr(obj, path)
        .iter()
        .filter_map(Value::as_str)
        .map(|m| match m {
            "ReadWriteOnce" => "RWO",
            "ReadOnlyMany" => "ROX",
            "ReadWriteMany" => "RWX",
            "ReadWriteOncePod" => "RWOP",
            other => other,
        })
        .collect();
    short.join(",").into()
}

impl Printer for PersistentVolumeClaims {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Status",
                "string",
                0,
                "Phase represents the current phase of PersistentVolumeClaim.",
            ),
            Column::new(
                "Volume",
                "string",
                0,
                "VolumeName is the binding reference to the PersistentVolume backing this claim.",
            ),
            Column::new(
                "Capacity",
                "string",
                0,
                "Capacity represents the actual resources of the underlying volume.",
            ),
            Column::new(
                "Access Modes",
                "string",
                0,
                "AccessModes contains the actual access modes the volume backing the PVC has.",
            ),
            Column::new(
                "StorageClass",
                "string",
                0,
                "StorageClassName is the name of the StorageClass required by the claim.",
            ),
            Column::new(
                "VolumeAttributesClass",
                "string",
                0,
                "The current VolumeAttributesClass used by the claim.",
            ),
            AGE,
            Column::new(
                "VolumeMode",
                "string",
                1,
                "VolumeMode defines what type of volume is required by the claim.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let bound = field_str(obj, &["spec", "volumeName"]).is_some_and(|v| !v.is_empty());
        let capacity = if bound {
            field_str(obj, &["status", "capacity", "storage"]).unwrap_or_default()
        } else {
            ""
        };
        let modes = if bound {
            access_modes_cell(obj, &["status", "accessModes"])
        } else {
            "".into()
        };
        vec![
            text(meta_str(obj, "name")),
            text(Some(
                field_str(obj, &["status", "phase"]).unwrap_or("Pending"),
            )),
            text(field_str(obj, &["spec", "volumeName"])),
            capacity.into(),
            modes,
            text(Some(
                field_str(obj, &["spec", "storageClassName"]).unwrap_or("<unset>"),
            )),
            text(Some(
                field_str(obj, &["status", "currentVolumeAttributesClassName"])
                    .unwrap_or("<unset>"),
            )),
            age_cell(obj, now),
            text(field_str(obj, &["spec", "volumeMode"])),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_need_access_modes_and_a_size() {
        let mut pvc = json!({"metadata": {"name": "data"}, "spec": {}});
        PersistentVolumeClaims.default(&mut pvc);
        assert_eq!(pvc["spec"]["volumeMode"], "Filesystem");
        let messages: Vec<String> = PersistentVolumeClaims
            .validate(&pvc, None)
            .into_iter()
            .map(|c| c.message)
            .collect();
        assert_eq!(
            messages,
            [
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Required value",
            ]
        );
        let ok = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        assert!(PersistentVolumeClaims.validate(&ok, None).is_empty());
    }
}
