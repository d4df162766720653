//! skiff's controllers: level-triggered, idempotent control loops that are ordinary API
//! clients (kube-rs), so each could run anywhere. `skiff server` runs them in-process
//! against its own API.
//!
//! Landed so far: the namespace controller (empties a terminating namespace, then finalizes
//! it) and the service account controller (a `default` ServiceAccount in every namespace).
//! The ReplicaSet, Deployment, garbage collector, endpoints and node lifecycle controllers
//! and the scheduler follow.

mod namespace;

use std::time::Duration;

use kube::Client;

pub use namespace::NAMESPACE_FINALIZER;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the controllers' kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("discovering the API's resources: {0}")]
    Discovery(kube::Error),
    #[error("encoding a request: {0}")]
    Encode(#[from] serde_json::Error),
}

/// How soon a reconcile that failed, or is waiting on others, runs again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// A client for the cluster a kubeconfig (YAML) names: how `skiff server` hands its API to
/// its in-process controllers.
pub async fn client_from_kubeconfig(yaml: &str) -> Result<Client, Error> {
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(yaml).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Client::try_from(config).map_err(|e| Error::Kubeconfig(e.to_string()))
}

/// Runs every controller until the task is dropped or aborted.
pub async fn run(client: Client) {
    namespace::run(client).await;
}
