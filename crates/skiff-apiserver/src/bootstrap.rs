//! What exists in every cluster from the start: the built-in namespaces, a Local APIService
//! per served group version, API Priority and Fairness' mandatory and suggested
//! configuration, the system priority classes and the `kubernetes` Service in `default`
//! (with its Endpoints) that tells pods where the API is. Idempotent:
//! runs at every start and creates only what is missing.

use std::net::{Ipv4Addr, SocketAddr};

use serde_json::{Value, json};

use crate::allocators::ServiceAllocator;
use crate::registry::apiregistration::{self, ApiServices};
use crate::registry::core::{endpoints::EndpointsKind, namespace::Namespaces, service::Services};
use crate::registry::discovery::EndpointSlices;
use crate::registry::flowcontrol;
use crate::registry::networking::servicecidr::{self, ServiceCidrs};
use crate::registry::scheduling::{PriorityClasses, SYSTEM_CLASSES};
use crate::registry::{Kind, Registry};
use crate::storage::Objects;
use crate::strategy;

/// The namespaces upstream creates.
pub const BUILT_IN_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates `obj` unless it exists (as a create without admission: these are the server's
/// own, made before it serves).
pub(crate) async fn create_if_missing(
    objects: &Objects,
    kind: &dyn Kind,
    ns: Option<&str>,
    mut obj: Value,
) -> Result<(), skiff_api::ApiError> {
    strategy::prepare_create(kind, &mut obj, ns)?;
    strategy::validate_create(kind, &obj)?;
    match objects.create(kind.resource(), obj).await {
        Ok(_) => Ok(()),
        Err(e) if e.reason == "AlreadyExists" => Ok(()),
        Err(e) => Err(e),
    }
}

pub async fn run(
    objects: &Objects,
    services: &ServiceAllocator,
    registry: &Registry,
    advertise: SocketAddr,
    cluster_dns: Option<Ipv4Addr>,
) -> Result<(), skiff_api::ApiError> {
    // The `kubernetes` Service sits at the service range's first address, as upstream's.
    let ip = services.network().address(1);
    services
        .reserve_ip(ip, "services/default/kubernetes")
        .await?;
    let kubernetes_ip = ip.to_string();
    let (net, bits) = services.network().cidr;
    create_if_missing(
        objects,
        &ServiceCidrs,
        None,
        servicecidr::default_cidr(&format!("{net}/{bits}")),
    )
    .await?;
    for ns in BUILT_IN_NAMESPACES {
        create_if_missing(
            objects,
            &Namespaces,
            None,
            json!({"metadata": {"name": ns}}),
        )
        .await?;
    }
    // A Local APIService for every group version served (upstream's autoregistration).
    for (group, versions) in skiff_api::resources::groups(&registry.served().resources()) {
        for version in versions {
            create_if_missing(
                objects,
                &ApiServices,
                None,
                apiregistration::local(group, version),
            )
            .await?;
        }
    }
    // API Priority and Fairness' configuration: levels first, so no schema dangles.
    for level in flowcontrol::bootstrap_priority_levels() {
        create_if_missing(
            objects,
            &flowcontrol::PriorityLevelConfigurations,
            None,
            level,
        )
        .await?;
    }
    for schema in flowcontrol::bootstrap_flow_schemas() {
        create_if_missing(objects, &flowcontrol::FlowSchemas, None, schema).await?;
    }
    for (name, value, description) in SYSTEM_CLASSES {
        create_if_missing(
            objects,
            &PriorityClasses,
            None,
            json!({"metadata": {"name": name}, "value": value, "description": description}),
        )
        .await?;
    }
    let labels = json!({"component": "apiserver", "provider": "kubernetes"});
    let service = json!({
        "metadata": {"name": "kubernetes", "labels": labels},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": kubernetes_ip,
            "clusterIPs": [kubernetes_ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": advertise.port()}],
        },
    });
    create_if_missing(objects, &Services, Some("default"), service).await?;
    if let Some(dns) = cluster_dns {
        dns_service(objects, services, dns).await?;
    }
    let ip = advertise.ip().to_string();
    let endpoints = json!({
        "metadata": {"name": "kubernetes", "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{
            "addresses": [{"ip": ip}],
            "ports": [{"name": "https", "port": advertise.port(), "protocol": "TCP"}],
        }],
    });
    reconcile(objects, &EndpointsKind, endpoints, &["subsets"]).await?;
    // What service proxies read (upstream's API server writes both).
    let slice = json!({
        "metadata": {"name": "kubernetes", "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": advertise.port(), "protocol": "TCP"}],
    });
    reconcile(objects, &EndpointSlices, slice, &["endpoints", "ports"]).await
}

/// The cluster DNS Service, `kube-system/kube-dns` at `ip` (`--cluster-dns`), labelled as
/// a cluster service so `kubectl cluster-info` lists it. It has no selector: every node's
/// agent publishes its own DNS server as an endpoint, and `internalTrafficPolicy: Local`
/// keeps each pod's questions on its own node.
async fn dns_service(
    objects: &Objects,
    services: &ServiceAllocator,
    ip: Ipv4Addr,
) -> Result<(), skiff_api::ApiError> {
    if !services
        .reserve_ip(ip, "services/kube-system/kube-dns")
        .await?
    {
        tracing::warn!(
            "the cluster DNS address {ip} belongs to another Service: no kube-dns Service is made \
             (choose another with --cluster-dns, or delete that Service and restart)"
        );
        return Ok(());
    }
    let ip = ip.to_string();
    let service = json!({
        "metadata": {"name": "kube-dns", "labels": {
            "k8s-app": "kube-dns",
            "kubernetes.io/cluster-service": "true",
            "kubernetes.io/name": "KubeDNS",
        }},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "clusterIPs": [ip],
            "ipFamilies": ["IPv4"],
            "ipFamilyPolicy": "SingleStack",
            "internalTrafficPolicy": "Local",
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
            ],
        },
    });
    create_if_missing(objects, &Services, Some("kube-system"), service).await
}

/// Creates `obj` in `default`, or, if it exists with other `fields`, gives it `obj`'s: the
/// API's address follows the server's flags across restarts.
async fn reconcile(
    objects: &Objects,
    kind: &dyn Kind,
    obj: Value,
    fields: &[&str],
) -> Result<(), skiff_api::ApiError> {
    let rt = kind.resource();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let stored = match objects.get(rt, Some("default"), &name).await {
        Ok(stored) => stored,
        Err(e) if e.reason == "NotFound" => {
            return create_if_missing(objects, kind, Some("default"), obj).await;
        }
        Err(e) => return Err(e),
    };
    let mut current = stored.object;
    if fields.iter().all(|f| current[*f] == obj[*f]) {
        return Ok(());
    }
    for f in fields {
        current[*f] = obj[*f].clone();
    }
    objects
        .update(rt, current, stored.mod_revision)
        .await
        .map(|_| ())
}
