//! Image archives as `docker save` and `skopeo copy … oci-archive:` write them, read into
//! images ready to push: a Docker archive (`manifest.json` with `Config`, `RepoTags`,
//! `Layers`) or an OCI image layout (`oci-layout`, `index.json`, `blobs/`). Either may be
//! compressed.
//!
//! The archive is unpacked with the layer unpacker into a directory the caller owns, so a
//! hostile archive is as harmless as a hostile layer.

use std::io::Read;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;
use skiff_oci::{Descriptor, Index, Manifest, Platform, Reference, media_type, sha256_digest};

use crate::registry_client::{EndpointError, Payload, Repository};
use crate::unpack::{Limits, UnpackError, unpack_layer};

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("the archive cannot be unpacked: {0}")]
    Unpack(#[from] UnpackError),
    #[error(
        "the archive is neither a docker save archive (manifest.json) nor an OCI image layout (index.json)"
    )]
    UnknownFormat,
    #[error("the archive's {file} is not valid: {message}")]
    Invalid { file: String, message: String },
    #[error("the archive lacks {0}, which its manifest names")]
    Missing(String),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the archive's image {0} has no name; give one with --name")]
    Unnamed(String),
    #[error(transparent)]
    Reference(#[from] skiff_oci::ReferenceError),
    #[error("its index has no {platform} image (it has {available})")]
    NoPlatform { platform: String, available: String },
}

/// A blob of an image in the unpacked archive.
#[derive(Debug, Clone)]
pub struct ArchiveBlob {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

/// One image of an archive.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    /// Normalized references the archive gives it.
    pub names: Vec<Reference>,
    pub manifest: Bytes,
    pub media_type: String,
    /// The configuration first, then the layers.
    pub blobs: Vec<ArchiveBlob>,
}

impl ArchiveImage {
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    pub fn size(&self) -> u64 {
        self.blobs.iter().map(|b| b.size).sum()
    }

    /// Pushes the blobs the repository lacks and the manifest under `tag`; answers the
    /// manifest digest. `pushed` hears of each blob as it is sent.
    pub async fn push(
        &self,
        repo: &Repository,
        tag: &str,
        pushed: &dyn Fn(&ArchiveBlob, bool),
    ) -> Result<String, EndpointError> {
        repo.ping().await?;
        for blob in &self.blobs {
            let present = repo.has_blob(&blob.digest).await?;
            if !present {
                repo.push_blob(&blob.digest, Payload::File(blob.path.clone()))
                    .await?;
            }
            pushed(blob, !present);
        }
        repo.put_manifest(tag, &self.media_type, self.manifest.clone())
            .await
    }
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> ArchiveError + '_ {
    move |source| ArchiveError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn invalid(file: &str) -> impl FnOnce(serde_json::Error) -> ArchiveError + '_ {
    move |e| ArchiveError::Invalid {
        file: file.to_string(),
        message: e.to_string(),
    }
}

/// Unpacks `stream` into `dir` and reads its images. An image without a name gets `name`.
pub fn read_archive(
    stream: impl Read,
    dir: &Path,
    name: Option<&str>,
) -> Result<Vec<ArchiveImage>, ArchiveError> {
    unpack_layer(stream, dir, &Limits::default())?;
    let mut images = if dir.join("manifest.json").is_file() {
        read_docker(dir)?
    } else if dir.join("index.json").is_file() {
        read_oci(dir, name)?
    } else {
        return Err(ArchiveError::UnknownFormat);
    };
    for image in &mut images {
        if image.names.is_empty() {
            let name = name.ok_or_else(|| ArchiveError::Unnamed(image.digest()))?;
            image.names.push(Reference::parse(name)?);
        }
    }
    Ok(images)
}

/// A file of the archive as a blob: hashed, sized.
fn blob_at(dir: &Path, relative: &str) -> Result<ArchiveBlob, ArchiveError> {
    let path = dir.join(relative.trim_start_matches('/'));
    if relative.split('/').any(|c| c == "..") || !path.is_file() {
        return Err(ArchiveError::Missing(relative.to_string()));
    }
    let file = std::fs::File::open(&path).map_err(io_at(&path))?;
    let mut hashing = skiff_oci::digest::HashingReader::new(file);
    std::io::copy(&mut hashing, &mut std::io::sink()).map_err(io_at(&path))?;
    Ok(ArchiveBlob {
        size: hashing.bytes_read(),
        digest: hashing.digest(),
        path,
    })
}

