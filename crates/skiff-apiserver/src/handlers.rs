//! The resource handlers: get, list, create, update, patch, delete and delete-collection for
//! every type in the registry, plus the status and scale subresources. Watches are in
//! `watch.rs`.

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
use crate::negotiate::{self, Output};
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
}

fn is_service(rt: &ResourceType) -> bool {
    (rt.group, rt.kind) == ("", "Service")
}

/// The owner recorded on a service's address keys.
fn service_owner(obj: &Value) -> String {
    format!(
        "services/{}/{}",
        meta_str(obj, "namespace").unwrap_or_default(),
        meta_str(obj, "name").unwrap_or_default()
    )
}

/// Creates an object; services get their cluster IP and node ports first (given back if
/// the create fails).
async fn create_object(
    state: &ApiState,
    rt: &ResourceType,
    mut obj: Value,
) -> Result<Stored, ApiError> {
    if !is_service(rt) {
        return state.objects.create(rt, &obj).await;
    }
    let owner = service_owner(&obj);
    let held = state.services.allocate(rt, &mut obj, &owner).await?;
    match state.objects.create(rt, &obj).await {
        Ok(stored) => Ok(stored),
        Err(e) => {
            state.services.release(&held).await;
            Err(e)
        }
    }
}

/// Stores a prepared update; services keep their cluster IP and get (or give back) node
/// ports as their ports change.
/// Whether an update leaves an object that is being deleted with nothing left to wait for
/// (no finalizers, no grace period): then the update completes the delete, as upstream's.
fn finalized(obj: &Value) -> bool {
    let meta = obj.get("metadata");
    meta.and_then(|m| m.get("deletionTimestamp")).is_some()
        && meta
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            == Some(0)
        && meta
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
}

