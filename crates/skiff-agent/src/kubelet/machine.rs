//! What the agent does to the machine for its pods — namespaces, root filesystems,
//! monitored container processes, signals, cgroups — behind two traits: [`Machine`] (with
//! the OCI [`Runtime`] it runs containers with) and [`PodNetworking`]. The sync logic holds
//! them as trait objects, so it runs in unit tests against fakes (`fake.rs`), without root.
//!
//! Invariant: whatever a fake does, it keeps the pod directory's contract (`pod_dir.rs`): a
//! started run has `created`, `started` and `pid` in its bundle, an ended one `exit` and the
//! pod's exit notice. The sync logic reads only those.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use skiff_runtime::monitor::MonitorConfig;
use skiff_runtime::rootfs::Rootfs;
use skiff_runtime::sandbox::Sandbox;
use skiff_runtime::{OciRuntime, Runtime};

pub use super::errors::MachineError;
use super::pod_dir::PodDir;

/// A container run's log is rotated at this size, keeping this many files.
const LOG_MAX_SIZE: u64 = 10 << 20;
const LOG_MAX_FILES: usize = 5;

/// One container run, as the sync loop asks for it to be started.
#[derive(Debug, Clone)]
pub struct Run {
    pub id: String,
    /// Its bundle: `config.json` and the root filesystem are there already.
    pub bundle: PathBuf,
    pub log: PathBuf,
    pub cgroups_path: String,
    /// The file to create when it ends (the agent's cue, see `pod_dir::exit_notices`).
    pub exit_notice: PathBuf,
}

/// The node's side of its pods, beyond their network.
pub trait Machine: Send + Sync + 'static {
    /// The OCI runtime the containers run with: signals, deletes, execs.
    fn runtime(&self) -> &dyn Runtime;
    /// Whether the pod's namespaces are there (made, and not torn down since).
    fn sandbox_exists(&self, sandbox: &Sandbox) -> bool;
    /// Makes the pod's namespaces, with its hostname.
    fn create_sandbox(&self, sandbox: &Sandbox, hostname: &str) -> Result<(), MachineError>;
    /// The PID of the holder of a pod's shared PID namespace, if it runs.
    fn pid_holder(&self, pid_file: &Path) -> Option<i32>;
    /// Starts a holder of a new PID namespace, recording itself in `pid_file`.
    fn start_pid_holder(&self, pid_file: &Path) -> Result<(), MachineError>;
    /// The root filesystem of a run, `bundle/rootfs`, over the image's layers.
    fn mount_rootfs(&self, bundle: &Path, layers: &[PathBuf]) -> Result<(), MachineError>;
    /// Starts a run under its monitor; returns once it is created (or failed to be).
    fn start(&self, run: &Run) -> Result<(), MachineError>;
    /// A memory-backed emptyDir: a tmpfs at `path` (of at most `size` bytes), unless one is
    /// there already.
    fn mount_memory(&self, path: &Path, size: Option<i64>) -> Result<(), MachineError>;
    /// Unmounts and removes a run's root filesystem (`bundle/rootfs`).
    fn remove_rootfs(&self, bundle: &Path) -> Result<(), MachineError>;
    /// Removes a run: its container (killed if it still runs) and its root filesystem.
    fn remove_run(&self, id: &str, bundle: &Path) -> Result<(), MachineError> {
        self.runtime().delete(id, true)?;
        self.remove_rootfs(bundle)
    }
    /// Removes what the pod's sandbox holds on the machine: its volumes' mounts, its PID
    /// namespace holder, its namespaces and its cgroup (its files stay to the caller).
    fn remove_sandbox(&self, dir: &PodDir) -> Result<(), MachineError>;
}

/// A pod's network: an address on the node's pod bridge, by pod uid.
pub trait PodNetworking: Send + Sync + 'static {
    /// Wires the network namespace at `netns` to the bridge; answers its address.
    fn attach(&self, uid: &str, netns: &Path) -> Result<Ipv4Addr, skiff_net::NetError>;
    fn address_of(&self, uid: &str) -> Option<Ipv4Addr>;
    /// Releases the pod's address and its link (nothing if it has none).
    fn detach(&self, uid: &str);
}

impl PodNetworking for skiff_net::PodNetwork {
    fn attach(&self, uid: &str, netns: &Path) -> Result<Ipv4Addr, skiff_net::NetError> {
        skiff_net::PodNetwork::attach(self, uid, netns)
    }

    fn address_of(&self, uid: &str) -> Option<Ipv4Addr> {
        skiff_net::PodNetwork::address_of(self, uid)
    }

