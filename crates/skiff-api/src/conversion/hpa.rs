//! HorizontalPodAutoscalers between `autoscaling/v2` (their storage form) and
//! `autoscaling/v1`, as upstream converts them: v1 holds one CPU utilization target; every
//! other v2 metric, the behavior, the conditions and the other current metrics travel in
//! v1's `autoscaling.alpha.kubernetes.io/*` annotations (metrics in the v1 `MetricSpec`
//! shape), so an object read and written back through v1 loses nothing.
//!
//! Invariant: `to_v2(to_v1(x)) == x` for a stored (defaulted) v2 object.

use serde_json::{Map, Value, json};

const METRICS: &str = "autoscaling.alpha.kubernetes.io/metrics";
const CURRENT_METRICS: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
const CONDITIONS: &str = "autoscaling.alpha.kubernetes.io/conditions";
const BEHAVIOR: &str = "autoscaling.alpha.kubernetes.io/behavior";

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

/// A v2 metric target as the v1 alpha shape names its fields (`target…`).
fn target_fields(target: &Value, out: &mut Map<String, Value>, prefix: &str) {
    let put = |out: &mut Map<String, Value>, key: String, v: &Value| {
        if !v.is_null() {
            out.insert(key, v.clone());
        }
    };
    put(
        out,
        format!("{prefix}AverageUtilization"),
        &target["averageUtilization"],
    );
    put(
        out,
        format!("{prefix}AverageValue"),
        &target["averageValue"],
    );
    put(out, format!("{prefix}Value"), &target["value"]);
}

/// The metric sources named by a metric name: (type, JSON key, what v1 calls the metric's
/// selector).
const NAMED_SOURCES: &[(&str, &str, &str)] = &[
    ("Pods", "pods", "selector"),
    ("Object", "object", "selector"),
    ("External", "external", "metricSelector"),
];

/// The JSON key of a resource metric source (`resource`, `containerResource`).
fn resource_key(ty: &str) -> Option<&'static str> {
    match ty {
        "Resource" => Some("resource"),
        "ContainerResource" => Some("containerResource"),
        _ => None,
    }
}

/// A v2 `MetricSpec` (or `MetricStatus`, `current`) in v1's annotation shape.
fn metric_to_v1(m: &Value, target_key: &str, prefix: &str) -> Value {
    let ty = m["type"].as_str().unwrap_or_default();
    let mut inner = Map::new();
    let key = if let Some(key) = resource_key(ty) {
        inner.insert("name".into(), m[key]["name"].clone());
        if let Some(c) = m[key].get("container") {
            inner.insert("container".into(), c.clone());
        }
        key
    } else if let Some((_, key, selector_key)) = NAMED_SOURCES.iter().find(|(t, ..)| *t == ty) {
        let source = &m[*key];
        if let Some(described) = source.get("describedObject") {
            inner.insert("target".into(), described.clone());
        }
        inner.insert("metricName".into(), source["metric"]["name"].clone());
        if let Some(sel) = source["metric"].get("selector") {
            inner.insert((*selector_key).into(), sel.clone());
        }
        key
    } else {
        return m.clone();
    };
    target_fields(&m[key][target_key], &mut inner, prefix);
    json!({"type": ty, key: inner})
}

/// The v2 target (`{type, averageUtilization|averageValue|value}`) from v1's fields.
fn target_from(inner: &Value, prefix: &str, status: bool) -> Value {
    let get = |k: &str| inner.get(format!("{prefix}{k}")).cloned();
    let mut t = Map::new();
    if let Some(u) = get("AverageUtilization") {
        if !status {
            t.insert("type".into(), "Utilization".into());
        }
        t.insert("averageUtilization".into(), u);
    }
    if let Some(v) = get("AverageValue") {
        if !status && !t.contains_key("type") {
            t.insert("type".into(), "AverageValue".into());
        }
        t.insert("averageValue".into(), v);
    }
    if let Some(v) = get("Value") {
        if !status && !t.contains_key("type") {
            t.insert("type".into(), "Value".into());
        }
        t.insert("value".into(), v);
    }
    t.into()
}

