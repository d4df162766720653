//! The watch cache: each resource type's current objects in memory, kept up to date by one
//! datastore watch, as upstream's cacher does. Whole lists are served from it without
//! touching the datastore, already serialized: an object is encoded once per change, not
//! once per list.
//!
//! Consistency: a list that asks for the newest state (no resourceVersion) is served from the
//! cache only once the cache is known to be at least as new as the datastore's current
//! revision. The watch stream's progress tells it so even when nothing of this type changed
//! (`WatchStream::progress`; etcd reports it when asked, `WatchStream::request_progress`). If
//! the cache cannot confirm it in time, the list reads the datastore instead. `resourceVersion=0` takes the cache as it is; `resourceVersion=N` waits
//! for the cache to reach N.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;
use skiff_api::selectors::Selector;
use skiff_api::table::PrecomputedRow;
use skiff_api::{ApiError, ResourceType, fields};

use crate::registry::{Kind, Registry};
use skiff_store::{EventKind, RangeRequest, Revision};
use tokio::sync::{Notify, broadcast, watch};

use crate::continue_token::ContinueToken;
use crate::list_snapshots::{ListQuery, ListSnapshots, Page};
use crate::storage::{Objects, decode};

/// Objects read per datastore page while a cache is primed.
const PRIME_PAGE: usize = 500;

/// How often, and for how long, the feeder looks for a requested progress report.
const PROGRESS_POLL_EVERY: Duration = Duration::from_millis(5);
const PROGRESS_POLL_FOR: Duration = Duration::from_secs(1);

/// How long a list waits for the cache to catch up before reading the datastore instead.
const CATCH_UP_WAIT: Duration = Duration::from_secs(3);

/// One object as the cache keeps it: its JSON (with resourceVersion) for JSON lists, its
/// Table row computed once (decoded objects would cost about ten times the memory, and
/// decoding per request both time and, through the allocator's retention, resident memory),
/// and what selectors need.
pub struct Cached {
    pub bytes: Bytes,
    pub row: PrecomputedRow,
    labels: Vec<(String, String)>,
    fields: Vec<(&'static str, String)>,
}

impl Cached {
    pub(crate) fn new(kind: &dyn Kind, obj: Value) -> Cached {
        let labels = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let fields = fields::selectable_fields(kind.selectable_fields())
            .map(|f| (f, fields::field_value(&obj, f)))
            .collect();
        Cached {
            bytes: Bytes::from(skiff_api::wire_json::to_vec(&obj)),
            row: PrecomputedRow::new(kind, &obj),
            labels,
            fields,
        }
    }

    /// Whether the object has this name.
    pub fn named(&self, name: &str) -> bool {
        self.field("metadata.name") == Some(name)
    }

    /// A selectable field's value (see `fields::selectable_fields`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(f, _)| *f == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the object passes a label and a (checked) field selector.
    pub fn selected(&self, labels: &Selector, field_sel: &Selector) -> bool {
        labels.matches(|k| {
            self.labels
                .iter()
                .find(|(lk, _)| lk == k)
                .map(|(_, v)| v.as_str())
        }) && field_sel.matches(|k| {
            self.fields
                .iter()
                .find(|(fk, _)| *fk == k)
                .map(|(_, v)| v.as_str())
        })
    }
}

/// One change, as watchers of the cache receive it.
pub struct CacheEvent {
    pub key: String,
    pub revision: Revision,
    /// The object after the change; for a delete, the deleted object at the delete's
    /// revision.
    pub object: Arc<Cached>,
    /// The object before the change, if it existed.
    pub prev: Option<Arc<Cached>>,
    pub deleted: bool,
}

/// Recent changes kept for watches that start in the past, as upstream's cacher sizes its
/// window: every change of the last `FRESH` (upstream's eventFreshDuration), at least
/// `MIN_EVENTS` of them, and never more than `MAX_EVENTS` (upstream's upper bound) or
/// `MAX_BYTES` of objects. An informer that lists many objects under load starts its watch
/// seconds behind; served from here it costs nothing per change, where a watch served by
/// the datastore decodes every change for itself.
struct Ring {
    events: std::collections::VecDeque<(Instant, Arc<CacheEvent>)>,
    bytes: usize,
    /// The changes held cover (`floor`, the cache's revision].
    floor: Revision,
}

impl Ring {
    const FRESH: Duration = Duration::from_secs(75);
    const MIN_EVENTS: usize = 4096;
    const MAX_EVENTS: usize = 100 * 1024;
    const MAX_BYTES: usize = 64 << 20;