    fn detach(&self, uid: &str) {
        skiff_net::PodNetwork::detach(self, uid)
    }
}

/// This machine: real namespaces, overlay mounts, cgroups, and a container monitor (this
/// program, `internal container-monitor`) per run.
pub struct Host {
    pub runtime: OciRuntime,
    /// This program, run as the container monitor and the PID namespace holder.
    pub skiff_binary: PathBuf,
}

impl Machine for Host {
    fn runtime(&self) -> &dyn Runtime {
        &self.runtime
    }

    fn sandbox_exists(&self, sandbox: &Sandbox) -> bool {
        sandbox.exists()
    }

    fn create_sandbox(&self, sandbox: &Sandbox, hostname: &str) -> Result<(), MachineError> {
        Ok(sandbox.create(hostname)?)
    }

    fn pid_holder(&self, pid_file: &Path) -> Option<i32> {
        skiff_runtime::pod_init::alive(pid_file)
    }

    fn start_pid_holder(&self, pid_file: &Path) -> Result<(), MachineError> {
        Ok(skiff_runtime::pod_init::spawn(&self.skiff_binary, pid_file).map(drop)?)
    }

    fn mount_rootfs(&self, bundle: &Path, layers: &[PathBuf]) -> Result<(), MachineError> {
        Ok(Rootfs::at(bundle).mount(layers)?)
    }

    fn start(&self, run: &Run) -> Result<(), MachineError> {
        let monitor = MonitorConfig {
            runtime_binary: self.runtime.binary().to_path_buf(),
            runtime_root: self.runtime.root().to_path_buf(),
            id: run.id.clone(),
            bundle: run.bundle.clone(),
            log: run.log.clone(),
            cgroups_path: run.cgroups_path.clone(),
            log_max_size: LOG_MAX_SIZE,
            log_max_files: LOG_MAX_FILES,
            exit_notice: Some(run.exit_notice.clone()),
        };
        Ok(skiff_runtime::monitor::spawn(&self.skiff_binary, &monitor)?)
    }

    fn mount_memory(&self, path: &Path, size: Option<i64>) -> Result<(), MachineError> {
        let failed = |source| MachineError::Io {
            what: format!("a tmpfs at {}", path.display()),
            source,
        };
        std::fs::create_dir_all(path).map_err(failed)?;
        if skiff_runtime::rootfs::is_mountpoint(path) {
            return Ok(());
        }
        let mut options = "mode=0777".to_string();
        if let Some(bytes) = size.filter(|b| *b > 0) {
            options.push_str(&format!(",size={bytes}"));
        }
        let options = std::ffi::CString::new(options).expect("no NUL in numbers");
        use rustix::mount::{MountFlags, mount};
        mount(
            "tmpfs",
            path,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            options.as_c_str(),
        )
        .map_err(|e| failed(e.into()))
    }

    fn remove_rootfs(&self, bundle: &Path) -> Result<(), MachineError> {
        Rootfs::at(bundle)
            .remove()
            .map_err(|source| MachineError::Io {
                what: format!("the root filesystem in {}", bundle.display()),
                source,
            })
    }

    fn remove_sandbox(&self, dir: &PodDir) -> Result<(), MachineError> {
        let mut first = None;
        release_sandbox(dir, |e| {
            first.get_or_insert(e);
        });
        first.map_or(Ok(()), Err)
    }
}

/// Takes back what a pod's sandbox holds on this machine — its volumes' mounts, its PID
/// namespace holder, its namespaces, its cgroup — going on past a step that fails, which
/// `failed` hears of. The pod's files stay to the caller. (`Host::remove_sandbox`, and
/// `teardown::wipe` with no agent.)
pub fn release_sandbox(dir: &PodDir, mut failed: impl FnMut(MachineError)) {
    unmount_volumes(dir);
    skiff_runtime::pod_init::stop(&dir.root.join(super::pod_dir::PID_HOLDER));
    if let Err(e) = dir.sandbox().remove() {
        failed(e.into());
    }
    let cgroup = dir.cgroup();
    if let Err(source) = skiff_runtime::cgroups::remove(&cgroup) {
        failed(MachineError::Io {
            what: format!("cgroup {cgroup}"),
            source,
        });
    }
}

/// Unmounts whatever was mounted over the pod's volume directories (memory-backed
/// emptyDirs), so they can be removed.
fn unmount_volumes(dir: &PodDir) {
    for entry in std::fs::read_dir(dir.root.join("volumes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if skiff_runtime::rootfs::is_mountpoint(&path) {
            let _ = skiff_runtime::sandbox::unmount(&path);
        }
    }
}
