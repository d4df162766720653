//! ConfigMaps and Secrets as a pod's env and volumes read them: their keys and bytes
//! (a ConfigMap's `data` and `binaryData`, a Secret's decoded `data`).
//!
//! Reads are kept for a moment ([`FRESH_FOR`]): a pod's start syncs it several times and
//! every pod reads the same `kube-root-ca.crt`, so without it each sync would ask the API
//! again; a change still reaches a pod's files on its next sync after that moment.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Client;
use kube::api::Api;

use super::errors::SourceError;

/// How long a read ConfigMap or Secret (or its absence) is taken as current.
const FRESH_FOR: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    ConfigMap,
    Secret,
}

impl Source {
    pub fn kind(self) -> &'static str {
        match self {
            Source::ConfigMap => "ConfigMap",
            Source::Secret => "Secret",
        }
    }
}

pub type Keys = BTreeMap<String, Vec<u8>>;

/// Which object: its kind, namespace and name.
type SourceKey = (Source, String, String);

/// The ConfigMaps and Secrets pods read, through the API, with recent reads kept:
/// (kind, namespace, name) → when, and the keys (None: not found).
pub struct Sources {
    client: Client,
    read: Mutex<HashMap<SourceKey, (Instant, Option<Keys>)>>,
}

impl Sources {
    pub fn new(client: Client) -> Sources {
        Sources {
            client,
            read: Mutex::default(),
        }
    }

    /// The keys of a ConfigMap or Secret; empty when it is missing and `optional`, else
    /// upstream's "not found".
    pub async fn keys(
        &self,
        source: Source,
        ns: &str,
        name: &str,
        optional: bool,
    ) -> Result<Keys, SourceError> {
        let key = (source, ns.to_string(), name.to_string());
        let found = match self.recent(&key) {
            Some(keys) => keys,
            None => {
                let keys = self.read(source, ns, name).await?;
                skiff_client::lock(&self.read).insert(key, (Instant::now(), keys.clone()));
                keys
            }
        };
        match found {
            Some(data) => Ok(data),
            None if optional => Ok(BTreeMap::new()),
            None => Err(SourceError::NotFound {
                kind: source.kind(),
                name: name.to_string(),
            }),
        }
    }

    /// As [`Sources::keys`], the values as text (Secret values decoded).
    pub async fn text(
        &self,
        source: Source,
        ns: &str,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, String>, SourceError> {
        Ok(self
            .keys(source, ns, name, optional)
            .await?
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
            .collect())
    }

    fn recent(&self, key: &SourceKey) -> Option<Option<Keys>> {
        let mut read = skiff_client::lock(&self.read);
        read.retain(|_, (at, _)| at.elapsed() < FRESH_FOR);
        read.get(key).map(|(_, keys)| keys.clone())
    }

    async fn read(
        &self,
        source: Source,
        ns: &str,
        name: &str,
    ) -> Result<Option<Keys>, kube::Error> {
        match source {
            Source::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map(|cm| {
                    cm.map(|cm| {
                        let mut data: Keys = cm
                            .data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.into_bytes()))
                            .collect();
                        for (k, v) in cm.binary_data.unwrap_or_default() {
                            data.insert(k, v.0);
                        }
                        data
                    })
                }),
            Source::Secret => Api::<Secret>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map(|s| {
                    s.map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect()
                    })
                }),
        }
    }
}
