//! Load-balancer addresses from a pool (`skiff server --lb-address-pool`) are answered for
//! on the nodes' network, as MetalLB's layer-2 mode does: one node holds each address — the
//! Ready node that a hash of the address picks among the Ready nodes, so every node agrees
//! without talking — and adds it to the interface that carries its own address, where the
//! kernel answers ARP for it; traffic arriving there meets the service proxy's rules like
//! traffic to a node address. Ingress addresses that are some node's own are left alone.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Service};
use skiff_client::Store;
use skiff_client::objects::node_is_ready;
use skiff_net::Netns;

fn node_addresses(node: &Node) -> impl Iterator<Item = Ipv4Addr> + '_ {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|a| a.address.parse().ok())
}

/// FNV-1a of the address: the same pick on every node and every run.
fn pick(ip: Ipv4Addr, nodes: usize) -> usize {
    let hash = ip.octets().iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % nodes as u64) as usize
}

/// The pool addresses this node holds.
pub fn held_here(
    services: &[Arc<Service>],
    nodes: &[Arc<Node>],
    this_node: &str,
) -> BTreeSet<Ipv4Addr> {
    let node_ips: BTreeSet<Ipv4Addr> = nodes.iter().flat_map(|n| node_addresses(n)).collect();
    let mut ready_nodes: Vec<&str> = nodes
        .iter()
        .filter(|n| node_is_ready(n))
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    ready_nodes.sort_unstable();
    if ready_nodes.is_empty() {
        return BTreeSet::new();
    }
    services
        .iter()
        .filter(|s| s.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer"))
        .filter_map(|s| s.status.as_ref()?.load_balancer.as_ref()?.ingress.as_ref())
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse::<Ipv4Addr>().ok())
        .filter(|ip| !node_ips.contains(ip))
        .filter(|ip| ready_nodes[pick(*ip, ready_nodes.len())] == this_node)
        .collect()
}

/// The label skiff's announced addresses carry (`<link>:sklb`), so a restart and `skiff
/// node reset` find the ones an earlier run left.
const LABEL_SUFFIX: &str = ":sklb";

/// Removes every address a skiff agent announced in `netns` (each `<link>:sklb`).
pub fn remove_all(netns: &Netns) -> Result<(), skiff_net::WiringError> {
    let listing = netns.ip(&["-o", "-4", "addr", "show"])?;
    let ours = |line: &&str| {
        line.split_whitespace()
            .any(|w| w.trim_end_matches('\\').ends_with(LABEL_SUFFIX))
    };
    for line in listing.lines().filter(ours) {
        let words: Vec<&str> = line.split_whitespace().collect();
        if let (Some(link), Some(addr)) = (words.get(1), words.get(3)) {
            netns.ip(&["addr", "del", addr, "dev", link])?;
        }
    }
    Ok(())
}

/// The interface that carries `ip` in `netns` (`ip -o addr show to IP`).
fn interface_of(netns: &Netns, ip: &str) -> Option<String> {
    let listing = netns.ip(&["-o", "-4", "addr", "show", "to", ip]).ok()?;
    listing.split_whitespace().nth(1).map(str::to_string)
}

/// Keeps this node's share of pool addresses on its interface until the task is dropped.
pub async fn run(
    netns: Netns,
    this_node: String,
    node_ip: String,
    stores: (Store<Service>, Store<Node>),
    wake: Arc<tokio::sync::Notify>,
) {
    // What an earlier run announced goes first; what is still wanted comes back below.
    {
        let netns = netns.clone();
        let _ = tokio::task::spawn_blocking(move || remove_all(&netns)).await;
    }
    let mut held: BTreeSet<Ipv4Addr> = BTreeSet::new();
    loop {
        let want = held_here(&stores.0.list(), &stores.1.list(), &this_node);
        if want != held {
            let (netns, node_ip) = (netns.clone(), node_ip.clone());
            let (add, remove): (Vec<Ipv4Addr>, Vec<Ipv4Addr>) = (
                want.difference(&held).copied().collect(),
                held.difference(&want).copied().collect(),
            );
            let done = tokio::task::spawn_blocking(move || {
                let Some(link) = interface_of(&netns, &node_ip) else {
                    return Err(format!(
                        "no interface carries this node's address {node_ip}"
                    ));
                };
                for ip in remove {
                    let _ = netns.ip(&["addr", "del", &format!("{ip}/32"), "dev", &link]);
                }
                for ip in add {
                    let label = format!("{link}{LABEL_SUFFIX}");
                    netns
                        .ip(&[
                            "addr",
                            "replace",
                            &format!("{ip}/32"),
                            "dev",
                            &link,
                            "label",
                            &label,
                        ])
                        .map_err(|e| format!("announcing {ip} on {link}: {e}"))?;
                }
                Ok(())
            })
            .await
            .expect("announcing does not panic");
            match done {
                Ok(()) => held = want,
                Err(e) => tracing::warn!("load-balancer addresses: {e}"),
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ip: &str, is_ready: bool) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "status": {
                "addresses": [{"type": "InternalIP", "address": ip}],
                "conditions": [{"type": "Ready", "status": if is_ready { "True" } else { "False" }}]}}))
            .unwrap(),
        )
    }

    fn balancer(ips: &[&str]) -> Arc<Service> {
        let ingress: Vec<_> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "lb", "namespace": "default"},
                "spec": {"type": "LoadBalancer"},
                "status": {"loadBalancer": {"ingress": ingress}}}))
            .unwrap(),
        )
    }

    #[test]
    fn each_pool_address_is_held_by_exactly_one_ready_node() {
        let nodes = [
            node("a", "192.0.2.1", true),
            node("b", "192.0.2.2", true),
            node("c", "192.0.2.3", false),
        ];
        let pool: Vec<String> = (10..30).map(|i| format!("198.51.100.{i}")).collect();
        let services = [balancer(
            &pool.iter().map(String::as_str).collect::<Vec<_>>(),
        )];
        let (a, b, c) = (
            held_here(&services, &nodes, "a"),
            held_here(&services, &nodes, "b"),
            held_here(&services, &nodes, "c"),
        );
        assert_eq!(a.len() + b.len(), 20);
        assert!(a.is_disjoint(&b) && c.is_empty(), "not ready: holds none");
        assert!(!a.is_empty() && !b.is_empty(), "spread: {a:?} {b:?}");
        // Node addresses (no pool) are the nodes' own already.
        let own = [balancer(&["192.0.2.1", "192.0.2.2"])];
        assert!(held_here(&own, &nodes, "a").is_empty());
    }
}
