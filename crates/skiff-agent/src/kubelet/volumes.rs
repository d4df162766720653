//! Volumes whose files the node writes: `configMap`, `secret`, `downwardAPI` and `projected`
//! (any mix of those three and ServiceAccount tokens), plus `emptyDir` with `medium: Memory` (a tmpfs).
//!
//! Files are written as the kubelet's atomic writer lays them out: the payload in a fresh
//! `..<stamp>` directory, `..data` a symlink to it (swapped by rename), and each top-level
//! name a symlink through `..data`. A container sees a whole old or a whole new set, never
//! a mix; the payload is only rewritten when it changed.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    DownwardAPIVolumeFile, KeyToPath, Pod, ResourceFieldSelector, Volume,
};
use kube::ResourceExt;

use super::errors::{FieldError, MountError, VolumeError};
use super::machine::Machine;
use super::pod_dir::PodDir;
use super::sources::{Source, Sources};
use super::tokens::Tokens;

/// Upstream's default mode for files of these volumes.
const DEFAULT_MODE: u32 = 0o644;

/// A volume's files: relative path → (content, mode).
pub type Payload = BTreeMap<String, (Vec<u8>, u32)>;

/// Whether the kubelet writes this volume's files (rather than binding a directory).
pub fn is_written(v: &Volume) -> bool {
    v.config_map.is_some()
        || v.secret.is_some()
        || v.downward_api.is_some()
        || v.projected.is_some()
}

fn mode_of(mode: Option<i32>, default: u32) -> u32 {
    mode.map_or(default, |m| (m as u32) & 0o7777)
}

/// Checks a path inside a volume as upstream validates it: relative, no `..`.
fn checked_path(path: &str) -> Result<String, VolumeError> {
    let p = Path::new(path);
    let fine = !path.is_empty()
        && p.components().all(|c| matches!(c, Component::Normal(_)))
        && !path.starts_with("..");
    if fine {
        Ok(path.to_string())
    } else {
        Err(VolumeError::Path(path.to_string()))
    }
}