async fn update_object(
    state: &ApiState,
    rt: &ResourceType,
    mut new: Value,
    old: &Stored,
    main_resource: bool,
) -> Result<Stored, ApiError> {
    if finalized(&new) {
        let ns = meta_str(&new, "namespace").map(str::to_string);
        let name = meta_str(&new, "name").unwrap_or_default().to_string();
        let object = state
            .objects
            .delete(rt, ns.as_deref(), &name, old.mod_revision)
            .await?;
        if is_service(rt) {
            state
                .services
                .release(&ServiceAllocator::held_by(&object))
                .await;
        }
        let mod_revision = meta_str(&object, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(old.mod_revision);
        return Ok(Stored {
            object,
            mod_revision,
        });
    }
    if !is_service(rt) || !main_resource {
        return state.objects.update(rt, &new, old.mod_revision).await;
    }
    let (taken, release) = state
        .services
        .reallocate(rt, &old.object, &mut new, &service_owner(&old.object))
        .await?;
    match state.objects.update(rt, &new, old.mod_revision).await {
        Ok(stored) => {
            state.services.release(&release).await;
            Ok(stored)
        }
        Err(e) => {
            state.services.release(&taken).await;
            Err(e)
        }
    }
}

/// An error as a `Status` response.
pub fn error_response(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        err.to_status().to_string(),
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
    match dispatch(state, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
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

/// One object as the client asked for it: the object, or a one-row Table.
fn render_one(rt: &ResourceType, obj: &Value, output: Output, code: StatusCode) -> Response {
    match output {
        Output::Table { .. } => {
            let rv = meta_str(obj, "resourceVersion").unwrap_or_default();
            let t = table::table(
                rt,
                std::slice::from_ref(obj),
                rv,
                None,
                time::OffsetDateTime::now_utc(),
            );
            respond(code, &t, output)
        }
        _ => respond(code, obj, output),
    }
}

async fn get(
    state: &ApiState,
    rr: &ResourceRequest,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, rr.subresource.is_none())?;
    let stored = state
        .objects
        .get(rr.rt, rr.namespace.as_deref(), name_of(rr))
        .await?;
    if rr.subresource == Some(Subresource::Scale) {
        return Ok(respond(StatusCode::OK, &scale_of(&stored.object), output));
    }
    Ok(render_one(rr.rt, &stored.object, output, StatusCode::OK))
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

async fn list(
    state: &ApiState,
    rr: &ResourceRequest,
    query: &Query,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, true)?;
    let (labels, field_sel) = selectors(rr.rt, query)?;
    let limit: usize = query.number("limit")?.unwrap_or(0);
    let continuing = query.get("continue").is_some_and(|c| !c.is_empty());
    // Whole lists come from the watch cache; pages and exact revisions from the datastore.
    if limit == 0 && !continuing && query.get("resourceVersionMatch") != Some("Exact") {
        let freshness = match query.number::<Revision>("resourceVersion")? {
            None => Freshness::Newest,
            Some(0) => Freshness::Any,
            Some(n) => Freshness::AtLeast(n),
        };
        if let Some(snapshot) = state
            .caches
            .list(
                rr.rt,
                rr.namespace.as_deref(),
                freshness,
                &labels,
                &field_sel,
            )
            .await?
        {
            return render_cached_list(rr.rt, snapshot, output);
        }
    }
    let (after, at_revision) = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let t = continue_token::decode(token)?;
            (Some(t.start_after), Some(t.revision))
        }
        None => (None, exact_revision(query)?),
    };
    let page = state
        .objects
        .list(
            rr.rt,
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
    let body = match output {
        Output::Table { .. } => table::table(
            rr.rt,
            &page.items,
            &rv,
            cont.as_deref(),
            time::OffsetDateTime::now_utc(),
        ),
        _ => {
            let mut metadata = json!({"resourceVersion": rv});
            if let Some(c) = cont {
                metadata["continue"] = c.into();
            }
            json!({
                "kind": rr.rt.list_kind(),
                "apiVersion": rr.rt.api_version(),
                "metadata": metadata,
                "items": page.items,
            })
        }
    };
    Ok(respond(StatusCode::OK, &body, output))
}

/// A list from the watch cache: JSON spliced from each object's cached bytes (no decoding),
/// other representations from the decoded objects.
fn render_cached_list(
    rt: &ResourceType,
    snapshot: Snapshot,
    output: Output,
) -> Result<Response, ApiError> {
    let rv = snapshot.revision.to_string();
    if output == Output::Json {
        // Streamed in chunks of about 64 KiB: never one large buffer (which would cost
        // resident memory the allocator keeps), nor one frame per object (which is slow).
        const CHUNK: usize = 64 * 1024;
        let mut chunks = Vec::new();
        let mut buf = bytes::BytesMut::with_capacity(CHUNK);
        buf.extend_from_slice(
            format!(
                r#"{{"kind":"{}","apiVersion":"{}","metadata":{{"resourceVersion":"{rv}"}},"items":["#,
                rt.list_kind(),
                rt.api_version()
            )
            .as_bytes(),
        );
        for (i, item) in snapshot.items.iter().enumerate() {
            if i > 0 {
                buf.extend_from_slice(b",");
            }
            buf.extend_from_slice(&item.bytes);
            if buf.len() >= CHUNK {
                chunks.push(buf.split().freeze());
                buf.reserve(CHUNK);
            }
        }
        buf.extend_from_slice(b"]}");
        chunks.push(buf.freeze());
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            Body::from_stream(stream),
        )
            .into_response());
    }
    if let Output::Table { .. } = output {
        let rows = snapshot.items.iter().map(|c| &c.row);
        let body = table::table_json_from_rows(rt, rows, &rv, time::OffsetDateTime::now_utc());
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response());
    }
    let items = snapshot
        .items
        .iter()
        .map(|c| serde_json::from_slice::<Value>(&c.bytes))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::internal(format!("watch cache entry is not JSON: {e}")))?;
    let body = json!({
        "kind": rt.list_kind(),
        "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": rv},
        "items": items,
    });
    Ok(respond(StatusCode::OK, &body, output))
}

/// `resourceVersion=N&resourceVersionMatch=Exact` reads at revision N; every other form is
/// served at the newest revision, which satisfies "not older than" and "any".
fn exact_revision(query: &Query) -> Result<Option<Revision>, ApiError> {
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

/// Refuses new objects in a namespace that does not exist or is being deleted.
async fn check_namespace_open(
    state: &ApiState,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let Some(ns) = ns.filter(|_| rt.namespaced) else {
        return Ok(());
    };
    let ns_rt = lookup("", "v1", "namespaces").expect("namespaces are registered");
    let stored = state.objects.get(ns_rt, None, ns).await?;
    if meta_str(&stored.object, "deletionTimestamp").is_some() {
        return Err(ApiError::new(
            403,
            "Forbidden",
            format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.group_resource()
            ),
        ));
    }
    Ok(())
}

