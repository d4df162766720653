//! What upstream's apiextensions controllers do, in one loop inside the API server:
//!
//! - naming: a definition's names are accepted unless another definition of the same group
//!   holds one of them (the older keeps it): `status.acceptedNames`, condition
//!   `NamesAccepted`;
//! - establishing: a definition with accepted names is `Established` and served — its kinds
//!   enter the registry (`Registry::define`), so discovery, OpenAPI and requests see them;
//!   a Local APIService is made for each group version it serves;
//! - finalizing: a deleted definition (`Terminating`) refuses new objects, deletes every
//!   object it has, then lets go of its finalizer, and its kinds leave the registry.
//!
//! The loop follows the definitions' watch cache and reconciles all of them on every
//! change (there are few). Watch caches of a kind that changed are retired, so lists and
//! watches start again with the new kind (a watcher's stream ends and it re-watches).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::object::{meta_str, metadata_mut, string_list};
use tokio::sync::broadcast::error::RecvError;

use crate::handlers::delete::{DeleteOptions, delete_one};
use crate::registry::apiextensions::RESOURCE;
use crate::registry::apiextensions::custom::CustomKind;
use crate::registry::apiextensions::customresourcedefinition::{CLEANUP_FINALIZER, set_condition};
use crate::registry::apiregistration::{self, ApiServices};
use crate::registry::{Kind, Registry};
use crate::state::ApiState;

/// How often the loop looks again while a definition waits for its objects to go.
const CLEANUP_RETRY: Duration = Duration::from_millis(500);

