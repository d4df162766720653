//! Service ports and their endpoints → the node's nftables table, in the layout of
//! kube-proxy's nftables mode (so someone who knows one reads the other):
//!
//! - base chains hook the packet path and jump to a few fixed chains: `services` (DNAT by
//!   the verdict maps `service-ips` — cluster, external and load-balancer addresses — and
//!   `service-nodeports` for local addresses), `masquerading` (SNAT of what was marked), and
//!   the checks that reject at once what no endpoint can take (`no-endpoint-services`,
//!   `no-endpoint-nodeports`, and `cluster-ips` for ports a cluster IP does not serve);
//! - per service port, `service-<id>` spreads new connections over its endpoints at random
//!   (`numgen random mod N vmap`), `external-<id>` is the way in from outside (masquerade,
//!   or with `externalTrafficPolicy: Local` straight to `local-<id>`), and per endpoint
//!   `endpoint-<id>__<ip>/<port>` DNATs, masquerading a pod that reached itself (hairpin)
//!   and remembering the client in `affinity-…` with `sessionAffinity: ClientIP`.
//!
//! Invariant: the table is a function of its input alone (same services and endpoints, same
//! table), which is what lets the proxier sync by difference.

use std::fmt::Write as _;

use skiff_net::Cidr;
use skiff_net::nftables::{Chain, Hook, Set, Table};

use crate::model::{Endpoint, ServicePort, Targets, categorize};

/// The table skiff owns on every node (`ip skiff`).
pub const TABLE: &str = "skiff";

/// What the rules depend on besides services and endpoints.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// The cluster's pod addresses: traffic to a cluster IP from outside them is
    /// masqueraded, so replies come back through this node.
    pub cluster_cidr: Option<Cidr>,
}

fn hooked(kind: &'static str, hook: &'static str, priority: &'static str) -> Chain {
    Chain {
        hook: Some(Hook {
            kind,
            hook,
            priority,
        }),
        rules: Vec::new(),
    }
}

/// The fixed part: base chains, the dispatch chains and the maps they read.
fn skeleton() -> Table {
    let mut t = Table::new("ip", TABLE, "rules for skiff's services");
    let verdict_by_address = "type ipv4_addr . inet_proto . inet_service : verdict";
    let verdict_by_port = "type inet_proto . inet_service : verdict";
    t.sets
        .insert("cluster-ips".into(), Set::plain("type ipv4_addr"));
    t.sets
        .insert("service-ips".into(), Set::map(verdict_by_address));
    t.sets
        .insert("service-nodeports".into(), Set::map(verdict_by_port));
    t.sets
        .insert("no-endpoint-services".into(), Set::map(verdict_by_address));
    t.sets
        .insert("no-endpoint-nodeports".into(), Set::map(verdict_by_port));

    let chains: [(&str, Chain, &[&str]); 14] = [
        (
            "filter-input",
            hooked("filter", "input", "-110"),
            &[
                "ct state new fib daddr type local jump nodeport-endpoints-check",
                "ct state new jump service-endpoints-check",
            ],
        ),
        (
            "filter-forward",
            hooked("filter", "forward", "-110"),
            &[
                "ct state new jump service-endpoints-check",
                "ct state new jump cluster-ips-check",
            ],
        ),
        (
            "filter-output",
            hooked("filter", "output", "-110"),
            &["ct state new jump service-endpoints-check"],
        ),
        // After the output DNAT: what still goes to a cluster IP has no service port there.
        (
            "filter-output-post-dnat",
            hooked("filter", "output", "-90"),
            &["ct state new jump cluster-ips-check"],
        ),
        (
            "nat-prerouting",
            hooked("nat", "prerouting", "dstnat"),
            &["jump services"],
        ),
        (
            "nat-output",
            hooked("nat", "output", "-100"),
            &["jump services"],
        ),
        (
            "nat-postrouting",
            hooked("nat", "postrouting", "srcnat"),
            &["jump masquerading"],
        ),
        (
            "services",
            Chain::default(),
            &[
                "ip daddr . meta l4proto . th dport vmap @service-ips",
                "fib daddr type local ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @service-nodeports",
            ],
        ),
        (
            "service-endpoints-check",
            Chain::default(),
            &["ip daddr . meta l4proto . th dport vmap @no-endpoint-services"],
        ),
        (
            "nodeport-endpoints-check",
            Chain::default(),
            &["ip daddr != 127.0.0.0/8 meta l4proto . th dport vmap @no-endpoint-nodeports"],
        ),
        (
            "cluster-ips-check",
            Chain::default(),
            &["ip daddr @cluster-ips reject comment \"no service port at this cluster IP\""],
        ),
        // The packet mark 0x4000 (kube-proxy's bit) asks `masquerading` to SNAT.
        (
            "mark-for-masquerade",
            Chain::default(),
            &["meta mark set meta mark or 0x4000"],
        ),
        (
            "masquerading",
            Chain::default(),
            &[
                "meta mark & 0x4000 == 0 return",
                "meta mark set meta mark xor 0x4000",
                "masquerade fully-random",
            ],
        ),
        ("reject-chain", Chain::default(), &["reject"]),
    ];
    for (name, mut chain, rules) in chains {
        chain.rules = rules.iter().map(|r| r.to_string()).collect();
        t.chains.insert(name.into(), chain);
    }
    t
}

