//! This node's DNS server (`skiff-dns`): it listens on the pod bridge's gateway address,
//! port 53 (UDP and TCP), in the node's network namespace, answers the cluster domain from
//! the agent's Service and EndpointSlice informers, and forwards other names to the node's
//! own nameservers. The node publishes itself as an endpoint of the `kube-dns` Service (an
//! EndpointSlice `kube-dns-<node>` in kube-system, owned by its Node); that Service's
//! `internalTrafficPolicy: Local` makes every node's proxy send its pods' questions to its
//! own server, so a question never leaves the node it was asked on.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_client::Store;
use skiff_net::Netns;

use super::KubeletConfig;
use super::dns::{ClusterDns, Resolver};

/// Where the cluster DNS Service lives, as upstream's kube-dns/CoreDNS.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_SERVICE: &str = "kube-dns";
/// The field manager of the node's EndpointSlice.
const MANAGER: &str = "skiff-agent";
/// Changes that arrive this close together make one new zone.
const COALESCE: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum NodeDnsError {
    #[error(
        "the node's DNS server cannot listen on {addr}: {source} (is another DNS server using port 53 there?)"
    )]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the node's DNS cannot open its socket for forwarding names outside the cluster: {0}")]
    Forwarding(std::io::Error),
    #[error("the cluster domain {domain:?}: {cause}")]
    Domain { domain: String, cause: String },
    #[error("publishing the node's DNS endpoint: {0}")]
    Publish(#[from] kube::Error),
}

/// Starts the server (its tasks live until the runtime ends) and publishes the node as a
/// `kube-dns` endpoint.
pub async fn start(
    client: &Client,
    config: &KubeletConfig,
    cluster: &ClusterDns,
    gateway: Ipv4Addr,
    stores: (Store<Service>, Store<EndpointSlice>),
    wake: Arc<tokio::sync::Notify>,
) -> Result<(), NodeDnsError> {
    let (node_name, netns) = (config.node_name.as_str(), &config.node_netns);
    let host = Resolver::parse(&std::fs::read_to_string(&config.resolv_conf).unwrap_or_default());
    let domain = cluster.domain.clone();
    let build = {
        let (services, slices) = stores.clone();
        let domain = domain.clone();
        move || {
            let (services, slices) = (services.list(), slices.list());
            skiff_dns::Zone::build(
                &domain,
                services.iter().map(|s| s.as_ref()),
                slices.iter().map(|s| s.as_ref()),
            )
        }
    };
    let zone = build().map_err(|e| NodeDnsError::Domain {
        domain: domain.clone(),
        cause: e.to_string(),
    })?;
    let current = skiff_dns::CurrentZone::new(zone);
    // Never forward to ourselves: a node whose resolv.conf names the cluster DNS would
    // loop.
    let upstreams: Vec<SocketAddr> = host
        .nameservers
        .iter()
        .filter_map(|ns| ns.parse::<std::net::IpAddr>().ok())
        .filter(|ip| *ip != gateway && *ip != cluster.nameserver)
        .map(|ip| SocketAddr::new(ip, 53))
        .collect();
    let addr = SocketAddr::new(gateway.into(), 53);
    let netns_path = match netns {
        Netns::Current => None,
        Netns::Path(p) => Some(p.clone()),
    };
    let (sockets, upstream_socket) = tokio::task::spawn_blocking(move || {
        (
            skiff_dns::bind(addr, netns_path.as_deref()),
            skiff_dns::upstream_socket(netns_path.as_deref()),
        )
    })
    .await
    .expect("binding does not panic");
    let (udp, tcp) = sockets.map_err(|source| NodeDnsError::Bind { addr, source })?;
    let forwarder = upstream_socket
        .and_then(|socket| skiff_dns::Forwarder::new(upstreams, socket))
        .map_err(NodeDnsError::Forwarding)?;
    let handler = skiff_dns::Handler::new(current.clone(), forwarder);
    tokio::spawn(async move {
        if let Err(e) = skiff_dns::serve(udp, tcp, handler).await {
            tracing::error!("the node's DNS server stopped: {e}");
        }
    });
    tokio::spawn(async move {
        loop {
            wake.notified().await;
            tokio::time::sleep(COALESCE).await;
            match build() {
                Ok(zone) => current.replace(zone),
                Err(e) => tracing::warn!("rebuilding the DNS zone: {e}"),
            }
        }
    });
    publish_endpoint(client, node_name, gateway).await?;
    Ok(())
}

/// The node's EndpointSlice of the `kube-dns` Service (server-side apply: idempotent),
/// owned by its Node so it goes when the Node goes.
async fn publish_endpoint(
    client: &Client,
    node_name: &str,
    gateway: Ipv4Addr,
) -> Result<(), kube::Error> {
    let node = Api::<Node>::all(client.clone()).get(node_name).await?;
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{DNS_SERVICE}-{node_name}"),
            "namespace": DNS_NAMESPACE,
            "labels": {
                "kubernetes.io/service-name": DNS_SERVICE,
                "endpointslice.kubernetes.io/managed-by": "skiff-agent.skiff.dev",
            },
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Node", "name": node_name,
                "uid": node.uid().unwrap_or_default(),
            }],
        },
        "addressType": "IPv4",
        "endpoints": [{
            "addresses": [gateway.to_string()],
            "nodeName": node_name,
            "conditions": {"ready": true, "serving": true, "terminating": false},
        }],
        "ports": [
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
        ],
    });
    Api::<EndpointSlice>::namespaced(client.clone(), DNS_NAMESPACE)
        .patch(
            &format!("{DNS_SERVICE}-{node_name}"),
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&slice),
        )
        .await?;
    Ok(())
}
