//! A de-duplicating work queue of keys, as client-go's: a key waits at most once; a key
//! added while a worker holds it is handed out again once that worker is done (never to two
//! workers at once); failures come back with per-key exponential backoff. A key has at most
//! one timer waiting (the soonest asked for), so syncs that each ask to be looked at again
//! later do not pile up timers.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

const BACKOFF_BASE: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    queue: VecDeque<String>,
    queued: HashSet<String>,
    processing: HashSet<String>,
    dirty: HashSet<String>,
    failures: HashMap<String, u32>,
    /// The one pending timer of each key that has one: when it fires.
    timers: HashMap<String, tokio::time::Instant>,
}

#[derive(Clone, Default)]
pub struct WorkQueue {
    state: Arc<Mutex<State>>,
    notify: Arc<Notify>,
}

impl WorkQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::lock(&self.state)
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut s = self.lock();
        if s.processing.contains(&key) {
            s.dirty.insert(key);
            return;
        }
        if s.queued.insert(key.clone()) {
            s.queue.push_back(key);
            drop(s);
            self.notify.notify_one();
        }
    }

    /// Adds `key` after `delay` (a timer; the key is not held meanwhile). A sooner timer of
    /// the key already waiting serves instead; a later one is superseded.
    pub fn add_after(&self, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        if delay.is_zero() {
            return self.add(key);
        }
        let at = tokio::time::Instant::now() + delay;
        {
            let mut s = self.lock();
            if s.timers.get(&key).is_some_and(|pending| *pending <= at) {
                return;
            }
            s.timers.insert(key.clone(), at);
        }
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(at).await;
            let current = {
                let mut s = queue.lock();
                let current = s.timers.get(&key) == Some(&at);
                if current {
                    s.timers.remove(&key);
                }
                current
            };
            if current {
                queue.add(key);
            }
        });
    }

    /// Adds `key` after a delay that doubles with each consecutive failure of it.
    pub fn add_rate_limited(&self, key: &str) {
        let n = {
            let mut s = self.lock();
            let n = s.failures.entry(key.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        let delay = BACKOFF_BASE
            .saturating_mul(1u32 << n.min(20))
            .min(BACKOFF_MAX);
        self.add_after(key, delay);
    }

    /// Forgets the failures of `key` (it synced).
    pub fn forget(&self, key: &str) {
        self.lock().failures.remove(key);
    }

    /// The next key to work on; call `done` with it afterwards.
    pub async fn next(&self) -> String {
        loop {
            {
                let mut s = self.lock();
                if let Some(key) = s.queue.pop_front() {
                    s.queued.remove(&key);
                    s.processing.insert(key.clone());
                    if !s.queue.is_empty() {
                        // More waiting: make sure another worker wakes for it.
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            self.notify.notified().await;
        }
    }

    pub fn done(&self, key: &str) {
        let requeue = {
            let mut s = self.lock();
            s.processing.remove(key);
            s.dirty.remove(key)
        };
        if requeue {
            self.add(key);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Runs `workers` loops that take keys and sync them: `Ok(Some(d))` looks again after
    /// `d`, `Ok(None)` is done, an error retries with backoff. Never returns.
    pub async fn run_workers<F, Fut, E>(&self, workers: usize, sync: F)
    where
        F: Fn(String) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<Option<Duration>, E>> + Send,
        E: std::fmt::Display + Send,
    {
        let mut tasks = Vec::new();
        for _ in 0..workers.max(1) {
            let queue = self.clone();
            let sync = sync.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let key = queue.next().await;
                    match sync(key.clone()).await {
                        Ok(again) => {
                            queue.forget(&key);
                            if let Some(delay) = again {
                                queue.add_after(key.clone(), delay);
                            }
                        }
                        Err(e) => {
                            tracing::debug!(%key, error = %e, "sync failed, retrying");
                            queue.add_rate_limited(&key);
                        }
                    }
                    queue.done(&key);
                }
            }));
        }
        futures_util::future::join_all(tasks).await;
    }
}

/// A controller's sync of one key, for `WorkQueue::run_reconciler`.
pub trait Reconcile: Send + Sync + 'static {
    type Error: std::fmt::Display + Send;

    /// Brings one key's object to its desired state; `Ok(Some(d))` looks again after `d`.
    fn reconcile(
        &self,
        key: &str,
    ) -> impl Future<Output = Result<Option<Duration>, Self::Error>> + Send;
}

impl WorkQueue {
    /// `run_workers` for a reconciler.
    pub async fn run_reconciler<R: Reconcile>(&self, workers: usize, reconciler: Arc<R>) {
        self.run_workers(workers, move |key| {
            let r = reconciler.clone();
            async move { r.reconcile(&key).await }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_key_is_queued_once() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        assert_eq!(q.next().await, "a");
        assert_eq!(q.next().await, "b");
    }

    #[tokio::test]
    async fn a_key_waits_on_one_timer_the_soonest() {
        let ms = Duration::from_millis;
        let q = WorkQueue::new();
        q.add_after("a", ms(800));
        q.add_after("a", ms(800));
        q.add_after("a", ms(100));
        q.add_after("a", ms(400));
        assert!(q.is_empty());
        assert_eq!(q.next().await, "a");
        q.done("a");
        tokio::time::sleep(ms(1000)).await;
        assert!(q.is_empty(), "the superseded timers add nothing");
        q.add_after("a", ms(50));
        tokio::time::sleep(ms(300)).await;
        assert_eq!(
            q.len(),
            1,
            "a timer asked for after the last one fired runs"
        );
    }

    #[tokio::test]
    async fn a_key_added_while_held_comes_back_after_done() {
        let q = WorkQueue::new();
        q.add("a");
        let k = q.next().await;
        q.add("a");
        assert!(q.is_empty(), "not handed to a second worker while held");
        q.done(&k);
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test]
    async fn a_waiting_worker_wakes_on_add() {
        let q = WorkQueue::new();
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.next().await });
        tokio::task::yield_now().await;
        q.add("x");
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(got, "x");
    }
}
