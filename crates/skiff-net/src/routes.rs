//! Routes to the other nodes' pod subnets (flannel's `host-gw`): each subnet through the
//! node that holds it, when that node is a neighbour on a link this namespace shares. Pod
//! traffic between nodes then goes unchanged — no tunnel and no address translation.
//!
//! `PodRoutes` remembers what it made, so a sync replaces what changed and removes the routes
//! of nodes that went; the routes carry skiff's route protocol (`ip route show proto 83`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use crate::cidr::Cidr;
use crate::ip::{Netns, WiringError};
use crate::netlink::Netlink;

/// skiff's routes to other nodes' pod subnets carry this protocol number (above the
/// kernel's and the routing daemons' well-known ones), as flannel and calico tag theirs.
pub const ROUTE_PROTOCOL: u8 = 83;

/// Removes every route skiff made in `netns` (`skiff node reset`).
pub fn remove_all(netns: &Netns) -> Result<(), WiringError> {
    netns
        .ip(&["route", "flush", "proto", &ROUTE_PROTOCOL.to_string()])
        .map(|_| ())
}

pub struct PodRoutes {
    netns: Netns,
    /// Subnet → the node address it is routed through, as last made.
    made: BTreeMap<Cidr, Ipv4Addr>,
}

impl PodRoutes {
    pub fn new(netns: Netns) -> PodRoutes {
        PodRoutes {
            netns,
            made: BTreeMap::new(),
        }
    }

    /// Makes the routes exactly `wanted` (subnet → node address): new and moved ones
    /// replaced, gone ones removed. One failed route does not stop the others; the first
    /// failure is answered, and the next sync tries again.
    pub fn sync(&mut self, wanted: &BTreeMap<Cidr, Ipv4Addr>) -> Result<(), WiringError> {
        let made = &mut self.made;
        self.netns.within(|| {
            let mut netlink = Netlink::open().map_err(WiringError::step("netlink"))?;
            let mut first_error = None;
            for (subnet, via) in wanted {
                if made.get(subnet) == Some(via) {
                    continue;
                }
                match netlink.replace_route(*subnet, *via) {
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
            let gone: Vec<Cidr> = made
                .keys()
                .filter(|s| !wanted.contains_key(s))
                .copied()
                .collect();
            for subnet in gone {
                match netlink.delete_route(subnet) {
                    Ok(()) => {
                        made.remove(&subnet);
                    }
                    // Already gone (someone removed it): nothing to do.
                    Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
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
