//! The etcd backend: the same [`Store`] semantics on a real etcd v3 cluster (3.4 or newer), so
//! several `skiff server` processes can share one cluster state.
//!
//! Every key lives under `EtcdConfig::prefix` (`/registry` by default, as upstream), and
//! revisions, compaction and watches are etcd's own. Writes are etcd transactions that compare
//! the create or mod revision first, which is how upstream's storage layer does it too.
//!
//! While etcd is unreachable, calls retry with backoff for up to `EtcdConfig::retry_for`,
//! logging one warning when it goes away and one line when it is back; watches reconnect from
//! the last revision they delivered, so consumers see no gap.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    KvClient, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions,
};
use tokio::task::JoinHandle;
use tonic::Code;

use crate::Store;
use crate::error::{Result, StoreError};
use crate::types::{
    Deleted, Event, EventKind, GetResult, KeyValue, RangeRequest, RangeResult, Revision,
    validate_key,
};
use crate::watch::{self, DEFAULT_WATCH_BUFFER, Delivery, WatchSender, WatchStream};

/// How to reach etcd.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    /// `http://host:2379` or `https://host:2379`, one or more.
    pub endpoints: Vec<String>,
    /// Prepended to every key (upstream uses `/registry`).
    pub prefix: String,
    /// CA bundle that signed etcd's serving certificate (https endpoints).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key, when etcd requires client authentication.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// How long a call keeps retrying while etcd is unreachable before it fails.
    pub retry_for: Duration,
    /// Batches a watcher may have buffered before it is ended as too slow.
    pub watch_buffer: usize,
}

impl EtcdConfig {
    /// A configuration for a comma-separated endpoint list, as `--datastore-endpoint` takes it.
    pub fn new(endpoints: &str) -> Self {
        EtcdConfig {
            endpoints: endpoints
                .split(',')
                .map(str::trim)
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
            prefix: "/registry".into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            retry_for: Duration::from_secs(30),
            watch_buffer: DEFAULT_WATCH_BUFFER,
        }
    }
}

/// Largest response accepted from etcd. A list of every pod in a big cluster is one range
/// response, far past gRPC's 4 MiB default; upstream lifts the limit the same way.
const MAX_RESPONSE_BYTES: usize = i32::MAX as usize;

/// A datastore in etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdStore {
    kv: KvClient,
    watch: WatchClient,
    shared: Arc<Shared>,
}

struct Shared {
    config: EtcdConfig,
    endpoints: String,
    /// Set while etcd is unreachable, so the outage is logged once rather than per retry.
    unavailable: AtomicBool,
    /// The newest revision a compaction through this client reached (or found reached).
    compacted: std::sync::atomic::AtomicU64,
}

