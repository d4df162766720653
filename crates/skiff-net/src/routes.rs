//! Routes to the other nodes' pod subnets, by one of two backends (flannel's names):
//!
//! - `host-gw`: each subnet through the node that holds it, when that node is a neighbour on
//!   a link this namespace shares. Pod traffic between nodes goes unchanged — no tunnel and
//!   no address translation — but the kernel refuses a route through a node off the link.
//! - `vxlan`: each subnet through this node's VXLAN link to the peer's VTEP (`vxlan.rs`):
//!   works between any nodes that reach each other by UDP, at 50 bytes of each packet.
//!
//! `PodRoutes` remembers what it made, so a sync replaces what changed and removes the routes
//! of nodes that went; the routes carry skiff's route protocol (`ip route show proto 83`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::ip::{Netns, WiringError};
use crate::netlink::Netlink;
use crate::vxlan::{Vxlan, vtep_mac};

/// skiff's routes to other nodes' pod subnets carry this protocol number (above the
/// kernel's and the routing daemons' well-known ones), as flannel and calico tag theirs.
pub const ROUTE_PROTOCOL: u8 = 83;

/// Removes every route skiff made in `netns` (`skiff node reset`).
pub fn remove_all(netns: &Netns) -> Result<(), WiringError> {
    netns
        .ip(&["route", "flush", "proto", &ROUTE_PROTOCOL.to_string()])
        .map(|_| ())
}

/// How this node reaches other nodes' pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Direct routes through the peer nodes (which must share a link with this one).
    HostGw,
    /// Through this node's VXLAN link, made by `vxlan::ensure`.
    Vxlan(Vxlan),
}

pub struct PodRoutes {
    netns: Netns,
    backend: Backend,
    /// Subnet → the node address it is routed through, as last made.
    made: BTreeMap<Cidr, Ipv4Addr>,
}

impl PodRoutes {
    pub fn new(netns: Netns, backend: Backend) -> PodRoutes {
        PodRoutes {
            netns,
            backend,
            made: BTreeMap::new(),
        }
    }

    /// Makes the routes exactly `wanted` (subnet → node address): new and moved ones
    /// replaced, gone ones removed. One failed route does not stop the others; the first
    /// failure is answered, and the next sync tries again.
    pub fn sync(&mut self, wanted: &BTreeMap<Cidr, Ipv4Addr>) -> Result<(), WiringError> {
        let (made, backend) = (&mut self.made, self.backend);
        self.netns.within(|| {
            let mut netlink = Netlink::open().map_err(WiringError::step("netlink"))?;
            let mut first_error = None;
            for (subnet, via) in wanted {
                if made.get(subnet) == Some(via) {
                    continue;
                }
                match add(&mut netlink, backend, *subnet, *via) {
                    Ok(()) => {
                        made.insert(*subnet, *via);
                    }
                    Err(e) => {
                        first_error.get_or_insert(WiringError::Step {
                            what: format!("routing {subnet} via {via}"),
                            source: e,
                        });
                    }
                }
            }
            let gone: Vec<(Cidr, Ipv4Addr)> = made
                .iter()
                .filter(|(s, _)| !wanted.contains_key(s))
                .map(|(s, via)| (*s, *via))
                .collect();
            for (subnet, via) in gone {
                match remove(&mut netlink, backend, subnet, via) {
                    Ok(()) => {
                        made.remove(&subnet);
                    }
                    Err(e) => {
                        first_error.get_or_insert(WiringError::Step {
                            what: format!("removing the route to {subnet}"),
                            source: e,
                        });
                    }
                }
            }
            first_error.map_or(Ok(()), Err)
        })
    }
}

/// Makes the way to `subnet` on the node at `via`.
fn add(
    netlink: &mut Netlink,
    backend: Backend,
    subnet: Cidr,
    via: Ipv4Addr,
) -> std::io::Result<()> {
    match backend {
        Backend::HostGw => netlink.replace_route(subnet, via),
        Backend::Vxlan(link) => {
            let (vtep, mac) = (subnet.network, vtep_mac(subnet));
            netlink.replace_fdb(link.index, mac, via)?;
            netlink.replace_neighbour(link.index, vtep, mac)?;
            netlink.replace_onlink_route(subnet, vtep, link.index)
        }
    }
}

/// Removes what `add` made; what is already gone (someone removed it) is not an error.
fn remove(
    netlink: &mut Netlink,
    backend: Backend,
    subnet: Cidr,
    via: Ipv4Addr,
) -> std::io::Result<()> {
    let gone = |r: std::io::Result<()>| match r {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ESRCH | libc::ENOENT)) => Ok(()),
        other => other,
    };
    gone(netlink.delete_route(subnet))?;
    if let Backend::Vxlan(link) = backend {
        gone(netlink.delete_neighbour(link.index, subnet.network))?;
        gone(netlink.delete_fdb(link.index, vtep_mac(subnet), via))?;
    }
    Ok(())
}
