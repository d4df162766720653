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

/// A step of work in a network namespace that failed.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    #[error(transparent)]
    Netns(#[from] NetnsError),
    #[error("the thread working in the network namespace panicked")]
    Thread,
    #[error("{what}: {source}")]
    Step {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Missing(String),
    #[error("ip {args}: {stderr}")]
    Ip { args: String, stderr: String },
}

impl WiringError {
    /// An error of the step `what`, for `map_err`.
    pub(crate) fn step(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> WiringError {
        let what = what.into();
        move |source| WiringError::Step { what, source }
    }
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
        f: impl FnOnce() -> Result<T, WiringError> + Send,
    ) -> Result<T, WiringError> {
        match self {
            Netns::Current => f(),
            Netns::Path(path) => std::thread::scope(|scope| {
                scope
                    .spawn(|| {
                        enter_netns(path)?;
                        f()
                    })
                    .join()
                    .unwrap_or(Err(WiringError::Thread))
            }),
        }
    }

    /// A TCP listener on `addr` in this namespace (it keeps listening there, whichever
    /// thread accepts).
    pub fn bind_tcp(&self, addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
        self.within(|| {
            std::net::TcpListener::bind(addr)
                .map_err(WiringError::step(format!("listening on {addr}")))
        })
        .map_err(std::io::Error::other)
    }

    /// `ip ARGS` in this namespace: its standard output, or the error it printed.
    pub fn ip(&self, args: &[&str]) -> Result<String, WiringError> {
        let out: Output = self.within(|| {
            Command::new("ip")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .map_err(WiringError::step(
                    "cannot run ip (apt-get install iproute2)",
                ))
        })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(WiringError::Ip {
                args: args.join(" "),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }
}

/// One end of a veth pair made by [`link_namespaces`]: its namespace, the link's name and
/// its address (`203.0.113.1/24`).
pub struct End<'a> {
    pub netns: &'a Path,
    pub link: &'a str,
    pub address: &'a str,
}

/// Joins two pinned network namespaces with a veth pair, each end addressed and up (with
/// iproute2; for tests and benchmarks that build networks of namespaces).
pub fn link_namespaces(a: End<'_>, b: End<'_>) -> Result<(), WiringError> {
    let (here, there) = (
        Netns::Path(a.netns.to_path_buf()),
        Netns::Path(b.netns.to_path_buf()),
    );
    let there_path = b.netns.display().to_string();
    here.ip(&[
        "link",
        "add",
        a.link,
        "type",
        "veth",
        "peer",
        "name",
        b.link,
        "netns",
        &there_path,
    ])?;
    for (ns, end) in [(&here, &a), (&there, &b)] {
        ns.ip(&["addr", "add", end.address, "dev", end.link])?;
        ns.ip(&["link", "set", end.link, "up"])?;
    }
    Ok(())
}
