//! Deployments: declarative rollouts of a pod template through ReplicaSets.

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::table::{
    AGE, Column, NAME, Printer, age_cell, format_label_selector, int, none_if_empty, text,
};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::{CONTAINERS, IMAGES, template_containers, validate_workload};
use crate::registry::core::pod::defaults as pod_defaults;
use crate::registry::{Kind, entry_default, set_default};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("apps", "v1", "Deployment",
    "deployments", "deployment", namespaced: true, short: ["deploy"], categories: ["all"],
    sub: [Scale, Status]);

pub struct Deployments;

impl Kind for Deployments {
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
        defaults(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_workload(obj, old, &mut causes);
        causes
    }
}

impl Printer for Deployments {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Ready", "string", 0, "Number of the pod with ready state"),
            Column::new(
                "Up-to-date",
                "string",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            Column::new(
                "Available",
                "string",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            Column::new(
                "Selector",
                "string",
                1,
                "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let (name, age_cell) = (text(meta_str(obj, "name")), age_cell(obj, now));
        let (containers, images) = template_containers(obj);
        vec![
            name,
            format!(
                "{}/{}",
                int(obj, &["status", "readyReplicas"]),
                int(obj, &["spec", "replicas"])
            )
            .into(),
            int(obj, &["status", "updatedReplicas"]).into(),
            int(obj, &["status", "availableReplicas"]).into(),
            age_cell,
            containers.into(),
            images.into(),
            none_if_empty(format_label_selector(field(obj, &["spec", "selector"]))),
        ]
    }
}

fn defaults(obj: &mut Value) {
    set_default(obj, "spec", "replicas", json!(1));
    set_default(obj, "spec", "revisionHistoryLimit", json!(10));
    set_default(obj, "spec", "progressDeadlineSeconds", json!(600));
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        let strategy = spec
            .entry("strategy")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(strategy) = strategy {
            entry_default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type") == Some(&json!("RollingUpdate")) {
                let ru = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
                if let Some(ru) = ru.as_object_mut() {
                    entry_default(ru, "maxUnavailable", json!("25%"));
                    entry_default(ru, "maxSurge", json!("25%"));
                }
            }
        }
    }
    pod_defaults::pod_template(obj);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_get_upstream_defaults() {
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "hello:v1"}]}}}});
        Deployments.default(&mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["progressDeadlineSeconds"], 600);
        assert_eq!(
            d["spec"]["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["restartPolicy"], "Always");
        assert_eq!(pod["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["containers"][0]["imagePullPolicy"], "IfNotPresent");
    }

    #[test]
    fn recreate_gets_no_rolling_parameters() {
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        Deployments.default(&mut d);
        assert!(d["spec"]["strategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn deployment_row_counts_replicas() {
        let d = json!({
            "metadata": {"name": "hello"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "hello"}},
                     "template": {"spec": {"containers": [{"name": "c", "image": "img:v1"}]}}},
            "status": {"readyReplicas": 3, "updatedReplicas": 4, "availableReplicas": 3},
        });
        assert_eq!(
            Value::from(Deployments.cells(&d, OffsetDateTime::UNIX_EPOCH)),
            json!([
                "hello",
                "3/4",
                4,
                3,
                "<unknown>",
                "c",
                "img:v1",
                "app=hello"
            ])
        );
    }
}
