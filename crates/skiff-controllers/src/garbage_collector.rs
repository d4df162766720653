//! The garbage collector: owner references made real. It keeps a graph of every object
//! that can own or be owned (one watch per deletable resource, found by discovery) and:
//! - deletes objects all of whose owners are gone (Background propagation, the default);
//! - for an owner deleted in the Foreground (`foregroundDeletion` finalizer), deletes its
//!   dependents first and removes the finalizer once none that block it remain;
//! - for an owner deleted with Orphan (`orphan` finalizer), strips its references from the
//!   dependents, then removes the finalizer.
//!
//! An owner missing from the graph is confirmed absent with a live GET before anything is
//! deleted, so a slow watch never causes a wrong deletion.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiResource, Discovery, Scope, verbs};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_client::{Change, Informer, WorkQueue, lock};

use crate::Error;

pub const FOREGROUND: &str = "foregroundDeletion";
pub const ORPHAN: &str = "orphan";
const WORKERS: usize = 4;

/// Resources not worth a watch: many, short-lived, never owners of anything that matters.
const SKIPPED: &[&str] = &["events"];

enum OwnerState {
    Present,
    /// Being deleted in the foreground: waits for its dependents to go first.
    WaitingForDependents,
    Absent,
}

#[derive(Clone)]
struct Kind {
    resource: ApiResource,
    namespaced: bool,
}

#[derive(Clone)]
struct Item {
    kind: usize,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerReference>,
    deleting: bool,
    finalizers: Vec<String>,
    resource_version: Option<String>,
}

#[derive(Default)]
struct Graph {
    items: HashMap<String, Item>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    fn upsert(&mut self, uid: String, item: Item) {
        self.remove(&uid);
        for owner in &item.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        self.items.insert(uid, item);
    }

    fn remove(&mut self, uid: &str) -> Option<Item> {
        let item = self.items.remove(uid)?;
        for owner in &item.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
        }
        Some(item)
    }
}

pub struct GarbageCollector {
    client: Client,
    kinds: Vec<Kind>,
    /// (apiVersion, kind) → index into `kinds`.
    by_kind: HashMap<(String, String), usize>,
    graph: Mutex<Graph>,
    queue: WorkQueue,
}

