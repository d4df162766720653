//! A pod's defaults, as upstream's `SetDefaults_PodSpec` and `SetDefaults_Container` —
//! also those of every pod template (Deployments, ReplicaSets), which share them but for
//! requests taken from limits.

use serde_json::{Value, json};

use crate::registry::entry_default;

pub(crate) fn pod_template(obj: &mut Value) {
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

pub(crate) fn pod_spec(spec: &mut Value) {
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
pub(crate) fn requests_from_limits(spec: &mut Value) {
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
                .and_then(skiff_api::quantity::millis)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_request_their_limits_and_get_their_qos_class() {
        let mut p = json!({"spec": {"containers": [{"name": "c", "image": "x",
            "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}});
        let spec = p.get_mut("spec").unwrap();
        pod_spec(spec);
        requests_from_limits(spec);
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
}
