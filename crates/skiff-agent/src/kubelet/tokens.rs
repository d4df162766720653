//! ServiceAccount tokens for projected `serviceAccountToken` sources, as the kubelet's
//! token manager keeps them: requested through TokenRequest bound to the pod, held in
//! memory, and requested anew once 80 % of a token's life (or a day) has passed, so the
//! file a container reads is always current. The periodic pod sync rewrites it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Pod, ServiceAccount, ServiceAccountTokenProjection};
use kube::api::{Api, PostParams};
use kube::{Client, ResourceExt};

use super::errors::TokenError;

/// Upstream's lifetime of a projected token when the source names none.
const DEFAULT_SECONDS: i64 = 3600;

/// A token is renewed after this long, however long it lives.
const MAX_AGE: Duration = Duration::from_secs(24 * 3600);

/// Which token: one per pod, account, audience and lifetime.
type Key = (String, String, String, i64);

struct Held {
    token: String,
    renew_at: Instant,
}

/// The tokens of projected volumes, requested through the API and held while fresh.
pub struct Tokens {
    client: Client,
    held: Mutex<HashMap<Key, Held>>,
}

impl Tokens {
    pub fn new(client: Client) -> Tokens {
        Tokens {
            client,
            held: Mutex::default(),
        }
    }

    /// The token `source` of `pod` projects: a held one while it is fresh, else a new one.
    pub async fn token(
        &self,
        pod: &Pod,
        source: &ServiceAccountTokenProjection,
    ) -> Result<String, TokenError> {
        let ns = pod.namespace().unwrap_or_default();
        let account = pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let seconds = source.expiration_seconds.unwrap_or(DEFAULT_SECONDS);
        let audience = source.audience.clone().unwrap_or_default();
        let uid = pod.uid().unwrap_or_default();
        let key = (uid.clone(), account.clone(), audience.clone(), seconds);
        let now = Instant::now();
        if let Some(held) = skiff_client::lock(&self.held)
            .get(&key)
            .filter(|h| h.renew_at > now)
        {
            return Ok(held.token.clone());
        }
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: if audience.is_empty() {
                    Vec::new()
                } else {
                    vec![audience]
                },
                expiration_seconds: Some(seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod.name_any()),
                    uid: Some(uid),
                }),
            },
            ..TokenRequest::default()
        };
        let answer = Api::<ServiceAccount>::namespaced(self.client.clone(), &ns)
            .create_token_request(&account, &PostParams::default(), &request)
            .await?;
        let token = answer
            .status
            .map(|s| s.token)
            .filter(|t| !t.is_empty())
            .ok_or(TokenError::Empty)?;
        let life = Duration::from_secs(seconds.max(0) as u64);
        skiff_client::lock(&self.held).insert(
            key,
            Held {
                token: token.clone(),
                renew_at: now + (life * 4 / 5).min(MAX_AGE),
            },
        );
        Ok(token)
    }

    /// Forgets the tokens of pods no longer on the node.
    pub fn retain_pods(&self, live: &std::collections::HashSet<String>) {
        skiff_client::lock(&self.held).retain(|(uid, ..), _| live.contains(uid));
    }
}