    fn new(floor: Revision) -> Ring {
        Ring {
            events: Default::default(),
            bytes: 0,
            floor,
        }
    }

    fn push(&mut self, now: Instant, event: Arc<CacheEvent>) {
        self.bytes += event.object.bytes.len();
        self.events.push_back((now, event));
        while let Some((at, oldest)) = self.events.front() {
            let stale =
                self.events.len() > Self::MIN_EVENTS && now.duration_since(*at) > Self::FRESH;
            if !stale && self.events.len() <= Self::MAX_EVENTS && self.bytes <= Self::MAX_BYTES {
                break;
            }
            let (bytes, revision) = (oldest.object.bytes.len(), oldest.revision);
            self.events.pop_front();
            self.bytes -= bytes;
            self.floor = revision;
        }
    }

    /// The changes after `after`, or `None` when some of them are no longer held.
    fn since(&self, after: Revision) -> Option<Vec<Arc<CacheEvent>>> {
        if after < self.floor {
            return None;
        }
        let first = self.events.partition_point(|(_, e)| e.revision <= after);
        Some(self.events.range(first..).map(|(_, e)| e.clone()).collect())
    }
}

/// Changes a watcher may fall behind by before its watch is ended (it re-watches).
const WATCHER_BUFFER: usize = 4096;

struct State {
    /// By datastore key, so a namespace's objects are one contiguous range.
    objects: BTreeMap<String, Arc<Cached>>,
    /// Every change up to this revision is reflected.
    revision: Revision,
    /// The most recent changes.
    ring: Ring,
    /// The feeding watch ended; the cache must be rebuilt before it is used again.
    broken: bool,
    /// Every change, to every watcher subscribed (sent under this lock, so a subscription
    /// taken under it neither misses nor repeats one). Dropped when the cache breaks or is
    /// retired, which ends its watchers' streams (their clients watch again).
    events_tx: Option<broadcast::Sender<Arc<CacheEvent>>>,
}

/// One resource type's cache.
pub struct WatchCache {
    kind: Arc<dyn Kind>,
    state: RwLock<State>,
    /// Tells waiting lists that the revision moved.
    revision_tx: watch::Sender<Revision>,
    /// Asks the feeding task to check the stream's progress now.
    progress_wanted: Notify,
    /// Whether the datastore reports watch progress (so consistent lists can use the cache).
    tracks_progress: bool,
    /// Tells the feeding task to stop: the kind changed or is no longer served.
    retired: Notify,
}

/// A watch on a cache: where it starts and what follows.
pub struct Subscription {
    /// The objects at `revision` (when the watch asked for the current state).
    pub initial: Vec<(String, Arc<Cached>)>,
    /// Changes after the requested revision that happened before the subscription.
    pub backlog: Vec<Arc<CacheEvent>>,
    pub revision: Revision,
    pub rx: broadcast::Receiver<Arc<CacheEvent>>,
}

impl WatchCache {
    /// Loads every object of the type and starts following the datastore from there.
    async fn start(kind: Arc<dyn Kind>, objects: &Objects) -> Result<Arc<WatchCache>, ApiError> {
        let rt = kind.resource();
        // Page by page at one revision, so only one page of decoded objects is alive at a
        // time: decoding everything at once would peak at many times the cache's size.
        let store_err = |e| crate::storage::store_error(rt, "", e);
        let mut map = BTreeMap::new();
        let mut request = RangeRequest {
            prefix: rt.storage_prefix(),
            limit: PRIME_PAGE,
            ..RangeRequest::default()
        };
        let revision = loop {
            let page = objects
                .store()
                .range(request.clone())
                .await
                .map_err(store_err)?;
            for kv in &page.kvs {
                map.insert(
                    kv.key.clone(),
                    Arc::new(Cached::new(kind.as_ref(), decode(rt, kv)?)),
                );
            }
            if !page.more {
                break page.revision;
            }
            request.at_revision = Some(page.revision);
            request.continue_after = page.kvs.last().map(|kv| kv.key.clone());
        };
        let mut stream = objects
            .store()
            .watch(&rt.storage_prefix(), revision)
            .await
            .map_err(|e| crate::storage::store_error(rt, "", e))?;
        let tracks_progress = stream.progress().is_some();
        let (revision_tx, _) = watch::channel(revision);
        let cache = Arc::new(WatchCache {
            kind: kind.clone(),
            state: RwLock::new(State {
                objects: map,
                revision,
                ring: Ring::new(revision),
                broken: false,
                events_tx: Some(broadcast::channel(WATCHER_BUFFER).0),
            }),
            revision_tx,
            progress_wanted: Notify::new(),
            tracks_progress,
            retired: Notify::new(),
        });
        let feeder = cache.clone();
        tokio::spawn(async move {
            // While a list waits for progress, ask the datastore for it (etcd reports it only
            // when asked) and look for the answer every few milliseconds, for up to a second.
            let mut polling_until: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    ev = stream.next() => match ev {
                        Some(Ok(ev)) => {
                            if let Err(e) = feeder.apply(&ev) {
                                tracing::warn!(resource = %feeder.kind.resource().group_resource(), error = %e, "watch cache stopped");
                                break;
                            }
                        }
                        other => {
                            if let Some(Err(e)) = other {
                                tracing::info!(resource = %feeder.kind.resource().group_resource(), error = %e, "watch cache feed ended; it will be rebuilt");
                            }
                            break;
                        }
                    },
                    _ = feeder.retired.notified() => break,
                    _ = feeder.progress_wanted.notified() => {
                        stream.request_progress();
                        polling_until = Some(tokio::time::Instant::now() + PROGRESS_POLL_FOR);
                    }
                    _ = tokio::time::sleep(PROGRESS_POLL_EVERY), if polling_until.is_some() => {
                        if polling_until.is_some_and(|t| tokio::time::Instant::now() > t) {
                            polling_until = None;
                        }
                    }
                }
                if let Some(p) = stream.progress() {
                    feeder.advance(p);
                }
            }
            let mut state = feeder.state.write().expect("cache lock");
            state.broken = true;
            state.events_tx = None;
        });
        Ok(cache)
    }

    fn apply(&self, ev: &skiff_store::Event) -> Result<(), ApiError> {
        let key = ev.kv.key.clone();
        let new = match ev.kind {
            EventKind::Put => Some(Arc::new(Cached::new(
                self.kind.as_ref(),
                decode(self.kind.resource(), &ev.kv)?,
            ))),
            EventKind::Delete => None,
        };
        let mut state = self.state.write().expect("cache lock");
        let prev = match &new {
            Some(c) => state.objects.insert(key.clone(), c.clone()),
            None => state.objects.remove(&key),
        };
        let event = match (new, prev) {
            (Some(object), prev) => CacheEvent {
                key,
                revision: ev.revision(),
                object,
                prev,
                deleted: false,
            },
            (None, Some(prev)) => {
                // Watchers see a deleted object at the delete's revision.
                let mut gone: Value = serde_json::from_slice(&prev.bytes).map_err(|e| {
                    ApiError::internal(format!("watch cache entry is not JSON: {e}"))
                })?;
                skiff_api::object::metadata_mut(&mut gone)
                    .insert("resourceVersion".into(), ev.revision().to_string().into());
                CacheEvent {
                    key,
                    revision: ev.revision(),
                    object: Arc::new(Cached::new(self.kind.as_ref(), gone)),
                    prev: Some(prev),
                    deleted: true,
                }
            }
            (None, None) => {
                state.revision = state.revision.max(ev.revision());
                return Ok(());
            }
        };
        let event = Arc::new(event);
        state.ring.push(Instant::now(), event.clone());
        state.revision = state.revision.max(ev.revision());
        let revision = state.revision;
        // Sent under the lock: see `events_tx`. No receivers is fine.
        if let Some(tx) = &state.events_tx {
            let _ = tx.send(event);
        }
        drop(state);
        self.revision_tx.send_replace(revision);
        Ok(())
    }

    /// Subscribes to changes after `after`, or to the current state and what follows when
    /// `after` is `None`. `None` when the cache no longer holds changes that old (the
    /// datastore serves such watches).
    pub fn subscribe(&self, after: Option<Revision>) -> Option<Subscription> {
        let state = self.state.read().expect("cache lock");
        if state.broken {
            return None;
        }
        let rx = state.events_tx.as_ref()?.subscribe();
        match after {
            None => Some(Subscription {
                initial: state
                    .objects
                    .iter()
                    .map(|(k, c)| (k.clone(), c.clone()))
                    .collect(),
                backlog: Vec::new(),
                revision: state.revision,
                rx,
            }),
            Some(after) => Some(Subscription {
                initial: Vec::new(),
                backlog: state.ring.since(after)?,
                revision: state.revision.max(after),
                rx,
            }),
        }
    }

    fn advance(&self, revision: Revision) {
        let mut state = self.state.write().expect("cache lock");
        if revision > state.revision {
            state.revision = revision;
            drop(state);
            self.revision_tx.send_replace(revision);
        }
    }

    fn is_broken(&self) -> bool {
        self.state.read().expect("cache lock").broken
    }

    /// Waits until the cache reflects `min` (or gives up, answering false).
    async fn wait_for(&self, min: Revision) -> bool {
        let mut rx = self.revision_tx.subscribe();
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            if *rx.borrow_and_update() >= min {
                return true;
            }
            if self.is_broken() {
                return false;
            }
            self.progress_wanted.notify_one();
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return false,
            }
        }
    }

    /// The objects of one namespace (or all) that pass the selectors, in key order, each
    /// as `entry` makes it, and the revision they are at.
    fn select<T>(
        &self,
        ns: Option<&str>,
        labels: &Selector,
        field_sel: &Selector,
        entry: impl Fn(&String, &Arc<Cached>) -> T,
    ) -> (Revision, Vec<T>) {
        let state = self.state.read().expect("cache lock");
        let prefix = self.kind.resource().storage_list_prefix(ns);
        let items = state
            .objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter(|(_, c)| c.selected(labels, field_sel))
            .map(|(k, c)| entry(k, c))
            .collect();
        (state.revision, items)
    }
}