fn endpoint_chain(id: &str, e: &Endpoint) -> String {
    format!("endpoint-{id}__{}/{}", e.ip, e.port)
}

fn affinity_set(id: &str, e: &Endpoint) -> String {
    format!("affinity-{id}__{}/{}", e.ip, e.port)
}

/// `numgen random mod N vmap { 0 : goto a, 1 : goto b }` over `endpoints`.
fn spread(id: &str, endpoints: &[Endpoint]) -> String {
    let mut rule = format!("numgen random mod {} vmap {{ ", endpoints.len());
    for (i, e) in endpoints.iter().enumerate() {
        if i > 0 {
            rule.push_str(", ");
        }
        let _ = write!(rule, "{i} : goto {}", endpoint_chain(id, e));
    }
    rule.push_str(" }");
    rule
}

/// The rules that pick an endpoint: a remembered one first (affinity), else at random.
fn pick(id: &str, port: &ServicePort, endpoints: &[Endpoint]) -> Vec<String> {
    let mut rules = Vec::new();
    if port.affinity_timeout.is_some() {
        for e in endpoints {
            rules.push(format!(
                "ip saddr @{} goto {}",
                affinity_set(id, e),
                endpoint_chain(id, e)
            ));
        }
    }
    rules.push(spread(id, endpoints));
    rules
}

