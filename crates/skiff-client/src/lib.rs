//! What skiff's in-cluster components (controllers, scheduler, node agents) share as
//! Kubernetes API clients: a client from a kubeconfig, informers (a watched, indexed local
//! copy of one resource with change callbacks), de-duplicating work queues, and an event
//! recorder. The shape is client-go's, because the upstream controllers this project
//! re-implements are written against it: level-triggered syncs keyed by `namespace/name`,
//! fed by informer callbacks.

pub mod cluster_registry;
pub mod events;
pub mod factory;
pub mod informer;
pub mod leader;
pub mod objects;
pub mod workqueue;

pub use events::EventRecorder;
pub use factory::InformerFactory;
pub use informer::{Change, Informer, Store};
pub use workqueue::{Reconcile, WorkQueue};

/// The connection settings of the current context of a kubeconfig (YAML).
pub async fn config_from_kubeconfig(yaml: &str) -> Result<kube::Config, ClientError> {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(yaml)
        .map_err(|e| ClientError::Kubeconfig(e.to_string()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| ClientError::Kubeconfig(e.to_string()))
}

/// A client for the cluster a kubeconfig (YAML) names.
pub async fn client_from_kubeconfig(yaml: &str) -> Result<kube::Client, ClientError> {
    let config = config_from_kubeconfig(yaml).await?;
    kube::Client::try_from(config).map_err(|e| ClientError::Kubeconfig(e.to_string()))
}

/// A client for the cluster the kubeconfig file at `path` names.
pub async fn client_from_kubeconfig_file(
    path: &std::path::Path,
) -> Result<kube::Client, ClientError> {
    let yaml = std::fs::read_to_string(path)
        .map_err(|e| ClientError::Kubeconfig(format!("reading {}: {e}", path.display())))?;
    client_from_kubeconfig(&yaml).await
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the kubeconfig: {0}")]
    Kubeconfig(String),
}

/// Locks a mutex, carrying on past a panic elsewhere (the data stays consistent: every
/// critical section here is a few plain updates).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether a kube error is the API's answer with this HTTP code.
pub fn is_status(err: &kube::Error, code: u16) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code)
}

/// A request's result where these API answers mean there is nothing to do (a 404: already
/// gone; a 409: changed meanwhile, and the event that brings the change decides again):
/// `Ok(None)` for them, the error for anything else.
pub fn tolerating<T>(
    result: Result<T, kube::Error>,
    codes: &[u16],
) -> Result<Option<T>, kube::Error> {
    match result {
        Ok(v) => Ok(Some(v)),
        Err(e) if codes.iter().any(|c| is_status(&e, *c)) => Ok(None),
        Err(e) => Err(e),
    }
}
