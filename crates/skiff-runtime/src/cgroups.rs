//! cgroup directories the runtime leaves behind. runc removes a container's own cgroup but
//! never its parents (`skiff/<pod>`), so the pod's directory goes when the pod does, in
//! every hierarchy (cgroup v1's per-controller trees, or the unified v2 tree).
//!
//! Paths are absolute (`/skiff/<pod>/<container>`, from each hierarchy's root): runc reads a
//! relative `cgroupsPath` against its caller's own cgroup, which differs between
//! controllers and between the agent and its monitors.

use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Every place `path` exists as a cgroup directory.
fn hierarchies(path: &str) -> Vec<PathBuf> {
    let relative = path.trim_start_matches('/');
    let root = Path::new(CGROUP_ROOT);
    if root.join("cgroup.controllers").exists() {
        return vec![root.join(relative)]; // pure cgroup v2
    }
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(relative))
        .filter(|p| p.is_dir())
        .collect()
}

/// Removes the (empty) cgroup `path` — children first — in every hierarchy. Fails if a
/// process is still in one.
pub fn remove(path: &str) -> std::io::Result<()> {
    for dir in hierarchies(path) {
        remove_tree(&dir)?;
    }
    Ok(())
}

fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        // Removed meanwhile (the runtime's own delete, or a concurrent teardown).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        if entry.file_type()?.is_dir() {
            remove_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether the container cgroup `path` recorded an OOM kill (v1 `memory.oom_control`,
/// v2 `memory.events`).
pub fn oom_killed(path: &str) -> bool {
    let relative = path.trim_start_matches('/');
    let root = Path::new(CGROUP_ROOT);
    let count = |path: PathBuf, key: &str| {
        std::fs::read_to_string(path).ok().and_then(|text| {
            text.lines().find_map(|l| {
                l.strip_prefix(key)
                    .map(|n| n.trim().parse::<u64>().unwrap_or(0))
            })
        })
    };
    count(
        root.join("memory")
            .join(relative)
            .join("memory.oom_control"),
        "oom_kill ",
    )
    .or_else(|| count(root.join(relative).join("memory.events"), "oom_kill "))
    .is_some_and(|n| n > 0)
}

/// Whether the cgroup `path` exists in any hierarchy.
pub fn exists(path: &str) -> bool {
    !hierarchies(path).is_empty()
}
