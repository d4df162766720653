//! The container monitor (conmon's job): one small process per container, detached from
//! the agent, that creates the container through the OCI runtime, becomes the parent of
//! its process (a child subreaper), writes its output to the CRI log, and records how it
//! ended. Because the monitor, not the agent, holds the container's pipes and reaps it, an
//! agent restart loses neither logs nor exit codes.
//!
//! It runs as `skiff internal container-monitor …` and talks to the agent through files in
//! the container's bundle directory:
//!
//! ```text
//! config.json   written by the agent
//! pid           the container process (written by the runtime)
//! started       when the monitor started the container (RFC 3339)
//! created       the container runs and its output is being logged: spawn() returns
//! exit          how it ended (JSON: exitCode, signal, oomKilled, finishedAt, error)
//! ```
//!
//! After `exit` it creates the file `exit_notice` names, if any: one directory the agent
//! looks at, instead of every container's bundle.
//!
//! The container is created and started by one runtime call (`run --detach`): a second
//! runtime process per container (`start`) was a tenth of a pod's startup CPU.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::cri_log::{CriLog, LineSplitter, Stream};
use crate::runc::{OciRuntime, Runtime};

/// The allocator settings of skiff's long-lived processes (the server, the agent, each
/// container monitor, each pod's PID namespace holder): mimalloc returns freed memory at
/// once and commits its arenas as they are used. Measured with `skiff-bench node` (20
/// pods): the agent's RSS 44 → 25 MiB, a monitor's 9.8 → 4.2 MiB; with `skiff-bench api`:
/// the server holding 10,000 pods 280 → 150 MiB.
pub const LEAN_ALLOCATOR: [(&str, &str); 2] = [
    ("MIMALLOC_PURGE_DELAY", "0"),
    ("MIMALLOC_ARENA_EAGER_COMMIT", "0"),
];

/// The FIFO in a bundle that is the container's stdin, when it has one.
pub const STDIN_FIFO: &str = "stdin";
/// The FIFO in a bundle that takes `WIDTH HEIGHT` lines for a container's terminal.
pub const RESIZE_FIFO: &str = "resize";
/// In a bundle: the container's stdin ends when the first attach session's does
/// (`stdinOnce`).
pub const STDIN_ONCE: &str = "stdin-once";
/// In a bundle: an attach session has the stdin FIFO open for writing.
pub const STDIN_ATTACHED: &str = "stdin-attached";

/// The container's stdin, from the bundle's FIFO (if the agent made one). Opened read-write,
/// it never reaches an end. With `stdinOnce` it is read-only, and this process holds a
/// writer only until an attach session has one (it says so with `STDIN_ATTACHED`): when
/// that session lets go, the container reads the end of its input.
fn open_stdin(bundle: &Path) -> Option<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let fifo = bundle.join(STDIN_FIFO);
    if !bundle.join(STDIN_ONCE).exists() {
        return std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(fifo)
            .ok();
    }
    // Non-blocking, as no writer exists yet; blocking again once one does.
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .ok()?;
    let holder = std::fs::OpenOptions::new().write(true).open(&fifo).ok()?;
    set_blocking(&reader);
    let attached = bundle.join(STDIN_ATTACHED);
    std::thread::spawn(move || {
        while !attached.exists() {
            std::thread::sleep(Duration::from_millis(100));
        }
        drop(holder);
    });
    Some(reader)
}

fn set_blocking(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: fcntl on a descriptor this process owns.
    unsafe {
        let flags = libc::fcntl(file.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(file.as_raw_fd(), libc::F_SETFL, flags & !libc::O_NONBLOCK);
    }
}

/// Whether the bundle's process has a terminal (`process.terminal`).
fn has_terminal(bundle: &Path) -> bool {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .is_some_and(|c| c["process"]["terminal"] == true)
}

/// Copies attach's input into the container's terminal for the container's life.
fn copy_input(mut from: std::fs::File, mut to: std::fs::File) {
    use std::io::Write;
    let mut buf = vec![0u8; 4096];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// Applies `WIDTH HEIGHT` lines to the container's terminal.
fn follow_resizes(from: std::fs::File, terminal: &std::fs::File) {
    use std::io::BufRead;
    for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
        let mut words = line.split_whitespace().map(str::parse::<u16>);
        if let (Some(Ok(w)), Some(Ok(h))) = (words.next(), words.next()) {
            crate::console::resize(terminal, w, h);
        }
    }
}

/// What the monitor needs to know; the agent passes it as command-line arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorConfig {
    pub runtime_binary: PathBuf,
    pub runtime_root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub log: PathBuf,
    pub cgroups_path: String,
    pub log_max_size: u64,
    pub log_max_files: usize,
    /// A file to create once the exit is recorded (the agent's cue to look).
    pub exit_notice: Option<PathBuf>,
}