/// Follows the definitions for as long as the server runs.
pub async fn run(state: Arc<ApiState>) {
    loop {
        if let Err(e) = follow(&state).await {
            tracing::warn!(error = %e, "following CustomResourceDefinitions; starting again");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn follow(state: &ApiState) -> Result<(), ApiError> {
    let cache = state.caches.cache(&RESOURCE).await?;
    let Some(mut sub) = cache.subscribe(None) else {
        return Ok(());
    };
    let mut pending = reconcile_all(state).await?;
    loop {
        let wait = if pending {
            CLEANUP_RETRY
        } else {
            Duration::from_secs(3600)
        };
        match tokio::time::timeout(wait, sub.rx.recv()).await {
            Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => {
                // Whatever else arrived meanwhile is covered by one pass over all of them.
                while sub.rx.try_recv().is_ok() {}
            }
            Ok(Err(RecvError::Closed)) => return Ok(()),
            Err(_) => {}
        }
        pending = reconcile_all(state).await?;
    }
}

/// One pass over every definition: names, conditions, served kinds, cleanup. Answers
/// whether a deleted definition still waits for its objects to go.
pub async fn reconcile_all(state: &ApiState) -> Result<bool, ApiError> {
    let page = state
        .objects
        .list(&RESOURCE, None, 0, None, None, |_| true)
        .await?;
    let mut crds = page.items;
    // The older definition keeps a contested name.
    crds.sort_by(|a, b| {
        let at = |o: &Value| {
            meta_str(o, "creationTimestamp")
                .unwrap_or_default()
                .to_string()
        };
        at(a)
            .cmp(&at(b))
            .then_with(|| meta_str(a, "name").cmp(&meta_str(b, "name")))
    });
    let mut taken: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    for crd in &crds {
        let group = crd["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = meta_str(crd, "name").unwrap_or_default().to_string();
        taken
            .entry(group)
            .or_default()
            .push((name, crd["status"]["acceptedNames"].clone()));
    }
    let mut pending = false;
    let mut present = BTreeSet::new();
    let mut served_versions = BTreeSet::new();
    for crd in crds {
        let name = meta_str(&crd, "name").unwrap_or_default().to_string();
        let judged = judge(&crd, &taken);
        // Later definitions see this one's names as accepted now.
        let group = crd["spec"]["group"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if let Some(entry) = taken
            .get_mut(&group)
            .and_then(|v| v.iter_mut().find(|(n, _)| *n == name))
        {
            entry.1 = judged["status"]["acceptedNames"].clone();
        }
        let terminating = meta_str(&judged, "deletionTimestamp").is_some();
        let current = if terminating {
            match finalize(state, &name, judged, &crd).await? {
                Some(still_there) => {
                    pending = true;
                    still_there
                }
                None => {
                    stop_serving(state, &name);
                    continue;
                }
            }
        } else {
            write_status(state, &crd, judged).await?
        };
        present.insert(name.clone());
        if established(&current) {
            serve(state, &name, &current);
            if !terminating {
                for kind in state.registry.served().defined_by(&name) {
                    let rt = kind.resource();
                    served_versions.insert((rt.group.to_string(), rt.version.to_string()));
                }
            }
        }
    }
    // Definitions gone meanwhile (deleted by hand from the datastore, or by this loop).
    for name in custom_names(&state.registry) {
        if !present.contains(&name) {
            stop_serving(state, &name);
        }
    }
    sync_api_services(state, &served_versions).await?;
    Ok(pending)
}

fn custom_names(registry: &Registry) -> Vec<String> {
    registry
        .served()
        .definitions()
        .map(str::to_string)
        .collect()
}

fn established(crd: &Value) -> bool {
    crd["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    })
}

/// The definition with its names judged and its conditions set (not yet written).
fn judge(crd: &Value, taken: &HashMap<String, Vec<(String, Value)>>) -> Value {
    let mut out = crd.clone();
    let name = meta_str(crd, "name").unwrap_or_default();
    let group = crd["spec"]["group"].as_str().unwrap_or_default();
    let wanted = &crd["spec"]["names"];
    let others: Vec<&Value> = taken
        .get(group)
        .into_iter()
        .flatten()
        .filter(|(n, _)| n != name)
        .map(|(_, names)| names)
        .collect();
    let text = |names: &Value, k: &str| names[k].as_str().unwrap_or_default().to_string();
    let list = |names: &Value, k: &str| string_list(names.get(k));
    let in_use = |word: &str| {
        !word.is_empty()
            && others.iter().any(|o| {
                text(o, "plural") == word
                    || text(o, "singular") == word
                    || list(o, "shortNames").iter().any(|s| s == word)
            })
    };
    let kind_in_use = |word: &str| {
        !word.is_empty()
            && others
                .iter()
                .any(|o| text(o, "kind") == word || text(o, "listKind") == word)
    };
    let mut conflict = None;
    for (key, reason) in [
        ("plural", "PluralConflict"),
        ("singular", "SingularConflict"),
    ] {
        let word = text(wanted, key);
        if conflict.is_none() && in_use(&word) {
            conflict = Some((reason, format!("{word:?} is already in use")));
        }
    }
    for short in list(wanted, "shortNames") {
        if conflict.is_none() && in_use(&short) {
            conflict = Some(("ShortNamesConflict", format!("{short:?} is already in use")));
        }
    }
    for (key, reason) in [("kind", "KindConflict"), ("listKind", "ListKindConflict")] {
        let word = text(wanted, key);
        if conflict.is_none() && kind_in_use(&word) {
            conflict = Some((reason, format!("{word:?} is already in use")));
        }
    }
    match conflict {
        None => {
            out["status"]["acceptedNames"] = wanted.clone();
            set_condition(
                &mut out,
                "NamesAccepted",
                "True",
                "NoConflicts",
                "no conflicts found",
            );
            set_condition(
                &mut out,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
        }
        Some((reason, message)) => {
            set_condition(&mut out, "NamesAccepted", "False", reason, &message);
            if !established(crd) {
                set_condition(
                    &mut out,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                );
            }
        }
    }
    out
}

/// Writes the definition's status if it changed; answers the definition as stored.
async fn write_status(state: &ApiState, old: &Value, new: Value) -> Result<Value, ApiError> {
    if old["status"] == new["status"] {
        return Ok(new);
    }
    // Changed meanwhile: the change's event brings another pass.
    Ok(state
        .objects
        .update_if_unchanged(&RESOURCE, new, old)
        .await?
        .map_or_else(|| old.clone(), |stored| stored.object))
}

fn resource_version(obj: &Value) -> Result<u64, ApiError> {
    meta_str(obj, "resourceVersion")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| ApiError::internal("a stored definition without a resourceVersion"))
}

/// Serves the definition's kinds as it now reads, retiring the caches of kinds it changes.
fn serve(state: &ApiState, name: &str, crd: &Value) {
    // Every pass looks at every definition: only a changed one is parsed again.
    if state
        .registry
        .served()
        .serves(name, &CustomKind::definition_hashes(crd))
    {
        return;
    }
    let kinds = match CustomKind::from_definition(crd) {
        Ok(kinds) => kinds,
        Err(e) => {
            tracing::warn!(definition = name, error = %e, "not serving a CustomResourceDefinition");
            Vec::new()
        }
    };
    let before = state.registry.served();
    let kinds: Vec<Arc<dyn Kind>> = kinds
        .into_iter()
        .map(|k| Arc::new(k) as Arc<dyn Kind>)
        .collect();
    if state.registry.define(name, kinds) {
        for old in before.defined_by(name) {
            state.caches.retire(old.resource());
        }
        tracing::info!(definition = name, "serving CustomResourceDefinition");
    }
}

fn stop_serving(state: &ApiState, name: &str) {
    let before = state.registry.served();
    if state.registry.define(name, Vec::new()) {
        for old in before.defined_by(name) {
            state.caches.retire(old.resource());
        }
        tracing::info!(
            definition = name,
            "stopped serving CustomResourceDefinition"
        );
    }
}

/// A deleted definition: refuses new objects, deletes its objects, then lets go of the
/// definition. Answers the definition while objects remain, `None` once it is gone.
async fn finalize(
    state: &ApiState,
    name: &str,
    mut crd: Value,
    stored: &Value,
) -> Result<Option<Value>, ApiError> {
    set_condition(
        &mut crd,
        "Terminating",
        "True",
        "InstanceDeletionInProgress",
        "CustomResource deletion is in progress",
    );
    let crd = write_status(state, stored, crd).await?;
    if established(&crd) {
        // Served as terminating: reads and deletes work, creates are refused.
        serve(state, name, &crd);
    }
    let kinds = CustomKind::from_definition(&crd).unwrap_or_default();
    let mut remaining = 0;
    if let Some(kind) = kinds.first() {
        let objects = state
            .objects
            .list(kind.resource(), None, 0, None, None, |_| true)
            .await?;
        for obj in objects.items {
            remaining += 1;
            if meta_str(&obj, "deletionTimestamp").is_some() {
                continue;
            }
            let (ns, obj_name) = (
                meta_str(&obj, "namespace").map(str::to_string),
                meta_str(&obj, "name").unwrap_or_default().to_string(),
            );
            match delete_one(
                state,
                kind,
                ns.as_deref(),
                &obj_name,
                &DeleteOptions::default(),
            )
            .await
            {
                Ok((true, _)) => remaining -= 1,
                Ok((false, _)) => {}
                Err(e) if e.reason == "NotFound" => remaining -= 1,
                Err(e) => return Err(e),
            }
        }
    }
    if remaining > 0 {
        return Ok(Some(crd));
    }
    let mut done = crd.clone();
    let meta = metadata_mut(&mut done);
    let others: Vec<Value> = meta
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter(|v| *v != CLEANUP_FINALIZER)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let revision = resource_version(&crd)?;
    if others.is_empty() {
        match state.objects.delete(&RESOURCE, None, name, revision).await {
            Ok(_) => Ok(None),
            Err(e) if e.reason == "NotFound" => Ok(None),
            Err(e) if e.reason == "Conflict" => Ok(Some(crd)),
            Err(e) => Err(e),
        }
    } else {
        meta.insert("finalizers".into(), json!(others));
        match state.objects.update(&RESOURCE, done, revision).await {
            Ok(stored) => Ok(Some(stored.object)),
            Err(e) if e.reason == "Conflict" => Ok(Some(crd)),
            Err(e) => Err(e),
        }
    }
}

/// A Local APIService for every group version definitions serve; those made for group
/// versions no longer served are removed.
async fn sync_api_services(
    state: &ApiState,
    served: &BTreeSet<(String, String)>,
) -> Result<(), ApiError> {
    for (group, version) in served {
        crate::bootstrap::create_if_missing(
            &state.objects,
            &ApiServices,
            None,
            apiregistration::for_custom(group, version),
        )
        .await?;
    }
    let existing = state
        .objects
        .list(&apiregistration::RESOURCE, None, 0, None, None, |o| {
            o["metadata"]["labels"]["kube-aggregator.kubernetes.io/automanaged"] == "true"
        })
        .await?;
    for svc in existing.items {
        let key = (
            svc["spec"]["group"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            svc["spec"]["version"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
        if !served.contains(&key) {
            let name = meta_str(&svc, "name").unwrap_or_default();
            let revision = resource_version(&svc)?;
            match state
                .objects
                .delete(&apiregistration::RESOURCE, None, name, revision)
                .await
            {
                Ok(_) => {}
                Err(e) if e.reason == "NotFound" || e.reason == "Conflict" => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}
