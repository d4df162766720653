//! VXLAN between nodes (flannel's `vxlan` backend), for nodes that do not share a link:
//! every node has one VXLAN link, `skiff.vxlan`, sending from its node address. A node's
//! end of the overlay (its VTEP) has the address of its pod CIDR's network (`10.42.1.0/32`)
//! and a hardware address made from that CIDR (`vtep_mac`), so a node learns each peer's
//! VTEP from the peer's Node object alone — pod CIDR and InternalIP — with nothing more to
//! publish. Per peer three entries make the path (`routes.rs` keeps them in step):
//!
//! - route: the peer's pod CIDR via the peer's VTEP address, on `skiff.vxlan`, `onlink`;
//! - ARP: the peer's VTEP address is at the peer's VTEP hardware address (permanent);
//! - forwarding: frames for that hardware address go in UDP to the peer's node address.
//!
//! Learning and multicast are off: every entry is made, none is discovered. Pods on a VXLAN
//! node get an MTU 50 bytes below the underlay's (the encapsulation's overhead), so their
//! packets fit once wrapped.

use std::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::ip::{Netns, WiringError};
use crate::netlink::{Netlink, index_of};

/// The VXLAN link's name.
pub const LINK: &str = "skiff.vxlan";
/// The VXLAN network identifier (flannel's default).
pub const VNI: u32 = 1;
/// The UDP port (flannel's and the Linux kernel's historical one, not IANA's 4789, so a
/// node also running flannel's tools reads the traffic the same way).
pub const PORT: u16 = 8472;
/// Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14) headers.
pub const OVERHEAD: u32 = 50;

/// The VTEP hardware address of the node holding `subnet`: locally administered, unicast,
/// and the subnet's network address (pod CIDRs never overlap, so neither do these).
pub fn vtep_mac(subnet: Cidr) -> [u8; 6] {
    let [a, b, c, d] = subnet.network.octets();
    [0x0e, 0x5f, a, b, c, d]
}

/// This node's VXLAN link, as made by [`ensure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vxlan {
    /// The link's index in the node's namespace.
    pub index: u32,
    /// The MTU pods on this node get: the VXLAN link's.
    pub mtu: u32,
}

/// Makes this node's VXLAN link (kept when it is already as wanted, so an agent restart
/// does not cut the pods' traffic; made anew when its settings changed): sending from
/// `local`, with the VTEP of the node's pod CIDR `subnet`, up.
pub fn ensure(netns: &Netns, local: Ipv4Addr, subnet: Cidr) -> Result<Vxlan, WiringError> {
    let underlay = underlay_of(netns, local)?;
    let mtu = underlay.mtu.saturating_sub(OVERHEAD);
    let existing = netns.ip(&["-d", "-o", "link", "show", "dev", LINK]).ok();
    let keep = existing
        .as_deref()
        .is_some_and(|l| matches_settings(l, local, mtu, vtep_mac(subnet)));
    netns.within(|| {
        let mut netlink = Netlink::open().map_err(WiringError::step("netlink"))?;
        if existing.is_some() && !keep {
            netlink
                .delete_link(LINK)
                .map_err(WiringError::step(format!("removing the outdated {LINK}")))?;
        }
        if !keep {
            netlink
                .add_vxlan(
                    LINK,
                    VNI,
                    local,
                    PORT,
                    underlay.index,
                    vtep_mac(subnet),
                    mtu,
                )
                .map_err(WiringError::step(format!(
                    "adding the VXLAN link {LINK} (is the vxlan kernel module available?)"
                )))?;
        }
        let index =
            index_of(LINK).ok_or_else(|| WiringError::Missing(format!("{LINK} is gone")))?;
        netlink
            .replace_address(index, subnet.network, 32)
            .map_err(WiringError::step(format!(
                "giving {LINK} {}/32",
                subnet.network
            )))?;
        netlink
            .set_up(index, None)
            .map_err(WiringError::step(format!("putting {LINK} up")))?;
        Ok(Vxlan { index, mtu })
    })
}

