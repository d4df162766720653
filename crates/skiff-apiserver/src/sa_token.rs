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
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};

use crate::pki::{PkiError, write_private};

/// The issuer (and default audience) of tokens, as upstream's default
/// `--service-account-issuer`.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

const KEY_FILE: &str = "tls/service-account.key";

/// How far in the future a token's `nbf` may be (clock skew between servers).
const NOT_BEFORE_LEEWAY: u64 = 60;

pub struct TokenIssuer {
    signing: EncodingKey,
    verifying: DecodingKey,
    /// What `verify` checks through the crate: the algorithm and the issuer. Audiences are
    /// the caller's to check; times are checked in `verify`, exactly.
    validation: Validation,
    key_id: String,
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

/// Upstream's claims of a ServiceAccount token.
#[derive(Serialize, Deserialize)]
struct Claims {
    iss: String,
    sub: String,
    #[serde(default)]
    aud: Vec<String>,
    iat: u64,
    #[serde(default)]
    nbf: u64,
    exp: u64,
    #[serde(rename = "kubernetes.io")]
    kubernetes: KubernetesClaims,
}

#[derive(Serialize, Deserialize)]
struct KubernetesClaims {
    namespace: String,
    serviceaccount: NamedUid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<NamedUid>,
}

#[derive(Serialize, Deserialize)]
struct NamedUid {
    name: String,
    #[serde(default)]
    uid: String,
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
        // Checked here, so signing never meets a bad key.
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
            .map_err(|e| PkiError::Damaged {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let public = key.public_key().as_ref();
        Ok(TokenIssuer {
            signing: EncodingKey::from_ec_der(&pkcs8),
            // The uncompressed point, as ring verifies with it.
            verifying: DecodingKey::from_ec_der(public),
            validation: {
                let mut validation = Validation::new(Algorithm::ES256);
                validation.set_issuer(&[ISSUER]);
                validation.validate_aud = false;
                validation.validate_exp = false;
                validation.validate_nbf = false;
                validation
            },
            key_id: URL_SAFE_NO_PAD.encode(&sha256(public)[..16]),
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
        let claims = Claims {
            iss: ISSUER.into(),
            sub: format!("system:serviceaccount:{}:{}", who.namespace, who.name),
            aud: audiences.to_vec(),
            iat,
            nbf: iat,
            exp,
            kubernetes: KubernetesClaims {
                namespace: who.namespace.clone(),
                serviceaccount: NamedUid {
                    name: who.name.clone(),
                    uid: who.uid.clone(),
                },
                pod: pod.map(|p| NamedUid {
                    name: p.name.clone(),
                    uid: p.uid.clone(),
                }),
            },
        };
        let header = Header {
            kid: Some(self.key_id.clone()),
            ..Header::new(Algorithm::ES256)
        };
        let token = jsonwebtoken::encode(&header, &claims, &self.signing)
            .expect("ES256 signing does not fail with the key checked at load");
        (token, exp)
    }

    /// The account a token speaks for, if this server signed it and it is current.
    pub fn verify(&self, token: &str) -> Option<ServiceAccountIdentity> {
        self.verify_token(token).map(|v| v.account)
    }

    /// All a current token this server signed says: its account, the pod it is bound to,
    /// its audiences.
    pub fn verify_token(&self, token: &str) -> Option<VerifiedToken> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.verifying, &self.validation)
            .ok()?
            .claims;
        let t = now();
        if claims.exp <= t || claims.nbf > t + NOT_BEFORE_LEEWAY {
            return None;
        }
        let k8s = claims.kubernetes;
        Some(VerifiedToken {
            account: ServiceAccountIdentity {
                namespace: k8s.namespace,
                name: k8s.serviceaccount.name,
                uid: k8s.serviceaccount.uid,
            },
            pod: k8s.pod.map(|p| BoundPod {
                name: p.name,
                uid: p.uid,
            }),
            audiences: claims.aud,
        })
    }
}

/// What a verified token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub account: ServiceAccountIdentity,
    pub pod: Option<BoundPod>,
    pub audiences: Vec<String>,
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

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
