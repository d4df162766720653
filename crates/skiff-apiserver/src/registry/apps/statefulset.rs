//! StatefulSets: pods with stable names and storage, in order. Stored, defaulted and
//! validated as upstream's; no controller runs them yet (a later issue), and every write
//! says so.

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, int, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::{CONTAINERS, IMAGES, template_containers, validate_workload};
use crate::registry::core::pod::defaults as pod_defaults;
use crate::registry::{Kind, entry_default, set_default, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("apps", "v1", "StatefulSet",
    "statefulsets", "statefulset", namespaced: true, short: ["sts"], categories: ["all"],
    sub: [Scale, Status]);

pub struct StatefulSets;

impl Kind for StatefulSets {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0, "availableReplicas": 0});
    }

    fn default(&self, obj: &mut Value) {
        set_default(obj, "spec", "replicas", json!(1));
        set_default(obj, "spec", "revisionHistoryLimit", json!(10));
        set_default(obj, "spec", "podManagementPolicy", json!("OrderedReady"));
        set_default(
            obj,
            "spec",
            "persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        );
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            let strategy = spec.entry("updateStrategy").or_insert_with(|| json!({}));
            if let Some(strategy) = strategy.as_object_mut() {
                entry_default(strategy, "type", json!("RollingUpdate"));
                if strategy.get("type") == Some(&json!("RollingUpdate")) {
                    let ru = strategy.entry("rollingUpdate").or_insert_with(|| json!({}));
                    if let Some(ru) = ru.as_object_mut() {
                        entry_default(ru, "partition", json!(0));
                    }
                }
            }
        }
        pod_defaults::pod_template(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_workload(obj, old, &mut causes);
        let policy = field(obj, &["spec", "podManagementPolicy"]);
        if let Some(p) = policy
            && !matches!(p.as_str(), Some("OrderedReady" | "Parallel"))
        {
            causes.push(Cause::not_supported(
                "spec.podManagementPolicy",
                p,
                &["OrderedReady", "Parallel"],
            ));
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "StatefulSet",
            "skiff runs no StatefulSet controller yet: no pods will be created for it",
        )
    }
}

impl Printer for StatefulSets {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Ready", "string", 0, "Number of the pod with ready state"),
            AGE,
            CONTAINERS,
            IMAGES,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let (containers, images) = template_containers(obj);
        vec![
            text(meta_str(obj, "name")),
            format!(
                "{}/{}",
                int(obj, &["status", "readyReplicas"]),
                int(obj, &["spec", "replicas"])
            )
            .into(),
            age_cell(obj, now),
            containers.into(),
            images.into(),
        ]
    }
}
