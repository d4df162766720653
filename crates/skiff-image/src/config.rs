//! `registries.yaml` in the data directory, in the spirit of k3s's: mirrors per registry
//! host (`"*"` for every host) and, per host, credentials and TLS settings.
//!
//! ```yaml
//! mirrors:
//!   docker.io:
//!     endpoint: ["https://mirror.internal:5000"]
//! configs:
//!   mirror.internal:5000:
//!     auth: { username: puller, password: secret }
//!     tls: { ca_file: /etc/ssl/internal-ca.pem }
//!   registry.lab:5000:
//!     insecure: true        # plain HTTP
//! ```
//!
//! The cluster's embedded registry is not configured here: every node tries it first.
//! `disable_default_endpoint: true` stops the fall-back to an image's own registry when
//! mirrors exist, as k3s's `--disable-default-registry-endpoint`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistriesConfig {
    #[serde(default)]
    pub mirrors: BTreeMap<String, Mirror>,
    #[serde(default)]
    pub configs: BTreeMap<String, HostConfig>,
    /// Never fall back to a registry's own endpoint when it has mirrors (the cluster's
    /// registry counts): an air-gapped cluster then sends nothing off the machine.
    #[serde(default)]
    pub disable_default_endpoint: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// Base URLs (`https://host[:port]`, `http://…` for plain HTTP), tried in order.
    #[serde(default)]
    pub endpoint: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    #[serde(default)]
    pub auth: Option<Auth>,
    #[serde(default)]
    pub tls: Option<Tls>,
    /// The host's own endpoint is plain HTTP.
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// base64 of `username:password`, as in a Docker config.
    #[serde(default)]
    pub auth: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the registries config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the registries config {path} is not valid: {source}")]
    Invalid {
        path: PathBuf,
        #[source]
        source: Box<serde_saphyr::Error>,
    },
}

impl RegistriesConfig {
    /// Reads the file; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<RegistriesConfig, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => RegistriesConfig::parse(&text).map_err(|source| ConfigError::Invalid {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(RegistriesConfig::default()),
            Err(source) => Err(ConfigError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The config in `text` (YAML); its error is boxed, being large.
    pub fn parse(text: &str) -> Result<RegistriesConfig, Box<serde_saphyr::Error>> {
        if text.trim().is_empty() {
            return Ok(RegistriesConfig::default());
        }
        serde_saphyr::from_str(text).map_err(Box::new)
    }

    /// Mirror endpoints for a registry host: its own list, then the `"*"` list.
    pub fn mirrors_of(&self, host: &str) -> Vec<String> {
        let own = self.mirrors.get(host).into_iter();
        let any = self.mirrors.get("*").into_iter();
        own.chain(any)
            .flat_map(|m| {
                m.endpoint
                    .iter()
                    .map(|e| e.trim_end_matches('/').to_string())
            })
            .collect()
    }

    pub fn host(&self, host: &str) -> Option<&HostConfig> {
        self.configs.get(host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn k3s_style_config_parses() {
        let cfg = RegistriesConfig::parse(
            r#"
mirrors:
  docker.io:
    endpoint: ["https://mirror.internal:5000/"]
  "*":
    endpoint:
      - http://cache.lab:5000
configs:
  mirror.internal:5000:
    auth: { username: puller, password: secret }
    tls: { ca_file: /etc/ssl/ca.pem }
  registry.lab:5000:
    insecure: true
"#,
        )
        .unwrap();
        assert_eq!(
            cfg.mirrors_of("docker.io"),
            ["https://mirror.internal:5000", "http://cache.lab:5000"]
        );
        assert_eq!(cfg.mirrors_of("gcr.io"), ["http://cache.lab:5000"]);
        let m = cfg.host("mirror.internal:5000").unwrap();
        assert_eq!(m.auth.as_ref().unwrap().username.as_deref(), Some("puller"));
        assert_eq!(
            m.tls.as_ref().unwrap().ca_file.as_deref(),
            Some(Path::new("/etc/ssl/ca.pem"))
        );
        assert!(cfg.host("registry.lab:5000").unwrap().insecure);
    }

    #[test]
    fn mistakes_are_reported_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("registries.yaml");
        assert_eq!(
            RegistriesConfig::load(&path).unwrap(),
            RegistriesConfig::default()
        );
        std::fs::write(&path, "mirrors:\n  docker.io:\n    endpoints: [x]\n").unwrap();
        let err = RegistriesConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("registries.yaml is not valid"), "{err}");
        assert!(err.contains("endpoints"), "{err}");
    }
}
