//! VolumeAttachments: a request to attach a volume to a node, and its result.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("storage.k8s.io", "v1",
    "VolumeAttachment", "volumeattachments", "volumeattachment", namespaced: false, short: [],
    categories: [], sub: [Status]);

pub struct VolumeAttachments;

impl Kind for VolumeAttachments {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"attached": false});
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        for key in ["attacher", "nodeName"] {
            if field_str(obj, &["spec", key]).is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("spec.{key}")));
            }
        }
        if let Some(old) = old
            && field(obj, &["spec"]) != field(old, &["spec"])
        {
            causes.push(Cause::invalid(
                "spec",
                field(obj, &["spec"]).unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        causes
    }
}

impl Printer for VolumeAttachments {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Attacher",
                "string",
                0,
                "Attacher indicates the name of the volume driver that MUST handle this request.",
            ),
            Column::new(
                "PV",
                "string",
                0,
                "Name of the persistent volume to attach.",
            ),
            Column::new(
                "Node",
                "string",
                0,
                "The node that the volume should be attached to.",
            ),
            Column::new(
                "Attached",
                "boolean",
                0,
                "Indicates the volume is successfully attached.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["spec", "attacher"])),
            text(field_str(obj, &["spec", "source", "persistentVolumeName"])),
            text(field_str(obj, &["spec", "nodeName"])),
            field(obj, &["status", "attached"])
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .into(),
            age_cell(obj, now),
        ]
    }
}