/// Adds one service port and its endpoints to `t`.
fn add_service_port(
    t: &mut Table,
    config: &ProxyConfig,
    port: &ServicePort,
    endpoints: &[Endpoint],
) {
    let id = port.id();
    let Targets {
        cluster,
        local,
        any,
    } = categorize(port, endpoints);
    let proto = port.protocol.nft();
    let address_key = |ip: &std::net::Ipv4Addr| format!("{ip} . {proto} . {}", port.port);
    // With no endpoint anywhere the address refuses at once; with endpoints only on other
    // nodes (a Local policy), it drops, as kube-proxy.
    let nothing_here = if any { "drop" } else { "goto reject-chain" };

    t.set("cluster-ips").insert(port.cluster_ip.to_string());
    let service_chain = format!("service-{id}");
    if cluster.is_empty() {
        t.set("no-endpoint-services")
            .insert_mapping(address_key(&port.cluster_ip), nothing_here.into());
    } else {
        let mut rules = Vec::new();
        if let Some(cidr) = config.cluster_cidr {
            rules.push(format!(
                "ip daddr {} {proto} dport {} ip saddr != {cidr} jump mark-for-masquerade",
                port.cluster_ip, port.port
            ));
        }
        rules.extend(pick(&id, port, &cluster));
        t.chain(&service_chain).rules = rules;
        t.set("service-ips").insert_mapping(
            address_key(&port.cluster_ip),
            format!("goto {service_chain}"),
        );
    }

    if port.has_external() {
        let reachable = if port.external_local {
            !local.is_empty()
        } else {
            !cluster.is_empty()
        };
        let external_chain = format!("external-{id}");
        if reachable {
            let mut rules = Vec::new();
            if port.external_local {
                // The client's address is kept, except for this node's own traffic, which
                // takes the cluster path like any traffic from inside.
                if !cluster.is_empty() {
                    rules.push("fib saddr type local jump mark-for-masquerade".to_string());
                    rules.push(format!("fib saddr type local goto {service_chain}"));
                }
                let local_chain = format!("local-{id}");
                t.chain(&local_chain).rules = pick(&id, port, &local);
                rules.push(format!("goto {local_chain}"));
            } else {
                rules.push("jump mark-for-masquerade".to_string());
                rules.push(format!("goto {service_chain}"));
            }
            t.chain(&external_chain).rules = rules;
        }
        let verdict = if reachable {
            format!("goto {external_chain}")
        } else {
            nothing_here.to_string()
        };
        let ip_map = if reachable {
            "service-ips"
        } else {
            "no-endpoint-services"
        };
        for ip in &port.external_ips {
            t.set(ip_map)
                .insert_mapping(address_key(ip), verdict.clone());
        }
        if let Some(node_port) = port.node_port {
            let map = if reachable {
                "service-nodeports"
            } else {
                "no-endpoint-nodeports"
            };
            t.set(map)
                .insert_mapping(format!("{proto} . {node_port}"), verdict);
        }
    }

    let mut chained: Vec<&Endpoint> = cluster.iter().chain(local.iter()).collect();
    chained.sort();
    chained.dedup();
    for e in chained {
        let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", e.ip)];
        if let Some(timeout) = port.affinity_timeout {
            let set = affinity_set(&id, e);
            t.sets.insert(
                set.clone(),
                Set::dynamic(&format!(
                    "type ipv4_addr; flags dynamic,timeout; timeout {timeout}s"
                )),
            );
            rules.push(format!("update @{set} {{ ip saddr }}"));
        }
        rules.push(format!("meta l4proto {proto} dnat to {}:{}", e.ip, e.port));
        t.chain(&endpoint_chain(&id, e)).rules = rules;
    }
}

