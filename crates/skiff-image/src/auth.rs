//! Registry credentials and the authentication challenge of the distribution spec.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A username and password (or token) for one registry host.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}:***)", self.username)
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!("Basic {}", STANDARD.encode(pair))
    }

    /// From a Docker-style `auth` field (base64 of `user:password`).
    pub fn from_auth_field(auth: &str) -> Option<Credentials> {
        let decoded = STANDARD.decode(auth.trim()).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (username, password) = decoded.split_once(':')?;
        Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        })
    }
}

/// Credentials per registry host, as `imagePullSecrets` carry them (a
/// `kubernetes.io/dockerconfigjson` secret's `.dockerconfigjson`, or the older
/// `.dockercfg` which is the `auths` map alone).
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    entries: Vec<(String, Credentials)>,
}

#[derive(Debug, thiserror::Error)]
#[error("the pull secret is not a Docker config: {0}")]
pub struct KeyringError(String);

impl Keyring {
    pub fn add(&mut self, host: &str, credentials: Credentials) {
        self.entries.push((normalize_host(host), credentials));
    }

    /// Adds the entries of a `.dockerconfigjson` or `.dockercfg` document.
    pub fn add_docker_config(&mut self, json: &[u8]) -> Result<(), KeyringError> {
        let doc: serde_json::Value =
            serde_json::from_slice(json).map_err(|e| KeyringError(e.to_string()))?;
        let auths = doc.get("auths").unwrap_or(&doc);
        let auths = auths
            .as_object()
            .ok_or_else(|| KeyringError("no \"auths\" object".into()))?;
        for (host, entry) in auths {
            let field = |k: &str| {
                entry
                    .get(k)
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
            };
            let credentials = match (field("username"), field("password"), field("auth")) {
                (Some(u), Some(p), _) => Credentials {
                    username: u.into(),
                    password: p.into(),
                },
                (_, _, Some(auth)) => Credentials::from_auth_field(auth).ok_or_else(|| {
                    KeyringError(format!(
                        "the auth of {host:?} is not base64 of user:password"
                    ))
                })?,
                _ => continue,
            };
            self.add(host, credentials);
        }
        Ok(())
    }

    /// The credentials for a registry host (`docker.io`, `gcr.io`, `host:5000`).
    pub fn lookup(&self, host: &str) -> Option<&Credentials> {
        let host = normalize_host(host);
        self.entries
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, c)| c)
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// `https://index.docker.io/v1/` → `docker.io`; `host:5000/path` → `host:5000`.
fn normalize_host(key: &str) -> String {
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// A `WWW-Authenticate` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    pub fn parse(header: &str) -> Option<Challenge> {
        let (scheme, params) = header.trim().split_once(' ').unwrap_or((header.trim(), ""));
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => {
                let params = parse_params(params);
                let get = |k: &str| {
                    params
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(k))
                        .map(|(_, v)| v.clone())
                };
                Some(Challenge::Bearer {
                    realm: get("realm")?,
                    service: get("service"),
                    scope: get("scope"),
                })
            }
            _ => None,
        }
    }
}

/// `k="v", k2=v2` with quoted values that may hold commas.
fn parse_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key.trim().trim_start_matches(',').trim().to_string();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"').unwrap_or(quoted.len());
            (&quoted[..end], quoted.get(end + 1..).unwrap_or(""))
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        out.push((key, value.to_string()));
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse("Bearer service=x"),
            None,
            "a bearer challenge needs a realm"
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
    }

    #[test]
    fn docker_configs_give_credentials_per_host() {
        let mut k = Keyring::default();
        k.add_docker_config(
            br#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dXNlcjpwYXNz"},
                "gcr.io": {"username": "_json_key", "password": "{}"},
                "empty.example": {}
            }}"#,
        )
        .unwrap();
        k.add_docker_config(br#"{"host:5000": {"auth": "YTpiOmM="}}"#)
            .unwrap();
        let hub = k.lookup("docker.io").unwrap().clone();
        assert_eq!(
            (hub.username.as_str(), hub.password.as_str()),
            ("user", "pass")
        );
        assert_eq!(k.lookup("gcr.io").unwrap().username, "_json_key");
        assert_eq!(
            k.lookup("host:5000").unwrap().password,
            "b:c",
            "a password may hold ':'"
        );
        assert!(k.lookup("empty.example").is_none());
        assert!(k.add_docker_config(b"[]").is_err());
        assert!(
            k.add_docker_config(br#"{"auths": {"x": {"auth": "!!"}}}"#)
                .is_err()
        );
        assert_eq!(
            format!("{hub:?}"),
            "Credentials(user:***)",
            "passwords stay out of logs"
        );
    }
}
