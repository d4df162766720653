//! Values that cross the [`crate::Store`] trait.

use bytes::Bytes;

/// The store's revision: one total order over every write. Kubernetes' `resourceVersion` is
/// this number. A fresh store is at revision 1, so the first write is revision 2 (as in etcd);
/// revision 0 never names a write, which keeps the API's `resourceVersion=0` ("any") unambiguous.
pub type Revision = u64;

/// The revision of a store that has never been written.
pub const INITIAL_REVISION: Revision = 1;

/// A key with its value and the revisions that created and last modified it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    /// Revision of the write that created the key (the first write after its last delete).
    pub create_revision: Revision,
    /// Revision of the write that last modified the key.
    pub mod_revision: Revision,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A create or an update. `prev` is `None` exactly when it is a create.
    Put,
    /// A delete. `kv` holds the key, the delete's revision and an empty value; `prev` holds the
    /// value that was deleted.
    Delete,
}

/// One committed write, as a watcher sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
    pub prev: Option<KeyValue>,
}

impl Event {
    /// The revision of the write this event describes.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }

    pub fn is_create(&self) -> bool {
        self.kind == EventKind::Put && self.prev.is_none()
    }
}

/// The answer to [`crate::Store::get`]: the value, if any, and the revision it was read at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GetResult {
    pub kv: Option<KeyValue>,
    pub revision: Revision,
}

/// A range read over every key starting with `prefix`, in key order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: String,
    /// At most this many keys; 0 means no limit.
    pub limit: usize,
    /// Start strictly after this key (the last key of the previous page).
    pub continue_after: Option<String>,
    /// Read the state as of this revision instead of the newest. Pages after the first pass the
    /// first page's revision here, so a paginated list is one consistent snapshot.
    pub at_revision: Option<Revision>,
}

impl RangeRequest {
    pub fn prefix(prefix: impl Into<String>) -> Self {
        RangeRequest {
            prefix: prefix.into(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeResult {
    pub kvs: Vec<KeyValue>,
    /// The revision the range was read at.
    pub revision: Revision,
    /// Whether keys beyond `limit` remain; the next page continues after the last key here.
    pub more: bool,
}

/// The answer to a successful [`crate::Store::delete`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deleted {
    /// The value that was deleted.
    pub prev: KeyValue,
    /// The revision of the delete.
    pub revision: Revision,
}

/// Whether `key` lies in the range named by `prefix`.
pub(crate) fn in_prefix(key: &str, prefix: &str) -> bool {
    key.starts_with(prefix)
}

pub(crate) fn validate_key(key: &str) -> crate::Result<()> {
    if key.is_empty() {
        return Err(crate::StoreError::InvalidArgument("empty key".into()));
    }
    if key.contains('\0') {
        return Err(crate::StoreError::InvalidArgument(format!(
            "key {key:?} contains a NUL byte"
        )));
    }
    Ok(())
}
