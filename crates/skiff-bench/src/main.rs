//! skiff's benchmark program. Each subcommand is one scenario (or a suite of them) and prints
//! one JSON object per result on stdout, with a readable copy on stderr. Baselines run in the
//! same invocation, side by side (for the datastore: the embedded store against a real etcd).
//!
//! Benchmarks print numbers; they never assert on time. Targets live in the issues and in
//! docs/ARCHITECTURE.md, and the figures go into the issue notes.

mod api;
mod check;
mod cluster;
mod crd;
mod network;
mod node;
mod registry;
mod stats;
mod store;

use anyhow::Result;
use clap::{Parser, Subcommand};

use store::Backend;

/// As the `skiff` binary: the scheduler this process runs should cost what it costs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "skiff-bench", about = "skiff benchmarks: JSON lines on stdout")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// The short version of every scenario, then one table: each figure beside the baseline
    /// measured in the same run, their ratio, the ratio recorded in docs/benchmarks.md, and
    /// the target. Run it before resolving an issue that touches a hot path. The node
    /// scenario runs only as root. Needs `cargo build --release -p skiff` first.
    Check {
        /// Leave out the node scenario (containers; root only).
        #[arg(long)]
        without_node: bool,
    },
    /// The API server over HTTPS (a `skiff server` process, embedded store): pod creates,
    /// lists as JSON and Table, RSS, watch delivery; then the datastore alone under the same
    /// load as the baseline. Needs `cargo build --release -p skiff` first.
    Api {
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 10)]
        lists: usize,
        #[arg(long, default_value_t = 1_000)]
        watchers: usize,
        #[arg(long, default_value_t = 100)]
        watch_events: usize,
    },
    /// Custom resources on the API server alone: creates of a custom object against
    /// ConfigMaps of the same size (alternating rounds), definition create → Established,
    /// memory per definition. Needs `cargo build --release -p skiff` first.
    Crd {
        #[arg(long, default_value_t = 8_000)]
        objects: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 100)]
        definitions: usize,
    },
    /// The control plane at scale: simulated nodes (a `skiff agent` process), direct
    /// bindings as the baseline, the scheduler on a backlog and on a stream of pods, and a
    /// Deployment created and rolled. Needs `cargo build --release -p skiff` first.
    Cluster {
        #[arg(long, default_value_t = 1_000)]
        nodes: usize,
        #[arg(long, default_value_t = 10_000)]
        pods: usize,
        #[arg(long, default_value_t = 1_000)]
        replicas: i32,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// The embedded registry: a blob pushed (monolithic and chunked) and pulled over
    /// loopback, against copying the same file on this disk; then an image pushed, pulled
    /// into a node store and unpacked, against GNU tar. Needs `cargo build --release -p
    /// skiff` first.
    Registry {
        #[arg(long, default_value_t = 100)]
        mib: usize,
    },
    /// The node agent (as root, real runc): pod startup latency with the image present, p50
    /// and p99, against `runc run` of the same container; the agent's memory with 20 pods.
    /// Needs `cargo build --release -p skiff` first.
    Node {
        #[arg(long, default_value_t = 100)]
        pods: usize,
        #[arg(long, default_value_t = 10)]
        concurrency: usize,
    },
    /// Service networking (as root, in network namespaces made here): the proxy's rule
    /// latency with 1,000 Services and 10,000 endpoints and its CPU per sync; HTTP through
    /// a ClusterIP against the same pod addressed directly; the node DNS on one core for a
    /// cluster name and a cached outside name, against a UDP echo.
    Network {
        #[arg(long, default_value_t = 1_000)]
        services: usize,
        #[arg(long, default_value_t = 10)]
        endpoints_per_service: usize,
        #[arg(long, default_value_t = 200)]
        changes: usize,
        #[arg(long, default_value_t = 8)]
        clients: usize,
        #[arg(long, default_value_t = 5)]
        seconds: u64,
        #[arg(long, default_value_t = 64)]
        dns_in_flight: usize,
    },
    /// The whole datastore suite on both backends: fsync floor, writes at each concurrency,
    /// range, watch delivery.
    Store {
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[arg(long, value_delimiter = ',', default_values_t = [1, 64])]
        concurrency: Vec<usize>,
        #[arg(long, default_value_t = 10_000)]
        range_keys: usize,
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        #[arg(long, default_value_t = 2_000)]
        watch_events: usize,
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        #[arg(long, value_enum, value_delimiter = ',', default_values = ["embedded", "etcd"])]
        backend: Vec<Backend>,
    },
    /// Durable creates at one concurrency.
    StoreWrite {
        #[arg(long, value_enum)]
        backend: Backend,
        #[arg(long, default_value_t = 20_000)]
        count: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
    },
    /// A range over many keys, whole and paged.
    StoreRange {
        #[arg(long, value_enum)]
        backend: Backend,
        #[arg(long, default_value_t = 10_000)]
        keys: usize,
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
        #[arg(long, default_value_t = 20)]
        iterations: usize,
    },
    /// Watch delivery latency to many watchers.
    StoreWatch {
        #[arg(long, value_enum)]
        backend: Backend,
        #[arg(long, default_value_t = 100)]
        watchers: usize,
        #[arg(long, default_value_t = 2_000)]
        events: usize,
        #[arg(long, default_value_t = 1024)]
        value_size: usize,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().scenario {
        Scenario::Check { without_node } => check::run(node::is_root() && !without_node).await?,
        Scenario::Api {
            pods,
            concurrency,
            lists,
            watchers,
            watch_events,
        } => api::run_with_baseline(pods, concurrency, lists, watchers, watch_events).await?,
        Scenario::Cluster {
            nodes,
            pods,
            replicas,
            concurrency,
        } => {
            cluster::run(cluster::Sizes {
                nodes,
                pods,
                replicas,
                concurrency,
            })
            .await?
        }
        Scenario::Registry { mib } => registry::run(mib).await?,
        Scenario::Crd {
            objects,
            concurrency,
            definitions,
        } => crd::run(objects, concurrency, definitions).await?,
        Scenario::Node { pods, concurrency } => node::run(pods, concurrency).await?,
        Scenario::Network {
            services,
            endpoints_per_service,
            changes,
            clients,
            seconds,
            dns_in_flight,
        } => {
            tokio::task::spawn_blocking(move || -> Result<()> {
                network::rules(services, endpoints_per_service, changes)?;
                network::datapath(clients, seconds)?;
                network::dns(seconds, dns_in_flight)
            })
            .await??
        }
        Scenario::Store {
            count,
            concurrency,
            range_keys,
            watchers,
            watch_events,
            value_size,
            backend,
        } => {
            store::fsync_floor(2_000)?;
            for &c in &concurrency {
                for &b in &backend {
                    store::write(b, count, c, value_size).await?;
                }
            }
            for &b in &backend {
                store::range(b, range_keys, value_size, 20).await?;
            }
            for &b in &backend {
                store::watch(b, watchers, watch_events, value_size).await?;
            }
        }
        Scenario::StoreWrite {
            backend,
            count,
            concurrency,
            value_size,
        } => store::write(backend, count, concurrency, value_size).await?,
        Scenario::StoreRange {
            backend,
            keys,
            value_size,
            iterations,
        } => store::range(backend, keys, value_size, iterations).await?,
        Scenario::StoreWatch {
            backend,
            watchers,
            events,
            value_size,
        } => store::watch(backend, watchers, events, value_size).await?,
    }
    Ok(())
}
