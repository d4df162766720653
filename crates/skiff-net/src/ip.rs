//! Work in a given network namespace, done on a thread that joined it: setns(2) is per
//! thread, and a netlink socket acts in, and a child process starts in, the namespace of
//! the thread that made it. Netlink requests (`netlink.rs`) carry the pod startup path;
//! iproute2's `ip` remains for the node's bridge. Unlike `ip netns exec` this leaves /sys
//! alone, and unlike setns in a child before exec it keeps std's posix_spawn, which does
//! not copy the agent's page tables.

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
    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
    use std::os::fd::AsFd;
    let file = std::fs::File::open(path)
        .map_err(|e| format!("the network namespace {}: {e}", path.display()))?;
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
        .map_err(|e| format!("joining the network namespace {}: {e}", path.display()))
}

impl Netns {
    /// Runs `f` in this namespace: here, or on a scoped thread that joined it.
    pub(crate) fn within<T: Send>(
        &self,
        f: impl FnOnce() -> Result<T, String> + Send,
    ) -> Result<T, String> {
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

    /// `ip` with `args` in this namespace.
    fn run(&self, args: &[&str]) -> Result<Output, String> {
        self.within(|| {
            Command::new("ip")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("cannot run ip: {e} (apt-get install iproute2)"))
        })
    }

    /// `ip ARGS` in this namespace: its standard output, or the error it printed.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let out = self.run(args)?;
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
