//! A container's image as its pull policy says (with the pod's pull secrets and back-off),
//! which images this node's pods use (kept by image GC), and the images the Node reports.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use k8s_openapi::api::core::v1::{Container, Pod, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};
use skiff_client::EventRecorder;
use skiff_image::{Image, ImageStore, Keyring};

use super::status::Waiting;

/// Upstream's `--node-status-max-images`.
const NODE_STATUS_MAX_IMAGES: usize = 50;

/// `status.images` of the Node: each image once (by digest) with every name it has here,
/// `repo@digest` first, largest first, at most 50 (what the scheduler's image locality
/// reads).
pub fn node_images(images: &[Image]) -> serde_json::Value {
    let mut by_digest: Vec<(String, Vec<String>, u64)> = Vec::new();
    for image in images {
        let repo = skiff_oci::Reference::parse(&image.name)
            .map(|r| r.name())
            .unwrap_or_else(|_| image.name.clone());
        let pinned = format!("{repo}@{}", image.digest);
        match by_digest.iter_mut().find(|(d, ..)| *d == image.digest) {
            Some((_, names, _)) => {
                if !names.contains(&pinned) {
                    names.insert(0, pinned);
                }
                names.push(image.name.clone());
            }
            None => by_digest.push((
                image.digest.clone(),
                vec![pinned, image.name.clone()],
                image.size,
            )),
        }
    }
    by_digest.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(&b.1)));
    by_digest
        .into_iter()
        .take(NODE_STATUS_MAX_IMAGES)
        .map(|(_, names, size)| serde_json::json!({"names": names, "sizeBytes": size}))
        .collect()
}
use super::backoff::backoff;

/// The node's images for its pods: the store, and each container's pull back-off. The sync
/// loop asks it for a container's image; housekeeping for what is in use.
pub struct Images {
    pub store: ImageStore,
    /// Pull failures per pod uid and container: (failures, next attempt).
    failures: Mutex<HashMap<(String, String), (u32, Instant)>>,
}

/// Credentials from the pod's imagePullSecrets.
async fn keyring(client: &Client, pod: &Pod) -> Keyring {
    let mut keyring = Keyring::default();
    let ns = pod.namespace().unwrap_or_default();
    let api = Api::<Secret>::namespaced(client.clone(), &ns);
    for r in pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
    {
        if let Ok(Some(secret)) = api.get_opt(&r.name).await {
            let data = secret.data.unwrap_or_default();
            for key in [".dockerconfigjson", ".dockercfg"] {
                if let Some(bytes) = data.get(key)
                    && let Err(e) = keyring.add_docker_config(&bytes.0)
                {
                    tracing::warn!(secret = %r.name, error = %e, "ignoring an image pull secret");
                }
            }
        }
    }
    keyring
}

impl Images {
    pub fn new(store: ImageStore) -> Images {
        Images {
            store,
            failures: Mutex::default(),
        }
    }

