//! Deletes: one object or a collection, with preconditions, grace periods, finalizers and
//! propagation policies.

use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::object::{meta_str, metadata_mut};

use super::Call;
use super::persist::{PATCH_RETRIES, delete_object};
use crate::negotiate::{self, Conversions, respond};
use crate::query::{Query, selected, selectors};
use crate::registry::Kind;
use crate::state::ApiState;

/// `DeleteOptions` from a body or the query.
#[derive(Default)]
pub(crate) struct DeleteOptions {
    grace_period: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    /// The finalizer a propagation policy asks for: `foregroundDeletion` (Foreground) or
    /// `orphan` (Orphan); the garbage collector acts on it and removes it.
    propagation_finalizer: Option<&'static str>,
}

pub(super) fn delete_options(
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<DeleteOptions, ApiError> {
    let doc = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        negotiate::decode_body(headers, body)?
    };
    let grace_period = match doc.get("gracePeriodSeconds").and_then(Value::as_i64) {
        Some(g) => Some(g),
        None => query.number("gracePeriodSeconds")?,
    };
    let policy = doc
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(query.get("propagationPolicy"));
    let orphan_dependents = doc
        .get("orphanDependents")
        .and_then(Value::as_bool)
        .or_else(|| query.get("orphanDependents").map(|v| v == "true"));
    let propagation_finalizer = match (policy, orphan_dependents) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "orphanDependents and propagationPolicy cannot both be set",
            ));
        }
        (Some("Foreground"), _) => Some("foregroundDeletion"),
        (Some("Orphan"), _) | (None, Some(true)) => Some("orphan"),
        (Some("Background") | None, _) => None,
        (Some(p), _) => {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy {p:?} is not supported: supported values: \"Orphan\", \"Background\", \"Foreground\""
            )));
        }
    };
    let pre = doc.get("preconditions");
    Ok(DeleteOptions {
        propagation_finalizer,
        grace_period,
        uid: pre
            .and_then(|p| p.get("uid"))
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: pre
            .and_then(|p| p.get("resourceVersion"))
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// Deletes one object: at once, or by marking it (finalizers pending, or a pod on a node
/// that must stop its containers first). Answers whether it is gone and the object.
pub(crate) async fn delete_one(
    state: &ApiState,
    kind: &dyn Kind,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(bool, Value), ApiError> {
    let rt = kind.resource();
    for _ in 0..PATCH_RETRIES {
        let old = state.objects.get(rt, ns, name).await?;
        if let Some(uid) = &opts.uid
            && Some(uid.as_str()) != meta_str(&old.object, "uid")
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old.object, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && *rv != old.mod_revision.to_string()
        {
            return Err(ApiError::conflict(
                rt,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    old.mod_revision
                ),
            ));
        }
        let non_empty = |path: &[&str]| {
            skiff_api::object::field(&old.object, path)
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty())
        };
        // A namespace's spec.finalizers ("kubernetes") wait for the namespace controller to
        // empty it.
        let has_finalizers = opts.propagation_finalizer.is_some()
            || kind.deletion_finalizer().is_some()
            || non_empty(&["metadata", "finalizers"])
            || non_empty(&["spec", "finalizers"]);
        let grace = kind.graceful_deletion(&old.object, opts.grace_period);
        if !has_finalizers && grace.is_none() {
            match delete_object(state, kind, ns, name, old.mod_revision).await {
                Ok(obj) => return Ok((true, obj)),
                Err(e) if e.reason == "Conflict" => continue,
                Err(e) => return Err(e),
            }
        }
        if meta_str(&old.object, "deletionTimestamp").is_some() {
            return Ok((false, old.object));
        }
        let mut marked = old.object.clone();
        let meta = metadata_mut(&mut marked);
        let seconds = grace.unwrap_or(0);
        let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(seconds);
        meta.insert(
            "deletionTimestamp".into(),
            skiff_api::object::format_time(at).into(),
        );
        meta.insert("deletionGracePeriodSeconds".into(), seconds.into());
        for f in opts
            .propagation_finalizer
            .into_iter()
            .chain(kind.deletion_finalizer())
        {
            let list = meta.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut()
                && !list.iter().any(|v| v == f)
            {
                list.push(f.into());
            }
        }
        kind.deleting(state, &mut marked);
        match state.objects.update(rt, marked, old.mod_revision).await {
            Ok(stored) => return Ok((false, stored.object)),
            Err(e) if e.reason == "Conflict" => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        rt,
        name,
        "the object kept changing during the delete; try again",
    ))
}

pub(super) async fn delete(call: Call<'_>) -> Result<Response, ApiError> {
    let (state, rr, query, headers, body) = call.parts();
    let output = negotiate::output(headers, Conversions::None)?;
    if rr.subresource.is_some() {
        return Err(ApiError::method_not_supported(rr.rt(), "DELETE"));
    }
    let opts = delete_options(query, headers, body)?;
    let (gone, obj) = delete_one(
        state,
        rr.kind.as_ref(),
        rr.namespace.as_deref(),
        rr.name_or_empty(),
        &opts,
    )
    .await?;
    let code = if gone {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(respond(code, &obj, output))
}

pub(super) async fn delete_collection(call: Call<'_>) -> Result<Response, ApiError> {
    let (state, rr, query, headers, body) = call.parts();
    let output = negotiate::output(headers, Conversions::None)?;
    let opts = delete_options(query, headers, body)?;
    let (labels, field_sel) = selectors(rr.kind.as_ref(), query)?;
    let page = state
        .objects
        .list(rr.rt(), rr.namespace.as_deref(), 0, None, None, |o| {
            selected(&labels, &field_sel, o)
        })
        .await?;
    let mut items = Vec::new();
    for obj in page.items {
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let ns = meta_str(&obj, "namespace").map(str::to_string);
        match delete_one(state, rr.kind.as_ref(), ns.as_deref(), &name, &opts).await {
            Ok((_, obj)) => items.push(obj),
            // Deleted by someone else meanwhile: that is what was asked.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": rr.rt().list_kind(),
        "apiVersion": rr.rt().api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": items,
    });
    Ok(respond(StatusCode::OK, &body, output))
}