/// Removes the VXLAN link, with every route, ARP and forwarding entry on it (`skiff node
/// reset`, or a node moving to direct routes). Idempotent.
pub fn remove(netns: &Netns) -> Result<(), WiringError> {
    netns.within(|| {
        if index_of(LINK).is_none() {
            return Ok(());
        }
        Netlink::open()
            .and_then(|mut n| n.delete_link(LINK))
            .map_err(WiringError::step(format!("removing {LINK}")))
    })
}

/// The link that holds the node's address: its index (when found) and MTU.
struct Underlay {
    index: Option<u32>,
    mtu: u32,
}

/// Finds the link holding `local`; an address on none of them (a node address given for a
/// NAT in front of the node) leaves the kernel to route the tunnel, at Ethernet's MTU.
fn underlay_of(netns: &Netns, local: Ipv4Addr) -> Result<Underlay, WiringError> {
    let addresses = netns.ip(&["-4", "-o", "addr", "show", "to", &format!("{local}/32")])?;
    let Some(name) = link_name(&addresses) else {
        return Ok(Underlay {
            index: None,
            mtu: 1500,
        });
    };
    let listing = netns.ip(&["-o", "link", "show", "dev", &name])?;
    Ok(Underlay {
        index: listing
            .split(':')
            .next()
            .and_then(|i| i.trim().parse().ok()),
        mtu: word_after(&listing, "mtu")
            .and_then(|m| m.parse().ok())
            .unwrap_or(1500),
    })
}

/// The link of the first line of `ip -o addr` output (`2: eth0    inet …`; a veth's
/// `eth0@if7` named as `eth0`).
fn link_name(listing: &str) -> Option<String> {
    let name = listing.lines().next()?.split_whitespace().nth(1)?;
    Some(name.split('@').next()?.trim_end_matches(':').to_string())
}

/// The word after `key` in `text`.
fn word_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let mut words = text.split_whitespace();
    words.find(|w| *w == key)?;
    words.next()
}

/// Whether `ip -d -o link show` of the existing link says it is the VXLAN link wanted.
fn matches_settings(listing: &str, local: Ipv4Addr, mtu: u32, mac: [u8; 6]) -> bool {
    let mac = mac
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    word_after(listing, "vxlan") == Some("id")
        && word_after(listing, "id") == Some(&VNI.to_string())
        && word_after(listing, "local") == Some(&local.to_string())
        && word_after(listing, "dstport") == Some(&PORT.to_string())
        && word_after(listing, "mtu") == Some(&mtu.to_string())
        && word_after(listing, "link/ether") == Some(&mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vtep_addresses_come_from_the_pod_cidr() {
        let mac = vtep_mac(Cidr::parse("10.42.3.0/24").unwrap());
        assert_eq!(mac, [0x0e, 0x5f, 10, 42, 3, 0]);
        assert_eq!(mac[0] & 0b11, 0b10, "locally administered unicast");
        assert_ne!(mac, vtep_mac(Cidr::parse("10.42.4.0/24").unwrap()));
    }

    #[test]
    fn reads_iproute2_listings() {
        assert_eq!(
            link_name("3: eth0@if12    inet 203.0.113.11/24 scope global eth0\\ valid_lft forever")
                .as_deref(),
            Some("eth0")
        );
        assert_eq!(link_name(""), None);
        let listing = "9: skiff.vxlan: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default \\    link/ether 0e:5f:0a:2a:03:00 brd ff:ff:ff:ff:ff:ff promiscuity 0 minmtu 68 maxmtu 65535 \\    vxlan id 1 local 203.0.113.11 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300";
        let mac = [0x0e, 0x5f, 10, 42, 3, 0];
        let local = Ipv4Addr::new(203, 0, 113, 11);
        assert!(matches_settings(listing, local, 1450, mac));
        assert!(!matches_settings(
            listing,
            Ipv4Addr::new(203, 0, 113, 12),
            1450,
            mac
        ));
        assert!(!matches_settings(listing, local, 1500, mac));
        assert!(!matches_settings(
            listing,
            local,
            1450,
            [0x0e, 0x5f, 10, 42, 4, 0]
        ));
        assert!(!matches_settings(
            &listing.replace("dstport 8472", "dstport 4789"),
            local,
            1450,
            mac
        ));
        assert!(!matches_settings(
            &listing.replace("vxlan id", "bridge id"),
            local,
            1450,
            mac
        ));
    }
}
