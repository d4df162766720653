//! `POST`: new objects, and the subresources created by POST (a pod's binding, a service
//! account's token).

use axum::http::StatusCode;
use axum::response::Response;
use skiff_api::{ApiError, Subresource};

use super::Call;
use super::binding::bind_pod;
use super::persist::{WriteOptions, admit_create, create_object, field_manager, track_fields};
use super::token::create_token;
use crate::field_validation::with_warnings;
use crate::negotiate::{self, Conversions, respond};
use crate::strategy;

pub(super) async fn create(call: Call<'_>) -> Result<Response, ApiError> {
    let user = call.user();
    let (state, rr, query, headers, body) = call.parts();
    let output = negotiate::output(headers, Conversions::None)?;
    if rr.subresource == Some(Subresource::Binding) {
        let binding = negotiate::decode_body(headers, body)?;
        // Checked as on every create, though a binding records no field owner.
        field_manager(query, headers)?;
        let status = bind_pod(state, rr.namespace.as_deref(), rr.name_or_empty(), &binding).await?;
        return Ok(respond(StatusCode::CREATED, &status, output));
    }
    if rr.subresource == Some(Subresource::Token) {
        let request = negotiate::decode_body(headers, body)?;
        return create_token(state, rr, &request, output).await;
    }
    if rr.subresource.is_some() || rr.name.is_some() {
        return Err(ApiError::method_not_supported(rr.rt(), "POST"));
    }
    let opts = WriteOptions::from_request(query, headers, body)?;
    let mut obj = negotiate::decode_body(headers, body)?;
    let mut warnings = opts
        .directive
        .apply(rr.kind.as_ref(), &mut obj, &opts.duplicates)?;
    // Upstream's order: decoded and defaulted, fields recorded, admitted, validated, stored.
    let kind = rr.kind.as_ref();
    strategy::prepare_create(kind, &mut obj, rr.namespace.as_deref())?;
    track_fields(rr.kind.as_ref(), &opts.manager, None, None, &mut obj);
    let _charged = admit_create(state, user, kind, &mut obj).await?;
    warnings.extend(kind.warnings(&obj));
    let stored = create_object(state, kind, obj).await?;
    Ok(with_warnings(
        respond(StatusCode::CREATED, &stored.object, output),
        &warnings,
    ))
}