impl GarbageCollector {
    /// Discovers the resources and starts one informer for each; returns once all listed.
    pub async fn start(client: Client) -> Result<Arc<Self>, Error> {
        let discovery = Discovery::new(client.clone())
            .run()
            .await
            .map_err(Error::Discovery)?;
        let mut kinds = Vec::new();
        for group in discovery.groups() {
            for (resource, caps) in group.recommended_resources() {
                if SKIPPED.contains(&resource.plural.as_str())
                    || !caps.supports_operation(verbs::LIST)
                    || !caps.supports_operation(verbs::WATCH)
                    || !caps.supports_operation(verbs::DELETE)
                {
                    continue;
                }
                kinds.push(Kind {
                    namespaced: caps.scope == Scope::Namespaced,
                    resource,
                });
            }
        }
        let by_kind = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| ((k.resource.api_version.clone(), k.resource.kind.clone()), i))
            .collect();
        let gc = Arc::new(GarbageCollector {
            client: client.clone(),
            kinds,
            by_kind,
            graph: Mutex::new(Graph::default()),
            queue: WorkQueue::new(),
        });
        let mut synced = Vec::new();
        for (i, kind) in gc.kinds.iter().enumerate() {
            let api = Api::<DynamicObject>::all_with(client.clone(), &kind.resource);
            // Metadata is all the graph needs: keep nothing else. (A metadata-only watch,
            // `as=PartialObjectMetadata`, is not served yet.)
            let mut informer = Informer::new(api, watcher::Config::default())
                .with_transform(|obj| obj.data = serde_json::Value::Null);
            let me = gc.clone();
            informer.on_change(move |change| me.observe(i, change));
            synced.push(informer.synced());
            informer.start();
        }
        skiff_client::informer::wait_all(synced).await;
        Ok(gc)
    }

    fn observe(&self, kind: usize, change: &Change<DynamicObject>) {
        let obj = change.object();
        let Some(uid) = obj.uid() else {
            return;
        };
        if let Change::Deleted(_) = change {
            let dependents: Vec<String> = {
                let mut graph = lock(&self.graph);
                graph.remove(&uid);
                graph
                    .dependents
                    .get(&uid)
                    .map(|d| d.iter().cloned().collect())
                    .unwrap_or_default()
            };
            for d in dependents {
                self.queue.add(format!("delete:{d}"));
            }
            return;
        }
        let item = Item {
            kind,
            namespace: obj.namespace(),
            name: obj.name_any(),
            owners: obj.owner_references().to_vec(),
            deleting: obj.metadata.deletion_timestamp.is_some(),
            finalizers: obj.finalizers().to_vec(),
            resource_version: obj.resource_version(),
        };
        let has_owners = !item.owners.is_empty();
        let (foreground, orphan) = (
            item.deleting && item.finalizers.iter().any(|f| f == FOREGROUND),
            item.deleting && item.finalizers.iter().any(|f| f == ORPHAN),
        );
        let mut graph = lock(&self.graph);
        let missing_owner = item
            .owners
            .iter()
            .any(|o| !graph.items.contains_key(&o.uid));
        graph.upsert(uid.clone(), item);
        drop(graph);
        if has_owners && missing_owner {
            self.queue.add(format!("delete:{uid}"));
        }
        if foreground {
            self.queue.add(format!("foreground:{uid}"));
        }
        if orphan {
            self.queue.add(format!("orphan:{uid}"));
        }
    }

    pub async fn run(self: Arc<Self>) {
        self.queue.run_reconciler(WORKERS, self.clone()).await;
    }

    async fn process(&self, key: &str) -> Result<Option<Duration>, Error> {
        match key.split_once(':') {
            Some(("delete", uid)) => self.attempt_to_delete(uid).await,
            Some(("foreground", uid)) => self.finish_foreground(uid).await,
            Some(("orphan", uid)) => self.orphan_dependents(uid).await,
            _ => Ok(None),
        }
    }

    fn item(&self, uid: &str) -> Option<Item> {
        lock(&self.graph).items.get(uid).cloned()
    }

    fn api_for(&self, kind: usize, namespace: Option<&str>) -> Api<DynamicObject> {
        let k = &self.kinds[kind];
        match namespace.filter(|_| k.namespaced) {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &k.resource),
            None => Api::all_with(self.client.clone(), &k.resource),
        }
    }

    /// What became of an owner, asking the API when the graph has not seen it.
    async fn owner_state(
        &self,
        owner: &OwnerReference,
        namespace: Option<&str>,
    ) -> Result<OwnerState, Error> {
        let state = |deleting: bool, finalizers: &[String]| {
            if deleting && finalizers.iter().any(|f| f == FOREGROUND) {
                OwnerState::WaitingForDependents
            } else {
                OwnerState::Present
            }
        };
        if let Some(item) = lock(&self.graph).items.get(&owner.uid) {
            return Ok(state(item.deleting, &item.finalizers));
        }
        let Some(&kind) = self
            .by_kind
            .get(&(owner.api_version.clone(), owner.kind.clone()))
        else {
            // A kind this server does not serve cannot exist.
            return Ok(OwnerState::Absent);
        };
        match self.api_for(kind, namespace).get_opt(&owner.name).await? {
            Some(live) if live.uid().as_deref() == Some(owner.uid.as_str()) => Ok(state(
                live.metadata.deletion_timestamp.is_some(),
                live.finalizers(),
            )),
            _ => Ok(OwnerState::Absent),
        }
    }

    /// Deletes an object whose owners are all gone (or all waiting on their dependents);
    /// drops references to gone owners from one that still has a live owner.
    async fn attempt_to_delete(&self, uid: &str) -> Result<Option<Duration>, Error> {
        let Some(Item {
            kind,
            namespace,
            name,
            owners,
            deleting,
            finalizers,
            ..
        }) = self.item(uid)
        else {
            return Ok(None);
        };
        if owners.is_empty() || (deleting && !finalizers.iter().any(|f| f == FOREGROUND)) {
            return Ok(None);
        }
        let (mut solid, mut dangling, mut waiting) = (0, Vec::new(), 0);
        for owner in &owners {
            match self.owner_state(owner, namespace.as_deref()).await? {
                OwnerState::Present => solid += 1,
                OwnerState::WaitingForDependents => waiting += 1,
                OwnerState::Absent => dangling.push(owner.uid.clone()),
            }
        }
        let api = self.api_for(kind, namespace.as_deref());
        if solid > 0 {
            if dangling.is_empty() {
                return Ok(None);
            }
            let keep: Vec<OwnerReference> = owners
                .into_iter()
                .filter(|o| !dangling.contains(&o.uid))
                .collect();
            return self
                .set_owners(kind, namespace.as_deref(), &name, uid, &keep)
                .await;
        }
        let policy = if waiting > 0 {
            // An owner waits in the foreground: its dependents go the same way.
            Some(kube::api::PropagationPolicy::Foreground)
        } else if finalizers.iter().any(|f| f == ORPHAN) {
            Some(kube::api::PropagationPolicy::Orphan)
        } else {
            Some(kube::api::PropagationPolicy::Background)
        };
        let params = DeleteParams {
            propagation_policy: policy,
            ..skiff_client::objects::delete_only(Some(uid.to_string()))
        };
        tracing::debug!(%name, "garbage collecting an object whose owners are gone");
        ignore_gone(api.delete(&name, &params).await.map(|_| ()))
    }

    /// An owner deleting in the foreground: its dependents are deleted; once none that
    /// block its deletion remain, its finalizer goes.
    async fn finish_foreground(&self, uid: &str) -> Result<Option<Duration>, Error> {
        let (blocking, all): (usize, Vec<String>) = {
            let graph = lock(&self.graph);
            let deps: Vec<String> = graph
                .dependents
                .get(uid)
                .map(|d| d.iter().cloned().collect())
                .unwrap_or_default();
            let blocking = deps
                .iter()
                .filter(|d| {
                    graph.items.get(*d).is_some_and(|item| {
                        item.owners
                            .iter()
                            .any(|o| o.uid == uid && o.block_owner_deletion == Some(true))
                    })
                })
                .count();
            (blocking, deps)
        };
        for d in &all {
            self.queue.add(format!("delete:{d}"));
        }
        if blocking > 0 {
            // Dependents still going; their deletion events bring this back.
            return Ok(Some(Duration::from_secs(5)));
        }
        self.remove_finalizer(uid, FOREGROUND).await
    }

    async fn orphan_dependents(&self, uid: &str) -> Result<Option<Duration>, Error> {
        type Dependent = (usize, Option<String>, String, String, Vec<OwnerReference>);
        let dependents: Vec<Dependent> = {
            let graph = lock(&self.graph);
            graph
                .dependents
                .get(uid)
                .into_iter()
                .flatten()
                .filter_map(|d| graph.items.get(d).map(|i| (d, i)))
                .map(|(d, i)| {
                    (
                        i.kind,
                        i.namespace.clone(),
                        i.name.clone(),
                        d.clone(),
                        i.owners.clone(),
                    )
                })
                .collect()
        };
        for (kind, namespace, name, dependent_uid, owners) in dependents {
            let keep: Vec<OwnerReference> = owners.into_iter().filter(|o| o.uid != uid).collect();
            self.set_owners(kind, namespace.as_deref(), &name, &dependent_uid, &keep)
                .await?;
        }
        self.remove_finalizer(uid, ORPHAN).await
    }

    async fn set_owners(
        &self,
        kind: usize,
        namespace: Option<&str>,
        name: &str,
        uid: &str,
        refs: &[OwnerReference],
    ) -> Result<Option<Duration>, Error> {
        let api = self.api_for(kind, namespace);
        let mut obj = DynamicObject::new(name, &self.kinds[kind].resource);
        obj.metadata.uid = Some(uid.to_string());
        skiff_client::objects::set_owner_references(&api, &obj, refs).await?;
        Ok(None)
    }

    async fn remove_finalizer(
        &self,
        uid: &str,
        finalizer: &str,
    ) -> Result<Option<Duration>, Error> {
        let Some(Item {
            kind,
            namespace,
            name,
            finalizers,
            resource_version: rv,
            ..
        }) = self.item(uid)
        else {
            return Ok(None);
        };
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(None);
        }
        let rest: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        // The resourceVersion makes this a compare-and-swap: other finalizers are not lost.
        let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": rv}});
        ignore_gone(
            self.api_for(kind, namespace.as_deref())
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ()),
        )
    }
}

/// Done whether it happened or the object was gone already.
fn ignore_gone(result: Result<(), kube::Error>) -> Result<Option<Duration>, Error> {
    skiff_client::tolerating(result, &[404])?;
    Ok(None)
}

impl skiff_client::Reconcile for GarbageCollector {
    type Error = Error;

    fn reconcile(&self, key: &str) -> impl Future<Output = Result<Option<Duration>, Error>> + Send {
        self.process(key)
    }
}
