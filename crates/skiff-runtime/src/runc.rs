//! An OCI runtime binary (runc by default; crun speaks the same command line), always with
//! an explicit `--root` (its state directory) so skiff's containers never mix with anyone
//! else's. Calls block; async callers use `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot run {binary}: {source} (apt-get install runc)")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the container bundle {path}: {message}")]
    Bundle { path: String, message: String },
    #[error("{binary} {action} {id}: {message}")]
    Failed {
        binary: String,
        action: &'static str,
        id: String,
        message: String,
    },
}

type Result<T> = std::result::Result<T, RuntimeError>;

/// A runtime `exec` ready to be given stdio and spawned, and the process spec file it
/// reads, removed when this is dropped: keep it until the command has started.
pub struct ExecCommand {
    pub command: Command,
    pub process_file: ProcessFile,
}

/// A file removed when dropped.
pub struct ProcessFile(PathBuf);

impl Drop for ProcessFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Makes exec process files unique within this process.
static EXEC_FILES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// What `runc state` reports of a container.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct ContainerState {
    pub id: String,
    pub pid: i32,
    /// `created`, `running`, `paused` or `stopped`.
    pub status: String,
    pub bundle: PathBuf,
}

/// The operations skiff needs of an OCI runtime.
pub trait Runtime: Send + Sync {
    /// Creates and starts the container from `bundle/config.json` in one runtime call
    /// (`run --detach`); its process inherits `stdio`. The caller becomes the process's
    /// parent only if it is a child subreaper (the container monitor is). A container with
    /// a terminal (`process.terminal`) needs `console_socket`, where the runtime sends the
    /// terminal's master end.
    fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        stdio: [Stdio; 3],
        console_socket: Option<&Path>,
    ) -> Result<()>;
    /// `None` when the runtime does not know the container.
    fn state(&self, id: &str) -> Result<Option<ContainerState>>;
    fn kill(&self, id: &str, signal: i32) -> Result<()>;
    /// Removes a stopped container (`force`: a running one too, killing it).
    fn delete(&self, id: &str, force: bool) -> Result<()>;
    fn list(&self) -> Result<Vec<ContainerState>>;
    /// The runtime's name (`runc`, `crun`), as container ids show it (`runc://…`).
    fn name(&self) -> String;
    /// `runc exec` of `command` in a running container, as its main process runs: the
    /// process spec is the container's own (`bundle/config.json`: user and groups,
    /// environment, working directory, capabilities, limits) with `command` as its
    /// arguments, passed with `--process` so that runc and crun alike take all of it.
    /// `tty` gives it a terminal, which the runtime bridges to the command's own stdin and
    /// stdout (so those should be a terminal too). The caller sets stdio and spawns; the
    /// exit status is the command's. `pid_file` receives the command's process id (in the
    /// host's PID namespace).
    fn exec_command(
        &self,
        id: &str,
        bundle: &Path,
        command: &[String],
        tty: bool,
        pid_file: Option<&Path>,
    ) -> Result<ExecCommand>;
}

#[derive(Debug, Clone)]
pub struct OciRuntime {
    binary: PathBuf,
    root: PathBuf,
}

/// An OCI runtime's name from its binary's path: `/usr/bin/crun` is `crun`.
pub fn runtime_name(binary: &Path) -> String {
    binary
        .file_name()
        .map_or_else(|| "runc".into(), |n| n.to_string_lossy().into_owned())
}

impl OciRuntime {
    pub fn new(binary: impl Into<PathBuf>, root: impl Into<PathBuf>) -> OciRuntime {
        OciRuntime {
            binary: binary.into(),
            root: root.into(),
        }
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root);
        cmd
    }

    fn run(&self, action: &'static str, id: &str, mut cmd: Command) -> Result<Vec<u8>> {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::Spawn {
                binary: self.binary.display().to_string(),
                source,
            })?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(self.failed(action, id, &out.stderr))
    }

    fn failed(&self, action: &'static str, id: &str, stderr: &[u8]) -> RuntimeError {
        RuntimeError::Failed {
            binary: self.binary.display().to_string(),
            action,
            id: id.to_string(),
            message: runtime_message(stderr),
        }
    }
}

/// runc's own error line, without its logging decoration.
fn runtime_message(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    // time="…" level=error msg="…"
    match line.find("msg=\"") {
        Some(i) => line[i + 5..].trim_end_matches('"').replace("\\\"", "\""),
        None => line.to_string(),
    }
}

impl Runtime for OciRuntime {
    fn name(&self) -> String {
        runtime_name(&self.binary)
    }

