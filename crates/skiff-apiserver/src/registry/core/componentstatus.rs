//! ComponentStatuses (`kubectl get cs`): the control plane's health, computed when read and
//! never stored, as upstream's are (deprecated since 1.19, still served, and saying so).
//! The scheduler and the controller manager are healthy while they renew their leader
//! leases in `kube-system` (`skiff_client::leader`); `etcd-0` is the datastore, healthy
//! while it answers.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::resources::READ_ONLY;
use skiff_api::table::{Column, NAME, Printer, text};
use skiff_api::{ResourceType, table};
use time::OffsetDateTime;

use crate::registry::{Kind, Pending};
use crate::state::ApiState;

pub static RESOURCE: ResourceType = ResourceType {
    verbs: READ_ONLY,
    ..skiff_api::resource_type!("", "v1", "ComponentStatus", "componentstatuses",
        "componentstatus", namespaced: false, short: ["cs"], categories: [], sub: [])
};

const DEPRECATED: &str = "v1 ComponentStatus is deprecated in v1.19+";

/// The components whose leases tell their health: (component, lease).
const LEASED: [(&str, &str); 2] = [
    ("scheduler", "kube-scheduler"),
    ("controller-manager", "kube-controller-manager"),
];

fn status(name: &str, healthy: Result<(), String>) -> Value {
    let condition = match healthy {
        Ok(()) => json!({"type": "Healthy", "status": "True", "message": "ok"}),
        Err(error) => json!({"type": "Healthy", "status": "False", "error": error}),
    };
    json!({"kind": "ComponentStatus", "apiVersion": "v1",
           "metadata": {"name": name}, "conditions": [condition]})
}

/// Whether a leader lease is held and renewed within its duration.
fn lease_health(lease: Option<&Value>, name: &str, now: OffsetDateTime) -> Result<(), String> {
    let Some(lease) = lease else {
        return Err(format!(
            "no {name} holds its lease in kube-system: is it running?"
        ));
    };
    let holder = field_str(lease, &["spec", "holderIdentity"]).unwrap_or_default();
    let duration = field(lease, &["spec", "leaseDurationSeconds"])
        .and_then(Value::as_i64)
        .unwrap_or(15);
    let renewed = field_str(lease, &["spec", "renewTime"]).and_then(skiff_api::object::parse_time);
    match renewed {
        Some(at) if (now - at).whole_seconds() <= duration => Ok(()),
        Some(at) => Err(format!(
            "its lease, held by {holder:?}, was last renewed {} ago (it lasts {duration}s)",
            skiff_api::object::human_duration((now - at).whole_seconds())
        )),
        None => Err(format!("its lease names no renewal (holder {holder:?})")),
    }
}

pub struct ComponentStatuses;

impl Kind for ComponentStatuses {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn computed<'a>(&'a self, state: &'a ApiState) -> Option<Pending<'a, Vec<Value>>> {
        Some(Box::pin(async move {
            let now = OffsetDateTime::now_utc();
            let leases = &crate::registry::coordination::RESOURCE;
            let mut out = Vec::new();
            for (component, lease) in LEASED {
                let held = state
                    .objects
                    .get(leases, Some("kube-system"), lease)
                    .await
                    .ok();
                out.push(status(
                    component,
                    lease_health(held.as_ref().map(|s| &s.object), component, now),
                ));
            }
            let etcd = state
                .objects
                .store()
                .current_revision()
                .await
                .map(|_| ())
                .map_err(|e| {
                    format!(
                        "the datastore ({}) does not answer: {e}",
                        state.objects.store().describe()
                    )
                });
            out.push(status("etcd-0", etcd));
            Ok(out)
        }))
    }

    fn warnings(&self, _obj: &Value) -> Vec<String> {
        vec![DEPRECATED.to_string()]
    }
}

impl Printer for ComponentStatuses {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Status", "string", 0, "Status of the component conditions"),
            Column::new(
                "Message",
                "string",
                0,
                "Message of the component conditions",
            ),
            Column::new("Error", "string", 0, "Error of the component conditions"),
        ]
    }

    fn cells(&self, obj: &Value, _now: OffsetDateTime) -> Vec<Value> {
        let healthy = table::arr(obj, &["conditions"])
            .iter()
            .find(|c| c["type"] == "Healthy");
        let (status, message, error) = match healthy {
            Some(c) if c["status"] == "True" => {
                ("Healthy", c["message"].as_str(), c["error"].as_str())
            }
            Some(c) => ("Unhealthy", c["message"].as_str(), c["error"].as_str()),
            None => ("Unknown", None, None),
        };
        vec![
            text(meta_str(obj, "name")),
            status.into(),
            message.unwrap_or_default().into(),
            error.unwrap_or_default().into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_is_healthy_while_it_renews_its_lease() {
        let now = OffsetDateTime::parse(
            "2026-12-07T12:00:30Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let lease = |renewed: &str| json!({"spec": {"holderIdentity": "host_1", "leaseDurationSeconds": 15, "renewTime": renewed}});
        assert!(
            lease_health(
                Some(&lease("2026-12-07T12:00:20.000000Z")),
                "scheduler",
                now
            )
            .is_ok()
        );
        assert_eq!(
            lease_health(
                Some(&lease("2026-12-07T11:58:30.000000Z")),
                "scheduler",
                now
            )
            .unwrap_err(),
            "its lease, held by \"host_1\", was last renewed 2m ago (it lasts 15s)"
        );
        assert!(
            lease_health(None, "scheduler", now)
                .unwrap_err()
                .contains("is it running?")
        );
        let row = ComponentStatuses.cells(&status("etcd-0", Ok(())), now);
        assert_eq!(
            row,
            [json!("etcd-0"), json!("Healthy"), json!("ok"), json!("")]
        );
        let row = ComponentStatuses.cells(&status("scheduler", Err("down".into())), now);
        assert_eq!(row[1..], [json!("Unhealthy"), json!(""), json!("down")]);
    }
}
