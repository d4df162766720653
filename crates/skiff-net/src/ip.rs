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
    /// `ip ARGS` in this namespace: its standard output, or the error it printed.
    pub fn ip(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = match self {
            Netns::Current => Command::new("ip"),
            Netns::Path(path) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", path.display())).arg("ip");
                c
            }
        };
        let out = cmd
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