/// Which revision a list needs.
pub enum Freshness {
    /// Whatever the cache holds (`resourceVersion=0`).
    Any,
    /// At least this revision.
    AtLeast(Revision),
    /// The datastore's current revision (no resourceVersion: a consistent read).
    Newest,
}

/// The caches of every resource type, started on first use.
pub struct Caches {
    objects: Objects,
    registry: Arc<Registry>,
    caches: Mutex<HashMap<String, Arc<WatchCache>>>,
    starting: tokio::sync::Mutex<()>,
    /// Paginated lists' snapshots, for the pages after the first.
    snapshots: ListSnapshots,
}

impl Caches {
    pub fn new(objects: Objects, registry: Arc<Registry>) -> Caches {
        Caches {
            objects,
            registry,
            caches: Mutex::new(HashMap::new()),
            starting: tokio::sync::Mutex::new(()),
            snapshots: ListSnapshots::default(),
        }
    }

    /// One cache per served type: two versions of a custom resource share storage but
    /// present its objects each in its own version.
    fn key(rt: &ResourceType) -> String {
        format!("{}/{}", rt.api_version(), rt.plural)
    }

    /// Stops and forgets the cache of `rt` (its kind changed or is no longer served); its
    /// watchers' streams end. The next use starts a new one.
    pub fn retire(&self, rt: &ResourceType) {
        let removed = self
            .caches
            .lock()
            .expect("caches lock")
            .remove(&Self::key(rt));
        if let Some(cache) = removed {
            cache.retired.notify_one();
        }
    }

