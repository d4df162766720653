//! `skiff node reset`: everything a node agent made on this machine, gone — k3s's
//! killall as a command. Stopping skiff leaves its containers running on purpose (a restart
//! adopts them); this is the way back to a clean machine.
//!
//! Invariants: refused while a skiff server or agent runs on the same directory (it would
//! make what is being removed again); idempotent (a second run finds nothing and succeeds);
//! goes on past a failure and reports every one; touches only what lives under the agent's
//! directory, the pod bridge, the service proxy's and the pods' nftables tables, skiff's routes
//! (protocol 83), and the pods' cgroups.

use std::path::{Path, PathBuf};

use skiff_net::Netns;
use skiff_runtime::procfs;

use super::{POD_BRIDGE, runtime_root, wipe};

/// The OCI runtimes whose state an agent may have left (`--runtime`).
const RUNTIMES: &[&str] = &["runc", "crun"];

/// The directories of an agent's run state (images, `registries.yaml` and the rest stay
/// unless the whole data directory goes).
const RUN_STATE: &[&str] = &["pods", "exits", "ipam"];

/// The parent cgroup of every pod (`/skiff/pod<uid>`), removed once empty.
const PODS_CGROUP: &str = "/skiff";

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    #[error(
        "skiff {command} (pid {pid}) is running on {}: stop it first (it would start again what reset removes)",
        dir.display()
    )]
    Running {
        command: String,
        pid: u32,
        dir: PathBuf,
    },
    #[error("reset left {} thing(s) behind: {}", .0.len(), .0.join("; "))]
    Incomplete(Vec<String>),
}

/// What to reset.
pub struct Reset {
    /// The data directory given (`skiff server`'s, or a `skiff agent`'s own).
    pub data_dir: PathBuf,
    /// The network namespace holding the pod bridge (the agent's `--node-netns`).
    pub node_netns: Netns,
    /// Also remove the data directory (the datastore, images, credentials).
    pub remove_data: bool,
}

impl Reset {
    /// Where the agent's state is: `<data>/agent` under a server's directory, else the
    /// directory itself (an agent's `--data-dir`).
    pub fn agent_dir(&self) -> PathBuf {
        let nested = self.data_dir.join("agent");
        if nested.is_dir() {
            nested
        } else {
            self.data_dir.clone()
        }
    }

    /// Runs every step, telling `progress` what it does.
    pub fn run(&self, mut progress: impl FnMut(&str)) -> Result<(), ResetError> {
        let agent = self.agent_dir();
        if let Some((command, pid)) = running_on(&agent) {
            return Err(ResetError::Running {
                command,
                pid,
                dir: agent,
            });
        }
        let mut failures = Vec::new();
        progress(&format!(
            "stopping the containers and pods of {}",
            agent.display()
        ));
        // The monitors go first: one still draining its container's output would record
        // the exit that deleting the container causes while its directory is removed.
        let helpers = kill_helpers(&agent);
        // Every runtime that kept state here, and once regardless for the pod directories.
        let used: Vec<&str> = RUNTIMES
            .iter()
            .copied()
            .filter(|r| runtime_root(&agent, Path::new(r)).exists())
            .collect();
        for runtime in if used.is_empty() { vec!["runc"] } else { used } {
            if let Err(e) = wipe(&agent, Path::new(runtime)) {
                failures.extend(e.0);
            }
        }
        if helpers > 0 {
            progress(&format!("stopped {helpers} container monitor(s)"));
        }
        progress(&format!("removing the pod bridge {POD_BRIDGE}"));
        if let Err(e) = skiff_net::remove_bridge(&self.node_netns, POD_BRIDGE) {
            failures.push(e.to_string());
        }
        progress(&format!(
            "removing the service rules (nftables table ip {})",
            skiff_proxy::TABLE
        ));
        if let Err(e) = skiff_proxy::remove_rules(&self.node_netns) {
            failures.push(e.to_string());
        }
        progress("removing the pods' NAT, the routes to other nodes' pods and the VXLAN link");
        if let Err(e) = skiff_net::egress::remove_egress(&self.node_netns) {
            failures.push(e.to_string());
        }
        if let Err(e) = skiff_net::routes::remove_all(&self.node_netns) {
            failures.push(e.to_string());
        }
        if let Err(e) = skiff_net::vxlan::remove(&self.node_netns) {
            failures.push(e.to_string());
        }
        if let Err(e) = super::lb_announce::remove_all(&self.node_netns) {
            failures.push(e.to_string());
        }
        let left = unmount_under(&agent);
        if left > 0 {
            progress(&format!("unmounted {left} leftover mount(s)"));
        }
        for dir in RUN_STATE
            .iter()
            .map(|d| agent.join(d))
            .chain(RUNTIMES.iter().map(|r| runtime_root(&agent, Path::new(r))))
        {
            remove_dir(&dir, &mut failures);
        }
        // Only when no other pods (another agent's) are left in it.
        let _ = skiff_runtime::cgroups::remove(PODS_CGROUP);
        if self.remove_data {
            progress(&format!("removing {}", self.data_dir.display()));
            unmount_under(&self.data_dir);
            remove_dir(&self.data_dir, &mut failures);
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(ResetError::Incomplete(failures))
        }
    }
}

