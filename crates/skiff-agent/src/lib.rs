//! skiff's node agent. What has landed is its simulated mode (like kwok): one process
//! registers many nodes, keeps their Leases and status fresh, and plays kubelet for the pods
//! bound to them — they go Running and Ready with a pod IP, and deletions are honoured —
//! without running anything. Stopping the process is how tests make nodes fail, and it is
//! how the scale benchmarks get 1,000 nodes on one machine. The agent that runs real
//! containers (issue 6) lands beside it.

pub mod node;
pub mod simulated;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("registering node {node}: {source}")]
    Register { node: String, source: kube::Error },
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
}
