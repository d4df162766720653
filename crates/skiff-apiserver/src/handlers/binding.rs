//! A pod's binding to a node: `pods/<name>/binding` (the scheduler's way) and the legacy
//! `bindings` resource both come here.

use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::object::{meta_str, metadata_mut};

use super::persist::PATCH_RETRIES;
use crate::state::ApiState;

/// Assigns pod `name` in `namespace` to the binding's target node: sets `spec.nodeName`
/// once (a bound pod answers 409) and the PodScheduled condition; answers the Success
/// Status upstream answers with.
pub(crate) async fn bind_pod(
    state: &ApiState,
    namespace: Option<&str>,
    name: &str,
    binding: &Value,
) -> Result<Value, ApiError> {
    let pods = &crate::registry::core::pod::RESOURCE;
    let binding_rt = pods;
    let node = skiff_api::object::field_str(binding, &["target", "name"]).unwrap_or_default();
    if node.is_empty() {
        return Err(ApiError::invalid(
            binding_rt,
            name,
            vec![skiff_api::Cause::required("target.name")],
        ));
    }
    if let Some(n) = meta_str(binding, "name").filter(|n| *n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the binding ({n}) does not match the pod on the URL ({name})"
        )));
    }
    for _ in 0..PATCH_RETRIES {
        let old = state.objects.get(pods, namespace, name).await?;
        if meta_str(&old.object, "deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                pods,
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(current) = skiff_api::object::field_str(&old.object, &["spec", "nodeName"])
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                pods,
                name,
                &format!("pod {name} is already assigned to node {current:?}"),
            ));
        }
        let mut bound = old.object.clone();
        bound["spec"]["nodeName"] = node.into();
        if let Some(annotations) = binding
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(Value::as_object)
        {
            let meta = metadata_mut(&mut bound);
            let target = meta.entry("annotations").or_insert_with(|| json!({}));
            if let Some(t) = target.as_object_mut() {
                t.extend(annotations.clone());
            }
        }
        set_condition(&mut bound, "PodScheduled", "True");
        // No managedFields entry: upstream binds straight through storage, outside the
        // field manager, so a bound pod's managers are those of its other writes.
        match state.objects.update(pods, bound, old.mod_revision).await {
            Ok(_) => return Ok(skiff_api::status::success_status()),
            Err(e) if e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        pods,
        name,
        "the pod kept changing during the binding; try again",
    ))
}

/// Sets a status condition (type, status, lastTransitionTime when the status changes).
fn set_condition(obj: &mut Value, ty: &str, status: &str) {
    let now = skiff_api::object::now_rfc3339();
    let conditions = obj["status"]
        .as_object_mut()
        .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
    let Some(Value::Array(list)) = conditions else {
        return;
    };
    match list
        .iter_mut()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(ty))
    {
        Some(c) if c.get("status").and_then(Value::as_str) == Some(status) => {}
        Some(c) => {
            c["status"] = status.into();
            c["lastTransitionTime"] = now.into();
        }
        None => list.push(
            json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": now}),
        ),
    }
}
