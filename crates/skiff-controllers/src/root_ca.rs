//! The root CA publisher: every active namespace holds a `kube-root-ca.crt` ConfigMap with
//! the cluster's CA under `ca.crt`, which the projected volume of a pod's API credentials
//! reads. A changed or deleted copy is put back (the namespace controller calls this on
//! every namespace sync, and a change to such a ConfigMap resyncs its namespace).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use skiff_apimachinery::names::ROOT_CA_CONFIGMAP;

use crate::Error;

/// Upstream's description of the ConfigMap, as an annotation.
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver \
    when using internal endpoints such as the internal service IP or kubernetes.default.svc. \
    No other usage is guaranteed across distributions of Kubernetes clusters.";

/// Makes `ns`'s copy of the CA hold `ca_pem`; `current` is the copy as the namespace
/// controller's informer last saw it.
pub async fn ensure(
    client: &Client,
    ns: &str,
    ca_pem: &str,
    current: Option<&ConfigMap>,
) -> Result<(), Error> {
    let maps = Api::<ConfigMap>::namespaced(client.clone(), ns);
    let data = BTreeMap::from([("ca.crt".to_string(), ca_pem.to_string())]);
    let annotations = BTreeMap::from([(
        "kubernetes.io/description".to_string(),
        DESCRIPTION.to_string(),
    )]);
    match current.cloned() {
        Some(current) if current.data.as_ref() == Some(&data) => Ok(()),
        Some(mut current) => {
            current.data = Some(data);
            current.binary_data = None;
            current
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(annotations);
            match maps
                .replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &current)
                .await
            {
                Ok(_) => Ok(()),
                // Changed meanwhile: the change resyncs the namespace.
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
        None => {
            let map = ConfigMap {
                metadata: ObjectMeta {
                    name: Some(ROOT_CA_CONFIGMAP.into()),
                    namespace: Some(ns.into()),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                },
                data: Some(data),
                ..ConfigMap::default()
            };
            match maps.create(&PostParams::default(), &map).await {
                Ok(_) => Ok(()),
                // Created meanwhile, or the namespace started terminating under us.
                Err(kube::Error::Api(e)) if e.code == 409 || e.code == 403 => Ok(()),
                Err(e) => Err(e.into()),
            }
        }
    }
}
