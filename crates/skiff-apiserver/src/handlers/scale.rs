//! The `autoscaling/v1 Scale` view of an object with replicas (the scale subresource):
//! Deployments, ReplicaSets, StatefulSets, and custom resources whose definition says where
//! their replica counts are (`Kind::scale_paths`).

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::{ApiError, ResourceType, table};

use crate::registry::{ScalePaths, ScaleSelector};

/// The `autoscaling/v1 Scale` view of an object.
pub(super) fn scale_of(obj: &Value, paths: ScalePaths) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let replicas = |path: &[&str]| field(obj, path).cloned().unwrap_or(json!(0));
    let mut status = json!({"replicas": replicas(paths.status_replicas)});
    match paths.selector {
        ScaleSelector::Structured(path) => {
            status["selector"] = table::format_label_selector(field(obj, path)).into();
        }
        ScaleSelector::Text(path) => {
            if let Some(s) = field(obj, path).and_then(Value::as_str) {
                status["selector"] = s.into();
            }
        }
        ScaleSelector::None => {}
    }
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
        "spec": {"replicas": replicas(paths.spec_replicas)},
        "status": status,
    })
}

/// Applies a written Scale to its object: only the spec's replica count changes.
pub(super) fn apply_scale(
    rt: &ResourceType,
    paths: ScalePaths,
    old: &Value,
    scale: &Value,
) -> Result<Value, ApiError> {
    let name = meta_str(old, "name").unwrap_or_default();
    let replicas = field(scale, &["spec", "replicas"])
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
    let Some((last, parents)) = paths.spec_replicas.split_last() else {
        return Ok(new);
    };
    let mut at = &mut new;
    for p in parents {
        if !at.get(*p).is_some_and(Value::is_object) {
            at[*p] = json!({});
        }
        at = &mut at[*p];
    }
    at[*last] = replicas.into();
    Ok(new)
}
