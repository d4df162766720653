//! A node's pod network: the bridge (gateway = the pod CIDR's first address) in the node's
//! network namespace, and per pod a veth pair whose far end is the pod's `eth0` with an
//! address from the CIDR and a default route through the bridge.

use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::cidr::Cidr;
use crate::ip::{Netns, WiringError};
use crate::ipam::{Ipam, IpamError};
use crate::netlink::{Netlink, index_of};

/// The pod's end of its veth pair.
const POD_LINK: &str = "eth0";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("setting up the pod bridge {bridge}: {cause}")]
    Bridge {
        bridge: String,
        #[source]
        cause: WiringError,
    },
    #[error("connecting pod {pod}: {cause}")]
    Attach {
        pod: String,
        #[source]
        cause: WiringError,
    },
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

pub struct PodNetwork {
    node: Netns,
    bridge: String,
    cidr: Cidr,
    ipam: Ipam,
    /// The pods' links' MTU (below the node's under VXLAN); `None`: the kernel's default.
    mtu: Option<u32>,
}

/// The node-side name of a pod's veth: `veth` and 8 hex digits of a hash of the pod key
/// (interface names are at most 15 bytes).
fn host_veth(key: &str) -> String {
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!("veth{:08x}", hash as u32)
}

/// Removes a node's pod bridge (its pods' veths went with their namespaces); answers
/// whether there was one. Idempotent.
pub fn remove_bridge(node: &Netns, bridge: &str) -> Result<bool, NetError> {
    node.within(|| {
        if index_of(bridge).is_none() {
            return Ok(false);
        }
        let mut netlink = Netlink::open().map_err(WiringError::step("netlink"))?;
        netlink
            .delete_link(bridge)
            .map(|()| true)
            .map_err(WiringError::step("removing it"))
    })
    .map_err(|cause| NetError::Bridge {
        bridge: bridge.to_string(),
        cause,
    })
}

impl PodNetwork {
    /// `state` holds the address records.
    pub fn new(node: Netns, bridge: &str, cidr: Cidr, state: impl Into<PathBuf>) -> PodNetwork {
        PodNetwork {
            node,
            bridge: bridge.to_string(),
            cidr,
            ipam: Ipam::new(cidr, state),
            mtu: None,
        }
    }

    /// Pods (and the bridge) get links of `mtu` bytes.
    pub fn with_mtu(mut self, mtu: u32) -> PodNetwork {
        self.mtu = Some(mtu);
        self
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// Creates the bridge (idempotent): up, with the gateway address.
    pub fn ensure_bridge(&self) -> Result<(), NetError> {
        let err = |cause| NetError::Bridge {
            bridge: self.bridge.clone(),
            cause,
        };
        let (gateway, prefix) = (self.cidr.gateway(), self.cidr.prefix);
        self.node
            .within(|| {
                let mut netlink = Netlink::open().map_err(WiringError::step("netlink"))?;
                if index_of(&self.bridge).is_none() {
                    netlink
                        .add_bridge(&self.bridge)
                        .map_err(WiringError::step("adding it"))?;
                }
                let index = index_of(&self.bridge)
                    .ok_or_else(|| WiringError::Missing("it is gone again".into()))?;
                if let Some(mtu) = self.mtu {
                    netlink
                        .set_mtu(index, mtu)
                        .map_err(WiringError::step(format!("setting its MTU to {mtu}")))?;
                }
                netlink
                    .replace_address(index, gateway, prefix)
                    .map_err(WiringError::step(format!("giving it {gateway}/{prefix}")))?;
                netlink
                    .set_up(index, None)
                    .map_err(WiringError::step("putting it up"))
            })
            .map_err(err)
    }

    /// Connects the pod's network namespace (idempotent per `key`); answers its address.
    /// Made with netlink from this process (no `ip` runs on the pod startup path): on the
    /// node's side one request makes the veth pair with its far end already in the pod as
    /// `eth0` and its near end on the bridge, up; inside the pod, `eth0` gets the address,
    /// goes up and carries the default route.
    pub fn attach(&self, key: &str, pod_netns: &Path) -> Result<Ipv4Addr, NetError> {
        let known = self.ipam.address_of(key).is_some();
        let ip = self.ipam.allocate(key)?;
        let err = |cause| NetError::Attach {
            pod: key.to_string(),
            cause,
        };
        let veth = host_veth(key);
        let pod = Netns::Path(pod_netns.to_path_buf());
        // A pod seen before (an agent restart) may be wired already.
        let wired = known
            && pod
                .within(|| Ok(index_of(POD_LINK).is_some()))
                .unwrap_or(false);
        self.node
            .within(|| {
                let mut netlink = Netlink::open().map_err(WiringError::step("netlink"))?;
                let bridge = index_of(&self.bridge).ok_or_else(|| {
                    WiringError::Missing(format!(
                        "the bridge {} is gone (restart the agent)",
                        self.bridge
                    ))
                })?;
                match index_of(&veth) {
                    Some(index) if wired => {
                        netlink
                            .set_up(index, Some(bridge))
                            .map_err(WiringError::step(format!(
                                "putting {veth} up on {}",
                                self.bridge
                            )))?
                    }
                    _ => {
                        // A half-wired pod from before: its veth starts afresh.
                        let _ = netlink.delete_link(&veth);
                        let target = std::fs::File::open(pod_netns).map_err(WiringError::step(
                            format!("the pod's network namespace {}", pod_netns.display()),
                        ))?;
                        netlink
                            .add_veth(&veth, POD_LINK, target.as_raw_fd(), bridge, self.mtu)
                            .map_err(WiringError::step(format!(
                                "adding the veth pair {veth}/{POD_LINK}"
                            )))?;
                    }
                }
                let index = index_of(&veth)
                    .ok_or_else(|| WiringError::Missing(format!("the veth {veth} is gone")))?;
                netlink
                    .set_hairpin(index)
                    .map_err(WiringError::step(format!("hairpin mode on {veth}")))
            })
            .map_err(err)?;
        let (gateway, prefix) = (self.cidr.gateway(), self.cidr.prefix);
        pod.within(|| {
            let mut netlink = Netlink::open().map_err(WiringError::step("netlink"))?;
            let eth0 = index_of(POD_LINK)
                .ok_or_else(|| WiringError::Missing("the pod has no eth0".into()))?;
            netlink
                .replace_address(eth0, ip, prefix)
                .map_err(WiringError::step(format!("giving eth0 {ip}/{prefix}")))?;
            netlink
                .set_up(eth0, None)
                .map_err(WiringError::step("putting eth0 up"))?;
            netlink
                .replace_default_route(gateway, eth0)
                .map_err(WiringError::step(format!("routing through {gateway}")))
        })
        .map_err(err)?;
        Ok(ip)
    }

    /// Disconnects a pod: its veth goes (both ends) and its address is freed.
    pub fn detach(&self, key: &str) {
        let veth = host_veth(key);
        let _ = self.node.within(|| {
            Netlink::open()
                .and_then(|mut n| n.delete_link(&veth))
                .map_err(WiringError::step("removing the veth"))
        });
        self.ipam.release(key);
    }

    pub fn address_of(&self, key: &str) -> Option<Ipv4Addr> {
        self.ipam.address_of(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn veth_names_fit_and_are_stable() {
        let a = host_veth("default/hello-7f9c");
        assert_eq!(a.len(), 12);
        assert_eq!(a, host_veth("default/hello-7f9c"));
        assert_ne!(a, host_veth("default/hello-7f9d"));
    }
}
