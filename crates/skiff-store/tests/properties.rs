//! Property tests: under random writes and watches started from random revisions, every
//! watcher sees exactly the committed history after its start revision — in order, nothing
//! missed, nothing repeated, with the right previous values.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use skiff_store::{
    EmbeddedOptions, Event, EventKind, KeyValue, Revision, Store, StoreError, WatchStream,
};
use support::{Backend, Kind, b, events_until};

#[derive(Clone, Debug)]
enum Op {
    Create(u8),
    Update(u8),
    StaleUpdate(u8),
    Delete(u8),
    /// Start a watch from a revision this far (0–255 of 255) between the case's start and now.
    Watch(u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..6u8).prop_map(Op::Create),
        4 => (0..6u8).prop_map(Op::Update),
        1 => (0..6u8).prop_map(Op::StaleUpdate),
        2 => (0..6u8).prop_map(Op::Delete),
        2 => any::<u8>().prop_map(Op::Watch),
    ]
}

/// The committed history as the model predicts it.
#[derive(Default)]
struct Model {
    live: BTreeMap<String, KeyValue>,
    history: Vec<Event>,
}

impl Model {
    /// Records a committed write and returns the event a watcher must see for it.
    fn commit(&mut self, kind: EventKind, kv: KeyValue) {
        let prev = match kind {
            EventKind::Put => self.live.insert(kv.key.clone(), kv.clone()),
            EventKind::Delete => self.live.remove(&kv.key),
        };
        self.history.push(Event { kind, kv, prev });
    }

    fn expected_after(&self, start: Revision) -> Vec<Event> {
        self.history
            .iter()
            .filter(|e| e.revision() > start)
            .cloned()
            .collect()
    }
}

/// Compares what a watcher saw with the model, ignoring the value inside delete tombstones.
fn same_events(got: &[Event], want: &[Event]) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len(), "event count");
    for (g, w) in got.iter().zip(want) {
        prop_assert_eq!(g.kind, w.kind);
        prop_assert_eq!(&g.kv.key, &w.kv.key);
        prop_assert_eq!(g.revision(), w.revision());
        prop_assert_eq!(&g.prev, &w.prev, "prev of {} at {}", g.kv.key, g.revision());
        if g.kind == EventKind::Put {
            prop_assert_eq!(&g.kv, &w.kv);
        }
    }
    Ok(())
}

async fn run_sequential(store: &dyn Store, prefix: &str, ops: &[Op]) -> Result<(), TestCaseError> {
    let base = store.current_revision().await.unwrap();
    let mut model = Model::default();
    let mut watchers: Vec<(Revision, WatchStream)> = Vec::new();
    let mut revision = base;
    let key = |k: &u8| format!("{prefix}{k}");
    for op in ops {
        match op {
            Op::Create(k) => match store.create(&key(k), b(&format!("{revision}"))).await {
                Ok(kv) => {
                    prop_assert!(!model.live.contains_key(&kv.key));
                    prop_assert_eq!(kv.mod_revision, revision + 1);
                    revision = kv.mod_revision;
                    model.commit(EventKind::Put, kv);
                }
                Err(StoreError::AlreadyExists { current, .. }) => {
                    prop_assert_eq!(Some(&*current), model.live.get(&key(k)));
                }
                Err(err) => return Err(TestCaseError::fail(err.to_string())),
            },
            Op::Update(k) | Op::StaleUpdate(k) => {
                let current = model.live.get(&key(k)).map(|kv| kv.mod_revision);
                let stale = matches!(op, Op::StaleUpdate(_));
                let guard = match (current, stale) {
                    (Some(rev), false) => rev,
                    (Some(rev), true) => rev - 1,
                    (None, _) => revision,
                };
                match store
                    .update(&key(k), b(&format!("u{revision}")), guard)
                    .await
                {
                    Ok(kv) => {
                        prop_assert!(!stale && current.is_some());
                        revision = kv.mod_revision;
                        model.commit(EventKind::Put, kv);
                    }
                    Err(StoreError::Conflict { current: got, .. }) => {
                        prop_assert!(stale);
                        prop_assert_eq!(Some(&*got), model.live.get(&key(k)));
                    }
                    Err(StoreError::NotFound { .. }) => prop_assert!(current.is_none()),
                    Err(err) => return Err(TestCaseError::fail(err.to_string())),
                }
            }
            Op::Delete(k) => {
                let current = model.live.get(&key(k)).map(|kv| kv.mod_revision);
                match store.delete(&key(k), current).await {
                    Ok(deleted) => {
                        prop_assert_eq!(Some(&deleted.prev), model.live.get(&key(k)));
                        revision = deleted.revision;
                        let tombstone = KeyValue {
                            key: key(k),
                            value: Default::default(),
                            create_revision: 0,
                            mod_revision: deleted.revision,
                        };
                        model.commit(EventKind::Delete, tombstone);
                    }
                    Err(StoreError::NotFound { .. }) => prop_assert!(current.is_none()),
                    Err(err) => return Err(TestCaseError::fail(err.to_string())),
                }
            }
            Op::Watch(back) => {
                let start = base + (revision - base) * u64::from(*back) / 255;
                watchers.push((start, store.watch(prefix, start).await.unwrap()));
            }
        }
    }
    for (start, mut watch) in watchers {
        let got = events_until(&mut watch, revision).await;
        same_events(&got, &model.expected_after(start))?;
    }
    Ok(())
}

/// One store for a whole property run; each case writes under its own prefix.
struct Shared {
    backend: Backend,
    runtime: tokio::runtime::Runtime,
    cases: AtomicUsize,
}