impl EtcdStore {
    /// Prepares a client. etcd need not be up yet: calls retry until it answers.
    pub async fn connect(config: EtcdConfig) -> Result<Self> {
        let endpoints = config.endpoints.join(",");
        if config.endpoints.is_empty() {
            return Err(StoreError::InvalidArgument(
                "no etcd endpoint given; pass --datastore-endpoint http://HOST:2379".into(),
            ));
        }
        if !config.prefix.starts_with('/') || config.prefix.ends_with('/') {
            return Err(StoreError::InvalidArgument(format!(
                "etcd key prefix {:?} must start with '/' and not end with one",
                config.prefix
            )));
        }
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if config.endpoints.iter().any(|e| e.starts_with("https://")) {
            options = options.with_tls(tls_options(&config)?);
        }
        let client = Client::connect(&config.endpoints, Some(options))
            .await
            .map_err(|e| StoreError::Etcd {
                endpoints: endpoints.clone(),
                message: e.to_string(),
            })?;
        Ok(EtcdStore {
            kv: client
                .kv_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            watch: client
                .watch_client()
                .max_decoding_message_size(MAX_RESPONSE_BYTES),
            shared: Arc::new(Shared {
                config,
                endpoints,
                unavailable: AtomicBool::new(false),
                compacted: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.shared.config.prefix)
    }

    fn error(&self, err: etcd_client::Error) -> StoreError {
        StoreError::Etcd {
            endpoints: self.shared.endpoints.clone(),
            message: err.to_string(),
        }
    }

    /// Runs `call` on a key-value client, retrying while etcd is unreachable.
    async fn retrying<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.retrying_on(&self.kv, call).await
    }

    /// Runs `call` on a clone of `client`, retrying while etcd is unreachable.
    async fn retrying_on<C, T, F, Fut>(&self, client: &C, mut call: F) -> Result<T>
    where
        C: Clone,
        F: FnMut(C) -> Fut,
        Fut: Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.shared.config.retry_for;
        let mut delay = Duration::from_millis(50);
        loop {
            match call(client.clone()).await {
                Ok(value) => {
                    self.shared.mark_available();
                    return Ok(value);
                }
                Err(err) if is_transient(&err) && Instant::now() < deadline => {
                    self.shared.mark_unavailable(&err);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(err) => return Err(self.error(err)),
            }
        }
    }

    async fn run_txn(&self, txn: Txn) -> Result<etcd_client::TxnResponse> {
        self.retrying(|mut client| {
            let txn = txn.clone();
            async move { client.txn(txn).await }
        })
        .await
    }

    fn to_kv(&self, kv: &etcd_client::KeyValue) -> KeyValue {
        KeyValue {
            key: self.strip(kv.key()),
            value: Bytes::copy_from_slice(kv.value()),
            create_revision: kv.create_revision() as Revision,
            mod_revision: kv.mod_revision() as Revision,
        }
    }

    fn strip(&self, key: &[u8]) -> String {
        let key = String::from_utf8_lossy(key);
        key.strip_prefix(self.shared.config.prefix.as_str())
            .unwrap_or(&key)
            .to_owned()
    }

    /// etcd's answer to a read or compaction at a revision it does not have, as a store error.
    async fn revision_error(&self, err: &StoreError, requested: Revision) -> Option<StoreError> {
        let StoreError::Etcd { message, .. } = err else {
            return None;
        };
        if message.contains("required revision has been compacted") {
            Some(StoreError::Compacted {
                requested,
                compacted: None,
            })
        } else if message.contains("required revision is a future revision") {
            Some(match self.current_revision().await {
                Ok(current) => StoreError::FutureRevision { requested, current },
                Err(err) => err,
            })
        } else {
            None
        }
    }

    /// Opens an etcd watch after `after`, waiting for etcd to confirm it.
    async fn open_watch(&self, prefix: &str, after: Revision) -> Result<etcd_client::WatchStream> {
        let key = self.full_key(prefix);
        // etcd accepts a watch from one revision before its compaction point, and reports an
        // older start only in a second message after "created". A count-only read at `after`
        // applies the store's rule (history must be readable at `after`) before watching.
        if after > 0 {
            let probe = GetOptions::new()
                .with_count_only()
                .with_revision(after as i64);
            let result = self
                .retrying(|mut client| {
                    let (key, probe) = (key.clone(), probe.clone());
                    async move { client.get(key, Some(probe)).await }
                })
                .await;
            if let Err(err) = result {
                return match self.revision_error(&err, after).await {
                    Some(StoreError::FutureRevision { .. }) => self.start_watch(&key, after).await,
                    Some(err) => Err(err),
                    None => Err(err),
                };
            }
        }
        self.start_watch(&key, after).await
    }

    async fn start_watch(&self, key: &str, after: Revision) -> Result<etcd_client::WatchStream> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(after as i64 + 1);
        let mut stream = self
            .retrying_on(&self.watch, |mut client| {
                let key = key.to_owned();
                let options = options.clone();
                async move { client.watch(key, Some(options)).await }
            })
            .await?;
        match stream.message().await {
            Ok(Some(created)) if created.canceled() => Err(cancelled(&created, after)),
            Ok(Some(_)) => Ok(stream),
            Ok(None) => Err(StoreError::Etcd {
                endpoints: self.shared.endpoints.clone(),
                message: "watch stream closed before it was created".into(),
            }),
            Err(err) => Err(self.error(err)),
        }
    }

    /// Feeds etcd's watch responses into `sender` until the consumer goes away, reconnecting
    /// from the last delivered revision whenever the connection to etcd breaks.
    async fn pump(
        self,
        prefix: String,
        mut after: Revision,
        mut stream: etcd_client::WatchStream,
        sender: WatchSender,
        progress: Progress,
    ) {
        loop {
            loop {
                let message = tokio::select! {
                    m = stream.message() => m,
                    _ = progress.requests.notified() => {
                        // Not fatal if it fails: the caller asks again or reads etcd instead.
                        let _ = stream.request_progress().await;
                        continue;
                    }
                };
                match message {
                    Ok(Some(response)) if response.canceled() => {
                        sender.offer(Err(cancelled(&response, after)));
                        return;
                    }
                    Ok(Some(response)) => {
                        let events: Vec<Event> =
                            response.events().iter().map(|e| self.to_event(e)).collect();
                        let Some(last) = events.last().map(Event::revision) else {
                            // A progress report: every event up to its revision was sent
                            // before it (and so offered before we record it).
                            let revision = header_revision(response.header());
                            progress.published.fetch_max(revision, Ordering::AcqRel);
                            continue;
                        };
                        after = last;
                        if sender.offer(Ok(events.into())) == Delivery::Dropped {
                            return;
                        }
                        progress.published.fetch_max(last, Ordering::AcqRel);
                    }
                    Ok(None) => break,
                    Err(err) if is_transient(&err) => {
                        self.shared.mark_unavailable(&err);
                        break;
                    }
                    Err(err) => {
                        sender.offer(Err(self.error(err)));
                        return;
                    }
                }
            }
            if sender.is_closed() {
                return;
            }
            stream = loop {
                match self.open_watch(&prefix, after).await {
                    Ok(stream) => break stream,
                    Err(err) if err.is_unavailable() => {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        if sender.is_closed() {
                            return;
                        }
                    }
                    Err(err) => {
                        sender.offer(Err(err));
                        return;
                    }
                }
            };
            tracing::info!(prefix, after, "etcd watch re-established");
        }
    }

    fn to_event(&self, event: &etcd_client::Event) -> Event {
        let kv = event.kv().map(|kv| self.to_kv(kv)).unwrap_or(KeyValue {
            key: String::new(),
            value: Bytes::new(),
            create_revision: 0,
            mod_revision: 0,
        });
        let prev = event.prev_kv().map(|kv| self.to_kv(kv));
        let kind = match event.event_type() {
            etcd_client::EventType::Put => EventKind::Put,
            etcd_client::EventType::Delete => EventKind::Delete,
        };
        Event { kind, kv, prev }
    }
}

impl Shared {
    fn mark_unavailable(&self, err: &etcd_client::Error) {
        if !self.unavailable.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                endpoints = %self.endpoints,
                error = %err,
                "etcd is unreachable; retrying until it answers (is etcd running?)"
            );
        }
    }

    fn mark_available(&self) {
        if self.unavailable.swap(false, Ordering::AcqRel) {
            tracing::info!(endpoints = %self.endpoints, "etcd is reachable again");
        }
    }
}

