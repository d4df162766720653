//! IngressClasses: which controller serves Ingresses of a class.

use serde_json::Value;
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("networking.k8s.io", "v1",
    "IngressClass", "ingressclasses", "ingressclass", namespaced: false, short: [],
    categories: [], sub: []);

pub struct IngressClasses;

impl Kind for IngressClasses {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let controller = field(obj, &["spec", "controller"]);
        if controller.and_then(Value::as_str).is_none_or(str::is_empty) {
            causes.push(Cause::required("spec.controller"));
        }
        if let Some(old) = old
            && controller != field(old, &["spec", "controller"])
        {
            causes.push(Cause::invalid(
                "spec.controller",
                controller.unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        causes
    }
}

impl Printer for IngressClasses {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Controller",
                "string",
                0,
                "Controller that is responsible for handling this class",
            ),
            Column::new(
                "Parameters",
                "string",
                0,
                "A reference to a resource with additional parameters",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let parameters = match field(obj, &["spec", "parameters"]) {
            Some(p) => {
                let kind = field_str(p, &["kind"]).unwrap_or_default();
                let name = field_str(p, &["name"]).unwrap_or_default();
                match field_str(p, &["apiGroup"]).filter(|g| !g.is_empty()) {
                    Some(g) => format!("{kind}.{g}/{name}"),
                    None => format!("{kind}/{name}"),
                }
            }
            None => "<none>".to_string(),
        };
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["spec", "controller"])),
            parameters.into(),
            age_cell(obj, now),
        ]
    }
}
