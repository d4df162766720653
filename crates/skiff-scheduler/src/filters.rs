//! Filters: can this pod run on this node? Each returns upstream's reason when not, which
//! the FailedScheduling message counts per node ("0/3 nodes are available: …"). They run
//! in upstream's plugin order and a node stops at its first failing filter, except that the
//! resource filter reports every resource it lacks.

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use skiff_client::objects::{NOT_READY_TAINT, UNREACHABLE_TAINT, tolerates};

use crate::cache::{NodeInfo, PodInfo};

pub const UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const AFFINITY: &str = "node(s) didn't match Pod's node affinity/selector";
pub const PORTS: &str = "node(s) didn't have free ports for the requested pod ports";
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// Why `pod` cannot go to `node` (empty: it can).
pub fn check(pod: &Pod, info: &PodInfo, node: &NodeInfo) -> Vec<String> {
    if let Some(reason) = unschedulable(pod, &node.node)
        .or_else(|| untolerated_taint(pod, &node.taints))
        .or_else(|| (!matches_node_selection(pod, &node.node)).then(|| AFFINITY.to_string()))
        .or_else(|| {
            info.host_ports
                .iter()
                .any(|p| node.host_ports.iter().any(|h| h.conflicts(p)))
                .then(|| PORTS.to_string())
        })
    {
        return vec![reason];
    }
    insufficient_resources(info, node)
}

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

fn unschedulable(pod: &Pod, node: &Node) -> Option<String> {
    let cordoned = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    if !cordoned {
        return None;
    }
    let taint = Taint {
        key: UNSCHEDULABLE_TAINT.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    (!tolerations(pod).iter().any(|t| tolerates(t, &taint))).then(|| UNSCHEDULABLE.to_string())
}

/// The node's taints that keep pods off (NoSchedule and NoExecute). A node that is not
/// Ready behaves as if tainted not-ready (until the node lifecycle controller has put the
/// real taint on), so no pod lands on it unless it tolerates that.
pub fn scheduling_taints(node: &Node) -> Vec<Taint> {
    let mut taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let ready = skiff_client::objects::node_is_ready(node);
    let already = taints
        .iter()
        .any(|t| t.key == NOT_READY_TAINT || t.key == UNREACHABLE_TAINT);
    if !ready && !already {
        taints.push(Taint {
            key: NOT_READY_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Taint::default()
        });
    }
    taints.retain(|t| t.effect == "NoSchedule" || t.effect == "NoExecute");
    taints
}

fn untolerated_taint(pod: &Pod, taints: &[Taint]) -> Option<String> {
    let tolerations = tolerations(pod);
    taints
        .iter()
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
        .map(|t| {
            format!(
                "node(s) had untolerated taint {{{}: {}}}",
                t.key,
                t.value.as_deref().unwrap_or_default()
            )
        })
}

/// `nodeSelector` and required node affinity.
pub fn matches_node_selection(pod: &Pod, node: &Node) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    let empty = Default::default();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    if let Some(selector) = &spec.node_selector
        && !selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    {
        return false;
    }
    let terms = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .map(|r| r.node_selector_terms.as_slice());
    match terms {
        // Terms are ORed; a term with no requirements matches nothing.
        Some(terms) => terms.iter().any(|t| term_matches(t, node, labels)),
        None => true,
    }
}

fn term_matches(
    term: &NodeSelectorTerm,
    node: &Node,
    labels: &std::collections::BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let value = node
                .metadata
                .name
                .as_deref()
                .filter(|_| r.key == "metadata.name");
            requirement_matches(r, value)
        })
}

fn requirement_matches(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => !value.is_some_and(|v| values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(bound)) = (
                value.and_then(number),
                values.first().and_then(|x| number(x)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                v > bound
            } else {
                v < bound
            }
        }
        _ => false,
    }
}

fn insufficient_resources(pod: &PodInfo, node: &NodeInfo) -> Vec<String> {
    let mut reasons = Vec::new();
    let (free, want) = (&node.allocatable, &pod.requests);
    if node.requested.pods + 1 > free.pods {
        reasons.push("Too many pods".to_string());
    }
    if want.milli_cpu > 0 && node.requested.milli_cpu + want.milli_cpu > free.milli_cpu {
        reasons.push("Insufficient cpu".to_string());
    }
    if want.memory > 0 && node.requested.memory + want.memory > free.memory {
        reasons.push("Insufficient memory".to_string());
    }
    reasons
}

