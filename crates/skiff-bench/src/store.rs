//! Datastore scenarios: the same workload against the embedded store and a real etcd, side by
//! side in one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::ValueEnum;
use skiff_store::{DatastoreConfig, EtcdConfig, RangeRequest, Revision, Store};
use skiff_testkit::EtcdServer;
use tempfile::TempDir;

use crate::fields;
use crate::stats::{Latencies, emit, round};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    Embedded,
    Etcd,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Etcd => "etcd",
        }
    }
}

/// A fresh, empty store and whatever keeps it alive (its directory or its etcd process).
struct Fresh {
    store: Arc<dyn Store>,
    _dir: Option<TempDir>,
    _etcd: Option<EtcdServer>,
}

async fn fresh(backend: Backend) -> Result<Fresh> {
    Ok(match backend {
        Backend::Embedded => {
            let dir = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
            let config = DatastoreConfig::embedded(dir.path().join("state.redb"));
            Fresh {
                store: skiff_store::open(config).await?,
                _dir: Some(dir),
                _etcd: None,
            }
        }
        Backend::Etcd => {
            let etcd = EtcdServer::start().context("starting etcd for the benchmark")?;
            let config = DatastoreConfig::Etcd(EtcdConfig::new(&etcd.endpoint()));
            Fresh {
                store: skiff_store::open(config).await?,
                _dir: None,
                _etcd: Some(etcd),
            }
        }
    })
}

/// Creates `count` keys `{prefix}{i:08}` with `value` from `concurrency` tasks; returns each
/// create's latency and the wall time.
async fn create_many(
    store: &Arc<dyn Store>,
    prefix: &str,
    count: usize,
    concurrency: usize,
    value: Bytes,
) -> Result<(Latencies, Duration)> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (store, next, value) = (store.clone(), next.clone(), value.clone());
            let prefix = prefix.to_owned();
            tokio::spawn(async move {
                let mut latencies = Latencies::with_capacity(count / concurrency + 1);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= count {
                        return Ok::<_, skiff_store::StoreError>(latencies);
                    }
                    let t = Instant::now();
                    store
                        .create(&format!("{prefix}{i:08}"), value.clone())
                        .await?;
                    latencies.push(t.elapsed());
                }
            })
        })
        .collect();
    let mut all = Latencies::with_capacity(count);
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all, started.elapsed()))
}

/// Durable creates: writes/s and latency percentiles at one concurrency.
pub async fn write(
    backend: Backend,
    count: usize,
    concurrency: usize,
    value_size: usize,
) -> Result<()> {
    let fresh = fresh(backend).await?;
    let value = Bytes::from(vec![b'x'; value_size]);
    let (mut latencies, elapsed) =
        create_many(&fresh.store, "/bench/write/", count, concurrency, value).await?;
    let mut out = fields![
        "backend" => backend.name(),
        "concurrency" => concurrency,
        "count" => count,
        "value_bytes" => value_size,
        "writes_per_sec" => round(count as f64 / elapsed.as_secs_f64()),
        "elapsed_s" => round(elapsed.as_secs_f64()),
    ];
    out.extend(latencies.summary(""));
    emit("store-write", out);
    Ok(())
}

/// A range over `keys` keys: the whole prefix at once, and paged 500 at a time.
pub async fn range(
    backend: Backend,
    keys: usize,
    value_size: usize,
    iterations: usize,
) -> Result<()> {
    let fresh = fresh(backend).await?;
    let value = Bytes::from(vec![b'x'; value_size]);
    create_many(&fresh.store, "/bench/range/", keys, 64, value).await?;
    let mut whole = Latencies::default();
    let mut paged = Latencies::default();
    for _ in 0..iterations {
        let t = Instant::now();
        let result = fresh
            .store
            .range(RangeRequest::prefix("/bench/range/"))
            .await?;
        whole.push(t.elapsed());
        if result.kvs.len() != keys {
            bail!("range returned {} keys, expected {keys}", result.kvs.len());
        }
        let t = Instant::now();
        let mut request = RangeRequest {
            prefix: "/bench/range/".into(),
            limit: 500,
            ..Default::default()
        };
        let mut seen = 0;
        loop {
            let page = fresh.store.range(request.clone()).await?;
            seen += page.kvs.len();
            if !page.more {
                break;
            }
            request.at_revision = Some(page.revision);
            request.continue_after = page.kvs.last().map(|kv| kv.key.clone());
        }
        paged.push(t.elapsed());
        if seen != keys {
            bail!("paged range returned {seen} keys, expected {keys}");
        }
    }
    let mut out = fields![
        "backend" => backend.name(),
        "keys" => keys,
        "value_bytes" => value_size,
        "iterations" => iterations,
    ];
    out.extend(whole.summary("whole_"));
    out.extend(paged.summary("paged500_"));
    emit("store-range", out);
    Ok(())
}

