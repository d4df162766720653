//! DaemonSets: one pod per (matching) node. Stored, defaulted and validated as upstream's;
//! no controller runs them yet (a later issue), and every write says so.

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::table::{
    AGE, Column, NAME, Printer, age_cell, format_label_selector, int, none_if_empty, text,
};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::{CONTAINERS, IMAGES, template_containers, validate_workload};
use crate::registry::core::pod::defaults as pod_defaults;
use crate::registry::{Kind, entry_default, set_default, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("apps", "v1", "DaemonSet",
    "daemonsets", "daemonset", namespaced: true, short: ["ds"], categories: ["all"],
    sub: [Status]);

pub struct DaemonSets;

impl Kind for DaemonSets {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
            "numberMisscheduled": 0, "numberReady": 0});
    }

    fn default(&self, obj: &mut Value) {
        set_default(obj, "spec", "revisionHistoryLimit", json!(10));
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
            if let Some(strategy) = strategy.as_object_mut() {
                entry_default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    let ru = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        entry_default(ru, "maxUnavailable", json!(1));
                        entry_default(ru, "maxSurge", json!(0));
                    }
                }
            }
        }
        pod_defaults::pod_template(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_workload(obj, old, &mut causes);
        let policy = field(obj, &["spec", "template", "spec", "restartPolicy"]);
        if let Some(p) = policy
            && p != "Always"
        {
            causes.push(Cause::not_supported(
                "spec.template.spec.restartPolicy",
                p,
                &["Always"],
            ));
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "DaemonSet",
            "skiff runs no DaemonSet controller yet: no pods will be created for it",
        )
    }
}

impl Printer for DaemonSets {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Desired",
                "integer",
                0,
                "The total number of nodes that should be running the daemon pod.",
            ),
            Column::new(
                "Current",
                "integer",
                0,
                "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod.",
            ),
            Column::new(
                "Ready",
                "integer",
                0,
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and ready.",
            ),
            Column::new(
                "Up-to-date",
                "integer",
                0,
                "The total number of nodes that are running updated daemon pod",
            ),
            Column::new(
                "Available",
                "integer",
                0,
                "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available.",
            ),
            Column::new(
                "Node Selector",
                "string",
                0,
                "NodeSelector is a selector which must be true for the pod to fit on a node.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            Column::new(
                "Selector",
                "string",
                1,
                "A label query over pods that are managed by the daemon set.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let (containers, images) = template_containers(obj);
        let node_selector =
            format_label_selector(field(obj, &["spec", "template", "spec", "nodeSelector"]));
        vec![
            text(meta_str(obj, "name")),
            int(obj, &["status", "desiredNumberScheduled"]).into(),
            int(obj, &["status", "currentNumberScheduled"]).into(),
            int(obj, &["status", "numberReady"]).into(),
            int(obj, &["status", "updatedNumberScheduled"]).into(),
            int(obj, &["status", "numberAvailable"]).into(),
            none_if_empty(node_selector),
            age_cell(obj, now),
            containers.into(),
            images.into(),
            none_if_empty(format_label_selector(field(obj, &["spec", "selector"]))),
        ]
    }
}
