//! The single writer: group commit and compaction.
//!
//! One OS thread owns the write path. It takes the first waiting request, drains every other
//! request already queued (up to `max_batch`) and applies them all in one redb transaction with
//! one fsync, assigning consecutive revisions in arrival order. Each request is judged against
//! the state left by the ones before it in the batch, so a batch is exactly equivalent to
//! running its requests one by one. After the commit, events go to the hub and every caller
//! gets its answer. Under load the batches grow by themselves, which is where the throughput of
//! durable writes comes from; an idle store commits a lone write at once.
//!
//! Compaction runs on this thread too (redb has one writer at a time anyway), in chunks of
//! bounded size between write batches, so it never stalls writers for long.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use redb::{Database, Durability, ReadableTable, Table};
use tokio::sync::{mpsc, oneshot};

use super::codec::{self, LogEntry};
use super::hub::Hub;
use super::{CURRENT, INDEX, LOG, META, META_COMPACT_DONE, META_COMPACTED, META_REVISION};
use crate::error::{Result, StoreError};
use crate::types::{Deleted, Event, EventKind, KeyValue, Revision};

pub(super) enum WriteOp {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
}

pub(super) enum WriteOutcome {
    Put(KeyValue),
    Deleted(Deleted),
}

pub(super) enum Request {
    Write {
        op: WriteOp,
        reply: oneshot::Sender<Result<WriteOutcome>>,
    },
    Compact {
        revision: Revision,
        reply: oneshot::Sender<Result<()>>,
    },
}

pub(super) struct Writer {
    pub db: Arc<Database>,
    pub hub: Arc<Hub>,
    pub requests: mpsc::Receiver<Request>,
    pub revision: Revision,
    pub max_batch: usize,
    pub compaction_chunk: usize,
    pub compactions: VecDeque<(Revision, oneshot::Sender<Result<()>>)>,
}

type Reply = oneshot::Sender<Result<WriteOutcome>>;

impl Writer {
    pub(super) fn run(mut self) {
        loop {
            let first = if self.compactions.is_empty() {
                match self.requests.blocking_recv() {
                    Some(request) => Some(request),
                    None => return,
                }
            } else {
                self.requests.try_recv().ok()
            };
            let mut batch: Vec<(WriteOp, Reply)> = Vec::new();
            let mut next = first;
            while let Some(request) = next {
                match request {
                    Request::Write { op, reply } => batch.push((op, reply)),
                    Request::Compact { revision, reply } => {
                        self.compactions.push_back((revision, reply))
                    }
                }
                if batch.len() >= self.max_batch {
                    break;
                }
                next = self.requests.try_recv().ok();
            }
            if !batch.is_empty() {
                self.commit(batch);
            }
            self.compact_step();
        }
    }