fn cancelled(response: &etcd_client::WatchResponse, after: Revision) -> StoreError {
    if response.compact_revision() > 0 {
        StoreError::Compacted {
            requested: after,
            compacted: Some(response.compact_revision() as Revision),
        }
    } else {
        StoreError::Etcd {
            endpoints: String::new(),
            message: format!("watch cancelled: {}", response.cancel_reason()),
        }
    }
}

/// Whether an error means etcd could not be reached (worth retrying) rather than an answer.
///
/// `Cancelled` is among them: this client never cancels a request it still awaits, so the
/// code only arrives when the connection closed under a request in flight (etcd killed or
/// restarting) or etcd itself aborted it while shutting down.
fn is_transient(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            matches!(
                status.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
            ) && !status.message().contains("mvcc:")
        }
        _ => false,
    }
}

fn tls_options(config: &EtcdConfig) -> Result<TlsOptions> {
    let read = |path: &PathBuf, what: &str| {
        std::fs::read(path).map_err(|e| {
            StoreError::InvalidArgument(format!(
                "cannot read the etcd {what} {}: {e}",
                path.display()
            ))
        })
    };
    let mut tls = TlsOptions::new();
    if let Some(ca) = &config.ca_file {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca, "CA file")?));
    }
    match (&config.cert_file, &config.key_file) {
        (Some(cert), Some(key)) => {
            tls = tls.identity(Identity::from_pem(
                read(cert, "certificate file")?,
                read(key, "key file")?,
            ));
        }
        (None, None) => {}
        _ => {
            return Err(StoreError::InvalidArgument(
                "an etcd client certificate needs both --datastore-certfile and \
                 --datastore-keyfile"
                    .into(),
            ));
        }
    }
    Ok(tls)
}

