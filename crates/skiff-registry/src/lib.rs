//! skiff's embedded registry: the OCI distribution API (`/v2/`) over a content-addressed
//! store in the data directory, so a cluster has images with no internet at all.
//!
//! Landed so far: pull (manifests by tag and digest, blobs with HEAD and Range), push
//! (monolithic and chunked uploads, cross-repository mounts), tag listing, catalog,
//! manifest and blob deletion (unlinking from the repository; a garbage collection
//! then removes content nothing refers to), and push authentication (basic auth whose
//! password is a token the caller accepts). Blobs are
//! verified against their digest before they are stored; manifests are stored as blobs and
//! linked into repositories by digest and tag.

mod gc;
mod routes;
pub mod storage;

pub use gc::GcReport;
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
    let app = router(storage.clone(), authorize, Scheme::Http);
    tokio::spawn(collect_garbage_periodically(storage));
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the registry stopped");
        }
    });
    Ok((local, task))
}

/// How often unreferenced content is collected, and how old it must be.
pub const GC_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);

async fn collect_garbage_periodically(storage: Storage) {
    loop {
        tokio::time::sleep(GC_INTERVAL).await;
        let s = storage.clone();
        match tokio::task::spawn_blocking(move || s.collect_garbage(GC_INTERVAL)).await {
            Ok(report) if report.blobs_removed + report.uploads_removed > 0 => tracing::info!(
                blobs = report.blobs_removed,
                bytes = report.bytes_freed,
                uploads = report.uploads_removed,
                "registry garbage collected"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "registry garbage collection failed"),
        }
    }
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
