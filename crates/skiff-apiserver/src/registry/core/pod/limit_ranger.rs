//! Upstream's LimitRanger admission of a new pod: each LimitRange of its namespace fills in
//! the requests and limits its containers leave out (`defaultRequest`, `default`, saying so
//! in the `kubernetes.io/limit-ranger` annotation), then refuses the pod (403) if a
//! container or the pod as a whole is outside a range's `min`, `max` or
//! `maxLimitRequestRatio`. Ranges are read from the watch cache, as upstream reads its
//! lister.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use skiff_api::ApiError;
use skiff_api::object::meta_str;
use skiff_api::quantity::from_millis;

use super::resources;
use crate::registry::core::limitrange;
use crate::state::ApiState;
use crate::watch_cache::Freshness;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The LimitRanges of a namespace, by name.
async fn ranges(state: &ApiState, ns: &str) -> Result<Vec<Value>, ApiError> {
    state
        .objects_of(&limitrange::RESOURCE, Some(ns), Freshness::Any)
        .await
}

pub(crate) async fn admit(state: &ApiState, pod: &mut Value) -> Result<(), ApiError> {
    let ns = meta_str(pod, "namespace").unwrap_or("default").to_string();
    let ranges = ranges(state, &ns).await?;
    if ranges.is_empty() {
        return Ok(());
    }
    for range in &ranges {
        apply_defaults(range, pod);
    }
    // Upstream admits before it prepares the pod's status: its QoS class counts the
    // defaults just given.
    if pod["status"].is_object() {
        pod["status"]["qosClass"] = super::defaults::qos_class(&pod["spec"]).into();
    }
    let mut errors = Vec::new();
    for range in &ranges {
        check(range, pod, &mut errors);
    }
    if errors.is_empty() {
        return Ok(());
    }
    let name = meta_str(pod, "name").unwrap_or_default();
    let message = match errors.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    Err(ApiError::new(
        403,
        "Forbidden",
        format!("pods {name:?} is forbidden: {message}"),
    ))
}

fn items<'a>(range: &'a Value, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    range["spec"]["limits"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(move |i| i["type"] == ty)
}

/// The Container items' defaults: (requests, limits), later items overriding earlier.
fn container_defaults(range: &Value) -> (Map<String, Value>, Map<String, Value>) {
    let (mut requests, mut limits) = (Map::new(), Map::new());
    for item in items(range, "Container") {
        if let Some(d) = item["defaultRequest"].as_object() {
            requests.extend(d.clone());
        }
        if let Some(d) = item["default"].as_object() {
            limits.extend(d.clone());
        }
    }
    (requests, limits)
}

/// Fills in what the pod's containers leave out, and says what in the annotation.
fn apply_defaults(range: &Value, pod: &mut Value) {
    let (requests, limits) = container_defaults(range);
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut said = Vec::new();
    for (list, what) in [
        ("initContainers", "init container"),
        ("containers", "container"),
    ] {
        let Some(containers) = pod["spec"][list].as_array_mut() else {
            continue;
        };
        for c in containers {
            let name = c["name"].as_str().unwrap_or_default().to_string();
            if !c["resources"].is_object() {
                c["resources"] = json!({});
            }
            for (key, defaults, word) in [
                ("requests", &requests, "request"),
                ("limits", &limits, "limit"),
            ] {
                if defaults.is_empty() {
                    continue;
                }
                let section = &mut c["resources"][key];
                if !section.is_object() {
                    *section = json!({});
                }
                let section = section.as_object_mut().expect("made an object");
                let mut set: Vec<&str> = defaults
                    .iter()
                    .filter(|(k, _)| !section.contains_key(*k))
                    .map(|(k, _)| k.as_str())
                    .collect();
                for k in &set {
                    section.insert((*k).to_string(), defaults[*k].clone());
                }
                if !set.is_empty() {
                    set.sort_unstable();
                    said.push(format!("{} {word} for {what} {name}", set.join(", ")));
                }
            }
        }
    }
    if !said.is_empty() {
        let meta = skiff_api::object::metadata_mut(pod);
        let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
        if let Some(a) = annotations.as_object_mut() {
            a.insert(
                ANNOTATION.into(),
                format!("LimitRanger plugin set: {}", said.join("; ")).into(),
            );
        }
    }
}

/// Amounts by resource, in milli-units, with the text they were written as.
type Amounts = BTreeMap<String, (i64, String)>;

