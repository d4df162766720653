//! Watches: a chunked stream of `{"type": …, "object": …}` lines, one per change, resuming
//! from a resourceVersion exactly as the store's watch does (none missed, none repeated).
//!
//! - No resourceVersion (or `0`): the current objects first, as ADDED, then changes.
//! - `resourceVersion=N`: every change after N; older than the last compaction → an ERROR
//!   event carrying a 410 `Expired` Status (what client-go and kube-rs expect).
//! - Selectors turn changes into what the selected set saw: an object that stops matching is
//!   DELETED, one that starts matching is ADDED.
//! - `allowWatchBookmarks`: BOOKMARK events carry the newest revision delivered, so a client
//!   can resume without a re-list; `sendInitialEvents` ends its initial ADDED events with the
//!   `k8s.io/initial-events-end` bookmark.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api::selectors::Selector;
use skiff_api::{ApiError, table};
use skiff_store::{Event, EventKind, Revision, StoreError};
use tokio::sync::{broadcast, mpsc};

use crate::negotiate::{self, Output};
use crate::query::{Query, selected, selectors};
use crate::registry::Kind;
use crate::request::ResourceRequest;
use crate::storage::{Objects, decode, store_error};
use crate::watch_cache::{CacheEvent, Cached, Caches, Subscription};

/// How long a watch lasts when the client names no `timeoutSeconds` (upstream picks 30–60
/// minutes at random; clients re-watch from their last revision either way).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// How often an idle watch that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);

/// Everything the streaming task needs to render events.
struct Renderer {
    kind: Arc<dyn Kind>,
    output: Output,
    labels: Selector,
    fields: Selector,
    name: Option<String>,
    sent_columns: bool,
}

impl Renderer {
    fn passes(&self, obj: &Value) -> bool {
        self.name
            .as_deref()
            .is_none_or(|n| skiff_api::object::name(obj) == Some(n))
            && selected(&self.labels, &self.fields, obj)
    }

    fn line(&mut self, kind: &str, obj: &Value) -> Bytes {
        let partial;
        let obj = match self.output.metadata_api_version() {
            // Bookmarks too: the client decodes every object of the stream as metadata.
            Some(api_version) if kind != "ERROR" => {
                partial = negotiate::partial_object_metadata(obj, api_version);
                &partial
            }
            _ => obj,
        };
        if self.output.is_protobuf() {
            // A stream is one format throughout: what cannot be encoded becomes an error event.
            return protobuf_frame(kind, obj).unwrap_or_else(|| {
                let status =
                    ApiError::internal(format!("cannot encode a {kind} event as protobuf"))
                        .to_status();
                protobuf_frame("ERROR", &status).unwrap_or_default()
            });
        }
        let table;
        let object = match self.output {
            Output::Table { .. } if kind != "BOOKMARK" && kind != "ERROR" => {
                let mut t = table::table(
                    self.kind.as_ref(),
                    std::slice::from_ref(obj),
                    skiff_api::object::meta_str(obj, "resourceVersion").unwrap_or_default(),
                    None,
                    time::OffsetDateTime::now_utc(),
                );
                if self.sent_columns {
                    t["columnDefinitions"] = Value::Null;
                }
                self.sent_columns = true;
                table = t;
                &table
            }
            _ => obj,
        };
        let mut line = Vec::with_capacity(1024);
        line.extend_from_slice(format!(r#"{{"type":"{kind}","object":"#).as_bytes());
        skiff_api::wire_json::write_object(&mut line, object);
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    fn bookmark(&mut self, revision: Revision, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": revision.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let obj = json!({"kind": self.kind.resource().kind, "apiVersion": self.kind.resource().api_version(), "metadata": meta});
        self.line("BOOKMARK", &obj)
    }

    /// The lines one store event becomes for this watcher (none, or one).
    fn event(&mut self, ev: &Event) -> Result<Option<Bytes>, ApiError> {
        let prev = ev
            .prev
            .as_ref()
            .map(|kv| decode(self.kind.resource(), kv))
            .transpose()?;
        let was = prev.as_ref().is_some_and(|p| self.passes(p));
        match ev.kind {
            EventKind::Delete => {
                let Some(mut obj) = prev.filter(|_| was) else {
                    return Ok(None);
                };
                skiff_api::object::metadata_mut(&mut obj)
                    .insert("resourceVersion".into(), ev.revision().to_string().into());
                Ok(Some(self.line("DELETED", &obj)))
            }
            EventKind::Put => {
                let obj = decode(self.kind.resource(), &ev.kv)?;
                let is = self.passes(&obj);
                Ok(match (was, is) {
                    (true, true) => Some(self.line("MODIFIED", &obj)),
                    (false, true) => Some(self.line("ADDED", &obj)),
                    (true, false) => Some(self.line("DELETED", &obj)),
                    (false, false) => None,
                })
            }
        }
    }
}

/// One protobuf watch frame, or `None` for objects outside the schema.
fn protobuf_frame(kind: &str, obj: &Value) -> Option<Bytes> {
    skiff_api::protobuf::encode_watch_frame(kind, obj)
        .ok()
        .map(Bytes::from)
}

fn stream_response(rx: mpsc::Receiver<Bytes>, output: Output) -> Response {
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    let content_type = if output.is_protobuf() {
        "application/vnd.kubernetes.protobuf;stream=watch"
    } else {
        "application/json"
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, content_type)],
        Body::from_stream(stream),
    )
        .into_response()
}

/// Starts a watch and answers with its stream.
pub async fn serve(
    objects: Objects,
    caches: &Caches,
    rr: &ResourceRequest,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let output = match negotiate::output(headers, negotiate::Conversions::Object)? {
        // YAML watches are JSON lines, as upstream's.
        Output::Yaml => Output::Json,
        o => o,
    };
    let (labels, fields) = selectors(rr.kind.as_ref(), query)?;
    let mut r = Renderer {
        kind: rr.kind.clone(),
        output,
        labels,
        fields,
        name: rr.name.clone(),
        sent_columns: false,
    };
    let timeout = query
        .number::<u64>("timeoutSeconds")?
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_TIMEOUT);
    let bookmarks = query.flag("allowWatchBookmarks");
    let rv: Option<Revision> = query.number("resourceVersion")?;
    let send_initial = match query.get("sendInitialEvents") {
        Some("true") => true,
        Some("false") => false,
        _ => rv.unwrap_or(0) == 0,
    };
    if send_initial && query.get("sendInitialEvents") == Some("true") && !bookmarks {
        return Err(ApiError::invalid(
            rr.rt(),
            "",
            vec![skiff_api::Cause::forbidden(
                "allowWatchBookmarks",
                "sendInitialEvents requires allowWatchBookmarks=true",
            )],
        ));
    }
    let ns = rr.namespace.clone();
    let prefix = rr.rt().storage_list_prefix(ns.as_deref());
    let (tx, rx) = mpsc::channel::<Bytes>(64);

