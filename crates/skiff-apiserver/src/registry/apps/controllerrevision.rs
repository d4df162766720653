//! ControllerRevisions: immutable snapshots of a DaemonSet's or StatefulSet's template.

use serde_json::Value;
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("apps", "v1",
    "ControllerRevision", "controllerrevisions", "controllerrevision", namespaced: true,
    short: [], categories: [], sub: []);

pub struct ControllerRevisions;

impl Kind for ControllerRevisions {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        match field(obj, &["revision"]).and_then(Value::as_i64) {
            Some(r) if r < 0 => causes.push(Cause::invalid(
                "revision",
                &r.into(),
                "must be greater than or equal to 0",
            )),
            Some(_) => {}
            None => causes.push(Cause::required("revision")),
        }
        if let Some(old) = old
            && obj.get("data") != old.get("data")
        {
            causes.push(Cause::invalid(
                "data",
                obj.get("data").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        causes
    }
}

impl Printer for ControllerRevisions {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Controller", "string", 0, "Controller of the object."),
            Column::new(
                "Revision",
                "integer",
                0,
                "Revision indicates the revision of the state represented by Data.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let controller = arr(obj, &["metadata", "ownerReferences"])
            .iter()
            .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
            .map(|o| {
                let kind = field_str(o, &["kind"]).unwrap_or_default().to_lowercase();
                let group = field_str(o, &["apiVersion"])
                    .and_then(|v| v.split_once('/'))
                    .map(|(g, _)| g)
                    .unwrap_or_default();
                let name = field_str(o, &["name"]).unwrap_or_default();
                if group.is_empty() {
                    format!("{kind}/{name}")
                } else {
                    format!("{kind}.{group}/{name}")
                }
            })
            .unwrap_or_else(|| "<none>".into());
        vec![
            text(meta_str(obj, "name")),
            controller.into(),
            field(obj, &["revision"])
                .and_then(Value::as_i64)
                .unwrap_or(0)
                .into(),
            age_cell(obj, now),
        ]
    }
}
