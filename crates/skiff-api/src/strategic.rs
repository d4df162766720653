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
//! listed in [`list_strategy`] by message and field; the patch walks the object along with
//! its type schema, so a field's strategy is exactly its type's.

use serde_json::{Map, Value};

use crate::field_types::{ListStrategy, TypeNode};

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StrategicPatchError {
    #[error("invalid patch: {0}")]
    Invalid(String),
}

/// The strategy of the list field `field` of the message `message` (fully qualified, as
/// [`crate::schema`] names it): upstream's `patchStrategy`/`patchMergeKey` tags.
pub(crate) fn builtin_list_strategy(message: &str, field: &str) -> ListStrategy {
    use ListStrategy::*;
    const CORE: &str = ".api.core.v1.";
    const META: &str = ".apimachinery.pkg.apis.meta.v1.";
    let ty = message.strip_prefix(CORE);
    match (ty, field) {
        (
            Some("PodSpec"),
            "containers"
            | "initContainers"
            | "ephemeralContainers"
            | "volumes"
            | "imagePullSecrets"
            | "resourceClaims"
            | "schedulingGates",
        ) => MergeByKey(&["name"]),
        (Some("PodSpec"), "hostAliases") => MergeByKey(&["ip"]),
        (Some("PodSpec"), "topologySpreadConstraints") => MergeByKey(&["topologyKey"]),
        (Some("Container" | "EphemeralContainerCommon"), "env") => MergeByKey(&["name"]),
        (Some("Container" | "EphemeralContainerCommon"), "volumeMounts") => {
            MergeByKey(&["mountPath"])
        }
        (Some("Container" | "EphemeralContainerCommon"), "volumeDevices") => {
            MergeByKey(&["devicePath"])
        }
        (Some("Container" | "EphemeralContainerCommon"), "resizePolicy") => {
            MergeByKey(&["resourceName"])
        }
        (Some("Container" | "EphemeralContainerCommon"), "ports") => MergeByKey(&["containerPort"]),
        (Some("ServiceSpec"), "ports") => MergeByKey(&["port"]),
        (Some("NodeStatus"), "addresses") => MergeByKey(&["type"]),
        (Some("PodStatus"), "podIPs" | "hostIPs") => MergeByKey(&["ip"]),
        (Some("NodeSpec"), "podCIDRs") => MergeScalars,
        _ if field == "conditions" && message.ends_with("Status") => MergeByKey(&["type"]),
        _ if message.strip_prefix(META) == Some("ObjectMeta") => match field {
            "ownerReferences" => MergeByKey(&["uid"]),
            "finalizers" => MergeScalars,
            _ => Replace,
        },
        _ => Replace,
    }
}

/// The OpenAPI patch extensions of a list field: (`x-kubernetes-patch-strategy`,
/// `x-kubernetes-patch-merge-key`), for the documents kubectl reads to build its patches.
pub(crate) fn patch_extensions(
    message: &str,
    field: &str,
) -> Option<(&'static str, Option<&'static str>)> {
    match builtin_list_strategy(message, field) {
        ListStrategy::MergeByKey(keys) => Some(("merge", keys.first().copied())),
        ListStrategy::MergeScalars => Some(("merge", None)),
        ListStrategy::Replace => None,
    }
}

const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

fn directive(map: &Map<String, Value>) -> Option<&str> {
    map.get("$patch").and_then(Value::as_str)
}

/// Applies a strategic merge patch to an object of `apiVersion`/`kind` (a built-in kind).
pub fn strategic_merge_patch(
    api_version: &str,
    kind: &str,
    target: &mut Value,
    patch: &Value,
) -> Result<(), StrategicPatchError> {
    merge_typed(&TypeNode::of(api_version, kind), target, patch)
}

/// Applies a merge patch along `types` (server-side apply merges custom resources' lists
/// by their schema's list types this way).
pub fn merge_typed(
    types: &TypeNode<'_>,
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
        _ => merge_map(types, target_map, patch, &mut path),
    }
}

/// A patch value with its directives processed against nothing (what it adds when the
/// original has no such field); `node` is the value's type.
fn fresh(
    node: &TypeNode<'_>,
    patch: &Value,
    path: &mut Vec<String>,
) -> Result<Value, StrategicPatchError> {
    match patch {
        Value::Object(p) => {
            let mut out = Map::new();
            merge_map(node, &mut out, p, path)?;
            Ok(Value::Object(out))
        }
        Value::Array(items) => items
            .iter()
            .filter(|i| {
                !i.as_object()
                    .is_some_and(|m| directive(m).is_some() && m.len() == 1)
            })
            .map(|i| fresh(node, i, path))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        other => Ok(other.clone()),
    }
}

