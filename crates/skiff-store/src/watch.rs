//! The watch stream both backends hand out, and the bounded sending side they feed it through.
//!
//! Events travel in batches (`Arc<[Event]>`): the embedded backend sends every watcher the same
//! batch for one group commit, so publishing costs one reference-count increment per watcher,
//! and each stream picks out the events under its own prefix on the consumer's task.
//!
//! Each stream's channel is bounded. A producer never waits on a consumer: when the channel is
//! full the watcher is dropped and its stream ends with [`StoreError::WatchTooSlow`] once the
//! consumer has drained what was buffered. Memory per watcher is therefore bounded, and the
//! consumer learns it must re-list, exactly as a Kubernetes client does after a watch ends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::mpsc;

use crate::error::{Result, StoreError};
use crate::types::{Event, Revision, in_prefix};

/// Default number of batches a watcher may have buffered before it is ended as too slow.
pub const DEFAULT_WATCH_BUFFER: usize = 1024;

pub(crate) type WatchMessage = Result<Arc<[Event]>>;

#[derive(Default)]
struct Shared {
    overflowed: AtomicBool,
}

/// What happened to a message offered to a watcher.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Sent,
    /// The consumer is gone or fell behind; the producer should forget this watcher.
    Dropped,
}

/// The producer's half of one watch.
pub(crate) struct WatchSender {
    tx: mpsc::Sender<WatchMessage>,
    shared: Arc<Shared>,
}

impl WatchSender {
    /// Offers a message without waiting. A full channel marks the watch as overflowed.
    pub(crate) fn offer(&self, message: WatchMessage) -> Delivery {
        match self.tx.try_send(message) {
            Ok(()) => Delivery::Sent,
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.shared.overflowed.store(true, Ordering::Release);
                Delivery::Dropped
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Dropped,
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// Every committed change under a prefix after a start revision, in revision order, each once.
///
/// Ends with `None` when the store shuts down, or with one error (compacted, too slow,
/// backend failure) after which it yields `None`.
pub struct WatchStream {
    prefix: String,
    delivered: Revision,
    backlog: VecDeque<Event>,
    batch: Option<(Arc<[Event]>, usize)>,
    rx: mpsc::Receiver<WatchMessage>,
    shared: Arc<Shared>,
    buffer: usize,
    ended: bool,
    /// The backend's newest revision whose events have been offered to every watcher, if the
    /// backend tracks one (see [`WatchStream::progress`]).
    published: Option<Arc<AtomicU64>>,
    /// Asks the backend to confirm its progress (etcd's progress request); the answer shows
    /// in [`WatchStream::progress`].
    progress_requests: Option<Arc<tokio::sync::Notify>>,
    /// Dropped with the stream: lets a backend tie a task's life to the consumer's interest.
    _guard: Option<Box<dyn Send + Sync>>,
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream")
            .field("prefix", &self.prefix)
            .field("delivered", &self.delivered)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

/// Makes a connected sender and stream. `after` is the revision the watch starts after;
/// `backlog` holds already-read events (under `prefix`, after `after`) to deliver first.
pub(crate) fn channel(
    prefix: &str,
    after: Revision,
    backlog: Vec<Event>,
    buffer: usize,
) -> (WatchSender, WatchStream) {
    let (tx, rx) = mpsc::channel(buffer.max(1));
    let shared = Arc::new(Shared::default());
    let sender = WatchSender {
        tx,
        shared: shared.clone(),
    };
    let stream = WatchStream {
        prefix: prefix.to_owned(),
        delivered: after,
        backlog: backlog.into(),
        batch: None,
        rx,
        shared,
        buffer,
        ended: false,
        published: None,
        progress_requests: None,
        _guard: None,
    };
    (sender, stream)
}

impl WatchStream {
    pub(crate) fn with_guard(mut self, guard: impl Send + Sync + 'static) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    /// Lets [`WatchStream::progress`] report the backend's published revision. The backend
    /// must store a revision there only after offering that revision's events to watchers.
    pub(crate) fn with_published(mut self, published: Arc<AtomicU64>) -> Self {
        self.published = Some(published);
        self
    }

    /// Lets [`WatchStream::request_progress`] ask the backend for a progress report.
    pub(crate) fn with_progress_requests(mut self, requests: Arc<tokio::sync::Notify>) -> Self {
        self.progress_requests = Some(requests);
        self
    }

    /// Asks the backend to report how far this stream is complete, for backends that only
    /// know when asked (etcd); the report arrives in [`WatchStream::progress`] shortly after.
    pub fn request_progress(&self) {
        if let Some(r) = &self.progress_requests {
            r.notify_one();
        }
    }

    /// A revision this stream is complete up to, when it can tell: every event under its
    /// prefix with a revision at or below the answer has already been returned by
    /// [`WatchStream::next`]. `None` while events are still buffered, or when the backend
    /// has not reported progress yet (etcd reports it when asked, see
    /// [`WatchStream::request_progress`]). A cache fed by this stream uses it to know that it
    /// is as new as the store even when nothing under its prefix changed.
    pub fn progress(&mut self) -> Option<Revision> {
        // Read the published revision first: events up to it were queued before it was stored.
        let published = self.published.as_ref()?.load(Ordering::Acquire);
        if self.ended || !self.backlog.is_empty() || !self.rx.is_empty() {
            return None;
        }
        if let Some((batch, index)) = &self.batch
            && batch[*index..]
                .iter()
                .any(|e| e.revision() > self.delivered && in_prefix(&e.kv.key, &self.prefix))
        {
            return None;
        }
        Some(published.max(self.delivered))
    }

    /// The prefix this stream watches.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The revision of the last event delivered (or the start revision before any): a watch
    /// restarted after this revision continues without gaps or repeats.
    pub fn revision(&self) -> Revision {
        self.delivered
    }

    /// The next event, waiting for one if none is buffered.
    pub async fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(event) = self.take_buffered() {
                return Some(Ok(event));
            }
            match self.rx.recv().await {
                Some(Ok(batch)) => self.batch = Some((batch, 0)),
                Some(Err(err)) => {
                    self.ended = true;
                    return Some(Err(err));
                }
                None => {
                    self.ended = true;
                    if self.shared.overflowed.load(Ordering::Acquire) {
                        return Some(Err(StoreError::WatchTooSlow {
                            buffered: self.buffer,
                        }));
                    }
                    return None;
                }
            }
        }
    }

    /// The next event if one is already buffered, without waiting.
    fn take_buffered(&mut self) -> Option<Event> {
        while let Some(event) = self.backlog.pop_front() {
            if event.revision() > self.delivered {
                self.delivered = event.revision();
                return Some(event);
            }
        }
        if let Some((batch, index)) = &mut self.batch {
            while *index < batch.len() {
                let event = &batch[*index];
                *index += 1;
                if event.revision() > self.delivered && in_prefix(&event.kv.key, &self.prefix) {
                    self.delivered = event.revision();
                    return Some(event.clone());
                }
            }
            self.batch = None;
        }
        None
    }
}
