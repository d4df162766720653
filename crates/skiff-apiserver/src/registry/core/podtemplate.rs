//! PodTemplates: pod specs stored for others to copy.

use serde_json::Value;
use skiff_api::object::{field, meta_str};
use skiff_api::table::{Column, NAME, Printer, format_label_selector, none_if_empty, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::pod::{defaults, validation};
use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "PodTemplate",
    "podtemplates", "podtemplate", namespaced: true, short: [], categories: [], sub: []);

pub struct PodTemplates;

impl Kind for PodTemplates {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("template").and_then(|t| t.get_mut("spec")) {
            defaults::pod_spec(spec);
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validation::validate_pod_spec(
            field(obj, &["template", "spec"]),
            "template.spec",
            &mut causes,
        );
        causes
    }
}

impl Printer for PodTemplates {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Containers",
                "string",
                0,
                "Names of each container in the template.",
            ),
            Column::new(
                "Images",
                "string",
                0,
                "Images referenced by each container in the template.",
            ),
            Column::new(
                "Pod Labels",
                "string",
                0,
                "The labels for the pod template.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, _now: OffsetDateTime) -> Vec<Value> {
        let (containers, images) =
            crate::registry::apps::container_cells(field(obj, &["template", "spec"]));
        vec![
            text(meta_str(obj, "name")),
            containers.into(),
            images.into(),
            none_if_empty(format_label_selector(field(
                obj,
                &["template", "metadata", "labels"],
            ))),
        ]
    }
}
