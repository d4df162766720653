//! Running iproute2's `ip` in a given network namespace (through `nsenter --net`, which,
//! unlike `ip netns exec`, leaves /sys alone).

use std::path::PathBuf;
use std::process::Command;

/// A network namespace: a pinned one by its file, or this process's own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Netns {
    Current,
    Path(PathBuf),
}

impl Netns {
    fn command(&self) -> Command {
        match self {
            Netns::Current => Command::new("ip"),
            Netns::Path(path) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", path.display())).arg("ip");
                c
            }
        }
    }

    /// Several `ip` commands (one per line) in one run: one process instead of many on the
    /// pod startup path.
    pub fn ip_batch(&self, commands: &[String]) -> Result<(), String> {
        use std::io::Write;
        let mut child = self
            .command()
            .args(["-batch", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run ip: {e} (apt-get install iproute2)"))?;
        let script = commands.join("\n") + "\n";
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(script.as_bytes())
                .map_err(|e| format!("ip -batch: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("ip -batch: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ip -batch ({}): {}",
                commands.join("; "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// `ip ARGS` in this namespace: its standard output, or the error it printed.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let out = self
            .command()
            .args(args)
            .output()
            .map_err(|e| format!("cannot run ip: {e} (apt-get install iproute2)"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "ip {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }
}
