//! Unpacking one layer into its own directory, ready to be an overlayfs lower layer.
//!
//! A layer is untrusted input, so this is a security boundary. Invariants:
//! - Nothing is written outside `dest`: `..` in a path is refused, absolute paths are taken
//!   relative to `dest`, and no path is ever resolved through a symlink the layer created (a
//!   parent that is a symlink is refused; an existing entry is removed, never followed, and
//!   files are created with `O_NOFOLLOW | O_EXCL`). Hard links must name an entry inside
//!   `dest`, reached without symlinks.
//! - Device nodes are not created (a container gets its devices from the runtime); FIFOs are.
//! - Sizes are bounded: per entry, per layer (decompressed, which defuses compression bombs)
//!   and in entry count.
//! - Whiteouts become overlayfs whiteouts: `.wh.NAME` a 0/0 character device `NAME`,
//!   `.wh..wh..opq` the `trusted.overlay.opaque` xattr on its directory.
//!
//! The stream's decompressed digest (the layer's diff ID) is computed on the way, so the
//! caller can check it against the image configuration.

use std::ffi::{CString, OsStr};
use std::fs;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use skiff_oci::digest::HashingReader;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest single file.
    pub max_entry_bytes: u64,
    /// Largest layer, decompressed.
    pub max_layer_bytes: u64,
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entry_bytes: 32 << 30,
            max_layer_bytes: 64 << 30,
            max_entries: 1 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("the layer is hostile: entry {entry:?} {why}")]
    Hostile { entry: String, why: &'static str },
    #[error("the layer's entry {entry:?} is {size} bytes, over the limit of {limit}")]
    Oversized {
        entry: String,
        size: u64,
        limit: u64,
    },
    #[error("the layer decompresses to more than {limit} bytes")]
    LayerTooLarge { limit: u64 },
    #[error("the layer has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("the layer is not a valid (compressed) tar archive: {0}")]
    Corrupt(String),
    #[error("unpacking {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// What unpacking a layer found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpacked {
    /// sha256 of the decompressed tar stream.
    pub diff_id: String,
    /// Decompressed bytes.
    pub size: u64,
    pub entries: u64,
}

type Result<T> = std::result::Result<T, UnpackError>;

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Unpacks a (gzip, zstd or plain) tar stream into `dest`, which must exist.
pub fn unpack_layer(stream: impl Read, dest: &Path, limits: &Limits) -> Result<Unpacked> {
    let decompressed =
        crate::decompress::decompressed(stream).map_err(|e| UnpackError::Corrupt(e.to_string()))?;
    let bounded = Bounded {
        inner: decompressed,
        left: limits.max_layer_bytes,
        limit: limits.max_layer_bytes,
    };
    let mut archive = tar::Archive::new(HashingReader::new(bounded));
    let entries = unpack_entries(&mut archive, dest, limits)?;
    // The digest covers the whole stream, including the end-of-archive blocks after the
    // last entry.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_error)?;
    Ok(Unpacked {
        diff_id: rest.digest(),
        size: rest.bytes_read(),
        entries,
    })
}

/// Reading the layer failed: either the decompressed size passed its limit or the stream
/// is broken.
fn read_error(e: io::Error) -> UnpackError {
    // tar wraps the reader's error in its own; look down the chain.
    let mut cause: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|e| e as _);
    while let Some(err) = cause {
        if let Some(TooLarge(limit)) = err.downcast_ref::<TooLarge>() {
            return UnpackError::LayerTooLarge { limit: *limit };
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && let Some(inner) = io.get_ref()
        {
            cause = Some(inner as _);
            continue;
        }
        cause = err.source();
    }
    UnpackError::Corrupt(e.to_string())
}

