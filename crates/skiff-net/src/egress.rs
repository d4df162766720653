//! Pods reaching beyond the cluster: their traffic leaves with the node's address
//! (masquerade), as flannel's does; traffic between pods — on any node — keeps the pods'
//! own addresses. One small nftables table of its own (`ip skiff-pods`), replaced whole.

use crate::cidr::Cidr;
use crate::ip::Netns;
use crate::nftables::{self, Chain, Hook, NftError, Table};

/// The table pod egress lives in.
pub const EGRESS_TABLE: &str = "skiff-pods";

/// The egress table for pods of `cluster` (the cluster CIDR).
pub fn egress_table(cluster: Cidr) -> Table {
    let mut t = Table::new(
        "ip",
        EGRESS_TABLE,
        "skiff: pods reach the outside through NAT",
    );
    t.chains.insert(
        "postrouting".into(),
        Chain {
            // After the service proxy's own masquerading (srcnat).
            hook: Some(Hook {
                kind: "nat",
                hook: "postrouting",
                priority: "srcnat + 10",
            }),
            rules: vec![format!(
                "ip saddr {cluster} ip daddr != {cluster} ip daddr != 224.0.0.0/4 masquerade fully-random"
            )],
        },
    );
    t
}

/// Puts the egress table for `cluster` in place in `netns` (replacing any before it).
pub fn ensure_egress(netns: &Netns, cluster: Cidr) -> Result<(), NftError> {
    nftables::apply(netns, &egress_table(cluster).create())
}

/// Removes it (`skiff node reset`).
pub fn remove_egress(netns: &Netns) -> Result<(), NftError> {
    nftables::apply(netns, &Table::delete_script("ip", EGRESS_TABLE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_traffic_leaving_the_cluster_is_masqueraded() {
        let script = egress_table(Cidr::parse("10.42.0.0/16").unwrap()).create();
        assert!(script.contains(
            "add rule ip skiff-pods postrouting ip saddr 10.42.0.0/16 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random"
        ), "{script}");
        assert!(script.contains("type nat hook postrouting priority srcnat + 10"));
    }
}
