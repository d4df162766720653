//! What a pod asks for: its containers' requests and limits as numbers, and the pod's own
//! (upstream's `PodRequests`/`PodLimits`: the containers' sum, or the largest init
//! container when that is more). LimitRanger and ResourceQuota admission both read these.

use std::collections::BTreeMap;

use serde_json::Value;
use skiff_api::quantity::millis;

/// A resource list (`{"cpu": "500m"}`) in milli-units, by resource, with the text it was
/// written as; what does not parse is left out.
pub fn amounts(list: &Value) -> BTreeMap<String, (i64, String)> {
    list.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            millis(&text).map(|m| (k.clone(), (m, text)))
        })
        .collect()
}

/// The pod's own `requests` or `limits` (`key`), in milli-units.
pub fn pod_amounts(pod: &Value, key: &str) -> BTreeMap<String, i64> {
    let containers = |list: &str| pod["spec"][list].as_array().cloned().unwrap_or_default();
    let mut sums: BTreeMap<String, i64> = BTreeMap::new();
    for c in containers("containers") {
        for (k, (m, _)) in amounts(&c["resources"][key]) {
            *sums.entry(k).or_default() += m;
        }
    }
    for c in containers("initContainers") {
        for (k, (m, _)) in amounts(&c["resources"][key]) {
            let sum = sums.entry(k).or_default();
            *sum = (*sum).max(m);
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_pod_asks_for_its_containers_sum_or_its_largest_init_container() {
        let pod = json!({"spec": {
            "initContainers": [{"resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}],
            "containers": [{"resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                           {"resources": {"requests": {"cpu": "500m"}}}]}});
        let r = pod_amounts(&pod, "requests");
        assert_eq!(r["cpu"], 2000);
        assert_eq!(r["memory"], 64 * 1024 * 1024 * 1000);
        assert!(pod_amounts(&pod, "limits").is_empty());
    }
}
