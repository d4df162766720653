//! Fetching blobs: small ones into memory, layers to a file; both verified against their
//! digest as they arrive.

use std::path::Path;
use std::time::Instant;

use http_body_util::BodyExt;
use skiff_oci::Descriptor;
use tokio::io::AsyncWriteExt;

use crate::registry_client::{EndpointError, Repository};
use crate::resolve::PullError;
use crate::store::{Progress, PullEvent, store_error};

/// A small blob (a configuration), verified.
pub async fn fetch_small(
    session: &Repository,
    descriptor: &Descriptor,
    image: &str,
) -> Result<Vec<u8>, PullError> {
    let failed = |e: EndpointError| PullError::Failed {
        image: image.to_string(),
        attempts: vec![e],
    };
    let resp = session.blob(&descriptor.digest).await.map_err(failed)?;
    let limited = http_body_util::Limited::new(resp.into_body(), 16 << 20);
    let bytes = limited
        .collect()
        .await
        .map_err(|e| {
            failed(EndpointError::Unreachable {
                endpoint: session.endpoint().to_string(),
                cause: format!("reading the configuration: {e}"),
            })
        })?
        .to_bytes();
    let actual = skiff_oci::sha256_digest(&bytes);
    if actual != descriptor.digest {
        return Err(PullError::DigestMismatch {
            image: image.to_string(),
            what: "configuration",
            expected: descriptor.digest.clone(),
            actual,
        });
    }
    Ok(bytes.to_vec())
}

/// Downloads a layer blob to `path`, hashing as it arrives; refuses a digest mismatch.
pub async fn download(
    session: &Repository,
    layer: &Descriptor,
    path: &Path,
    image: &str,
    progress: Option<&Progress>,
) -> Result<(), PullError> {
    let failed = |e: EndpointError| PullError::Failed {
        image: image.to_string(),
        attempts: vec![e],
    };
    let resp = session.blob(&layer.digest).await.map_err(failed)?;
    let mut body = resp.into_body();
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(store_error(image, path))?;
    let mut hash = skiff_oci::Sha256::new();
    let mut last_report = Instant::now();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| {
            failed(EndpointError::Unreachable {
                endpoint: session.endpoint().to_string(),
                cause: format!("downloading layer {}: {e}", layer.digest),
            })
        })?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        hash.update(&data);
        file.write_all(&data)
            .await
            .map_err(store_error(image, path))?;
        if let Some(p) = progress
            && last_report.elapsed().as_millis() >= 100
        {
            last_report = Instant::now();
            p(PullEvent::LayerProgress {
                digest: layer.digest.clone(),
                done: hash.len(),
                size: layer.size,
            });
        }
    }
    file.flush().await.map_err(store_error(image, path))?;
    if let Some(p) = progress {
        p(PullEvent::LayerProgress {
            digest: layer.digest.clone(),
            done: hash.len(),
            size: layer.size,
        });
    }
    let actual = hash.finish();
    if actual != layer.digest {
        return Err(PullError::DigestMismatch {
            image: image.to_string(),
            what: "layer",
            expected: layer.digest.clone(),
            actual,
        });
    }
    Ok(())
}
