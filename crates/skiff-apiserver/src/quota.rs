//! ResourceQuota: what a namespace's objects use, against each quota's `spec.hard` —
//! upstream's quota evaluators, its admission plugin and its controller's recalculation,
//! sharing one account of usage.
//!
//! - [`usage_of`]: what one object uses (counts, pods' requests and limits, claims'
//!   storage), for the quota resource names upstream counts.
//! - [`admit`]: a new object whose usage would pass a quota's hard limit is refused (403,
//!   upstream's `exceeded quota` message); a pod that leaves out a request or limit a quota
//!   constrains is refused (`must specify`). Admitted usage is added to the quota's
//!   `status.used` before the object is stored, as upstream's admission does, so two
//!   creates racing for the last unit cannot both pass.
//! - [`run`]: recalculates every quota's `status.hard` and `status.used` from the objects
//!   themselves (the watch caches) every few seconds: deletions, finished pods and creates
//!   that failed after admission are accounted for there.
//!
//! Quotas live beside the watch caches (in the API server, not the controller manager)
//! because admission and recalculation must count alike and both read the caches.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};
use skiff_api::object::meta_str;
use skiff_api::quantity::{from_millis, millis};
use skiff_api::{ApiError, ResourceType};

use crate::registry::core::pod::resources::pod_amounts;
use crate::registry::core::resourcequota;
use crate::state::ApiState;
use crate::watch_cache::Freshness;

/// Usage admitted but not yet stored, and the lock that orders admission's charges and
/// recalculations in a namespace with quotas. Under the lock a recalculation sees each
/// admitted object either not yet charged, or charged and in flight here; it counts an
/// in-flight object unless the objects it listed hold it already (stored meanwhile), so
/// it neither lowers usage below what admission charged nor counts an object twice.
#[derive(Default)]
pub struct InFlight {
    order: tokio::sync::Mutex<()>,
    charges: std::sync::Mutex<HashMap<u64, Charge>>,
    next: std::sync::atomic::AtomicU64,
}

/// One admitted object's usage: its namespace, its datastore key, what it uses.
struct Charge {
    namespace: String,
    key: String,
    usage: BTreeMap<String, i64>,
}

/// An admitted object's usage, counted as in flight until the create is done (dropped).
pub struct Charged<'a> {
    in_flight: &'a InFlight,
    id: Option<u64>,
}

impl Drop for Charged<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.in_flight
                .charges
                .lock()
                .expect("in-flight charges lock")
                .remove(&id);
        }
    }
}

impl InFlight {
    fn add(&self, charge: Charge) -> Charged<'_> {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.charges
            .lock()
            .expect("in-flight charges lock")
            .insert(id, charge);
        Charged {
            in_flight: self,
            id: Some(id),
        }
    }

    /// What is in flight in a namespace, leaving out the objects in `stored`.
    fn in_namespace(
        &self,
        ns: &str,
        stored: &std::collections::HashSet<String>,
    ) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        let charges = self.charges.lock().expect("in-flight charges lock");
        for c in charges.values() {
            if c.namespace == ns && !stored.contains(&c.key) {
                for (k, v) in &c.usage {
                    *out.entry(k.clone()).or_default() += v;
                }
            }
        }
        out
    }
}

/// How often every quota's usage is recalculated.
const RECALCULATE_EVERY: Duration = Duration::from_secs(2);

/// The compute resources a pod's requests and limits count toward: (quota name, section,
/// resource).
const COMPUTE: &[(&str, &str, &str)] = &[
    ("requests.cpu", "requests", "cpu"),
    ("cpu", "requests", "cpu"),
    ("requests.memory", "requests", "memory"),
    ("memory", "requests", "memory"),
    (
        "requests.ephemeral-storage",
        "requests",
        "ephemeral-storage",
    ),
    ("ephemeral-storage", "requests", "ephemeral-storage"),
    ("limits.cpu", "limits", "cpu"),
    ("limits.memory", "limits", "memory"),
    ("limits.ephemeral-storage", "limits", "ephemeral-storage"),
];

/// The short object-count names upstream accepts beside `count/<resource>`.
const COUNTS: &[(&str, &str)] = &[
    ("pods", "pods"),
    ("services", "services"),
    ("configmaps", "configmaps"),
    ("secrets", "secrets"),
    ("persistentvolumeclaims", "persistentvolumeclaims"),
    ("replicationcontrollers", "replicationcontrollers"),
    ("resourcequotas", "resourcequotas"),
];