/// Upstream's min, max and ratio constraints of one item on a request and limit.
fn constrain(
    item: &Value,
    per: &str,
    requests: &Amounts,
    limits: &Amounts,
    errors: &mut Vec<String>,
) {
    for (resource, (enforced, shown)) in resources::amounts(&item["min"]) {
        match requests.get(&resource) {
            None => errors.push(format!(
                "minimum {resource} usage per {per} is {shown}.  No request is specified"
            )),
            Some((req, text)) if *req < enforced => errors.push(format!(
                "minimum {resource} usage per {per} is {shown}, but request is {text}"
            )),
            Some(_) => match limits.get(&resource) {
                Some((lim, text)) if *lim < enforced => errors.push(format!(
                    "minimum {resource} usage per {per} is {shown}, but limit is {text}"
                )),
                _ => {}
            },
        }
    }
    for (resource, (enforced, shown)) in resources::amounts(&item["max"]) {
        match limits.get(&resource) {
            None => errors.push(format!(
                "maximum {resource} usage per {per} is {shown}.  No limit is specified"
            )),
            Some((lim, text)) if *lim > enforced => errors.push(format!(
                "maximum {resource} usage per {per} is {shown}, but limit is {text}"
            )),
            Some(_) => match requests.get(&resource) {
                Some((req, text)) if *req > enforced => errors.push(format!(
                    "maximum {resource} usage per {per} is {shown}, but request is {text}"
                )),
                _ => {}
            },
        }
    }
    for (resource, (enforced, shown)) in resources::amounts(&item["maxLimitRequestRatio"]) {
        let req = requests.get(&resource).map_or(0, |(m, _)| *m);
        let lim = limits.get(&resource).map_or(0, |(m, _)| *m);
        if req == 0 {
            errors.push(format!("{resource} max limit to request ratio per {per} is {shown}, but no request is specified or request is 0"));
        } else if lim == 0 {
            errors.push(format!("{resource} max limit to request ratio per {per} is {shown}, but no limit is specified or limit is 0"));
        } else {
            let ratio = lim as f64 / req as f64;
            if ratio * 1000.0 > enforced as f64 {
                errors.push(format!(
                    "{resource} max limit to request ratio per {per} is {shown}, but provided ratio is {ratio:.6}"
                ));
            }
        }
    }
}

/// Every way the pod breaks one range.
fn check(range: &Value, pod: &Value, errors: &mut Vec<String>) {
    let containers = |list: &str| pod["spec"][list].as_array().cloned().unwrap_or_default();
    let (main, init) = (containers("containers"), containers("initContainers"));
    for item in items(range, "Container") {
        for c in main.iter().chain(&init) {
            let requests = resources::amounts(&c["resources"]["requests"]);
            let limits = resources::amounts(&c["resources"]["limits"]);
            constrain(item, "Container", &requests, &limits, errors);
        }
    }
    let pod_items: Vec<&Value> = items(range, "Pod").collect();
    if pod_items.is_empty() {
        return;
    }
    // The pod's own: its containers' sum, or its largest init container if that is more.
    let total = |key: &str| -> Amounts {
        resources::pod_amounts(pod, key)
            .into_iter()
            .map(|(k, m)| {
                let text = from_millis(m, k != "cpu");
                (k, (m, text))
            })
            .collect()
    };
    let (requests, limits) = (total("requests"), total("limits"));
    for item in pod_items {
        constrain(item, "Pod", &requests, &limits, errors);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range() -> Value {
        json!({"spec": {"limits": [
            {"type": "Container", "default": {"cpu": "500m", "memory": "256Mi"},
             "defaultRequest": {"cpu": "100m"}, "max": {"cpu": "1"}, "min": {"cpu": "50m"},
             "maxLimitRequestRatio": {"cpu": "10"}},
            {"type": "Pod", "max": {"memory": "1Gi"}}]}})
    }

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "resources": resources},
            {"name": "side"}]}})
    }

    #[test]
    fn defaults_fill_what_containers_leave_out_and_say_so() {
        let mut p = pod(json!({"requests": {"cpu": "200m"}}));
        apply_defaults(&range(), &mut p);
        let app = &p["spec"]["containers"][0]["resources"];
        assert_eq!(app["requests"], json!({"cpu": "200m"}));
        assert_eq!(app["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory limit for container app; cpu request for container side; cpu, memory limit for container side"
        );
        let mut errors = Vec::new();
        check(&range(), &p, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn pods_outside_the_range_are_refused_with_upstreams_words() {
        let p = json!({"spec": {"containers": [
            {"name": "big", "resources": {"requests": {"cpu": "10m", "memory": "600Mi"}, "limits": {"cpu": "2", "memory": "600Mi"}}},
            {"name": "more", "resources": {"requests": {"cpu": "100m", "memory": "600Mi"}, "limits": {"cpu": "100m", "memory": "600Mi"}}}]}});
        let mut errors = Vec::new();
        check(&range(), &p, &mut errors);
        assert_eq!(
            errors,
            [
                "minimum cpu usage per Container is 50m, but request is 10m",
                "maximum cpu usage per Container is 1, but limit is 2",
                "cpu max limit to request ratio per Container is 10, but provided ratio is 200.000000",
                "maximum memory usage per Pod is 1Gi, but limit is 1200Mi",
            ]
        );
    }
}
