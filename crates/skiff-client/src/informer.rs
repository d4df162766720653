//! Informers: a watched local copy of one resource, indexed by namespace and by controller
//! owner, that tells registered handlers what changed. One informer per resource can serve
//! several controllers (register every handler before `start`).
//!
//! Stored objects have their managedFields dropped (as client-go's informers in upstream's
//! controllers and scheduler do): no controller reads them, and they are a third of a pod.
//!
//! Handlers run on the informer's task and must be quick (typically: push keys onto work
//! queues). They see each change after the store has it, so a sync triggered by a handler
//! always reads at least that state.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures_util::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

/// What happened to one object.
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now (or was last, for a deletion).
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Added(o) | Change::Deleted(o) => o,
            Change::Updated { new, .. } => new,
        }
    }
}

type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;

/// `namespace/name`, or `name` for cluster-scoped objects: the key of stores and queues.
pub fn key_of<K: Resource>(obj: &K) -> String {
    let meta = obj.meta();
    let name = meta.name.as_deref().unwrap_or_default();
    match meta.namespace.as_deref() {
        Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
        _ => name.to_string(),
    }
}

/// Splits a key into namespace (empty for cluster-scoped) and name.
pub fn split_key(key: &str) -> (&str, &str) {
    key.split_once('/').unwrap_or(("", key))
}

struct Indexed<K> {
    objects: HashMap<String, Arc<K>>,
    by_namespace: HashMap<String, HashSet<String>>,
    by_controller: HashMap<String, HashSet<String>>,
}

impl<K: Resource> Indexed<K> {
    fn insert(&mut self, key: String, obj: Arc<K>) -> Option<Arc<K>> {
        let old = self.objects.insert(key.clone(), obj.clone());
        if let Some(old) = &old {
            self.unindex(&key, old);
        }
        let meta = obj.meta();
        self.by_namespace
            .entry(meta.namespace.clone().unwrap_or_default())
            .or_default()
            .insert(key.clone());
        if let Some(owner) = controller_uid(meta) {
            self.by_controller
                .entry(owner.to_string())
                .or_default()
                .insert(key);
        }
        old
    }

    fn remove(&mut self, key: &str) -> Option<Arc<K>> {
        let old = self.objects.remove(key)?;
        self.unindex(key, &old);
        Some(old)
    }

    fn unindex(&mut self, key: &str, obj: &K) {
        let meta = obj.meta();
        let ns = meta.namespace.clone().unwrap_or_default();
        if let Some(set) = self.by_namespace.get_mut(&ns) {
            set.remove(key);
            if set.is_empty() {
                self.by_namespace.remove(&ns);
            }
        }
        if let Some(owner) = controller_uid(meta)
            && let Some(set) = self.by_controller.get_mut(owner)
        {
            set.remove(key);
            if set.is_empty() {
                self.by_controller.remove(owner);
            }
        }
    }
}

fn controller_uid(meta: &kube::api::ObjectMeta) -> Option<&str> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.as_str())
}

/// The read side of an informer: cheap to clone, shared with syncs.
pub struct Store<K> {
    inner: Arc<RwLock<Indexed<K>>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
        }
    }
}

