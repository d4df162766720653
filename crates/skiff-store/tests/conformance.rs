//! The store contract, checked against every backend: the embedded store and a real etcd.

mod support;

use std::collections::BTreeMap;

use skiff_store::{EventKind, RangeRequest, StoreError};
use support::{Kind, assert_quiet, b, events_until, next_event};

/// Runs each listed check once per backend, as `embedded::NAME` and `etcd::NAME`.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Embedded).await
                }
            )*
        }
        mod etcd {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Kind::Etcd).await
                }
            )*
        }
    };
}

conformance!(
    writes_advance_one_revision_each,
    create_refuses_an_existing_key,
    get_reports_its_revision,
    update_is_guarded_by_mod_revision,
    delete_is_guarded_and_recreate_starts_afresh,
    range_honours_prefix_boundaries_and_key_order,
    range_paginates_one_consistent_snapshot,
    range_reads_older_revisions,
    range_refuses_future_revisions,
    range_answers_larger_than_four_mebibytes,
    watch_reports_every_kind_with_previous_values,
    watch_from_the_past_replays_history_in_order,
    watch_after_a_range_misses_and_repeats_nothing,
    compaction_refuses_older_revisions_and_keeps_newer,
    slow_watch_consumer_is_ended,
    invalid_keys_are_refused,
);

async fn writes_advance_one_revision_each(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let start = store.current_revision().await.unwrap();
    assert!(start >= 1, "revision 0 never names a state");
    let a = store.create("/t/a", b("1")).await.unwrap();
    assert_eq!(a.mod_revision, start + 1);
    assert_eq!(a.create_revision, a.mod_revision);
    let a2 = store.update("/t/a", b("2"), a.mod_revision).await.unwrap();
    assert_eq!(a2.mod_revision, start + 2);
    assert_eq!(a2.create_revision, a.create_revision);
    let deleted = store.delete("/t/a", None).await.unwrap();
    assert_eq!(deleted.revision, start + 3);
    assert_eq!(store.current_revision().await.unwrap(), start + 3);
}

