//! The embedded backend: one redb file in the server's data directory.
//!
//! Tables:
//! - `current`: key → newest version of each live key (create rev, mod rev, value); serves
//!   `get` and `range` at the newest revision.
//! - `log`: revision → the write made at that revision (kind, key, create rev, the revision it
//!   replaced, value); serves watches that start in the past and, with `index`, reads at older
//!   revisions.
//! - `index`: (key, revision) → (); every retained revision of each key.
//! - `meta`: schema version, newest revision, compacted revision, compaction progress.
//!
//! Writes go through one writer thread ([`writer`]) that batches concurrent writers into group
//! commits, each durable (fsync) before any caller hears of it. Reads run on redb read
//! transactions, which see a consistent snapshot and never wait on the writer.

mod codec;
mod hub;
mod writer;

use std::collections::VecDeque;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition,
};
use tokio::sync::{mpsc, oneshot};

use crate::Store;
use crate::error::{Result, StoreError};
use crate::types::{
    Deleted, EventKind, GetResult, INITIAL_REVISION, KeyValue, RangeRequest, RangeResult, Revision,
    in_prefix, validate_key,
};
use crate::watch::{DEFAULT_WATCH_BUFFER, WatchStream};
use hub::Hub;
use writer::{Request, WriteOp, WriteOutcome, Writer};

const CURRENT: TableDefinition<&str, &[u8]> = TableDefinition::new("current");
const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const INDEX: TableDefinition<(&str, u64), ()> = TableDefinition::new("index");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

const META_SCHEMA: &str = "schema";
const META_REVISION: &str = "revision";
const META_COMPACTED: &str = "compacted";
const META_COMPACT_DONE: &str = "compact_done";

/// The on-disk layout version this code reads and writes.
const SCHEMA_VERSION: u64 = 1;

/// Tuning knobs; the defaults suit a server.
#[derive(Clone, Debug)]
pub struct EmbeddedOptions {
    /// Batches a watcher may have buffered before it is ended as too slow.
    pub watch_buffer: usize,
    /// Recent events kept in memory for watches that start slightly in the past.
    pub recent_events: usize,
    /// Most writes in one group commit.
    pub max_batch: usize,
    /// Most log entries one compaction step handles before letting writes through.
    pub compaction_chunk: usize,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        EmbeddedOptions {
            watch_buffer: DEFAULT_WATCH_BUFFER,
            recent_events: 4096,
            max_batch: 1024,
            compaction_chunk: 10_000,
        }
    }
}

/// The embedded datastore. Cheap to clone; the file is closed when the last clone is dropped.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    db: Arc<Database>,
    hub: Arc<Hub>,
    // Field order matters: `requests` is dropped first, which stops the writer thread, and
    // `writer` then waits for it, so the file is closed when an `EmbeddedStore` is gone.
    requests: mpsc::Sender<Request>,
    _writer: WriterThread,
}

struct WriterThread(Option<JoinHandle<()>>);