impl<K: Resource> Store<K> {
    fn new() -> Self {
        Store {
            inner: Arc::new(RwLock::new(Indexed {
                objects: HashMap::new(),
                by_namespace: HashMap::new(),
                by_controller: HashMap::new(),
            })),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Indexed<K>> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Indexed<K>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A store no informer feeds, holding `objects`: for code that reads a store, in
    /// tests (see [`Store::put`]).
    pub fn of(objects: impl IntoIterator<Item = K>) -> Self {
        let store = Store::new();
        for obj in objects {
            store.put(obj);
        }
        store
    }

    /// Sets an object as its informer would on seeing it. Only for stores made with
    /// [`Store::of`]: an informer's store follows its watch, and nothing else writes it.
    pub fn put(&self, obj: K) {
        self.write().insert(key_of(&obj), Arc::new(obj));
    }

    /// Drops an object as its informer would on seeing it deleted; the same caveat as
    /// [`Store::put`].
    pub fn remove(&self, key: &str) {
        self.write().remove(key);
    }

    /// Whether two handles read the same informer's objects.
    pub fn same_as(&self, other: &Store<K>) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn get(&self, key: &str) -> Option<Arc<K>> {
        self.read().objects.get(key).cloned()
    }

    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().objects.values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The objects in one namespace.
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let inner = self.read();
        inner
            .by_namespace
            .get(namespace)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| inner.objects.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The objects whose controller owner reference names `uid`.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<K>> {
        let inner = self.read();
        inner
            .by_controller
            .get(uid)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| inner.objects.get(k).cloned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A watched copy of one resource. Build it, register handlers, then `start`.
pub struct Informer<K: Resource> {
    api: Api<K>,
    config: watcher::Config,
    store: Store<K>,
    handlers: Vec<Handler<K>>,
    transform: Option<fn(&mut K)>,
    synced_tx: watch::Sender<bool>,
}

/// Resolves once an informer has listed its resource for the first time.
#[derive(Clone)]
pub struct Synced(watch::Receiver<bool>);

impl Synced {
    pub async fn wait(mut self) {
        let _ = self.0.wait_for(|s| *s).await;
    }
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        Informer {
            api,
            config,
            store: Store::new(),
            handlers: Vec::new(),
            transform: None,
            synced_tx: watch::channel(false).0,
        }
    }

    /// Trims each object before it is stored (client-go's TransformFunc): what a component
    /// never reads it need not keep.
    pub fn with_transform(mut self, transform: fn(&mut K)) -> Self {
        self.transform = Some(transform);
        self
    }

    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    pub fn synced(&self) -> Synced {
        Synced(self.synced_tx.subscribe())
    }

    pub fn on_change(&mut self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        self.handlers.push(Box::new(handler));
    }

    /// Watches until the task is dropped; relists (with backoff) whenever the watch breaks.
    pub fn start(self) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run())
    }

    async fn run(self) {
        let Informer {
            api,
            config,
            store,
            handlers,
            transform,
            synced_tx,
        } = self;
        let notify = |change: Change<K>| {
            for h in &handlers {
                h(&change);
            }
        };
        let mut seen: HashSet<String> = HashSet::new();
        let mut stream = watcher(api, config).default_backoff().boxed();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e.modify(|obj| {
                    // No controller reads managedFields; they are a third of a pod.
                    obj.meta_mut().managed_fields = None;
                    if let Some(t) = transform {
                        t(obj);
                    }
                }),
                Err(e) => {
                    tracing::debug!(error = %e, "informer watch error, retrying");
                    continue;
                }
            };
            match event {
                Event::Init => seen.clear(),
                Event::InitApply(obj) => {
                    seen.insert(key_of(&obj));
                    apply(&store, obj, &notify);
                }
                Event::Apply(obj) => apply(&store, obj, &notify),
                Event::Delete(obj) => {
                    let key = key_of(&obj);
                    let removed = store.write().remove(&key);
                    notify(Change::Deleted(removed.unwrap_or_else(|| Arc::new(obj))));
                }
                Event::InitDone => {
                    // Whatever the relist did not return was deleted while we were away.
                    let gone: Vec<String> = store
                        .read()
                        .objects
                        .keys()
                        .filter(|k| !seen.contains(*k))
                        .cloned()
                        .collect();
                    for key in gone {
                        if let Some(old) = store.write().remove(&key) {
                            notify(Change::Deleted(old));
                        }
                    }
                    seen.clear();
                    synced_tx.send_replace(true);
                }
            }
        }
    }
}

fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl futures_util::Stream<Item = watcher::Result<Event<K>>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher::watcher(api, config)
}

fn apply<K: Resource>(store: &Store<K>, obj: K, notify: &impl Fn(Change<K>)) {
    let key = key_of(&obj);
    let new = Arc::new(obj);
    let old = store.write().insert(key, new.clone());
    match old {
        None => notify(Change::Added(new)),
        Some(old) => {
            // A relist hands back what we already have: not a change.
            if old.meta().resource_version.is_some()
                && old.meta().resource_version == new.meta().resource_version
            {
                return;
            }
            notify(Change::Updated { old, new })
        }
    }
}

/// Waits for every informer in `synced` to have listed once.
pub async fn wait_all(synced: impl IntoIterator<Item = Synced>) {
    for s in synced {
        s.wait().await;
    }
}