    pub async fn cache(&self, rt: &ResourceType) -> Result<Arc<WatchCache>, ApiError> {
        let key = Self::key(rt);
        if let Some(c) = self.caches.lock().expect("caches lock").get(&key)
            && !c.is_broken()
        {
            return Ok(c.clone());
        }
        // One start at a time, so concurrent first lists share one cache.
        let _starting = self.starting.lock().await;
        if let Some(c) = self.caches.lock().expect("caches lock").get(&key)
            && !c.is_broken()
        {
            return Ok(c.clone());
        }
        let kind = self
            .registry
            .of_type(rt)
            .ok_or_else(|| ApiError::not_found(rt, ""))?;
        let cache = WatchCache::start(kind, &self.objects).await?;
        self.caches
            .lock()
            .expect("caches lock")
            .insert(key, cache.clone());
        Ok(cache)
    }

    /// An object as the watch cache holds it, for admission to read without a datastore
    /// round trip (upstream's admission plugins read informer listers the same way). `None`
    /// when the cache does not hold it (yet): the caller asks the datastore.
    pub async fn lookup(&self, rt: &ResourceType, ns: Option<&str>, name: &str) -> Option<Value> {
        let cached = self.cached(rt, ns, name).await?;
        serde_json::from_slice(&cached.bytes).ok()
    }

