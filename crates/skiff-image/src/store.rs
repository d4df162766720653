//! The node's image store, on disk under one root:
//!
//! ```text
//! content/sha256/<hex>        manifests, indexes and configs, verified
//! layers/<diff-id hex>/fs     an unpacked layer: an overlayfs lower directory
//! layers/<diff-id hex>/size   written last: the layer is complete
//! images/<sha256 of name>     an image record (JSON): name → manifest, config, layers
//! tmp/                        downloads and unpacks in progress (cleared on open)
//! ```
//!
//! Invariants: a layer directory exists only once its download matched the manifest's
//! digest and its content the config's diff ID (work happens in `tmp/` and is renamed into
//! place). A layer is shared by every image that has it and is unpacked once: concurrent
//! pulls of the same layer (or image) wait for the first. Compressed layers are not kept.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use skiff_oci::{Descriptor, ImageConfig, Platform, Reference, digest_hex};

use crate::auth::Keyring;
use crate::fetch::{download, fetch_small};
use crate::registry_client::{Endpoint, RegistryClient, Repository};
use crate::resolve::{PullError, endpoints, resolve};
use crate::unpack::{Limits, unpack_layer};

/// How many layers of one image download at once.
const PARALLEL_LAYERS: usize = 3;

/// An image ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The normalized reference it was pulled as.
    pub name: String,
    /// The platform manifest's digest (what `imageID`-like fields show).
    pub digest: String,
    pub config: ImageConfig,
    /// The unpacked layers, lowest first.
    pub layers: Vec<PathBuf>,
    /// Bytes of the layers unpacked.
    pub size: u64,
}

/// What a pull reports as it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// The manifest is known: how many layers and bytes (compressed) to fetch.
    Resolved {
        digest: String,
        layers: usize,
        bytes: u64,
    },
    /// A layer is already in the store.
    LayerPresent {
        digest: String,
        size: u64,
    },
    /// Bytes of a layer downloaded so far.
    LayerProgress {
        digest: String,
        done: u64,
        size: u64,
    },
    LayerUnpacked {
        digest: String,
        seconds: f64,
    },
}

pub type Progress = Arc<dyn Fn(PullEvent) + Send + Sync>;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    name: String,
    digest: String,
    config: String,
    /// diff IDs, lowest first.
    layers: Vec<String>,
    size: u64,
    /// Seconds since the epoch of the last pull or use.
    last_used: u64,
}