    // "From now" (no initial events, no revision) means after the store's current revision.
    let rv = match rv {
        Some(r) if r > 0 => Some(r),
        _ if !send_initial => Some(
            objects
                .store()
                .current_revision()
                .await
                .map_err(|e| store_error(rr.rt(), "", e))?,
        ),
        _ => None,
    };

    // Served from the watch cache when it still holds the changes asked for: one decode per
    // change for every watcher, instead of one per watcher.
    let cache = caches.cache(rr.rt()).await?;
    let after = if send_initial { None } else { rv };
    if let Some(sub) = cache.subscribe(after) {
        let end_initial = query.get("sendInitialEvents") == Some("true");
        tokio::spawn(stream_cached(
            r,
            sub,
            after,
            prefix,
            end_initial,
            bookmarks,
            timeout,
            tx,
        ));
        return Ok(stream_response(rx, output));
    }

    tracing::debug!(resource = rr.rt().plural, ?after, uri_query = ?query.get("resourceVersion"), "watch served by the datastore: the cache no longer holds changes that old");
    // The initial state, then a watch from exactly its revision.
    let mut initial = Vec::new();
    let start = if send_initial {
        let page = objects
            .list(rr.rt(), ns.as_deref(), 0, None, None, |o| r.passes(o))
            .await?;
        for obj in &page.items {
            initial.push(r.line("ADDED", obj));
        }
        if query.get("sendInitialEvents") == Some("true") {
            initial.push(r.bookmark(page.revision, true));
        }
        page.revision
    } else {
        rv.unwrap_or(0)
    };
    let mut stream = match objects.store().watch(&prefix, start).await {
        Ok(s) => s,
        Err(StoreError::Compacted {
            requested,
            compacted,
        }) => {
            let msg = match compacted {
                Some(c) => format!("too old resource version: {requested} ({c})"),
                None => format!("too old resource version: {requested}"),
            };
            let status = ApiError::expired(msg).to_status();
            let line = r.line("ERROR", &status);
            let _ = tx.try_send(line);
            drop(tx);
            return Ok(stream_response(rx, output));
        }
        Err(e) => return Err(store_error(rr.rt(), "", e)),
    };

    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = start;
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => return,
                _ = ticker.tick(), if bookmarks => {
                    if tx.send(r.bookmark(last, false)).await.is_err() {
                        return;
                    }
                }
                _ = tx.closed() => return,
                ev = stream.next() => {
                    let ev = match ev {
                        Some(Ok(ev)) => ev,
                        // Too slow or the store went away: end the stream, and the client
                        // re-watches from its last revision.
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "watch ended");
                            return;
                        }
                        None => return,
                    };
                    last = ev.revision();
                    match r.event(&ev) {
                        Ok(Some(line)) => {
                            if tx.send(line).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => {
                            let _ = tx.send(r.line("ERROR", &e.to_status())).await;
                            return;
                        }
                    }
                }
            }
        }
    });
    Ok(stream_response(rx, output))
}

