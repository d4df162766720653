//! What this machine offers as a node: CPUs, memory, disk, its address and system facts.

use std::path::Path;

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

/// The kubelet's default hard eviction thresholds: `memory.available<100Mi`,
/// `nodefs.available<10%`, `nodefs.inodesFree<5%`; PIDs count as short when fewer than a
/// tenth of `pid_max` are left.
pub fn pressure(data_dir: &Path) -> crate::node::Pressure {
    let memory = meminfo_kib("MemAvailable").is_some_and(|kib| kib < 100 * 1024);
    let disk = statvfs(data_dir).is_some_and(|st| {
        let blocks_low = st.f_blocks > 0 && st.f_bavail * 10 < st.f_blocks;
        let inodes_low = st.f_files > 0 && st.f_favail * 20 < st.f_files;
        blocks_low || inodes_low
    });
    let pid_max: u64 = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(u64::MAX);
    let tasks: u64 = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().nth(3)?.split_once('/')?.1.parse().ok())
        .unwrap_or(0);
    crate::node::Pressure {
        memory,
        disk,
        pid: pid_max.saturating_sub(tasks) * 10 < pid_max,
    }
}

fn statvfs(path: &Path) -> Option<libc::statvfs> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: a valid path and a zeroed statvfs for the call to fill.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statvfs(c.as_ptr(), &mut st) } == 0).then_some(st)
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

/// The runtime binary's version as `runc://1.1.5`.
pub fn runtime_version(binary: &Path) -> String {
    let name = binary
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "runc".into());
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
    format!("{name}://{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_reads_as_a_node() {
        assert!(memory_kib() > 0 && cpus() >= 1);
        // The test machine is not short of memory, disk or PIDs.
        assert_eq!(pressure(Path::new("/")), crate::node::Pressure::default());
    }
}
