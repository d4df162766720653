//! Kernel settings of a network namespace (`/proc/sys/net/…`): files under
//! `/proc/sys/net` act in the namespace of the thread that opens them, so each write is
//! made from a thread in the namespace it means.

use crate::ip::{Netns, WiringError};

/// Writes `value` to `/proc/sys/<key>` (`net/ipv4/ip_forward`) in `netns`.
pub fn write(netns: &Netns, key: &str, value: &str) -> Result<(), WiringError> {
    let path = format!("/proc/sys/{key}");
    netns.within(|| {
        std::fs::write(&path, value).map_err(WiringError::step(format!("writing {path}")))
    })
}

/// Reads `/proc/sys/<key>` in `netns`, trimmed; `None` when the kernel has no such setting
/// (a module not loaded).
pub fn read(netns: &Netns, key: &str) -> Result<Option<String>, WiringError> {
    let path = format!("/proc/sys/{key}");
    netns.within(|| match std::fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(WiringError::Step {
            what: format!("reading {path}"),
            source: e,
        }),
    })
}