fn metric_to_v2(m: &Value, target_key: &str, prefix: &str) -> Value {
    let status = target_key == "current";
    let ty = m["type"].as_str().unwrap_or_default();
    if let Some(key) = resource_key(ty) {
        let inner = &m[key];
        let mut out =
            json!({"name": inner["name"], target_key: target_from(inner, prefix, status)});
        if let Some(c) = inner.get("container") {
            out["container"] = c.clone();
        }
        return json!({"type": ty, key: out});
    }
    let Some((_, key, selector_key)) = NAMED_SOURCES.iter().find(|(t, ..)| *t == ty) else {
        return m.clone();
    };
    let inner = &m[*key];
    let mut metric = json!({"name": inner["metricName"]});
    if let Some(sel) = inner.get(*selector_key) {
        metric["selector"] = sel.clone();
    }
    let mut out = json!({"metric": metric, target_key: target_from(inner, prefix, status)});
    if let Some(described) = inner.get("target") {
        out["describedObject"] = described.clone();
    }
    json!({"type": ty, *key: out})
}

/// The status fields both versions have alike.
fn common_status(status: &Value) -> Map<String, Value> {
    [
        "observedGeneration",
        "lastScaleTime",
        "currentReplicas",
        "desiredReplicas",
    ]
    .into_iter()
    .filter_map(|k| status.get(k).map(|v| (k.to_string(), v.clone())))
    .collect()
}

fn annotations(obj: &mut Value) -> &mut Map<String, Value> {
    let meta = crate::object::metadata_mut(obj);
    let a = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !a.is_object() {
        *a = Value::Object(Map::new());
    }
    a.as_object_mut().expect("made an object")
}

fn annotate(obj: &mut Value, key: &str, items: &Value) {
    let empty = items.is_null() || items.as_array().is_some_and(Vec::is_empty);
    if !empty {
        annotations(obj).insert(key.into(), items.to_string().into());
    }
}

fn take_annotation(obj: &mut Value, key: &str) -> Option<Value> {
    let a = obj
        .get_mut("metadata")?
        .get_mut("annotations")?
        .as_object_mut()?;
    let text = a.remove(key)?;
    if a.is_empty() {
        obj["metadata"]
            .as_object_mut()
            .expect("has metadata")
            .remove("annotations");
    }
    serde_json::from_str(text.as_str()?).ok()
}

/// A stored (v2) autoscaler as `autoscaling/v1` presents it.
pub fn to_v1(mut v2: Value) -> Value {
    let spec = v2.get("spec").cloned().unwrap_or_default();
    let status = v2.get("status").cloned().unwrap_or_default();
    let metrics = spec["metrics"].as_array().cloned().unwrap_or_default();
    let cpu = metrics.iter().find(|m| is_cpu_utilization(m));
    let others: Vec<Value> = metrics
        .iter()
        .filter(|m| !is_cpu_utilization(m))
        .map(|m| metric_to_v1(m, "target", "target"))
        .collect();
    annotate(&mut v2, METRICS, &Value::Array(others));
    if let Some(b) = spec.get("behavior") {
        annotate(&mut v2, BEHAVIOR, b);
    }
    let currents = status["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let current_cpu = currents.iter().find(|m| {
        m["type"] == "Resource"
            && m["resource"]["name"] == "cpu"
            && m["resource"]["current"].get("averageUtilization").is_some()
    });
    let other_currents: Vec<Value> = currents
        .iter()
        .filter(|m| Some(*m) != current_cpu)
        .map(|m| metric_to_v1(m, "current", "current"))
        .collect();
    annotate(&mut v2, CURRENT_METRICS, &Value::Array(other_currents));
    annotate(&mut v2, CONDITIONS, &status["conditions"]);

    let mut v1_spec = json!({
        "scaleTargetRef": spec["scaleTargetRef"],
        "maxReplicas": spec["maxReplicas"],
    });
    if let Some(min) = spec.get("minReplicas") {
        v1_spec["minReplicas"] = min.clone();
    }
    if let Some(u) = cpu.map(|m| &m["resource"]["target"]["averageUtilization"]) {
        v1_spec["targetCPUUtilizationPercentage"] = u.clone();
    }
    let mut v1_status = common_status(&status);
    if let Some(c) = current_cpu {
        v1_status.insert(
            "currentCPUUtilizationPercentage".into(),
            c["resource"]["current"]["averageUtilization"].clone(),
        );
    }
    v2["apiVersion"] = "autoscaling/v1".into();
    v2["spec"] = v1_spec;
    if v2.get("status").is_some() {
        v2["status"] = v1_status.into();
    }
    v2
}

