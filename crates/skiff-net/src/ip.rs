//! Running iproute2's `ip` in a given network namespace: `ip` is started from a thread
//! that joined the namespace (setns(2) is per thread, and a child starts in its parent
//! thread's namespaces). That is what `nsenter --net` does, without its process (and,
//! unlike `ip netns exec`, leaves /sys alone); and unlike setns in the child before exec,
//! it keeps std's posix_spawn, which does not copy the agent's page tables.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A network namespace: a pinned one by its file, or this process's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    Current,
    Path(PathBuf),
}

/// Moves the calling thread, and only it, into the network namespace pinned at `path`.
/// The thread should end with the work that needed it.
pub fn enter_netns(path: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("the network namespace {}: {e}", path.display()))?;
    // SAFETY: a valid namespace file descriptor; setns changes only the calling thread.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(format!(
            "joining the network namespace {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

impl Netns {
    /// Runs `f` in this namespace: here, or on a scoped thread that joined it.
    fn within<T: Send>(&self, f: impl FnOnce() -> Result<T, String> + Send) -> Result<T, String> {
        match self {
            Netns::Current => f(),
            Netns::Path(path) => std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        enter_netns(path)?;
                        f()
                    })
                    .join()
                    .unwrap_or_else(|_| Err("the thread running ip panicked".into()))
            }),
        }
    }

    /// `ip` with `args`, fed `input`, in this namespace.
    fn run(&self, args: &[&str], input: Option<&str>) -> Result<Output, String> {
        use std::io::Write;
        self.within(|| {
            let mut child = Command::new("ip")
                .args(args)
                .stdin(if input.is_some() {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot run ip: {e} (apt-get install iproute2)"))?;
            if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
                stdin
                    .write_all(text.as_bytes())
                    .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
            }
            child
                .wait_with_output()
                .map_err(|e| format!("ip {}: {e}", args.join(" ")))
        })
    }

    /// Several `ip` commands (one per line) in one run: one process instead of many on the
    /// pod startup path.
    pub fn ip_batch(&self, commands: &[String]) -> Result<(), String> {
        let script = commands.join("\n") + "\n";
        let out = self.run(&["-batch", "-"], Some(&script))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip -batch ({}): {}",
                commands.join("; "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `ip ARGS` in this namespace: its standard output, or the error it printed.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let out = self.run(args, None)?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}