async fn create_refuses_an_existing_key(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let first = store.create("/t/k", b("first")).await.unwrap();
    let before = store.current_revision().await.unwrap();
    match store.create("/t/k", b("second")).await {
        Err(StoreError::AlreadyExists { key, current }) => {
            assert_eq!(key, "/t/k");
            assert_eq!(*current, first);
        }
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert_eq!(
        store.current_revision().await.unwrap(),
        before,
        "a refused write must not use a revision"
    );
    assert_eq!(
        store.get("/t/k").await.unwrap().kv.unwrap().value,
        b("first")
    );
}

async fn get_reports_its_revision(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let missing = store.get("/t/missing").await.unwrap();
    assert_eq!(missing.kv, None);
    assert_eq!(missing.revision, store.current_revision().await.unwrap());
    let kv = store.create("/t/k", b("v")).await.unwrap();
    store.create("/t/other", b("o")).await.unwrap();
    let got = store.get("/t/k").await.unwrap();
    assert_eq!(got.kv, Some(kv));
    assert_eq!(got.revision, store.current_revision().await.unwrap());
}

async fn update_is_guarded_by_mod_revision(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let v1 = store.create("/t/k", b("v1")).await.unwrap();
    let v2 = store
        .update("/t/k", b("v2"), v1.mod_revision)
        .await
        .unwrap();
    assert_eq!(v2.value, b("v2"));
    match store.update("/t/k", b("stale"), v1.mod_revision).await {
        Err(StoreError::Conflict {
            key,
            expected,
            current,
        }) => {
            assert_eq!(key, "/t/k");
            assert_eq!(expected, v1.mod_revision);
            assert_eq!(*current, v2, "a conflict carries the current value");
        }
        other => panic!("expected Conflict, got {other:?}"),
    }
    match store.update("/t/missing", b("x"), 5).await {
        Err(StoreError::NotFound { key }) => assert_eq!(key, "/t/missing"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.get("/t/k").await.unwrap().kv, Some(v2));
}

async fn delete_is_guarded_and_recreate_starts_afresh(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let v1 = store.create("/t/k", b("v1")).await.unwrap();
    let v2 = store
        .update("/t/k", b("v2"), v1.mod_revision)
        .await
        .unwrap();
    match store.delete("/t/k", Some(v1.mod_revision)).await {
        Err(StoreError::Conflict { current, .. }) => assert_eq!(*current, v2),
        other => panic!("expected Conflict, got {other:?}"),
    }
    let deleted = store.delete("/t/k", Some(v2.mod_revision)).await.unwrap();
    assert_eq!(deleted.prev, v2);
    assert_eq!(deleted.revision, v2.mod_revision + 1);
    assert_eq!(store.get("/t/k").await.unwrap().kv, None);
    match store.delete("/t/k", None).await {
        Err(StoreError::NotFound { .. }) => {}
        other => panic!("expected NotFound, got {other:?}"),
    }
    let again = store.create("/t/k", b("v3")).await.unwrap();
    assert_eq!(again.create_revision, deleted.revision + 1);
    let unguarded = store.delete("/t/k", None).await.unwrap();
    assert_eq!(unguarded.prev, again);
}

async fn range_honours_prefix_boundaries_and_key_order(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    for key in [
        "/p/b", "/p/a/10", "/p/a/2", "/p/a/1", "/p/ab", "/p/a", "/q/a",
    ] {
        store.create(key, b(key)).await.unwrap();
    }
    let result = store.range(RangeRequest::prefix("/p/a/")).await.unwrap();
    let keys: Vec<&str> = result.kvs.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(keys, ["/p/a/1", "/p/a/10", "/p/a/2"]);
    assert!(!result.more);
    assert_eq!(result.revision, store.current_revision().await.unwrap());
    for kv in &result.kvs {
        assert_eq!(kv.value, b(&kv.key));
    }
    let all = store.range(RangeRequest::prefix("/p/")).await.unwrap();
    assert_eq!(all.kvs.len(), 6);
    let empty = store.range(RangeRequest::prefix("/none/")).await.unwrap();
    assert!(empty.kvs.is_empty() && !empty.more);
}

async fn range_paginates_one_consistent_snapshot(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let mut snapshot = BTreeMap::new();
    for i in 0..10 {
        let key = format!("/page/{i:02}");
        let kv = store.create(&key, b(&format!("v{i}"))).await.unwrap();
        snapshot.insert(key, kv);
    }
    let mut request = RangeRequest {
        prefix: "/page/".into(),
        limit: 3,
        ..Default::default()
    };
    let first = store.range(request.clone()).await.unwrap();
    assert_eq!(first.kvs.len(), 3);
    assert!(first.more);
    // Writes between pages must not show up in later pages.
    let k5 = &snapshot["/page/05"];
    store
        .update("/page/05", b("changed"), k5.mod_revision)
        .await
        .unwrap();
    store.delete("/page/07", None).await.unwrap();
    store.create("/page/04a", b("new")).await.unwrap();
    let mut seen = first.kvs.clone();
    request.at_revision = Some(first.revision);
    request.continue_after = Some(first.kvs.last().unwrap().key.clone());
    loop {
        let page = store.range(request.clone()).await.unwrap();
        assert_eq!(page.revision, first.revision);
        assert!(page.kvs.len() <= 3);
        seen.extend(page.kvs.iter().cloned());
        if !page.more {
            break;
        }
        request.continue_after = Some(page.kvs.last().unwrap().key.clone());
    }
    let expected: Vec<_> = snapshot.into_values().collect();
    assert_eq!(seen, expected);
}

async fn range_reads_older_revisions(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let a1 = store.create("/old/a", b("a1")).await.unwrap();
    let b1 = store.create("/old/b", b("b1")).await.unwrap();
    let at = store.current_revision().await.unwrap();
    store
        .update("/old/a", b("a2"), a1.mod_revision)
        .await
        .unwrap();
    store.delete("/old/b", None).await.unwrap();
    store.create("/old/c", b("c1")).await.unwrap();
    let old = store
        .range(RangeRequest {
            prefix: "/old/".into(),
            at_revision: Some(at),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(old.revision, at);
    assert_eq!(old.kvs, vec![a1, b1]);
    let now = store.range(RangeRequest::prefix("/old/")).await.unwrap();
    let values: Vec<_> = now.kvs.iter().map(|kv| kv.value.clone()).collect();
    assert_eq!(values, [b("a2"), b("c1")]);
}

async fn range_refuses_future_revisions(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    store.create("/f/a", b("a")).await.unwrap();
    let current = store.current_revision().await.unwrap();
    match store
        .range(RangeRequest {
            prefix: "/f/".into(),
            at_revision: Some(current + 100),
            ..Default::default()
        })
        .await
    {
        Err(StoreError::FutureRevision {
            requested,
            current: reported,
        }) => {
            assert_eq!(requested, current + 100);
            assert_eq!(reported, current);
        }
        other => panic!("expected FutureRevision, got {other:?}"),
    }
}

/// A list of every object of a busy kind is one range; gRPC's default 4 MiB message limit must
/// not cap it.
async fn range_answers_larger_than_four_mebibytes(kind: Kind) {
    let backend = kind.open().await;
    let store = backend.store.clone();
    let value = bytes::Bytes::from(vec![b'v'; 16 * 1024]);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let (store, value) = (store.clone(), value.clone());
            tokio::spawn(async move {
                for i in 0..50 {
                    store
                        .create(&format!("/big/{w}-{i:02}"), value.clone())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.unwrap();
    }
    let result = store.range(RangeRequest::prefix("/big/")).await.unwrap();
    assert_eq!(result.kvs.len(), 400, "6.4 MiB in one answer");
    assert!(result.kvs.iter().all(|kv| kv.value == value));
}

async fn watch_reports_every_kind_with_previous_values(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/w/", start).await.unwrap();
    let created = store.create("/w/k", b("v1")).await.unwrap();
    store.create("/elsewhere", b("x")).await.unwrap();
    let updated = store
        .update("/w/k", b("v2"), created.mod_revision)
        .await
        .unwrap();
    let deleted = store.delete("/w/k", None).await.unwrap();

    let event = next_event(&mut watch).await;
    assert_eq!(event.kind, EventKind::Put);
    assert!(event.is_create());
    assert_eq!(event.kv, created);

    let event = next_event(&mut watch).await;
    assert_eq!(event.kind, EventKind::Put);
    assert_eq!(event.kv, updated);
    assert_eq!(event.prev.as_ref(), Some(&created));

    let event = next_event(&mut watch).await;
    assert_eq!(event.kind, EventKind::Delete);
    assert_eq!(event.kv.key, "/w/k");
    assert_eq!(event.revision(), deleted.revision);
    assert_eq!(event.prev.as_ref(), Some(&updated));
    assert_eq!(watch.revision(), deleted.revision);
    assert_quiet(&mut watch).await;
}

async fn watch_from_the_past_replays_history_in_order(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let start = store.current_revision().await.unwrap();
    let mut expected = Vec::new();
    let mut last = None;
    for i in 0..50 {
        let key = format!("/h/{}", i % 7);
        let kv = match store.create(&key, b(&format!("{i}"))).await {
            Ok(kv) => kv,
            Err(StoreError::AlreadyExists { current, .. }) => store
                .update(&key, b(&format!("{i}")), current.mod_revision)
                .await
                .unwrap(),
            Err(err) => panic!("{err}"),
        };
        store.create(&format!("/other/{i}"), b("x")).await.unwrap();
        expected.push((kv.key.clone(), kv.value.clone(), kv.mod_revision));
        last = Some(kv.mod_revision);
    }
    // Start in the middle of that history, and at its very beginning.
    for from in [start, expected[20].2] {
        let mut watch = store.watch("/h/", from).await.unwrap();
        let events = events_until(&mut watch, last.unwrap()).await;
        let got: Vec<_> = events
            .iter()
            .map(|e| (e.kv.key.clone(), e.kv.value.clone(), e.revision()))
            .collect();
        let want: Vec<_> = expected.iter().filter(|e| e.2 > from).cloned().collect();
        assert_eq!(got, want);
        // A replayed update still carries the version it replaced.
        for event in events.iter().filter(|e| !e.is_create()) {
            let prev = event.prev.as_ref().expect("update has prev");
            assert_eq!(prev.key, event.kv.key);
            assert!(prev.mod_revision < event.revision());
        }
    }
}

async fn watch_after_a_range_misses_and_repeats_nothing(kind: Kind) {
    let backend = kind.open().await;
    let store = backend.store.clone();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut last = 0;
            for i in 0..300 {
                last = store
                    .create(&format!("/race/{i:04}"), b("v"))
                    .await
                    .unwrap()
                    .mod_revision;
                if i % 50 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            last
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let listed = store.range(RangeRequest::prefix("/race/")).await.unwrap();
    let mut watch = store.watch("/race/", listed.revision).await.unwrap();
    let last = writer.await.unwrap();
    let events = events_until(&mut watch, last).await;
    let mut keys: Vec<String> = listed.kvs.iter().map(|kv| kv.key.clone()).collect();
    let mut previous = listed.revision;
    for event in &events {
        assert!(event.revision() > previous, "events strictly in order");
        previous = event.revision();
        keys.push(event.kv.key.clone());
    }
    let expected: Vec<String> = (0..300).map(|i| format!("/race/{i:04}")).collect();
    assert_eq!(keys, expected, "list + watch = every write exactly once");
    assert_quiet(&mut watch).await;
}

async fn compaction_refuses_older_revisions_and_keeps_newer(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    let mut rev = store.create("/c/a", b("a0")).await.unwrap().mod_revision;
    store.create("/c/gone", b("g")).await.unwrap();
    for i in 1..20 {
        rev = store
            .update("/c/a", b(&format!("a{i}")), rev)
            .await
            .unwrap()
            .mod_revision;
    }
    store.delete("/c/gone", None).await.unwrap();
    let keep = store.create("/c/b", b("b0")).await.unwrap().mod_revision;
    let before_compaction = store
        .range(RangeRequest {
            prefix: "/c/".into(),
            at_revision: Some(keep),
            ..Default::default()
        })
        .await
        .unwrap();
    let after_keep = store.update("/c/a", b("a-last"), rev).await.unwrap();
    assert!(store.compacted_revision().await.unwrap() < keep);
    store.compact(keep).await.unwrap();
    assert_eq!(store.compacted_revision().await.unwrap(), keep);

    match store
        .range(RangeRequest {
            prefix: "/c/".into(),
            at_revision: Some(keep - 1),
            ..Default::default()
        })
        .await
    {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, keep - 1),
        other => panic!("expected Compacted, got {other:?}"),
    }
    match store.watch("/c/", keep - 2).await {
        Err(StoreError::Compacted { requested, .. }) => assert_eq!(requested, keep - 2),
        other => panic!("expected Compacted, got {other:?}"),
    }
    let at_keep = store
        .range(RangeRequest {
            prefix: "/c/".into(),
            at_revision: Some(keep),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        at_keep, before_compaction,
        "the compacted revision stays readable"
    );
    let mut watch = store.watch("/c/", keep).await.unwrap();
    let event = next_event(&mut watch).await;
    assert_eq!(event.kv, after_keep);
    assert_eq!(event.prev.unwrap().value, b("a19"));
    // Compacting to the same revision again is harmless.
    store.compact(keep).await.unwrap();
}

async fn slow_watch_consumer_is_ended(kind: Kind) {
    let backend = kind.open_with_watch_buffer(4).await;
    let store = &*backend.store;
    let start = store.current_revision().await.unwrap();
    let mut watch = store.watch("/slow/", start).await.unwrap();
    for i in 0..200 {
        store.create(&format!("/slow/{i}"), b("v")).await.unwrap();
    }
    let mut delivered = 0;
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(10), watch.next()).await {
            Ok(Some(Ok(_))) => delivered += 1,
            Ok(Some(Err(StoreError::WatchTooSlow { buffered }))) => {
                assert_eq!(buffered, 4);
                break;
            }
            other => panic!("expected the watch to end as too slow, got {other:?}"),
        }
    }
    assert!(delivered < 200, "only what was buffered is delivered");
    assert!(watch.next().await.is_none(), "an ended watch stays ended");
}

async fn invalid_keys_are_refused(kind: Kind) {
    let backend = kind.open().await;
    let store = &*backend.store;
    for key in ["", "/with\0nul"] {
        match store.create(key, b("v")).await {
            Err(StoreError::InvalidArgument(_)) => {}
            other => panic!("expected InvalidArgument for {key:?}, got {other:?}"),
        }
        assert!(matches!(
            store.get(key).await,
            Err(StoreError::InvalidArgument(_))
        ));
    }
}