    /// The container's image, pulled as its policy says (the pod's pull secrets read
    /// through `client`, events to `events`); a waiting state when it cannot be.
    pub async fn ensure(
        &self,
        client: &Client,
        events: &EventRecorder,
        pod: &Pod,
        c: &Container,
    ) -> Result<Image, Waiting> {
        let reference = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            let tagless = !reference.rsplit('/').next().unwrap_or("").contains(':');
            if reference.ends_with(":latest") || (tagless && !reference.contains('@')) {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let present = self.store.image(&reference);
        match (policy.as_str(), present) {
            ("Never", Some(image)) | ("IfNotPresent", Some(image)) => {
                self.store.touch(&reference);
                // As upstream's kubelet: every container says where its image came from.
                events.normal(
                    pod,
                    "Pulled",
                    format!("Container image \"{reference}\" already present on machine"),
                );
                return Ok(image);
            }
            ("Never", None) => {
                let message = format!(
                    "Container image \"{reference}\" is not present with pull policy of Never"
                );
                events.warning(pod, "ErrImageNeverPull", message.clone());
                return Err(Waiting {
                    reason: "ErrImageNeverPull",
                    message,
                });
            }
            _ => {}
        }
        let key = (pod.uid().unwrap_or_default(), c.name.clone());
        let backing_off = skiff_client::lock(&self.failures)
            .get(&key)
            .is_some_and(|(_, next)| Instant::now() < *next);
        if backing_off {
            let message = format!("Back-off pulling image \"{reference}\"");
            events.normal(pod, "BackOff", message.clone());
            return Err(Waiting {
                reason: "ImagePullBackOff",
                message,
            });
        }
        events.normal(pod, "Pulling", format!("Pulling image \"{reference}\""));
        let started = Instant::now();
        let keyring = keyring(client, pod).await;
        match self.store.pull(&reference, &keyring, None).await {
            Ok(image) => {
                skiff_client::lock(&self.failures).remove(&key);
                let secs = started.elapsed().as_secs_f64();
                events.normal(
                    pod,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{reference}\" in {secs:.3}s ({secs:.3}s including waiting). Image size: {} bytes.",
                        image.size
                    ),
                );
                Ok(image)
            }
            Err(e) => {
                let mut failures = skiff_client::lock(&self.failures);
                let entry = failures.entry(key).or_insert((0, Instant::now()));
                entry.0 += 1;
                let delay = backoff(entry.0);
                entry.1 = Instant::now() + delay;
                let message = format!("Failed to pull image \"{reference}\": {e}");
                events.warning(pod, "Failed", message.clone());
                events.warning(pod, "Failed", "Error: ErrImagePull".into());
                Err(Waiting {
                    reason: "ErrImagePull",
                    message,
                })
            }
        }
    }

    /// The `imageID` of the image a container names, if it is here (`repo@digest`).
    pub fn id_of(&self, reference: &str) -> Option<String> {
        let image = self.store.image(reference)?;
        let name = skiff_oci::Reference::parse(&image.name).ok()?.name();
        Some(format!("{name}@{}", image.digest))
    }

    /// The manifest digests of the images `pods` use.
    pub fn in_use(&self, pods: &[Arc<Pod>]) -> HashSet<String> {
        pods.iter()
            .flat_map(|p| {
                let ephemeral = super::container::ephemeral_containers(p);
                let spec = p.spec.clone().unwrap_or_default();
                spec.containers
                    .into_iter()
                    .chain(spec.init_containers.unwrap_or_default())
                    .chain(ephemeral)
                    .filter_map(|c| c.image)
                    .collect::<Vec<_>>()
            })
            .filter_map(|image| self.store.image(&image).map(|i| i.digest))
            .collect()
    }

    /// Forgets the pull back-off of pods other than `known` (by uid).
    pub fn retain_pods(&self, known: &HashSet<String>) {
        skiff_client::lock(&self.failures).retain(|k, _| known.contains(&k.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, digest: &str, size: u64) -> Image {
        Image {
            name: name.into(),
            digest: digest.into(),
            config: Default::default(),
            layers: Vec::new(),
            size,
        }
    }

    #[test]
    fn the_node_reports_each_image_once_largest_first() {
        let images = [
            image("docker.io/library/busybox:1.36", "sha256:aa", 10),
            image("docker.io/library/web:v1", "sha256:bb", 30),
            image("docker.io/library/busybox:latest", "sha256:aa", 10),
        ];
        assert_eq!(
            node_images(&images),
            serde_json::json!([
                {"names": ["docker.io/library/web@sha256:bb", "docker.io/library/web:v1"], "sizeBytes": 30},
                {"names": ["docker.io/library/busybox@sha256:aa", "docker.io/library/busybox:1.36",
                           "docker.io/library/busybox:latest"], "sizeBytes": 10},
            ])
        );
        let many: Vec<Image> = (0..60)
            .map(|i| {
                image(
                    &format!("docker.io/library/i{i}:v1"),
                    &format!("sha256:{i}"),
                    i,
                )
            })
            .collect();
        assert_eq!(node_images(&many).as_array().unwrap().len(), 50);
    }
}
