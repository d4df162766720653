//! skiff's node networking, knowing nothing of Kubernetes objects: pod networks on one
//! node — a bridge with the first address of the node's pod CIDR, an address per pod from
//! that CIDR, and a veth pair from the bridge into the pod's network namespace (`eth0`,
//! default route via the bridge); routes to other nodes' pod subnets (`routes`, directly or
//! over VXLAN, `vxlan`) and NAT for what leaves the cluster (`egress`); nftables tables as
//! data and the transactions that apply them (`nftables`, which the service proxy builds
//! on); a namespace's kernel settings (`sysctl`).
//!
//! Every operation names the network namespace it acts in, so tests run the node side in
//! a namespace of their own and nothing touches the machine's real network.

mod address;
pub mod cidr;
pub mod egress;
mod ip;
pub mod ipam;
mod netlink;
pub mod nftables;
pub mod pod_network;
pub mod routes;
pub mod sysctl;
pub mod vxlan;

pub use address::host_address;
pub use cidr::Cidr;
pub use ip::{End, Netns, NetnsError, WiringError, enter_netns, link_namespaces};
pub use pod_network::{NetError, PodNetwork, remove_bridge};
pub use routes::{Backend, PodRoutes};