    fn commit(&mut self, batch: Vec<(WriteOp, Reply)>) {
        let (ops, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        match self.apply(ops) {
            Ok((outcomes, events, revision)) => {
                if let Some(last) = events.last() {
                    debug_assert_eq!(last.revision(), revision);
                    self.revision = revision;
                    self.hub.publish(events.into(), revision);
                }
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Err(err) => {
                tracing::error!(error = %err, "datastore commit failed");
                let message = err.to_string();
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Storage(message.clone())));
                }
            }
        }
    }

    /// Applies the batch in one transaction. The outer error means nothing was committed.
    #[allow(clippy::type_complexity)]
    fn apply(
        &self,
        ops: Vec<WriteOp>,
    ) -> Result<(Vec<Result<WriteOutcome>>, Vec<Event>, Revision)> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let mut revision = self.revision;
        let mut outcomes = Vec::with_capacity(ops.len());
        let mut events = Vec::with_capacity(ops.len());
        {
            let mut tables = Tables {
                current: txn.open_table(CURRENT)?,
                log: txn.open_table(LOG)?,
                index: txn.open_table(INDEX)?,
            };
            for op in ops {
                match tables.apply(op, revision + 1)? {
                    Ok((result, event)) => {
                        revision += 1;
                        events.push(event);
                        outcomes.push(Ok(result));
                    }
                    Err(refused) => outcomes.push(Err(refused)),
                }
            }
            if !events.is_empty() {
                txn.open_table(META)?.insert(META_REVISION, revision)?;
            }
        }
        if events.is_empty() {
            txn.abort()?;
        } else {
            txn.commit()?;
        }
        Ok((outcomes, events, revision))
    }

    /// Runs one chunk of the oldest pending compaction, answering it when it is complete.
    fn compact_step(&mut self) {
        let Some((target, _)) = self.compactions.front() else {
            return;
        };
        let target = (*target).min(self.revision);
        match self.compact_chunk(target) {
            Ok(false) => {}
            Ok(true) => {
                let (_, reply) = self.compactions.pop_front().expect("front exists");
                let _ = reply.send(Ok(()));
            }
            Err(err) => {
                tracing::error!(error = %err, "datastore compaction failed");
                let (_, reply) = self.compactions.pop_front().expect("front exists");
                let _ = reply.send(Err(err));
            }
        }
    }

    /// Compacts up to `compaction_chunk` log entries towards `target`; true when done.
    ///
    /// For every key written in (done, target], only its newest version at or below `target`
    /// survives, and not even that if it is a delete. Reads at `target` or later, and watches
    /// from `target` on, are unaffected; anything older answers `Compacted`. The new compacted
    /// revision is recorded in the same transaction as the first removal, so no reader can see
    /// a partly compacted revision as readable.
    fn compact_chunk(&self, target: Revision) -> Result<bool> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(Durability::Immediate)
            .map_err(|e| StoreError::Storage(e.to_string()))?;
        let finished;
        {
            let mut meta = txn.open_table(META)?;
            let compacted = get_meta(&meta, META_COMPACTED)?;
            let done = get_meta(&meta, META_COMPACT_DONE)?;
            if target > compacted {
                meta.insert(META_COMPACTED, target)?;
            }
            let mut log = txn.open_table(LOG)?;
            let mut index = txn.open_table(INDEX)?;
            let mut chunk: Vec<(Revision, String)> = Vec::new();
            for entry in log.range(done + 1..=target)?.take(self.compaction_chunk) {
                let (rev, bytes) = entry?;
                let entry = codec::decode_log(rev.value(), bytes.value())?;
                chunk.push((rev.value(), entry.key));
            }
            finished = chunk.len() < self.compaction_chunk;
            for (rev, key) in &chunk {
                if log.get(*rev)?.is_some() {
                    compact_key(&mut log, &mut index, key, target)?;
                }
            }
            let new_done = if finished {
                target.max(done)
            } else {
                chunk.last().map_or(done, |(rev, _)| *rev)
            };
            meta.insert(META_COMPACT_DONE, new_done)?;
        }
        txn.commit()?;
        self.hub.set_compacted(target);
        Ok(finished)
    }
}

fn get_meta(meta: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64> {
    Ok(meta.get(name)?.map(|v| v.value()).unwrap_or(0))
}

/// Drops every version of `key` older than its newest version at or below `target`, and that
/// version too if it is a delete.
fn compact_key(
    log: &mut Table<u64, &[u8]>,
    index: &mut Table<(&str, u64), ()>,
    key: &str,
    target: Revision,
) -> Result<()> {
    let mut revisions: Vec<Revision> = Vec::new();
    for entry in index.range((key, 0)..=(key, target))? {
        revisions.push(entry?.0.value().1);
    }
    let Some(&newest) = revisions.last() else {
        return Ok(());
    };
    let newest_is_delete = match log.get(newest)? {
        Some(bytes) => codec::decode_log(newest, bytes.value())?.kind == EventKind::Delete,
        None => false,
    };
    let keep = if newest_is_delete {
        revisions.len()
    } else {
        revisions.len() - 1
    };
    for &rev in &revisions[..keep] {
        index.remove((key, rev))?;
        log.remove(rev)?;
    }
    Ok(())
}

struct Tables<'txn> {
    current: Table<'txn, &'static str, &'static [u8]>,
    log: Table<'txn, u64, &'static [u8]>,
    index: Table<'txn, (&'static str, u64), ()>,
}

