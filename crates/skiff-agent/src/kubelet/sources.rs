//! ConfigMaps and Secrets as a pod's env and volumes read them: their keys and bytes
//! (a ConfigMap's `data` and `binaryData`, a Secret's decoded `data`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::Api;

use super::sync::Kubelet;

#[derive(Debug, Clone, Copy)]
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

impl Kubelet {
    /// The keys of a ConfigMap or Secret; empty when it is missing and `optional`, else
    /// upstream's "not found" message.
    pub(super) async fn source_bytes(
        &self,
        source: Source,
        ns: &str,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, Vec<u8>>, String> {
        let found = match source {
            Source::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map(|cm| {
                    cm.map(|cm| {
                        let mut data: BTreeMap<String, Vec<u8>> = cm
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
        };
        match found {
            Ok(Some(data)) => Ok(data),
            Ok(None) if optional => Ok(BTreeMap::new()),
            Ok(None) => Err(format!(
                "{} \"{name}\" not found",
                source.kind().to_lowercase()
            )),
            Err(e) => Err(e.to_string()),
        }
    }
}
