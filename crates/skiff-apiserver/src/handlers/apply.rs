//! Server-side apply: create-or-update under field ownership.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::object::{meta_str, metadata_mut};
use skiff_api::{ApiError, Subresource, managed_fields};

use super::persist::{PATCH_RETRIES, WriteOptions, admit_create, create_object, update_object};
use crate::field_validation::with_warnings;
use crate::negotiate::{Output, respond};
use crate::query::Query;
use crate::request::ResourceRequest;
use crate::state::ApiState;
use crate::strategy;

/// Server-side apply: create the object from the configuration, or merge the configuration
/// into it under field ownership (409 on conflicts with other managers unless `force`).
pub(super) async fn server_side_apply(
    state: &ApiState,
    user: &crate::authn::UserInfo,
    rr: &ResourceRequest,
    query: &Query,
    output: Output,
    mut applied: Value,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    // The main resource, or its status (how controllers apply what they observed).
    let status = match rr.subresource {
        None => false,
        Some(Subresource::Status) => true,
        Some(_) => {
            return Err(ApiError::method_not_supported(
                rr.rt(),
                "apply on this subresource",
            ));
        }
    };
    let subresource = status.then_some("status");
    if query.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let force = query.flag("force");
    let api_version = rr.rt().api_version();
    let types = rr.kind.field_types();
    let (a, k) = (
        applied
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        applied
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    if a != api_version || k != rr.rt().kind {
        return Err(ApiError::bad_request(format!(
            "the applied configuration is {a:?} {k:?}, not {api_version:?} {:?} as the request path says",
            rr.rt().kind
        )));
    }
    if let Some(n) = meta_str(&applied, "name").filter(|n| *n != rr.name_or_empty()) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            rr.name_or_empty()
        )));
    }
    let warnings = opts
        .directive
        .apply(rr.kind.as_ref(), &mut applied, &opts.duplicates)?;
    let now = skiff_api::object::now_rfc3339();
    let conflict_error = |conflicts: Vec<managed_fields::Conflict>| {
        let mut e = ApiError::new(
            409,
            "Conflict",
            managed_fields::conflict_message(&conflicts),
        );
        e.details = Some(Box::new(skiff_api::status::Details {
            name: rr.name_or_empty().to_string(),
            group: rr.rt().group.to_string(),
            kind: rr.rt().plural.to_string(),
            causes: conflicts
                .iter()
                .map(|c| skiff_api::Cause {
                    reason: "FieldManagerConflict",
                    message: format!("conflict with {:?} using {}", c.manager, c.api_version),
                    field: c.field.clone(),
                })
                .collect(),
            retry_after_seconds: None,
        }));
        e
    };
    for _ in 0..PATCH_RETRIES {
        match state
            .objects
            .get(rr.rt(), rr.namespace.as_deref(), rr.name_or_empty())
            .await
        {
            Err(e) if e.code == 404 && status => return Err(e),
            Err(e) if e.code == 404 => {
                let mut obj = managed_fields::apply_typed(
                    &api_version,
                    &types,
                    &json!({}),
                    &applied,
                    &opts.manager,
                    None,
                    force,
                    &now,
                )
                .map_err(conflict_error)?;
                metadata_mut(&mut obj).insert("name".into(), rr.name_or_empty().into());
                let kind = rr.kind.as_ref();
                strategy::prepare_create(kind, &mut obj, rr.namespace.as_deref())?;
                let _charged = admit_create(state, user, kind, &mut obj).await?;
                match create_object(state, kind, obj).await {
                    Ok(stored) => {
                        let mut warnings = warnings.clone();
                        warnings.extend(kind.warnings(&stored.object));
                        return Ok(with_warnings(
                            respond(StatusCode::CREATED, &stored.object, output),
                            &warnings,
                        ));
                    }
                    Err(e) if e.reason == "AlreadyExists" => continue,
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
            Ok(live) => {
                let apply = |force| {
                    managed_fields::apply_typed(
                        &api_version,
                        &types,
                        &live.object,
                        &applied,
                        &opts.manager,
                        subresource,
                        force,
                        &now,
                    )
                };
                let mut merged = match apply(force) {
                    // kubectl's move from client-side to server-side apply takes over what
                    // its last client-side apply set, as upstream's server does.
                    Err(conflicts)
                        if !status
                            && managed_fields::allowed_by_last_applied_typed(
                                &types,
                                &live.object,
                                &opts.manager,
                                &conflicts,
                            ) =>
                    {
                        apply(true)
                    }
                    result => result,
                }
                .map_err(conflict_error)?;
                let entries = managed_fields::read(&merged);
                let kind = rr.kind.as_ref();
                strategy::prepare_update(kind, &mut merged, &live.object, rr.subresource)?;
                strategy::validate_update(kind, &merged, &live.object, rr.subresource)?;
                // A status write keeps everything else, the new ownership included.
                managed_fields::write(&mut merged, &entries);
                match update_object(state, kind, merged, &live, !status).await {
                    Ok(stored) => {
                        let mut warnings = warnings.clone();
                        if !status {
                            warnings.extend(kind.warnings(&stored.object));
                        }
                        return Ok(with_warnings(
                            respond(StatusCode::OK, &stored.object, output),
                            &warnings,
                        ));
                    }
                    Err(e) if e.reason == "Conflict" => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(ApiError::conflict(
        rr.rt(),
        rr.name_or_empty(),
        "the object kept changing while the configuration was applied; try again",
    ))
}
