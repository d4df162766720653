//! ServiceAccount tokens: JWTs (ES256) the server signs with a key in its data directory
//! and accepts as bearer tokens, as `kubectl create token` (the TokenRequest API) gets them.
//!
//! Claims follow upstream's: `iss`, `sub` = `system:serviceaccount:NS:NAME`, `aud`, `iat`,
//! `nbf`, `exp`, and `kubernetes.io` with the namespace and the account's name and uid.
//! Verification is stateless (signature, issuer, time): a token outlives a deleted account
//! until it expires, as upstream's legacy tokens did.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
    UnparsedPublicKey,
};
use serde_json::{Value, json};

use crate::pki::{PkiError, write_private};

/// The issuer (and default audience) of tokens, as upstream's default
/// `--service-account-issuer`.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

const KEY_FILE: &str = "tls/service-account.key";

pub struct TokenIssuer {
    key: EcdsaKeyPair,
    public: Vec<u8>,
    key_id: String,
    rng: SystemRandom,
}

/// The pod a token is bound to (TokenRequest's `boundObjectRef`), named in its claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundPod {
    pub name: String,
    pub uid: String,
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceAccountIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenIssuer {
    /// The key in `data_dir`, made on first start (mode 0600).
    pub fn load_or_create(data_dir: &Path) -> Result<TokenIssuer, PkiError> {
        let path = data_dir.join(KEY_FILE);
        let rng = SystemRandom::new();
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(_) => {
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| PkiError::Damaged {
                        path: path.clone(),
                        message: "cannot generate a P-256 key".into(),
                    })?;
                write_private(&path, doc.as_ref(), 0o600)?;
                doc.as_ref().to_vec()
            }
        };
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| PkiError::Damaged {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let public = key.public_key().as_ref().to_vec();
        let key_id = URL_SAFE_NO_PAD.encode(&sha256(&public)[..16]);
        Ok(TokenIssuer {
            key,
            public,
            key_id,
            rng,
        })
    }

    /// A token for the account, valid `seconds` from now for `audiences`.
    pub fn issue(
        &self,
        who: &ServiceAccountIdentity,
        audiences: &[String],
        seconds: u64,
        pod: Option<&BoundPod>,
    ) -> (String, u64) {
        let iat = now();
        let exp = iat + seconds;
        let header = json!({"alg": "ES256", "kid": self.key_id, "typ": "JWT"});
        let mut claims = json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{}:{}", who.namespace, who.name),
            "aud": audiences,
            "iat": iat,
            "nbf": iat,
            "exp": exp,
            "kubernetes.io": {
                "namespace": who.namespace,
                "serviceaccount": {"name": who.name, "uid": who.uid},
            },
        });
        if let Some(pod) = pod {
            claims["kubernetes.io"]["pod"] = json!({"name": pod.name, "uid": pod.uid});
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .key
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA signing does not fail with a valid key");
        (
            format!(
                "{signing_input}.{}",
                URL_SAFE_NO_PAD.encode(signature.as_ref())
            ),
            exp,
        )
    }

    /// The account a token speaks for, if this server signed it and it is current.
    pub fn verify(&self, token: &str) -> Option<ServiceAccountIdentity> {
        let mut parts = token.split('.');
        let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(format!("{header}.{claims}").as_bytes(), &signature)
            .ok()?;
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
        if header.get("alg").and_then(Value::as_str) != Some("ES256") {
            return None;
        }
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).ok()?).ok()?;
        let t = now();
        let number = |k: &str| claims.get(k).and_then(Value::as_u64);
        if claims.get("iss").and_then(Value::as_str) != Some(ISSUER)
            || number("exp")? <= t
            || number("nbf").unwrap_or(0) > t + 60
        {
            return None;
        }
        let k8s = claims.get("kubernetes.io")?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_string);
        Some(ServiceAccountIdentity {
            namespace: text(k8s.get("namespace"))?,
            name: text(k8s.pointer("/serviceaccount/name"))?,
            uid: text(k8s.pointer("/serviceaccount/uid")).unwrap_or_default(),
        })
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who() -> ServiceAccountIdentity {
        ServiceAccountIdentity {
            namespace: "default".into(),
            name: "builder".into(),
            uid: "u-1".into(),
        }
    }

    #[test]
    fn tokens_verify_only_when_signed_here_and_current() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = TokenIssuer::load_or_create(dir.path()).unwrap();
        let (token, exp) = issuer.issue(&who(), &[ISSUER.to_string()], 3600, None);
        assert!(exp >= now() + 3599);
        assert_eq!(issuer.verify(&token), Some(who()));
        // The same key after a restart.
        let again = TokenIssuer::load_or_create(dir.path()).unwrap();
        assert_eq!(again.verify(&token), Some(who()));

        let other = TokenIssuer::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(other.verify(&token), None, "another cluster's key");
        let (expired, _) = issuer.issue(&who(), &[], 0, None);
        assert_eq!(issuer.verify(&expired), None, "expired");
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
        claims["kubernetes.io"]["namespace"] = "kube-system".into();
        parts[1] = URL_SAFE_NO_PAD.encode(claims.to_string());
        assert_eq!(issuer.verify(&parts.join(".")), None, "tampered claims");
        let pod = BoundPod {
            name: "web-1".into(),
            uid: "p-1".into(),
        };
        let (bound, _) = issuer.issue(&who(), &[ISSUER.to_string()], 600, Some(&pod));
        assert_eq!(issuer.verify(&bound), Some(who()));
        let claims: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(bound.split('.').nth(1).unwrap())
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            claims["kubernetes.io"]["pod"],
            json!({"name": "web-1", "uid": "p-1"})
        );
        for junk in ["", "a.b", "a.b.c", "not a token at all"] {
            assert_eq!(issuer.verify(junk), None);
        }
    }
}
