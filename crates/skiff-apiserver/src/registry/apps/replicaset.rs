//! ReplicaSets: a number of pods from one template (Deployments make them).

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::table::{
    AGE, Column, NAME, Printer, age_cell, format_label_selector, int, none_if_empty, text,
};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::{CONTAINERS, IMAGES, template_containers, validate_workload};
use crate::registry::core::pod::defaults as pod_defaults;
use crate::registry::{Kind, set_default};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("apps", "v1", "ReplicaSet",
    "replicasets", "replicaset", namespaced: true, short: ["rs"], categories: ["all"],
    sub: [Scale, Status]);

pub struct ReplicaSets;

impl Kind for ReplicaSets {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    /// Status empty: the controller's to fill in.
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    fn default(&self, obj: &mut Value) {
        set_default(obj, "spec", "replicas", json!(1));
        pod_defaults::pod_template(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_workload(obj, old, &mut causes);
        causes
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.replicas"]
    }
}

impl Printer for ReplicaSets {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Desired",
                "integer",
                0,
                "Replicas is the number of desired replicas.",
            ),
            Column::new(
                "Current",
                "integer",
                0,
                "Replicas is the most recently observed number of replicas.",
            ),
            Column::new(
                "Ready",
                "integer",
                0,
                "The number of ready replicas for this replica set.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            Column::new(
                "Selector",
                "string",
                1,
                "Selector is a label query over pods that should match the replica count.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let (name, age_cell) = (text(meta_str(obj, "name")), age_cell(obj, now));
        let (containers, images) = template_containers(obj);
        vec![
            name,
            int(obj, &["spec", "replicas"]).into(),
            int(obj, &["status", "replicas"]).into(),
            int(obj, &["status", "readyReplicas"]).into(),
            age_cell,
            containers.into(),
            images.into(),
            none_if_empty(format_label_selector(field(obj, &["spec", "selector"]))),
        ]
    }
}