fn unpack_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    dest: &Path,
    limits: &Limits,
) -> Result<u64> {
    let running_as_root = rustix::process::geteuid().is_root();
    let mut count = 0u64;
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        count += 1;
        if count > limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: limits.max_entries,
            });
        }
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let Some(rel) = relative_path(&raw).map_err(|why| UnpackError::Hostile {
            entry: shown.clone(),
            why,
        })?
        else {
            continue; // the layer's root itself
        };
        let header = entry.header().clone();
        let kind = header.entry_type();
        let size = entry.size();
        if size > limits.max_entry_bytes {
            return Err(UnpackError::Oversized {
                entry: shown,
                size,
                limit: limits.max_entry_bytes,
            });
        }
        let parent = rel.parent().unwrap_or(Path::new(""));
        let name = rel.file_name().unwrap_or_default().to_string_lossy();
        let parent_dir = ensure_dirs(dest, parent, &shown)?;

        if name == OPAQUE_MARKER {
            set_xattr(&parent_dir, "trusted.overlay.opaque", b"y", running_as_root)?;
            continue;
        }
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.starts_with(WHITEOUT_PREFIX) {
                continue; // aufs bookkeeping (.wh..wh.plnk and the like)
            }
            let target = parent_dir.join(hidden);
            remove_existing(&target)?;
            make_node(&target, libc::S_IFCHR, 0, running_as_root)?;
            continue;
        }

        let target = parent_dir.join(rel.file_name().unwrap_or_default());
        match kind {
            tar::EntryType::Directory => match fs::symlink_metadata(&target) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    remove_existing(&target)?;
                    fs::create_dir(&target).map_err(io_at(&target))?;
                }
                Err(_) => fs::create_dir(&target).map_err(io_at(&target))?,
            },
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_existing(&target)?;
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&target)
                    .map_err(io_at(&target))?;
                io::copy(&mut entry, &mut file).map_err(|e| match read_error(e) {
                    UnpackError::Corrupt(msg) => UnpackError::Io {
                        path: target.clone(),
                        source: io::Error::other(msg),
                    },
                    other => other,
                })?;
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .ok_or_else(|| UnpackError::Hostile {
                        entry: shown.clone(),
                        why: "is a symlink without a target",
                    })?
                    .into_owned();
                remove_existing(&target)?;
                // The target is stored as is: it is resolved inside the container's root.
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                    .map_err(io_at(&target))?;
            }
            tar::EntryType::Link => {
                let link = entry.link_name_bytes().unwrap_or_default().into_owned();
                let hostile = |why| UnpackError::Hostile {
                    entry: shown.clone(),
                    why,
                };
                let source_rel = relative_path(&link)
                    .map_err(hostile)?
                    .ok_or(hostile("hard-links the layer's root"))?;
                let source_parent =
                    existing_dir(dest, source_rel.parent().unwrap_or(Path::new(""))).ok_or(
                        hostile("hard-links through a symlink or a missing directory"),
                    )?;
                let source = source_parent.join(source_rel.file_name().unwrap_or_default());
                match fs::symlink_metadata(&source) {
                    Ok(meta) if !meta.is_dir() => {}
                    _ => {
                        return Err(hostile(
                            "hard-links to an entry that is not a file of the layer",
                        ));
                    }
                }
                remove_existing(&target)?;
                // linkat without AT_SYMLINK_FOLLOW: a symlink is linked, not followed.
                fs::hard_link(&source, &target).map_err(io_at(&target))?;
                continue; // a hard link shares its source's metadata
            }
            tar::EntryType::Fifo => {
                remove_existing(&target)?;
                make_node(&target, libc::S_IFIFO, 0, true)?;
            }
            tar::EntryType::Char | tar::EntryType::Block => {
                tracing::debug!(entry = %shown, "skipping a device node in a layer");
                continue;
            }
            _ => continue, // global PAX headers and other bookkeeping
        }
        apply_metadata(&mut entry, &header, &target, kind, running_as_root)?;
    }
    Ok(count)
}

/// A tar path as a path relative to the layer root: leading `/` and `.` dropped, `..`
/// refused. `None` for the root itself.
fn relative_path(raw: &[u8]) -> std::result::Result<Option<PathBuf>, &'static str> {
    if raw.contains(&0) {
        return Err("has a NUL byte in its path");
    }
    let mut out = PathBuf::new();
    for component in Path::new(OsStr::from_bytes(raw)).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("climbs out with '..'"),
            Component::Prefix(_) => return Err("has a path prefix"),
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// `dest/rel` with every component a real directory (created if missing, 0755); a
/// component that is a symlink or a non-directory is refused.
fn ensure_dirs(dest: &Path, rel: &Path, entry: &str) -> Result<PathBuf> {
    let mut dir = dest.to_path_buf();
    for part in rel.components() {
        dir.push(part);
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(UnpackError::Hostile {
                    entry: entry.to_string(),
                    why: "writes through a symlink",
                });
            }
            Ok(_) => {
                return Err(UnpackError::Hostile {
                    entry: entry.to_string(),
                    why: "writes under something that is not a directory",
                });
            }
            Err(_) => {
                fs::create_dir(&dir).map_err(io_at(&dir))?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                    .map_err(io_at(&dir))?;
            }
        }
    }
    Ok(dir)
}

