//! skiff's embedded registry: the OCI distribution API (`/v2/`) over a content-addressed
//! store in the data directory, so a cluster has images with no internet at all.
//!
//! Landed so far: pull (manifests by tag and digest, blobs with HEAD and Range), push
//! (monolithic and chunked uploads, cross-repository mounts), tag listing, catalog,
//! manifest and blob deletion (unlinking from the repository), and push authentication (basic auth whose password is a token the caller accepts). Blobs are
//! verified against their digest before they are stored; manifests are stored as blobs and
//! linked into repositories by digest and tag.

mod routes;
pub mod storage;

pub use routes::{Authorizer, Scheme, router};
pub use storage::{Storage, StorageError};

/// Serves the registry on `addr` (plain HTTP) until the task is dropped; answers the
/// address it listens on (port 0 picks a free one).
pub async fn serve(
    addr: std::net::SocketAddr,
    storage: Storage,
    authorize: Authorizer,
) -> Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| ServeError::Bind { addr, cause })?;
    let local = listener
        .local_addr()
        .map_err(|cause| ServeError::Bind { addr, cause })?;
    let app = router(storage, authorize, Scheme::Http);
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the registry stopped");
        }
    });
    Ok((local, task))
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(
        "cannot listen on {addr} for the registry: {cause} (is another registry using the port? choose another with --registry-port)"
    )]
    Bind {
        addr: std::net::SocketAddr,
        // Not `source`: the message already says it, and the chain would say it twice.
        cause: std::io::Error,
    },
}
