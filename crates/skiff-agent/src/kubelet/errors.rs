//! Every error of the node agent, in one place. Most of them end up in words a user reads —
//! a pod's `waiting.message`, an event (`FailedMount`, `Failed`), the agent's exit line — so
//! each variant's text is upstream's where upstream has one.

use std::path::PathBuf;

use super::sources::Source;
use crate::AgentError;

/// The agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("the node's pod network: {0}")]
    Network(#[from] skiff_net::NetError),
    #[error("the data directory {}: {source}", .path.display())]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the registries config: {0}")]
    Registries(#[from] skiff_image::config::ConfigError),
    #[error("the image store: {0}")]
    Images(#[from] skiff_image::store::StoreError),
    #[error(transparent)]
    Agent(#[from] AgentError),
    #[error(transparent)]
    Streaming(#[from] super::streaming::ServerError),
    #[error(transparent)]
    Runtime(#[from] RuntimeCheckError),
}

/// The OCI runtime cannot run this machine's containers; each names the way out.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeCheckError {
    #[error("the OCI runtime {} fails `--version`: {stderr}", .binary.display())]
    Fails { binary: PathBuf, stderr: String },
    #[error(
        "cannot run the OCI runtime {}: {source} (install runc, or name another with --runtime)",
        .binary.display()
    )]
    Missing {
        binary: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "crun does not run containers on a hybrid cgroup layout whose v2 tree holds \
         controllers ({controllers}): use --runtime runc, or give them v1 hierarchies ({mounts})"
    )]
    HybridCgroups { controllers: String, mounts: String },
}

/// A pod sync that must be tried again.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// What the machine (namespaces, mounts, runtime, monitors) answered.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Runtime(#[from] skiff_runtime::RuntimeError),
    #[error(transparent)]
    Sandbox(#[from] skiff_runtime::sandbox::SandboxError),
    #[error(transparent)]
    Rootfs(#[from] skiff_runtime::rootfs::RootfsError),
    /// The container monitor or the PID namespace holder did not start, or the container.
    #[error(transparent)]
    Helper(#[from] skiff_runtime::monitor::HelperError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// A ConfigMap or Secret a pod reads could not be had.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{} \"{name}\" not found", .of.kind().to_lowercase())]
    NotFound { of: Source, name: String },
    #[error("{0}")]
    Api(#[from] kube::Error),
}

/// A downward API value the agent cannot give.
#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("unsupported fieldRef {0:?}")]
    FieldRef(String),
    #[error("resourceFieldRef: no container {0:?} in the pod")]
    NoContainer(String),
    #[error("unsupported resource {0:?}")]
    Resource(String),
}

/// A ServiceAccount token a projected volume holds could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("failed to fetch token: {0}")]
    Request(#[from] kube::Error),
    #[error("failed to fetch token: the TokenRequest was answered without one")]
    Empty,
}

/// Why a volume's files could not be made.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("invalid path {0:?}: must be relative and may not contain '..'")]
    Path(String),
    #[error("configured to use key {key:?} of {what}, which does not have it")]
    MissingKey { key: String, what: String },
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("downwardAPI item {0:?} names no field")]
    NoField(String),
    #[error("projected clusterTrustBundle sources are not supported")]
    ClusterTrustBundle,
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("{0}")]
    Write(#[from] std::io::Error),
    #[error(transparent)]
    Machine(#[from] MachineError),
}

/// A volume could not be set up: upstream's `FailedMount` event text.
#[derive(Debug, thiserror::Error)]
#[error("MountVolume.SetUp failed for volume {volume:?} : {cause}")]
pub struct MountError {
    pub volume: String,
    #[source]
    pub cause: VolumeError,
}

/// A container's environment could not be made (`CreateContainerConfigError`).
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("unsupported fieldRef {path:?} in env {env:?}")]
    FieldRef { path: String, env: String },
    #[error("couldn't find key {key} in {} {namespace}/{name}", .of.kind())]
    MissingKey {
        key: String,
        of: Source,
        namespace: String,
        name: String,
    },
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("env {0:?}: valueFrom names no source")]
    NoSource(String),
}
