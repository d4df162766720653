//! Services: a stable address (cluster IP, node ports) for a set of pods. A Service holds
//! addresses beyond its record — its cluster IPs and node ports, reserved in the datastore
//! by `allocators.rs` so no two Services share one — taken on create, kept or changed on
//! update, given back on delete.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{
    AGE, Column, NAME, Printer, age_cell, arr, format_label_selector, none_if_empty, text,
};
use skiff_api::validation::NameRule;
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::allocators::{Held, ServiceAllocator, owner_of};
use crate::registry::{Kind, Pending, Reservation, entry_default, set_default};
use crate::state::ApiState;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "Service", "services",
    "service", namespaced: true, short: ["svc"], categories: ["all"], sub: [Proxy, Status]);

pub struct Services;

impl Kind for Services {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
    }

    fn default(&self, obj: &mut Value) {
        defaults(obj);
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_service(obj, &mut causes);
        causes
    }

    fn reserve<'a>(
        &'a self,
        state: &'a ApiState,
        old: Option<&'a Value>,
        new: &'a mut Value,
    ) -> Pending<'a, Reservation> {
        Box::pin(async move {
            match old {
                None => {
                    let owner = owner_of(new);
                    let taken = state.services.allocate(&RESOURCE, new, &owner).await?;
                    Ok(Reservation {
                        taken,
                        freed: Held::default(),
                    })
                }
                Some(old) => {
                    let owner = owner_of(old);
                    let (taken, freed) = state
                        .services
                        .reallocate(&RESOURCE, old, new, &owner)
                        .await?;
                    Ok(Reservation { taken, freed })
                }
            }
        })
    }

    fn held_by(&self, obj: &Value) -> Held {
        ServiceAllocator::held_by(obj)
    }

    fn release<'a>(&'a self, state: &'a ApiState, held: &'a Held) -> Pending<'a, ()> {
        Box::pin(async move {
            state.services.release(held).await;
            Ok(())
        })
    }
}

impl Printer for Services {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Type",
                "string",
                0,
                "type determines how the Service is exposed.",
            ),
            Column::new(
                "Cluster-IP",
                "string",
                0,
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            Column::new(
                "External-IP",
                "string",
                0,
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            Column::new(
                "Port(s)",
                "string",
                0,
                "The list of ports that are exposed by this service.",
            ),
            AGE,
            Column::new(
                "Selector",
                "string",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        service_cells(obj, now)
    }
}

fn defaults(obj: &mut Value) {
    set_default(obj, "spec", "type", json!("ClusterIP"));
    set_default(obj, "spec", "sessionAffinity", json!("None"));
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if ty != "ExternalName" {
        entry_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        entry_default(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            entry_default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                entry_default(p, "targetPort", port);
            }
        }
    }
}

fn validate_service(obj: &Value, causes: &mut Vec<Cause>) {
    let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    let ty = field(obj, &["spec", "type"])
        .cloned()
        .unwrap_or(json!("ClusterIP"));
    if !ty.as_str().is_some_and(|t| types.contains(&t)) {
        causes.push(Cause::not_supported("spec.type", &ty, &types));
    }
    let ports = field(obj, &["spec", "ports"]).and_then(Value::as_array);
    if ty != "ExternalName" && ports.is_none_or(Vec::is_empty) {
        causes.push(Cause::required("spec.ports"));
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &port.into(),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
}

fn service_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (name, age_cell) = (text(meta_str(obj, "name")), age_cell(obj, now));
    let ty = field_str(obj, &["spec", "type"]).unwrap_or("ClusterIP");
    let cluster_ip = field_str(obj, &["spec", "clusterIP"]).unwrap_or_default();
    let mut external: Vec<String> = arr(obj, &["spec", "externalIPs"])
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let external_cell = match ty {
        "LoadBalancer" => {
            for i in arr(obj, &["status", "loadBalancer", "ingress"]) {
                if let Some(ip) = field_str(i, &["ip"]).or(field_str(i, &["hostname"])) {
                    external.push(ip.to_string());
                }
            }
            if external.is_empty() {
                "<pending>".to_string()
            } else {
                external.join(",")
            }
        }
        "ExternalName" => field_str(obj, &["spec", "externalName"])
            .unwrap_or_default()
            .to_string(),
        _ if external.is_empty() => "<none>".to_string(),
        _ => external.join(","),
    };
    let ports: Vec<String> = arr(obj, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = field_str(p, &["protocol"]).unwrap_or("TCP");
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) if np != 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    let selector = field(obj, &["spec", "selector"]);
    vec![
        name,
        ty.into(),
        none_if_empty(cluster_ip.to_string()),
        external_cell.into(),
        none_if_empty(ports.join(",")),
        age_cell,
        none_if_empty(format_label_selector(selector)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_ports_default_target_port_and_protocol() {
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        Services.default(&mut svc);
        assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
        assert_eq!(svc["spec"]["ports"][0]["protocol"], "TCP");
        assert_eq!(svc["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(svc["spec"]["internalTrafficPolicy"], "Cluster");
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
    }

    #[test]
    fn service_row_shows_pending_load_balancer() {
        let now = skiff_api::object::parse_time("2026-11-25T12:00:00Z").unwrap();
        let svc = json!({
            "metadata": {"name": "hello", "creationTimestamp": "2026-11-25T11:59:00Z"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.10", "selector": {"app": "hello"},
                     "ports": [{"port": 8080, "nodePort": 31000, "protocol": "TCP"}]},
        });
        assert_eq!(
            Services.cells(&svc, now),
            vec![
                json!("hello"),
                json!("LoadBalancer"),
                json!("10.43.0.10"),
                json!("<pending>"),
                json!("8080:31000/TCP"),
                json!("60s"),
                json!("app=hello")
            ]
        );
    }
}
