//! Every error of the node agent, in one place. Most of them end up in words a user reads —
//! a pod's `waiting.message`, an event (`FailedMount`, `Failed`), the agent's exit line — so
//! each variant's text is upstream's where upstream has one.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    Streaming(#[from] ServerError),
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

/// What a wipe of a node's containers could not take back, each with why.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct WipeError(pub Vec<String>);

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
    #[error("{} \"{name}\" not found", .kind.to_lowercase())]
    NotFound { kind: &'static str, name: String },
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
    #[error("couldn't find key {key} in {kind} {namespace}/{name}")]
    MissingKey {
        key: String,
        kind: &'static str,
        namespace: String,
        name: String,
    },
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("env {0:?}: valueFrom names no source")]
    NoSource(String),
}

/// Work on a thread inside a pod's network namespace did not get to run.
#[derive(Debug, thiserror::Error)]
pub enum InNetnsError {
    #[error(transparent)]
    Enter(#[from] skiff_net::NetnsError),
    #[error("the thread working in the pod's network namespace ended early")]
    Thread,
}

/// Port forwards still answer in words (the stream's error channel carries them).
impl From<InNetnsError> for String {
    fn from(e: InNetnsError) -> String {
        e.to_string()
    }
}

/// Why a probe (or a lifecycle hook, run as one) failed, in upstream's words.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("invalid port {0}")]
    Port(i32),
    #[error("no port named {0:?} in the container")]
    NoNamedPort(String),
    #[error(transparent)]
    InNetns(#[from] InNetnsError),
    #[error("dial tcp {addr}: {source}")]
    Dial {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("Get \"{url}\": dial tcp {addr}: {source}")]
    HttpDial {
        url: String,
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("Get \"{url}\": {source}")]
    Http {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("Get \"{url}\": malformed HTTP response")]
    HttpMalformed { url: String },
    #[error("HTTP probe failed with statuscode: {0}")]
    HttpStatus(u16),
    #[error(transparent)]
    Runtime(#[from] skiff_runtime::RuntimeError),
    #[error("{0}")]
    Exec(#[from] std::io::Error),
    #[error("command {command:?} exited with {code}{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Exited {
        command: Vec<String>,
        code: i32,
        detail: String,
    },
    #[error("command {0:?} was killed")]
    Killed(Vec<String>),
    #[error("command {0:?} timed out")]
    TimedOut(Vec<String>),
    #[error("the probe has no handler skiff supports yet (grpc)")]
    NoHandler,
    #[error("the handler names no action")]
    NoAction,
}

/// A pod's sandbox (namespaces, files, address) could not be made:
/// `FailedCreatePodSandBox`.
#[derive(Debug, thiserror::Error)]
pub enum SandboxSetupError {
    #[error(transparent)]
    Machine(#[from] MachineError),
    #[error(transparent)]
    Network(#[from] skiff_net::NetError),
    #[error("hostNetwork needs the node's IPv4 address, not {0:?}")]
    HostAddress(String),
}

/// A container's run could not be made from its spec (`CreateContainerError`).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoGroup(String),
    #[error("the pod has no spec")]
    NoSpec,
    #[error("volume {0:?} is not defined in the pod")]
    UndefinedVolume(String),
    #[error(
        "volume {0:?}: only emptyDir, hostPath, configMap, secret, downwardAPI and projected \
         volumes are supported so far"
    )]
    UnsupportedVolume(String),
    #[error("subPath {0:?} must be a relative path inside the volume")]
    SubPath(String),
    #[error("the pod's PID namespace is gone")]
    PidNamespaceGone,
    #[error("the target container {0:?} is not running")]
    TargetNotRunning(String),
    #[error(transparent)]
    Spec(#[from] skiff_runtime::spec::SpecError),
    #[error(transparent)]
    Machine(#[from] MachineError),
}

/// The node's streaming endpoints could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(
        "cannot listen on {addr} for the node's streaming endpoints: {source} (is another agent using the port? choose another with --kubelet-port)"
    )]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the node's streaming endpoints: {0}")]
    Tls(#[from] skiff_tls::TlsError),
}
