//! Field defaults as upstream's `SetDefaults_*` functions set them, applied on every create
//! and update so stored objects look exactly like upstream's.

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;

/// Fills in the defaults of an object of type `rt`.
pub fn apply(rt: &ResourceType, obj: &mut Value) {
    match (rt.group, rt.kind) {
        ("apps", "Deployment") => deployment(obj),
        ("apps", "ReplicaSet") => {
            set_default(obj, "spec", "replicas", json!(1));
            pod_template(obj);
        }
        ("", "Pod") => {
            if let Some(spec) = obj.get_mut("spec") {
                pod_spec(spec);
                requests_from_limits(spec);
            }
        }
        ("", "Service") => service(obj),
        ("", "Namespace") => {
            set_default(obj, "spec", "finalizers", json!(["kubernetes"]));
            set_default(obj, "status", "phase", json!("Active"));
        }
        ("", "Secret") if obj.get("type").is_none() => obj["type"] = "Opaque".into(),
        _ => {}
    }
}

/// `obj.<section>.<key> = value` unless already set; creates the section.
fn set_default(obj: &mut Value, section: &str, key: &str, value: Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let section = map
        .entry(section)
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(section) = section.as_object_mut() {
        section.entry(key).or_insert(value);
    }
}

fn entry_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    map.entry(key).or_insert(value);
}

fn deployment(obj: &mut Value) {
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
    pod_template(obj);
}

fn pod_template(obj: &mut Value) {
    if let Some(spec) = obj
        .get_mut("spec")
        .and_then(|s| s.get_mut("template"))
        .and_then(|t| t.get_mut("spec"))
    {
        pod_spec(spec);
    }
}

/// Upstream's image pull policy rule: `Always` for `:latest` or untagged images, otherwise
/// `IfNotPresent` (digests count as pinned).
pub fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, "latest")) | None => "Always",
        Some(_) => "IfNotPresent",
    }
}

fn container(c: &mut Value) {
    let Some(map) = c.as_object_mut() else {
        return;
    };
    let image = map
        .get("image")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    entry_default(map, "imagePullPolicy", json!(default_pull_policy(&image)));
    entry_default(map, "terminationMessagePath", json!("/dev/termination-log"));
    entry_default(map, "terminationMessagePolicy", json!("File"));
    entry_default(map, "resources", json!({}));
    if let Some(ports) = map.get_mut("ports").and_then(Value::as_array_mut) {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            entry_default(p, "protocol", json!("TCP"));
        }
    }
}

fn pod_spec(spec: &mut Value) {
    let Some(map) = spec.as_object_mut() else {
        return;
    };
    entry_default(map, "restartPolicy", json!("Always"));
    entry_default(map, "terminationGracePeriodSeconds", json!(30));
    entry_default(map, "dnsPolicy", json!("ClusterFirst"));
    entry_default(map, "securityContext", json!({}));
    entry_default(map, "schedulerName", json!("default-scheduler"));
    entry_default(map, "enableServiceLinks", json!(true));
    for key in ["containers", "initContainers"] {
        if let Some(list) = map.get_mut(key).and_then(Value::as_array_mut) {
            list.iter_mut().for_each(container);
        }
    }
}

/// A pod's container that states limits but not requests requests its limits (upstream's
/// `SetDefaults_Pod`; templates are not defaulted this way).
fn requests_from_limits(spec: &mut Value) {
    for key in ["containers", "initContainers"] {
        let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in list {
            let Some(resources) = c.get_mut("resources").and_then(Value::as_object_mut) else {
                continue;
            };
            let Some(limits) = resources.get("limits").and_then(Value::as_object).cloned() else {
                continue;
            };
            let requests = resources.entry("requests").or_insert_with(|| json!({}));
            if let Some(requests) = requests.as_object_mut() {
                for (name, value) in limits {
                    requests.entry(name).or_insert(value);
                }
            }
        }
    }
}

/// A pod's quality-of-service class, as upstream decides it from cpu and memory: no requests
/// or limits anywhere is BestEffort; limits on both for every container, equal to the
/// requests, is Guaranteed; anything else Burstable.
pub fn qos_class(spec: &Value) -> &'static str {
    use std::collections::BTreeMap;
    let mut requests: BTreeMap<&str, i64> = BTreeMap::new();
    let mut limits: BTreeMap<&str, i64> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|k| spec.get(*k).and_then(Value::as_array))
        .flatten();
    for c in containers {
        let amount = |section: &str, name: &str| {
            c.get("resources")
                .and_then(|r| r.get(section))
                .and_then(|m| m.get(name))
                .and_then(Value::as_str)
                .and_then(crate::quantity::millis)
                .filter(|v| *v > 0)
        };
        let mut limited = 0;
        for name in ["cpu", "memory"] {
            if let Some(v) = amount("requests", name) {
                *requests.entry(name).or_default() += v;
            }
            if let Some(v) = amount("limits", name) {
                *limits.entry(name).or_default() += v;
                limited += 1;
            }
        }
        if limited < 2 {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed && requests == limits {
        return "Guaranteed";
    }
    "Burstable"
}

fn service(obj: &mut Value) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    #[test]
    fn pods_request_their_limits_and_get_their_qos_class() {
        let rt = lookup("", "v1", "pods").unwrap();
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}});
        apply(rt, &mut p);
        assert_eq!(
            p["spec"]["containers"][0]["resources"]["requests"],
            json!({"cpu": "500m", "memory": "64Mi"})
        );
        assert_eq!(qos_class(&p["spec"]), "Guaranteed");
        let burstable = json!({"containers": [{"resources": {"requests": {"cpu": "100m"}}}]});
        assert_eq!(qos_class(&burstable), "Burstable");
        let unequal = json!({"containers": [{"resources": {"requests": {"cpu": "0.5", "memory": "1Gi"},
            "limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&unequal), "Burstable");
        assert_eq!(
            qos_class(&json!({"containers": [{"name": "c"}]})),
            "BestEffort"
        );
    }

    #[test]
    fn deployments_get_upstream_defaults() {
        let rt = lookup("apps", "v1", "deployments").unwrap();
        let mut d = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "hello:v1"}]}}}});
        apply(rt, &mut d);
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
        let rt = lookup("apps", "v1", "deployments").unwrap();
        let mut d = json!({"spec": {"strategy": {"type": "Recreate"}}});
        apply(rt, &mut d);
        assert!(d["spec"]["strategy"].get("rollingUpdate").is_none());
    }

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("busybox"), "Always");
        assert_eq!(default_pull_policy("busybox:latest"), "Always");
        assert_eq!(default_pull_policy("localhost:5000/busybox"), "Always");
        assert_eq!(
            default_pull_policy("localhost:5000/busybox:1.36"),
            "IfNotPresent"
        );
        assert_eq!(default_pull_policy("busybox@sha256:abc"), "IfNotPresent");
    }

    #[test]
    fn service_ports_default_target_port_and_protocol() {
        let rt = lookup("", "v1", "services").unwrap();
        let mut s = json!({"spec": {"ports": [{"port": 80}]}});
        apply(rt, &mut s);
        assert_eq!(
            s["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(s["spec"]["type"], "ClusterIP");
        assert_eq!(s["spec"]["sessionAffinity"], "None");
    }
}
