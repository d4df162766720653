//! Fakes of the machine and the pod network for the sync logic's unit tests. They keep the
//! pod directory's contract (`machine.rs`): a started run gets `created`, `started` and
//! `pid`; a run that ends (a test's [`FakeMachine::exit`], or a stop signal) gets `exit`
//! and the pod's exit notice. Nothing needs root.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;

use skiff_runtime::monitor::{Exit, now_rfc3339};
use skiff_runtime::runc::ExecCommand;
use skiff_runtime::sandbox::Sandbox;
use skiff_runtime::{ContainerState, Runtime, RuntimeError};

use super::machine::{Machine, MachineError, PodNetworking, Run};
use super::pod_dir::PodDir;

#[derive(Default)]
pub struct FakeMachine {
    /// Started runs by id: their bundle and exit notice.
    runs: Mutex<HashMap<String, Run>>,
    /// Every signal sent, in order: (container id, signal).
    pub signals: Mutex<Vec<(String, i32)>>,
    sandboxes: Mutex<HashSet<PathBuf>>,
    /// Sandboxes removed, by pod uid.
    pub removed_sandboxes: Mutex<Vec<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FakeMachine {
    /// Ends a running container as its monitor records an exit.
    pub fn exit(&self, id: &str, exit_code: i32, signal: Option<i32>) {
        let run = lock(&self.runs).get(id).cloned();
        let run = run.unwrap_or_else(|| panic!("no run {id} was started"));
        let exit = Exit {
            exit_code,
            signal,
            finished_at: now_rfc3339(),
            ..Default::default()
        };
        std::fs::write(run.bundle.join("exit"), serde_json::to_vec(&exit).unwrap()).unwrap();
        if let Some(dir) = run.exit_notice.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(&run.exit_notice, b"").unwrap();
    }

    /// The ids of the runs started so far, sorted.
    pub fn started(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.runs).keys().cloned().collect();
        ids.sort();
        ids
    }

    fn is_running(&self, id: &str) -> bool {
        lock(&self.runs)
            .get(id)
            .is_some_and(|run| !run.bundle.join("exit").exists())
    }
}

impl Runtime for FakeMachine {
    fn run_detached(
        &self,
        id: &str,
        _: &Path,
        _: [Stdio; 3],
        _: Option<&Path>,
    ) -> Result<(), RuntimeError> {
        Err(failed(
            "run",
            id,
            "the fake machine starts runs through Machine::start",
        ))
    }

    fn state(&self, id: &str) -> Result<Option<ContainerState>, RuntimeError> {
        Ok(lock(&self.runs).get(id).map(|run| ContainerState {
            id: id.to_string(),
            pid: 1,
            status: if run.bundle.join("exit").exists() {
                "stopped"
            } else {
                "running"
            }
            .into(),
            bundle: run.bundle.clone(),
        }))
    }

    /// A stop signal ends a running container at once, as a process that does not catch
    /// it: exit code 128 + the signal.
    fn kill(&self, id: &str, signal: i32) -> Result<(), RuntimeError> {
        lock(&self.signals).push((id.to_string(), signal));
        if !self.is_running(id) {
            return Err(failed("kill", id, "container not running"));
        }
        if matches!(signal, 9 | 15) {
            self.exit(id, 128 + signal, Some(signal));
        }
        Ok(())
    }

    fn delete(&self, id: &str, _force: bool) -> Result<(), RuntimeError> {
        lock(&self.runs).remove(id);
        Ok(())
    }

    fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let ids: Vec<String> = lock(&self.runs).keys().cloned().collect();
        Ok(ids
            .iter()
            .filter_map(|id| self.state(id).ok().flatten())
            .collect())
    }

    fn name(&self) -> String {
        "fake".into()
    }

    fn exec_command(
        &self,
        id: &str,
        _: &Path,
        _: &[String],
        _: bool,
        _: Option<&Path>,
    ) -> Result<ExecCommand, RuntimeError> {
        Err(failed("exec", id, "the fake machine runs no commands"))
    }
}

fn failed(action: &'static str, id: &str, message: &str) -> RuntimeError {
    RuntimeError::Failed {
        binary: "fake".into(),
        action,
        id: id.into(),
        message: message.into(),
    }
}

impl Machine for FakeMachine {
    fn runtime(&self) -> &dyn Runtime {
        self
    }

    fn sandbox_exists(&self, sandbox: &Sandbox) -> bool {
        lock(&self.sandboxes).contains(&sandbox.net())
    }

    fn create_sandbox(&self, sandbox: &Sandbox, _hostname: &str) -> Result<(), MachineError> {
        lock(&self.sandboxes).insert(sandbox.net());
        Ok(())
    }

    fn pid_holder(&self, pid_file: &Path) -> Option<i32> {
        pid_file.exists().then_some(1)
    }

    fn start_pid_holder(&self, pid_file: &Path) -> Result<(), MachineError> {
        std::fs::write(pid_file, "1").map_err(|source| MachineError::Io {
            what: pid_file.display().to_string(),
            source,
        })
    }

    fn mount_rootfs(&self, bundle: &Path, _layers: &[PathBuf]) -> Result<(), MachineError> {
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(|source| MachineError::Io {
            what: rootfs.display().to_string(),
            source,
        })
    }

    fn start(&self, run: &Run) -> Result<(), MachineError> {
        for (file, content) in [
            ("pid", "1".to_string()),
            ("created", String::new()),
            ("started", now_rfc3339()),
        ] {
            std::fs::write(run.bundle.join(file), content).map_err(|source| MachineError::Io {
                what: run.bundle.display().to_string(),
                source,
            })?;
        }
        lock(&self.runs).insert(run.id.clone(), run.clone());
        Ok(())
    }

    fn mount_memory(&self, path: &Path, _size: Option<i64>) -> Result<(), MachineError> {
        std::fs::create_dir_all(path).map_err(|source| MachineError::Io {
            what: format!("{}", path.display()),
            source,
        })
    }

    fn remove_rootfs(&self, _bundle: &Path) -> Result<(), MachineError> {
        Ok(())
    }

    fn remove_sandbox(&self, dir: &PodDir) -> Result<(), MachineError> {
        lock(&self.sandboxes).remove(&dir.sandbox().net());
        lock(&self.removed_sandboxes).push(dir.uid.clone());
        Ok(())
    }
}

/// Addresses from 10.244.0.2 up, by pod uid.
#[derive(Default)]
pub struct FakeNetwork {
    addresses: Mutex<HashMap<String, Ipv4Addr>>,
    given: Mutex<u8>,
}

impl PodNetworking for FakeNetwork {
    fn attach(&self, uid: &str, _netns: &Path) -> Result<Ipv4Addr, skiff_net::NetError> {
        let mut given = lock(&self.given);
        *given += 1;
        let ip = Ipv4Addr::new(10, 244, 0, 1 + *given);
        lock(&self.addresses).insert(uid.to_string(), ip);
        Ok(ip)
    }

    fn address_of(&self, uid: &str) -> Option<Ipv4Addr> {
        lock(&self.addresses).get(uid).copied()
    }

    fn detach(&self, uid: &str) {
        lock(&self.addresses).remove(uid);
    }
}
