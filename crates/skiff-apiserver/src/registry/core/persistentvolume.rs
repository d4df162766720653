//! PersistentVolumes: storage in the cluster, claimed by PersistentVolumeClaims.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::persistentvolumeclaim::{access_modes_cell, validate_access_modes};
use crate::registry::{Kind, set_default};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "PersistentVolume",
    "persistentvolumes", "persistentvolume", namespaced: false, short: ["pv"], categories: [],
    sub: [Status]);

/// The volume sources a PersistentVolume may have (exactly one of them).
const SOURCES: [&str; 17] = [
    "hostPath",
    "local",
    "nfs",
    "csi",
    "iscsi",
    "fc",
    "rbd",
    "cephfs",
    "glusterfs",
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "azureDisk",
    "azureFile",
    "cinder",
    "flexVolume",
    "vsphereVolume",
    "portworxVolume",
];

pub struct PersistentVolumes;

impl Kind for PersistentVolumes {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn default(&self, obj: &mut Value) {
        set_default(
            obj,
            "spec",
            "persistentVolumeReclaimPolicy",
            json!("Retain"),
        );
        set_default(obj, "spec", "volumeMode", json!("Filesystem"));
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_access_modes(obj, &mut causes);
        if field(obj, &["spec", "capacity", "storage"]).is_none() {
            causes.push(Cause::required("spec.capacity"));
        }
        let sources = SOURCES
            .iter()
            .filter(|s| field(obj, &["spec", s]).is_some_and(|v| !v.is_null()))
            .count();
        match sources {
            0 => causes.push(Cause::required_because(
                "spec",
                "must specify a volume type",
            )),
            1 => {}
            _ => causes.push(Cause::forbidden(
                "spec",
                "may not specify more than 1 volume type",
            )),
        }
        if let Some(policy) = field(obj, &["spec", "persistentVolumeReclaimPolicy"])
            && !matches!(policy.as_str(), Some("Retain" | "Delete" | "Recycle"))
        {
            causes.push(Cause::not_supported(
                "spec.persistentVolumeReclaimPolicy",
                policy,
                &["Delete", "Recycle", "Retain"],
            ));
        }
        causes
    }
}

impl Printer for PersistentVolumes {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Capacity",
                "string",
                0,
                "capacity is the description of the persistent volume's resources and capacity.",
            ),
            Column::new(
                "Access Modes",
                "string",
                0,
                "accessModes contains all ways the volume can be mounted.",
            ),
            Column::new(
                "Reclaim Policy",
                "string",
                0,
                "What happens to a persistent volume when released from its claim.",
            ),
            Column::new(
                "Status",
                "string",
                0,
                "phase indicates if a volume is available, bound to a claim, or released by a claim.",
            ),
            Column::new(
                "Claim",
                "string",
                0,
                "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.",
            ),
            Column::new(
                "StorageClass",
                "string",
                0,
                "storageClassName is the name of StorageClass to which this persistent volume belongs.",
            ),
            Column::new(
                "VolumeAttributesClass",
                "string",
                0,
                "Name of VolumeAttributesClass to which this persistent volume belongs.",
            ),
            Column::new(
                "Reason",
                "string",
                0,
                "reason is a brief CamelCase string that describes any failure.",
            ),
            AGE,
            Column::new(
                "VolumeMode",
                "string",
                1,
                "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let claim = match field(obj, &["spec", "claimRef"]) {
            Some(c) => format!(
                "{}/{}",
                field_str(c, &["namespace"]).unwrap_or_default(),
                field_str(c, &["name"]).unwrap_or_default()
            ),
            None => String::new(),
        };
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["spec", "capacity", "storage"])),
            access_modes_cell(obj, &["spec", "accessModes"]),
            text(field_str(obj, &["spec", "persistentVolumeReclaimPolicy"])),
            text(field_str(obj, &["status", "phase"])),
            claim.into(),
            text(field_str(obj, &["spec", "storageClassName"])),
            text(Some(
                field_str(obj, &["spec", "volumeAttributesClassName"]).unwrap_or("<unset>"),
            )),
            text(field_str(obj, &["status", "reason"])),
            age_cell(obj, now),
            text(field_str(obj, &["spec", "volumeMode"])),
        ]
    }
}
