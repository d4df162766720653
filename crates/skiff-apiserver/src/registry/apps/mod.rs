//! The `apps` group: workloads that keep pods running from a template.

use serde_json::{Map, Value};
use skiff_api::Cause;
use skiff_api::object::{field, field_str};
use skiff_api::selectors::Selector;
use skiff_api::table::Column;

use crate::registry::core::pod::validation::validate_pod_spec;

pub mod controllerrevision;
pub mod daemonset;
pub mod deployment;
pub mod replicaset;
pub mod statefulset;

/// A workload's validation (Deployments and ReplicaSets alike): replicas, a selector that
/// matches its template's labels and never changes, and the template's pod spec.
pub(crate) fn validate_workload(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
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
    let empty = selector.is_none_or(|s| {
        s.get("matchLabels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
            && s.get("matchExpressions")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
    });
    if empty {
        causes.push(Cause::required("spec.selector"));
    } else if let Some(sel) = selector {
        match Selector::from_label_selector(sel) {
            Ok(s) => {
                let labels = field(obj, &["spec", "template", "metadata", "labels"]);
                if !s.matches_labels(labels) {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        labels.unwrap_or(&Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            Err(e) => causes.push(Cause::invalid("spec.selector", sel, &e.to_string())),
        }
        if let Some(old) = old
            && field(old, &["spec", "selector"]) != Some(sel)
        {
            causes.push(Cause::invalid("spec.selector", sel, "field is immutable"));
        }
    }
    causes.extend(skiff_api::validation::validate_labels(
        field(obj, &["spec", "template", "metadata", "labels"]),
        "spec.template.metadata.labels",
    ));
    validate_pod_spec(
        field(obj, &["spec", "template", "spec"]),
        "spec.template.spec",
        causes,
    );
}

/// The template's container names and images, comma-separated (CONTAINERS, IMAGES).
pub(crate) fn template_containers(obj: &Value) -> (String, String) {
    container_cells(field(obj, &["spec", "template", "spec"]))
}

/// A pod spec's container names and images, comma-separated, wherever the spec sits (a
/// CronJob's job template, a PodTemplate's template).
pub(crate) fn container_cells(pod_spec: Option<&Value>) -> (String, String) {
    let containers = pod_spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let of = |key: &str| {
        containers
            .iter()
            .filter_map(|c| field_str(c, &[key]))
            .collect::<Vec<_>>()
            .join(",")
    };
    (of("name"), of("image"))
}

/// The wide CONTAINERS column of every kind with a pod template.
pub(crate) const CONTAINERS: Column = Column::new(
    "Containers",
    "string",
    1,
    "Names of each container in the template.",
);

/// The wide IMAGES column of every kind with a pod template.
pub(crate) const IMAGES: Column = Column::new(
    "Images",
    "string",
    1,
    "Images referenced by each container in the template.",
);
