//! The `autoscaling/v1 Scale` view of Deployments and ReplicaSets (the scale subresource).

use serde_json::{Value, json};
use skiff_api::object::meta_str;
use skiff_api::{ApiError, ResourceType, table};

/// The `autoscaling/v1 Scale` view of a Deployment or ReplicaSet.
pub(super) fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let selector =
        table::format_label_selector(skiff_api::object::field(obj, &["spec", "selector"]));
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": skiff_api::object::field(obj, &["spec", "replicas"]).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": skiff_api::object::field(obj, &["status", "replicas"]).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// Applies a written Scale to its object: only `spec.replicas` changes.
pub(super) fn apply_scale(
    rt: &ResourceType,
    old: &Value,
    scale: &Value,
) -> Result<Value, ApiError> {
    let name = meta_str(old, "name").unwrap_or_default();
    let replicas = skiff_api::object::field(scale, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            ApiError::invalid(rt, name, vec![skiff_api::Cause::required("spec.replicas")])
        })?;
    if replicas < 0 {
        return Err(ApiError::invalid(
            rt,
            name,
            vec![skiff_api::Cause::invalid(
                "spec.replicas",
                &replicas.into(),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let mut new = old.clone();
    new["spec"]["replicas"] = replicas.into();
    Ok(new)
}