/// `dest/rel` if every component exists and is a real directory.
fn existing_dir(dest: &Path, rel: &Path) -> Option<PathBuf> {
    let mut dir = dest.to_path_buf();
    for part in rel.components() {
        dir.push(part);
        if !fs::symlink_metadata(&dir).ok()?.is_dir() {
            return None;
        }
    }
    Some(dir)
}

/// Removes whatever is at `path` (a later entry replaces an earlier one), never following
/// a symlink.
fn remove_existing(path: &Path) -> Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path).map_err(io_at(path)),
        Ok(_) => fs::remove_file(path).map_err(io_at(path)),
        Err(_) => Ok(()),
    }
}

fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| UnpackError::Hostile {
        entry: path.display().to_string(),
        why: "has a NUL byte in its path",
    })
}

/// mknod for whiteouts (0/0 character devices) and FIFOs. Whiteouts need root; without it
/// they are recorded as empty files (enough for tests, not for overlayfs).
fn make_node(path: &Path, kind: libc::mode_t, mode: u32, as_root: bool) -> Result<()> {
    let c = c_path(path)?;
    let mode = if kind == libc::S_IFIFO {
        mode | 0o644
    } else {
        mode
    };
    if kind == libc::S_IFCHR && !as_root {
        fs::File::create(path).map_err(io_at(path))?;
        return Ok(());
    }
    // SAFETY: a valid NUL-terminated path; device 0 for whiteouts and FIFOs.
    if unsafe { libc::mknod(c.as_ptr(), kind | mode as libc::mode_t, 0) } != 0 {
        return Err(io_at(path)(io::Error::last_os_error()));
    }
    Ok(())
}

fn set_xattr(path: &Path, name: &str, value: &[u8], as_root: bool) -> Result<()> {
    if name.starts_with("trusted.") && !as_root {
        return Ok(()); // only root may set trusted.* (overlayfs needs root anyway)
    }
    let c = c_path(path)?;
    // A hostile layer's PAX header may put a NUL in a name.
    let n = CString::new(name).map_err(|_| UnpackError::Hostile {
        entry: path.display().to_string(),
        why: "has an extended attribute name with a NUL byte",
    })?;
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            c.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        return Err(io_at(path)(io::Error::last_os_error()));
    }
    Ok(())
}

/// Owner (as root), mode, mtime and the extended attributes images carry (file
/// capabilities and `user.*`), in that order: chown clears setuid bits.
fn apply_metadata<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    header: &tar::Header,
    target: &Path,
    kind: tar::EntryType,
    as_root: bool,
) -> Result<()> {
    let c = c_path(target)?;
    let is_symlink = kind == tar::EntryType::Symlink;
    if as_root {
        let uid = header.uid().unwrap_or(0) as libc::uid_t;
        let gid = header.gid().unwrap_or(0) as libc::gid_t;
        // SAFETY: a valid path; lchown does not follow symlinks.
        if unsafe { libc::lchown(c.as_ptr(), uid, gid) } != 0 {
            return Err(io_at(target)(io::Error::last_os_error()));
        }
    }
    if !is_symlink {
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        fs::set_permissions(target, fs::Permissions::from_mode(mode)).map_err(io_at(target))?;
    }
    if let Ok(extensions) = entry.pax_extensions()
        && let Some(extensions) = extensions
    {
        for ext in extensions.flatten() {
            let Ok(key) = ext.key() else { continue };
            if let Some(name) = key.strip_prefix("SCHILY.xattr.")
                && (name == "security.capability" || name.starts_with("user."))
                && !is_symlink
            {
                set_xattr(target, name, ext.value_bytes(), as_root)?;
            }
        }
    }
    let mtime = header.mtime().unwrap_or(0) as libc::time_t;
    let times = [
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    ];
    // SAFETY: a valid path and two timespecs; AT_SYMLINK_NOFOLLOW sets a symlink's own.
    unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    Ok(())
}

/// Marks a read past the decompressed-size limit.
#[derive(Debug)]
struct TooLarge(u64);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than {} bytes", self.0)
    }
}

impl std::error::Error for TooLarge {}

/// A reader that fails once more than `left` bytes came through.
struct Bounded<R> {
    inner: R,
    left: u64,
    limit: u64,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n as u64 > self.left {
            return Err(io::Error::other(TooLarge(self.limit)));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "unpack_tests.rs"]
mod tests;
