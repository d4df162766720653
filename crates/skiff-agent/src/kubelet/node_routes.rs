//! Routes to the other nodes' pod subnets (`skiff-net`'s routes): every Node with a pod
//! CIDR and an InternalIP, other than this one, is a route through that address — directly
//! (`host-gw`: the nodes must share a link; the kernel refuses a route through a node off
//! it, and the agent says so) or over VXLAN (`vxlan`, the default: any nodes that reach
//! each other by UDP).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use skiff_client::Store;
use skiff_net::{Backend, Cidr, Netns, PodRoutes};

use super::KubeletConfig;

/// How pods reach the other nodes' pods (`--pod-network`, flannel's backend names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodNetworkMode {
    /// Direct routes through the other nodes: fastest, for nodes on one link.
    HostGw,
    /// A VXLAN tunnel to each other node: for nodes anywhere they reach each other.
    Vxlan,
}

/// Readies this node for `config.pod_network` (its VXLAN link, or none left from before)
/// and answers the backend the routes use. A node that cannot make its VXLAN link (no
/// kernel module) still runs its own pods: it falls back to direct routes, and says so.
pub async fn prepare(config: &KubeletConfig, pod_cidr: Cidr) -> Backend {
    let netns = config.node_netns.clone();
    let local = config.node_ip.parse::<Ipv4Addr>().ok();
    let mode = config.pod_network;
    tokio::task::spawn_blocking(move || match (mode, local) {
        (PodNetworkMode::Vxlan, Some(local)) => {
            match skiff_net::vxlan::ensure(&netns, local, pod_cidr) {
                Ok(link) => Backend::Vxlan(link),
                Err(e) => {
                    tracing::error!(
                        "making the VXLAN link to other nodes: {e}; falling back to direct routes \
                         (pods reach other nodes' pods only if the nodes share a link; \
                         --pod-network host-gw says so without trying)"
                    );
                    Backend::HostGw
                }
            }
        }
        _ => {
            if let Err(e) = skiff_net::vxlan::remove(&netns) {
                tracing::warn!("removing the VXLAN link of an earlier --pod-network vxlan: {e}");
            }
            Backend::HostGw
        }
    })
    .await
    .unwrap_or(Backend::HostGw)
}

/// The routes this node wants: each other node's pod subnet via its InternalIP.
pub fn wanted(nodes: &[Arc<Node>], this_node: &str) -> BTreeMap<Cidr, Ipv4Addr> {
    nodes
        .iter()
        .filter(|n| n.metadata.name.as_deref() != Some(this_node))
        .filter_map(|n| {
            let subnet = Cidr::parse(n.spec.as_ref()?.pod_cidr.as_deref()?).ok()?;
            let ip = n
                .status
                .as_ref()?
                .addresses
                .as_ref()?
                .iter()
                .find(|a| a.type_ == "InternalIP")?
                .address
                .parse::<Ipv4Addr>()
                .ok()
                // Simulated nodes (loopback addresses) have no pods to route to.
                .filter(|ip| !ip.is_loopback())?;
            Some((subnet, ip))
        })
        .collect()
}

/// Keeps the routes in step with the Nodes until the task is dropped.
pub async fn run(
    netns: Netns,
    backend: Backend,
    this_node: String,
    nodes: Store<Node>,
    wake: Arc<tokio::sync::Notify>,
) {
    let mut routes = Some(PodRoutes::new(netns, backend));
    let mut complained = None::<String>;
    loop {
        let want = wanted(&nodes.list(), &this_node);
        let mut r = routes.take().expect("the routes are back after every sync");
        let (r, result) = tokio::task::spawn_blocking(move || {
            let result = r.sync(&want);
            (r, result)
        })
        .await
        .expect("a route sync does not panic");
        routes = Some(r);
        match result {
            Ok(()) => complained = None,
            Err(e) => {
                let text = e.to_string();
                if complained.as_deref() != Some(text.as_str()) {
                    let hint = match backend {
                        Backend::HostGw => {
                            " (direct routes need the nodes on one link: --pod-network vxlan \
                             reaches nodes anywhere)"
                        }
                        Backend::Vxlan(_) => "",
                    };
                    tracing::warn!("routing to another node's pods: {text}{hint}");
                    complained = Some(text);
                }
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Arc<Node> {
        let spec = cidr.map_or(json!({}), |c| json!({"podCIDR": c}));
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name}, "spec": spec,
                "status": {"addresses": [{"type": "Hostname", "address": name},
                                         {"type": "InternalIP", "address": ip}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn every_other_node_with_a_subnet_is_a_route() {
        let nodes = [
            node("a", Some("10.42.0.0/24"), "192.0.2.10"),
            node("b", Some("10.42.1.0/24"), "192.0.2.11"),
            node("c", None, "192.0.2.12"),
            node("sim", Some("10.42.9.0/24"), "127.1.0.9"),
        ];
        let routes = wanted(&nodes, "a");
        assert_eq!(
            routes.into_iter().collect::<Vec<_>>(),
            [(
                Cidr::parse("10.42.1.0/24").unwrap(),
                Ipv4Addr::new(192, 0, 2, 11)
            )]
        );
    }
}
