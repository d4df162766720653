//! A pod's sandbox: its network, IPC and UTS namespaces, pinned by bind mounts onto files
//! in the pod's directory (as CRI-O's pinns does) rather than held by a pause process, so
//! they outlive any container and any agent restart. The UTS namespace carries the pod's
//! hostname; the network namespace starts with loopback up and nothing else.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("creating the pod sandbox in {dir}: {message}")]
    Create { dir: PathBuf, message: String },
    #[error("removing the pod sandbox in {dir}: {message}")]
    Remove { dir: PathBuf, message: String },
}

const KINDS: [&str; 3] = ["net", "ipc", "uts"];

/// The pinned namespaces of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    /// The sandbox pinned under `dir` (which may already hold one: after an agent restart
    /// this finds it again).
    pub fn at(dir: impl Into<PathBuf>) -> Sandbox {
        Sandbox { dir: dir.into() }
    }

    pub fn net(&self) -> PathBuf {
        self.dir.join("net")
    }

    pub fn ipc(&self) -> PathBuf {
        self.dir.join("ipc")
    }

    pub fn uts(&self) -> PathBuf {
        self.dir.join("uts")
    }

    /// Whether the namespaces are pinned (each file is a mount of an nsfs inode).
    pub fn exists(&self) -> bool {
        KINDS.iter().all(|k| is_namespace(&self.dir.join(k)))
    }

    /// Makes and pins new namespaces, sets the hostname and brings loopback up.
    pub fn create(&self, hostname: &str) -> Result<(), SandboxError> {
        let err = |message: String| SandboxError::Create {
            dir: self.dir.clone(),
            message,
        };
        if hostname.is_empty()
            || hostname.len() > 64
            || !hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return Err(err(format!("{hostname:?} is not a valid hostname")));
        }
        std::fs::create_dir_all(&self.dir).map_err(|e| err(e.to_string()))?;
        for kind in KINDS {
            std::fs::write(self.dir.join(kind), b"").map_err(|e| err(e.to_string()))?;
        }
        // A thread of its own enters new namespaces (net, IPC and UTS can be unshared per
        // thread), sets them up, and pins each by bind-mounting it onto its file; the
        // namespaces outlive the thread. No process is started: this is on every pod's
        // startup path.
        let (dir, name) = (self.dir.clone(), hostname.to_string());
        let result = std::thread::spawn(move || pin_new_namespaces(&dir, &name))
            .join()
            .unwrap_or_else(|_| {
                let panicked = std::io::Error::other("the thread panicked");
                Err(("the namespace thread".to_string(), panicked))
            });
        if let Err((step, source)) = result {
            let _ = self.remove();
            return Err(err(format!("{step}: {source}")));
        }
        Ok(())
    }

    /// Unpins the namespaces (they go once no process uses them) and removes the files.
    pub fn remove(&self) -> Result<(), SandboxError> {
        for kind in KINDS {
            let path = self.dir.join(kind);
            if is_namespace(&path) {
                unmount(&path).map_err(|e| SandboxError::Remove {
                    dir: self.dir.clone(),
                    message: format!("unmounting {}: {e}", path.display()),
                })?;
            }
            let _ = std::fs::remove_file(&path);
        }
        Ok(())
    }
}

/// On the calling thread: new net, IPC and UTS namespaces with `hostname` and loopback up,
/// each bind-mounted onto `dir/<kind>`. An error names the step.
fn pin_new_namespaces(dir: &Path, hostname: &str) -> Result<(), (String, std::io::Error)> {
    use rustix::thread::UnshareFlags;
    let step = |what: &str| {
        let what = what.to_string();
        move |e: rustix::io::Errno| (what, std::io::Error::from(e))
    };
    let flags = UnshareFlags::NEWNET | UnshareFlags::NEWIPC | UnshareFlags::NEWUTS;
    // SAFETY: no file descriptor table is unshared (FILES is not among the flags).
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(step("unshare"))?;
    rustix::system::sethostname(hostname.as_bytes()).map_err(step("sethostname"))?;
    loopback_up().map_err(|e| ("bringing loopback up".to_string(), e))?;
    let tid = rustix::thread::gettid().as_raw_nonzero();
    for kind in KINDS {
        let source = format!("/proc/self/task/{tid}/ns/{kind}");
        rustix::mount::mount_bind(source.as_str(), dir.join(kind))
            .map_err(step(&format!("pinning the {kind} namespace")))?;
    }
    Ok(())
}

/// Sets `lo` up in the calling thread's network namespace (SIOCSIFFLAGS).
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: a fresh socket, an ifreq zeroed then named, and ioctls that fill/read it.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut rc = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if rc == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            rc = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let result = if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        };
        libc::close(sock);
        result
    }
}

/// Whether `path` is a pinned namespace (an nsfs mount).
fn is_namespace(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid path and a zeroed statfs to fill.
    const NSFS_MAGIC: libc::c_long = 0x6e73_6673;
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as libc::c_long == NSFS_MAGIC }
}

/// Detaches a mount (lazily: a process still inside keeps its namespace).
pub fn unmount(path: &Path) -> std::io::Result<()> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::other("a NUL in the path"))?;
    // SAFETY: a valid path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } != 0 {
        let e = std::io::Error::last_os_error();
        // Not (or no longer) a mount point, or gone: a concurrent teardown got there
        // first, and what was asked is done.
        if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(libc::ENOENT)) {
            return Ok(());
        }
        return Err(e);
    }
    Ok(())
}
