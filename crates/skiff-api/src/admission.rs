//! Mutating admission that upstream's API server applies by default.

use serde_json::{Value, json};

/// The taints a node gets when it is not ready or unreachable (the node lifecycle
/// controller puts them on).
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// DefaultTolerationSeconds: every new pod tolerates its node being not ready or unreachable
/// (NoExecute) for a while — `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`, 300 by default — unless it already says how
/// long it tolerates them. After that its node's pods are evicted.
pub fn default_toleration_seconds(
    pod: &mut Value,
    not_ready_seconds: i64,
    unreachable_seconds: i64,
) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    let covers = |t: &Value, key: &str| {
        let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        (t_key == key || t_key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
    };
    for (key, seconds) in [
        (NOT_READY_TAINT, not_ready_seconds),
        (UNREACHABLE_TAINT, unreachable_seconds),
    ] {
        if !list.iter().any(|t| covers(t, key)) {
            list.push(json!({
                "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_both_tolerations_unless_present() {
        let mut pod = json!({"spec": {"containers": []}});
        default_toleration_seconds(&mut pod, 300, 60);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            ])
        );
        let mut own = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        default_toleration_seconds(&mut own, 300, 300);
        let list = own["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["tolerationSeconds"], 5, "the pod's own is kept");
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut all, 300, 300);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }
}
