//! The registry's content-addressed store, on disk under one root:
//!
//! ```text
//! blobs/sha256/<hex>                        content (layers, configs, manifests), verified
//! uploads/<id>                              uploads in progress
//! repositories/<name>/layers/<hex>          a blob linked into the repository
//! repositories/<name>/manifests/<hex>       a manifest of the repository (holds its media type)
//! repositories/<name>/tags/<tag>            the digest a tag points at
//! ```
//!
//! Writes land in a temporary file and are renamed into place, so a reader never sees a
//! partial blob and a crash leaves at worst an orphan upload.

use std::path::{Path, PathBuf};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use skiff_oci::Sha256;
use tokio::io::AsyncWriteExt;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid repository name {0:?}")]
    NameInvalid(String),
    #[error("invalid digest {0:?} (only sha256:<64 hex digits> is supported)")]
    DigestInvalid(String),
    #[error("the content's digest is {actual}, not the {expected} it was sent as")]
    DigestMismatch { expected: String, actual: String },
    #[error("invalid tag {0:?}")]
    TagInvalid(String),
    #[error("blob unknown: {0}")]
    BlobUnknown(String),
    #[error("manifest unknown: {0}")]
    ManifestUnknown(String),
    #[error("upload unknown: {0}")]
    UploadUnknown(String),
    #[error("registry storage: {0}")]
    Io(#[from] std::io::Error),
}

type Result<T> = std::result::Result<T, StorageError>;

#[derive(Clone)]
pub struct Storage {
    root: PathBuf,
    /// The running digest of each upload in progress, so finishing one does not read it
    /// again. Absent after a restart (or overlapping appends): the file is hashed then.
    hashes: Arc<Mutex<HashMap<String, Sha256>>>,
}

pub use skiff_oci::sha256_digest;

pub fn digest_hex(digest: &str) -> Result<&str> {
    skiff_oci::digest_hex(digest).map_err(|e| StorageError::DigestInvalid(e.0))
}

pub fn check_name(name: &str) -> Result<()> {
    if skiff_oci::reference::valid_repository(name) {
        Ok(())
    } else {
        Err(StorageError::NameInvalid(name.to_string()))
    }
}

pub fn check_tag(tag: &str) -> Result<()> {
    if skiff_oci::reference::valid_tag(tag) {
        Ok(())
    } else {
        Err(StorageError::TagInvalid(tag.to_string()))
    }
}

fn new_id() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    skiff_oci::digest::hex(&b)
}

impl Storage {
    pub fn open(root: impl Into<PathBuf>) -> Result<Storage> {
        let root = root.into();
        for dir in ["blobs/sha256", "uploads", "repositories"] {
            std::fs::create_dir_all(root.join(dir))?;
        }
        Ok(Storage {
            root,
            hashes: Arc::default(),
        })
    }

    fn blob_path(&self, hex: &str) -> PathBuf {
        self.root.join("blobs/sha256").join(hex)
    }

    fn repo(&self, name: &str) -> PathBuf {
        self.root.join("repositories").join(name)
    }

