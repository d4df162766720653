//! Nodes: the machines pods run on, registered and kept alive by their agents.

use serde_json::Value;
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, none_if_empty, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "Node", "nodes",
    "node", namespaced: false, short: ["no"], categories: [], sub: [Proxy, Status]);

pub struct Nodes;

impl Kind for Nodes {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(old) = old {
            validate_node_update(obj, old, &mut causes);
        }
        causes
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["spec.unschedulable"]
    }
}

impl Printer for Nodes {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Status", "string", 0, "The status of the node"),
            Column::new("Roles", "string", 0, "The roles of the node"),
            AGE,
            Column::new(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            Column::new(
                "Internal-IP",
                "string",
                1,
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            Column::new(
                "External-IP",
                "string",
                1,
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            Column::new(
                "OS-Image",
                "string",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            Column::new(
                "Kernel-Version",
                "string",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            Column::new(
                "Container-Runtime",
                "string",
                1,
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        node_cells(obj, now)
    }
}

/// A node's pod CIDRs are set once (by the node IPAM, or by the node at registration) and
/// never changed: its pods hold addresses from them. Upstream's rule and message.
fn validate_node_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let was = field(old, &["spec", "podCIDRs"])
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    if let Some(was) = was
        && field(new, &["spec", "podCIDRs"]).and_then(Value::as_array) != Some(was)
    {
        causes.push(Cause::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
}

fn node_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let (name, age_cell) = (text(meta_str(obj, "name")), age_cell(obj, now));
    let conditions = arr(obj, &["status", "conditions"]);
    let ready = conditions
        .iter()
        .find(|c| field_str(c, &["type"]) == Some("Ready"));
    let mut status = vec![
        match ready.and_then(|c| field_str(c, &["status"])) {
            Some("True") => "Ready",
            Some(_) => "NotReady",
            None => "Unknown",
        }
        .to_string(),
    ];
    if field(obj, &["spec", "unschedulable"]).and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles: Vec<String> = obj
        .get("metadata")
        .and_then(|m| m.get("labels"))
        .and_then(Value::as_object)
        .map(|labels| {
            labels
                .keys()
                .filter_map(|k| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    roles.sort();
    let address = |ty: &str| {
        arr(obj, &["status", "addresses"])
            .iter()
            .find(|a| field_str(a, &["type"]) == Some(ty))
            .and_then(|a| field_str(a, &["address"]))
            .unwrap_or("<none>")
            .to_string()
    };
    let info = |k: &str| text(field_str(obj, &["status", "nodeInfo", k]));
    vec![
        name,
        status.join(",").into(),
        none_if_empty(roles.join(",")),
        age_cell,
        info("kubeletVersion"),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_row_reads_conditions_and_roles() {
        let n = json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0+skiff"}},
        });
        let cells = Nodes.cells(&n, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(cells[1], "Ready,SchedulingDisabled");
        assert_eq!(cells[2], "control-plane");
        assert_eq!(cells[5], "10.0.0.1");
        assert_eq!(cells[6], "<none>");
    }
}
