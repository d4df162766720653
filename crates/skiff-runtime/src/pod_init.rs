//! The holder of a pod's shared PID namespace (`shareProcessNamespace`): a process that is
//! PID 1 of a PID namespace of its own and does nothing but reap what is orphaned there —
//! the pause container's role. The pod's containers join its namespace, so they see each
//! other's processes and one container's restart does not take the others with it (a PID
//! namespace dies with its PID 1). It runs as `skiff internal pod-init <pid file>`,
//! detached like the container monitors, so an agent restart leaves it running.

use std::path::Path;
use std::time::Duration;

/// The subcommand, and the word that identifies a holder among processes.
pub const SUBCOMMAND: &str = "pod-init";

/// Runs the holder (call before any thread exists): a child made in a new PID namespace
/// becomes its PID 1 and reaps forever; this process records the child's PID in
/// `pid_file` and returns. Answers the exit code.
pub fn run(pid_file: &Path) -> i32 {
    // SAFETY: single-threaded here (see above); unshare affects only later children.
    if unsafe { libc::unshare(libc::CLONE_NEWPID) } != 0 {
        eprintln!("pod-init: unshare: {}", std::io::Error::last_os_error());
        return 1;
    }
    // SAFETY: as above.
    match unsafe { libc::fork() } {
        -1 => 1,
        0 => {
            // SAFETY: plain syscall in the single-threaded child.
            unsafe { libc::setsid() };
            reap_forever()
        }
        child => {
            let tmp = pid_file.with_extension("tmp");
            let written = std::fs::write(&tmp, child.to_string())
                .and_then(|()| std::fs::rename(&tmp, pid_file));
            match written {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("pod-init: {}: {e}", pid_file.display());
                    // SAFETY: the child is ours; without its record nobody could stop it.
                    unsafe { libc::kill(child, libc::SIGKILL) };
                    1
                }
            }
        }
    }
}

fn reap_forever() -> ! {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on any child; blocks until one ends.
        if unsafe { libc::waitpid(-1, &mut status, 0) } < 0 {
            // None yet: orphans arrive when containers' processes leave children behind.
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// Starts a holder recording itself in `pid_file`; answers its PID.
pub fn spawn(skiff_binary: &Path, pid_file: &Path) -> Result<i32, crate::monitor::HelperError> {
    use crate::monitor::HelperError;
    let status = crate::monitor::run_internal(skiff_binary, SUBCOMMAND, &[pid_file])?;
    if !status.success() {
        return Err(HelperError::HolderFailed(status));
    }
    alive(pid_file).ok_or(HelperError::HolderEnded)
}

/// The holder's PID, if `pid_file` names a running holder.
pub fn alive(pid_file: &Path) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let holder = crate::procfs::cmdline(pid.try_into().ok()?)
        .iter()
        .any(|arg| arg == SUBCOMMAND);
    holder.then_some(pid)
}

/// The PID namespace the holder keeps, to join by path.
pub fn namespace(pid: i32) -> std::path::PathBuf {
    format!("/proc/{pid}/ns/pid").into()
}

/// Stops the holder, if one runs (every process left in its namespace goes with it), and
/// forgets it.
pub fn stop(pid_file: &Path) {
    // A process we started, identified by its command line.
    if let Some(pid) = alive(pid_file).and_then(rustix::process::Pid::from_raw) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let _ = std::fs::remove_file(pid_file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_running_holder_counts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("holder");
        assert_eq!(alive(&file), None, "no record");
        // This test process is not a holder.
        std::fs::write(&file, std::process::id().to_string()).unwrap();
        assert_eq!(alive(&file), None);
        std::fs::write(&file, "not a pid").unwrap();
        assert_eq!(alive(&file), None);
        stop(&file);
        assert!(!file.exists());
    }
}
