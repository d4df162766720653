//! Work in a given network namespace, done on a thread that joined it: setns(2) is per
//! thread, and a netlink socket acts in, and a child process starts in, the namespace of
//! the thread that made it. Netlink requests (`netlink.rs`) do all the wiring;
//! [`Netns::ip`] runs iproute2 there to look (tests, and people debugging). Unlike `ip netns exec` this leaves /sys
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

/// Why a thread could not join a network namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("the network namespace {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("joining the network namespace {}: {source}", path.display())]
    Join {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Moves the calling thread, and only it, into the network namespace pinned at `path`.
/// The thread should end with the work that needed it.
pub fn enter_netns(path: &Path) -> Result<(), NetnsError> {
    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
    use std::os::fd::AsFd;
    let file = std::fs::File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network)).map_err(|e| {
        NetnsError::Join {
            path: path.to_path_buf(),
            source: e.into(),
        }
    })
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
                        enter_netns(path).map_err(|e| e.to_string())?;
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
