//! ReplicationControllers: ReplicaSets' predecessors, with an equality-based selector.
//! Stored, defaulted and validated as upstream's; no controller runs them yet, and every
//! write says so.

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::selectors::Selector;
use skiff_api::table::{
    AGE, Column, NAME, Printer, age_cell, format_label_selector, int, none_if_empty, text,
};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::pod::{defaults, validation};
use crate::registry::apps::{CONTAINERS, IMAGES};
use crate::registry::{Kind, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1",
    "ReplicationController", "replicationcontrollers", "replicationcontroller",
    namespaced: true, short: ["rc"], categories: ["all"], sub: [Scale, Status]);

pub struct ReplicationControllers;

impl Kind for ReplicationControllers {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0});
    }

    /// Upstream's `SetDefaults_ReplicationController`: one replica; the selector, and the
    /// controller's own labels when it has none, from the template's labels.
    fn default(&self, obj: &mut Value) {
        let labels = field(obj, &["spec", "template", "metadata", "labels"]).cloned();
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            spec.entry("replicas").or_insert(json!(1));
            let empty = spec
                .get("selector")
                .and_then(Value::as_object)
                .is_none_or(|s| s.is_empty());
            if empty && let Some(l) = &labels {
                spec.insert("selector".into(), l.clone());
            }
        }
        let unlabelled = field(obj, &["metadata", "labels"])
            .and_then(Value::as_object)
            .is_none_or(|l| l.is_empty());
        if unlabelled
            && let Some(l) = labels
            && obj.get("metadata").is_some_and(Value::is_object)
        {
            obj["metadata"]["labels"] = l;
        }
        if let Some(spec) = obj
            .get_mut("spec")
            .and_then(|s| s.get_mut("template"))
            .and_then(|t| t.get_mut("spec"))
        {
            defaults::pod_spec(spec);
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(r) = field(obj, &["spec", "replicas"]).and_then(Value::as_i64)
            && r < 0
        {
            causes.push(Cause::invalid(
                "spec.replicas",
                &r.into(),
                "must be greater than or equal to 0",
            ));
        }
        let selector = field(obj, &["spec", "selector"]);
        match selector
            .and_then(Value::as_object)
            .filter(|s| !s.is_empty())
        {
            None => causes.push(Cause::required("spec.selector")),
            Some(_) => {
                let sel = Selector::from_label_selector(&json!({"matchLabels": selector}));
                let labels = field(obj, &["spec", "template", "metadata", "labels"]);
                if sel.is_ok_and(|s| !s.matches_labels(labels)) {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        labels.unwrap_or(&Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
        }
        validation::validate_pod_spec(
            field(obj, &["spec", "template", "spec"]),
            "spec.template.spec",
            &mut causes,
        );
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "ReplicationController",
            "skiff runs no replication controller yet (use a Deployment): no pods will be created for it",
        )
    }
}

impl Printer for ReplicationControllers {
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
                "The number of ready replicas for this replication controller.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            Column::new(
                "Selector",
                "string",
                1,
                "Selector is a label query over pods that should match the Replicas count.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let (containers, images) = crate::registry::apps::template_containers(obj);
        vec![
            text(meta_str(obj, "name")),
            int(obj, &["spec", "replicas"]).into(),
            int(obj, &["status", "replicas"]).into(),
            int(obj, &["status", "readyReplicas"]).into(),
            age_cell(obj, now),
            containers.into(),
            images.into(),
            none_if_empty(format_label_selector(field(obj, &["spec", "selector"]))),
        ]
    }
}
