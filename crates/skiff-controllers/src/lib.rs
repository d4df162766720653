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
mod replicaset;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::Api;
use kube::runtime::watcher;
use skiff_client::Informer;

pub use namespace::NAMESPACE_FINALIZER;
pub use skiff_client::client_from_kubeconfig;

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
}

impl Informers {
    fn new(client: &Client) -> Self {
        let all = watcher::Config::default();
        Informers {
            pods: Informer::new(Api::all(client.clone()), all.clone()),
            replicasets: Informer::new(Api::all(client.clone()), all.clone()),
            deployments: Informer::new(Api::all(client.clone()), all),
        }
    }

    /// Starts every informer and waits until each has listed once.
    async fn start(self) -> Vec<tokio::task::JoinHandle<()>> {
        let synced = [
            self.pods.synced(),
            self.replicasets.synced(),
            self.deployments.synced(),
        ];
        let handles = vec![
            self.pods.start(),
            self.replicasets.start(),
            self.deployments.start(),
        ];
        skiff_client::informer::wait_all(synced).await;
        handles
    }
}

/// Runs every controller until the task is dropped or aborted.
pub async fn run(client: Client) {
    let mut informers = Informers::new(&client);
    let replicasets = replicaset::ReplicaSetController::new(client.clone(), &mut informers);
    let deployments = deployment::DeploymentController::new(client.clone(), &mut informers);
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
        deployments.run()
    );
}
