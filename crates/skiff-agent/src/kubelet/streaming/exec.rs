//! A command run in a container for `kubectl exec`, apart from the wire protocol that
//! carries it (WebSocket channels, SPDY streams): input arrives as [`Input`], output leaves
//! as [`Output`], and the command's exit code is the answer.
//!
//! Without a terminal, the command's stdio are pipes. With one (`tty=true`), the command
//! runs under `runc exec --tty` whose own stdio is a pseudo-terminal made here: runc bridges
//! it to the container's terminal and follows its size (SIGWINCH), so a resize from the
//! client is a `TIOCSWINSZ` on this side's master.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// How long output still pending after the command ended is waited for (a background child
/// may hold the pipes open forever).
const DRAIN: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecOptions {
    pub command: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl ExecOptions {
    /// Reads an exec (or attach) query; a bad one is the message of a 400.
    pub fn parse(query: &str) -> Result<ExecOptions, String> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| format!("the query: {e}"))?;
        let mut options = ExecOptions::default();
        for (key, value) in pairs {
            let flag = value.is_empty() || value == "true" || value == "1";
            match key.as_str() {
                "command" => options.command.push(value),
                "stdin" | "input" => options.stdin = flag,
                "stdout" | "output" => options.stdout = flag,
                "stderr" | "error" => options.stderr = flag,
                "tty" => options.tty = flag,
                _ => {}
            }
        }
        if options.tty {
            // A terminal has one output stream.
            options.stderr = false;
        }
        if !(options.stdin || options.stdout || options.stderr) {
            return Err("you must specify at least one of stdin, stdout, stderr".into());
        }
        Ok(options)
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Stdin(Vec<u8>),
    CloseStdin,
    Resize { width: u16, height: u16 },
}

#[derive(Debug, PartialEq, Eq)]
pub enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// What a streaming session runs (an exec'd command, an attach), apart from its transport:
/// given its input and output, it answers an exit code when it ends.
pub type Session = Box<
    dyn FnOnce(
            mpsc::Receiver<Input>,
            mpsc::Sender<Output>,
        ) -> futures_util::future::BoxFuture<'static, std::io::Result<i32>>
        + Send,
>;

/// An exec session: `exec` (see `OciRuntime::exec_command`, writing the command's pid to
/// `pid_file`) run as `options` say. If the session is dropped before the command ends
/// (the client went away), the command is killed: runc's exec leaves it running otherwise.
pub fn session(
    exec: skiff_runtime::runc::ExecCommand,
    options: ExecOptions,
    pid_file: std::path::PathBuf,
) -> Session {
    Box::new(move |input, output| {
        Box::pin(async move {
            let mut guard = KillOnDrop {
                pid_file,
                armed: true,
            };
            let skiff_runtime::runc::ExecCommand {
                command,
                process_file,
            } = exec;
            let result = run(command, &options, input, output).await;
            guard.armed = false;
            drop(process_file);
            result
        })
    })
}

/// Kills the exec'd process named in a pid file when dropped while armed; removes the file.
struct KillOnDrop {
    pid_file: std::path::PathBuf,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<i32>().ok())
            .filter(|p| *p > 1)
            .and_then(rustix::process::Pid::from_raw);
        if self.armed
            && let Some(pid) = pid
        {
            // The exec'd process, still running: the session ended before its command did.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

/// The `Status` an exec's error stream ends with: success, or upstream's NonZeroExitCode
/// with the code as a cause (which kubectl exits with).
pub fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The `Status` a session's error stream ends with, from how its task ended.
pub fn final_status(
    command: &[String],
    ended: Result<std::io::Result<i32>, tokio::task::JoinError>,
) -> Value {
    match ended {
        Ok(Ok(code)) => exit_status(command, code),
        Ok(Err(e)) => failure_status(&format!("error executing command in container: {e}")),
        Err(e) => failure_status(&format!("the exec session failed: {e}")),
    }
}

/// The `Status` for an exec that could not run at all.
fn failure_status(message: &str) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(1)
}

async fn pump(
    mut from: impl AsyncRead + Unpin,
    to: mpsc::Sender<Output>,
    wrap: fn(Vec<u8>) -> Output,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(wrap(buf[..n].to_vec())).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs `command` (a `runc exec`, see `OciRuntime::exec_command`) until it ends; answers
/// its exit code.
pub async fn run(
    command: std::process::Command,
    options: &ExecOptions,
    input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) -> std::io::Result<i32> {
    if options.tty {
        run_with_terminal(command, input, output).await
    } else {
        run_with_pipes(command, options, input, output).await
    }
}

async fn run_with_pipes(
    command: std::process::Command,
    options: &ExecOptions,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) -> std::io::Result<i32> {
    let pipe_if = |on: bool| if on { Stdio::piped() } else { Stdio::null() };
    let mut cmd = tokio::process::Command::from(command);
    cmd.stdin(pipe_if(options.stdin))
        .stdout(pipe_if(options.stdout))
        .stderr(pipe_if(options.stderr))
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let mut pumps = Vec::new();
    if let Some(out) = child.stdout.take() {
        pumps.push(tokio::spawn(pump(out, output.clone(), Output::Stdout)));
    }
    if let Some(err) = child.stderr.take() {
        pumps.push(tokio::spawn(pump(err, output.clone(), Output::Stderr)));
    }
    let mut stdin = child.stdin.take();
    let feed = tokio::spawn(async move {
        while let Some(message) = input.recv().await {
            match message {
                Input::Stdin(bytes) => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(&bytes).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Input::CloseStdin => stdin = None,
                Input::Resize { .. } => {}
            }
        }
    });
    let status = child.wait().await?;
    feed.abort();
    let _ = tokio::time::timeout(DRAIN, async {
        for p in pumps {
            let _ = p.await;
        }
    })
    .await;
    Ok(exit_code(status))
}

/// A new pseudo-terminal: (master, slave).
fn open_pty() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors it opened into the integers given.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both are open descriptors owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) })
}