/// Delivery latency of `events` writes to `watchers` watchers of one prefix.
///
/// Two figures per delivery: from the moment the write was submitted (includes the durable
/// commit), and from the moment the writer got its acknowledgement (the notification lag
/// after commit; a delivery that beats the acknowledgement counts as zero).
pub async fn watch(
    backend: Backend,
    watchers: usize,
    events: usize,
    value_size: usize,
) -> Result<()> {
    let fresh = fresh(backend).await?;
    let store = fresh.store.clone();
    let start = store.current_revision().await?;
    let mut receivers = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let mut watch = store.watch("/bench/watch/", start).await?;
        receivers.push(tokio::spawn(async move {
            let mut received: Vec<(Revision, Instant)> = Vec::with_capacity(events);
            while received.len() < events {
                match watch.next().await {
                    Some(Ok(event)) => received.push((event.revision(), Instant::now())),
                    Some(Err(err)) => return Err(anyhow::Error::from(err)),
                    None => bail!("watch ended early"),
                }
            }
            Ok(received)
        }));
    }
    // Submission and acknowledgement times of each write, by revision.
    let mut sent: Vec<(Revision, Instant, Instant)> = Vec::with_capacity(events);
    let value = Bytes::from(vec![b'x'; value_size]);
    for i in 0..events {
        let t = Instant::now();
        let kv = store
            .create(&format!("/bench/watch/{i:08}"), value.clone())
            .await?;
        sent.push((kv.mod_revision, t, Instant::now()));
    }
    let by_revision: std::collections::HashMap<Revision, (Instant, Instant)> =
        sent.iter().map(|(r, s, a)| (*r, (*s, *a))).collect();
    let mut from_write = Latencies::with_capacity(watchers * events);
    let mut after_ack = Latencies::with_capacity(watchers * events);
    for receiver in receivers {
        let received = tokio::time::timeout(Duration::from_secs(120), receiver)
            .await
            .context("watchers did not receive every event within 120 s")???;
        for (revision, at) in received {
            let (submitted, acked) = by_revision[&revision];
            from_write.push(at.saturating_duration_since(submitted));
            after_ack.push(at.saturating_duration_since(acked));
        }
    }
    let mut out = fields![
        "backend" => backend.name(),
        "watchers" => watchers,
        "events" => events,
        "deliveries" => from_write.len(),
    ];
    out.extend(from_write.summary("from_write_"));
    out.extend(after_ack.summary("after_ack_"));
    emit("store-watch", out);
    Ok(())
}

/// How long one fsync'd 1 KiB write to a file takes on this disk: the floor under every
/// durable write, printed beside the store figures.
pub fn fsync_floor(iterations: usize) -> Result<()> {
    use std::io::Write;
    let dir = tempfile::Builder::new().prefix("skiff-bench-").tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("fsync"))?;
    let block = vec![b'x'; 1024];
    let mut latencies = Latencies::with_capacity(iterations);
    for _ in 0..iterations {
        let t = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        latencies.push(t.elapsed());
    }
    let p50 = latencies.quantile_ms(0.5);
    let mut out = fields![
        "iterations" => iterations,
        "fsyncs_per_sec" => round(1000.0 / p50),
    ];
    out.extend(latencies.summary(""));
    emit("fsync-floor", out);
    Ok(())
}
