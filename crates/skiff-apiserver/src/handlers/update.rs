//! `PUT` and `PATCH` (JSON, merge, strategic; server-side apply has its module), through the
//! main resource or the status and scale subresources.

use axum::http::{StatusCode, header};
use axum::response::Response;
use serde_json::Value;
use skiff_api::object::meta_str;
use skiff_api::patch::{JsonPatchError, PatchKind};
use skiff_api::{ApiError, Subresource};

use super::Call;
use super::apply::server_side_apply;
use super::persist::{PATCH_RETRIES, WriteOptions, check_precondition, write_update};
use super::scale::scale_of;
use crate::field_validation::with_warnings;
use crate::negotiate::{self, Conversions, Output, respond};
use crate::request::ResourceRequest;

pub(super) async fn update(call: Call<'_>) -> Result<Response, ApiError> {
    let (state, rr, query, headers, body) = call.parts();
    let output = negotiate::output(headers, Conversions::None)?;
    let opts = WriteOptions::from_request(query, headers, body)?;
    let new = negotiate::decode_body(headers, body)?;
    let old = state
        .objects
        .get(rr.rt(), rr.namespace.as_deref(), rr.name_or_empty())
        .await?;
    check_precondition(
        rr.rt(),
        rr.name_or_empty(),
        meta_str(&new, "resourceVersion"),
        old.mod_revision,
    )?;
    let (stored, warnings) = write_update(state, rr, new, &old, &opts).await?;
    Ok(render_written(rr, &stored.object, output, &warnings))
}

pub(super) fn render_written(
    rr: &ResourceRequest,
    obj: &Value,
    output: Output,
    warnings: &[String],
) -> Response {
    let response = if rr.subresource == Some(Subresource::Scale) {
        respond(
            StatusCode::OK,
            &scale_of(obj, rr.kind.scale_paths()),
            output,
        )
    } else {
        respond(StatusCode::OK, obj, output)
    };
    with_warnings(response, warnings)
}

pub(super) async fn patch(call: Call<'_>) -> Result<Response, ApiError> {
    let user = call.user();
    let (state, rr, query, headers, body) = call.parts();
    let output = negotiate::output(headers, Conversions::None)?;
    let opts = WriteOptions::from_request(query, headers, body)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = PatchKind::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type, PatchKind::MEDIA_TYPES))?;
    // Custom resources have no patch strategies to merge by: upstream refuses the type.
    if kind == PatchKind::Strategic && rr.kind.definition_hash().is_some() {
        return Err(ApiError::unsupported_media_type(
            content_type,
            PatchKind::CUSTOM_MEDIA_TYPES,
        ));
    }
    let patch_doc = match kind {
        PatchKind::Apply => negotiate::decode_yaml(body)?,
        _ => negotiate::decode_json(body)?,
    };
    if kind == PatchKind::Apply {
        return server_side_apply(state, user, rr, query, output, patch_doc, &opts).await;
    }
    // A patch that sets resourceVersion is a precondition on it (a JSON patch states its
    // preconditions with `test` operations instead).
    let precondition = meta_str(&patch_doc, "resourceVersion");
    for _ in 0..PATCH_RETRIES {
        let old = state
            .objects
            .get(rr.rt(), rr.namespace.as_deref(), rr.name_or_empty())
            .await?;
        let mut target = if rr.subresource == Some(Subresource::Scale) {
            scale_of(&old.object, rr.kind.scale_paths())
        } else {
            old.object.clone()
        };
        match kind {
            PatchKind::Merge => skiff_api::patch::merge_patch(&mut target, &patch_doc),
            PatchKind::Json => {
                skiff_api::patch::json_patch(&mut target, &patch_doc).map_err(|e| match e {
                    JsonPatchError::Malformed(m) => ApiError::bad_request(m),
                    JsonPatchError::Failed(m) => ApiError::new(422, "Invalid", m),
                })?
            }
            PatchKind::Strategic => {
                let api_version = rr.rt().api_version();
                let (api_version, kind) = if rr.subresource == Some(Subresource::Scale) {
                    ("autoscaling/v1", "Scale")
                } else {
                    (api_version.as_str(), rr.rt().kind)
                };
                skiff_api::strategic::strategic_merge_patch(
                    api_version,
                    kind,
                    &mut target,
                    &patch_doc,
                )
                .map_err(|e| ApiError::bad_request(e.to_string()))?
            }
            PatchKind::Apply => unreachable!("applied above"),
        }
        check_precondition(rr.rt(), rr.name_or_empty(), precondition, old.mod_revision)?;
        match write_update(state, rr, target, &old, &opts).await {
            Ok((stored, warnings)) => {
                return Ok(render_written(rr, &stored.object, output, &warnings));
            }
            Err(e) if e.reason == "Conflict" && precondition.is_none() => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        rr.rt(),
        rr.name_or_empty(),
        "the object kept changing while the patch was applied; try again",
    ))
}
