//! Fan-out of committed writes to watchers, with a ring of recent batches so that a watch that
//! starts a little behind the newest revision (the usual list-then-watch) is served from memory.
//!
//! Invariant: for every registered watcher, every event with a revision above its `after` is
//! either already in its stream (backlog or channel) or will be offered by a later `publish`.
//! `register` establishes it under the same lock `publish` takes, which is what makes a watch
//! that starts between a range and a concurrent write neither miss nor repeat that write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::types::{Event, Revision, in_prefix};
use crate::watch::{self, Delivery, WatchSender, WatchStream};

pub(super) struct Hub {
    inner: Mutex<Inner>,
    watch_buffer: usize,
    ring_limit: usize,
    /// The newest compacted revision; watches may not start before it.
    compacted: AtomicU64,
    /// `Inner::published`, readable without the lock; stored after each publish has offered
    /// its events, which is what lets a stream report progress (`WatchStream::progress`).
    published: Arc<AtomicU64>,
}

struct Inner {
    watchers: Vec<Watcher>,
    /// Recent batches, oldest first; together they hold every event in (`floor`, `published`].
    ring: VecDeque<Arc<[Event]>>,
    ring_events: usize,
    floor: Revision,
    published: Revision,
}

struct Watcher {
    prefix: String,
    /// Every event up to this revision has been handed to the stream already.
    after: Revision,
    sender: WatchSender,
}

impl Hub {
    pub(super) fn new(
        revision: Revision,
        compacted: Revision,
        watch_buffer: usize,
        ring_limit: usize,
    ) -> Self {
        Hub {
            inner: Mutex::new(Inner {
                watchers: Vec::new(),
                ring: VecDeque::new(),
                ring_events: 0,
                floor: revision,
                published: revision,
            }),
            watch_buffer,
            ring_limit,
            compacted: AtomicU64::new(compacted),
            published: Arc::new(AtomicU64::new(revision)),
        }
    }

    pub(super) fn compacted(&self) -> Revision {
        self.compacted.load(Ordering::Acquire)
    }

    pub(super) fn set_compacted(&self, revision: Revision) {
        self.compacted.fetch_max(revision, Ordering::AcqRel);
    }

    /// Hands one commit's events (in revision order, ending at `revision`) to every interested
    /// watcher. Never blocks on a consumer: a full watcher is dropped (see [`crate::watch`]).
    pub(super) fn publish(&self, batch: Arc<[Event]>, revision: Revision) {
        let mut inner = self.inner.lock().expect("hub lock");
        inner.watchers.retain_mut(|w| {
            if revision <= w.after {
                return !w.sender.is_closed();
            }
            let wanted = batch
                .iter()
                .any(|e| e.revision() > w.after && in_prefix(&e.kv.key, &w.prefix));
            w.after = revision;
            if wanted {
                w.sender.offer(Ok(batch.clone())) == Delivery::Sent
            } else {
                !w.sender.is_closed()
            }
        });
        inner.ring_events += batch.len();
        inner.ring.push_back(batch);
        while inner.ring_events > self.ring_limit && inner.ring.len() > 1 {
            let old = inner.ring.pop_front().expect("non-empty ring");
            inner.ring_events -= old.len();
            inner.floor = old.last().map_or(inner.floor, Event::revision);
        }
        inner.published = revision;
        self.published.store(revision, Ordering::Release);
    }

    /// Registers a watch on `prefix` whose stream starts after `start`, given `backlog` (events
    /// in (`start`, `from`] already read from disk). Succeeds when the ring covers everything
    /// after `from`; otherwise gives the backlog back so the caller can read further from disk.
    pub(super) fn register(
        &self,
        prefix: &str,
        start: Revision,
        from: Revision,
        mut backlog: Vec<Event>,
    ) -> Result<WatchStream, Vec<Event>> {
        let mut inner = self.inner.lock().expect("hub lock");
        if from < inner.floor {
            return Err(backlog);
        }
        for batch in &inner.ring {
            backlog.extend(
                batch
                    .iter()
                    .filter(|e| e.revision() > from && in_prefix(&e.kv.key, prefix))
                    .cloned(),
            );
        }
        let (sender, stream) = watch::channel(prefix, start, backlog, self.watch_buffer);
        let stream = stream.with_published(self.published.clone());
        let after = from.max(inner.published);
        inner.watchers.push(Watcher {
            prefix: prefix.to_owned(),
            after,
            sender,
        });
        Ok(stream)
    }

    /// The number of live watchers (for metrics and tests).
    pub(super) fn watcher_count(&self) -> usize {
        let mut inner = self.inner.lock().expect("hub lock");
        inner.watchers.retain(|w| !w.sender.is_closed());
        inner.watchers.len()
    }
}