async fn create(
    state: &ApiState,
    rr: &ResourceRequest,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, false)?;
    if rr.subresource == Some(Subresource::Binding) {
        let binding = negotiate::decode_body(headers, body)?;
        let manager = field_manager(query, headers)?;
        return bind_pod(state, rr, &binding, &manager, output).await;
    }
    if rr.subresource.is_some() || rr.name.is_some() {
        return Err(ApiError::method_not_supported(rr.rt, "POST"));
    }
    let opts = WriteOptions::from_request(query, headers, body)?;
    let mut obj = negotiate::decode_body(headers, body)?;
    let warnings =
        opts.directive
            .apply(&rr.rt.api_version(), rr.rt.kind, &mut obj, &opts.duplicates)?;
    strategy::prepare_create(rr.rt, &mut obj, rr.namespace.as_deref())?;
    track_fields(rr.rt, &opts.manager, None, None, &mut obj);
    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
    check_namespace_open(state, rr.rt, rr.namespace.as_deref(), &name).await?;
    let stored = create_object(state, rr.rt, obj).await?;
    Ok(with_warnings(
        respond(StatusCode::CREATED, &stored.object, output),
        &warnings,
    ))
}

/// `pods/<name>/binding`: the scheduler's assignment of a pod to a node. Sets
/// `spec.nodeName` once (a bound pod answers 409) and the PodScheduled condition.
async fn bind_pod(
    state: &ApiState,
    rr: &ResourceRequest,
    binding: &Value,
    manager: &str,
    output: Output,
) -> Result<Response, ApiError> {
    let name = name_of(rr);
    let binding_rt = lookup("", "v1", "pods").expect("pods are registered");
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
            .get(rr.rt, rr.namespace.as_deref(), name)
            .await?;
        if meta_str(&old.object, "deletionTimestamp").is_some() {
            return Err(ApiError::conflict(
                rr.rt,
                name,
                &format!("pod {name} is being deleted, cannot be assigned to a host"),
            ));
        }
        if let Some(current) = skiff_api::object::field_str(&old.object, &["spec", "nodeName"])
            .filter(|n| !n.is_empty())
        {
            return Err(ApiError::conflict(
                rr.rt,
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
        track_fields(
            rr.rt,
            manager,
            Some(Subresource::Binding),
            Some(&old.object),
            &mut bound,
        );
        match state.objects.update(rr.rt, &bound, old.mod_revision).await {
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
        rr.rt,
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

/// A body's resourceVersion, if it names one, must be the stored one.
fn check_precondition(
    rt: &ResourceType,
    name: &str,
    body: &Value,
    current: Revision,
) -> Result<(), ApiError> {
    match meta_str(body, "resourceVersion").filter(|v| !v.is_empty()) {
        Some(v) if v != current.to_string() => {
            Err(ApiError::conflict(rt, name, ApiError::MODIFIED))
        }
        _ => Ok(()),
    }
}

/// Stores `new` as the next version of `old` through the given subresource; answers the
/// stored object and the field validation warnings.
async fn write_update(
    state: &ApiState,
    rr: &ResourceRequest,
    mut new: Value,
    old: &Stored,
    opts: &WriteOptions,
) -> Result<(Stored, Vec<String>), ApiError> {
    let warnings;
    if rr.subresource == Some(Subresource::Scale) {
        warnings = opts
            .directive
            .apply("autoscaling/v1", "Scale", &mut new, &opts.duplicates)?;
        new = apply_scale(rr.rt, &old.object, &new)?;
    } else {
        warnings =
            opts.directive
                .apply(&rr.rt.api_version(), rr.rt.kind, &mut new, &opts.duplicates)?;
    }
    let sub = rr.subresource.filter(|s| *s == Subresource::Status);
    strategy::prepare_update(rr.rt, &mut new, &old.object, sub)?;
    track_fields(
        rr.rt,
        &opts.manager,
        rr.subresource,
        Some(&old.object),
        &mut new,
    );
    let stored = update_object(state, rr.rt, new, old, rr.subresource.is_none()).await?;
    Ok((stored, warnings))
}

/// How a write is validated, and which field manager its changes belong to.
struct WriteOptions {
    directive: Directive,
    manager: String,
    /// Keys the JSON body repeats (parsers keep the last silently).
    duplicates: Vec<String>,
}

impl WriteOptions {
    fn from_request(
        query: &Query,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<WriteOptions, ApiError> {
        let directive = Directive::from_query(query)?;
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|ct| ct.split(';').next().unwrap_or("").trim().ends_with("json"));
        let duplicates = if json && directive != Directive::Ignore {
            skiff_api::duplicates::duplicate_fields(body)
        } else {
            Vec::new()
        };
        Ok(WriteOptions {
            directive,
            manager: field_manager(query, headers)?,
            duplicates,
        })
    }
}

/// `fieldManager`, else the client's name from its User-Agent (upstream's default).
fn field_manager(query: &Query, headers: &HeaderMap) -> Result<String, ApiError> {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        if m.len() > 128 {
            return Err(ApiError::bad_request(
                "fieldManager: Too long: may not be more than 128 bytes",
            ));
        }
        return Ok(m.to_string());
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown");
    Ok(agent.split('/').next().unwrap_or("unknown").to_string())
}

/// Records in `managedFields` what this write changed, under its manager.
fn track_fields(
    rt: &ResourceType,
    manager: &str,
    subresource: Option<Subresource>,
    old: Option<&Value>,
    new: &mut Value,
) {
    let api_version = rt.api_version();
    let changed = match old {
        Some(old) => managed_fields::changed_fields(&api_version, rt.kind, old, new),
        None => managed_fields::fields_of(&api_version, rt.kind, new),
    };
    let mut entries = old.map(managed_fields::read).unwrap_or_default();
    managed_fields::record_update(
        &mut entries,
        manager,
        &api_version,
        subresource.map(Subresource::name),
        &changed,
        &skiff_api::object::now_rfc3339(),
    );
    managed_fields::write(new, &entries);
}

async fn update(
    state: &ApiState,
    rr: &ResourceRequest,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, false)?;
    let opts = WriteOptions::from_request(query, headers, body)?;
    let new = negotiate::decode_body(headers, body)?;
    let old = state
        .objects
        .get(rr.rt, rr.namespace.as_deref(), name_of(rr))
        .await?;
    check_precondition(rr.rt, name_of(rr), &new, old.mod_revision)?;
    let (stored, warnings) = write_update(state, rr, new, &old, &opts).await?;
    Ok(render_written(rr, &stored.object, output, &warnings))
}

fn render_written(
    rr: &ResourceRequest,
    obj: &Value,
    output: Output,
    warnings: &[String],
) -> Response {
    let response = if rr.subresource == Some(Subresource::Scale) {
        respond(StatusCode::OK, &scale_of(obj), output)
    } else {
        respond(StatusCode::OK, obj, output)
    };
    with_warnings(response, warnings)
}

async fn patch(
    state: &ApiState,
    rr: &ResourceRequest,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, false)?;
    let opts = WriteOptions::from_request(query, headers, body)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let kind = PatchKind::from_content_type(content_type)
        .ok_or_else(|| ApiError::unsupported_media_type(content_type, PatchKind::MEDIA_TYPES))?;
    let patch_doc = match kind {
        PatchKind::Apply => negotiate::decode_yaml(body)?,
        _ => negotiate::decode_json(body)?,
    };
    if kind == PatchKind::Apply {
        return server_side_apply(state, rr, query, output, patch_doc, &opts).await;
    }
    for _ in 0..PATCH_RETRIES {
        let old = state
            .objects
            .get(rr.rt, rr.namespace.as_deref(), name_of(rr))
            .await?;
        let mut target = if rr.subresource == Some(Subresource::Scale) {
            scale_of(&old.object)
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
                let api_version = rr.rt.api_version();
                let (api_version, kind) = if rr.subresource == Some(Subresource::Scale) {
                    ("autoscaling/v1", "Scale")
                } else {
                    (api_version.as_str(), rr.rt.kind)
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
        // A patch that sets resourceVersion is a precondition on it.
        check_precondition(
            rr.rt,
            name_of(rr),
            &patch_doc_meta(&patch_doc),
            old.mod_revision,
        )?;
        match write_update(state, rr, target, &old, &opts).await {
            Ok((stored, warnings)) => {
                return Ok(render_written(rr, &stored.object, output, &warnings));
            }
            Err(e)
                if e.reason == "Conflict"
                    && meta_str(&patch_doc_meta(&patch_doc), "resourceVersion").is_none() =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::conflict(
        rr.rt,
        name_of(rr),
        "the object kept changing while the patch was applied; try again",
    ))
}

/// Server-side apply: create the object from the configuration, or merge the configuration
/// into it under field ownership (409 on conflicts with other managers unless `force`).
async fn server_side_apply(
    state: &ApiState,
    rr: &ResourceRequest,
    query: &Query,
    output: Output,
    mut applied: Value,
    opts: &WriteOptions,
) -> Result<Response, ApiError> {
    if rr.subresource.is_some() {
        return Err(ApiError::method_not_supported(
            rr.rt,
            "apply on a subresource",
        ));
    }
    if query.get("fieldManager").is_none_or(str::is_empty) {
        return Err(ApiError::bad_request(
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        ));
    }
    let force = query.flag("force");
    let api_version = rr.rt.api_version();
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
    if a != api_version || k != rr.rt.kind {
        return Err(ApiError::bad_request(format!(
            "the applied configuration is {a:?} {k:?}, not {api_version:?} {:?} as the request path says",
            rr.rt.kind
        )));
    }
    if let Some(n) = meta_str(&applied, "name").filter(|n| *n != name_of(rr)) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({})",
            name_of(rr)
        )));
    }
    let warnings =
        opts.directive
            .apply(&api_version, rr.rt.kind, &mut applied, &opts.duplicates)?;
    let now = skiff_api::object::now_rfc3339();
    let conflict_error = |conflicts: Vec<managed_fields::Conflict>| {
        let mut e = ApiError::new(
            409,
            "Conflict",
            managed_fields::conflict_message(&conflicts),
        );
        e.details = Some(Box::new(skiff_api::status::Details {
            name: name_of(rr).to_string(),
            group: rr.rt.group.to_string(),
            kind: rr.rt.plural.to_string(),
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
            .get(rr.rt, rr.namespace.as_deref(), name_of(rr))
            .await
        {
            Err(e) if e.code == 404 => {
                let mut obj = managed_fields::apply(
                    &api_version,
                    rr.rt.kind,
                    &json!({}),
                    &applied,
                    &opts.manager,
                    force,
                    &now,
                )
                .map_err(conflict_error)?;
                metadata_mut(&mut obj).insert("name".into(), name_of(rr).into());
                strategy::prepare_create(rr.rt, &mut obj, rr.namespace.as_deref())?;
                check_namespace_open(state, rr.rt, rr.namespace.as_deref(), name_of(rr)).await?;
                match create_object(state, rr.rt, obj).await {
                    Ok(stored) => {
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
                let mut merged = managed_fields::apply(
                    &api_version,
                    rr.rt.kind,
                    &live.object,
                    &applied,
                    &opts.manager,
                    force,
                    &now,
                )
                .map_err(conflict_error)?;
                strategy::prepare_update(rr.rt, &mut merged, &live.object, None)?;
                match update_object(state, rr.rt, merged, &live, true).await {
                    Ok(stored) => {
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
        rr.rt,
        name_of(rr),
        "the object kept changing while the configuration was applied; try again",
    ))
}

/// The part of a patch document that can carry `metadata.resourceVersion` (none for a JSON
/// patch, which states its preconditions with `test` operations).
fn patch_doc_meta(doc: &Value) -> Value {
    if doc.is_object() {
        doc.clone()
    } else {
        Value::Null
    }
}

/// `DeleteOptions` from a body or the query.
struct DeleteOptions {
    grace_period: Option<i64>,
    uid: Option<String>,
    resource_version: Option<String>,
    /// The finalizer a propagation policy asks for: `foregroundDeletion` (Foreground) or
    /// `orphan` (Orphan); the garbage collector acts on it and removes it.
    propagation_finalizer: Option<&'static str>,
}

fn delete_options(
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
async fn delete_one(
    state: &ApiState,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
    opts: &DeleteOptions,
) -> Result<(bool, Value), ApiError> {
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
        let has_finalizers = opts.propagation_finalizer.is_some()
            || old
                .object
                .get("metadata")
                .and_then(|m| m.get("finalizers"))
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty());
        let grace = graceful_period(rt, &old.object, opts);
        if !has_finalizers && grace.is_none() {
            match state.objects.delete(rt, ns, name, old.mod_revision).await {
                Ok(obj) => {
                    if is_service(rt) {
                        state
                            .services
                            .release(&ServiceAllocator::held_by(&obj))
                            .await;
                    }
                    return Ok((true, obj));
                }
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
        if let Some(f) = opts.propagation_finalizer {
            let list = meta.entry("finalizers").or_insert_with(|| json!([]));
            if let Some(list) = list.as_array_mut()
                && !list.iter().any(|v| v == f)
            {
                list.push(f.into());
            }
        }
        match state.objects.update(rt, &marked, old.mod_revision).await {
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

/// Pods bound to a node are deleted gracefully: the node's agent stops the containers
/// within the grace period and then removes the pod. Everything else goes at once.
fn graceful_period(rt: &ResourceType, obj: &Value, opts: &DeleteOptions) -> Option<i64> {
    if (rt.group, rt.kind) != ("", "Pod") {
        return None;
    }
    skiff_api::object::field_str(obj, &["spec", "nodeName"]).filter(|n| !n.is_empty())?;
    let grace = opts.grace_period.unwrap_or_else(|| {
        skiff_api::object::field(obj, &["spec", "terminationGracePeriodSeconds"])
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    (grace > 0).then_some(grace)
}

async fn delete(
    state: &ApiState,
    rr: &ResourceRequest,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, false)?;
    if rr.subresource.is_some() {
        return Err(ApiError::method_not_supported(rr.rt, "DELETE"));
    }
    let opts = delete_options(query, headers, body)?;
    let (gone, obj) = delete_one(state, rr.rt, rr.namespace.as_deref(), name_of(rr), &opts).await?;
    let code = if gone {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok(respond(code, &obj, output))
}

async fn delete_collection(
    state: &ApiState,
    rr: &ResourceRequest,
    query: &Query,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let output = negotiate::output(headers, false)?;
    let opts = delete_options(query, headers, body)?;
    let (labels, field_sel) = selectors(rr.rt, query)?;
    let page = state
        .objects
        .list(rr.rt, rr.namespace.as_deref(), 0, None, None, |o| {
            selected(&labels, &field_sel, o)
        })
        .await?;
    let mut items = Vec::new();
    for obj in page.items {
        let name = meta_str(&obj, "name").unwrap_or_default().to_string();
        let ns = meta_str(&obj, "namespace").map(str::to_string);
        match delete_one(state, rr.rt, ns.as_deref(), &name, &opts).await {
            Ok((_, obj)) => items.push(obj),
            // Deleted by someone else meanwhile: that is what was asked.
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let body = json!({
        "kind": rr.rt.list_kind(),
        "apiVersion": rr.rt.api_version(),
        "metadata": {"resourceVersion": page.revision.to_string()},
        "items": items,
    });
    Ok(respond(StatusCode::OK, &body, output))
}

/// The `autoscaling/v1 Scale` view of a Deployment or ReplicaSet.
fn scale_of(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_default();
    let pick = |k: &str| meta.get(k).cloned().unwrap_or(Value::Null);
    let selector = skiff_api::object::field(obj, &["spec", "selector"])
        .and_then(|s| Selector::from_label_selector(s).ok())
        .map(|s| selector_text(&s))
        .unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": pick("name"),
            "namespace": pick("namespace"),
            "uid": pick("uid"),
            "resourceVersion": pick("resourceVersion"),
            "creationTimestamp": pick("creationTimestamp"),
        },
        "spec": {"replicas": skiff_api::object::field(obj, &["spec", "replicas"]).cloned().unwrap_or(json!(0))},
        "status": {
            "replicas": skiff_api::object::field(obj, &["status", "replicas"]).cloned().unwrap_or(json!(0)),
            "selector": selector,
        },
    })
}

/// A selector in query syntax, as `Scale.status.selector` carries it.
fn selector_text(s: &Selector) -> String {
    use skiff_api::selectors::Op;
    s.requirements
        .iter()
        .map(|r| match &r.op {
            Op::Equals => format!("{}={}", r.key, r.value),
            Op::NotEquals => format!("{}!={}", r.key, r.value),
            Op::In(v) => format!("{} in ({})", r.key, v.join(",")),
            Op::NotIn(v) => format!("{} notin ({})", r.key, v.join(",")),
            Op::Exists => r.key.clone(),
            Op::DoesNotExist => format!("!{}", r.key),
            Op::GreaterThan(n) => format!("{}>{n}", r.key),
            Op::LessThan(n) => format!("{}<{n}", r.key),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Applies a written Scale to its object: only `spec.replicas` changes.
fn apply_scale(rt: &ResourceType, old: &Value, scale: &Value) -> Result<Value, ApiError> {
    let name = meta_str(old, "name").unwrap_or_default();
    let replicas = skiff_api::object::field(scale, &["spec", "replicas"])
        .and_then(Value::as_i64)
        .ok_or_else(|| {
            ApiError::invalid(rt, name, vec![skiff_api::Cause::required("spec.replicas")])
        })?;
    if replicas < 0 {
        return Err(ApiError::invalid(
            rt,
            name,
            vec![skiff_api::Cause::invalid(
                "spec.replicas",
                &replicas.into(),
                "must be greater than or equal to 0",
            )],
        ));
    }
    let mut new = old.clone();
    new["spec"]["replicas"] = replicas.into();
    Ok(new)
}