impl Tables<'_> {
    /// Applies one operation at `revision` if its preconditions hold. The outer error is a
    /// storage failure (abort the batch); the inner one is the caller's answer.
    fn apply(&mut self, op: WriteOp, revision: Revision) -> Result<Result<(WriteOutcome, Event)>> {
        match op {
            WriteOp::Create { key, value } => {
                if let Some(current) = self.current(&key)? {
                    return Ok(Err(StoreError::AlreadyExists {
                        key,
                        current: Box::new(current),
                    }));
                }
                let kv = self.put(key, value, revision, revision, None)?;
                let event = Event {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev: None,
                };
                Ok(Ok((WriteOutcome::Put(kv), event)))
            }
            WriteOp::Update {
                key,
                value,
                expected,
            } => {
                let current = match self.checked_current(&key, Some(expected))? {
                    Ok(current) => current,
                    Err(err) => return Ok(Err(err)),
                };
                let kv = self.put(
                    key,
                    value,
                    current.create_revision,
                    revision,
                    Some(current.mod_revision),
                )?;
                let event = Event {
                    kind: EventKind::Put,
                    kv: kv.clone(),
                    prev: Some(current),
                };
                Ok(Ok((WriteOutcome::Put(kv), event)))
            }
            WriteOp::Delete { key, expected } => {
                let current = match self.checked_current(&key, expected)? {
                    Ok(current) => current,
                    Err(err) => return Ok(Err(err)),
                };
                self.current.remove(key.as_str())?;
                let entry =
                    codec::encode_log(EventKind::Delete, &key, 0, current.mod_revision, &[]);
                self.log.insert(revision, entry.as_slice())?;
                self.index.insert((key.as_str(), revision), ())?;
                let event = Event {
                    kind: EventKind::Delete,
                    kv: KeyValue {
                        key,
                        value: Bytes::new(),
                        create_revision: 0,
                        mod_revision: revision,
                    },
                    prev: Some(current.clone()),
                };
                let deleted = Deleted {
                    prev: current,
                    revision,
                };
                Ok(Ok((WriteOutcome::Deleted(deleted), event)))
            }
        }
    }

    fn current(&self, key: &str) -> Result<Option<KeyValue>> {
        match self.current.get(key)? {
            Some(bytes) => Ok(Some(codec::decode_current(key, bytes.value())?)),
            None => Ok(None),
        }
    }

    /// The current value of `key`, or the caller's error if it is missing or not at `expected`.
    fn checked_current(&self, key: &str, expected: Option<Revision>) -> Result<Result<KeyValue>> {
        let Some(current) = self.current(key)? else {
            return Ok(Err(StoreError::NotFound {
                key: key.to_owned(),
            }));
        };
        match expected {
            Some(expected) if expected != current.mod_revision => Ok(Err(StoreError::Conflict {
                key: key.to_owned(),
                expected,
                current: Box::new(current),
            })),
            _ => Ok(Ok(current)),
        }
    }

    fn put(
        &mut self,
        key: String,
        value: Bytes,
        create_revision: Revision,
        revision: Revision,
        prev_revision: Option<Revision>,
    ) -> Result<KeyValue> {
        let record = codec::encode_current(create_revision, revision, &value);
        self.current.insert(key.as_str(), record.as_slice())?;
        let entry = codec::encode_log(
            EventKind::Put,
            &key,
            create_revision,
            prev_revision.unwrap_or(0),
            &value,
        );
        self.log.insert(revision, entry.as_slice())?;
        self.index.insert((key.as_str(), revision), ())?;
        Ok(KeyValue {
            key,
            value,
            create_revision,
            mod_revision: revision,
        })
    }
}

/// Rebuilds the event for the log entry at `revision`, with its previous version when that
/// is still in the log (it always is for revisions after the compacted one).
pub(super) fn event_from_log(
    log: &impl ReadableTable<u64, &'static [u8]>,
    revision: Revision,
    entry: LogEntry,
) -> Result<Event> {
    let prev = if entry.prev_revision == 0 {
        None
    } else {
        match log.get(entry.prev_revision)? {
            Some(bytes) => {
                let prev = codec::decode_log(entry.prev_revision, bytes.value())?;
                Some(KeyValue {
                    key: entry.key.clone(),
                    value: prev.value,
                    create_revision: prev.create_revision,
                    mod_revision: entry.prev_revision,
                })
            }
            None => None,
        }
    };
    let kv = match entry.kind {
        EventKind::Put => KeyValue {
            key: entry.key,
            value: entry.value,
            create_revision: entry.create_revision,
            mod_revision: revision,
        },
        EventKind::Delete => KeyValue {
            key: entry.key,
            value: Bytes::new(),
            create_revision: 0,
            mod_revision: revision,
        },
    };
    Ok(Event {
        kind: entry.kind,
        kv,
        prev,
    })
}