/// `count/deployments.apps` → the registry's `group_resource` it counts (`deployments.apps`).
fn counted_resource(quota_name: &str) -> Option<&str> {
    quota_name.strip_prefix("count/").or_else(|| {
        COUNTS
            .iter()
            .find(|(n, _)| *n == quota_name)
            .map(|(_, r)| *r)
    })
}

/// Whether a pod is done (its resources no longer count).
fn terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// What one object of `rt` uses of each of `names` (milli-units; counts are 1000 each).
pub fn usage_of(rt: &ResourceType, obj: &Value, names: &[&str]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let is_pod = rt.group.is_empty() && rt.plural == "pods";
    if is_pod && terminal(obj) {
        return out;
    }
    let group_resource = rt.group_resource();
    for name in names {
        let used = if counted_resource(name) == Some(group_resource.as_str()) {
            Some(1000)
        } else if is_pod {
            COMPUTE
                .iter()
                .find(|(n, ..)| n == name)
                .and_then(|(_, section, resource)| {
                    pod_amounts(obj, section).get(*resource).copied()
                })
        } else if group_resource == "services" {
            let ty = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
            match *name {
                "services.loadbalancers" => (ty == "LoadBalancer").then_some(1000),
                "services.nodeports" if matches!(ty, "NodePort" | "LoadBalancer") => {
                    let ports = obj["spec"]["ports"].as_array().map_or(0, Vec::len);
                    Some(ports as i64 * 1000)
                }
                _ => None,
            }
        } else if group_resource == "persistentvolumeclaims" && *name == "requests.storage" {
            obj["spec"]["resources"]["requests"]["storage"]
                .as_str()
                .and_then(millis)
        } else {
            None
        };
        if let Some(u) = used {
            out.insert((*name).to_string(), u);
        }
    }
    out
}

/// A usage figure as the quota's status writes it.
fn shown(name: &str, m: i64) -> String {
    let binary = name.contains("memory") || name.contains("storage");
    from_millis(m, binary)
}

fn hard_of(quota: &Value) -> BTreeMap<String, i64> {
    quota["spec"]["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().and_then(millis).map(|m| (k.clone(), m)))
        .collect()
}

fn used_of(quota: &Value) -> BTreeMap<String, i64> {
    quota["status"]["used"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| v.as_str().and_then(millis).map(|m| (k.clone(), m)))
        .collect()
}

async fn quotas(state: &ApiState, ns: &str) -> Result<Vec<Value>, ApiError> {
    state
        .objects_of(&resourcequota::RESOURCE, Some(ns), Freshness::Any)
        .await
}

/// The containers of a pod that leave out `resource` in `section`.
fn missing(pod: &Value, section: &str, resource: &str) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][*list].as_array().cloned().unwrap_or_default())
        .filter(|c| c["resources"][section].get(resource).is_none())
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `key=value` pairs, sorted, comma-joined, as upstream prints a resource list.
fn pretty(list: &BTreeMap<String, i64>) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={}", shown(k, *v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Admits a new object of `rt` against its namespace's quotas, charging what it uses; the
/// charge counts as in flight until the answer is dropped (once the create is done).
pub async fn admit<'a>(
    state: &'a ApiState,
    rt: &ResourceType,
    obj: &Value,
) -> Result<Charged<'a>, ApiError> {
    let none = Charged {
        in_flight: &state.quota_in_flight,
        id: None,
    };
    let Some(ns) = meta_str(obj, "namespace").filter(|_| rt.namespaced) else {
        return Ok(none);
    };
    let quotas = quotas(state, ns).await?;
    if quotas.is_empty() {
        return Ok(none);
    }
    let name = meta_str(obj, "name").unwrap_or_default();
    let forbidden = |message: String| {
        ApiError::new(
            403,
            "Forbidden",
            format!("{} {name:?} is forbidden: {message}", rt.group_resource()),
        )
    };
    let is_pod = rt.group.is_empty() && rt.plural == "pods";
    for quota in &quotas {
        let quota_name = meta_str(quota, "name").unwrap_or_default();
        let hard = hard_of(quota);
        if is_pod && !terminal(obj) {
            let mut unspecified = Vec::new();
            for (n, section, resource) in COMPUTE {
                if hard.contains_key(*n) {
                    let lacking = missing(obj, section, resource);
                    if !lacking.is_empty() {
                        unspecified.push(format!("{n} for: {}", lacking.join(",")));
                    }
                }
            }
            if !unspecified.is_empty() {
                unspecified.sort();
                unspecified.dedup();
                return Err(forbidden(format!(
                    "failed quota: {quota_name}: must specify {}",
                    unspecified.join("; ")
                )));
            }
        }
    }
    let names: Vec<String> = quotas.iter().flat_map(|q| hard_of(q).into_keys()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let in_flight = &state.quota_in_flight;
    let _ordered = in_flight.order.lock().await;
    for quota in quotas {
        charge(state, rt, obj, quota, &forbidden).await?;
    }
    let name = meta_str(obj, "name").unwrap_or_default();
    Ok(in_flight.add(Charge {
        namespace: ns.to_string(),
        key: rt.storage_key(Some(ns), name),
        usage: usage_of(rt, obj, &names),
    }))
}

