//! Assembling OCI images from files: layers (plain, gzip or zstd), a configuration and a
//! manifest, pushed to a registry. What tests and benchmarks build their images with, and
//! the base of image builds.

use bytes::Bytes;
use skiff_oci::manifest::RunConfig;
use skiff_oci::{Descriptor, ImageConfig, Manifest, Platform, media_type, sha256_digest};

use crate::registry_client::{EndpointError, Payload, Repository};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// A layer's tar, built entry by entry.
pub struct LayerBuilder {
    tar: tar::Builder<Vec<u8>>,
}

impl Default for LayerBuilder {
    fn default() -> Self {
        LayerBuilder::new()
    }
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    h
}

impl LayerBuilder {
    pub fn new() -> LayerBuilder {
        LayerBuilder {
            tar: tar::Builder::new(Vec::new()),
        }
    }

    pub fn dir(mut self, path: &str) -> Self {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        self.tar
            .append_data(&mut h, path, std::io::empty())
            .expect("writing to memory");
        self
    }

    pub fn file(mut self, path: &str, content: &[u8], mode: u32) -> Self {
        let mut h = header(tar::EntryType::Regular, mode, content.len() as u64);
        self.tar
            .append_data(&mut h, path, content)
            .expect("writing to memory");
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = header(tar::EntryType::Symlink, 0o777, 0);
        self.tar
            .append_link(&mut h, path, target)
            .expect("writing to memory");
        self
    }

    pub fn finish(self, compression: Compression) -> Layer {
        let tar = self.tar.into_inner().expect("writing to memory");
        Layer::from_tar(&tar, compression)
    }
}

/// A layer as pushed: its (compressed) bytes, and the digest of the tar inside.
#[derive(Debug, Clone)]
pub struct Layer {
    pub bytes: Bytes,
    pub media_type: &'static str,
    pub diff_id: String,
}

impl Layer {
    pub fn from_tar(tar: &[u8], compression: Compression) -> Layer {
        let (bytes, media_type) = match compression {
            Compression::None => (tar.to_vec(), media_type::OCI_LAYER),
            Compression::Gzip => {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                std::io::Write::write_all(&mut gz, tar).expect("writing to memory");
                (
                    gz.finish().expect("writing to memory"),
                    media_type::OCI_LAYER_GZIP,
                )
            }
            Compression::Zstd => (
                ruzstd::encoding::compress_to_vec(tar, ruzstd::encoding::CompressionLevel::Fastest),
                media_type::OCI_LAYER_ZSTD,
            ),
        };
        Layer {
            bytes: Bytes::from(bytes),
            media_type,
            diff_id: sha256_digest(tar),
        }
    }

    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.to_string(),
            digest: sha256_digest(&self.bytes),
            size: self.bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        }
    }
}

/// An image: configuration, layers and manifest, serialized.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    pub layers: Vec<Layer>,
    pub config: Bytes,
    pub manifest: Bytes,
}

impl BuiltImage {
    /// An image for `platform` of `layers` (lowest first) that runs `run`.
    pub fn new(layers: Vec<Layer>, run: RunConfig, platform: &Platform) -> BuiltImage {
        let config = ImageConfig {
            architecture: platform.architecture.clone(),
            os: platform.os.clone(),
            config: run,
            rootfs: skiff_oci::manifest::RootFs {
                kind: "layers".into(),
                diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
            },
        };
        let config = Bytes::from(serde_json::to_vec(&config).expect("configs serialize"));
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: Descriptor {
                media_type: media_type::OCI_CONFIG.into(),
                digest: sha256_digest(&config),
                size: config.len() as u64,
                platform: None,
                annotations: Default::default(),
            },
            layers: layers.iter().map(Layer::descriptor).collect(),
            annotations: Default::default(),
        };
        let manifest = Bytes::from(serde_json::to_vec(&manifest).expect("manifests serialize"));
        BuiltImage {
            layers,
            config,
            manifest,
        }
    }

    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    pub fn config_digest(&self) -> String {
        sha256_digest(&self.config)
    }

    /// Pushes blobs (those not there yet) and the manifest under `tag`; answers the
    /// manifest's digest.
    pub async fn push(&self, repo: &Repository, tag: &str) -> Result<String, EndpointError> {
        repo.ping().await?;
        let config = (self.config_digest(), self.config.clone());
        let layers = self
            .layers
            .iter()
            .map(|l| (sha256_digest(&l.bytes), l.bytes.clone()));
        for (digest, bytes) in std::iter::once(config).chain(layers) {
            if !repo.has_blob(&digest).await? {
                repo.push_blob(&digest, Payload::Bytes(bytes)).await?;
            }
        }
        repo.put_manifest(tag, media_type::OCI_MANIFEST, self.manifest.clone())
            .await
    }
}
