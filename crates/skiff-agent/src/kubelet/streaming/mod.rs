//! The node's streaming endpoints (kubelet's port 10250): `kubectl logs`, `exec`, `attach`
//! and `port-forward`, as the API server relays them. `server.rs` routes the requests;
//! the transports are `spdy.rs` (SPDY/3.1 framing) with `remotecommand.rs` and
//! `portforward.rs` on top, and `websocket.rs` (the `v4`/`v5.channel.k8s.io` protocols);
//! `exec.rs` and `attach.rs` are the sessions they carry.
//!
//! What they need from the rest of the agent is [`Containers`]: finding a pod, its
//! directory (container runs and logs), its network namespace, and how to run a command in
//! a container. Nothing here reaches into the pod lifecycle.

mod attach;
mod exec;
mod portforward;
mod proxy;
mod remotecommand;
mod server;
mod websocket;

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use super::pod_dir::PodDir;

pub use server::StreamListener;

/// The containers of this node, as the streaming endpoints see them.
pub trait Containers: Send + Sync + 'static {
    /// A pod bound to this node.
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>>;
    /// Where the pod's container runs, logs and sandbox live.
    fn pod_dir(&self, pod: &Pod) -> PodDir;
    /// The pod's network namespace (it may not exist yet, or any more).
    fn pod_netns(&self, pod: &Pod) -> PathBuf;
    /// The OCI runtime the containers run with (for `exec`).
    fn runtime(&self) -> &dyn skiff_runtime::Runtime;
}