/// Adds what `obj` uses to one quota's `status.used`, or refuses it.
async fn charge(
    state: &ApiState,
    rt: &ResourceType,
    obj: &Value,
    mut quota: Value,
    forbidden: &(dyn Fn(String) -> ApiError + Sync),
) -> Result<(), ApiError> {
    let quota_rt = &resourcequota::RESOURCE;
    for _ in 0..8 {
        let hard = hard_of(&quota);
        let names: Vec<&str> = hard.keys().map(String::as_str).collect();
        let wanted = usage_of(rt, obj, &names);
        if wanted.values().all(|v| *v == 0) {
            return Ok(());
        }
        let known = quota["status"]["hard"].as_object();
        if let Some(k) = wanted
            .keys()
            .find(|k| !known.is_some_and(|h| h.contains_key(*k)))
        {
            return Err(forbidden(format!(
                "status unknown for quota: {}, resource: {k}",
                meta_str(&quota, "name").unwrap_or_default()
            )));
        }
        let used = used_of(&quota);
        let over: Vec<&String> = wanted
            .iter()
            .filter(|(k, v)| used.get(*k).copied().unwrap_or(0) + **v > hard[*k])
            .map(|(k, _)| k)
            .collect();
        if !over.is_empty() {
            let pick = |m: &BTreeMap<String, i64>| -> BTreeMap<String, i64> {
                over.iter()
                    .map(|k| ((*k).clone(), m.get(*k).copied().unwrap_or(0)))
                    .collect()
            };
            return Err(forbidden(format!(
                "exceeded quota: {}, requested: {}, used: {}, limited: {}",
                meta_str(&quota, "name").unwrap_or_default(),
                pretty(&pick(&wanted)),
                pretty(&pick(&used)),
                pretty(&pick(&hard)),
            )));
        }
        let mut next = used.clone();
        for (k, v) in &wanted {
            *next.entry(k.clone()).or_default() += v;
        }
        set_status(&mut quota, &hard, &next);
        match state
            .objects
            .update_if_unchanged(quota_rt, quota.clone(), &quota)
            .await?
        {
            Some(_) => return Ok(()),
            // Changed meanwhile: charge the quota as it is now (a deleted one charges
            // nothing).
            None => {
                let ns = meta_str(&quota, "namespace").map(str::to_string);
                let name = meta_str(&quota, "name").unwrap_or_default().to_string();
                match state.objects.get(quota_rt, ns.as_deref(), &name).await {
                    Ok(now) => quota = now.object,
                    Err(e) if e.code == 404 => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Err(ApiError::new(
        409,
        "Conflict",
        "the resource quota kept changing while this object was admitted; try again",
    ))
}

fn set_status(quota: &mut Value, hard: &BTreeMap<String, i64>, used: &BTreeMap<String, i64>) {
    let hard_shown: Map<String, Value> = quota["spec"]["hard"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let used_shown: Map<String, Value> = hard
        .keys()
        .map(|k| {
            (
                k.clone(),
                shown(k, used.get(k).copied().unwrap_or(0)).into(),
            )
        })
        .collect();
    quota["status"] = json!({"hard": hard_shown, "used": used_shown});
}

/// Recalculates every quota's status from the objects, for as long as the server runs: at
/// once when a quota is written (a new quota is usable as soon as its status is), and
/// every few seconds for the objects' own changes.
pub async fn run(state: Arc<ApiState>) {
    loop {
        let mut changes = match state.caches.cache(&resourcequota::RESOURCE).await {
            Ok(cache) => cache.subscribe(None).map(|s| s.rx),
            Err(_) => None,
        };
        loop {
            let changed = match &mut changes {
                Some(rx) => match tokio::time::timeout(RECALCULATE_EVERY, rx.recv()).await {
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) => break,
                    _ => true,
                },
                None => {
                    tokio::time::sleep(RECALCULATE_EVERY).await;
                    false
                }
            };
            if let Some(rx) = &mut changes {
                while rx.try_recv().is_ok() {}
            }
            if let Err(e) = recalculate_all(&state).await {
                tracing::warn!(error = %e, "recalculating resource quotas");
            }
            if changes.is_none() && !changed {
                break;
            }
        }
    }
}

async fn recalculate_all(state: &ApiState) -> Result<(), ApiError> {
    let _ordered = state.quota_in_flight.order.lock().await;
    let all = state
        .objects
        .list(&resourcequota::RESOURCE, None, 0, None, None, |_| true)
        .await?;
    for quota in all.items {
        let ns = meta_str(&quota, "namespace")
            .unwrap_or_default()
            .to_string();
        let hard = hard_of(&quota);
        let names: Vec<&str> = hard.keys().map(String::as_str).collect();
        let mut used: BTreeMap<String, i64> = BTreeMap::new();
        let mut stored = std::collections::HashSet::new();
        for kind in counted_kinds(state, &names) {
            let rt = kind.resource();
            let objects = state.objects_of(rt, Some(&ns), Freshness::Newest).await?;
            for obj in &objects {
                stored.insert(rt.storage_key(Some(&ns), meta_str(obj, "name").unwrap_or_default()));
                for (k, v) in usage_of(rt, obj, &names) {
                    *used.entry(k).or_default() += v;
                }
            }
        }
        // What admission charged and is not stored yet.
        for (k, v) in state.quota_in_flight.in_namespace(&ns, &stored) {
            if hard.contains_key(&k) {
                *used.entry(k).or_default() += v;
            }
        }
        let mut updated = quota.clone();
        set_status(&mut updated, &hard, &used);
        if updated["status"] == quota["status"] {
            continue;
        }
        // Changed meanwhile (an admission charged it): the next pass counts again.
        state
            .objects
            .update_if_unchanged(&resourcequota::RESOURCE, updated, &quota)
            .await?;
    }
    Ok(())
}

/// The kinds whose objects some of `names` count.
fn counted_kinds(state: &ApiState, names: &[&str]) -> Vec<Arc<dyn crate::registry::Kind>> {
    let served = state.registry.served();
    let mut wanted: Vec<String> = Vec::new();
    for name in names {
        if let Some(r) = counted_resource(name) {
            wanted.push(r.to_string());
        } else if COMPUTE.iter().any(|(n, ..)| n == name) {
            wanted.push("pods".into());
        } else if name.starts_with("services.") {
            wanted.push("services".into());
        } else if *name == "requests.storage" {
            wanted.push("persistentvolumeclaims".into());
        }
    }
    wanted.sort();
    wanted.dedup();
    served
        .kinds()
        .filter(|k| {
            let rt = k.resource();
            // One version per resource: the first served (the preferred).
            wanted.contains(&rt.group_resource())
        })
        .fold(
            Vec::<Arc<dyn crate::registry::Kind>>::new(),
            |mut acc, k| {
                if !acc
                    .iter()
                    .any(|a| a.resource().group_resource() == k.resource().group_resource())
                {
                    acc.push(k.clone());
                }
                acc
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::core::{pod, service};

    #[test]
    fn objects_use_what_upstream_counts() {
        let p = json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}}}]}});
        let names = [
            "pods",
            "requests.cpu",
            "cpu",
            "limits.cpu",
            "memory",
            "count/pods",
            "services",
        ];
        let used = usage_of(&pod::RESOURCE, &p, &names);
        assert_eq!(used["pods"], 1000);
        assert_eq!(used["count/pods"], 1000);
        assert_eq!(used["requests.cpu"], 500);
        assert_eq!(used["cpu"], 500);
        assert_eq!(used["limits.cpu"], 500);
        assert_eq!(shown("memory", used["memory"]), "64Mi");
        assert!(!used.contains_key("services"));
        let mut done = p.clone();
        done["status"]["phase"] = "Succeeded".into();
        assert!(usage_of(&pod::RESOURCE, &done, &names).is_empty());
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        let used = usage_of(
            &service::RESOURCE,
            &lb,
            &["services", "services.loadbalancers", "services.nodeports"],
        );
        assert_eq!(
            (
                used["services"],
                used["services.loadbalancers"],
                used["services.nodeports"]
            ),
            (1000, 1000, 2000)
        );
        assert_eq!(
            pretty(&used),
            "services=1,services.loadbalancers=1,services.nodeports=2"
        );
        assert_eq!(missing(&p, "limits", "cpu"), ["b"]);
    }
}