/// Keys of a ConfigMap or Secret as files: every key, or only `items` at their paths.
fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: Option<&Vec<KeyToPath>>,
    default_mode: u32,
    what: &str,
    optional: bool,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    match items {
        None => {
            for (k, v) in data {
                out.insert(checked_path(k)?, (v.clone(), default_mode));
            }
        }
        Some(items) => {
            for item in items {
                match data.get(&item.key) {
                    Some(v) => {
                        out.insert(
                            checked_path(&item.path)?,
                            (v.clone(), mode_of(item.mode, default_mode)),
                        );
                    }
                    None if optional => {}
                    None => {
                        return Err(VolumeError::MissingKey {
                            key: item.key.clone(),
                            what: what.to_string(),
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// Where a volume's files come from when they are a ConfigMap's or Secret's keys (the
/// same four fields in a volume and in a projected source).
struct Keys<'a> {
    source: Source,
    name: &'a str,
    items: Option<&'a Vec<KeyToPath>>,
    optional: bool,
}

impl<'a> Keys<'a> {
    fn of(
        source: Source,
        name: &'a str,
        items: &'a Option<Vec<KeyToPath>>,
        optional: Option<bool>,
    ) -> Keys<'a> {
        Keys {
            source,
            name,
            items: items.as_ref(),
            optional: optional.unwrap_or(false),
        }
    }
}

/// `key="value"` lines, sorted, as the downward API writes labels and annotations.
fn map_file(map: &BTreeMap<String, String>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A `resourceFieldRef` value for `container` of `pod`: its limit (or request), else the
/// node's allocatable for limits, divided by `divisor` and rounded up.
pub fn resource_field(
    pod: &Pod,
    container: &str,
    field: &ResourceFieldSelector,
    node_cpus: i64,
    node_memory_bytes: i64,
) -> Result<String, FieldError> {
    let c = pod
        .spec
        .iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == container)
        .ok_or_else(|| FieldError::NoContainer(container.to_string()))?;
    let resources = c.resources.as_ref();
    let unsupported = || FieldError::Resource(field.resource.clone());
    let (kind, resource) = field.resource.split_once('.').ok_or_else(unsupported)?;
    let set = match kind {
        "limits" => resources.and_then(|r| r.limits.as_ref()),
        "requests" => resources.and_then(|r| r.requests.as_ref()),
        _ => return Err(unsupported()),
    };
    let given = set.and_then(|m| m.get(resource)).map(|q| q.0.clone());
    let divisor = field.divisor.as_ref().map(|q| q.0.as_str()).unwrap_or("1");
    match resource {
        "cpu" => {
            let millis = given
                .as_deref()
                .and_then(skiff_apimachinery::quantity::millis)
                .unwrap_or(if kind == "limits" {
                    node_cpus * 1000
                } else {
                    0
                });
            let per = skiff_apimachinery::quantity::millis(divisor)
                .filter(|d| *d > 0)
                .unwrap_or(1000);
            Ok(((millis + per - 1) / per).to_string())
        }
        "memory" | "ephemeral-storage" => {
            let bytes = given
                .as_deref()
                .and_then(skiff_apimachinery::quantity::units)
                .unwrap_or(if kind == "limits" && resource == "memory" {
                    node_memory_bytes
                } else {
                    0
                });
            let per = skiff_apimachinery::quantity::units(divisor)
                .filter(|d| *d > 0)
                .unwrap_or(1);
            Ok(((bytes + per - 1) / per).to_string())
        }
        _ => Err(unsupported()),
    }
}

/// [`resource_field`] with this node's CPUs and memory as the defaults.
pub fn resource_field_on_node(
    pod: &Pod,
    container: &str,
    field: &ResourceFieldSelector,
) -> Result<String, FieldError> {
    resource_field(
        pod,
        container,
        field,
        super::host::cpus() as i64,
        (super::host::memory_kib() * 1024) as i64,
    )
}

/// The volumes manager: makes the files of every configMap, secret, downwardAPI and
/// projected volume a pod has (from the sources and tokens it holds), and mounts its
/// memory-backed emptyDirs on the machine.
pub struct Volumes {
    sources: Arc<Sources>,
    tokens: Tokens,
    machine: Arc<dyn Machine>,
}

impl Volumes {
    pub fn new(sources: Arc<Sources>, tokens: Tokens, machine: Arc<dyn Machine>) -> Volumes {
        Volumes {
            sources,
            tokens,
            machine,
        }
    }

    /// Sets up every volume of the pod that needs it. An error names the volume, as the
    /// kubelet's FailedMount events do.
    pub async fn ensure(
        &self,
        pod: &Pod,
        dir: &PodDir,
        fields: &BTreeMap<String, String>,
    ) -> Result<(), MountError> {
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            self.set_up(pod, v, &dir.volume(&v.name), fields)
                .await
                .map_err(|cause| MountError {
                    volume: v.name.clone(),
                    cause,
                })?;
        }
        Ok(())
    }

    /// Forgets what it holds for pods no longer on the node.
    pub fn retain_pods(&self, live: &HashSet<String>) {
        self.tokens.retain_pods(live);
    }

    async fn set_up(
        &self,
        pod: &Pod,
        v: &Volume,
        path: &Path,
        fields: &BTreeMap<String, String>,
    ) -> Result<(), VolumeError> {
        if is_written(v) {
            let payload = self.payload(pod, v, fields).await?;
            let target = path.to_path_buf();
            tokio::task::spawn_blocking(move || write_atomic(&target, &payload))
                .await
                .map_err(std::io::Error::other)??;
        } else if let Some(empty) = &v.empty_dir
            && empty.medium.as_deref() == Some("Memory")
        {
            let size = empty
                .size_limit
                .as_ref()
                .and_then(|q| skiff_apimachinery::quantity::units(&q.0));
            self.machine.mount_memory(path, size)?;
        }
        Ok(())
    }

    /// The files of one written volume.
    async fn payload(
        &self,
        pod: &Pod,
        v: &Volume,
        fields: &BTreeMap<String, String>,
    ) -> Result<Payload, VolumeError> {
        let ns = pod.namespace().unwrap_or_default();
        let mut out = Payload::new();
        if let Some(cm) = &v.config_map {
            let mode = mode_of(cm.default_mode, DEFAULT_MODE);
            let from = Keys::of(Source::ConfigMap, &cm.name, &cm.items, cm.optional);
            self.keys_into(&ns, from, mode, &mut out).await?;
        } else if let Some(s) = &v.secret {
            let name = s.secret_name.as_deref().unwrap_or_default();
            let mode = mode_of(s.default_mode, DEFAULT_MODE);
            let from = Keys::of(Source::Secret, name, &s.items, s.optional);
            self.keys_into(&ns, from, mode, &mut out).await?;
        } else if let Some(d) = &v.downward_api {
            let mode = mode_of(d.default_mode, DEFAULT_MODE);
            let items = d.items.as_deref().unwrap_or(&[]);
            downward_files(pod, items, mode, fields, &mut out)?;
        } else if let Some(p) = &v.projected {
            let mode = mode_of(p.default_mode, DEFAULT_MODE);
            for source in p.sources.iter().flatten() {
                if let Some(cm) = &source.config_map {
                    let from = Keys::of(Source::ConfigMap, &cm.name, &cm.items, cm.optional);
                    self.keys_into(&ns, from, mode, &mut out).await?;
                }
                if let Some(s) = &source.secret {
                    let from = Keys::of(Source::Secret, &s.name, &s.items, s.optional);
                    self.keys_into(&ns, from, mode, &mut out).await?;
                }
                if let Some(d) = &source.downward_api {
                    let items = d.items.as_deref().unwrap_or(&[]);
                    downward_files(pod, items, mode, fields, &mut out)?;
                }
                if let Some(t) = &source.service_account_token {
                    let token = self.tokens.token(pod, t).await?;
                    out.insert(checked_path(&t.path)?, (token.into_bytes(), mode));
                }
                if source.cluster_trust_bundle.is_some() {
                    return Err(VolumeError::ClusterTrustBundle);
                }
            }
        }
        Ok(out)
    }

    /// A ConfigMap's or Secret's keys as files of a volume (see [`key_files`]).
    async fn keys_into(
        &self,
        ns: &str,
        from: Keys<'_>,
        mode: u32,
        out: &mut Payload,
    ) -> Result<(), VolumeError> {
        let data = self
            .sources
            .keys(from.source, ns, from.name, from.optional)
            .await?;
        let what = format!("{} {:?}", from.source.kind().to_lowercase(), from.name);
        key_files(&data, from.items, mode, &what, from.optional, out)
    }
}

/// The downward API's files: fields, labels, annotations, resources.
fn downward_files(
    pod: &Pod,
    items: &[DownwardAPIVolumeFile],
    default_mode: u32,
    fields: &BTreeMap<String, String>,
    out: &mut Payload,
) -> Result<(), VolumeError> {
    for item in items {
        let value = if let Some(f) = &item.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => map_file(pod.labels()),
                "metadata.annotations" => map_file(pod.annotations()),
                path => fields
                    .get(path)
                    .cloned()
                    .ok_or_else(|| FieldError::FieldRef(path.to_string()))?,
            }
        } else if let Some(r) = &item.resource_field_ref {
            let container = r.container_name.clone().unwrap_or_default();
            resource_field_on_node(pod, &container, r)?
        } else {
            return Err(VolumeError::NoField(item.path.clone()));
        };
        out.insert(
            checked_path(&item.path)?,
            (value.into_bytes(), mode_of(item.mode, default_mode)),
        );
    }
    Ok(())
}

/// Writes `payload` into `dir` with the atomic writer's layout; nothing changes when the
/// payload is what `..data` holds already.
pub fn write_atomic(dir: &Path, payload: &Payload) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let data_link = dir.join("..data");
    if let Ok(current) = std::fs::read_link(&data_link)
        && matches(&dir.join(&current), payload)
    {
        return Ok(());
    }
    let stamp = format!(
        "..{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let fresh = dir.join(&stamp);
    std::fs::create_dir(&fresh)?;
    std::fs::set_permissions(&fresh, std::fs::Permissions::from_mode(0o755))?;
    for (path, (content, mode)) in payload {
        let file = fresh.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, content)?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(*mode))?;
    }
    let old = std::fs::read_link(&data_link).ok();
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link)?;
    std::fs::rename(&tmp_link, &data_link)?;
    // Top-level names point through ..data; names that went away go too.
    let tops: std::collections::BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(PathBuf::from("..data").join(top), &link)?;
        }
    }
    for entry in std::fs::read_dir(dir)?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with("..") && !tops.contains(&name) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
    if let Some(old) = old {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

/// Whether a payload directory holds exactly `payload`.
fn matches(dir: &Path, payload: &Payload) -> bool {
    payload.iter().all(|(path, (content, mode))| {
        let file = dir.join(path);
        std::fs::read(&file).is_ok_and(|c| &c == content)
            && std::fs::metadata(&file).is_ok_and(|m| m.permissions().mode() & 0o7777 == *mode)
    }) && count_files(dir) == payload.len()
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                count_files(&e.path())
            } else {
                1
            }
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use serde_json::json;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, c, m)| (p.to_string(), (c.as_bytes().to_vec(), *m)))
            .collect()
    }

    #[test]
    fn the_atomic_writer_swaps_whole_payloads_and_drops_what_went() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("config");
        write_atomic(&dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
        assert_eq!(std::fs::read_to_string(dir.join("sub/b")).unwrap(), "2");
        assert_eq!(
            std::fs::metadata(dir.join("sub/b"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert!(
            std::fs::symlink_metadata(dir.join("a"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let first = std::fs::read_link(dir.join("..data")).unwrap();
        // The same payload again: nothing is rewritten.
        write_atomic(&dir, &payload(&[("a", "1", 0o644), ("sub/b", "2", 0o600)])).unwrap();
        assert_eq!(std::fs::read_link(dir.join("..data")).unwrap(), first);
        // A new one: swapped whole; the old payload and the names it alone had are gone.
        write_atomic(&dir, &payload(&[("a", "3", 0o644)])).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "3");
        assert!(std::fs::symlink_metadata(dir.join("sub")).is_err());
        assert!(!dir.join(&first).exists());
    }

    #[test]
    fn keys_become_files_and_paths_stay_inside() {
        let data: BTreeMap<String, Vec<u8>> = [
            ("k".to_string(), b"v".to_vec()),
            ("other".into(), b"o".to_vec()),
        ]
        .into();
        let mut out = Payload::new();
        key_files(&data, None, 0o644, "configmap \"c\"", false, &mut out).unwrap();
        assert_eq!(out.len(), 2);
        let items = vec![KeyToPath {
            key: "k".into(),
            path: "dir/file".into(),
            mode: Some(0o400),
        }];
        let mut out = Payload::new();
        key_files(
            &data,
            Some(&items),
            0o644,
            "configmap \"c\"",
            false,
            &mut out,
        )
        .unwrap();
        assert_eq!(out["dir/file"], (b"v".to_vec(), 0o400));
        for bad in ["../escape", "/abs", "a/../../b"] {
            let items = vec![KeyToPath {
                key: "k".into(),
                path: bad.into(),
                mode: None,
            }];
            assert!(
                key_files(&data, Some(&items), 0o644, "c", false, &mut Payload::new()).is_err(),
                "{bad}"
            );
        }
        let missing = vec![KeyToPath {
            key: "nope".into(),
            path: "x".into(),
            mode: None,
        }];
        assert!(
            key_files(
                &data,
                Some(&missing),
                0o644,
                "c",
                false,
                &mut Payload::new()
            )
            .is_err()
        );
        assert!(key_files(&data, Some(&missing), 0o644, "c", true, &mut Payload::new()).is_ok());
    }

    #[test]
    fn resource_fields_divide_and_round_up_and_default_to_the_node() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "resources": {
                "limits": {"cpu": "250m", "memory": "64Mi"},
                "requests": {"cpu": "100m"}}}]}
        }))
        .unwrap();
        let field = |resource: &str, divisor: Option<&str>| ResourceFieldSelector {
            container_name: None,
            resource: resource.into(),
            divisor: divisor.map(|d| Quantity(d.into())),
        };
        let value = |f| resource_field(&pod, "c", &f, 4, 8 << 30).unwrap();
        assert_eq!(value(field("limits.cpu", None)), "1");
        assert_eq!(value(field("limits.cpu", Some("1m"))), "250");
        assert_eq!(value(field("requests.cpu", Some("1m"))), "100");
        assert_eq!(value(field("limits.memory", None)), (64 << 20).to_string());
        assert_eq!(value(field("limits.memory", Some("1Mi"))), "64");
        assert_eq!(value(field("requests.memory", None)), "0");
        let bare: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]}
        }))
        .unwrap();
        let node = |f| resource_field(&bare, "c", &f, 4, 8 << 30).unwrap();
        assert_eq!(node(field("limits.cpu", None)), "4");
        assert_eq!(node(field("limits.memory", Some("1Gi"))), "8");
        assert!(resource_field(&bare, "nope", &field("limits.cpu", None), 4, 1).is_err());
    }

    #[test]
    fn labels_are_written_as_quoted_lines() {
        let map: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".into(), "a \"b\"".into()),
        ]
        .into();
        assert_eq!(map_file(&map), "app=\"web\"\ntier=\"a \\\"b\\\"\"");
    }
}
