//! `node.k8s.io/v1`: RuntimeClasses, the container runtime configurations pods choose.

use serde_json::Value;
use skiff_api::object::{field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use skiff_api::validation::dns1123_label_errors;
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("node.k8s.io", "v1",
    "RuntimeClass", "runtimeclasses", "runtimeclass", namespaced: false, short: [],
    categories: [], sub: []);

pub struct RuntimeClasses;

impl Kind for RuntimeClasses {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        match field_str(obj, &["handler"]).filter(|h| !h.is_empty()) {
            None => causes.push(Cause::required("handler")),
            Some(h) => {
                for e in dns1123_label_errors(h) {
                    causes.push(Cause::invalid("handler", &h.into(), &e));
                }
            }
        }
        if let Some(old) = old
            && obj.get("handler") != old.get("handler")
        {
            causes.push(Cause::invalid(
                "handler",
                obj.get("handler").unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        causes
    }
}

impl Printer for RuntimeClasses {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Handler",
                "string",
                0,
                "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["handler"])),
            age_cell(obj, now),
        ]
    }
}
