//! Server-side printing: `meta.k8s.io/v1 Table` rows with the columns upstream's printers
//! give each kind (what `kubectl get` shows). Columns with priority 1 appear only with
//! `-o wide`.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::object::{age, field, field_str, meta_str};
use crate::resources::ResourceType;

/// One column: (name, type, format, priority, description).
struct Column(&'static str, &'static str, &'static str, u8, &'static str);

const NAME: Column = Column(
    "Name",
    "string",
    "name",
    0,
    "Name must be unique within a namespace.",
);
const AGE: Column = Column(
    "Age",
    "string",
    "",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

fn columns(rt: &ResourceType) -> Vec<Column> {
    let c = |n, t, p, d| Column(n, t, "", p, d);
    match (rt.group, rt.kind) {
        ("", "Pod") => vec![
            NAME,
            c(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            c(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            c(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            AGE,
            c(
                "IP",
                "string",
                1,
                "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
            ),
            c(
                "Node",
                "string",
                1,
                "NodeName is a request to schedule this pod onto a specific node.",
            ),
            c(
                "Nominated Node",
                "string",
                1,
                "nominatedNodeName is set when this pod preempts other pods on the node.",
            ),
            c(
                "Readiness Gates",
                "string",
                1,
                "If specified, all readiness gates will be evaluated for pod readiness.",
            ),
        ],
        ("apps", "Deployment") => vec![
            NAME,
            c("Ready", "string", 0, "Number of the pod with ready state"),
            c(
                "Up-to-date",
                "string",
                0,
                "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
            ),
            c(
                "Available",
                "string",
                0,
                "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
            ),
            AGE,
            c(
                "Containers",
                "string",
                1,
                "Names of each container in the template.",
            ),
            c(
                "Images",
                "string",
                1,
                "Images referenced by each container in the template.",
            ),
            c(
                "Selector",
                "string",
                1,
                "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
            ),
        ],
        ("apps", "ReplicaSet") => vec![
            NAME,
            c(
                "Desired",
                "integer",
                0,
                "Replicas is the number of desired replicas.",
            ),
            c(
                "Current",
                "integer",
                0,
                "Replicas is the most recently observed number of replicas.",
            ),
            c(
                "Ready",
                "integer",
                0,
                "The number of ready replicas for this replica set.",
            ),
            AGE,
            c(
                "Containers",
                "string",
                1,
                "Names of each container in the template.",
            ),
            c(
                "Images",
                "string",
                1,
                "Images referenced by each container in the template.",
            ),
            c(
                "Selector",
                "string",
                1,
                "Selector is a label query over pods that should match the replica count.",
            ),
        ],
        ("", "Service") => vec![
            NAME,
            c(
                "Type",
                "string",
                0,
                "type determines how the Service is exposed.",
            ),
            c(
                "Cluster-IP",
                "string",
                0,
                "clusterIP is the IP address of the service and is usually assigned randomly.",
            ),
            c(
                "External-IP",
                "string",
                0,
                "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
            ),
            c(
                "Port(s)",
                "string",
                0,
                "The list of ports that are exposed by this service.",
            ),
            AGE,
            c(
                "Selector",
                "string",
                1,
                "Route service traffic to pods with label keys and values matching this selector.",
            ),
        ],
        ("", "Node") => vec![
            NAME,
            c("Status", "string", 0, "The status of the node"),
            c("Roles", "string", 0, "The roles of the node"),
            AGE,
            c(
                "Version",
                "string",
                0,
                "Kubelet Version reported by the node.",
            ),
            c(
                "Internal-IP",
                "string",
                1,
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            c(
                "External-IP",
                "string",
                1,
                "List of addresses reachable to the node. Queried from cloud provider, if available.",
            ),
            c(
                "OS-Image",
                "string",
                1,
                "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).",
            ),
            c(
                "Kernel-Version",
                "string",
                1,
                "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).",
            ),
            c(
                "Container-Runtime",
                "string",
                1,
                "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).",
            ),
        ],
        ("", "Namespace") => vec![
            NAME,
            c("Status", "string", 0, "The status of the namespace"),
            AGE,
        ],
        ("", "ConfigMap") => vec![
            NAME,
            c("Data", "string", 0, "Data contains the configuration data."),
            AGE,
        ],
        ("", "Secret") => vec![
            NAME,
            c("Type", "string", 0, "The type of the secret"),
            c("Data", "string", 0, "Data contains the secret data."),
            AGE,
        ],
        ("", "ServiceAccount") => vec![
            NAME,
            c(
                "Secrets",
                "string",
                0,
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            AGE,
        ],
        ("", "Endpoints") => vec![
            NAME,
            c(
                "Endpoints",
                "string",
                0,
                "Endpoints is the list of endpoints in the object.",
            ),
            AGE,
        ],
        ("discovery.k8s.io", "EndpointSlice") => vec![
            NAME,
            c("AddressType", "string", 0, "The IP protocol for this slice"),
            c("Ports", "string", 0, "The ports for this slice"),
            c("Endpoints", "string", 0, "The endpoints for this slice"),
            AGE,
        ],
        ("coordination.k8s.io", "Lease") => vec![
            NAME,
            c("Holder", "string", 0, "The holder of the lease"),
            AGE,
        ],
        (_, "Event") => vec![
            c("Last Seen", "string", 0, "Time when last event occurred"),
            c("Type", "string", 0, "Type of event"),
            c("Reason", "string", 0, "Reason of the event"),
            c("Object", "string", 0, "The object that this event is about"),
            c("Subobject", "string", 1, "Subobject of the event"),
            c("Source", "string", 1, "Event source"),
            c("Message", "string", 0, "Message of the event"),
            c("First Seen", "string", 1, "Time when first event occurred"),
            c("Count", "string", 1, "Count of this event"),
            Column("Name", "string", "name", 1, "Name of the event"),
        ],
        _ => vec![
            NAME,
            Column(
                "Created At",
                "date",
                "",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ],
    }
}

/// The `columnDefinitions` of a kind's Table.
pub fn column_definitions(rt: &ResourceType) -> Value {
    columns(rt)
        .into_iter()
        .map(|Column(name, ty, format, priority, description)| {
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect()
}

/// One Table row for an object: its cells and the object's metadata (kubectl needs it for
/// `-A`'s NAMESPACE column and `--show-labels`).
pub fn row(rt: &ResourceType, obj: &Value, now: OffsetDateTime) -> Value {
    let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({
        "cells": cells(rt, obj, now),
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
        },
    })
}

/// A whole Table for a list of objects.
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    now: OffsetDateTime,
) -> Value {
    let metadata = list_meta(resource_version, continue_token);
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(rt),
        "rows": objects.iter().map(|o| row(rt, o, now)).collect::<Vec<_>>(),
    })
}

/// A cell whose text depends on the time it is printed.
#[derive(Clone, Debug)]
enum Timed {
    Age(Option<OffsetDateTime>),
    Restarts(i64, Option<OffsetDateTime>),
}

/// A list's `ListMeta`: its revision, and where the next page starts when there is one.
pub fn list_meta(resource_version: &str, continue_token: Option<&str>) -> Value {
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = c.into();
    }
    meta
}

const OBJECT_META: &str = ".apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// A row computed once, when the object changed: its cells, with the time-dependent ones
/// (AGE, RESTARTS' "ago", events' LAST/FIRST SEEN) rendered when printed, and its metadata
/// (without managedFields, which no table shows) as JSON.
#[derive(Clone, Debug)]
pub struct PrecomputedRow {
    cells: Vec<Value>,
    timed: Vec<(usize, Timed)>,
    metadata: Vec<u8>,
}

impl PrecomputedRow {
    pub fn new(rt: &ResourceType, obj: &Value) -> PrecomputedRow {
        let epoch = OffsetDateTime::UNIX_EPOCH;
        let cells = cells(rt, obj, epoch);
        let parse = |t: Option<&str>| t.and_then(crate::object::parse_time);
        let mut timed = Vec::new();
        for (i, Column(name, ..)) in columns(rt).iter().enumerate() {
            let t = match (rt.kind, *name) {
                (_, "Age") => Timed::Age(parse(meta_str(obj, "creationTimestamp"))),
                ("Pod", "Restarts") => {
                    let (count, last) = pod_restarts(obj);
                    Timed::Restarts(count, last)
                }
                ("Event", "Last Seen") => Timed::Age(parse(event_times(obj).0)),
                ("Event", "First Seen") => Timed::Age(parse(event_times(obj).1)),
                _ => continue,
            };
            timed.push((i, t));
        }
        let mut metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = metadata.as_object_mut() {
            m.remove("managedFields");
        }
        PrecomputedRow {
            cells,
            timed,
            metadata: {
                let mut out = Vec::new();
                crate::wire_json::write_as(&mut out, &metadata, OBJECT_META);
                out
            },
        }
    }

    fn cells_at(&self, now: OffsetDateTime) -> Vec<Value> {
        let mut cells = self.cells.clone();
        for (i, t) in &self.timed {
            cells[*i] = match t {
                Timed::Age(Some(at)) => {
                    crate::object::human_duration((now - *at).whole_seconds()).into()
                }
                Timed::Age(None) => "<unknown>".into(),
                Timed::Restarts(count, last) => restarts_cell(*count, *last, now),
            };
        }
        cells
    }
}

/// A Table of precomputed rows, as JSON bytes.
pub fn table_json_from_rows<'a>(
    rt: &ResourceType,
    rows: impl Iterator<Item = &'a PrecomputedRow>,
    resource_version: &str,
    continue_token: Option<&str>,
    now: OffsetDateTime,
) -> Vec<u8> {
    let mut out = Vec::new();
    let head = list_meta(resource_version, continue_token);
    out.extend_from_slice(
        format!(
            r#"{{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{head},"columnDefinitions":{},"rows":["#,
            column_definitions(rt)
        )
        .as_bytes(),
    );
    for (i, row) in rows.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"cells":"#);
        serde_json::to_writer(&mut out, &row.cells_at(now)).expect("JSON values serialize");
        out.extend_from_slice(br#","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#);
        out.extend_from_slice(&row.metadata);
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"]}");
    out
}

fn s(v: Option<&str>) -> Value {
    Value::String(v.unwrap_or_default().to_string())
}

fn int(obj: &Value, path: &[&str]) -> i64 {
    field(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

fn arr<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    field(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn len_of(obj: &Value, key: &str) -> usize {
    match obj.get(key) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn none_if_empty(s: String) -> Value {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

/// `a=b,c in (x,y),!d` for a `metav1.LabelSelector`, or `a=b` for a plain label map: how
/// upstream prints selectors (the Selector columns, `Scale.status.selector`).
pub fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let labels = sel.get("matchLabels").unwrap_or(sel);
    // Sorted by key, as upstream formats label sets.
    let mut pairs: Vec<(&String, &str)> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v)))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    let mut parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for e in arr(sel, &["matchExpressions"]) {
        let key = field_str(e, &["key"]).unwrap_or_default();
        let values: Vec<&str> = arr(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match field_str(e, &["operator"]) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => continue,
        });
    }
    parts.join(",")
}

fn template_containers(obj: &Value) -> (String, String) {
    let containers = arr(obj, &["spec", "template", "spec", "containers"]);
    let names: Vec<&str> = containers
        .iter()
        .filter_map(|c| field_str(c, &["name"]))
        .collect();
    let images: Vec<&str> = containers
        .iter()
        .filter_map(|c| field_str(c, &["image"]))
        .collect();
    (names.join(","), images.join(","))
}

fn cells(rt: &ResourceType, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let name = s(meta_str(obj, "name"));
    let age_cell = Value::String(age(meta_str(obj, "creationTimestamp"), now));
    match (rt.group, rt.kind) {
        ("", "Pod") => pod_cells(obj, name, age_cell, now),
        ("apps", "Deployment") => {
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
        ("apps", "ReplicaSet") => {
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
        ("", "Service") => service_cells(obj, name, age_cell),
        ("", "Node") => node_cells(obj, name, age_cell),
        ("", "Namespace") => vec![
            name,
            s(Some(
                field_str(obj, &["status", "phase"]).unwrap_or("Active"),
            )),
            age_cell,
        ],
        ("", "ConfigMap") => vec![
            name,
            (len_of(obj, "data") + len_of(obj, "binaryData")).into(),
            age_cell,
        ],
        ("", "Secret") => vec![
            name,
            s(Some(field_str(obj, &["type"]).unwrap_or("Opaque"))),
            len_of(obj, "data").into(),
            age_cell,
        ],
        ("", "ServiceAccount") => vec![name, len_of(obj, "secrets").into(), age_cell],
        ("", "Endpoints") => vec![name, none_if_empty(endpoints_string(obj)), age_cell],
        ("discovery.k8s.io", "EndpointSlice") => {
            let ports: Vec<String> = arr(obj, &["ports"])
                .iter()
                .filter_map(|p| p.get("port").and_then(Value::as_i64).map(|n| n.to_string()))
                .collect();
            let addrs: Vec<&str> = arr(obj, &["endpoints"])
                .iter()
                .flat_map(|e| arr(e, &["addresses"]).iter().filter_map(Value::as_str))
                .collect();
            vec![
                name,
                s(field_str(obj, &["addressType"])),
                none_if_empty(if ports.is_empty() {
                    String::new()
                } else {
                    ports.join(",")
                }),
                none_if_empty(truncated_list(&addrs)),
                age_cell,
            ]
        }
        ("coordination.k8s.io", "Lease") => vec![
            name,
            s(field_str(obj, &["spec", "holderIdentity"])),
            age_cell,
        ],
        (_, "Event") => event_cells(obj, name, now),
        _ => vec![name, s(meta_str(obj, "creationTimestamp"))],
    }
}

/// At most three entries, then `+ N more...`, as upstream prints address lists.
fn truncated_list(items: &[&str]) -> String {
    if items.len() <= 3 {
        return items.join(",");
    }
    format!("{} + {} more...", items[..3].join(","), items.len() - 3)
}

fn endpoints_string(obj: &Value) -> String {
    let mut out = Vec::new();
    for subset in arr(obj, &["subsets"]) {
        let ports: Vec<i64> = arr(subset, &["ports"])
            .iter()
            .filter_map(|p| p.get("port").and_then(Value::as_i64))
            .collect();
        for a in arr(subset, &["addresses"]) {
            let ip = field_str(a, &["ip"]).unwrap_or_default();
            if ports.is_empty() {
                out.push(ip.to_string());
            }
            for p in &ports {
                out.push(format!("{ip}:{p}"));
            }
        }
    }
    let refs: Vec<&str> = out.iter().map(String::as_str).collect();
    truncated_list(&refs)
}

/// A pod's restarts across its containers, and when the last one ended.
fn pod_restarts(obj: &Value) -> (i64, Option<OffsetDateTime>) {
    let mut restarts = 0;
    let mut last: Option<OffsetDateTime> = None;
    for c in arr(obj, &["status", "containerStatuses"]) {
        restarts += c.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        if let Some(t) = field_str(c, &["lastState", "terminated", "finishedAt"])
            .and_then(crate::object::parse_time)
        {
            last = Some(last.map_or(t, |l| l.max(t)));
        }
    }
    (restarts, last)
}

/// RESTARTS: `2`, or `2 (5m ago)` when the last restart's time is known.
fn restarts_cell(restarts: i64, last: Option<OffsetDateTime>, now: OffsetDateTime) -> Value {
    match last {
        Some(t) => format!(
            "{restarts} ({} ago)",
            crate::object::human_duration((now - t).whole_seconds())
        )
        .into(),
        None => restarts.to_string().into(),
    }
}

/// An event's LAST SEEN and FIRST SEEN timestamps, from whichever fields it carries.
pub fn event_times(obj: &Value) -> (Option<&str>, Option<&str>) {
    let last = field_str(obj, &["lastTimestamp"])
        .or(field_str(obj, &["eventTime"]))
        .or(field_str(obj, &["series", "lastObservedTime"]))
        .or(meta_str(obj, "creationTimestamp"));
    let first = field_str(obj, &["firstTimestamp"]).or(field_str(obj, &["eventTime"]));
    (last, first)
}

fn pod_cells(obj: &Value, name: Value, age_cell: Value, now: OffsetDateTime) -> Vec<Value> {
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

fn service_cells(obj: &Value, name: Value, age_cell: Value) -> Vec<Value> {
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

fn node_cells(obj: &Value, name: Value, age_cell: Value) -> Vec<Value> {
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
    let info = |k: &str| s(field_str(obj, &["status", "nodeInfo", k]));
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

fn event_cells(obj: &Value, name: Value, now: OffsetDateTime) -> Vec<Value> {
    let regarding = obj.get("involvedObject").or(obj.get("regarding"));
    let kind = regarding
        .and_then(|r| field_str(r, &["kind"]))
        .unwrap_or_default()
        .to_lowercase();
    let rname = regarding
        .and_then(|r| field_str(r, &["name"]))
        .unwrap_or_default();
    let (last, first) = event_times(obj);
    let source = field_str(obj, &["source", "component"])
        .or(field_str(obj, &["reportingComponent"]))
        .or(field_str(obj, &["reportingController"]))
        .unwrap_or_default();
    vec![
        age(last, now).into(),
        s(field_str(obj, &["type"])),
        s(field_str(obj, &["reason"])),
        format!("{kind}/{rname}").into(),
        s(regarding.and_then(|r| field_str(r, &["fieldPath"]))),
        s(Some(source)),
        s(field_str(obj, &["message"]).or(field_str(obj, &["note"]))),
        age(first, now).into(),
        int(obj, &["count"]).max(1).to_string().into(),
        name,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::parse_time;
    use crate::resources::lookup;

    fn now() -> OffsetDateTime {
        parse_time("2026-11-25T12:00:00Z").unwrap()
    }

    #[test]
    fn pod_row_shows_ready_status_restarts() {
        let rt = lookup("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "web-1", "creationTimestamp": "2026-11-25T11:55:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "n1"},
            "status": {"phase": "Running", "podIP": "10.42.0.5", "containerStatuses": [
                {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"finishedAt": "2026-11-25T11:58:00Z"}}},
                {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
            ]}
        });
        let r = row(rt, &pod, now());
        assert_eq!(
            r["cells"],
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
        assert_eq!(column_definitions(rt).as_array().unwrap().len(), 9);
    }

    #[test]
    fn service_row_shows_pending_load_balancer() {
        let rt = lookup("", "v1", "services").unwrap();
        let svc = json!({
            "metadata": {"name": "hello", "creationTimestamp": "2026-11-25T11:59:00Z"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.10", "selector": {"app": "hello"},
                     "ports": [{"port": 8080, "nodePort": 31000, "protocol": "TCP"}]},
        });
        assert_eq!(
            row(rt, &svc, now())["cells"],
            json!([
                "hello",
                "LoadBalancer",
                "10.43.0.10",
                "<pending>",
                "8080:31000/TCP",
                "60s",
                "app=hello"
            ])
        );
    }

    #[test]
    fn deployment_row_counts_replicas() {
        let rt = lookup("apps", "v1", "deployments").unwrap();
        let d = json!({
            "metadata": {"name": "hello"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "hello"}},
                     "template": {"spec": {"containers": [{"name": "c", "image": "img:v1"}]}}},
            "status": {"readyReplicas": 3, "updatedReplicas": 4, "availableReplicas": 3},
        });
        assert_eq!(
            row(rt, &d, now())["cells"],
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

    #[test]
    fn precomputed_rows_print_like_fresh_ones_at_any_time() {
        let rt = lookup("", "v1", "pods").unwrap();
        let pod = json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-11-25T11:00:00Z", "managedFields": [{"manager": "x"}]},
            "spec": {"containers": [{"name": "a"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "a", "ready": true, "restartCount": 1,
                "lastState": {"terminated": {"finishedAt": "2026-11-25T11:50:00Z"}}}]}
        });
        let row = PrecomputedRow::new(rt, &pod);
        for later in [0, 3600, 86400 * 3] {
            let at = now() + time::Duration::seconds(later);
            let table: Value = serde_json::from_slice(&table_json_from_rows(
                rt,
                std::iter::once(&row),
                "5",
                None,
                at,
            ))
            .unwrap();
            let mut fresh = super::table(rt, std::slice::from_ref(&pod), "5", None, at);
            fresh["rows"][0]["object"]["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
            assert_eq!(table, fresh, "at +{later}s");
        }
        let ev = lookup("", "v1", "events").unwrap();
        let event = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
                           "lastTimestamp": "2026-11-25T11:59:00Z", "firstTimestamp": "2026-11-25T11:00:00Z", "count": 3});
        let row = PrecomputedRow::new(ev, &event);
        let cells = row.cells_at(now());
        assert_eq!(
            (cells[0].as_str(), cells[7].as_str()),
            (Some("60s"), Some("60m"))
        );
    }

    #[test]
    fn node_row_reads_conditions_and_roles() {
        let rt = lookup("", "v1", "nodes").unwrap();
        let n = json!({
            "metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "addresses": [{"type": "InternalIP", "address": "10.0.0.1"}],
                       "nodeInfo": {"kubeletVersion": "v1.33.0+skiff"}},
        });
        let cells = row(rt, &n, now())["cells"].clone();
        assert_eq!(cells[1], "Ready,SchedulingDisabled");
        assert_eq!(cells[2], "control-plane");
        assert_eq!(cells[5], "10.0.0.1");
        assert_eq!(cells[6], "<none>");
    }
}
