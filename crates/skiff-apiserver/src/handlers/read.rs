//! Reads: get (with the scale subresource) and list, from the watch cache when it can
//! answer, else the datastore.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use skiff_api::object::meta_str;
use skiff_api::{ApiError, ResourceType, Subresource, table};
use skiff_store::Revision;

use super::Call;
use super::scale::scale_of;
use crate::continue_token;
use crate::list_snapshots::{ListQuery, Page};
use crate::negotiate::{self, Conversions, Output, respond};
use crate::query::{Query, selected, selectors};
use crate::registry::Kind;
use crate::watch_cache::{Cached, Freshness};

/// One object as the client asked for it: the object, or a one-row Table.
pub(super) fn render_one(
    kind: &dyn Kind,
    obj: &Value,
    output: Output,
    code: StatusCode,
) -> Response {
    match output {
        Output::Table { .. } => {
            let rv = meta_str(obj, "resourceVersion").unwrap_or_default();
            let t = table::table(
                kind,
                std::slice::from_ref(obj),
                rv,
                None,
                time::OffsetDateTime::now_utc(),
            );
            respond(code, &t, output)
        }
        _ => match output.metadata_api_version() {
            Some(api_version) => respond(
                code,
                &negotiate::partial_object_metadata(obj, api_version),
                output,
            ),
            None => respond(code, obj, output),
        },
    }
}

pub(super) async fn get(call: Call<'_>) -> Result<Response, ApiError> {
    let (state, rr, _, headers, _) = call.parts();
    let output = negotiate::output(
        headers,
        if rr.subresource.is_none() {
            Conversions::Object
        } else {
            Conversions::None
        },
    )?;
    let stored = state
        .objects
        .get(rr.rt(), rr.namespace.as_deref(), rr.name_or_empty())
        .await?;
    if rr.subresource == Some(Subresource::Scale) {
        return Ok(respond(
            StatusCode::OK,
            &scale_of(&stored.object, rr.kind.scale_paths()),
            output,
        ));
    }
    Ok(render_one(
        rr.kind.as_ref(),
        &stored.object,
        output,
        StatusCode::OK,
    ))
}

pub(super) async fn list(call: Call<'_>) -> Result<Response, ApiError> {
    let (state, rr, query, headers, _) = call.parts();
    let output = negotiate::output(headers, Conversions::List)?;
    let (labels, field_sel) = selectors(rr.kind.as_ref(), query)?;
    let limit: usize = query.number("limit")?.unwrap_or(0);
    let token = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(continue_token::decode(token)?),
        None => None,
    };
    let exact = query.get("resourceVersionMatch") == Some("Exact");
    let freshness = match query.number::<Revision>("resourceVersion")? {
        None => Freshness::Newest,
        Some(0) => Freshness::Any,
        Some(n) => Freshness::AtLeast(n),
    };
    // Lists come from the watch cache: whole ones from its current state, pages from a
    // snapshot the first page took (upstream's ListFromCacheSnapshot). Exact revisions,
    // and pages whose snapshot is gone, come from the datastore.
    if !exact {
        let caches = &state.caches;
        let ns = rr.namespace.as_deref();
        let list_query = || ListQuery {
            resource: rr.rt().group_resource(),
            namespace: rr.namespace.clone(),
            labels: query.get("labelSelector").unwrap_or_default().to_string(),
            fields: query.get("fieldSelector").unwrap_or_default().to_string(),
        };
        let cached = match (&token, limit) {
            (None, 0) => {
                caches
                    .list(rr.rt(), ns, freshness, &labels, &field_sel)
                    .await?
            }
            (None, limit) => {
                caches
                    .first_page(
                        rr.rt(),
                        list_query(),
                        freshness,
                        (&labels, &field_sel),
                        limit,
                    )
                    .await?
            }
            // A continue without a limit asks for the rest.
            (Some(token), limit) => {
                let limit = if limit == 0 { usize::MAX } else { limit };
                caches
                    .next_page(rr.rt(), &list_query(), token, limit)
                    .await?
            }
        };
        if let Some(page) = cached {
            return render_cached_list(rr.kind.as_ref(), page, output);
        }
    }
    let (after, at_revision) = match token {
        Some(t) => (Some(t.start_after), Some(t.revision)),
        None => (None, exact_revision(query)?),
    };
    let page = state
        .objects
        .list(
            rr.rt(),
            rr.namespace.as_deref(),
            limit,
            after,
            at_revision,
            |o| selected(&labels, &field_sel, o),
        )
        .await?;
    let rv = page.revision.to_string();
    let cont = page
        .last_key
        .map(|k| continue_token::encode(page.revision, &k));
    Ok(render_list(
        rr.kind.as_ref(),
        page.items,
        output,
        &rv,
        cont.as_deref(),
    ))
}

