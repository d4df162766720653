//! Backends for the store's integration tests: each test gets a fresh store of either kind.
#![allow(dead_code)] // each test binary uses a different part of this

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use skiff_store::{
    DatastoreConfig, EmbeddedOptions, EmbeddedStore, EtcdConfig, Event, Revision, Store,
    WatchStream,
};
use skiff_testkit::EtcdServer;
use tempfile::TempDir;

/// A fresh store and whatever keeps it alive.
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub dir: Option<TempDir>,
    pub etcd: Option<EtcdServer>,
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Embedded,
    Etcd,
}

impl Kind {
    pub async fn open(self) -> Backend {
        self.open_with_watch_buffer(skiff_store::DEFAULT_WATCH_BUFFER)
            .await
    }

    pub async fn open_with_watch_buffer(self, watch_buffer: usize) -> Backend {
        match self {
            Kind::Embedded => embedded_with(EmbeddedOptions {
                watch_buffer,
                ..Default::default()
            }),
            Kind::Etcd => {
                let etcd = EtcdServer::start().expect("start etcd");
                let mut config = EtcdConfig::new(&etcd.endpoint());
                config.watch_buffer = watch_buffer;
                let store = skiff_store::open(DatastoreConfig::Etcd(config))
                    .await
                    .expect("connect to etcd");
                Backend {
                    store,
                    dir: None,
                    etcd: Some(etcd),
                }
            }
        }
    }
}

/// An embedded store with non-default options.
pub fn embedded_with(options: EmbeddedOptions) -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open_with(dir.path().join("state.redb"), options)
        .expect("open embedded store");
    Backend {
        store: Arc::new(store),
        dir: Some(dir),
        etcd: None,
    }
}

pub fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The next event, failing the test after 10 s of silence.
pub async fn next_event(watch: &mut WatchStream) -> Event {
    match tokio::time::timeout(Duration::from_secs(10), watch.next()).await {
        Ok(Some(Ok(event))) => event,
        Ok(Some(Err(err))) => panic!("watch failed: {err}"),
        Ok(None) => panic!("watch ended"),
        Err(_) => panic!(
            "no event within 10 s (watch at revision {})",
            watch.revision()
        ),
    }
}

/// Every event until the watch has delivered `until` (inclusive).
pub async fn events_until(watch: &mut WatchStream, until: Revision) -> Vec<Event> {
    let mut events = Vec::new();
    while watch.revision() < until {
        events.push(next_event(watch).await);
    }
    events
}

/// Asserts nothing more arrives within a short while.
pub async fn assert_quiet(watch: &mut WatchStream) {
    if let Ok(item) = tokio::time::timeout(Duration::from_millis(200), watch.next()).await {
        panic!("expected no more events, got {item:?}");
    }
}
