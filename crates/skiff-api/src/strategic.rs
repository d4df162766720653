//! Strategic merge patch (`application/strategic-merge-patch+json`), what kubectl `apply`,
//! `edit`, `set image` and `rollout restart` send.
//!
//! Like a JSON merge patch, except that lists the Kubernetes types mark with a patch
//! strategy merge element-wise: lists of objects by their patch merge key (containers by
//! `name`, container ports by `containerPort`, conditions by `type` …), lists of strings as a
//! set (finalizers). Other lists are replaced. Directives: `$patch: replace|delete|merge`,
//! `$retainKeys`, `$setElementOrder/<list>`, `$deleteFromPrimitiveList/<list>`.
//!
//! The patch strategies come from the built-in types' `patchStrategy`/`patchMergeKey` tags,
//! listed in [`list_strategy`] by field path.

use serde_json::{Map, Value};

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ListStrategy {
    /// Objects merged by this key.
    MergeByKey(&'static str),
    /// Scalars merged as a set.
    MergeScalars,
    /// The patch's list replaces the original.
    Replace,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StrategicPatchError {
    #[error("invalid patch: {0}")]
    Invalid(String),
}

/// The strategy of the list at `path` (field names from the object root, list indexes
/// left out) in an object of `kind`.
fn list_strategy(kind: &str, path: &[String]) -> ListStrategy {
    use ListStrategy::*;
    let Some(field) = path.last() else {
        return Replace;
    };
    let parent = path.len().checked_sub(2).map(|i| path[i].as_str());
    let in_container = matches!(
        parent,
        Some("containers" | "initContainers" | "ephemeralContainers")
    );
    match field.as_str() {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => MergeByKey("name"),
        "env" if in_container => MergeByKey("name"),
        "volumeMounts" if in_container => MergeByKey("mountPath"),
        "volumeDevices" if in_container => MergeByKey("devicePath"),
        "resizePolicy" if in_container => MergeByKey("resourceName"),
        "ports" if in_container => MergeByKey("containerPort"),
        // Service.spec.ports; other `ports` lists (endpoints, slices) are atomic.
        "ports" if kind == "Service" && path.len() == 2 && path[0] == "spec" => MergeByKey("port"),
        "hostAliases" => MergeByKey("ip"),
        "topologySpreadConstraints" => MergeByKey("topologyKey"),
        "conditions" if path.first().map(String::as_str) == Some("status") => MergeByKey("type"),
        "addresses" if kind == "Node" => MergeByKey("type"),
        "ownerReferences" if parent == Some("metadata") => MergeByKey("uid"),
        "finalizers" if parent == Some("metadata") => MergeScalars,
        _ => Replace,
    }
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

fn directive(map: &Map<String, Value>) -> Option<&str> {
    map.get("$patch").and_then(Value::as_str)
}

/// Applies a strategic merge patch to an object of `kind`.
pub fn strategic_merge_patch(
    kind: &str,
    target: &mut Value,
    patch: &Value,
) -> Result<(), StrategicPatchError> {
    let Value::Object(patch) = patch else {
        return Err(StrategicPatchError::Invalid(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let mut path = Vec::new();
    let target_map = target.as_object_mut().expect("made an object above");
    match directive(patch) {
        Some("delete") => {
            target_map.clear();
            Ok(())
        }
        _ => merge_map(kind, target_map, patch, &mut path),
    }
}

/// A patch value with its directives processed against nothing (what it adds when the
/// original has no such field).
fn fresh(kind: &str, patch: &Value, path: &mut Vec<String>) -> Result<Value, StrategicPatchError> {
    match patch {
        Value::Object(p) => {
            let mut out = Map::new();
            merge_map(kind, &mut out, p, path)?;
            Ok(Value::Object(out))
        }
        Value::Array(items) => {
            let mut out = Vec::new();
            merge_list(kind, &mut out, items, path)?;
            Ok(Value::Array(out))
        }
        other => Ok(other.clone()),
    }
}

fn merge_map(
    kind: &str,
    target: &mut Map<String, Value>,
    patch: &Map<String, Value>,
    path: &mut Vec<String>,
) -> Result<(), StrategicPatchError> {
    match directive(patch) {
        Some("replace") => {
            target.clear();
            for (k, v) in patch {
                if k != "$patch" {
                    path.push(k.clone());
                    let v = fresh(kind, v, path)?;
                    path.pop();
                    target.insert(k.clone(), v);
                }
            }
            return Ok(());
        }
        None | Some("merge") | Some("delete") => {}
        Some(other) => {
            return Err(StrategicPatchError::Invalid(format!(
                "unknown $patch directive {other:?}"
            )));
        }
    }
    for (key, value) in patch {
        if key == "$patch"
            || key == "$retainKeys"
            || key.starts_with(SET_ORDER)
            || key.starts_with(DELETE_FROM)
        {
            continue;
        }
        path.push(key.clone());
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(p) if directive(p) == Some("delete") => {
                target.remove(key);
            }
            Value::Object(p) => match target.get_mut(key) {
                Some(Value::Object(t)) => merge_map(kind, t, p, path)?,
                _ => {
                    let v = fresh(kind, value, path)?;
                    target.insert(key.clone(), v);
                }
            },
            Value::Array(items) => {
                let mut list = match target.remove(key) {
                    Some(Value::Array(l)) => l,
                    _ => Vec::new(),
                };
                merge_list(kind, &mut list, items, path)?;
                target.insert(key.clone(), Value::Array(list));
            }
            scalar => {
                target.insert(key.clone(), scalar.clone());
            }
        }
        path.pop();
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM) {
            let remove = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = target.get_mut(field) {
                list.retain(|v| !remove.contains(v));
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ORDER) {
            path.push(field.to_string());
            let strategy = list_strategy(kind, path);
            path.pop();
            if let (Some(Value::Array(list)), Some(order)) =
                (target.get_mut(field), value.as_array())
            {
                reorder(list, order, strategy);
            }
        }
    }
    if let Some(retain) = patch.get("$retainKeys") {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| StrategicPatchError::Invalid("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        target.retain(|k, _| keep.contains(&k.as_str()));
    }
    Ok(())
}

fn key_of<'a>(item: &'a Value, key: &str) -> Option<&'a Value> {
    item.as_object()?.get(key)
}

fn merge_list(
    kind: &str,
    target: &mut Vec<Value>,
    patch: &[Value],
    path: &mut Vec<String>,
) -> Result<(), StrategicPatchError> {
    let replace = patch.iter().any(|i| {
        i.as_object()
            .is_some_and(|m| directive(m) == Some("replace") && m.len() == 1)
    });
    let strategy = list_strategy(kind, path);
    if replace || strategy == ListStrategy::Replace {
        let mut out = Vec::new();
        for item in patch {
            if item
                .as_object()
                .is_some_and(|m| directive(m).is_some() && m.len() == 1)
            {
                continue;
            }
            out.push(fresh(kind, item, path)?);
        }
        *target = out;
        return Ok(());
    }
    match strategy {
        ListStrategy::MergeScalars => {
            for item in patch {
                if !target.contains(item) {
                    target.push(item.clone());
                }
            }
        }
        ListStrategy::MergeByKey(key) => {
            for item in patch {
                let Some(item_map) = item.as_object() else {
                    return Err(StrategicPatchError::Invalid(format!(
                        "{}: elements must be objects with a {key:?} key",
                        path.join(".")
                    )));
                };
                let Some(id) = item_map.get(key) else {
                    return Err(StrategicPatchError::Invalid(format!(
                        "{}: map: {item} does not contain declared merge key: {key}",
                        path.join(".")
                    )));
                };
                let position = target.iter().position(|t| key_of(t, key) == Some(id));
                match (directive(item_map), position) {
                    (Some("delete"), Some(_)) => target.retain(|t| key_of(t, key) != Some(id)),
                    (Some("delete"), None) => {}
                    (_, Some(i)) => {
                        if let Value::Object(t) = &mut target[i] {
                            merge_map(kind, t, item_map, path)?;
                        }
                    }
                    (_, None) => target.push(fresh(kind, item, path)?),
                }
            }
        }
        ListStrategy::Replace => unreachable!("handled above"),
    }
    Ok(())
}

/// `$setElementOrder`: the listed elements in the listed order; elements only the server has
/// keep their place after them in their original order.
fn reorder(list: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let ident = |v: &Value| -> Option<Value> {
        match strategy {
            ListStrategy::MergeByKey(k) => key_of(v, k).cloned(),
            _ => Some(v.clone()),
        }
    };
    let wanted: Vec<Value> = order.iter().filter_map(ident).collect();
    let mut ordered = Vec::with_capacity(list.len());
    for w in &wanted {
        if let Some(i) = list.iter().position(|v| ident(v).as_ref() == Some(w)) {
            ordered.push(list.remove(i));
        }
    }
    ordered.append(list);
    *list = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patched(kind: &str, mut doc: Value, patch: Value) -> Value {
        strategic_merge_patch(kind, &mut doc, &patch).unwrap();
        doc
    }

    fn deployment() -> Value {
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "app:v1", "ports": [{"containerPort": 8080}], "env": [{"name": "A", "value": "1"}]},
            {"name": "sidecar", "image": "side:v1"}
        ]}}}})
    }

    #[test]
    fn set_image_merges_containers_by_name() {
        // What `kubectl set image deployment/x app=app:v2` sends.
        let d = patched(
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:v2"}]}}}}),
        );
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["image"], "app:v2");
        assert_eq!(
            c[0]["ports"][0]["containerPort"], 8080,
            "untouched fields stay"
        );
        assert_eq!(c[1]["image"], "side:v1", "other containers stay");
    }

    #[test]
    fn edit_with_set_element_order() {
        // What `kubectl edit` sends after swapping the container order and changing an image.
        let d = patched(
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "sidecar"}, {"name": "app"}],
            "containers": [{"name": "app", "image": "app:v3"}]}}}}),
        );
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["name"], "sidecar");
        assert_eq!(c[1]["image"], "app:v3");
    }

    #[test]
    fn delete_directives() {
        let d = patched(
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "$patch": "delete"}]}}}}),
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let d = patched(
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "A", "$patch": "delete"}, {"name": "B", "value": "2"}]}]}}}}),
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["env"],
            json!([{"name": "B", "value": "2"}])
        );
        let d = patched(
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"$patch": "delete"}}}),
        );
        assert!(d["spec"].get("template").is_none());
    }

    #[test]
    fn replace_directives() {
        let d = patched(
            "Deployment",
            deployment(),
            json!({"spec": {"template": {"spec": {"containers": [
            {"$patch": "replace"}, {"name": "only", "image": "only:v1"}]}}}}),
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only", "image": "only:v1"}])
        );
        let d = patched(
            "Deployment",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}}}}),
            json!({"spec": {"strategy": {"$patch": "replace", "type": "Recreate"}}}),
        );
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn retain_keys_drops_the_rest() {
        // `kubectl apply` switching a Deployment to Recreate.
        let d = patched(
            "Deployment",
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}}}}),
            json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
        );
        assert_eq!(d["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn finalizers_merge_as_a_set_and_delete_from_primitive_list() {
        let obj = json!({"metadata": {"finalizers": ["a", "b"]}});
        let d = patched(
            "ConfigMap",
            obj.clone(),
            json!({"metadata": {"finalizers": ["b", "c"]}}),
        );
        assert_eq!(d["metadata"]["finalizers"], json!(["a", "b", "c"]));
        let d = patched(
            "ConfigMap",
            obj,
            json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]}}),
        );
        assert_eq!(d["metadata"]["finalizers"], json!(["b"]));
    }

    #[test]
    fn lists_without_a_strategy_are_replaced_and_maps_merge() {
        let obj = json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["x", "y"]}]}}}, "metadata": {"annotations": {"k": "v"}}});
        let d = patched(
            "Deployment",
            obj,
            json!({
            "spec": {"template": {"spec": {"containers": [{"name": "a", "args": ["z"]}]}}},
            "metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": "now", "k": null}}}),
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["args"],
            json!(["z"])
        );
        assert_eq!(
            d["metadata"]["annotations"],
            json!({"kubectl.kubernetes.io/restartedAt": "now"})
        );
    }

    #[test]
    fn service_ports_merge_by_port_and_conditions_by_type() {
        let svc = json!({"spec": {"ports": [{"port": 80, "name": "http"}, {"port": 443, "name": "https"}]}});
        let d = patched(
            "Service",
            svc,
            json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}]}}),
        );
        assert_eq!(
            d["spec"]["ports"][0],
            json!({"port": 80, "name": "http", "targetPort": 8080})
        );
        assert_eq!(d["spec"]["ports"].as_array().unwrap().len(), 2);
        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
        let d = patched(
            "Pod",
            pod,
            json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        );
        assert_eq!(d["status"]["conditions"][0]["status"], "True");
        assert_eq!(d["status"]["conditions"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn malformed_patches_are_errors_not_panics() {
        let mut d = deployment();
        assert!(strategic_merge_patch("Deployment", &mut d, &json!([1])).is_err());
        assert!(
            strategic_merge_patch(
                "Deployment",
                &mut d,
                &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})
            )
            .is_err()
        );
        assert!(
            strategic_merge_patch(
                "Deployment",
                &mut d,
                &json!({"spec": {"$patch": "explode"}})
            )
            .is_err()
        );
        assert!(
            strategic_merge_patch("Deployment", &mut d, &json!({"spec": {"$retainKeys": "x"}}))
                .is_err()
        );
    }
}