async fn run_with_terminal(
    mut command: std::process::Command,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Output>,
) -> std::io::Result<i32> {
    let (master, slave) = open_pty()?;
    command
        .stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // Its own session with the terminal as the controlling one, so a resize
            // reaches runc as SIGWINCH.
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut cmd = tokio::process::Command::from(command);
    cmd.kill_on_drop(true);
    let mut child = cmd.spawn()?;
    // The slave ends live only in the child now.
    drop(cmd);
    let master = File::from(master);
    let mut reader = master.try_clone()?;
    let pump = tokio::task::spawn_blocking(move || {
        let mut buf = vec![0u8; 32 * 1024];
        // EIO once the last process holding the terminal is gone.
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0
                || output
                    .blocking_send(Output::Stdout(buf[..n].to_vec()))
                    .is_err()
            {
                break;
            }
        }
    });
    let mut writer = master.try_clone()?;
    let feed = tokio::spawn(async move {
        while let Some(message) = input.recv().await {
            match message {
                Input::Stdin(bytes) => {
                    let mut w = match writer.try_clone() {
                        Ok(w) => w,
                        Err(_) => break,
                    };
                    let written =
                        tokio::task::spawn_blocking(move || w.write_all(&bytes).is_ok()).await;
                    if !matches!(written, Ok(true)) {
                        break;
                    }
                }
                // End of input on a terminal is its EOF character.
                Input::CloseStdin => {
                    let _ = writer.write_all(&[4]);
                }
                Input::Resize { width, height } => {
                    skiff_runtime::console::resize(&writer, width, height)
                }
            }
        }
    });
    let status = child.wait().await?;
    feed.abort();
    // The reader ends when the terminal closes; a leftover holder must not keep us here.
    let _ = tokio::time::timeout(DRAIN, pump).await;
    drop(master);
    Ok(exit_code(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> std::process::Command {
        let mut c = std::process::Command::new("sh");
        c.args(["-c", script]);
        c
    }

    async fn run_collect(
        command: std::process::Command,
        options: ExecOptions,
        inputs: Vec<Input>,
    ) -> (i32, Vec<u8>, Vec<u8>) {
        let (in_tx, in_rx) = mpsc::channel(16);
        let (out_tx, mut out_rx) = mpsc::channel(16);
        for i in inputs {
            in_tx.send(i).await.unwrap();
        }
        let collector = tokio::spawn(async move {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some(o) = out_rx.recv().await {
                match o {
                    Output::Stdout(b) => out.extend(b),
                    Output::Stderr(b) => err.extend(b),
                }
            }
            (out, err)
        });
        let code = run(command, &options, in_rx, out_tx).await.unwrap();
        drop(in_tx);
        let (out, err) = collector.await.unwrap();
        (code, out, err)
    }

    #[test]
    fn queries_are_read_as_kubectl_sends_them() {
        let o = ExecOptions::parse("command=sh&command=-c&command=exit+3&stdout=true&stderr=true")
            .unwrap();
        assert_eq!(o.command, ["sh", "-c", "exit 3"]);
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        let o =
            ExecOptions::parse("command=sh&stdin=true&stdout=true&stderr=true&tty=true").unwrap();
        assert!(o.tty && o.stdin && !o.stderr, "a terminal has one output");
        assert_eq!(
            ExecOptions::parse("command=ls").unwrap_err(),
            "you must specify at least one of stdin, stdout, stderr"
        );
    }

    #[test]
    fn a_dropped_session_kills_its_command_and_a_finished_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        for armed in [true, false] {
            let mut child = std::process::Command::new("sleep")
                .arg("100")
                .spawn()
                .unwrap();
            let pid_file = dir.path().join("exec.pid");
            std::fs::write(&pid_file, child.id().to_string()).unwrap();
            drop(KillOnDrop {
                pid_file: pid_file.clone(),
                armed,
            });
            assert!(!pid_file.exists());
            std::thread::sleep(Duration::from_millis(50));
            let ended = child.try_wait().unwrap();
            assert_eq!(ended.is_some(), armed, "armed: {armed}");
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    #[test]
    fn exit_codes_become_upstreams_statuses() {
        assert_eq!(exit_status(&[], 0)["status"], "Success");
        let failed = exit_status(&["sh".into(), "-c".into(), "exit 3".into()], 3);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "3");
    }

    #[tokio::test]
    async fn pipes_carry_stdin_stdout_stderr_and_the_exit_code() {
        let options = ExecOptions {
            stdin: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let (code, out, err) = run_collect(
            sh("cat; echo oops >&2; exit 7"),
            options,
            vec![
                Input::Stdin(b"hello ".to_vec()),
                Input::Stdin(b"world".to_vec()),
                Input::CloseStdin,
            ],
        )
        .await;
        assert_eq!(
            (code, out.as_slice(), err.as_slice()),
            (7, &b"hello world"[..], &b"oops\n"[..])
        );
    }

    #[tokio::test]
    async fn a_terminal_is_a_terminal_with_the_size_asked_for() {
        let options = ExecOptions {
            stdin: true,
            stdout: true,
            tty: true,
            ..Default::default()
        };
        let (code, out, _) = run_collect(
            // Long enough for the resize to land first.
            sh("sleep 0.3; test -t 0 && echo is-a-tty; stty size"),
            options,
            vec![Input::Resize {
                width: 91,
                height: 17,
            }],
        )
        .await;
        let text = String::from_utf8_lossy(&out);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("is-a-tty"), "{text}");
        assert!(text.contains("17 91"), "{text}");
    }
}