fn remove_dir(dir: &Path, failures: &mut Vec<String>) {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            failures.push(format!("{}: {e}", dir.display()));
        }
        _ => {}
    }
}

/// Every process id on this machine but this one.
fn processes() -> impl Iterator<Item = u32> {
    let me = std::process::id();
    procfs::pids().filter(move |pid| *pid != me)
}

/// The agent directory a `skiff server` or `skiff agent` command line works in, if it is
/// one (simulated nodes keep nothing on disk).
fn agent_dir_of(args: &[String]) -> Option<PathBuf> {
    let program = Path::new(args.first()?).file_name()?.to_str()?;
    if program != "skiff" || args.iter().any(|a| a == "--simulated-nodes") {
        return None;
    }
    let flag = args.iter().enumerate().find_map(|(i, a)| {
        a.strip_prefix("--data-dir=")
            .map(PathBuf::from)
            .or_else(|| (a == "--data-dir").then(|| args.get(i + 1).map(PathBuf::from))?)
    });
    match args.get(1).map(String::as_str) {
        Some("server") => Some(
            flag.unwrap_or_else(|| "/var/lib/skiff".into())
                .join("agent"),
        ),
        Some("agent") => Some(flag.unwrap_or_else(|| "/var/lib/skiff/agent".into())),
        _ => None,
    }
}

/// A skiff server or agent working in `agent`: its command and pid.
fn running_on(agent: &Path) -> Option<(String, u32)> {
    let agent = agent.canonicalize().unwrap_or_else(|_| agent.to_path_buf());
    processes().find_map(|pid| {
        let args = procfs::cmdline(pid);
        let dir = agent_dir_of(&args)?;
        (dir.canonicalize().unwrap_or(dir) == agent).then(|| (args[1].clone(), pid))
    })
}

/// Kills the agent's helper processes left running (container monitors, PID-namespace
/// holders: `skiff internal …` naming a path under `agent`); answers how many.
fn kill_helpers(agent: &Path) -> usize {
    let agent = agent.to_string_lossy().into_owned();
    let mut killed = 0;
    for pid in processes() {
        let args = procfs::cmdline(pid);
        if args.get(1).map(String::as_str) == Some("internal")
            && args.iter().any(|a| a.starts_with(&agent))
        {
            let pid = rustix::process::Pid::from_raw(pid as i32);
            if pid.is_some_and(|pid| {
                rustix::process::kill_process(pid, rustix::process::Signal::KILL).is_ok()
            }) {
                killed += 1;
            }
        }
    }
    killed
}

/// Detaches every mount under `dir` (deepest first); answers how many there were. A point
/// mounted over more than once is listed (and detached) once per mount: dropping repeats
/// would leave the lower mounts, and a sort by length does not put repeats side by side.
fn unmount_under(dir: &Path) -> usize {
    let mut points = procfs::mounts_under(dir);
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in &points {
        let _ = skiff_runtime::sandbox::unmount(p);
    }
    points.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<String> {
        line.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn command_lines_name_their_agent_directory() {
        assert_eq!(
            agent_dir_of(&args("/usr/bin/skiff server")),
            Some("/var/lib/skiff/agent".into())
        );
        assert_eq!(
            agent_dir_of(&args("./skiff server --data-dir /tmp/s")),
            Some("/tmp/s/agent".into())
        );
        assert_eq!(
            agent_dir_of(&args("skiff agent --data-dir=/d --kubeconfig k")),
            Some("/d".into())
        );
        assert_eq!(
            agent_dir_of(&args("skiff agent")),
            Some("/var/lib/skiff/agent".into())
        );
        assert_eq!(agent_dir_of(&args("skiff agent --simulated-nodes 3")), None);
        assert_eq!(agent_dir_of(&args("skiff node reset")), None);
        assert_eq!(agent_dir_of(&args("/bin/other server")), None);
    }

    #[test]
    fn a_server_directory_resets_its_agent_and_an_empty_one_resets_clean() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("agent/pods")).unwrap();
        let reset = Reset {
            data_dir: tmp.path().to_path_buf(),
            node_netns: Netns::Current,
            remove_data: false,
        };
        assert_eq!(reset.agent_dir(), tmp.path().join("agent"));
        let plain = Reset {
            data_dir: tmp.path().join("agent"),
            ..reset
        };
        assert_eq!(plain.agent_dir(), tmp.path().join("agent"));
    }
}