impl Drop for WriterThread {
    fn drop(&mut self) {
        if let Some(handle) = self.0.take() {
            let _ = handle.join();
        }
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the datastore file at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, EmbeddedOptions::default())
    }

    pub fn open_with(path: impl AsRef<Path>, options: EmbeddedOptions) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Storage(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let db = open_database(&path)?;
        let (revision, compacted) = initialise(&db, &path)?;
        let db = Arc::new(db);
        let hub = Arc::new(Hub::new(
            revision,
            compacted,
            options.watch_buffer,
            options.recent_events,
        ));
        let (requests, receiver) = mpsc::channel(options.max_batch * 4);
        let writer = Writer {
            db: db.clone(),
            hub: hub.clone(),
            requests: receiver,
            revision,
            max_batch: options.max_batch.max(1),
            compaction_chunk: options.compaction_chunk.max(1),
            compactions: VecDeque::new(),
        };
        let handle = std::thread::Builder::new()
            .name("skiff-store-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| StoreError::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(EmbeddedStore {
            inner: Arc::new(Inner {
                path,
                db,
                hub,
                requests,
                _writer: WriterThread(Some(handle)),
            }),
        })
    }

    /// The data file's path.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Live watchers (for metrics and tests).
    pub fn watcher_count(&self) -> usize {
        self.inner.hub.watcher_count()
    }

    async fn write(&self, op: WriteOp) -> Result<WriteOutcome> {
        self.ask(|reply| Request::Write { op, reply }).await
    }

    /// Sends a request to the writer thread and waits for its answer.
    async fn ask<T>(
        &self,
        request: impl FnOnce(oneshot::Sender<Result<T>>) -> Request,
    ) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .requests
            .send(request(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs `read` on a read transaction off the async runtime.
    async fn read<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(ReadTransaction) -> Result<T> + Send + 'static,
    {
        let db = self.inner.db.clone();
        tokio::task::spawn_blocking(move || read(db.begin_read()?))
            .await
            .map_err(|e| StoreError::Storage(format!("read task failed: {e}")))?
    }
}

/// redb's page cache. Its default (1 GiB) would make the server's memory grow by every page
/// it ever wrote; reads of current objects are served from the API server's watch cache,
/// so a small cache costs little. 24 MiB holds the pages 10,000 pods are written to: beside
/// 32 MiB it created pods as fast (5,736/4,629 vs 5,609/4,136 per s, alternating runs) with
/// 10 MiB less resident; 16 MiB halved the create rate (writes then read their leaves back
/// from the file); 64 MiB cost 30 MiB more for nothing measurable.
const PAGE_CACHE_BYTES: usize = 24 * 1024 * 1024;

/// Opens the redb file, turning every way it can be unusable into one clear error.
fn open_database(path: &Path) -> Result<Database> {
    // redb reports damage as errors; the catch is a last line of defence so that a damaged
    // file can never take the server down with a panic instead of a message.
    let opened = std::panic::catch_unwind(|| {
        Database::builder()
            .set_cache_size(PAGE_CACHE_BYTES)
            .create(path)
    });
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    match opened {
        Ok(Ok(db)) => Ok(db),
        Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) => Err(StoreError::InUse {
            path: path.to_path_buf(),
        }),
        Ok(Err(redb::DatabaseError::Storage(redb::StorageError::Io(e))))
            if e.kind() != std::io::ErrorKind::UnexpectedEof
                && e.kind() != std::io::ErrorKind::InvalidData =>
        {
            Err(StoreError::Storage(format!(
                "cannot open {}: {e}",
                path.display()
            )))
        }
        Ok(Err(e)) => Err(corrupt(e.to_string())),
        Err(_) => Err(corrupt("the database engine could not read it".into())),
    }
}

/// Creates the tables of a new file, or checks an existing one is a skiff datastore this code
/// understands. Returns the newest and the compacted revision.
fn initialise(db: &Database, path: &Path) -> Result<(Revision, Revision)> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let txn = db.begin_write()?;
    let revision;
    let compacted;
    {
        let mut meta = txn
            .open_table(META)
            .map_err(|e| corrupt(format!("not a skiff datastore ({e})")))?;
        let current = txn
            .open_table(CURRENT)
            .map_err(|e| corrupt(format!("not a skiff datastore ({e})")))?;
        txn.open_table(LOG)
            .map_err(|e| corrupt(format!("not a skiff datastore ({e})")))?;
        txn.open_table(INDEX)
            .map_err(|e| corrupt(format!("not a skiff datastore ({e})")))?;
        let schema = meta.get(META_SCHEMA)?.map(|v| v.value());
        match schema {
            Some(SCHEMA_VERSION) => {
                revision = meta
                    .get(META_REVISION)?
                    .map(|v| v.value())
                    .ok_or_else(|| corrupt("its revision record is missing".into()))?;
                compacted = meta.get(META_COMPACTED)?.map_or(0, |v| v.value());
            }
            Some(other) => {
                return Err(corrupt(format!(
                    "it has layout version {other}, and this skiff reads version \
                     {SCHEMA_VERSION} (was it written by a newer skiff?)"
                )));
            }
            None if current.is_empty()? => {
                meta.insert(META_SCHEMA, SCHEMA_VERSION)?;
                meta.insert(META_REVISION, INITIAL_REVISION)?;
                meta.insert(META_COMPACTED, 0)?;
                meta.insert(META_COMPACT_DONE, 0)?;
                revision = INITIAL_REVISION;
                compacted = 0;
            }
            None => return Err(corrupt("its layout version record is missing".into())),
        }
    }
    txn.commit()?;
    Ok((revision, compacted))
}