impl MonitorConfig {
    pub fn to_args(&self) -> Vec<String> {
        vec![
            self.runtime_binary.display().to_string(),
            self.runtime_root.display().to_string(),
            self.id.clone(),
            self.bundle.display().to_string(),
            self.log.display().to_string(),
            self.cgroups_path.clone(),
            self.log_max_size.to_string(),
            self.log_max_files.to_string(),
        ]
        .into_iter()
        .chain(self.exit_notice.iter().map(|p| p.display().to_string()))
        .collect()
    }

    pub fn from_args(args: &[String]) -> Option<MonitorConfig> {
        let (fixed, notice) = match args.len() {
            8 => (args, None),
            9 => (&args[..8], Some(PathBuf::from(&args[8]))),
            _ => return None,
        };
        let [binary, root, id, bundle, log, cgroups, size, files] = fixed else {
            return None;
        };
        Some(MonitorConfig {
            runtime_binary: binary.into(),
            runtime_root: root.into(),
            id: id.clone(),
            bundle: bundle.into(),
            log: log.into(),
            cgroups_path: cgroups.clone(),
            log_max_size: size.parse().ok()?,
            log_max_files: files.parse().ok()?,
            exit_notice: notice,
        })
    }

    /// Records how the container ended, then leaves the notice.
    fn record(&self, exit: &Exit) {
        write_atomically(
            &self.bundle.join("exit"),
            &serde_json::to_vec(exit).unwrap_or_default(),
        );
        if let Some(notice) = &self.exit_notice {
            if let Some(dir) = notice.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(notice, b"");
        }
    }
}

/// How a container ended, as the monitor records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exit {
    pub exit_code: i32,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub oom_killed: bool,
    #[serde(default)]
    pub finished_at: String,
    /// Set when the container could not be created at all.
    #[serde(default)]
    pub error: Option<String>,
}

