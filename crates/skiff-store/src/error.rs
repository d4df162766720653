//! The one error type every backend returns.
//!
//! The API server maps these onto Kubernetes `Status` codes: [`StoreError::AlreadyExists`] → 409
//! AlreadyExists, [`StoreError::NotFound`] → 404, [`StoreError::Conflict`] → 409 Conflict,
//! [`StoreError::Compacted`] → 410 Gone, [`StoreError::WatchTooSlow`] → the watch ends and the
//! client re-lists, and everything else → 500 with the message (or 503 while unavailable).

use std::path::PathBuf;

use crate::types::{KeyValue, Revision};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `create` of a key that exists; carries the current value.
    #[error("key {key:?} already exists")]
    AlreadyExists { key: String, current: Box<KeyValue> },

    /// `update` or `delete` of a key that does not exist.
    #[error("key {key:?} not found")]
    NotFound { key: String },

    /// A guarded `update` or `delete` whose expected mod revision is stale; carries the current
    /// value so the caller can retry without another read.
    #[error(
        "key {key:?} was modified: expected mod revision {expected}, current is {}",
        current.mod_revision
    )]
    Conflict {
        key: String,
        expected: Revision,
        current: Box<KeyValue>,
    },

    /// A read or watch at a revision older than the last compaction. `compacted` is the
    /// compaction's revision where the backend reports it (etcd does not on reads).
    #[error("revision {requested} has been compacted{}", oldest_available(*compacted))]
    Compacted {
        requested: Revision,
        compacted: Option<Revision>,
    },

    /// A read at a revision the store has not reached yet.
    #[error("revision {requested} is in the future; the current revision is {current}")]
    FutureRevision {
        requested: Revision,
        current: Revision,
    },

    /// A watch whose consumer did not keep up; it was ended instead of buffering without bound.
    /// The consumer should re-list and watch again from the list's revision.
    #[error("watch ended because its consumer fell more than {buffered} batches behind")]
    WatchTooSlow { buffered: usize },

    /// The embedded data file cannot be used.
    #[error(
        "datastore file {} cannot be opened: {reason}. Restore it from a backup, or move it \
         aside to start an empty cluster",
        path.display()
    )]
    Corrupt { path: PathBuf, reason: String },

    /// Another process holds the embedded data file.
    #[error(
        "datastore file {} is in use by another process; stop the other skiff server using this \
         data directory, or pass a different --data-dir",
        path.display()
    )]
    InUse { path: PathBuf },

    /// An I/O or engine failure in the embedded backend.
    #[error("datastore storage error: {0}")]
    Storage(String),

    /// etcd could not be reached or answered with an error.
    #[error("etcd at {endpoints}: {message}")]
    Etcd { endpoints: String, message: String },

    /// The caller passed something the store cannot hold (for example an empty key).
    #[error("invalid datastore request: {0}")]
    InvalidArgument(String),

    /// The store was shut down while the request was in flight.
    #[error("datastore is shut down")]
    Closed,
}

impl StoreError {
    /// Whether retrying the same request later may succeed (the store was unreachable or busy),
    /// as opposed to an answer about the data itself.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StoreError::Etcd { .. } | StoreError::Storage(_) | StoreError::Closed
        )
    }
}

fn oldest_available(compacted: Option<Revision>) -> String {
    compacted.map_or_else(String::new, |c| {
        format!("; the oldest available revision is {c}")
    })
}
