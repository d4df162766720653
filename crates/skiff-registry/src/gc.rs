//! Garbage collection of the registry's content: mark every blob a manifest of any
//! repository refers to (and the manifests themselves), sweep the rest.
//!
//! Pushes race with a sweep (blobs go up before the manifest that refers to them), so
//! content and links younger than the grace period are kept, and uploads are collected only
//! when abandoned for a day. Dangling `layers/` links left by a sweep are removed with it.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::storage::Storage;

/// Uploads untouched this long are abandoned.
const ABANDONED_UPLOAD: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub blobs_removed: usize,
    pub bytes_freed: u64,
    pub uploads_removed: usize,
}

fn young(path: &Path, grace: Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_none_or(|age| age < grace)
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect()
}

/// Every repository: its name and directory (one holding `manifests/`, `layers/` or
/// `tags/`; names contain slashes, so repositories nest).
pub(crate) fn repositories(root: &Path) -> Vec<(String, PathBuf)> {
    let base = root.join("repositories");
    let mut out = Vec::new();
    let mut stack = vec![base.clone()];
    while let Some(dir) = stack.pop() {
        let mut is_repo = false;
        for (name, path) in entries(&dir) {
            match name.as_str() {
                "manifests" | "layers" | "tags" => is_repo = true,
                _ if path.is_dir() => stack.push(path),
                _ => {}
            }
        }
        if is_repo && let Ok(name) = dir.strip_prefix(&base) {
            out.push((name.to_string_lossy().into_owned(), dir));
        }
    }
    out
}

impl Storage {
    /// Removes content nothing refers to (see the module documentation).
    pub fn collect_garbage(&self, grace: Duration) -> GcReport {
        let root = self.root();
        let blobs = root.join("blobs/sha256");
        let mut marked: HashSet<String> = HashSet::new();
        let repos: Vec<PathBuf> = repositories(root).into_iter().map(|(_, dir)| dir).collect();
        for repo in &repos {
            for (hex, _) in entries(&repo.join("manifests")) {
                if let Ok(bytes) = std::fs::read(blobs.join(&hex))
                    && let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes)
                {
                    for digest in skiff_oci::manifest::references(&doc) {
                        if let Some(h) = digest.strip_prefix("sha256:") {
                            marked.insert(h.to_string());
                        }
                    }
                }
                marked.insert(hex);
            }
            // A blob linked moments ago may be waiting for its manifest.
            for (hex, link) in entries(&repo.join("layers")) {
                if young(&link, grace) {
                    marked.insert(hex);
                }
            }
        }
        let mut report = GcReport::default();
        for (hex, path) in entries(&blobs) {
            if marked.contains(&hex) || hex.contains(".tmp-") || young(&path, grace) {
                continue;
            }
            let size = std::fs::metadata(&path).map_or(0, |m| m.len());
            if std::fs::remove_file(&path).is_ok() {
                report.blobs_removed += 1;
                report.bytes_freed += size;
            }
        }
        for repo in &repos {
            for (hex, link) in entries(&repo.join("layers")) {
                if !blobs.join(&hex).exists() {
                    let _ = std::fs::remove_file(link);
                }
            }
        }
        for (_, path) in entries(&root.join("uploads")) {
            if !young(&path, ABANDONED_UPLOAD) && std::fs::remove_file(&path).is_ok() {
                report.uploads_removed += 1;
            }
        }
        report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_oci::sha256_digest;

    async fn blob(s: &Storage, repo: &str, content: &[u8]) -> String {
        let id = s.start_upload(repo).await.unwrap();
        s.append(&id, content).await.unwrap();
        let digest = sha256_digest(content);
        s.finish_upload(repo, &id, &digest).await.unwrap();
        digest
    }

    #[tokio::test]
    async fn unreferenced_content_goes_and_referenced_content_stays() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let layer = blob(&s, "app", b"layer").await;
        let config = blob(&s, "app", b"config").await;
        let orphan = blob(&s, "app", b"pushed, never used").await;
        let manifest = serde_json::json!({"schemaVersion": 2,
            "config": {"digest": config, "size": 6}, "layers": [{"digest": layer, "size": 5}]});
        let bytes = manifest.to_string();
        let digest = s
            .put_manifest("app", "v1", bytes.as_bytes(), "m")
            .await
            .unwrap();

        // Within the grace period nothing goes.
        assert_eq!(
            s.collect_garbage(Duration::from_secs(3600)),
            GcReport::default()
        );
        let report = s.collect_garbage(Duration::ZERO);
        assert_eq!(report.blobs_removed, 1);
        assert_eq!(report.bytes_freed, 18);
        assert!(s.blob("app", &orphan).await.is_err());
        assert!(s.blob("app", &layer).await.is_ok());

        // Deleting the manifest leaves everything unreferenced.
        s.delete_manifest("app", &digest).await.unwrap();
        let report = s.collect_garbage(Duration::ZERO);
        assert_eq!(report.blobs_removed, 3, "manifest, config and layer");
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs/sha256"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("repositories/app/layers"))
                .unwrap()
                .count(),
            0,
            "dangling links go too"
        );
    }

    #[tokio::test]
    async fn content_another_repository_refers_to_stays() {
        let dir = tempfile::tempdir().unwrap();
        let s = Storage::open(dir.path()).unwrap();
        let layer = blob(&s, "a", b"shared layer").await;
        assert!(s.mount("b", &layer, "a").await.unwrap());
        let manifest = serde_json::json!({"schemaVersion": 2, "config": {"digest": layer, "size": 12}, "layers": []});
        let bytes = manifest.to_string();
        let da = s
            .put_manifest("a", "v1", bytes.as_bytes(), "m")
            .await
            .unwrap();
        s.put_manifest("b", "v1", bytes.as_bytes(), "m")
            .await
            .unwrap();
        s.delete_manifest("a", &da).await.unwrap();
        assert_eq!(
            s.collect_garbage(Duration::ZERO).blobs_removed,
            0,
            "b still has both"
        );
        assert!(s.blob("b", &layer).await.is_ok());
    }
}