impl Renderer {
    /// Whether a cached object passes the name filter and selectors.
    fn passes_cached(&self, c: &Cached) -> bool {
        self.name.as_deref().is_none_or(|n| c.named(n)) && c.selected(&self.labels, &self.fields)
    }

    /// One event line for a cached object, spliced from its JSON without decoding.
    fn cached_line(&mut self, kind: &str, c: &Cached, revision: Revision) -> Bytes {
        if self.output.is_protobuf() || self.output.metadata_api_version().is_some() {
            let obj = serde_json::from_slice::<Value>(&c.bytes).unwrap_or_default();
            return self.line(kind, &obj);
        }
        let mut line = Vec::with_capacity(c.bytes.len() + 32);
        line.extend_from_slice(format!(r#"{{"type":"{kind}","object":"#).as_bytes());
        match self.output {
            Output::Table { .. } => {
                let table = table::table_json_from_rows(
                    self.kind.as_ref(),
                    std::iter::once(&c.row),
                    &revision.to_string(),
                    None,
                    time::OffsetDateTime::now_utc(),
                );
                line.extend_from_slice(&table);
            }
            _ => line.extend_from_slice(&c.bytes),
        }
        line.extend_from_slice(b"}\n");
        Bytes::from(line)
    }

    /// The line a cached change becomes for this watcher (none, or one).
    fn cached_event(&mut self, ev: &CacheEvent) -> Option<Bytes> {
        let was = ev.prev.as_ref().is_some_and(|p| self.passes_cached(p));
        let is = !ev.deleted && self.passes_cached(&ev.object);
        let kind = match (was, is) {
            (true, true) => "MODIFIED",
            (false, true) => "ADDED",
            (true, false) => "DELETED",
            (false, false) => return None,
        };
        Some(self.cached_line(kind, &ev.object, ev.revision))
    }
}

/// Streams a watch from the cache: initial objects (or the backlog), then live changes,
/// bookmarks, until the timeout, the client leaving, or the watcher falling behind (the
/// client then re-watches from its last revision, as after any watch end).
#[allow(clippy::too_many_arguments)]
async fn stream_cached(
    mut r: Renderer,
    mut sub: Subscription,
    after: Option<Revision>,
    prefix: String,
    end_initial: bool,
    bookmarks: bool,
    timeout: Duration,
    tx: mpsc::Sender<Bytes>,
) {
    let in_scope = |key: &str| key.starts_with(&prefix);
    for (key, c) in std::mem::take(&mut sub.initial) {
        if in_scope(&key)
            && r.passes_cached(&c)
            && tx
                .send(r.cached_line("ADDED", &c, sub.revision))
                .await
                .is_err()
        {
            return;
        }
    }
    if end_initial && tx.send(r.bookmark(sub.revision, true)).await.is_err() {
        return;
    }
    let floor = after.unwrap_or(sub.revision);
    let mut last = floor;
    for ev in std::mem::take(&mut sub.backlog) {
        if ev.revision > last && in_scope(&ev.key) {
            last = ev.revision;
            if let Some(line) = r.cached_event(&ev)
                && tx.send(line).await.is_err()
            {
                return;
            }
        }
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => return,
            _ = ticker.tick(), if bookmarks => {
                if tx.send(r.bookmark(last, false)).await.is_err() {
                    return;
                }
            }
            _ = tx.closed() => return,
            ev = sub.rx.recv() => {
                let ev = match ev {
                    Ok(ev) => ev,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(missed = n, "watcher fell behind the cache; ending its watch");
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                // Changes at or before the start were in the initial state or backlog.
                if ev.revision <= last || !in_scope(&ev.key) {
                    continue;
                }
                last = ev.revision;
                if let Some(line) = r.cached_event(&ev)
                    && tx.send(line).await.is_err()
                {
                    return;
                }
            }
        }
    }
}