impl Exit {
    /// The recorded exit of the container in `bundle`, once there is one.
    pub fn read(bundle: &Path) -> Option<Exit> {
        serde_json::from_slice(&std::fs::read(bundle.join("exit")).ok()?).ok()
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, bytes).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

/// Now, to the nanosecond, as monitors and the agent record times on the node (what goes
/// into the API takes whole seconds).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// The monitor's whole life. Call it before any thread exists (it forks): it returns in
/// the agent-facing parent at once, and the detached child runs until the container ends.
pub fn daemonize_and_run(config: MonitorConfig) -> i32 {
    // SAFETY: called before any other thread exists (see above).
    match unsafe { libc::fork() } {
        -1 => return 1,
        0 => {}
        _ => return 0, // the agent waits for this parent only
    }
    // SAFETY: plain syscalls in the single-threaded child.
    unsafe {
        libc::setsid();
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
    run(&config)
}

fn run(config: &MonitorConfig) -> i32 {
    let fail = |message: String| {
        let exit = Exit {
            exit_code: 128,
            error: Some(message),
            finished_at: now_rfc3339(),
            ..Default::default()
        };
        config.record(&exit);
        1
    };
    let log = match CriLog::open(&config.log, config.log_max_size, config.log_max_files) {
        Ok(l) => Arc::new(Mutex::new(l)),
        Err(e) => return fail(format!("cannot open the log {}: {e}", config.log.display())),
    };
    let runtime = OciRuntime::new(&config.runtime_binary, &config.runtime_root);
    // A container with `stdin: true` reads a FIFO the agent made in its bundle (attach
    // writes there).
    let stdin_fifo = open_stdin(&config.bundle);
    let outputs: Vec<(std::fs::File, Stream)> = if has_terminal(&config.bundle) {
        // The terminal is the container's stdio: its output is the log's stdout; stdin and
        // resizes from attach go to it.
        let socket_path =
            std::env::temp_dir().join(format!("skiff-console-{}.sock", std::process::id()));
        let socket = match crate::console::ConsoleSocket::bind(&socket_path) {
            Ok(s) => s,
            Err(e) => return fail(format!("the console socket {}: {e}", socket_path.display())),
        };
        let stdio = [Stdio::null(), Stdio::null(), Stdio::null()];
        if let Err(e) = runtime.run_detached(&config.id, &config.bundle, stdio, Some(socket.path()))
        {
            return fail(e.to_string());
        }
        let terminal = match socket.receive() {
            Ok(t) => t,
            Err(e) => return fail(e.to_string()),
        };
        if let (Some(fifo), Ok(to)) = (stdin_fifo, terminal.try_clone()) {
            std::thread::spawn(move || copy_input(fifo, to));
        }
        let resizes = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(config.bundle.join(RESIZE_FIFO));
        if let (Ok(resizes), Ok(to)) = (resizes, terminal.try_clone()) {
            std::thread::spawn(move || follow_resizes(resizes, &to));
        }
        vec![(terminal, Stream::Stdout)]
    } else {
        let (Ok((out_r, out_w)), Ok((err_r, err_w))) = (pipe(), pipe()) else {
            return fail("cannot create the container's output pipes".into());
        };
        let stdin = stdin_fifo.map_or(Stdio::null(), Stdio::from);
        let stdio = [stdin, Stdio::from(out_w), Stdio::from(err_w)];
        if let Err(e) = runtime.run_detached(&config.id, &config.bundle, stdio, None) {
            return fail(e.to_string());
        }
        // The write ends went to the runtime's child and were closed here with `stdio`.
        vec![
            (std::fs::File::from(out_r), Stream::Stdout),
            (std::fs::File::from(err_r), Stream::Stderr),
        ]
    };
    let pid: i32 = match std::fs::read_to_string(config.bundle.join("pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok())
    {
        Some(pid) => pid,
        None => return fail("the runtime wrote no pid file".into()),
    };
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let streams = outputs.len();
    for (file, stream) in outputs {
        let log = log.clone();
        let done = done_tx.clone();
        std::thread::spawn(move || {
            copy_to_log(file, stream, &log);
            let _ = done.send(());
        });
    }
    write_atomically(&config.bundle.join("started"), now_rfc3339().as_bytes());
    write_atomically(&config.bundle.join("created"), b"");

    let (code, signal) = wait_for(pid);
    // Output still in the pipes belongs before the exit; processes the container left
    // behind may hold the pipes open, so wait only briefly.
    let deadline = Instant::now() + Duration::from_secs(2);
    for _ in 0..streams {
        let left = deadline.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let exit = Exit {
        exit_code: code,
        signal,
        oom_killed: signal == Some(libc::SIGKILL) && oom_recorded(&config.cgroups_path),
        finished_at: now_rfc3339(),
        error: None,
    };
    config.record(&exit);
    0
}

/// Whether the cgroup counted an OOM kill. The kernel counts it just after sending the
/// SIGKILL, so the victim can be reaped first: look again for a moment.
fn oom_recorded(cgroups_path: &str) -> bool {
    for _ in 0..20 {
        if crate::cgroups::oom_killed(cgroups_path) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    false
}

/// Reaps children until the container process ends: (exit code, signal). A signal is
/// reported as 128 + its number, as shells and the kubelet do.
fn wait_for(pid: i32) -> (i32, Option<i32>) {
    use rustix::process::{WaitOptions, wait};
    loop {
        // Any child (`waitpid(-1)`): rustix's `waitpid(None)` is 0, this process group only.
        let (reaped, status) = match wait(WaitOptions::empty()) {
            Ok(Some(reaped)) => reaped,
            Err(rustix::io::Errno::INTR) => continue,
            // No children left: the container's process was not ours to reap.
            Ok(None) | Err(_) => return (255, None),
        };
        if reaped.as_raw_nonzero().get() != pid {
            continue; // an orphan of the container, reparented to us
        }
        if let Some(code) = status.exit_status() {
            return (code, None);
        }
        if let Some(sig) = status.terminating_signal() {
            return (128 + sig, Some(sig));
        }
    }
}

fn copy_to_log(mut pipe: std::fs::File, stream: Stream, log: &Mutex<CriLog>) {
    let mut splitter = LineSplitter::default();
    let mut buf = vec![0u8; 32 * 1024];
    let write = |records: Vec<(Vec<u8>, bool)>| {
        let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
        for (content, complete) in records {
            if let Err(e) = log.record(stream, &content, complete) {
                tracing::warn!(error = %e, "cannot write the container log");
            }
        }
    };
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => write(splitter.feed(&buf[..n])),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if let Some(rest) = splitter.finish() {
        write(vec![(rest, true)]);
    }
}

/// Why a helper process — a container monitor, a pod's PID namespace holder — did not
/// start, or its container did not.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot run {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the container monitor could not start ({0})")]
    MonitorFailed(std::process::ExitStatus),
    #[error("the pod's PID namespace holder did not start ({0})")]
    HolderFailed(std::process::ExitStatus),
    #[error("the pod's PID namespace holder ended at once")]
    HolderEnded,
    /// The runtime could not create the container: its error, as the monitor recorded it.
    #[error("{0}")]
    NotStarted(String),
    #[error("the container ended at once")]
    EndedAtOnce,
    #[error("the container was not created within 30 s")]
    NotCreated,
}

/// Runs `skiff_binary internal SUBCOMMAND ARGS` — a helper that detaches itself and
/// returns — with the lean allocator and no stdio; answers how the foreground part ended.
pub(crate) fn run_internal<S: AsRef<std::ffi::OsStr>>(
    skiff_binary: &Path,
    subcommand: &str,
    args: &[S],
) -> Result<std::process::ExitStatus, HelperError> {
    let mut command = Command::new(skiff_binary);
    for (name, value) in LEAN_ALLOCATOR {
        command.env(name, value);
    }
    command
        .args(["internal", subcommand])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|source| HelperError::Spawn {
            binary: skiff_binary.display().to_string(),
            source,
        })
}

/// `skiff_binary internal container-monitor …`, and waits until the container runs (or
/// failed to start).
pub fn spawn(skiff_binary: &Path, config: &MonitorConfig) -> Result<(), HelperError> {
    let status = run_internal(skiff_binary, "container-monitor", &config.to_args())?;
    if !status.success() {
        return Err(HelperError::MonitorFailed(status));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if config.bundle.join("created").exists() {
            return Ok(());
        }
        if let Some(exit) = Exit::read(&config.bundle) {
            return Err(exit
                .error
                .map_or(HelperError::EndedAtOnce, HelperError::NotStarted));
        }
        if Instant::now() > deadline {
            return Err(HelperError::NotCreated);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_through_arguments() {
        let config = MonitorConfig {
            runtime_binary: "/usr/sbin/runc".into(),
            runtime_root: "/run/skiff/runc".into(),
            id: "pod-c1".into(),
            bundle: "/var/lib/skiff/b".into(),
            log: "/var/log/pods/x/c/0.log".into(),
            cgroups_path: "skiff/pod/c1".into(),
            log_max_size: 10 << 20,
            log_max_files: 5,
            exit_notice: None,
        };
        // Without a notice: what monitors started before notices existed were given.
        assert_eq!(config.to_args().len(), 8);
        assert_eq!(
            MonitorConfig::from_args(&config.to_args()),
            Some(config.clone())
        );
        let noticed = MonitorConfig {
            exit_notice: Some("/var/lib/skiff/exits/pod".into()),
            ..config
        };
        assert_eq!(MonitorConfig::from_args(&noticed.to_args()), Some(noticed));
        assert_eq!(MonitorConfig::from_args(&["x".into()]), None);
    }
}