fn merge_map(
    node: &TypeNode<'_>,
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
                    let v = fresh(&node.field(k), v, path)?;
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
        let child = node.field(key);
        path.push(key.clone());
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(p) if directive(p) == Some("delete") => {
                target.remove(key);
            }
            Value::Object(p) => match target.get_mut(key) {
                Some(Value::Object(t)) => merge_map(&child, t, p, path)?,
                _ => {
                    let v = fresh(&child, value, path)?;
                    target.insert(key.clone(), v);
                }
            },
            Value::Array(items) => {
                let mut list = match target.remove(key) {
                    Some(Value::Array(l)) => l,
                    _ => Vec::new(),
                };
                let strategy = node.list_strategy(key);
                merge_list(strategy, &child, &mut list, items, path)?;
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
            let strategy = node.list_strategy(field);
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

/// An element's identity under merge keys: its values of them (all present).
fn key_of(item: &Value, keys: &[&str]) -> Option<Vec<Value>> {
    let map = item.as_object()?;
    keys.iter().map(|k| map.get(*k).cloned()).collect()
}

/// Merges a list with the given strategy; `element` is the type of its elements.
fn merge_list(
    strategy: ListStrategy,
    element: &TypeNode<'_>,
    target: &mut Vec<Value>,
    patch: &[Value],
    path: &mut Vec<String>,
) -> Result<(), StrategicPatchError> {
    let replace = patch.iter().any(|i| {
        i.as_object()
            .is_some_and(|m| directive(m) == Some("replace") && m.len() == 1)
    });
    if replace || strategy == ListStrategy::Replace {
        let mut out = Vec::new();
        for item in patch {
            if item
                .as_object()
                .is_some_and(|m| directive(m).is_some() && m.len() == 1)
            {
                continue;
            }
            out.push(fresh(element, item, path)?);
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
        ListStrategy::MergeByKey(keys) => {
            for item in patch {
                let Some(item_map) = item.as_object() else {
                    return Err(StrategicPatchError::Invalid(format!(
                        "{}: elements must be objects with {keys:?} keys",
                        path.join(".")
                    )));
                };
                let Some(id) = key_of(item, keys) else {
                    return Err(StrategicPatchError::Invalid(format!(
                        "{}: map: {item} does not contain declared merge key: {}",
                        path.join("."),
                        keys.join(",")
                    )));
                };
                let position = target
                    .iter()
                    .position(|t| key_of(t, keys).as_ref() == Some(&id));
                match (directive(item_map), position) {
                    (Some("delete"), Some(_)) => {
                        target.retain(|t| key_of(t, keys).as_ref() != Some(&id))
                    }
                    (Some("delete"), None) => {}
                    (_, Some(i)) => {
                        if let Value::Object(t) = &mut target[i] {
                            merge_map(element, t, item_map, path)?;
                        }
                    }
                    (_, None) => target.push(fresh(element, item, path)?),
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
            ListStrategy::MergeByKey(keys) => key_of(v, keys).map(Value::Array),
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
        strategic_merge_patch(api_version(kind), kind, &mut doc, &patch).unwrap();
        doc
    }

    fn api_version(kind: &str) -> &'static str {
        if kind == "Deployment" {
            "apps/v1"
        } else {
            "v1"
        }
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
        assert!(strategic_merge_patch("apps/v1", "Deployment", &mut d, &json!([1])).is_err());
        assert!(
            strategic_merge_patch(
                "apps/v1",
                "Deployment",
                &mut d,
                &json!({"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})
            )
            .is_err()
        );
        assert!(
            strategic_merge_patch(
                "apps/v1",
                "Deployment",
                &mut d,
                &json!({"spec": {"$patch": "explode"}})
            )
            .is_err()
        );
        assert!(
            strategic_merge_patch(
                "apps/v1",
                "Deployment",
                &mut d,
                &json!({"spec": {"$retainKeys": "x"}})
            )
            .is_err()
        );
    }

    /// Arbitrary JSON, biased towards the shapes patches use (directive keys, merge keys).
    fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let key = prop_oneof![
            Just("spec".to_string()),
            Just("containers".to_string()),
            Just("name".to_string()),
            Just("$patch".to_string()),
            Just("$retainKeys".to_string()),
            Just("$setElementOrder/containers".to_string()),
            Just("$deleteFromPrimitiveList/finalizers".to_string()),
            "[a-z]{1,3}",
        ];
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            prop_oneof![Just("delete"), Just("replace"), Just("merge"), Just("x")]
                .prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 32, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::btree_map(key.clone(), inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_patches_never_panic(target in json_value(), patch in json_value()) {
            let mut t = target.clone();
            let _ = strategic_merge_patch("apps/v1", "Deployment", &mut t, &patch);
            let mut t = target.clone();
            let _ = strategic_merge_patch("v1", "Pod", &mut t, &serde_json::json!({"spec": patch.clone()}));
            let mut t = target.clone();
            crate::patch::merge_patch(&mut t, &patch);
            let mut t = target;
            let _ = crate::patch::json_patch(&mut t, &patch);
        }
    }
}
