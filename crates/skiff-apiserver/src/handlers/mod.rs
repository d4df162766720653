//! The resource handlers: every `/api/...` and `/apis/...` resource request, dispatched to
//! its verb. Each verb has its module (`read`, `create`, `update`, `delete`; server-side
//! apply, a pod's binding and a service account's token are theirs too); what the writing
//! verbs share is `persist`. Watches are served by `crate::watch`. The modules import one
//! another in one direction only: the verbs use `persist`, `scale` and the subresources,
//! never the other way round.

mod apply;
pub(crate) mod binding;
mod create;
pub(crate) mod delete;
mod persist;
mod read;
mod scale;
mod token;
mod update;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use skiff_api::{ApiError, Subresource};

use crate::negotiate::{self, error_response};
use crate::query::Query;
use crate::request::{self, ResourceRequest, Verb};
use crate::state::ApiState;
use crate::watch;

/// One resource request, as the verb handlers take it.
#[derive(Clone, Copy)]
struct Call<'a> {
    state: &'a ApiState,
    /// Who asks (authentication set it).
    user: &'a crate::authn::UserInfo,
    rr: &'a ResourceRequest,
    query: &'a Query,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl<'a> Call<'a> {
    fn user(&self) -> &'a crate::authn::UserInfo {
        self.user
    }

    fn parts(
        self,
    ) -> (
        &'a ApiState,
        &'a ResourceRequest,
        &'a Query,
        &'a HeaderMap,
        &'a [u8],
    ) {
        (self.state, self.rr, self.query, self.headers, self.body)
    }
}

/// Bodies over this size are refused with 413 (upstream's limit for most requests).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The entry point for every `/api/...` and `/apis/...` resource path.
pub async fn resource(State(state): State<Arc<ApiState>>, req: Request) -> Response {
    // Node streams and proxied requests keep the whole request: an upgrade needs it, and
    // the body is the stream (or the proxied request's own, of any size).
    if let Ok(rr) = request::parse(&state.registry, req.method(), req.uri().path(), false)
        && let Some(sub) = rr.subresource
        && (sub.is_node_stream() || sub == Subresource::Proxy)
    {
        let answered = if sub == Subresource::Proxy {
            crate::proxy::serve(state, rr, req).await
        } else {
            crate::node_stream::serve(state, rr, req).await
        };
        return answered.unwrap_or_else(|e| error_response(&e));
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
    let rr = request::parse(
        &state.registry,
        &parts.method,
        parts.uri.path(),
        query.flag("watch"),
    )?;
    let headers = parts.headers;
    // Who asks: set by authentication (a request that reached here has a user).
    let user = parts
        .extensions
        .get::<crate::authn::UserInfo>()
        .ok_or_else(ApiError::unauthorized)?;
    if !rr.rt().is_stored() {
        // Reviews and bindings: the kind computes what a create does and answers;
        // component statuses are computed when read.
        return match rr.verb {
            Verb::Get | Verb::List if rr.subresource.is_none() => {
                let Some(computing) = rr.kind.computed(&state) else {
                    return Err(ApiError::method_not_supported(
                        rr.rt(),
                        parts.method.as_str(),
                    ));
                };
                let conversions = if rr.verb == Verb::Get {
                    negotiate::Conversions::Object
                } else {
                    negotiate::Conversions::List
                };
                let output = negotiate::output(&headers, conversions)?;
                let objects = computing.await?;
                let warnings = rr.kind.warnings(&serde_json::Value::Null);
                let response = match &rr.name {
                    Some(name) => {
                        let found = objects
                            .into_iter()
                            .find(|o| skiff_api::object::meta_str(o, "name") == Some(name))
                            .ok_or_else(|| ApiError::not_found(rr.rt(), name))?;
                        read::render_one(rr.kind.as_ref(), &found, output, StatusCode::OK)
                    }
                    None => read::render_list(rr.kind.as_ref(), objects, output, "", None),
                };
                Ok(crate::field_validation::with_warnings(response, &warnings))
            }
            Verb::Create => {
                let output = negotiate::output(&headers, negotiate::Conversions::None)?;
                let obj = negotiate::decode_body(&headers, &body)?;
                let answer = rr
                    .kind
                    .create_unstored(&state, user, rr.namespace.as_deref(), obj)
                    .await?;
                Ok(negotiate::respond(StatusCode::CREATED, &answer, output))
            }
            _ => Err(ApiError::method_not_supported(
                rr.rt(),
                parts.method.as_str(),
            )),
        };
    }
    let call = Call {
        state: &state,
        user,
        rr: &rr,
        query: &query,
        headers: &headers,
        body: &body,
    };
    match rr.verb {
        Verb::Get => read::get(call).await,
        Verb::List => read::list(call).await,
        Verb::Watch => {
            watch::serve(state.objects.clone(), &state.caches, &rr, &query, &headers).await
        }
        Verb::Create => create::create(call).await,
        Verb::Update => update::update(call).await,
        Verb::Patch => update::patch(call).await,
        Verb::Delete => delete::delete(call).await,
        Verb::DeleteCollection => delete::delete_collection(call).await,
    }
}
