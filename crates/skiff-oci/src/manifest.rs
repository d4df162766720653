//! Manifests, indexes and image configurations: the fields skiff reads, in both the OCI and
//! the Docker schema 2 spellings (they share their JSON shape).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub mod media_type {
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    pub const DOCKER_SCHEMA1_SIGNED: &str =
        "application/vnd.docker.distribution.manifest.v1+prettyjws";

    /// What a puller sends in `Accept`: every manifest and index kind skiff reads.
    pub const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

    pub fn is_index(media_type: &str) -> bool {
        media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
    }

    pub fn is_manifest(media_type: &str) -> bool {
        media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this process runs on, in OCI's words.
    pub fn current() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.into(),
            os: std::env::consts::OS.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// Whether an image for `other` runs here. A missing variant matches any (arm64
    /// images rarely carry `v8`).
    pub fn runs(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && match (&self.variant, &other.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema 2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    /// The manifest for `platform`, preferring an exact variant match.
    pub fn select(&self, platform: &Platform) -> Option<&Descriptor> {
        let candidates = || {
            self.manifests
                .iter()
                .filter(|d| d.platform.as_ref().is_some_and(|p| platform.runs(p)))
        };
        candidates()
            .find(|d| {
                d.platform.as_ref().and_then(|p| p.variant.as_ref()) == platform.variant.as_ref()
            })
            .or_else(|| candidates().next())
    }

    /// The platforms the index offers, for an error message.
    pub fn platforms(&self) -> Vec<String> {
        self.manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
            .collect()
    }
}

/// The descriptors a manifest or index document lists (child manifests, layers, config),
/// read loosely so unknown kinds still count.
fn descriptors(doc: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    let listed = |key: &'static str| {
        doc.get(key)
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
    };
    listed("manifests")
        .chain(listed("layers"))
        .chain(doc.get("config"))
}

/// The digests a manifest or index document refers to (child manifests, layers, config).
pub fn references(doc: &serde_json::Value) -> Vec<String> {
    descriptors(doc)
        .filter_map(|d| d.get("digest").and_then(|d| d.as_str()).map(str::to_string))
        .collect()
}

/// What a manifest or index (JSON bytes) says its content weighs: the sizes it lists.
pub fn listed_size(manifest: &[u8]) -> u64 {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(manifest) else {
        return 0;
    };
    descriptors(&doc)
        .filter_map(|d| d.get("size").and_then(|s| s.as_u64()))
        .sum()
}

/// An image configuration: what a container runs by default and the layers' uncompressed
/// digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: RunConfig,
    #[serde(default)]
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_selects_the_running_platform() {
        let index: Index = serde_json::from_value(serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": media_type::OCI_MANIFEST, "digest": "sha256:a", "size": 1,
                 "platform": {"architecture": "arm64", "os": "linux", "variant": "v8"}},
                {"mediaType": media_type::OCI_MANIFEST, "digest": "sha256:b", "size": 1,
                 "platform": {"architecture": "amd64", "os": "linux"}},
                {"mediaType": media_type::OCI_MANIFEST, "digest": "sha256:c", "size": 1,
                 "platform": {"architecture": "arm", "os": "linux", "variant": "v6"}},
                {"mediaType": media_type::OCI_MANIFEST, "digest": "sha256:d", "size": 1,
                 "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}}
            ]
        }))
        .unwrap();
        let amd64 = Platform {
            architecture: "amd64".into(),
            os: "linux".into(),
            variant: None,
        };
        assert_eq!(index.select(&amd64).unwrap().digest, "sha256:b");
        let armv7 = Platform {
            architecture: "arm".into(),
            os: "linux".into(),
            variant: Some("v7".into()),
        };
        assert_eq!(index.select(&armv7).unwrap().digest, "sha256:d");
        let arm64 = Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
        };
        assert_eq!(index.select(&arm64).unwrap().digest, "sha256:a");
        let s390 = Platform {
            architecture: "s390x".into(),
            os: "linux".into(),
            variant: None,
        };
        assert!(index.select(&s390).is_none());
        assert_eq!(
            index.platforms(),
            [
                "linux/arm64/v8",
                "linux/amd64",
                "linux/arm/v6",
                "linux/arm/v7"
            ]
        );
    }

    #[test]
    fn references_cover_config_layers_and_children() {
        let doc = serde_json::json!({
            "config": {"digest": "sha256:c"},
            "layers": [{"digest": "sha256:l1"}, {"digest": "sha256:l2"}],
        });
        assert_eq!(references(&doc), ["sha256:l1", "sha256:l2", "sha256:c"]);
        let index = serde_json::json!({"manifests": [{"digest": "sha256:m"}]});
        assert_eq!(references(&index), ["sha256:m"]);
        let sized = br#"{"config": {"size": 10}, "layers": [{"size": 100}, {"size": 1000}]}"#;
        assert_eq!(listed_size(sized), 1110);
    }

    #[test]
    fn docker_config_fields_parse() {
        let cfg: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],"WorkingDir":"/w","ExposedPorts":{"8080/tcp":{}}},"rootfs":{"type":"layers","diff_ids":["sha256:x"]}}"#,
        )
        .unwrap();
        assert_eq!(cfg.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(cfg.config.working_dir.as_deref(), Some("/w"));
        assert_eq!(cfg.rootfs.diff_ids, ["sha256:x"]);
    }
}
