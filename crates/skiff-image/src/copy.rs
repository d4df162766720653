//! Copying an image from one registry to another (what `skiff image pull` does to bring an
//! image into the cluster's registry): the platform manifest and its blobs, each blob
//! verified on the way through a temporary file.

use std::path::Path;

use skiff_oci::Descriptor;

use crate::fetch::download;
use crate::registry_client::{EndpointError, Payload, Repository};
use crate::resolve::{PullError, Resolved};
use crate::store::{Progress, PullEvent};

/// Copies `source` into `dest` under `tag`; answers the manifest digest. Blobs `dest`
/// already has are not fetched. `scratch` holds blobs in transit.
pub async fn copy_image(
    source: &Resolved,
    dest: &Repository,
    tag: &str,
    scratch: &Path,
    image: &str,
    progress: Option<Progress>,
) -> Result<String, PullError> {
    let failed = |e: EndpointError| PullError::Failed {
        image: image.to_string(),
        attempts: vec![e],
    };
    dest.ping().await.map_err(failed)?;
    let manifest = &source.parsed;
    if let Some(p) = &progress {
        p(PullEvent::Resolved {
            digest: source.manifest.digest.clone(),
            layers: manifest.layers.len(),
            bytes: manifest.layers.iter().map(|l| l.size).sum(),
        });
    }
    let blobs: Vec<&Descriptor> = std::iter::once(&manifest.config)
        .chain(&manifest.layers)
        .collect();
    for blob in blobs {
        if dest.has_blob(&blob.digest).await.map_err(failed)? {
            if let Some(p) = &progress {
                p(PullEvent::LayerPresent {
                    digest: blob.digest.clone(),
                    size: blob.size,
                });
            }
            continue;
        }
        let path = scratch.join(blob.digest.replace(':', "-"));
        let result = async {
            download(&source.session, blob, &path, image, progress.as_ref()).await?;
            dest.push_blob(&blob.digest, Payload::File(path.clone()))
                .await
                .map_err(failed)
        }
        .await;
        let _ = tokio::fs::remove_file(&path).await;
        result?;
    }
    dest.put_manifest(
        tag,
        &source.manifest.media_type,
        source.manifest.bytes.clone(),
    )
    .await
    .map_err(failed)
}