    /// As [`Caches::lookup`], without decoding: for what the selectable fields answer.
    pub async fn cached(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Option<Arc<Cached>> {
        let cache = self.cache(rt).await.ok()?;
        let key = rt.storage_key(ns, name);
        let state = cache.state.read().expect("cache lock");
        state.objects.get(&key).cloned()
    }

    /// Starts the cache of every stored resource type, as upstream's API server starts its
    /// cachers: the objects are loaded now, and later lists and watches find them ready
    /// rather than paying for the load (a first list of 10,000 pods took 0.3–0.8 s).
    /// Types that share storage (core and events.k8s.io Events) get one cache each.
    pub async fn start_all(&self) {
        let served = self.registry.served();
        for rt in served.resources().into_iter().filter(|rt| rt.is_stored()) {
            if let Err(e) = self.cache(rt).await {
                tracing::warn!(resource = %rt.group_resource(), error = %e, "starting the watch cache (the first list will)");
            }
        }
    }

    /// The matching objects (one page holding them all), if the cache can answer with the
    /// freshness asked for; `None` sends the caller to the datastore.
    pub async fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        freshness: Freshness,
        labels: &Selector,
        field_sel: &Selector,
    ) -> Result<Option<Page>, ApiError> {
        let Some(cache) = self.fresh(rt, freshness).await? else {
            return Ok(None);
        };
        let (revision, items) = cache.select(ns, labels, field_sel, |_, c| c.clone());
        Ok(Some(Page {
            revision,
            items,
            last_key: None,
        }))
    }

    /// The first page of a paginated list, if the cache can answer with the freshness
    /// asked for; the rest of its snapshot is kept for the pages after it.
    pub async fn first_page(
        &self,
        rt: &ResourceType,
        query: ListQuery,
        freshness: Freshness,
        (labels, field_sel): (&Selector, &Selector),
        limit: usize,
    ) -> Result<Option<Page>, ApiError> {
        let Some(cache) = self.fresh(rt, freshness).await? else {
            return Ok(None);
        };
        let ns = query.namespace.as_deref();
        let (revision, entries) =
            cache.select(ns, labels, field_sel, |k, c| (k.clone(), c.clone()));
        Ok(Some(
            self.snapshots.first_page(query, revision, entries, limit),
        ))
    }

