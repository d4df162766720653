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
    hierarchies_under(Path::new(CGROUP_ROOT), path)
}

/// Every place `path` exists as a cgroup directory under the cgroup mount `root`: the one
/// unified tree (v2: the root has `cgroup.controllers`), else each controller's tree (v1,
/// and the hybrid layout, whose `unified` tree is one more directory here).
fn hierarchies_under(root: &Path, path: &str) -> Vec<PathBuf> {
    let relative = path.trim_start_matches('/');
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

/// The controllers in the v2 tree of a hybrid layout (`unified` beside the v1 trees): those
/// no v1 hierarchy took. Empty on pure v1 and pure v2. crun refuses to create containers
/// while there are any; runc does not mind.
pub fn hybrid_v2_controllers() -> Vec<String> {
    hybrid_v2_controllers_under(Path::new(CGROUP_ROOT))
}

fn hybrid_v2_controllers_under(root: &Path) -> Vec<String> {
    if root.join("cgroup.controllers").exists() {
        return Vec::new(); // pure cgroup v2
    }
    std::fs::read_to_string(root.join("unified/cgroup.controllers"))
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
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
    oom_killed_under(Path::new(CGROUP_ROOT), path)
}

fn oom_killed_under(root: &Path, path: &str) -> bool {
    let relative = path.trim_start_matches('/');
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dirs(root: &Path, paths: &[&str]) {
        for p in paths {
            std::fs::create_dir_all(root.join(p)).unwrap();
        }
    }

    #[test]
    fn a_unified_v2_tree_is_one_hierarchy_and_reports_oom_in_memory_events() {
        let root = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("cgroup.controllers"), "cpu memory pids\n").unwrap();
        dirs(root.path(), &["skiff/podA/c", "other"]);
        assert_eq!(
            hierarchies_under(root.path(), "/skiff/podA"),
            [root.path().join("skiff/podA")]
        );
        assert!(!oom_killed_under(root.path(), "/skiff/podA/c"));
        std::fs::write(
            root.path().join("skiff/podA/c/memory.events"),
            "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n",
        )
        .unwrap();
        assert!(oom_killed_under(root.path(), "/skiff/podA/c"));
        assert!(hybrid_v2_controllers_under(root.path()).is_empty());
        // On cgroupfs the control files go with their directory; here they are files.
        std::fs::remove_file(root.path().join("skiff/podA/c/memory.events")).unwrap();
        for dir in hierarchies_under(root.path(), "/skiff/podA") {
            remove_tree(&dir).unwrap();
        }
        assert!(!root.path().join("skiff/podA").exists());
        assert!(root.path().join("other").exists());
        // Gone already: nothing to do, no error.
        remove_tree(&root.path().join("skiff/podA")).unwrap();
    }

    #[test]
    fn v1_controllers_are_each_a_hierarchy_and_report_oom_in_oom_control() {
        let root = tempfile::tempdir().unwrap();
        dirs(
            root.path(),
            &[
                "memory/skiff/podB/c",
                "cpu/skiff/podB",
                "pids",
                "unified/skiff/podB",
            ],
        );
        let mut found = hierarchies_under(root.path(), "/skiff/podB");
        found.sort();
        assert_eq!(
            found,
            ["cpu", "memory", "unified"].map(|c| root.path().join(c).join("skiff/podB"))
        );
        std::fs::write(
            root.path().join("memory/skiff/podB/c/memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        assert!(oom_killed_under(root.path(), "skiff/podB/c"));

        // Hybrid: what v1 did not take is in the unified tree.
        assert!(hybrid_v2_controllers_under(root.path()).is_empty());
        std::fs::write(root.path().join("unified/cgroup.controllers"), "hugetlb\n").unwrap();
        assert_eq!(hybrid_v2_controllers_under(root.path()), ["hugetlb"]);
    }
}
