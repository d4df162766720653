//! skiff's datastore: a revisioned key-value store with watch.
//!
//! This is the only crate that holds cluster state, and the API server is its only user. The
//! [`Store`] trait carries exactly the etcd v3 semantics Kubernetes relies on:
//!
//! - one revision counter for the whole store, bumped by every write; each key carries the
//!   revision that created it and the one that last modified it;
//! - reads say which revision they saw, and can read an older revision (consistent pagination);
//! - create fails on an existing key, update and delete can be guarded by the expected mod
//!   revision and fail with the current value on a mismatch;
//! - a watch delivers every change after a given revision, in order, each exactly once, with
//!   the previous value; history older than the last compaction answers
//!   [`StoreError::Compacted`].
//!
//! Two backends pass one conformance suite (`tests/conformance.rs`): [`EmbeddedStore`] (redb,
//! the default) and [`EtcdStore`] (a real etcd cluster, for several servers sharing state).

mod compactor;
mod embedded;
mod error;
mod etcd;
mod types;
mod watch;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use compactor::{DEFAULT_COMPACTION_INTERVAL, spawn_compactor};
pub use embedded::{EmbeddedOptions, EmbeddedStore};
pub use error::{Result, StoreError};
pub use etcd::{EtcdConfig, EtcdStore};
pub use types::{
    Deleted, Event, EventKind, GetResult, INITIAL_REVISION, KeyValue, RangeRequest, RangeResult,
    Revision,
};
pub use watch::{DEFAULT_WATCH_BUFFER, WatchStream};

/// A revisioned key-value store with watch. Keys are non-empty strings without NUL bytes
/// (Kubernetes uses paths such as `/registry/pods/default/web-0`); values are opaque bytes.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current value of `key`, if any, and the revision it was read at.
    async fn get(&self, key: &str) -> Result<GetResult>;

    /// Keys under a prefix, in key order, at the newest revision or at `at_revision`.
    async fn range(&self, request: RangeRequest) -> Result<RangeResult>;

    /// Creates `key`; fails with [`StoreError::AlreadyExists`] if it exists.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces the value of `key` if its mod revision is still `expected_mod_revision`;
    /// otherwise fails with [`StoreError::Conflict`] carrying the current value, or
    /// [`StoreError::NotFound`].
    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue>;

    /// Deletes `key`, if its mod revision is `expected_mod_revision` when one is given.
    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted>;

    /// Every change under `prefix` with a revision greater than `after_revision`, in revision
    /// order, each exactly once. Watching after a range's revision sees every write the range
    /// did not. Fails with [`StoreError::Compacted`] if `after_revision` is older than the
    /// last compaction.
    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream>;

    /// The newest revision.
    async fn current_revision(&self) -> Result<Revision>;

    /// Discards history older than `revision`: reads and watches at or after it keep working.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision history was last compacted to, as far as this store knows (0: never):
    /// reads and watches older than it fail with [`StoreError::Compacted`]. The embedded
    /// store knows exactly; etcd's answer covers compactions made through this client, which
    /// with skiff's own compactor is all of them.
    async fn compacted_revision(&self) -> Result<Revision>;

    /// A short human description ("embedded redb at /var/lib/skiff/…", "etcd at …").
    fn describe(&self) -> String;
}

/// Which backend holds the cluster state, as the server's flags choose it.
#[derive(Clone, Debug)]
pub enum DatastoreConfig {
    /// A redb file (the server uses `<data-dir>/db/state.redb`).
    Embedded {
        path: PathBuf,
        options: EmbeddedOptions,
    },
    /// An etcd cluster (`--datastore-endpoint`).
    Etcd(EtcdConfig),
}

impl DatastoreConfig {
    /// The embedded store at `path` with default options.
    pub fn embedded(path: impl Into<PathBuf>) -> Self {
        DatastoreConfig::Embedded {
            path: path.into(),
            options: EmbeddedOptions::default(),
        }
    }
}

/// Opens the configured datastore.
pub async fn open(config: DatastoreConfig) -> Result<Arc<dyn Store>> {
    Ok(match config {
        DatastoreConfig::Embedded { path, options } => {
            let store =
                tokio::task::spawn_blocking(move || EmbeddedStore::open_with(path, options))
                    .await
                    .map_err(|e| StoreError::Storage(format!("open task failed: {e}")))??;
            Arc::new(store)
        }
        DatastoreConfig::Etcd(config) => Arc::new(EtcdStore::connect(config).await?),
    })
}