/// A list of decoded objects as `output` presents it (a Table, the kind's list, or
/// metadata only), at revision `rv`.
pub(super) fn render_list(
    kind: &dyn Kind,
    items: Vec<Value>,
    output: Output,
    rv: &str,
    cont: Option<&str>,
) -> Response {
    let body = match output {
        Output::Table { .. } => {
            table::table(kind, &items, rv, cont, time::OffsetDateTime::now_utc())
        }
        _ => list_body(kind.resource(), output, table::list_meta(rv, cont), items),
    };
    respond(StatusCode::OK, &body, output)
}

/// A list from the watch cache: JSON spliced from each object's cached bytes (no decoding),
/// other representations from the decoded objects.
pub(super) fn render_cached_list(
    kind: &dyn Kind,
    page: Page,
    output: Output,
) -> Result<Response, ApiError> {
    let rt = kind.resource();
    let Page {
        revision,
        items,
        last_key,
    } = page;
    let cont = last_key.map(|k| continue_token::encode(revision, &k));
    let rv = revision.to_string();
    let metadata = table::list_meta(&rv, cont.as_deref());
    if output == Output::Json {
        let head = format!(
            r#"{{"kind":"{}","apiVersion":"{}","metadata":{metadata},"items":["#,
            rt.list_kind(),
            rt.api_version()
        );
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(json_list_chunks(head, items)),
        )
            .into_response());
    }
    if let Output::Table { .. } = output {
        let rows = items.iter().map(|c| &c.row);
        let now = time::OffsetDateTime::now_utc();
        let mut body = table::table_json_from_rows(kind, rows, &rv, cont.as_deref(), now);
        body.push(b'\n');
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response());
    }
    let items = items
        .iter()
        .map(|c| serde_json::from_slice::<Value>(&c.bytes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal(format!("watch cache entry is not JSON: {e}")))?;
    let body = list_body(rt, output, metadata, items);
    Ok(respond(StatusCode::OK, &body, output))
}

/// A list of `rt`'s objects as `output` presents it: the kind's own list, or a
/// `PartialObjectMetadataList` of their metadata.
fn list_body(rt: &ResourceType, output: Output, metadata: Value, items: Vec<Value>) -> Value {
    match output.metadata_api_version() {
        Some(api_version) => json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": api_version,
            "metadata": metadata,
            "items": items
                .iter()
                .map(|o| negotiate::partial_object_metadata(o, api_version))
                .collect::<Vec<_>>(),
        }),
        None => json!({
            "kind": rt.list_kind(),
            "apiVersion": rt.api_version(),
            "metadata": metadata,
            "items": items,
        }),
    }
}

/// A JSON list body in chunks of about 64 KiB, each made when the connection asks for the
/// next: at most a chunk or two of a list is in memory at once, whatever its size (a list
/// of 10,000 pods is 22 MB; building it whole per request cost that much resident memory,
/// which the allocator keeps), and a chunk per object would be slow.
fn json_list_chunks(
    head: String,
    items: Vec<Arc<Cached>>,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> {
    const CHUNK: usize = 64 * 1024;
    let state = (Some(head), items.into_iter().peekable());
    futures_util::stream::unfold(state, |(head, mut items)| async move {
        if head.is_none() && items.peek().is_none() {
            return None;
        }
        let mut buf = bytes::BytesMut::with_capacity(CHUNK + 4 * 1024);
        let first = head.is_some();
        if let Some(head) = head {
            buf.extend_from_slice(head.as_bytes());
        }
        let mut written = 0usize;
        while buf.len() < CHUNK {
            let Some(item) = items.next() else { break };
            if !(first && written == 0) {
                buf.extend_from_slice(b",");
            }
            buf.extend_from_slice(&item.bytes);
            written += 1;
        }
        if items.peek().is_none() {
            // The end of the list, and of the body: a newline, as upstream ends every body.
            buf.extend_from_slice(b"]}\n");
        }
        Some((Ok(buf.freeze()), (None, items)))
    })
}

/// `resourceVersion=N&resourceVersionMatch=Exact` reads at revision N; every other form is
/// served at the newest revision, which satisfies "not older than" and "any".
pub(super) fn exact_revision(query: &Query) -> Result<Option<Revision>, ApiError> {
    let rv: Option<Revision> = query.number("resourceVersion")?;
    match query.get("resourceVersionMatch") {
        Some("Exact") => match rv {
            Some(r) if r > 0 => Ok(Some(r)),
            _ => Err(ApiError::bad_request(
                "resourceVersionMatch=Exact requires a non-zero resourceVersion",
            )),
        },
        None | Some("" | "NotOlderThan") => Ok(None),
        Some(other) => Err(ApiError::bad_request(format!(
            "unsupported resourceVersionMatch {other:?}: supported values: \"Exact\", \"NotOlderThan\""
        ))),
    }
}
