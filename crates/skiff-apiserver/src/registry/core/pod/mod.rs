//! Pods: their defaults, admission, validation and printing. The biggest kind, so its
//! parts have files of their own: `defaults.rs` (shared with pod templates), `admission.rs`
//! (tolerations and the service account), `validation.rs` (spec, updates, ephemeral
//! containers).

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{
    AGE, Column, NAME, Printer, Timed, age_cell, arr, none_if_empty, restarts_cell, text,
};
use skiff_api::{Cause, ResourceType, Subresource};
use time::OffsetDateTime;

use crate::registry::{Kind, Pending};
use crate::state::ApiState;

pub mod admission;
pub mod defaults;
mod limit_ranger;
pub mod priority;
pub mod resources;
pub mod validation;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "Pod", "pods", "pod",
    namespaced: true, short: ["po"], categories: ["all"],
    sub: [Attach, Binding, EphemeralContainers, Exec, Log, PortForward, Proxy, Status]);

pub struct Pods;

impl Kind for Pods {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    /// Pending, with the quality-of-service class its (defaulted) resources give it.
    fn prepare_for_create(&self, obj: &mut Value) {
        let class = defaults::qos_class(&obj["spec"]);
        obj["status"] = json!({"phase": "Pending", "qosClass": class});
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec") {
            defaults::pod_spec(spec);
            defaults::requests_from_limits(spec);
        }
    }

    fn admit<'a>(
        &'a self,
        state: &'a ApiState,
        _user: &'a crate::authn::UserInfo,
        obj: &'a mut Value,
    ) -> Pending<'a, ()> {
        Box::pin(async move {
            admission::default_toleration_seconds(
                obj,
                state.tolerations.not_ready_seconds,
                state.tolerations.unreachable_seconds,
            );
            admission::admit_service_account(state, obj).await?;
            priority::admit(state, obj).await?;
            limit_ranger::admit(state, obj).await
        })
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validation::validate_pod_spec(field(obj, &["spec"]), "spec", &mut causes);
        if let Some(old) = old {
            validation::validate_pod_update(obj, old, &mut causes);
        }
        causes
    }

    fn validate_subresource(
        &self,
        subresource: Subresource,
        new: &Value,
        old: &Value,
    ) -> Vec<Cause> {
        let mut causes = Vec::new();
        if subresource == Subresource::EphemeralContainers {
            validation::validate_ephemeral_containers(new, old, &mut causes);
        }
        causes
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    /// A pod bound to a node is deleted gracefully: the node's agent stops its containers
    /// within the grace period (the delete's, else the pod's, else 30 s) and then removes
    /// it. An unbound pod, or a grace period of 0, goes at once.
    fn graceful_deletion(&self, obj: &Value, requested: Option<i64>) -> Option<i64> {
        field_str(obj, &["spec", "nodeName"]).filter(|n| !n.is_empty())?;
        let grace = requested.unwrap_or_else(|| {
            field(obj, &["spec", "terminationGracePeriodSeconds"])
                .and_then(Value::as_i64)
                .unwrap_or(30)
        });
        (grace > 0).then_some(grace)
    }
}

impl Printer for Pods {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            Column::new(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            Column::new(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            Column::new(
                "IP",
                "string",
                1,
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            Column::new(
                "Node",
                "string",
                1,
                "NodeName is a request to schedule this pod onto a specific node.",
            ),
            Column::new(
                "Nominated Node",
                "string",
                1,
                "nominatedNodeName is set when this pod preempts other pods on the node.",
            ),
            Column::new(
                "Readiness Gates",
                "string",
                1,
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        pod_cells(obj, now)
    }

    fn timed(&self, column: &str, obj: &Value) -> Option<Timed> {
        match column {
            "Age" => Some(Timed::Age(skiff_api::table::time_of(meta_str(
                obj,
                "creationTimestamp",
            )))),
            "Restarts" => {
                let (count, last) = pod_restarts(obj);
                Some(Timed::Restarts(count, last))
            }
            _ => None,
        }
    }
}

/// A pod's restarts across its containers, and when the last one ended.
fn pod_restarts(obj: &Value) -> (i64, Option<OffsetDateTime>) {
    let mut restarts = 0;
    let mut last: Option<OffsetDateTime> = None;
    for c in arr(obj, &["status", "containerStatuses"]) {
        restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        if let Some(t) = field_str(c, &["lastState", "terminated", "finishedAt"])
            .and_then(skiff_api::object::parse_time)
        {
            last = Some(last.map_or(t, |l| l.max(t)));
        }
    }
    (restarts, last)
}

fn pod_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (name, age_cell) = (text(meta_str(obj, "name")), age_cell(obj, now));
    let statuses = arr(obj, &["status", "containerStatuses"]);
    let total = arr(obj, &["spec", "containers"]).len();
    let ready = statuses
        .iter()
        .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
        .count();
    let (restarts, last_restart) = pod_restarts(obj);
    let mut reason = field_str(obj, &["status", "reason"])
        .or(field_str(obj, &["status", "phase"]))
        .unwrap_or("Pending")
        .to_string();
    // As upstream: the last container with a waiting or terminated reason names the status.
    for c in statuses.iter().rev() {
        if let Some(r) = field_str(c, &["state", "waiting", "reason"]).filter(|r| !r.is_empty()) {
            reason = r.to_string();
            break;
        }
        if let Some(t) = field(c, &["state", "terminated"]) {
            reason = match field_str(t, &["reason"]).filter(|r| !r.is_empty()) {
                Some(r) => r.to_string(),
                None => format!(
                    "ExitCode:{}",
                    t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                ),
            };
            break;
        }
    }
    if meta_str(obj, "deletionTimestamp").is_some() {
        reason = if field_str(obj, &["status", "reason"]) == Some("NodeLost") {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    let restarts_cell = restarts_cell(restarts, last_restart, now);
    let gates = arr(obj, &["spec", "readinessGates"]);
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr(obj, &["status", "conditions"]);
        let passing = gates
            .iter()
            .filter(|g| {
                conditions.iter().any(|c| {
                    c.get("type") == g.get("conditionType")
                        && field_str(c, &["status"]) == Some("True")
                })
            })
            .count();
        format!("{passing}/{}", gates.len())
    };
    vec![
        name,
        format!("{ready}/{total}").into(),
        reason.into(),
        restarts_cell,
        age_cell,
        none_if_empty(
            field_str(obj, &["status", "podIP"])
                .unwrap_or_default()
                .to_string(),
        ),
        none_if_empty(
            field_str(obj, &["spec", "nodeName"])
                .unwrap_or_default()
                .to_string(),
        ),
        none_if_empty(
            field_str(obj, &["status", "nominatedNodeName"])
                .unwrap_or_default()
                .to_string(),
        ),
        gates_cell.into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        skiff_api::object::parse_time("2026-11-25T12:00:00Z").unwrap()
    }

    #[test]
    fn pod_row_shows_ready_status_restarts() {
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2026-11-25T11:55:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": "2026-11-25T11:58:00Z"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        assert_eq!(
            Value::from(Pods.cells(&pod, now())),
            json!([
                "web-1",
                "1/2",
                "CrashLoopBackOff",
                "2 (2m ago)",
                "5m",
                "10.42.0.5",
                "n1",
                "<none>",
                "<none>"
            ])
        );
        assert_eq!(Pods.columns().len(), 9);
    }
}
