//! A pod's sandbox: its network, IPC and UTS namespaces, pinned by bind mounts onto files
//! in the pod's directory (as CRI-O's pinns does) rather than held by a pause process, so
//! they outlive any container and any agent restart. The UTS namespace carries the pod's
//! hostname; the network namespace starts with loopback up and nothing else.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
        // util-linux unshare pins each namespace by bind-mounting it onto the file, then runs
        // the set-up inside them. (Not `ip netns exec`: it remounts /sys.)
        let out = Command::new("unshare")
            .arg(format!("--net={}", self.net().display()))
            .arg(format!("--ipc={}", self.ipc().display()))
            .arg(format!("--uts={}", self.uts().display()))
            .args([
                "sh",
                "-c",
                "hostname \"$1\" && ip link set lo up",
                "sh",
                hostname,
            ])
            .output()
            .map_err(|e| {
                err(format!(
                    "cannot run unshare: {e} (apt-get install util-linux iproute2)"
                ))
            })?;
        if !out.status.success() {
            let _ = self.remove();
            return Err(err(String::from_utf8_lossy(&out.stderr).trim().to_string()));
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
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