    fn upload_path(&self, id: &str) -> Result<PathBuf> {
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StorageError::UploadUnknown(id.to_string()));
        }
        Ok(self.root.join("uploads").join(id))
    }

    /// A blob of the repository: its path and size.
    pub async fn blob(&self, name: &str, digest: &str) -> Result<(PathBuf, u64)> {
        check_name(name)?;
        let hex = digest_hex(digest)?;
        let linked = tokio::fs::try_exists(self.repo(name).join("layers").join(hex)).await?
            || tokio::fs::try_exists(self.repo(name).join("manifests").join(hex)).await?;
        let path = self.blob_path(hex);
        match tokio::fs::metadata(&path).await {
            Ok(meta) if linked => Ok((path, meta.len())),
            _ => Err(StorageError::BlobUnknown(digest.to_string())),
        }
    }

    async fn link(&self, name: &str, kind: &str, hex: &str, content: &str) -> Result<()> {
        let dir = self.repo(name).join(kind);
        tokio::fs::create_dir_all(&dir).await?;
        write_atomically(&dir.join(hex), content.as_bytes()).await
    }

    /// Links an existing blob of another repository into this one (a cross-repository
    /// mount). False if `from` does not have it.
    pub async fn mount(&self, name: &str, digest: &str, from: &str) -> Result<bool> {
        check_name(name)?;
        check_name(from)?;
        if self.blob(from, digest).await.is_err() {
            return Ok(false);
        }
        self.link(name, "layers", digest_hex(digest)?, "").await?;
        Ok(true)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn hashes(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sha256>> {
        self.hashes.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub async fn start_upload(&self, name: &str) -> Result<String> {
        check_name(name)?;
        let id = new_id();
        tokio::fs::File::create(self.upload_path(&id)?).await?;
        self.hashes().insert(id.clone(), Sha256::new());
        Ok(id)
    }

    /// Bytes received so far by an upload.
    pub async fn upload_size(&self, id: &str) -> Result<u64> {
        match tokio::fs::metadata(self.upload_path(id)?).await {
            Ok(meta) => Ok(meta.len()),
            Err(_) => Err(StorageError::UploadUnknown(id.to_string())),
        }
    }

    /// Appends a stream of chunks to an upload, hashing them on the way; answers the new
    /// size.
    pub async fn append_stream<E: std::fmt::Display>(
        &self,
        id: &str,
        mut chunks: impl Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    ) -> Result<u64> {
        let path = self.upload_path(id)?;
        let file = tokio::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .await
            .map_err(|_| StorageError::UploadUnknown(id.to_string()))?;
        let size = file.metadata().await?.len();
        // The running hash is taken out while this append runs; it goes back only if it
        // covered the upload up to here.
        let mut hash = self.hashes().remove(id).filter(|h| h.len() == size);
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        while let Some(chunk) = chunks.next().await {
            let chunk =
                chunk.map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?;
            if let Some(h) = &mut hash {
                h.update(&chunk);
            }
            out.write_all(&chunk).await?;
        }
        out.flush().await?;
        let size = out.get_ref().metadata().await?.len();
        if let Some(h) = hash {
            self.hashes().insert(id.to_string(), h);
        }
        Ok(size)
    }

    /// Appends a chunk to an upload; answers the new size.
    pub async fn append(&self, id: &str, chunk: &[u8]) -> Result<u64> {
        let chunk = Bytes::copy_from_slice(chunk);
        self.append_stream(
            id,
            futures_util::stream::iter([Ok::<_, std::convert::Infallible>(chunk)]),
        )
        .await
    }

    /// Completes an upload: its content must hash to `digest`; it becomes a blob linked
    /// into the repository.
    pub async fn finish_upload(&self, name: &str, id: &str, digest: &str) -> Result<()> {
        check_name(name)?;
        let hex = digest_hex(digest)?.to_string();
        let path = self.upload_path(id)?;
        let size = tokio::fs::metadata(&path)
            .await
            .map_err(|_| StorageError::UploadUnknown(id.to_string()))?
            .len();
        let running = self.hashes().remove(id).filter(|h| h.len() == size);
        let actual = match running {
            Some(h) => h.finish(),
            None => hash_file(&path)
                .await
                .map_err(|_| StorageError::UploadUnknown(id.to_string()))?,
        };
        if actual != digest {
            let _ = tokio::fs::remove_file(&path).await;
            return Err(StorageError::DigestMismatch {
                expected: digest.to_string(),
                actual,
            });
        }
        tokio::fs::rename(&path, self.blob_path(&hex)).await?;
        self.link(name, "layers", &hex, "").await
    }

    pub async fn cancel_upload(&self, id: &str) -> Result<()> {
        self.hashes().remove(id);
        tokio::fs::remove_file(self.upload_path(id)?)
            .await
            .map_err(|_| StorageError::UploadUnknown(id.to_string()))
    }

    /// Stores a manifest under its digest (and `reference`, when that is a tag); answers
    /// the digest. A digest reference must match the content.
    pub async fn put_manifest(
        &self,
        name: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<String> {
        check_name(name)?;
        let digest = sha256_digest(bytes);
        if reference.starts_with("sha256:") {
            digest_hex(reference)?;
            if reference != digest {
                return Err(StorageError::DigestMismatch {
                    expected: reference.to_string(),
                    actual: digest,
                });
            }
        } else {
            check_tag(reference)?;
        }
        let hex = digest_hex(&digest)?.to_string();
        write_atomically(&self.blob_path(&hex), bytes).await?;
        self.link(name, "manifests", &hex, media_type).await?;
        if !reference.starts_with("sha256:") {
            self.link(name, "tags", reference, &digest).await?;
        }
        Ok(digest)
    }

    /// A manifest by tag or digest: (content, media type, digest).
    pub async fn manifest(&self, name: &str, reference: &str) -> Result<(Vec<u8>, String, String)> {
        check_name(name)?;
        let unknown = || StorageError::ManifestUnknown(format!("{name}:{reference}"));
        let digest = if reference.starts_with("sha256:") {
            digest_hex(reference)?;
            reference.to_string()
        } else {
            check_tag(reference)?;
            tokio::fs::read_to_string(self.repo(name).join("tags").join(reference))
                .await
                .map_err(|_| unknown())?
        };
        let hex = digest_hex(&digest)?;
        let media_type = tokio::fs::read_to_string(self.repo(name).join("manifests").join(hex))
            .await
            .map_err(|_| unknown())?;
        let bytes = tokio::fs::read(self.blob_path(hex))
            .await
            .map_err(|_| unknown())?;
        Ok((bytes, media_type, digest))
    }

    /// Unlinks a manifest from the repository: by digest, with every tag pointing at it; by
    /// tag, just the tag. (Content stays until a garbage collection; other repositories may
    /// still link it.)
    pub async fn delete_manifest(&self, name: &str, reference: &str) -> Result<()> {
        check_name(name)?;
        let unknown = || StorageError::ManifestUnknown(format!("{name}:{reference}"));
        let tags_dir = self.repo(name).join("tags");
        if !reference.starts_with("sha256:") {
            check_tag(reference)?;
            return tokio::fs::remove_file(tags_dir.join(reference))
                .await
                .map_err(|_| unknown());
        }
        let hex = digest_hex(reference)?;
        tokio::fs::remove_file(self.repo(name).join("manifests").join(hex))
            .await
            .map_err(|_| unknown())?;
        for tag in list_dir(&tags_dir).await? {
            let path = tags_dir.join(&tag);
            if tokio::fs::read_to_string(&path)
                .await
                .is_ok_and(|d| d == reference)
            {
                tokio::fs::remove_file(&path).await?;
            }
        }
        Ok(())
    }

    /// Unlinks a blob from the repository.
    pub async fn delete_blob(&self, name: &str, digest: &str) -> Result<()> {
        check_name(name)?;
        let hex = digest_hex(digest)?;
        tokio::fs::remove_file(self.repo(name).join("layers").join(hex))
            .await
            .map_err(|_| StorageError::BlobUnknown(digest.to_string()))
    }

    pub async fn tags(&self, name: &str) -> Result<Vec<String>> {
        check_name(name)?;
        let mut tags = list_dir(&self.repo(name).join("tags")).await?;
        if tags.is_empty() && !tokio::fs::try_exists(self.repo(name)).await? {
            return Err(StorageError::NameInvalid(name.to_string()));
        }
        tags.sort();
        Ok(tags)
    }

    /// Every repository name, sorted.
    pub async fn catalog(&self) -> Result<Vec<String>> {
        let root = self.root.clone();
        let repos = tokio::task::spawn_blocking(move || crate::gc::repositories(&root))
            .await
            .map_err(|e| StorageError::Io(std::io::Error::other(e.to_string())))?;
        // A repository shows once it has a manifest (blobs alone do not make an image).
        let mut names: Vec<String> = repos
            .into_iter()
            .filter(|(_, dir)| dir.join("manifests").is_dir())
            .map(|(name, _)| name)
            .collect();
        names.sort();
        Ok(names)
    }
}

async fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    while let Some(entry) = entries.next_entry().await? {
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

async fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", new_id()));
    tokio::fs::write(&tmp, bytes).await?;
    tokio::fs::rename(&tmp, path).await?;
    Ok(())
}

async fn hash_file(path: &Path) -> std::io::Result<String> {
    use tokio::io::AsyncReadExt;
    let mut file = tokio::fs::File::open(path).await?;
    let mut hash = skiff_oci::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        hash.update(&buf[..n]);
    }
    Ok(hash.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_names_tags_and_digests_are_storage_errors() {
        assert!(matches!(
            check_name("UPPER"),
            Err(StorageError::NameInvalid(_))
        ));
        assert!(matches!(
            check_tag(".hidden"),
            Err(StorageError::TagInvalid(_))
        ));
        assert!(matches!(
            digest_hex("md5:00"),
            Err(StorageError::DigestInvalid(_))
        ));
        assert!(check_name("gcr.io/p/hello-node").is_ok());
    }

    #[tokio::test]
    async fn uploads_are_verified_and_linked_per_repository() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let id = s.start_upload("a/b").await.unwrap();
        s.append(&id, b"hello ").await.unwrap();
        assert_eq!(s.append(&id, b"world").await.unwrap(), 11);
        let digest = sha256_digest(b"hello world");
        let wrong = sha256_digest(b"other");
        let id2 = s.start_upload("a/b").await.unwrap();
        s.append(&id2, b"hello world").await.unwrap();
        assert!(matches!(
            s.finish_upload("a/b", &id2, &wrong).await,
            Err(StorageError::DigestMismatch { .. })
        ));
        s.finish_upload("a/b", &id, &digest).await.unwrap();
        assert_eq!(s.blob("a/b", &digest).await.unwrap().1, 11);
        // After a restart the running hash is gone: the upload is hashed from disk.
        let id3 = s.start_upload("a/b").await.unwrap();
        s.append(&id3, b"hello world").await.unwrap();
        let restarted = Storage::open(dir.path()).unwrap();
        restarted.append(&id3, b"!").await.unwrap();
        let whole = sha256_digest(b"hello world!");
        restarted.finish_upload("a/b", &id3, &whole).await.unwrap();
        assert_eq!(restarted.blob("a/b", &whole).await.unwrap().1, 12);
        assert!(
            matches!(
                s.blob("c", &digest).await,
                Err(StorageError::BlobUnknown(_))
            ),
            "not linked into c"
        );
        assert!(s.mount("c", &digest, "a/b").await.unwrap());
        assert!(s.blob("c", &digest).await.is_ok());
    }

    #[tokio::test]
    async fn manifests_by_tag_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let body = br#"{"schemaVersion":2}"#;
        let digest = s
            .put_manifest(
                "x",
                "v1",
                body,
                "application/vnd.oci.image.manifest.v1+json",
            )
            .await
            .unwrap();
        let (bytes, media, d) = s.manifest("x", "v1").await.unwrap();
        assert_eq!(
            (bytes.as_slice(), media.as_str(), d.as_str()),
            (
                &body[..],
                "application/vnd.oci.image.manifest.v1+json",
                digest.as_str()
            )
        );
        assert!(s.manifest("x", &digest).await.is_ok());
        assert!(matches!(
            s.manifest("x", "v2").await,
            Err(StorageError::ManifestUnknown(_))
        ));
        assert!(matches!(
            s.put_manifest("x", &sha256_digest(b"no"), body, "m").await,
            Err(StorageError::DigestMismatch { .. })
        ));
        assert_eq!(s.tags("x").await.unwrap(), ["v1"]);
        s.put_manifest("deep/er/name", "latest", body, "m")
            .await
            .unwrap();
        assert_eq!(s.catalog().await.unwrap(), ["deep/er/name", "x"]);
    }
}
