//! A pod's state on the node, on disk so an agent restart finds it again:
//!
//! ```text
//! <data>/pods/<uid>/pod           namespace/name (to clean up pods the API forgot)
//! <data>/pods/<uid>/ns/           the sandbox's pinned namespaces
//! <data>/pods/<uid>/etc/          hosts, hostname, resolv.conf bind-mounted into containers
//! <data>/pods/<uid>/volumes/<v>/  emptyDir volumes
//! <data>/pods/<uid>/containers/<name>/<attempt>/   one run of a container: its bundle
//!     config.json, pid, started, created, exit (the monitor's), term, grace, kill (the agent's)
//! <data>/logs/<ns>_<pod>_<uid>/<name>/<attempt>.log   its CRI log
//! <data>/exits/<uid>              a monitor recorded an exit in the pod (the agent's cue)
//! ```

use std::path::{Path, PathBuf};

use skiff_runtime::monitor::Exit;

// Files the agent keeps beside the monitor's: in a pod's directory…
/// Where a pod's PID namespace holder records itself (`skiff_runtime::pod_init`).
pub const PID_HOLDER: &str = "pid-holder";
/// Marks a pod ended for its active deadline (so an agent restart ends it too).
pub const DEADLINE_FILE: &str = "deadline-exceeded";
// …and in a run's bundle:
/// The run's `terminationMessagePath` file on the node (bind-mounted in).
pub const TERMINATION_LOG: &str = "termination-log";
/// An ended run's termination message, kept once taken (empty: it has none).
pub const TERMINATION_MESSAGE: &str = "termination-message";
/// The image (as the spec named it) the run was made from.
pub const IMAGE_FILE: &str = "image";
/// Marks a run stopped because its container's spec changed: it is replaced at once.
pub const CHANGED_FILE: &str = "changed";
/// The grace period (seconds) the run was stopped with.
pub const GRACE: &str = "grace";

#[derive(Debug, Clone)]
pub struct PodDir {
    pub root: PathBuf,
    pub logs: PathBuf,
    pub uid: String,
    /// The file the pod's monitors create when a container ends.
    pub exit_notice: PathBuf,
}

/// Where monitors leave their exit notices, a file per pod uid.
pub fn exit_notices(data_dir: &Path) -> PathBuf {
    data_dir.join("exits")
}

/// One run of a container.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub number: u32,
    pub bundle: PathBuf,
    pub id: String,
    /// When its monitor started it (RFC 3339).
    pub started_at: Option<String>,
    pub exit: Option<Exit>,
    /// When the agent asked it to stop (RFC 3339).
    pub term_sent: Option<String>,
    /// What it left as its termination message (read for the runs the status shows).
    pub termination_message: Option<String>,
}

/// Whether the run whose bundle is `bundle` is over: its exit is recorded, or the bundle
/// is gone (the pod was torn down, a finished one with its logs kept).
pub fn run_is_over(bundle: &Path) -> bool {
    bundle.join("exit").exists() || !bundle.exists()
}

impl Attempt {
    pub fn is_running(&self) -> bool {
        self.started_at.is_some() && self.exit.is_none()
    }
}

impl PodDir {
    pub fn new(data_dir: &Path, namespace: &str, name: &str, uid: &str) -> PodDir {
        PodDir {
            root: data_dir.join("pods").join(uid),
            logs: data_dir
                .join("logs")
                .join(format!("{namespace}_{name}_{uid}")),
            uid: uid.to_string(),
            exit_notice: exit_notices(data_dir).join(uid),
        }
    }

    pub fn sandbox(&self) -> skiff_runtime::sandbox::Sandbox {
        skiff_runtime::sandbox::Sandbox::at(self.root.join("ns"))
    }

    pub fn etc(&self) -> PathBuf {
        self.root.join("etc")
    }

    pub fn volume(&self, name: &str) -> PathBuf {
        self.root.join("volumes").join(name)
    }

    /// The pod's cgroup parent (absolute, see skiff_runtime::cgroups).
    pub fn cgroup(&self) -> String {
        format!("/skiff/pod{}", self.uid)
    }

    pub fn log_path(&self, container: &str, attempt: u32) -> PathBuf {
        self.logs.join(container).join(format!("{attempt}.log"))
    }

    pub fn attempt_dir(&self, container: &str, attempt: u32) -> PathBuf {
        self.root
            .join("containers")
            .join(container)
            .join(attempt.to_string())
    }

    /// The runtime's id of a container run: unique on the node.
    pub fn container_id(&self, container: &str, attempt: u32) -> String {
        format!("{}-{container}-{attempt}", self.uid)
    }

    /// The runs of a container whose logs are kept, oldest first: what is left to read
    /// once a finished pod's directory went.
    pub fn logged_runs(&self, container: &str) -> Vec<u32> {
        let mut numbers: Vec<u32> = std::fs::read_dir(self.logs.join(container))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
            .collect();
        numbers.sort_unstable();
        numbers
    }

    /// Every recorded run of a container, oldest first.
    pub fn attempts(&self, container: &str) -> Vec<Attempt> {
        let dir = self.root.join("containers").join(container);
        let mut numbers: Vec<u32> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        numbers.sort_unstable();
        numbers
            .into_iter()
            .map(|n| {
                let bundle = dir.join(n.to_string());
                let read = |f: &str| std::fs::read_to_string(bundle.join(f)).ok();
                Attempt {
                    number: n,
                    id: self.container_id(container, n),
                    started_at: read("started"),
                    exit: Exit::read(&bundle),
                    term_sent: read("term"),
                    termination_message: None,
                    bundle,
                }
            })
            .collect()
    }

    /// Every container run of the pod that has not ended.
    pub fn running(&self) -> Vec<Attempt> {
        let Ok(dir) = std::fs::read_dir(self.root.join("containers")) else {
            return Vec::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .flat_map(|name| self.attempts(&name))
            .filter(|a| a.exit.is_none() && a.bundle.join("created").exists())
            .collect()
    }
}

/// Whether a teardown removes the pod's logs (a finished pod keeps them until it is
/// deleted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logs {
    Keep,
    Remove,
}
