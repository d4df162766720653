//! The resource handlers: dispatch of every `/api/...` and `/apis/...` resource request to
//! its verb, and what the verbs share (the state, the query, responses). Reads, writes,
//! apply, binding and deletes each have their module; watches are in `crate::watch`.

mod apply;
mod binding;
mod delete;
mod read;
mod token;
mod write;

// The verb modules reach each other's helpers, and these imports, through `use super::*`.
use apply::*;
use binding::*;
use delete::*;
use read::*;
use token::*;
use write::*;

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_api::object::{meta_str, metadata_mut};
use skiff_api::patch::{JsonPatchError, PatchKind};
use skiff_api::resources::lookup;
use skiff_api::selectors::Selector;
use skiff_api::{ApiError, ResourceType, Subresource, fields, managed_fields, table};
use skiff_store::Revision;

use crate::allocators::ServiceAllocator;
use crate::continue_token;
use crate::field_validation::{Directive, with_warnings};
use crate::negotiate::{self, Conversions, Output};
use crate::objects::{Objects, Stored};
use crate::request::{self, ResourceRequest, Verb};
use crate::strategy;
use crate::watch;
use crate::watch_cache::{Caches, Freshness, Snapshot};

/// Bodies over this size are refused with 413 (upstream's limit for most requests).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// How many times a patch is re-applied when the object changes under it.
const PATCH_RETRIES: usize = 8;

/// What every handler shares.
pub struct ApiState {
    pub objects: Objects,
    pub caches: Caches,
    pub services: ServiceAllocator,
    pub tolerations: DefaultTolerations,
    pub tokens: Arc<crate::sa_token::TokenIssuer>,
    pub nodes: crate::node_stream::NodeDialer,
}

/// What the DefaultTolerationSeconds admission gives new pods.
pub struct DefaultTolerations {
    pub not_ready_seconds: i64,
    pub unreachable_seconds: i64,
}

/// An error as a `Status` response.
pub fn error_response(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        skiff_api::wire_json::body(&err.to_status()),
    )
        .into_response()
}

/// A JSON or YAML response.
pub fn respond(code: StatusCode, value: &Value, output: Output) -> Response {
    let (body, content_type) = negotiate::encode(value, output);
    (code, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The query parameters of a request (last value wins, as upstream's decoder).
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        Ok(Query(pairs.into_iter().collect()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value {v:?} for {key}"))),
        }
    }
}

/// The entry point for every `/api/...` and `/apis/...` resource path.
pub async fn resource(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    // Node streams keep the whole request: an upgrade needs it, and the body is the stream.
    if let Ok(rr) = request::parse(req.method(), req.uri().path(), false)
        && rr.subresource.is_some_and(Subresource::is_node_stream)
    {
        return crate::node_stream::serve(state, rr, req)
            .await
            .unwrap_or_else(|e| error_response(&e));
    }
    // The request log (upstream's httplog): `RUST_LOG=skiff_apiserver::requests=debug`.
    let logged = tracing::enabled!(target: "skiff_apiserver::requests", tracing::Level::DEBUG)
        .then(|| {
            (
                req.method().clone(),
                req.uri().clone(),
                std::time::Instant::now(),
            )
        });
    let response = match dispatch(state, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    if let Some((method, uri, started)) = logged {
        tracing::debug!(target: "skiff_apiserver::requests", %method, %uri,
            status = response.status().as_u16(), micros = started.elapsed().as_micros() as u64);
    }
    response
}

/// How much of an oversized body is read and dropped before answering 413, so HTTP/2
/// clients see the answer rather than a reset stream; beyond it the stream is reset.
const OVERSIZE_DRAIN_BYTES: usize = 64 * 1024 * 1024;

async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    use futures_util::StreamExt;
    let mut stream = body.into_data_stream();
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        total += chunk.len();
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&chunk);
        } else if total > MAX_BODY_BYTES + OVERSIZE_DRAIN_BYTES {
            break;
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    Ok(buf.freeze())
}

async fn dispatch(state: Arc<ApiState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    // Read the body before anything can fail: an HTTP/2 stream answered before its upload
    // finished is reset, and some clients report the reset instead of the answer.
    let body = read_body(body).await?;
    let query = Query::parse(parts.uri.query())?;
    let rr = request::parse(&parts.method, parts.uri.path(), query.flag("watch"))?;
    let headers = parts.headers;
    if !rr.rt.is_stored() {
        return match rr.verb {
            Verb::Create => crate::reviews::create(rr.rt, &headers, &body),
            _ => Err(ApiError::method_not_supported(rr.rt, parts.method.as_str())),
        };
    }
    match rr.verb {
        Verb::Get => get(&state, &rr, &headers).await,
        Verb::List => list(&state, &rr, &query, &headers).await,
        Verb::Watch => {
            watch::serve(state.objects.clone(), &state.caches, &rr, &query, &headers).await
        }
        Verb::Create => create(&state, &rr, &query, &headers, &body).await,
        Verb::Update => update(&state, &rr, &query, &headers, &body).await,
        Verb::Patch => patch(&state, &rr, &query, &headers, &body).await,
        Verb::Delete => delete(&state, &rr, &query, &headers, &body).await,
        Verb::DeleteCollection => delete_collection(&state, &rr, &query, &headers, &body).await,
    }
}

fn name_of(rr: &ResourceRequest) -> &str {
    rr.name.as_deref().unwrap_or_default()
}

/// The label and field selectors of a list or watch, checked against the type.
pub fn selectors(rt: &ResourceType, query: &Query) -> Result<(Selector, Selector), ApiError> {
    let labels = Selector::parse_labels(query.get("labelSelector").unwrap_or(""))?;
    let field_sel = Selector::parse_fields(query.get("fieldSelector").unwrap_or(""))?;
    fields::check_field_selector(rt, &field_sel)?;
    Ok((labels, field_sel))
}

/// Whether an object passes both selectors.
pub fn selected(labels: &Selector, field_sel: &Selector, obj: &Value) -> bool {
    labels.matches_labels(obj.get("metadata").and_then(|m| m.get("labels")))
        && fields::matches_fields(field_sel, obj)
}