    /// The page a continue token asks for, if its snapshot is still held and its revision
    /// not compacted (then the datastore answers, with its 410).
    pub async fn next_page(
        &self,
        rt: &ResourceType,
        query: &ListQuery,
        token: &ContinueToken,
        limit: usize,
    ) -> Result<Option<Page>, ApiError> {
        let compacted = self
            .objects
            .store()
            .compacted_revision()
            .await
            .map_err(|e| crate::storage::store_error(rt, "", e))?;
        if token.revision < compacted {
            return Ok(None);
        }
        Ok(self
            .snapshots
            .next_page(query, token.revision, &token.start_after, limit))
    }

    /// The cache of `rt` once it is as fresh as asked; `None` when it cannot tell in time.
    async fn fresh(
        &self,
        rt: &ResourceType,
        freshness: Freshness,
    ) -> Result<Option<Arc<WatchCache>>, ApiError> {
        let cache = self.cache(rt).await?;
        let min = match freshness {
            Freshness::Any => 0,
            Freshness::AtLeast(r) => r,
            Freshness::Newest if !cache.tracks_progress => return Ok(None),
            Freshness::Newest => self
                .objects
                .store()
                .current_revision()
                .await
                .map_err(|e| crate::storage::store_error(rt, "", e))?,
        };
        Ok(cache.wait_for(min).await.then_some(cache))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(revision: Revision, object: &Arc<Cached>) -> Arc<CacheEvent> {
        Arc::new(CacheEvent {
            key: format!("/registry/pods/default/p-{revision}"),
            revision,
            object: object.clone(),
            prev: None,
            deleted: false,
        })
    }

    fn pod(bytes: usize) -> Arc<Cached> {
        let obj = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default",
                         "annotations": {"pad": "x".repeat(bytes)}}});
        Arc::new(Cached::new(&crate::registry::core::pod::Pods, obj))
    }

    #[test]
    fn the_ring_keeps_recent_changes_and_at_least_its_minimum() {
        let object = pod(10);
        let start = Instant::now();
        let mut ring = Ring::new(0);
        let old = Ring::MIN_EVENTS as Revision + 10;
        for r in 1..=old {
            ring.push(start, event(r, &object));
        }
        // Young changes stay beyond the minimum.
        assert_eq!(ring.events.len(), old as usize);
        assert_eq!(ring.since(0).map(|e| e.len()), Some(old as usize));
        // Once they are older than FRESH, only the minimum is kept.
        let later = start + Ring::FRESH + Duration::from_secs(1);
        ring.push(later, event(old + 1, &object));
        assert_eq!(ring.events.len(), Ring::MIN_EVENTS);
        assert_eq!(ring.floor, old + 1 - Ring::MIN_EVENTS as Revision);
        assert!(
            ring.since(ring.floor - 1).is_none(),
            "changes no longer held"
        );
        let after = old - 2;
        let revisions: Vec<_> = ring
            .since(after)
            .unwrap()
            .iter()
            .map(|e| e.revision)
            .collect();
        assert_eq!(revisions, [old - 1, old, old + 1]);
        assert_eq!(ring.since(old + 1).map(|e| e.len()), Some(0));
    }

    #[test]
    fn the_ring_is_bounded_by_the_bytes_it_holds() {
        let object = pod(64 * 1024);
        let size = object.bytes.len();
        let mut ring = Ring::new(0);
        let now = Instant::now();
        for r in 1..=2 * (Ring::MAX_BYTES / size) as Revision {
            ring.push(now, event(r, &object));
        }
        assert!(ring.bytes <= Ring::MAX_BYTES);
        assert_eq!(ring.bytes, ring.events.len() * size);
        assert_eq!(ring.events.len(), Ring::MAX_BYTES / size);
    }
}