impl Shared {
    fn new(kind: Kind) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let backend = match kind {
            // A ring of a few dozen events: watches from further back catch up from disk, so
            // both ways of starting a watch are exercised.
            Kind::Embedded => support::embedded_with(EmbeddedOptions {
                recent_events: 24,
                ..Default::default()
            }),
            Kind::Etcd => runtime.block_on(kind.open()),
        };
        Shared {
            backend,
            runtime,
            cases: AtomicUsize::new(0),
        }
    }

    fn next_prefix(&self) -> String {
        format!("/case{}/", self.cases.fetch_add(1, Ordering::Relaxed))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn embedded_sequential_history(ops in prop::collection::vec(op(), 1..80)) {
        thread_local!(static SHARED: Shared = Shared::new(Kind::Embedded));
        SHARED.with(|s| {
            let prefix = s.next_prefix();
            s.runtime.block_on(run_sequential(&*s.backend.store, &prefix, &ops))
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn etcd_sequential_history(ops in prop::collection::vec(op(), 1..60)) {
        thread_local!(static SHARED: Shared = Shared::new(Kind::Etcd));
        SHARED.with(|s| {
            let prefix = s.next_prefix();
            s.runtime.block_on(run_sequential(&*s.backend.store, &prefix, &ops))
        })?;
    }
}

/// What one writer task got acknowledged: the committed writes, by revision.
type Acks = Vec<(EventKind, KeyValue)>;

async fn concurrent_writer(store: Arc<dyn Store>, prefix: String, ops: Vec<(u8, u8)>) -> Acks {
    let mut acks = Vec::new();
    for (kind, k) in ops {
        let key = format!("{prefix}{k}");
        let current = store.get(&key).await.unwrap().kv;
        let result = match (kind % 3, current) {
            (0, _) | (_, None) => store
                .create(&key, b("c"))
                .await
                .map(|kv| (EventKind::Put, kv)),
            (1, Some(cur)) => store
                .update(&key, b(&format!("u{}", cur.mod_revision)), cur.mod_revision)
                .await
                .map(|kv| (EventKind::Put, kv)),
            (_, Some(cur)) => store.delete(&key, Some(cur.mod_revision)).await.map(|d| {
                let tombstone = KeyValue {
                    key: key.clone(),
                    value: Default::default(),
                    create_revision: 0,
                    mod_revision: d.revision,
                };
                (EventKind::Delete, tombstone)
            }),
        };
        match result {
            Ok(ack) => acks.push(ack),
            // Lost a race with another writer: nothing was committed.
            Err(StoreError::AlreadyExists { .. })
            | Err(StoreError::Conflict { .. })
            | Err(StoreError::NotFound { .. }) => {}
            Err(err) => panic!("{err}"),
        }
    }
    acks
}

async fn run_concurrent(
    store: Arc<dyn Store>,
    prefix: String,
    writers: Vec<Vec<(u8, u8)>>,
    watch_starts: Vec<(u8, u8)>,
) -> Result<(), TestCaseError> {
    let base = store.current_revision().await.unwrap();
    let tasks: Vec<_> = writers
        .into_iter()
        .map(|ops| tokio::spawn(concurrent_writer(store.clone(), prefix.clone(), ops)))
        .collect();
    let mut watchers = Vec::new();
    for (delay, back) in watch_starts {
        tokio::time::sleep(Duration::from_micros(u64::from(delay) * 20)).await;
        let now = store.current_revision().await.unwrap();
        let start = base + (now - base) * u64::from(back) / 255;
        watchers.push((start, store.watch(&prefix, start).await.unwrap()));
    }
    let mut acks: Acks = Vec::new();
    for task in tasks {
        acks.extend(task.await.unwrap());
    }
    acks.sort_by_key(|(_, kv)| kv.mod_revision);
    let revisions: Vec<Revision> = acks.iter().map(|(_, kv)| kv.mod_revision).collect();
    let contiguous: Vec<Revision> = (base + 1..=base + acks.len() as u64).collect();
    prop_assert_eq!(
        revisions,
        contiguous,
        "every revision is one acknowledged write"
    );
    let mut model = Model::default();
    for (kind, kv) in acks {
        model.commit(kind, kv);
    }
    let last = base + model.history.len() as u64;
    for (start, mut watch) in watchers {
        let got = events_until(&mut watch, last).await;
        same_events(&got, &model.expected_after(start))?;
    }
    Ok(())
}

fn writers() -> impl Strategy<Value = Vec<Vec<(u8, u8)>>> {
    prop::collection::vec(prop::collection::vec((any::<u8>(), 0..5u8), 5..40), 2..6)
}

fn watch_starts() -> impl Strategy<Value = Vec<(u8, u8)>> {
    prop::collection::vec((any::<u8>(), any::<u8>()), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn embedded_concurrent_history(writers in writers(), starts in watch_starts()) {
        thread_local!(static SHARED: Shared = Shared::new(Kind::Embedded));
        SHARED.with(|s| {
            let prefix = s.next_prefix();
            s.runtime.block_on(run_concurrent(s.backend.store.clone(), prefix, writers, starts))
        })?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn etcd_concurrent_history(writers in writers(), starts in watch_starts()) {
        thread_local!(static SHARED: Shared = Shared::new(Kind::Etcd));
        SHARED.with(|s| {
            let prefix = s.next_prefix();
            s.runtime.block_on(run_concurrent(s.backend.store.clone(), prefix, writers, starts))
        })?;
    }
}