    fn exec_command(
        &self,
        id: &str,
        bundle: &Path,
        command: &[String],
        tty: bool,
        pid_file: Option<&Path>,
    ) -> Result<ExecCommand> {
        let unreadable = |message: String| RuntimeError::Bundle {
            path: bundle.display().to_string(),
            message,
        };
        let config = std::fs::read(bundle.join("config.json"))
            .map_err(|e| unreadable(format!("config.json: {e}")))?;
        let mut spec: serde_json::Value =
            serde_json::from_slice(&config).map_err(|e| unreadable(format!("config.json: {e}")))?;
        let mut process = spec["process"].take();
        if !process.is_object() {
            return Err(unreadable("config.json has no process".into()));
        }
        process["args"] = command.into();
        process["terminal"] = tty.into();
        let file = ProcessFile(bundle.join(format!(
            "exec-{}-{}.json",
            std::process::id(),
            EXEC_FILES.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        )));
        std::fs::write(&file.0, process.to_string())
            .map_err(|e| unreadable(format!("{}: {e}", file.0.display())))?;
        let mut cmd = self.command();
        cmd.arg("exec").arg("--process").arg(&file.0);
        if tty {
            cmd.arg("--tty");
        }
        if let Some(path) = pid_file {
            cmd.arg("--pid-file").arg(path);
        }
        cmd.arg(id);
        Ok(ExecCommand {
            command: cmd,
            process_file: file,
        })
    }

    fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        stdio: [Stdio; 3],
        console_socket: Option<&Path>,
    ) -> Result<()> {
        let [stdin, stdout, stderr] = stdio;
        let mut cmd = self.command();
        // runc's own errors go to a log file: the container's stdio is not ours to fill.
        let log = bundle.join("runtime.log");
        cmd.arg("--log")
            .arg(&log)
            .args(["run", "--detach", "--bundle"])
            .arg(bundle)
            .arg("--pid-file")
            .arg(bundle.join("pid"));
        if let Some(socket) = console_socket {
            cmd.arg("--console-socket").arg(socket);
        }
        cmd.arg(id).stdin(stdin).stdout(stdout).stderr(stderr);
        let status = cmd.status().map_err(|source| RuntimeError::Spawn {
            binary: self.binary.display().to_string(),
            source,
        })?;
        if status.success() {
            return Ok(());
        }
        let logged = std::fs::read(&log).unwrap_or_default();
        Err(self.failed("run", id, &logged))
    }

    fn state(&self, id: &str) -> Result<Option<ContainerState>> {
        let mut cmd = self.command();
        cmd.arg("state").arg(id);
        match self.run("state", id, cmd) {
            Ok(out) => serde_json::from_slice(&out)
                .map(Some)
                .map_err(|e| RuntimeError::Failed {
                    binary: self.binary.display().to_string(),
                    action: "state",
                    id: id.to_string(),
                    message: format!("unreadable answer: {e}"),
                }),
            Err(RuntimeError::Failed { message, .. }) if message.contains("does not exist") => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn kill(&self, id: &str, signal: i32) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("kill").arg(id).arg(signal.to_string());
        self.run("kill", id, cmd).map(drop)
    }

    fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut cmd = self.command();
        cmd.arg("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        match self.run("delete", id, cmd) {
            Err(RuntimeError::Failed { message, .. }) if message.contains("does not exist") => {
                Ok(())
            }
            other => other.map(drop),
        }
    }

    fn list(&self) -> Result<Vec<ContainerState>> {
        let mut cmd = self.command();
        cmd.arg("list").arg("--format").arg("json");
        let out = self.run("list", "", cmd)?;
        let text = String::from_utf8_lossy(&out);
        if text.trim() == "null" || text.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(&text).map_err(|e| RuntimeError::Failed {
            binary: self.binary.display().to_string(),
            action: "list",
            id: String::new(),
            message: format!("unreadable answer: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_errors_read_as_one_line() {
        let stderr = b"time=\"2026-11-25T10:00:00Z\" level=error msg=\"container \\\"x\\\" does not exist\"\n";
        assert_eq!(runtime_message(stderr), "container \"x\" does not exist");
        assert_eq!(runtime_message(b"plain failure\n\n"), "plain failure");
    }

    #[test]
    fn a_missing_binary_says_what_to_install() {
        let rt = OciRuntime::new("/nonexistent/runc", "/tmp/x");
        let err = rt.list().unwrap_err().to_string();
        assert!(err.starts_with("cannot run /nonexistent/runc: "), "{err}");
        assert!(err.ends_with("(apt-get install runc)"), "{err}");
    }
}
