//! Small facts about objects that several components need the same way: controller owner
//! references, pod readiness and activity, conditions, times.

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::{Resource, ResourceExt};
use skiff_apimachinery::labels::expression_matches;

pub fn now() -> Time {
    Time(Timestamp::now())
}

/// A time as the API writes it: RFC 3339 in UTC, whole seconds (`2026-12-07T08:00:00Z`).
pub fn time_text(t: &Time) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The owner reference that makes `owner` the controller of a dependent (and blocks the
/// owner's foreground deletion until the dependent is gone), as upstream controllers set it.
pub fn controller_reference<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).to_string(),
        kind: K::kind(&()).to_string(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The controller owner reference of an object, if any.
pub fn controller_of<K: Resource>(obj: &K) -> Option<&OwnerReference> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

pub fn is_deleting<K: Resource>(obj: &K) -> bool {
    obj.meta().deletion_timestamp.is_some()
}

pub fn pod_phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// A pod that counts toward its controller's replicas: not finished, not being deleted.
pub fn pod_is_active(pod: &Pod) -> bool {
    !matches!(pod_phase(pod), "Succeeded" | "Failed") && !is_deleting(pod)
}

pub fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn pod_is_ready(pod: &Pod) -> bool {
    pod_condition(pod, "Ready").is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` at `now` (upstream's "available").
pub fn pod_is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(ready) = pod_condition(pod, "Ready").filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    match &ready.last_transition_time {
        Some(t) => t.0.as_second() + i64::from(min_ready_seconds) <= now.as_second(),
        None => false,
    }
}

pub fn pod_node(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Whether a label selector matches a set of labels (matchLabels and matchExpressions
/// ANDed; an empty selector matches everything).
pub fn selector_matches(
    selector: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    labels: Option<&std::collections::BTreeMap<String, String>>,
) -> bool {
    let empty = std::collections::BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    let by_label = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_label
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key).map(String::as_str);
            // An operator upstream does not know matches nothing.
            expression_matches(&e.operator, values, value).unwrap_or(false)
        })
}

/// Replaces an object's owner references (adoption, release, orphaning), guarded by its uid
/// so a same-named successor is never touched. False if it is gone or was replaced.
pub async fn set_owner_references<K>(
    api: &kube::Api<K>,
    obj: &K,
    refs: &[OwnerReference],
) -> Result<bool, kube::Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    // Empty is written as absent, as upstream serializes it.
    let refs = if refs.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::json!(refs)
    };
    let patch = serde_json::json!({"metadata": {"ownerReferences": refs, "uid": obj.meta().uid}});
    let result = api
        .patch(
            obj.meta().name.as_deref().unwrap_or_default(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(&patch),
        )
        .await;
    Ok(crate::tolerating(result, &[404, 409])?.is_some())
}

/// Delete options that only delete this very object (its uid), not a same-named successor.
pub fn delete_only(uid: Option<String>) -> kube::api::DeleteParams {
    kube::api::DeleteParams {
        preconditions: Some(kube::api::Preconditions {
            uid,
            resource_version: None,
        }),
        ..kube::api::DeleteParams::default()
    }
}

/// A node's Ready condition, if it has reported one.
pub fn node_ready_condition(
    node: &k8s_openapi::api::core::v1::Node,
) -> Option<&k8s_openapi::api::core::v1::NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
}

pub fn node_is_ready(node: &k8s_openapi::api::core::v1::Node) -> bool {
    node_ready_condition(node).is_some_and(|c| c.status == "True")
}

/// The taints a node carries while it is not ready or unreachable.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// Whether `toleration` tolerates `taint` (upstream's `ToleratesTaint`).
pub fn tolerates(
    toleration: &k8s_openapi::api::core::v1::Toleration,
    taint: &k8s_openapi::api::core::v1::Taint,
) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty())
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

    #[test]
    fn times_read_as_the_api_writes_them() {
        let t = Time(Timestamp::from_second(1_796_601_600).unwrap());
        assert_eq!(time_text(&t), "2026-12-07T00:00:00Z");
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let sel: LabelSelector = serde_json::from_value(serde_json::json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "canary", "operator": "DoesNotExist"}]}))
        .unwrap();
        let labels = |v: serde_json::Value| serde_json::from_value(v).unwrap();
        assert!(selector_matches(
            &sel,
            Some(&labels(serde_json::json!({"app": "web", "tier": "a"})))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&labels(serde_json::json!({"app": "web", "tier": "c"})))
        ));
        assert!(!selector_matches(
            &sel,
            Some(&labels(
                serde_json::json!({"app": "web", "tier": "a", "canary": "1"})
            ))
        ));
        assert!(selector_matches(&LabelSelector::default(), None));
    }
}
