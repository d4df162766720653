//! How every verb stores an object: admission, validation and the kind's reservations on
//! create, the update path (field validation, strategy, managed fields, no-op detection,
//! finalization), deletes that give back what the object held, and the options every
//! write carries.

use axum::http::{HeaderMap, header};
use serde_json::Value;
use skiff_api::object::meta_str;
use skiff_api::{ApiError, ResourceType, Subresource, managed_fields};
use skiff_store::Revision;

use super::scale::apply_scale;
use crate::field_validation::Directive;
use crate::query::Query;
use crate::registry::Kind;
use crate::request::ResourceRequest;
use crate::state::ApiState;
use crate::storage::Stored;
use crate::strategy;

/// How many times a write is re-applied when the object changes under it.
pub(super) const PATCH_RETRIES: usize = 8;

/// Admits a prepared new object and validates it, as upstream's order has it (defaults came
/// with `strategy::prepare_create`): the namespace must be open for it (NamespaceLifecycle),
/// then the kind's own admission, then validation, then its namespace's quotas (whose
/// charge the caller keeps until the object is stored or refused).
pub(super) async fn admit_create<'a>(
    state: &'a ApiState,
    user: &crate::authn::UserInfo,
    kind: &dyn Kind,
    obj: &mut Value,
) -> Result<crate::quota::Charged<'a>, ApiError> {
    let ns = meta_str(obj, "namespace").map(str::to_string);
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    check_namespace_open(state, kind.resource(), ns.as_deref(), &name).await?;
    kind.admit(state, user, obj).await?;
    strategy::validate_create(kind, obj)?;
    // Validating admission: ResourceQuota, last, as upstream orders it. Its charge is in
    // flight until the caller's create is done (holds the answer until then).
    crate::quota::admit(state, kind.resource(), obj).await
}

/// Stores an admitted new object, with what the kind reserves for it (given back if the
/// create fails).
pub(super) async fn create_object(
    state: &ApiState,
    kind: &dyn Kind,
    mut obj: Value,
) -> Result<Stored, ApiError> {
    let reservation = kind.reserve(state, None, &mut obj).await?;
    match state.objects.create(kind.resource(), obj).await {
        Ok(stored) => Ok(stored),
        Err(e) => {
            kind.release(state, &reservation.taken).await?;
            Err(e)
        }
    }
}

/// Deletes an object still at `expected`; what it held beyond its record is given back.
pub(super) async fn delete_object(
    state: &ApiState,
    kind: &dyn Kind,
    ns: Option<&str>,
    name: &str,
    expected: Revision,
) -> Result<Value, ApiError> {
    let object = state
        .objects
        .delete(kind.resource(), ns, name, expected)
        .await?;
    kind.release(state, &kind.held_by(&object)).await?;
    Ok(object)
}

/// Whether an update leaves an object that is being deleted with nothing left to wait for
/// (no finalizers — a namespace's spec.finalizers included — and no grace period): then the
/// update completes the delete, as upstream's.
pub(super) fn finalized(obj: &Value) -> bool {
    let meta = obj.get("metadata");
    let spec_finalizers = skiff_api::object::field(obj, &["spec", "finalizers"])
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    !spec_finalizers
        && meta.and_then(|m| m.get("deletionTimestamp")).is_some()
        && meta
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            == Some(0)
        && meta
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .is_none_or(|f| f.is_empty())
}

/// Whether an update leaves the object as stored: equal but for the resourceVersion it
/// names and the times of field managers' entries (a manager that only restated what it
/// owned changed nothing; one that took a field, even at the same value, did). Compared in
/// place: it runs on every update, and cloning both objects cost more than comparing.
fn changes_nothing(old: &Value, new: &Value) -> bool {
    let (old_meta, new_meta) = (old.get("metadata"), new.get("metadata"));
    equal_except(old, new, &["metadata"])
        && match (old_meta, new_meta) {
            (Some(a), Some(b)) => equal_except(a, b, &["resourceVersion", "managedFields"]),
            (a, b) => a == b,
        }
        && match (
            old_meta.and_then(|m| m.get("managedFields")),
            new_meta.and_then(|m| m.get("managedFields")),
        ) {
            (Some(Value::Array(a)), Some(Value::Array(b))) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equal_except(x, y, &["time"]))
            }
            (a, b) => a == b,
        }
}

/// Whether two JSON values are equal, leaving out the members `skip` names when both are
/// objects.
fn equal_except(a: &Value, b: &Value, skip: &[&str]) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let kept = |m: &serde_json::Map<String, Value>| {
        m.keys().filter(|k| !skip.contains(&k.as_str())).count()
    };
    kept(a) == kept(b)
        && a.iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