fn layer_media_type(path: &Path) -> &'static str {
    let mut magic = [0u8; 4];
    let n = std::fs::File::open(path)
        .and_then(|mut f| f.read(&mut magic))
        .unwrap_or(0);
    match &magic[..n] {
        [0x1f, 0x8b, ..] => media_type::OCI_LAYER_GZIP,
        [0x28, 0xb5, 0x2f, 0xfd] => media_type::OCI_LAYER_ZSTD,
        _ => media_type::OCI_LAYER,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn read_docker(dir: &Path) -> Result<Vec<ArchiveImage>, ArchiveError> {
    let path = dir.join("manifest.json");
    let text = std::fs::read(&path).map_err(io_at(&path))?;
    let entries: Vec<DockerEntry> =
        serde_json::from_slice(&text).map_err(invalid("manifest.json"))?;
    entries
        .into_iter()
        .map(|entry| {
            let config = blob_at(dir, &entry.config)?;
            let layers = entry
                .layers
                .iter()
                .map(|l| blob_at(dir, l))
                .collect::<Result<Vec<_>, _>>()?;
            let descriptor = |blob: &ArchiveBlob, media_type: &str| Descriptor {
                media_type: media_type.to_string(),
                digest: blob.digest.clone(),
                size: blob.size,
                platform: None,
                annotations: Default::default(),
            };
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(media_type::OCI_MANIFEST.into()),
                config: descriptor(&config, media_type::OCI_CONFIG),
                layers: layers
                    .iter()
                    .map(|l| descriptor(l, layer_media_type(&l.path)))
                    .collect(),
                annotations: Default::default(),
            };
            let names = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|n| Reference::parse(n))
                .collect::<Result<Vec<_>, _>>()?;
            let mut blobs = vec![config];
            blobs.extend(layers);
            Ok(ArchiveImage {
                names,
                manifest: Bytes::from(serde_json::to_vec(&manifest).expect("manifests serialize")),
                media_type: media_type::OCI_MANIFEST.into(),
                blobs,
            })
        })
        .collect()
}

fn blob_path(digest: &str) -> Result<String, ArchiveError> {
    let hex = skiff_oci::digest_hex(digest).map_err(|e| ArchiveError::Invalid {
        file: "index.json".into(),
        message: e.to_string(),
    })?;
    Ok(format!("blobs/sha256/{hex}"))
}

fn read_oci(dir: &Path, name: Option<&str>) -> Result<Vec<ArchiveImage>, ArchiveError> {
    let path = dir.join("index.json");
    let text = std::fs::read(&path).map_err(io_at(&path))?;
    let index: Index = serde_json::from_slice(&text).map_err(invalid("index.json"))?;
    let platform = Platform::current();
    let mut images = Vec::new();
    for descriptor in &index.manifests {
        let mut manifest_desc = descriptor.clone();
        // A multi-platform image: this platform's manifest.
        if media_type::is_index(&descriptor.media_type) {
            let nested_path = blob_path(&descriptor.digest)?;
            let nested =
                std::fs::read(dir.join(&nested_path)).map_err(io_at(&dir.join(&nested_path)))?;
            let nested: Index = serde_json::from_slice(&nested).map_err(invalid(&nested_path))?;
            manifest_desc = nested
                .select(&platform)
                .ok_or_else(|| ArchiveError::NoPlatform {
                    platform: platform.to_string(),
                    available: nested.platforms().join(", "),
                })?
                .clone();
        }
        let manifest_path = blob_path(&manifest_desc.digest)?;
        let bytes = std::fs::read(dir.join(&manifest_path))
            .map_err(|_| ArchiveError::Missing(manifest_path.clone()))?;
        if sha256_digest(&bytes) != manifest_desc.digest {
            return Err(ArchiveError::Invalid {
                file: manifest_path,
                message: "its content does not match its digest".into(),
            });
        }
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(invalid(&manifest_path))?;
        let blobs = std::iter::once(&manifest.config)
            .chain(&manifest.layers)
            .map(|d| blob_at(dir, &blob_path(&d.digest)?))
            .collect::<Result<Vec<_>, _>>()?;
        let names = descriptor_names(descriptor, name)?;
        let media_type = manifest
            .media_type
            .clone()
            .unwrap_or_else(|| media_type::OCI_MANIFEST.to_string());
        images.push(ArchiveImage {
            names,
            manifest: Bytes::from(bytes),
            media_type,
            blobs,
        });
    }
    Ok(images)
}

