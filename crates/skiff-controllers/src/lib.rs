//! skiff's controllers: level-triggered, idempotent control loops that are ordinary API
//! clients (kube-rs), so each could run anywhere. `skiff server` runs them in-process
//! against its own API.
//!
//! They share one informer per resource (`Informers`): each controller registers its
//! handlers (which only queue keys), then the informers start, and each controller's
//! workers sync keys from its own queue once every informer has listed.

mod deployment;
mod expectations;
mod garbage_collector;
mod namespace;
mod node_lifecycle;
mod replicaset;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use skiff_client::Informer;

pub use namespace::NAMESPACE_FINALIZER;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("discovering the API's resources: {0}")]
    Discovery(kube::Error),
    #[error("encoding a request: {0}")]
    Encode(#[from] serde_json::Error),
}

/// How soon a reconcile that failed, or is waiting on others, runs again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// The informers the controllers share: one watch per resource for all of them.
pub struct Informers {
    pub pods: Informer<Pod>,
    pub replicasets: Informer<ReplicaSet>,
    pub deployments: Informer<Deployment>,
    pub nodes: Informer<Node>,
    /// Node leases (`kube-node-lease` only).
    pub leases: Informer<Lease>,
}

impl Informers {
    fn new(client: &Client) -> Self {
        let all = watcher::Config::default();
        Informers {
            pods: Informer::new(Api::all(client.clone()), all.clone()),
            replicasets: Informer::new(Api::all(client.clone()), all.clone()),
            deployments: Informer::new(Api::all(client.clone()), all.clone()),
            nodes: Informer::new(Api::all(client.clone()), all.clone()),
            leases: Informer::new(Api::namespaced(client.clone(), "kube-node-lease"), all),
        }
    }

    /// Starts every informer and waits until each has listed once.
    async fn start(self) -> Vec<tokio::task::JoinHandle<()>> {
        let synced = [
            self.pods.synced(),
            self.replicasets.synced(),
            self.deployments.synced(),
            self.nodes.synced(),
            self.leases.synced(),
        ];
        let handles = vec![
            self.pods.start(),
            self.replicasets.start(),
            self.deployments.start(),
            self.nodes.start(),
            self.leases.start(),
        ];
        skiff_client::informer::wait_all(synced).await;
        handles
    }
}

/// The controllers' settings (flags of `skiff server`).
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a node may be silent before it is considered unreachable
    /// (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_monitor_grace_period: node_lifecycle::DEFAULT_GRACE_PERIOD,
        }
    }
}

/// Runs every controller until the task is dropped or aborted.
pub async fn run(client: Client, config: Config) {
    let mut informers = Informers::new(&client);
    let replicasets = replicaset::ReplicaSetController::new(client.clone(), &mut informers);
    let deployments = deployment::DeploymentController::new(client.clone(), &mut informers);
    let nodes = node_lifecycle::NodeLifecycle::new(
        client.clone(),
        config.node_monitor_grace_period,
        &mut informers,
    );
    let _informers = informers.start().await;
    let gc = loop {
        match garbage_collector::GarbageCollector::start(client.clone()).await {
            Ok(gc) => break gc,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector: retrying discovery");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    };
    tokio::join!(
        gc.run(),
        namespace::run(client.clone()),
        replicasets.run(),
        deployments.run(),
        nodes.run()
    );
}
