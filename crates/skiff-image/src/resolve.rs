//! From an image reference to a platform manifest: which endpoints to try (the cluster's
//! registry first, configured mirrors, then the image's own registry), and the index →
//! manifest step.

use skiff_oci::{Index, Manifest, Platform, Reference, media_type};

use crate::auth::Keyring;
use crate::registry_client::{
    Endpoint, EndpointError, FetchedManifest, RegistryClient, Repository,
};

/// Why a pull failed. Every message names the image and the cause.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error(transparent)]
    Reference(#[from] skiff_oci::ReferenceError),
    #[error("pulling {image}: {}", join(attempts))]
    Failed {
        image: String,
        /// What each endpoint answered, in the order they were tried.
        attempts: Vec<EndpointError>,
    },
    #[error(
        "pulling {image}: {what} {expected} arrived with digest {actual}; the content was refused"
    )]
    DigestMismatch {
        image: String,
        what: &'static str,
        expected: String,
        actual: String,
    },
    #[error("pulling {image}: its index has no {platform} image (it has {available})")]
    NoPlatform {
        image: String,
        platform: String,
        available: String,
    },
    #[error("pulling {image}: {message}")]
    Invalid { image: String, message: String },
    #[error("pulling {image}: layer {layer}: {source}")]
    Unpack {
        image: String,
        layer: String,
        #[source]
        source: crate::unpack::UnpackError,
    },
    #[error("pulling {image}: the image store at {path}: {source}")]
    Store {
        image: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn join(attempts: &[EndpointError]) -> String {
    attempts
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; then ")
}

impl PullError {
    /// Every endpoint said the image is not there (as opposed to refusing or failing).
    pub fn is_not_found(&self) -> bool {
        matches!(self, PullError::Failed { attempts, .. } if attempts.iter().all(EndpointError::is_not_found))
    }
}

/// Where an image is looked for, in order.
pub fn endpoints(
    reference: &Reference,
    embedded: Option<&Endpoint>,
    client: &RegistryClient,
) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = embedded.cloned().into_iter().collect();
    for mirror in client.config().mirrors_of(&reference.registry) {
        out.push(Endpoint::new(&mirror));
    }
    if out.is_empty() || !client.config().disable_default_endpoint {
        out.push(Endpoint::for_registry(&reference.registry, client.config()));
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|e| seen.insert(e.base.clone()));
    out
}

/// A platform manifest found at one endpoint.
pub struct Resolved {
    pub session: Repository,
    /// The index the manifest was chosen from, when the reference named one.
    pub index: Option<FetchedManifest>,
    pub manifest: FetchedManifest,
    pub parsed: Manifest,
}

/// Finds the manifest of `reference` for `platform`, trying each endpoint in turn. The
/// repository path is the same at every endpoint (`library/busybox` at a mirror, as
/// containerd asks mirrors).
pub async fn resolve(
    client: &RegistryClient,
    reference: &Reference,
    endpoints: &[Endpoint],
    keyring: &Keyring,
    platform: &Platform,
) -> Result<Resolved, PullError> {
    let image = reference.to_string();
    let mut attempts = Vec::new();
    for endpoint in endpoints {
        let credentials = keyring
            .lookup(endpoint.host())
            .or_else(|| {
                // The image's own registry may be named differently from its API host
                // (docker.io is served by registry-1.docker.io).
                (endpoint.host() != reference.registry
                    && endpoint == &Endpoint::for_registry(&reference.registry, client.config()))
                    .then(|| keyring.lookup(&reference.registry))
                    .flatten()
            })
            .cloned();
        let session = client.repository(endpoint, &reference.repository, credentials, false);
        match session.manifest(reference.object()).await {
            Ok(found) => return finish(session, found, reference, platform).await,
            Err(e) => {
                tracing::debug!(%image, error = %e, "not pulled from this endpoint");
                attempts.push(e);
            }
        }
    }
    Err(PullError::Failed { image, attempts })
}

async fn finish(
    session: Repository,
    found: FetchedManifest,
    reference: &Reference,
    platform: &Platform,
) -> Result<Resolved, PullError> {
    let image = reference.to_string();
    let invalid = |message: String| PullError::Invalid {
        image: image.clone(),
        message,
    };
    let (index, manifest) = if media_type::is_index(&found.media_type) {
        let parsed: Index = serde_json::from_slice(&found.bytes)
            .map_err(|e| invalid(format!("the image index is not valid: {e}")))?;
        let chosen = parsed
            .select(platform)
            .ok_or_else(|| PullError::NoPlatform {
                image: image.clone(),
                platform: platform.to_string(),
                available: parsed.platforms().join(", "),
            })?;
        let child = session
            .manifest(&chosen.digest)
            .await
            .map_err(|e| PullError::Failed {
                image: image.clone(),
                attempts: vec![e],
            })?;
        (Some(found), child)
    } else {
        (None, found)
    };
    if !media_type::is_manifest(&manifest.media_type) {
        let hint = if manifest.media_type == media_type::DOCKER_SCHEMA1_SIGNED {
            " (Docker schema 1 is retired; push the image again with a current client)"
        } else {
            ""
        };
        return Err(invalid(format!(
            "unsupported manifest type {}{hint}",
            manifest.media_type
        )));
    }
    let parsed: Manifest = serde_json::from_slice(&manifest.bytes)
        .map_err(|e| invalid(format!("the manifest is not valid: {e}")))?;
    Ok(Resolved {
        session,
        index,
        manifest,
        parsed,
    })
}
