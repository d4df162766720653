//! What exists in every cluster from the start: the built-in namespaces and the `kubernetes`
//! Service in `default` (with its Endpoints) that tells pods where the API is. Idempotent:
//! runs at every start and creates only what is missing.

use std::net::SocketAddr;

use serde_json::{Value, json};
use skiff_api::resources::lookup;

use crate::allocators::ServiceAllocator;
use crate::storage::Objects;
use crate::strategy;

/// The namespaces upstream creates.
pub const BUILT_IN_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// The cluster IP of the `kubernetes` Service: the first address of the default service
/// range 10.43.0.0/16 (k3s's), which the service IP allocator will reserve.
pub const KUBERNETES_SERVICE_IP: &str = "10.43.0.1";

async fn create_if_missing(
    objects: &Objects,
    plural: &str,
    ns: Option<&str>,
    mut obj: Value,
) -> Result<(), skiff_api::ApiError> {
    let rt = lookup("", "v1", plural).expect("core types are registered");
    strategy::prepare_create(rt, &mut obj, ns)?;
    match objects.create(rt, obj).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn run(
    objects: &Objects,
    services: &ServiceAllocator,
    advertise: SocketAddr,
) -> Result<(), skiff_api::ApiError> {
    let ip = KUBERNETES_SERVICE_IP.parse().expect("a valid address");
    services
        .reserve_ip(ip, "services/default/kubernetes")
        .await?;
    for ns in BUILT_IN_NAMESPACES {
        create_if_missing(
            objects,
            "namespaces",
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await?;
    }
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let service = json!({
        "metadata": {"name": "kubernetes", "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": KUBERNETES_SERVICE_IP,
            "clusterIPs": [KUBERNETES_SERVICE_IP],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": advertise.port()}],
        },
    });
    create_if_missing(objects, "services", Some("default"), service).await?;
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{
            "addresses": [{"ip": advertise.ip().to_string()}],
            "ports": [{"name": "https", "port": advertise.port(), "protocol": "TCP"}],
        }],
    });
    create_if_missing(objects, "endpoints", Some("default"), endpoints).await
}