/// An `autoscaling/v1` autoscaler in its storage (v2) form.
pub fn to_v2(mut v1: Value) -> Value {
    let spec = v1.get("spec").cloned().unwrap_or_default();
    let status = v1.get("status").cloned();
    let mut metrics = Vec::new();
    if let Some(u) = spec.get("targetCPUUtilizationPercentage") {
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": u}}}));
    }
    if let Some(Value::Array(others)) = take_annotation(&mut v1, METRICS) {
        metrics.extend(others.iter().map(|m| metric_to_v2(m, "target", "target")));
    }
    if metrics.is_empty() {
        // v2's default, which upstream applies when it reads the stored object.
        metrics.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": 80}}}));
    }
    let mut v2_spec = json!({
        "scaleTargetRef": spec["scaleTargetRef"],
        "maxReplicas": spec["maxReplicas"],
        "metrics": metrics,
    });
    if let Some(min) = spec.get("minReplicas") {
        v2_spec["minReplicas"] = min.clone();
    }
    if let Some(b) = take_annotation(&mut v1, BEHAVIOR) {
        v2_spec["behavior"] = b;
    }
    let conditions = take_annotation(&mut v1, CONDITIONS);
    let other_currents = take_annotation(&mut v1, CURRENT_METRICS);
    if let Some(status) = status {
        let mut v2_status = common_status(&status);
        let mut currents = Vec::new();
        if let Some(u) = status.get("currentCPUUtilizationPercentage") {
            currents.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": u}}}));
        }
        if let Some(Value::Array(others)) = other_currents {
            currents.extend(others.iter().map(|m| metric_to_v2(m, "current", "current")));
        }
        if !currents.is_empty() {
            v2_status.insert("currentMetrics".into(), currents.into());
        }
        if let Some(c) = conditions {
            v2_status.insert("conditions".into(), c);
        }
        v1["status"] = v2_status.into();
    }
    v1["apiVersion"] = "autoscaling/v2".into();
    v1["spec"] = v2_spec;
    v1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored() -> Value {
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 10,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}},
                    {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}},
                    {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "a"}}},
                        "target": {"type": "Value", "value": "30"}}},
                    {"type": "Object", "object": {"describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                        "metric": {"name": "rps"}, "target": {"type": "Value", "value": "2k"}}},
                    {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                        "target": {"type": "Utilization", "averageUtilization": 50}}}],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 60}}},
            "status": {"currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70, "averageValue": "140m"}}},
                    {"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "300Mi"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "ReadyForNewScale"}]}})
    }

    #[test]
    fn v1_shows_the_cpu_target_and_keeps_the_rest_in_annotations() {
        let v1 = to_v1(stored());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 60);
        assert_eq!(v1["spec"]["minReplicas"], 2);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 70);
        let metrics: Value =
            serde_json::from_str(v1["metadata"]["annotations"][METRICS].as_str().unwrap()).unwrap();
        assert_eq!(
            metrics[0],
            json!({"type": "Resource", "resource": {"name": "memory", "targetAverageValue": "500Mi"}})
        );
        assert_eq!(
            metrics[1],
            json!({"type": "Pods", "pods": {"metricName": "qps", "targetAverageValue": "10"}})
        );
        assert!(v1["metadata"]["annotations"][CONDITIONS].is_string());
    }

    #[test]
    fn a_round_trip_through_v1_loses_nothing() {
        let v2 = stored();
        let back = to_v2(to_v1(v2.clone()));
        // The CPU's current average value has no place in v1 (nor upstream's).
        let mut expected = v2;
        expected["status"]["currentMetrics"][0]["resource"]["current"] =
            json!({"averageUtilization": 70});
        assert_eq!(back, expected);
    }

    #[test]
    fn a_v1_object_without_a_target_gets_v2s_default() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"}, "spec": {"maxReplicas": 3,
                "scaleTargetRef": {"kind": "Deployment", "name": "web"}}});
        let v2 = to_v2(v1);
        assert_eq!(
            v2["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert!(v2["metadata"].get("annotations").is_none());
        assert_eq!(to_v1(v2)["spec"]["targetCPUUtilizationPercentage"], 80);
    }
}