fn meta_value(txn: &ReadTransaction, name: &str) -> Result<u64> {
    Ok(txn
        .open_table(META)?
        .get(name)?
        .map(|v| v.value())
        .unwrap_or(0))
}

/// Reads a range at the newest revision, from the `current` table.
fn range_current(txn: &ReadTransaction, request: &RangeRequest) -> Result<RangeResult> {
    let revision = meta_value(txn, META_REVISION)?;
    let table = txn.open_table(CURRENT)?;
    let start = match &request.continue_after {
        Some(after) => Bound::Excluded(after.as_str()),
        None => Bound::Included(request.prefix.as_str()),
    };
    let mut kvs = Vec::new();
    let mut more = false;
    for entry in table.range::<&str>((start, Bound::Unbounded))? {
        let (key, value) = entry?;
        if !in_prefix(key.value(), &request.prefix) {
            break;
        }
        if request.limit > 0 && kvs.len() == request.limit {
            more = true;
            break;
        }
        kvs.push(codec::decode_current(key.value(), value.value())?);
    }
    Ok(RangeResult {
        kvs,
        revision,
        more,
    })
}

/// Reads a range as of an older `revision`, from `index` and `log`.
fn range_at(
    txn: &ReadTransaction,
    request: &RangeRequest,
    revision: Revision,
) -> Result<RangeResult> {
    let index = txn.open_table(INDEX)?;
    let log = txn.open_table(LOG)?;
    let mut next: Bound<(String, u64)> = match &request.continue_after {
        Some(after) => Bound::Excluded((after.clone(), u64::MAX)),
        None => Bound::Included((request.prefix.clone(), 0)),
    };
    let mut kvs = Vec::new();
    let mut more = false;
    loop {
        let bound = match &next {
            Bound::Included((k, r)) => Bound::Included((k.as_str(), *r)),
            Bound::Excluded((k, r)) => Bound::Excluded((k.as_str(), *r)),
            Bound::Unbounded => Bound::Unbounded,
        };
        let Some(entry) = index.range((bound, Bound::Unbounded))?.next() else {
            break;
        };
        let key = entry?.0.value().0.to_owned();
        if !in_prefix(&key, &request.prefix) {
            break;
        }
        let newest = index
            .range((key.as_str(), 0)..=(key.as_str(), revision))?
            .next_back()
            .transpose()?
            .map(|(k, _)| k.value().1);
        if let Some(mod_revision) = newest {
            let bytes = log.get(mod_revision)?.ok_or_else(|| {
                StoreError::Storage(format!("log entry {mod_revision} of {key:?} is missing"))
            })?;
            let entry = codec::decode_log(mod_revision, bytes.value())?;
            if entry.kind == EventKind::Put {
                if request.limit > 0 && kvs.len() == request.limit {
                    more = true;
                    break;
                }
                kvs.push(KeyValue {
                    key: key.clone(),
                    value: entry.value,
                    create_revision: entry.create_revision,
                    mod_revision,
                });
            }
        }
        next = Bound::Excluded((key, u64::MAX));
    }
    Ok(RangeResult {
        kvs,
        revision,
        more,
    })
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &str) -> Result<GetResult> {
        validate_key(key)?;
        let key = key.to_owned();
        self.read(move |txn| {
            let revision = meta_value(&txn, META_REVISION)?;
            let table = txn.open_table(CURRENT)?;
            let kv = match table.get(key.as_str())? {
                Some(bytes) => Some(codec::decode_current(&key, bytes.value())?),
                None => None,
            };
            Ok(GetResult { kv, revision })
        })
        .await
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResult> {
        self.read(move |txn| {
            let current = meta_value(&txn, META_REVISION)?;
            match request.at_revision {
                None => range_current(&txn, &request),
                Some(at) if at == current => range_current(&txn, &request),
                Some(at) if at > current => Err(StoreError::FutureRevision {
                    requested: at,
                    current,
                }),
                Some(at) => {
                    let compacted = meta_value(&txn, META_COMPACTED)?;
                    if at < compacted {
                        return Err(StoreError::Compacted {
                            requested: at,
                            compacted: Some(compacted),
                        });
                    }
                    range_at(&txn, &request, at)
                }
            }
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        validate_key(key)?;
        let op = WriteOp::Create {
            key: key.to_owned(),
            value,
        };
        match self.write(op).await? {
            WriteOutcome::Put(kv) => Ok(kv),
            WriteOutcome::Deleted(_) => unreachable!("a create answers with a put"),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        validate_key(key)?;
        let op = WriteOp::Update {
            key: key.to_owned(),
            value,
            expected: expected_mod_revision,
        };
        match self.write(op).await? {
            WriteOutcome::Put(kv) => Ok(kv),
            WriteOutcome::Deleted(_) => unreachable!("an update answers with a put"),
        }
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        validate_key(key)?;
        let op = WriteOp::Delete {
            key: key.to_owned(),
            expected: expected_mod_revision,
        };
        match self.write(op).await? {
            WriteOutcome::Deleted(deleted) => Ok(deleted),
            WriteOutcome::Put(_) => unreachable!("a delete answers with a delete"),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let compacted = self.inner.hub.compacted();
        if after_revision < compacted {
            return Err(StoreError::Compacted {
                requested: after_revision,
                compacted: Some(compacted),
            });
        }
        let mut backlog = Vec::new();
        let mut from = after_revision;
        loop {
            match self
                .inner
                .hub
                .register(prefix, after_revision, from, backlog)
            {
                Ok(stream) => return Ok(stream),
                Err(returned) => backlog = returned,
            }
            // Older than the in-memory ring: catch up from the log, then try again.
            let owned_prefix = prefix.to_owned();
            let (events, snapshot) = self
                .read(move |txn| {
                    let compacted = meta_value(&txn, META_COMPACTED)?;
                    if from < compacted {
                        return Err(StoreError::Compacted {
                            requested: from,
                            compacted: Some(compacted),
                        });
                    }
                    let snapshot = meta_value(&txn, META_REVISION)?;
                    let log = txn.open_table(LOG)?;
                    let mut events = Vec::new();
                    for entry in log.range(from + 1..=snapshot)? {
                        let (rev, bytes) = entry?;
                        let entry = codec::decode_log(rev.value(), bytes.value())?;
                        if in_prefix(&entry.key, &owned_prefix) {
                            events.push(writer::event_from_log(&log, rev.value(), entry)?);
                        }
                    }
                    Ok((events, snapshot))
                })
                .await?;
            backlog.extend(events);
            from = snapshot;
        }
    }

    async fn current_revision(&self) -> Result<Revision> {
        self.read(|txn| meta_value(&txn, META_REVISION)).await
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let current = self.current_revision().await?;
        if revision > current {
            return Err(StoreError::FutureRevision {
                requested: revision,
                current,
            });
        }
        self.ask(|reply| Request::Compact { revision, reply }).await
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.inner.hub.compacted())
    }

    fn describe(&self) -> String {
        format!("embedded datastore at {}", self.inner.path.display())
    }
}

macro_rules! storage_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(e.to_string())
            }
        }
    )*};
}
storage_errors!(
    redb::Error,
    redb::StorageError,
    redb::TableError,
    redb::TransactionError,
    redb::CommitError
);
