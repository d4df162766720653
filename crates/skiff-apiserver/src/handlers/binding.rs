//! `pods/<name>/binding`: the scheduler's assignment of a pod to a node.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::object::{meta_str, metadata_mut};

use super::persist::PATCH_RETRIES;
use crate::negotiate::{Output, respond};
use crate::request::ResourceRequest;
use crate::state::ApiState;

/// `pods/<name>/binding`: the scheduler's assignment of a pod to a node. Sets
/// `spec.nodeName` once (a bound pod answers 409) and the PodScheduled condition.
pub(super) async fn bind_pod(
    state: &ApiState,
    rr: &ResourceRequest,
    binding: &Value,
    output: Output,
) -> Result<Response, ApiError> {
    let name = rr.name_or_empty();
    let binding_rt = &crate::registry::core::pod::RESOURCE;
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
        let old = state
            .objects
            .get(rr.rt(), rr.namespace.as_deref(), name)
            .await?;
        if meta_str(&old.object, "deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                rr.rt(),
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(current) = skiff_api::object::field_str(&old.object, &["spec", "nodeName"])
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                rr.rt(),
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
        match state.objects.update(rr.rt(), bound, old.mod_revision).await {
            Ok(_) => {
                return Ok(respond(
                    StatusCode::CREATED,
                    &skiff_api::status::success_status(),
                    output,
                ));
            }
            Err(e) if e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        rr.rt(),
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
