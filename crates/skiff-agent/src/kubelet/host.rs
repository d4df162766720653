//! What this machine offers as a node: CPUs, memory, disk, its address and system facts.

use std::path::Path;

use super::errors::RuntimeCheckError;

/// Logical CPUs.
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `MemTotal` in KiB, as Kubernetes' `Ki` quantity.
pub fn memory_kib() -> u64 {
    meminfo_kib("MemTotal").unwrap_or(0)
}

/// A `/proc/meminfo` field in KiB.
fn meminfo_kib(field: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
    })
}

/// What the pressure conditions are judged from; `None` where the machine would not say.
#[derive(Debug, Clone, Copy, Default)]
pub struct Readings {
    pub memory_available_kib: Option<u64>,
    /// `(blocks, blocks available, inodes, inodes available)` of the data directory's
    /// filesystem.
    pub disk: Option<(u64, u64, u64, u64)>,
    pub pid_max: Option<u64>,
    pub tasks: Option<u64>,
}

impl Readings {
    pub fn of_this_machine(data_dir: &Path) -> Readings {
        Readings {
            memory_available_kib: meminfo_kib("MemAvailable"),
            disk: rustix::fs::statvfs(data_dir)
                .ok()
                .map(|st| (st.f_blocks, st.f_bavail, st.f_files, st.f_favail)),
            pid_max: std::fs::read_to_string("/proc/sys/kernel/pid_max")
                .ok()
                .and_then(|s| s.trim().parse().ok()),
            tasks: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|l| l.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok()),
        }
    }

    /// The kubelet's default hard eviction thresholds: `memory.available<100Mi`,
    /// `nodefs.available<10%`, `nodefs.inodesFree<5%`; PIDs count as short when fewer than
    /// a tenth of `pid_max` are left. A reading missing is no pressure.
    pub fn pressure(&self) -> crate::node::Pressure {
        let disk = self.disk.is_some_and(|(blocks, bavail, files, favail)| {
            let blocks_low = blocks > 0 && bavail * 10 < blocks;
            let inodes_low = files > 0 && favail * 20 < files;
            blocks_low || inodes_low
        });
        let pid = match (self.pid_max, self.tasks) {
            (Some(max), Some(tasks)) => max.saturating_sub(tasks) * 10 < max,
            _ => false,
        };
        crate::node::Pressure {
            memory: self
                .memory_available_kib
                .is_some_and(|kib| kib < 100 * 1024),
            disk,
            pid,
        }
    }
}

/// This machine's pressure conditions now, for the node whose data lives in `data_dir`.
pub fn pressure(data_dir: &Path) -> crate::node::Pressure {
    Readings::of_this_machine(data_dir).pressure()
}

/// Bytes of the filesystem holding `path` (the image store's statvfs reading).
pub fn disk_bytes(path: &Path) -> u64 {
    skiff_image::store::disk_usage(path).map_or(0, |(_, capacity)| capacity)
}

pub fn kernel_version() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `PRETTY_NAME` of /etc/os-release.
pub fn os_image() -> String {
    std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                .map(|v| v.trim_matches('"').to_string())
        })
        .unwrap_or_else(|| "Linux".into())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether `binary` can run this machine's containers: it answers `--version`, and for
/// crun, the cgroup layout is one it takes. The error names the cause and the way out.
pub fn check_runtime(binary: &Path) -> Result<(), RuntimeCheckError> {
    match std::process::Command::new(binary).arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            return Err(RuntimeCheckError::Fails {
                binary: binary.to_path_buf(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        Err(source) => {
            return Err(RuntimeCheckError::Missing {
                binary: binary.to_path_buf(),
                source,
            });
        }
    }
    let controllers = skiff_runtime::cgroups::hybrid_v2_controllers();
    if skiff_runtime::runc::runtime_name(binary) == "crun" && !controllers.is_empty() {
        let mounts: Vec<String> = controllers
            .iter()
            .map(|c| {
                format!(
                    "mkdir -p /sys/fs/cgroup/{c} && mount -t cgroup -o {c} {c} /sys/fs/cgroup/{c}"
                )
            })
            .collect();
        return Err(RuntimeCheckError::HybridCgroups {
            controllers: controllers.join(", "),
            mounts: mounts.join("; "),
        });
    }
    Ok(())
}

/// The runtime binary's version as `runc://1.1.5`.
pub fn runtime_version(binary: &Path) -> String {
    let version = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".into());
    format!("{}://{version}", skiff_runtime::runc::runtime_name(binary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_reads_as_a_node() {
        assert!(memory_kib() > 0 && cpus() >= 1);
        // Whether this machine is short of anything is its own business; that every
        // reading is there is ours.
        let r = Readings::of_this_machine(Path::new("/"));
        assert!(r.memory_available_kib.is_some(), "{r:?}");
        assert!(r.disk.is_some_and(|(blocks, ..)| blocks > 0), "{r:?}");
        assert!(r.pid_max.is_some() && r.tasks.is_some(), "{r:?}");
    }

    #[test]
    fn pressure_follows_the_kubelets_default_thresholds() {
        use crate::node::Pressure;
        let plenty = Readings {
            memory_available_kib: Some(4 << 20),
            disk: Some((1000, 500, 1000, 500)),
            pid_max: Some(4_194_304),
            tasks: Some(300),
        };
        assert_eq!(plenty.pressure(), Pressure::default());
        assert_eq!(Readings::default().pressure(), Pressure::default());

        let memory = Readings {
            memory_available_kib: Some(99 * 1024),
            ..plenty
        };
        assert!(memory.pressure().memory);
        let at_100mi = Readings {
            memory_available_kib: Some(100 * 1024),
            ..plenty
        };
        assert!(!at_100mi.pressure().memory);

        // Under 10% of blocks, or under 5% of inodes, is disk pressure; exactly at is not.
        let blocks = |avail| Readings {
            disk: Some((1000, avail, 1000, 500)),
            ..plenty
        };
        assert!(blocks(99).pressure().disk);
        assert!(!blocks(100).pressure().disk);
        let inodes = |avail| Readings {
            disk: Some((1000, 500, 1000, avail)),
            ..plenty
        };
        assert!(inodes(49).pressure().disk);
        assert!(!inodes(50).pressure().disk);

        let pids = |tasks| Readings {
            pid_max: Some(1000),
            tasks: Some(tasks),
            ..plenty
        };
        assert!(pids(901).pressure().pid);
        assert!(!pids(900).pressure().pid);
    }
}
