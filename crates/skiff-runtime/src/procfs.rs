//! What skiff reads from `/proc`: processes and their command lines, resource use, and the
//! mounts of this mount namespace. One reader, so the parsing (NUL-separated arguments,
//! `stat` fields after the command name, octal escapes in `mountinfo`) is written once.

use std::path::{Path, PathBuf};

/// Every process id on this machine (as this PID namespace sees it).
pub fn pids() -> impl Iterator<Item = u32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// A process's command line, split at its NULs; empty when the process is gone (or a
/// kernel thread).
pub fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| split_cmdline(&raw))
        .unwrap_or_default()
}

fn split_cmdline(raw: &[u8]) -> Vec<String> {
    raw.split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

/// The CPU time (user and system) a process has used, in seconds.
pub fn cpu_seconds(pid: u32) -> std::io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    stat_cpu_seconds(&stat).ok_or_else(|| missing(pid, "stat", "utime and stime"))
}

/// utime + stime of a `stat` line, in seconds. The command name may hold spaces and
/// parentheses, so fields are counted after the last `)`; utime and stime are fields 14
/// and 15, in clock ticks (100 a second on Linux).
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// A process's resident memory (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> std::io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    kib_field(&status, "VmRSS:").ok_or_else(|| missing(pid, "status", "VmRSS"))
}

/// A process's resident memory split as (anonymous, file-backed) KiB: its heap and stacks
/// versus the program's own mapped pages (`smaps_rollup`).
pub fn rss_split_kib(pid: u32) -> std::io::Result<(u64, u64)> {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))?;
    match (kib_field(&rollup, "Rss:"), kib_field(&rollup, "Anonymous:")) {
        (Some(rss), Some(anon)) => Ok((anon, rss.saturating_sub(anon))),
        _ => Err(missing(pid, "smaps_rollup", "Rss or Anonymous")),
    }
}

/// The number after `name` on its line (`VmRSS:   1234 kB`).
fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn missing(pid: u32, file: &str, what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("/proc/{pid}/{file} has no {what}"),
    )
}

/// The mount points of this mount namespace at or under `dir`.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mount_points(&mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// The mount point (fifth field) of each `mountinfo` line, its octal escapes (`\040` for a
/// space) undone.
fn mount_points(mountinfo: &str) -> impl Iterator<Item = PathBuf> + '_ {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
}

fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes.get(i + 1..i + 4).and_then(|d| {
            let digits = std::str::from_utf8(d).ok()?;
            u8::from_str_radix(digits, 8).ok()
        });
        match (bytes[i], escaped) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_lines_split_at_nuls() {
        assert_eq!(
            split_cmdline(b"/usr/bin/skiff\0agent\0--data-dir\0/var/lib/skiff\0"),
            ["/usr/bin/skiff", "agent", "--data-dir", "/var/lib/skiff"]
        );
        assert!(split_cmdline(b"").is_empty());
    }

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "42 (tokio rt) (x)) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 8 0";
        assert_eq!(stat_cpu_seconds(stat), Some(3.0));
        assert_eq!(stat_cpu_seconds("42 (short"), None);
        assert!(cpu_seconds(std::process::id()).is_ok());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
        let (anon, file) = rss_split_kib(std::process::id()).unwrap();
        assert!(anon > 0 && file > 0);
        assert_eq!(
            kib_field("Name: x\nVmRSS:\t  2048 kB\n", "VmRSS:"),
            Some(2048)
        );
    }

    #[test]
    fn mount_points_undo_octal_escapes() {
        let mountinfo = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                         37 35 98:0 / /var/lib/skiff/pods rw - tmpfs tmpfs rw\n\
                         garbage\n";
        let points: Vec<_> = mount_points(mountinfo).collect();
        assert_eq!(
            points,
            [
                PathBuf::from("/mnt/with space"),
                PathBuf::from("/var/lib/skiff/pods")
            ]
        );
        assert_eq!(unescape_octal("a\\134b\\0"), "a\\b\\0");
    }
}
