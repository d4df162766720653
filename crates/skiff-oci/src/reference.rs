//! Image references with Docker's normalization: `busybox` is
//! `docker.io/library/busybox:latest`, `gcr.io/p/hello-node:v1` is itself, a first
//! component with a `.` or `:` (or `localhost`) names the registry.

use crate::digest::digest_hex;

pub const DOCKER_HUB: &str = "docker.io";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error(
        "invalid image reference {0:?}: the repository name must be lowercase letters, digits and . _ - separated by /"
    )]
    Name(String),
    #[error(
        "invalid image reference {0:?}: a tag is up to 128 letters, digits, _ . - and starts with a letter, digit or _"
    )]
    Tag(String),
    #[error("invalid image reference {0:?}: the digest must be sha256:<64 hex digits>")]
    Digest(String),
}

/// A parsed, normalized image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `gcr.io`, `127.0.0.1:5000` …
    pub registry: String,
    /// The repository inside the registry: `library/busybox`, `p/hello-node`.
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

/// The distribution spec's repository name grammar: lowercase components of `[a-z0-9]`
/// joined by `.`, `_`, `__` or dashes, separated by `/`.
pub fn valid_repository(name: &str) -> bool {
    let valid_component = |c: &str| {
        let b = c.as_bytes();
        !b.is_empty()
            && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
            && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
            && b.iter().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'_' | b'-')
            })
            && !c.contains("..")
            && !c.contains("___")
    };
    name.len() <= 255 && name.split('/').all(valid_component)
}

pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => {
                digest_hex(digest).map_err(|_| ReferenceError::Digest(s.to_string()))?;
                (rest, Some(digest.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/' (a registry port comes before it).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &rest[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(ReferenceError::Tag(s.to_string()));
                }
                (&rest[..last_slash + i], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !valid_repository(&repository)
            || registry.is_empty()
            || registry.bytes().any(|b| b.is_ascii_whitespace())
        {
            return Err(ReferenceError::Name(s.to_string()));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_string()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What a registry is asked for: the digest when there is one, else the tag.
    pub fn object(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// The short form people type: `busybox:1.36` for `docker.io/library/busybox:1.36`.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        match full.strip_prefix("docker.io/") {
            Some(rest) => rest.strip_prefix("library/").unwrap_or(rest).to_string(),
            None => full,
        }
    }

    pub fn with_digest(&self, digest: &str) -> Reference {
        Reference {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_names_normalize() {
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(
            full("docker.io/library/busybox:1.36"),
            "docker.io/library/busybox:1.36"
        );
        assert_eq!(
            full("index.docker.io/user/app"),
            "docker.io/user/app:latest"
        );
        assert_eq!(full("user/app:v2"), "docker.io/user/app:v2");
        assert_eq!(full("gcr.io/p/hello-node:v1"), "gcr.io/p/hello-node:v1");
        assert_eq!(full("localhost/app"), "localhost/app:latest");
        assert_eq!(
            full("127.0.0.1:5000/hello-node"),
            "127.0.0.1:5000/hello-node:latest"
        );
        assert_eq!(full("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        let d = crate::sha256_digest(b"x");
        assert_eq!(
            full(&format!("busybox@{d}")),
            format!("docker.io/library/busybox@{d}")
        );
        assert_eq!(
            full(&format!("busybox:1@{d}")),
            format!("docker.io/library/busybox:1@{d}")
        );
        let r = Reference::parse(&format!("host:5000/x@{d}")).unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str(), r.object()),
            ("host:5000", "x", d.as_str())
        );
    }

    #[test]
    fn familiar_names_shorten_docker_hub() {
        assert_eq!(
            Reference::parse("docker.io/library/busybox:1.36")
                .unwrap()
                .familiar(),
            "busybox:1.36"
        );
        assert_eq!(
            Reference::parse("user/app").unwrap().familiar(),
            "user/app:latest"
        );
        assert_eq!(
            Reference::parse("gcr.io/p/x:v1").unwrap().familiar(),
            "gcr.io/p/x:v1"
        );
    }

    #[test]
    fn bad_references_say_what_is_wrong() {
        assert!(matches!(
            Reference::parse("Busybox"),
            Err(ReferenceError::Name(_))
        ));
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::Name(_))
        ));
        assert!(matches!(
            Reference::parse("busybox:-x"),
            Err(ReferenceError::Tag(_))
        ));
        assert!(matches!(
            Reference::parse("busybox@sha256:abc"),
            Err(ReferenceError::Digest(_))
        ));
        assert!(matches!(Reference::parse(""), Err(ReferenceError::Name(_))));
        assert!(valid_repository("library/busybox"));
        for bad in ["", "UPPER", "a//b", "-a", "a-", "../x", "a/../b"] {
            assert!(!valid_repository(bad), "{bad}");
        }
        assert!(valid_tag("v1.0_rc-1"));
        assert!(!valid_tag(".hidden"));
    }
}