/// Upstream's FailedScheduling message: per reason, how many nodes gave it, sorted.
pub fn unschedulable_message(total_nodes: usize, reasons: &[(String, usize)]) -> String {
    if total_nodes == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let mut parts: Vec<String> = reasons.iter().map(|(r, n)| format!("{n} {r}")).collect();
    parts.sort();
    format!("0/{total_nodes} nodes are available: {}.", parts.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::pod_info;
    use serde_json::json;
    use std::sync::Arc;

    fn node(v: serde_json::Value) -> NodeInfo {
        let mut cache = crate::cache::Cache::default();
        let node: Node = serde_json::from_value(v).unwrap();
        let name = node.metadata.name.clone().unwrap();
        cache.set_node(Arc::new(node));
        cache.nodes.remove(&name).unwrap()
    }

    fn ready_node(extra_spec: serde_json::Value) -> NodeInfo {
        node(
            json!({"metadata": {"name": "n", "labels": {"disk": "ssd", "rank": "5"}},
            "spec": extra_spec,
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "2"},
                "conditions": [{"type": "Ready", "status": "True"}]}}),
        )
    }

    fn reasons(pod: serde_json::Value, n: &NodeInfo) -> Vec<String> {
        let p: Pod = serde_json::from_value(pod).unwrap();
        check(&p, &pod_info(&p, "n"), n)
    }

    #[test]
    fn taints_need_tolerations() {
        let n = ready_node(
            json!({"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}),
        );
        let plain = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            reasons(plain, &n),
            vec!["node(s) had untolerated taint {dedicated: gpu}"]
        );
        let tolerant = json!({"spec": {"containers": [{"name": "a"}],
            "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu"}]}});
        assert!(reasons(tolerant, &n).is_empty());
        let exists_all = json!({"spec": {"containers": [{"name": "a"}],
            "tolerations": [{"operator": "Exists"}]}});
        assert!(reasons(exists_all, &n).is_empty());
    }

    #[test]
    fn a_node_that_is_not_ready_is_avoided() {
        let n = node(
            json!({"metadata": {"name": "n"}, "status": {"allocatable": {"pods": "5"},
            "conditions": [{"type": "Ready", "status": "Unknown"}]}}),
        );
        assert_eq!(
            reasons(json!({"spec": {"containers": [{"name": "a"}]}}), &n),
            vec!["node(s) had untolerated taint {node.kubernetes.io/not-ready: }"]
        );
    }

    #[test]
    fn cordoned_nodes_and_selectors() {
        let cordoned = ready_node(json!({"unschedulable": true}));
        assert_eq!(
            reasons(json!({"spec": {"containers": []}}), &cordoned),
            vec![UNSCHEDULABLE]
        );
        let n = ready_node(json!({}));
        assert_eq!(
            reasons(
                json!({"spec": {"nodeSelector": {"disk": "hdd"}, "containers": []}}),
                &n
            ),
            vec![AFFINITY]
        );
        let affinity = |op: &str, values: serde_json::Value| {
            json!({"spec": {"containers": [],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "rank", "operator": op, "values": values}]}]}}}}})
        };
        assert!(reasons(affinity("Gt", json!(["3"])), &n).is_empty());
        assert_eq!(reasons(affinity("Lt", json!(["3"])), &n), vec![AFFINITY]);
        assert!(reasons(affinity("In", json!(["5", "6"])), &n).is_empty());
        assert_eq!(reasons(affinity("NotIn", json!(["5"])), &n), vec![AFFINITY]);
    }

    #[test]
    fn resources_report_everything_short() {
        let n = ready_node(json!({}));
        let big = json!({"spec": {"containers": [{"name": "a",
            "resources": {"requests": {"cpu": "2", "memory": "2Gi"}}}]}});
        assert_eq!(
            reasons(big, &n),
            vec!["Insufficient cpu", "Insufficient memory"]
        );
    }

    #[test]
    fn the_message_has_upstreams_shape() {
        let m = unschedulable_message(3, &[("Insufficient cpu".into(), 2), (AFFINITY.into(), 1)]);
        assert_eq!(
            m,
            "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu."
        );
    }
}
