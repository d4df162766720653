//! skiff's node agent, in two modes. `kubelet`: this machine as a node — pods run as real
//! containers (runc, through skiff-runtime), on a pod network (skiff-net), from the node
//! image store (skiff-image). `simulated` (like kwok): one process registers many nodes,
//! keeps their Leases and status fresh, and plays kubelet for the pods bound to them
//! without running anything — how tests make nodes fail and how the scale benchmarks get
//! 1,000 nodes on one machine. `node` is what both report of their Node.

pub mod kubelet;
pub mod node;
pub mod simulated;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("node {node}'s spec.podCIDR: {cause}")]
    PodCidr { node: String, cause: String },
}
