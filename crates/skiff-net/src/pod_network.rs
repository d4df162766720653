//! A node's pod network: the bridge (gateway = the pod CIDR's first address) in the node's
//! network namespace, and per pod a veth pair whose far end is the pod's `eth0` with an
//! address from the CIDR and a default route through the bridge.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::cidr::Cidr;
use crate::ip::Netns;
use crate::ipam::{Ipam, IpamError};

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("setting up the pod bridge {bridge}: {message}")]
    Bridge { bridge: String, message: String },
    #[error("connecting pod {pod}: {message}")]
    Attach { pod: String, message: String },
    #[error(transparent)]
    Ipam(#[from] IpamError),
}

pub struct PodNetwork {
    node: Netns,
    bridge: String,
    cidr: Cidr,
    ipam: Ipam,
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

impl PodNetwork {
    /// `state` holds the address records.
    pub fn new(node: Netns, bridge: &str, cidr: Cidr, state: impl Into<PathBuf>) -> PodNetwork {
        PodNetwork {
            node,
            bridge: bridge.to_string(),
            cidr,
            ipam: Ipam::new(cidr, state),
        }
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// Creates the bridge (idempotent): up, with the gateway address.
    pub fn ensure_bridge(&self) -> Result<(), NetError> {
        let err = |message| NetError::Bridge {
            bridge: self.bridge.clone(),
            message,
        };
        if self
            .node
            .ip(&["link", "show", "dev", &self.bridge])
            .is_err()
        {
            self.node
                .ip(&["link", "add", &self.bridge, "type", "bridge"])
                .map_err(err)?;
        }
        let gateway = format!("{}/{}", self.cidr.gateway(), self.cidr.prefix);
        self.node
            .ip(&["addr", "replace", &gateway, "dev", &self.bridge])
            .map_err(err)?;
        self.node
            .ip(&["link", "set", &self.bridge, "up"])
            .map_err(err)?;
        Ok(())
    }

    /// Connects the pod's network namespace (idempotent per `key`); answers its address.
    /// Two `ip` runs in all for a new pod (the pod startup path): one on the node's side,
    /// one inside the pod.
    pub fn attach(&self, key: &str, pod_netns: &Path) -> Result<Ipv4Addr, NetError> {
        let known = self.ipam.address_of(key).is_some();
        let ip = self.ipam.allocate(key)?;
        let err = |message| NetError::Attach {
            pod: key.to_string(),
            message,
        };
        let veth = host_veth(key);
        let pod = Netns::Path(pod_netns.to_path_buf());
        // A pod seen before (an agent restart) may be wired already.
        let wired = known && pod.ip(&["link", "show", "dev", "eth0"]).is_ok();
        let mut node_side = Vec::new();
        if !wired {
            if known {
                // A half-wired pod from before: start its veth afresh.
                let _ = self.node.ip(&["link", "del", &veth]);
            }
            node_side.push(format!(
                "link add {veth} type veth peer name eth0 netns {}",
                pod_netns.display()
            ));
        }
        node_side.push(format!("link set {veth} master {} up", self.bridge));
        self.node.ip_batch(&node_side).map_err(err)?;
        let gateway = self.cidr.gateway();
        pod.ip_batch(&[
            format!("addr replace {ip}/{} dev eth0", self.cidr.prefix),
            "link set eth0 up".into(),
            format!("route replace default via {gateway} dev eth0"),
        ])
        .map_err(err)?;
        Ok(ip)
    }

    /// Disconnects a pod: its veth goes (both ends) and its address is freed.
    pub fn detach(&self, key: &str) {
        let _ = self.node.ip(&["link", "del", &host_veth(key)]);
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