/// The first key after every key starting with `prefix` (etcd's range end for a prefix).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<GetResult> {
        validate_key(key)?;
        let full = self.full_key(key);
        let response = self
            .retrying(|mut client| {
                let full = full.clone();
                async move { client.get(full, None).await }
            })
            .await?;
        Ok(GetResult {
            kv: response.kvs().first().map(|kv| self.to_kv(kv)),
            revision: header_revision(response.header()),
        })
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResult> {
        let full_prefix = self.full_key(&request.prefix);
        let start = match &request.continue_after {
            Some(after) => format!("{}\0", self.full_key(after)),
            None => full_prefix.clone(),
        };
        let mut options = GetOptions::new()
            .with_range(prefix_end(&full_prefix))
            .with_limit(request.limit as i64);
        if let Some(at) = request.at_revision {
            options = options.with_revision(at as i64);
        }
        let result = self
            .retrying(|mut client| {
                let (start, options) = (start.clone(), options.clone());
                async move { client.get(start, Some(options)).await }
            })
            .await;
        let response = match (result, request.at_revision) {
            (Ok(response), _) => response,
            (Err(err), Some(at)) => return Err(self.revision_error(&err, at).await.unwrap_or(err)),
            (Err(err), None) => return Err(err),
        };
        Ok(RangeResult {
            kvs: response.kvs().iter().map(|kv| self.to_kv(kv)).collect(),
            revision: request
                .at_revision
                .unwrap_or_else(|| header_revision(response.header())),
            more: response.more(),
        })
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        validate_key(key)?;
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(full.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(full.clone(), value.to_vec(), None)])
            .or_else([TxnOp::get(full.clone(), None)]);
        let response = self.run_txn(txn).await?;
        let revision = header_revision(response.header());
        if response.succeeded() {
            return Ok(KeyValue {
                key: key.to_owned(),
                value,
                create_revision: revision,
                mod_revision: revision,
            });
        }
        match first_kv(&response.op_responses()) {
            Some(current) => Err(StoreError::AlreadyExists {
                key: key.to_owned(),
                current: Box::new(self.to_kv(&current)),
            }),
            // Deleted between the compare and the get of the same transaction cannot happen;
            // answer as etcd would on a retry.
            None => Err(StoreError::Etcd {
                endpoints: self.shared.endpoints.clone(),
                message: format!("create of {key:?} failed without a current value"),
            }),
        }
    }

    async fn update(
        &self,
        key: &str,
        value: Bytes,
        expected_mod_revision: Revision,
    ) -> Result<KeyValue> {
        validate_key(key)?;
        let full = self.full_key(key);
        let txn = Txn::new()
            .when([Compare::mod_revision(
                full.clone(),
                CompareOp::Equal,
                expected_mod_revision as i64,
            )])
            .and_then([
                TxnOp::put(full.clone(), value.to_vec(), None),
                TxnOp::get(full.clone(), None),
            ])
            .or_else([TxnOp::get(full.clone(), None)]);
        let response = self.run_txn(txn).await?;
        let current = first_kv(&response.op_responses()).map(|kv| self.to_kv(&kv));
        match (response.succeeded(), current) {
            (true, Some(kv)) => Ok(kv),
            (false, Some(current)) => Err(StoreError::Conflict {
                key: key.to_owned(),
                expected: expected_mod_revision,
                current: Box::new(current),
            }),
            (_, None) => Err(StoreError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    async fn delete(&self, key: &str, expected_mod_revision: Option<Revision>) -> Result<Deleted> {
        validate_key(key)?;
        let full = self.full_key(key);
        let compares: Vec<Compare> = expected_mod_revision
            .map(|rev| Compare::mod_revision(full.clone(), CompareOp::Equal, rev as i64))
            .into_iter()
            .collect();
        let txn = Txn::new()
            .when(compares)
            .and_then([TxnOp::delete(
                full.clone(),
                Some(DeleteOptions::new().with_prev_key()),
            )])
            .or_else([TxnOp::get(full.clone(), None)]);
        let response = self.run_txn(txn).await?;
        let revision = header_revision(response.header());
        let ops = response.op_responses();
        if response.succeeded() {
            let prev = ops.iter().find_map(|op| match op {
                TxnOpResponse::Delete(d) => d.prev_kvs().first().map(|kv| self.to_kv(kv)),
                _ => None,
            });
            return match prev {
                Some(prev) => Ok(Deleted { prev, revision }),
                None => Err(StoreError::NotFound {
                    key: key.to_owned(),
                }),
            };
        }
        match first_kv(&ops) {
            Some(current) => Err(StoreError::Conflict {
                key: key.to_owned(),
                expected: expected_mod_revision.unwrap_or_default(),
                current: Box::new(self.to_kv(&current)),
            }),
            None => Err(StoreError::NotFound {
                key: key.to_owned(),
            }),
        }
    }

    async fn watch(&self, prefix: &str, after_revision: Revision) -> Result<WatchStream> {
        let stream = self.open_watch(prefix, after_revision).await?;
        let (sender, watch) = watch::channel(
            prefix,
            after_revision,
            Vec::new(),
            self.shared.config.watch_buffer,
        );
        let progress = Progress {
            published: Arc::new(AtomicU64::new(after_revision)),
            requests: Arc::new(tokio::sync::Notify::new()),
        };
        let watch = watch
            .with_published(progress.published.clone())
            .with_progress_requests(progress.requests.clone());
        let task = tokio::spawn(self.clone().pump(
            prefix.to_owned(),
            after_revision,
            stream,
            sender,
            progress,
        ));
        Ok(watch.with_guard(AbortOnDrop(task)))
    }

    async fn current_revision(&self) -> Result<Revision> {
        let key = self.full_key("/");
        let response = self
            .retrying(|mut client| {
                let key = key.clone();
                async move {
                    client
                        .get(key, Some(GetOptions::new().with_count_only()))
                        .await
                }
            })
            .await?;
        Ok(header_revision(response.header()))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let result = self
            .retrying(|mut client| async move { client.compact(revision as i64, None).await })
            .await;
        let compacted = |at: Revision| {
            self.shared
                .compacted
                .fetch_max(at, std::sync::atomic::Ordering::AcqRel);
        };
        let Err(err) = result else {
            compacted(revision);
            return Ok(());
        };
        match self.revision_error(&err, revision).await {
            // Another server (or an earlier call) compacted this far already: nothing to do
            // but remember it (etcd does not say how far; at least this far).
            Some(StoreError::Compacted { .. }) => {
                compacted(revision);
                Ok(())
            }
            Some(err) => Err(err),
            None => Err(err),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self
            .shared
            .compacted
            .load(std::sync::atomic::Ordering::Acquire))
    }

    fn describe(&self) -> String {
        format!(
            "etcd at {} (keys under {})",
            self.shared.endpoints, self.shared.config.prefix
        )
    }
}

/// A watch's progress: the revision etcd has confirmed the stream complete up to, and the
/// consumer's requests for a new confirmation.
struct Progress {
    published: Arc<AtomicU64>,
    requests: Arc<tokio::sync::Notify>,
}

/// Stops the pump task when the consumer drops its stream.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Revision {
    header.map_or(0, |h| h.revision() as Revision)
}

/// The first key-value pair any get inside a transaction answered with.
fn first_kv(ops: &[TxnOpResponse]) -> Option<etcd_client::KeyValue> {
    ops.iter().find_map(|op| match op {
        TxnOpResponse::Get(get) => get.kvs().first().cloned(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    #[test]
    fn endpoints_parse_from_a_comma_list() {
        let config = EtcdConfig::new("http://127.0.0.1:2379, http://127.0.0.2:2379,");
        assert_eq!(
            config.endpoints,
            vec!["http://127.0.0.1:2379", "http://127.0.0.2:2379"]
        );
        assert_eq!(config.prefix, "/registry");
    }
}
