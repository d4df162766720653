//! skiff's node networking. Today: pod networks on one node — a bridge with the first
//! address of the node's pod CIDR, an address per pod from that CIDR, and a veth pair from
//! the bridge into the pod's network namespace (`eth0`, default route via the bridge).
//! Service load balancing (nftables) and DNS come with the networking issue.
//!
//! Every operation names the network namespace it acts in, so tests run the node side in
//! a namespace of their own and nothing touches the machine's real network.

pub mod cidr;
mod ip;
pub mod ipam;
mod netlink;
pub mod pod_network;

pub use cidr::Cidr;
pub use ip::{Netns, NetnsError, WiringError, enter_netns};
pub use pod_network::{NetError, PodNetwork, remove_bridge};