/// The names an index entry gives: containerd's full name, or the OCI ref name, which
/// skopeo and docker write as a bare tag (then `name`'s repository carries it).
fn descriptor_names(
    descriptor: &Descriptor,
    name: Option<&str>,
) -> Result<Vec<Reference>, ArchiveError> {
    let annotations = &descriptor.annotations;
    if let Some(full) = annotations.get("io.containerd.image.name") {
        return Ok(vec![Reference::parse(full)?]);
    }
    let Some(ref_name) = annotations.get("org.opencontainers.image.ref.name") else {
        return Ok(Vec::new());
    };
    if ref_name.contains('/') || ref_name.contains(':') {
        return Ok(vec![Reference::parse(ref_name)?]);
    }
    match name {
        Some(name) => {
            let base = Reference::parse(name)?;
            Ok(vec![Reference::parse(&format!(
                "{}:{ref_name}",
                base.name()
            ))?])
        }
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::{Compression, LayerBuilder};

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn docker_save_archives_become_oci_manifests() {
        let layer = LayerBuilder::new()
            .file("hello", b"hi", 0o644)
            .finish(Compression::None);
        let config =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let manifest = r#"[{"Config":"cfg.json","RepoTags":["busybox:1.36","gcr.io/p/hello-node:v1"],"Layers":["abc/layer.tar"]}]"#;
        let archive = tar_of(&[
            ("cfg.json", config),
            ("abc/layer.tar", &layer.bytes),
            ("manifest.json", manifest.as_bytes()),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let images = read_archive(&archive[..], dir.path(), None).unwrap();
        assert_eq!(images.len(), 1);
        let names: Vec<String> = images[0].names.iter().map(ToString::to_string).collect();
        assert_eq!(
            names,
            ["docker.io/library/busybox:1.36", "gcr.io/p/hello-node:v1"]
        );
        let m: Manifest = serde_json::from_slice(&images[0].manifest).unwrap();
        assert_eq!(m.config.digest, sha256_digest(config));
        assert_eq!(m.layers[0].digest, sha256_digest(&layer.bytes));
        assert_eq!(m.layers[0].media_type, media_type::OCI_LAYER);
        assert_eq!(images[0].blobs.len(), 2);
        assert_eq!(images[0].size(), (config.len() + layer.bytes.len()) as u64);
    }

    #[test]
    fn oci_layouts_take_names_from_annotations_or_the_given_name() {
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = LayerBuilder::new()
            .file("x", b"x", 0o644)
            .finish(Compression::Gzip);
        let d = |bytes: &[u8], mt: &str| Descriptor {
            media_type: mt.into(),
            digest: sha256_digest(bytes),
            size: bytes.len() as u64,
            platform: None,
            annotations: Default::default(),
        };
        let manifest = serde_json::to_vec(&Manifest {
            schema_version: 2,
            media_type: Some(media_type::OCI_MANIFEST.into()),
            config: d(config, media_type::OCI_CONFIG),
            layers: vec![d(&layer.bytes, media_type::OCI_LAYER_GZIP)],
            annotations: Default::default(),
        })
        .unwrap();
        let mut entry = d(&manifest, media_type::OCI_MANIFEST);
        entry
            .annotations
            .insert("org.opencontainers.image.ref.name".into(), "v1".into());
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]}).to_string();
        let path = |b: &[u8]| {
            format!(
                "blobs/sha256/{}",
                skiff_oci::digest_hex(&sha256_digest(b)).unwrap()
            )
        };
        let archive = tar_of(&[
            ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            ("index.json", index.as_bytes()),
            (&path(&manifest), &manifest),
            (&path(config), config),
            (&path(&layer.bytes), &layer.bytes),
        ]);
        let dir = tempfile::tempdir().unwrap();
        // A bare tag needs a repository to go with.
        assert!(matches!(
            read_archive(&archive[..], dir.path(), None),
            Err(ArchiveError::Unnamed(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let images = read_archive(&archive[..], dir.path(), Some("hello-node")).unwrap();
        assert_eq!(
            images[0].names[0].to_string(),
            "docker.io/library/hello-node:v1"
        );
        assert_eq!(images[0].digest(), sha256_digest(&manifest));
        assert_eq!(images[0].manifest, manifest);

        let dir = tempfile::tempdir().unwrap();
        let missing = tar_of(&[("oci-layout", b"{}"), ("index.json", index.as_bytes())]);
        assert!(matches!(
            read_archive(&missing[..], dir.path(), Some("x")),
            Err(ArchiveError::Missing(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        let neither = tar_of(&[("README", b"hello")]);
        assert_eq!(
            read_archive(&neither[..], dir.path(), None)
                .unwrap_err()
                .to_string(),
            "the archive is neither a docker save archive (manifest.json) nor an OCI image layout (index.json)"
        );
    }
}