/// The whole table for these service ports.
pub fn table<'a>(
    config: &ProxyConfig,
    ports: impl IntoIterator<Item = (&'a ServicePort, &'a [Endpoint])>,
) -> Table {
    let mut t = skeleton();
    for (port, endpoints) in ports {
        add_service_port(&mut t, config, port, endpoints);
    }
    t
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    use crate::model::tests::port as web;

    fn ep(last: u8, local: bool) -> Endpoint {
        crate::model::tests::ep(last, true, true, false, local)
    }

    fn config() -> ProxyConfig {
        ProxyConfig {
            cluster_cidr: Some(Cidr::parse("10.42.0.0/16").unwrap()),
        }
    }

    fn rules(t: &Table, chain: &str) -> Vec<String> {
        t.chains
            .get(chain)
            .unwrap_or_else(|| panic!("no chain {chain}"))
            .rules
            .clone()
    }

    fn element(t: &Table, set: &str, key: &str) -> Option<String> {
        t.sets[set].elements.get(key).cloned().flatten()
    }

    #[test]
    fn a_cluster_ip_spreads_over_its_endpoints_and_masquerades_hairpins() {
        let eps = [ep(2, true), ep(3, false)];
        let t = table(&config(), [(&web(), &eps[..])]);
        assert_eq!(
            element(&t, "service-ips", "10.43.0.10 . tcp . 80").as_deref(),
            Some("goto service-default/web/tcp/http")
        );
        assert_eq!(
            rules(&t, "service-default/web/tcp/http"),
            [
                "ip daddr 10.43.0.10 tcp dport 80 ip saddr != 10.42.0.0/16 jump mark-for-masquerade",
                "numgen random mod 2 vmap { 0 : goto endpoint-default/web/tcp/http__10.42.0.2/8080, 1 : goto endpoint-default/web/tcp/http__10.42.0.3/8080 }",
            ]
        );
        assert_eq!(
            rules(&t, "endpoint-default/web/tcp/http__10.42.0.3/8080"),
            [
                "ip saddr 10.42.0.3 jump mark-for-masquerade",
                "meta l4proto tcp dnat to 10.42.0.3:8080",
            ]
        );
        assert!(t.sets["cluster-ips"].elements.contains_key("10.43.0.10"));
        assert!(t.sets["no-endpoint-services"].elements.is_empty());
    }

    #[test]
    fn a_service_without_endpoints_rejects_and_has_no_chains() {
        let mut p = web();
        p.node_port = Some(30080);
        let t = table(&config(), [(&p, &[][..])]);
        assert_eq!(
            element(&t, "no-endpoint-services", "10.43.0.10 . tcp . 80").as_deref(),
            Some("goto reject-chain")
        );
        assert_eq!(
            element(&t, "no-endpoint-nodeports", "tcp . 30080").as_deref(),
            Some("goto reject-chain")
        );
        assert!(!t.chains.keys().any(|c| c.contains("default/web")));
        assert_eq!(
            t,
            table(&config(), [(&p, &[][..])]),
            "a function of its input"
        );
    }

    #[test]
    fn node_ports_and_external_ips_go_through_the_external_chain() {
        let mut p = web();
        p.node_port = Some(30080);
        p.external_ips = vec![Ipv4Addr::new(192, 0, 2, 10)];
        let eps = [ep(2, true)];
        let t = table(&config(), [(&p, &eps[..])]);
        let external = "goto external-default/web/tcp/http";
        assert_eq!(
            element(&t, "service-nodeports", "tcp . 30080").as_deref(),
            Some(external)
        );
        assert_eq!(
            element(&t, "service-ips", "192.0.2.10 . tcp . 80").as_deref(),
            Some(external)
        );
        assert_eq!(
            rules(&t, "external-default/web/tcp/http"),
            [
                "jump mark-for-masquerade",
                "goto service-default/web/tcp/http"
            ]
        );
    }

    #[test]
    fn external_traffic_policy_local_keeps_the_client_address_and_this_nodes_pods() {
        let mut p = web();
        p.node_port = Some(30080);
        p.external_local = true;
        let eps = [ep(2, true), ep(3, false)];
        let t = table(&config(), [(&p, &eps[..])]);
        assert_eq!(
            rules(&t, "external-default/web/tcp/http"),
            [
                "fib saddr type local jump mark-for-masquerade",
                "fib saddr type local goto service-default/web/tcp/http",
                "goto local-default/web/tcp/http",
            ]
        );
        assert_eq!(
            rules(&t, "local-default/web/tcp/http"),
            ["numgen random mod 1 vmap { 0 : goto endpoint-default/web/tcp/http__10.42.0.2/8080 }"]
        );
        // Only the other node has endpoints: outside traffic is dropped here.
        let eps = [ep(3, false)];
        let t = table(&config(), [(&p, &eps[..])]);
        assert_eq!(
            element(&t, "no-endpoint-nodeports", "tcp . 30080").as_deref(),
            Some("drop")
        );
        assert!(element(&t, "service-ips", "10.43.0.10 . tcp . 80").is_some());
    }

    #[test]
    fn client_ip_affinity_remembers_the_client_per_endpoint() {
        let mut p = web();
        p.affinity_timeout = Some(10800);
        let eps = [ep(2, true)];
        let t = table(&config(), [(&p, &eps[..])]);
        let set = "affinity-default/web/tcp/http__10.42.0.2/8080";
        assert!(t.sets[set].dynamic);
        assert!(t.sets[set].declaration.contains("timeout 10800s"));
        assert_eq!(
            rules(&t, "service-default/web/tcp/http")[1],
            format!("ip saddr @{set} goto endpoint-default/web/tcp/http__10.42.0.2/8080")
        );
        assert_eq!(
            rules(&t, "endpoint-default/web/tcp/http__10.42.0.2/8080")[1],
            format!("update @{set} {{ ip saddr }}")
        );
    }

    #[test]
    fn a_removed_endpoint_leaves_by_a_partial_update() {
        let p = web();
        let before = [ep(2, true), ep(3, true)];
        let after = [ep(2, true)];
        let old = table(&config(), [(&p, &before[..])]);
        let new = table(&config(), [(&p, &after[..])]);
        let script = new.update(&old).unwrap();
        assert!(script.contains("flush chain ip skiff service-default/web/tcp/http\n"));
        assert!(script.ends_with(
            "flush chain ip skiff endpoint-default/web/tcp/http__10.42.0.3/8080\ndelete chain ip skiff endpoint-default/web/tcp/http__10.42.0.3/8080\n"
        ));
        assert!(!script.contains("element"), "{script}");
    }
}