/// The node image store. Cheap to clone.
#[derive(Clone)]
pub struct ImageStore {
    root: PathBuf,
    client: RegistryClient,
    /// The cluster's embedded registry, tried first for every image.
    embedded: Option<Endpoint>,
    platform: Platform,
    limits: Limits,
    /// One lock per image reference and per layer in work, so concurrent pulls share it.
    inflight: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

#[derive(Debug, thiserror::Error)]
#[error("the image store at {path}: {source}")]
pub struct StoreError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

fn store_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError {
        path: path.to_path_buf(),
        source,
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex_of(digest: &str) -> &str {
    digest_hex(digest).unwrap_or("invalid")
}

impl ImageStore {
    pub fn open(
        root: impl Into<PathBuf>,
        client: RegistryClient,
        embedded: Option<Endpoint>,
    ) -> Result<ImageStore, StoreError> {
        let root = root.into();
        let _ = std::fs::remove_dir_all(root.join("tmp"));
        for dir in ["content/sha256", "layers", "images", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(store_err(&path))?;
        }
        Ok(ImageStore {
            root,
            client,
            embedded,
            platform: Platform::current(),
            limits: Limits::default(),
            inflight: Arc::default(),
        })
    }

    pub fn with_limits(mut self, limits: Limits) -> ImageStore {
        self.limits = limits;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn record_path(&self, name: &str) -> PathBuf {
        self.root
            .join("images")
            .join(hex_of(&skiff_oci::sha256_digest(name.as_bytes())))
    }

    fn layer_dir(&self, diff_id: &str) -> PathBuf {
        self.root.join("layers").join(hex_of(diff_id))
    }

    fn content_path(&self, digest: &str) -> PathBuf {
        self.root.join("content/sha256").join(hex_of(digest))
    }

    /// Runs `work` while no other work under `key` runs: concurrent pulls of one image or
    /// one layer wait for the first and then find its result in the store.
    async fn exclusively<T>(&self, key: String, work: impl Future<Output = T>) -> T {
        let lock = {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let result = {
            let _guard = lock.lock().await;
            work.await
        };
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        // Two references, the map's and ours: nobody else is waiting.
        if Arc::strong_count(&lock) == 2 {
            map.remove(&key);
        }
        result
    }

    /// The image if it is in the store (by the name it was pulled as, or `name@digest`).
    pub fn image(&self, reference: &str) -> Option<Image> {
        let name = Reference::parse(reference).ok()?.to_string();
        let record = self.read_record(&name)?;
        self.image_of(&record)
    }

    fn read_record(&self, name: &str) -> Option<Record> {
        let bytes = std::fs::read(self.record_path(name)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    fn image_of(&self, record: &Record) -> Option<Image> {
        let config = std::fs::read(self.content_path(&record.config)).ok()?;
        let config: ImageConfig = serde_json::from_slice(&config).ok()?;
        let layers = record
            .layers
            .iter()
            .map(|d| self.layer_dir(d).join("fs"))
            .collect();
        Some(Image {
            name: record.name.clone(),
            digest: record.digest.clone(),
            config,
            layers,
            size: record.size,
        })
    }

    /// Every image record, by name.
    pub fn list(&self) -> Vec<Image> {
        let mut out: Vec<Image> = self
            .records()
            .iter()
            .filter_map(|r| self.image_of(r))
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    fn records(&self) -> Vec<Record> {
        let Ok(dir) = std::fs::read_dir(self.root.join("images")) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| std::fs::read(e.path()).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// Forgets an image name; its layers go at the next [`ImageStore::prune`] if no other
    /// image uses them. False if there was no such image.
    pub fn remove(&self, reference: &str) -> bool {
        let Ok(name) = Reference::parse(reference).map(|r| r.to_string()) else {
            return false;
        };
        std::fs::remove_file(self.record_path(&name)).is_ok()
    }

    /// Pulls an image (the tag is resolved again; layers already here are not fetched).
    pub async fn pull(
        &self,
        reference: &str,
        keyring: &Keyring,
        progress: Option<Progress>,
    ) -> Result<Image, PullError> {
        let reference = Reference::parse(reference)?;
        self.exclusively(
            format!("image {reference}"),
            self.pull_locked(&reference, keyring, progress),
        )
        .await
    }

    async fn pull_locked(
        &self,
        reference: &Reference,
        keyring: &Keyring,
        progress: Option<Progress>,
    ) -> Result<Image, PullError> {
        let image = reference.to_string();
        // A digest reference already here needs no registry at all.
        if reference.digest.is_some()
            && let Some(found) = self.image(&image)
        {
            self.touch(&image);
            return Ok(found);
        }
        let endpoints = endpoints(reference, self.embedded.as_ref(), &self.client);
        let resolved =
            resolve(&self.client, reference, &endpoints, keyring, &self.platform).await?;
        let manifest = &resolved.parsed;
        let report = |event: PullEvent| {
            if let Some(p) = &progress {
                p(event)
            }
        };
        report(PullEvent::Resolved {
            digest: resolved.manifest.digest.clone(),
            layers: manifest.layers.len(),
            bytes: manifest.layers.iter().map(|l| l.size).sum(),
        });
        // The configuration: small, kept, verified.
        let config_bytes = fetch_small(&resolved.session, &manifest.config, &image).await?;
        let config: ImageConfig =
            serde_json::from_slice(&config_bytes).map_err(|e| PullError::Invalid {
                image: image.clone(),
                message: format!("the image configuration is not valid: {e}"),
            })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(PullError::Invalid {
                image: image.clone(),
                message: format!(
                    "the manifest has {} layers but the configuration {} diff IDs",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        for diff_id in &config.rootfs.diff_ids {
            digest_hex(diff_id).map_err(|e| PullError::Invalid {
                image: image.clone(),
                message: e.to_string(),
            })?;
        }
        let config_path = self.content_path(&manifest.config.digest);
        write_file(&config_path, &config_bytes)
            .await
            .map_err(store_error(&image, &config_path))?;

        let layers: Vec<(Descriptor, String)> = manifest
            .layers
            .iter()
            .cloned()
            .zip(config.rootfs.diff_ids.iter().cloned())
            .collect();
        let sizes: Vec<u64> =
            futures_util::stream::iter(layers.into_iter().map(|(layer, diff_id)| {
                let session = &resolved.session;
                let image = &image;
                let progress = progress.clone();
                async move {
                    self.ensure_layer(session, &layer, &diff_id, image, progress)
                        .await
                }
            }))
            .buffered(PARALLEL_LAYERS)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;

        let manifest_path = self.content_path(&resolved.manifest.digest);
        write_file(&manifest_path, &resolved.manifest.bytes)
            .await
            .map_err(store_error(&image, &manifest_path))?;
        if let Some(index) = &resolved.index {
            let path = self.content_path(&index.digest);
            write_file(&path, &index.bytes)
                .await
                .map_err(store_error(&image, &path))?;
        }
        let record = Record {
            name: image.clone(),
            digest: resolved.manifest.digest.clone(),
            config: manifest.config.digest.clone(),
            layers: config.rootfs.diff_ids.clone(),
            size: sizes.iter().sum(),
            last_used: now_secs(),
        };
        // Under its name and under `name@digest`, so pulls by digest find it too.
        let by_digest = Reference {
            tag: None,
            ..reference.with_digest(&resolved.manifest.digest)
        };
        for name in [image.clone(), by_digest.to_string()] {
            let record = Record {
                name: name.clone(),
                ..record.clone()
            };
            let path = self.record_path(&name);
            let bytes = serde_json::to_vec(&record).expect("records serialize");
            write_file(&path, &bytes)
                .await
                .map_err(store_error(&image, &path))?;
        }
        self.image_of(&record).ok_or_else(|| PullError::Invalid {
            image,
            message: "the image vanished from the store while it was pulled".into(),
        })
    }

    /// Marks an image as used now (image GC removes the least recently used first).
    pub fn touch(&self, reference: &str) {
        let Ok(name) = Reference::parse(reference).map(|r| r.to_string()) else {
            return;
        };
        if let Some(mut record) = self.read_record(&name) {
            record.last_used = now_secs();
            if let Ok(bytes) = serde_json::to_vec(&record) {
                let _ = std::fs::write(self.record_path(&name), bytes);
            }
        }
    }

    /// Makes sure a layer is unpacked; answers its unpacked size.
    async fn ensure_layer(
        &self,
        session: &Repository,
        layer: &Descriptor,
        diff_id: &str,
        image: &str,
        progress: Option<Progress>,
    ) -> Result<u64, PullError> {
        self.exclusively(format!("layer {diff_id}"), async {
            match self.layer_size(diff_id) {
                Some(size) => {
                    if let Some(p) = &progress {
                        p(PullEvent::LayerPresent {
                            digest: layer.digest.clone(),
                            size: layer.size,
                        });
                    }
                    Ok(size)
                }
                None => {
                    self.fetch_layer(session, layer, diff_id, image, progress.clone())
                        .await
                }
            }
        })
        .await
    }

    fn layer_size(&self, diff_id: &str) -> Option<u64> {
        unpacked_size(&self.layer_dir(diff_id))
    }

    async fn fetch_layer(
        &self,
        session: &Repository,
        layer: &Descriptor,
        diff_id: &str,
        image: &str,
        progress: Option<Progress>,
    ) -> Result<u64, PullError> {
        let work = self
            .root
            .join("tmp")
            .join(format!("{}-{}", hex_of(diff_id), unique_suffix()));
        let result = self
            .fetch_layer_into(&work, session, layer, diff_id, image, progress)
            .await;
        let _ = tokio::fs::remove_dir_all(&work).await;
        result
    }

    async fn fetch_layer_into(
        &self,
        work: &Path,
        session: &Repository,
        layer: &Descriptor,
        diff_id: &str,
        image: &str,
        progress: Option<Progress>,
    ) -> Result<u64, PullError> {
        tokio::fs::create_dir_all(work.join("fs"))
            .await
            .map_err(store_error(image, work))?;
        let blob_path = work.join("blob");
        download(session, layer, &blob_path, image, progress.as_ref()).await?;

        let started = Instant::now();
        let fs_dir = work.join("fs");
        let limits = self.limits;
        let unpacked = tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&blob_path)?;
            let result = unpack_layer(file, &fs_dir, &limits);
            let _ = std::fs::remove_file(&blob_path);
            Ok::<_, std::io::Error>(result)
        })
        .await
        .map_err(|e| PullError::Store {
            image: image.to_string(),
            path: work.to_path_buf(),
            source: std::io::Error::other(e.to_string()),
        })?
        .map_err(store_error(image, work))?
        .map_err(|source| PullError::Unpack {
            image: image.to_string(),
            layer: layer.digest.clone(),
            source,
        })?;
        if unpacked.diff_id != diff_id {
            return Err(PullError::DigestMismatch {
                image: image.to_string(),
                what: "uncompressed layer",
                expected: diff_id.to_string(),
                actual: unpacked.diff_id,
            });
        }
        if let Some(p) = &progress {
            p(PullEvent::LayerUnpacked {
                digest: layer.digest.clone(),
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        let size_path = work.join("size");
        tokio::fs::write(&size_path, unpacked.size.to_string())
            .await
            .map_err(store_error(image, &size_path))?;
        let dest = self.layer_dir(diff_id);
        let _ = tokio::fs::remove_dir_all(&dest).await;
        tokio::fs::rename(work, &dest)
            .await
            .map_err(store_error(image, &dest))?;
        Ok(unpacked.size)
    }

    /// Removes layers and content no image record refers to, and answers the bytes freed.
    pub fn prune(&self) -> u64 {
        let records = self.records();
        let layers: HashSet<&str> = records
            .iter()
            .flat_map(|r| r.layers.iter().map(|d| hex_of(d)))
            .collect();
        let mut content: HashSet<String> = HashSet::new();
        for r in &records {
            content.insert(hex_of(&r.digest).to_string());
            content.insert(hex_of(&r.config).to_string());
        }
        let mut freed = 0;
        let Ok(dir) = std::fs::read_dir(self.root.join("layers")) else {
            return 0;
        };
        for entry in dir.flatten() {
            if !layers.contains(entry.file_name().to_string_lossy().as_ref()) {
                freed += unpacked_size(&entry.path()).unwrap_or(0);
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        if let Ok(dir) = std::fs::read_dir(self.root.join("content/sha256")) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                // Indexes are not recorded; they go with everything unreferenced.
                if !content.contains(&name) {
                    freed += entry.metadata().map_or(0, |m| m.len());
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        freed
    }

    /// Image garbage collection as the kubelet does it: when the disk holding the store is
    /// more than `policy.high_percent` full, images not in `in_use` (by digest) go, least
    /// recently used first, until it is below `policy.low_percent`.
    pub fn collect_garbage(&self, in_use: &HashSet<String>, policy: GcPolicy) -> GcReport {
        self.collect_garbage_with(in_use, policy, &|path| disk_usage(path))
    }

    /// [`ImageStore::collect_garbage`] with the disk usage measured by `usage` (used,
    /// capacity in bytes).
    pub fn collect_garbage_with(
        &self,
        in_use: &HashSet<String>,
        policy: GcPolicy,
        usage: &dyn Fn(&Path) -> Option<(u64, u64)>,
    ) -> GcReport {
        let mut report = GcReport::default();
        let percent = |u: (u64, u64)| u.0.saturating_mul(100) / u.1.max(1);
        let Some(now) = usage(&self.root) else {
            return report;
        };
        if percent(now) < policy.high_percent {
            return report;
        }
        // Names of one image (tag and @digest) go together, as recently used as the most
        // recently used of them.
        let mut by_digest: Vec<(String, Vec<String>, u64)> = Vec::new();
        for r in self.records() {
            match by_digest.iter_mut().find(|(d, _, _)| *d == r.digest) {
                Some((_, names, last_used)) => {
                    names.push(r.name.clone());
                    *last_used = (*last_used).max(r.last_used);
                }
                None => by_digest.push((r.digest.clone(), vec![r.name.clone()], r.last_used)),
            }
        }
        by_digest.sort_by_key(|(_, _, last_used)| *last_used);
        for (digest, names, _) in by_digest {
            if usage(&self.root).is_some_and(|u| percent(u) < policy.low_percent) {
                break;
            }
            if in_use.contains(&digest) {
                continue;
            }
            for name in &names {
                let _ = std::fs::remove_file(self.record_path(name));
            }
            report.removed.extend(names);
            report.freed_bytes += self.prune();
        }
        report
    }
}

#[derive(Debug, Clone, Copy)]
pub struct GcPolicy {
    pub high_percent: u64,
    pub low_percent: u64,
}

impl Default for GcPolicy {
    /// The kubelet's `--image-gc-high-threshold` / `--image-gc-low-threshold` defaults.
    fn default() -> Self {
        GcPolicy {
            high_percent: 85,
            low_percent: 80,
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub removed: Vec<String>,
    pub freed_bytes: u64,
}

/// (used, capacity) of the filesystem holding `path`.
pub fn disk_usage(path: &Path) -> Option<(u64, u64)> {
    let st = rustix::fs::statvfs(path).ok()?;
    let total = st.f_blocks * st.f_frsize;
    let free = st.f_bfree * st.f_frsize;
    Some((total - free, total))
}

/// What a complete layer directory records as its unpacked size.
fn unpacked_size(layer_dir: &Path) -> Option<u64> {
    std::fs::read_to_string(layer_dir.join("size"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

pub(crate) fn store_error<'a>(
    image: &'a str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> PullError + 'a {
    move |source| PullError::Store {
        image: image.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

async fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", unique_suffix()));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await
}