/// Stores a prepared update; through the main resource, the kind reserves what the new
/// version holds (a Service's node ports) and, once stored, gives back what it no longer
/// does.
pub(super) async fn update_object(
    state: &ApiState,
    kind: &dyn Kind,
    mut new: Value,
    old: &Stored,
    main_resource: bool,
) -> Result<Stored, ApiError> {
    let rt = kind.resource();
    if finalized(&new) {
        let ns = meta_str(&new, "namespace").map(str::to_string);
        let name = meta_str(&new, "name").unwrap_or_default().to_string();
        let object = delete_object(state, kind, ns.as_deref(), &name, old.mod_revision).await?;
        let mod_revision = meta_str(&object, "resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(old.mod_revision);
        return Ok(Stored {
            object,
            mod_revision,
        });
    }
    if changes_nothing(&old.object, &new) {
        // As upstream's storage: nothing is written, no watcher hears of it, and the
        // answer is the object as it was (its resourceVersion too).
        return Ok(old.clone());
    }
    if !main_resource {
        return state.objects.update(rt, new, old.mod_revision).await;
    }
    let reservation = kind.reserve(state, Some(&old.object), &mut new).await?;
    match state.objects.update(rt, new, old.mod_revision).await {
        Ok(stored) => {
            kind.release(state, &reservation.freed).await?;
            Ok(stored)
        }
        Err(e) => {
            kind.release(state, &reservation.taken).await?;
            Err(e)
        }
    }
}

/// Refuses new objects in a namespace that does not exist or is being deleted (upstream's
/// NamespaceLifecycle admission). The namespace is read from the watch cache, as upstream
/// reads its informer; from the datastore when the cache does not hold it (yet) or its
/// deletion began here lately.
pub(super) async fn check_namespace_open(
    state: &ApiState,
    rt: &ResourceType,
    ns: Option<&str>,
    name: &str,
) -> Result<(), ApiError> {
    let Some(ns) = ns.filter(|_| rt.namespaced) else {
        return Ok(());
    };
    let ns_rt = &crate::registry::core::namespace::RESOURCE;
    let cached = if state.namespace_deletions.recent(ns) {
        None
    } else {
        state.caches.cached(ns_rt, None, ns).await
    };
    let phase = match cached {
        Some(c) => c.field("status.phase").unwrap_or_default().to_string(),
        None => {
            let namespace = state.objects.get(ns_rt, None, ns).await?.object;
            skiff_api::fields::field_value(&namespace, "status.phase")
        }
    };
    if phase == "Terminating" {
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

/// A resourceVersion a write names, if it names one, must be the stored one.
pub(super) fn check_precondition(
    rt: &ResourceType,
    name: &str,
    resource_version: Option<&str>,
    current: Revision,
) -> Result<(), ApiError> {
    match resource_version.filter(|v| !v.is_empty()) {
        Some(v) if v != current.to_string() => {
            Err(ApiError::conflict(rt, name, ApiError::MODIFIED))
        }
        _ => Ok(()),
    }
}

/// Stores `new` as the next version of `old` through the given subresource; answers the
/// stored object and the field validation warnings.
pub(super) async fn write_update(
    state: &ApiState,
    rr: &ResourceRequest,
    mut new: Value,
    old: &Stored,
    opts: &WriteOptions,
) -> Result<(Stored, Vec<String>), ApiError> {
    let mut warnings;
    if rr.subresource == Some(Subresource::Scale) {
        warnings = opts.directive.apply_to_scale(&mut new, &opts.duplicates)?;
        new = apply_scale(rr.rt(), rr.kind.scale_paths(), &old.object, &new)?;
    } else {
        warnings = opts
            .directive
            .apply(rr.kind.as_ref(), &mut new, &opts.duplicates)?;
    }
    let sub = rr.subresource.filter(|s| {
        matches!(
            s,
            Subresource::Status
                | Subresource::Finalize
                | Subresource::EphemeralContainers
                | Subresource::Approval
        )
    });
    strategy::prepare_update(rr.kind.as_ref(), &mut new, &old.object, sub)?;
    strategy::validate_update(rr.kind.as_ref(), &new, &old.object, sub)?;
    if rr.subresource.is_none() {
        warnings.extend(rr.kind.warnings(&new));
    }
    track_fields(
        rr.kind.as_ref(),
        &opts.manager,
        rr.subresource,
        Some(&old.object),
        &mut new,
    );
    let stored = update_object(state, rr.kind.as_ref(), new, old, rr.subresource.is_none()).await?;
    Ok((stored, warnings))
}

/// How a write is validated, and which field manager its changes belong to.
pub(super) struct WriteOptions {
    pub(super) directive: Directive,
    pub(super) manager: String,
    /// Keys the JSON body repeats (parsers keep the last silently).
    pub(super) duplicates: Vec<String>,
}

impl WriteOptions {
    pub(super) fn from_request(
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
pub(super) fn field_manager(query: &Query, headers: &HeaderMap) -> Result<String, ApiError> {
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
pub(super) fn track_fields(
    kind: &dyn Kind,
    manager: &str,
    subresource: Option<Subresource>,
    old: Option<&Value>,
    new: &mut Value,
) {
    let api_version = kind.resource().api_version();
    let types = kind.field_types();
    let scope = managed_fields::Scope::of(subresource.map(Subresource::name));
    let changed = match old {
        Some(old) => managed_fields::changed_fields_typed(&types, old, new, scope),
        None => managed_fields::fields_of_typed(&types, new, scope),
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(rv: &str, time: &str, image: &str) -> Value {
        json!({"kind": "Pod", "metadata": {"name": "p", "resourceVersion": rv,
                 "managedFields": [{"manager": "m", "operation": "Update", "time": time,
                                    "fieldsV1": {"f:spec": {}}}]},
               "spec": {"containers": [{"name": "c", "image": image}]}})
    }

    #[test]
    fn updates_that_change_nothing_are_told_apart() {
        let old = pod("5", "t0", "a");
        assert!(changes_nothing(&old, &pod("4", "t1", "a")));
        assert!(!changes_nothing(&old, &pod("5", "t0", "b")));
        let mut taken = pod("5", "t0", "a");
        taken["metadata"]["managedFields"][0]["manager"] = "other".into();
        assert!(!changes_nothing(&old, &taken));
        let mut labelled = pod("5", "t0", "a");
        labelled["metadata"]["labels"] = json!({"x": "y"});
        assert!(!changes_nothing(&old, &labelled));
        assert!(!changes_nothing(&labelled, &old));
        let mut bare = pod("5", "t0", "a");
        bare["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("managedFields");
        assert!(!changes_nothing(&old, &bare));
        let mut extra = pod("5", "t0", "a");
        extra["status"] = json!({});
        assert!(!changes_nothing(&old, &extra));
    }
}
