//! A container's root filesystem: the image's unpacked layers as overlayfs lower
//! directories under a writable upper directory of the container's own.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mounting the root filesystem at {target}: {source}")]
    Mount {
        target: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image has no layers")]
    NoLayers,
}

/// Where a container's root filesystem lives: `dir/rootfs` (the mount), `dir/upper` and
/// `dir/work` (overlayfs's).
pub struct Rootfs {
    dir: PathBuf,
}

impl Rootfs {
    pub fn at(dir: impl Into<PathBuf>) -> Rootfs {
        Rootfs { dir: dir.into() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Mounts the layers (lowest first) with a fresh writable layer on top.
    pub fn mount(&self, layers: &[PathBuf]) -> Result<(), RootfsError> {
        if layers.is_empty() {
            return Err(RootfsError::NoLayers);
        }
        let target = self.path();
        let err = |source| RootfsError::Mount {
            target: target.clone(),
            source,
        };
        for d in ["rootfs", "upper", "work"] {
            std::fs::create_dir_all(self.dir.join(d)).map_err(err)?;
        }
        // overlayfs lists the top layer first.
        let lower: Vec<String> = layers
            .iter()
            .rev()
            .map(|l| l.display().to_string())
            .collect();
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            self.dir.join("upper").display(),
            self.dir.join("work").display()
        );
        let c_target = CString::new(target.as_os_str().as_bytes())
            .map_err(|_| err(std::io::Error::other("a NUL in the path")))?;
        let c_options = CString::new(options)
            .map_err(|_| err(std::io::Error::other("a NUL in a layer path")))?;
        // SAFETY: valid NUL-terminated strings.
        let rc = unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                c_target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                c_options.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        Ok(())
    }

    /// Unmounts and removes the container's writable layer.
    pub fn remove(&self) -> std::io::Result<()> {
        let target = self.path();
        if is_mountpoint(&target) {
            crate::sandbox::unmount(&target)?;
        }
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Whether something is mounted at `path` (its device differs from its parent's).
pub fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(me), Some(Ok(parent))) = (
        std::fs::symlink_metadata(path),
        path.parent().map(std::fs::symlink_metadata),
    ) else {
        return false;
    };
    me.dev() != parent.dev()
}
