//! Pod addresses from the node's pod CIDR, recorded as files (`<dir>/<ip>` holding the
//! pod's key) created exclusively, so two allocations never share an address and a
//! restarted agent knows which are taken. Allocation goes round the range from the last
//! address handed out (as CNI's host-local does): a freed address is reused last, once
//! other nodes' and pods' ARP caches have long forgotten its old owner.
//!
//! The records are read once; after that the holders are known from memory, so looking a
//! pod's address up on every sync does not read every record (it was a tenth of the
//! agent's CPU with 100 pods). One `Ipam` owns its directory.

use std::collections::HashMap;
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use crate::cidr::Cidr;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("no free address left in the pod CIDR {0}")]
    Exhausted(Cidr),
    #[error("the address records in {dir}: {source}")]
    Io {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The record of the last address handed out.
const LAST: &str = "last";

pub struct Ipam {
    cidr: Cidr,
    dir: PathBuf,
    /// Each holder's address, as the records say; read on first use.
    held: Mutex<Option<HashMap<String, Ipv4Addr>>>,
}

impl Ipam {
    pub fn new(cidr: Cidr, dir: impl Into<PathBuf>) -> Ipam {
        Ipam {
            cidr,
            dir: dir.into(),
            held: Mutex::new(None),
        }
    }

    /// Runs `f` over the holders (read from the records the first time), under the lock
    /// that also keeps allocations apart.
    fn with_held<R>(&self, f: impl FnOnce(&mut HashMap<String, Ipv4Addr>) -> R) -> R {
        let mut guard = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        f(guard.get_or_insert_with(|| self.read_records()))
    }

    fn read_records(&self) -> HashMap<String, Ipv4Addr> {
        std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let ip = e.file_name().to_str()?.parse().ok()?;
                Some((std::fs::read_to_string(e.path()).ok()?, ip))
            })
            .collect()
    }

    fn io(&self) -> impl FnOnce(std::io::Error) -> IpamError + '_ {
        |source| IpamError::Io {
            dir: self.dir.clone(),
            source,
        }
    }

    /// The address `key` holds, if any.
    pub fn address_of(&self, key: &str) -> Option<Ipv4Addr> {
        self.with_held(|held| held.get(key).copied())
    }

    /// The address for `key`: the one it already holds, else the next free one after the
    /// last handed out (the gateway excluded).
    pub fn allocate(&self, key: &str) -> Result<Ipv4Addr, IpamError> {
        self.with_held(|held| {
            if let Some(ip) = held.get(key) {
                return Ok(*ip);
            }
            let ip = self.record_next_free(key)?;
            held.insert(key.to_string(), ip);
            Ok(ip)
        })
    }

    fn record_next_free(&self, key: &str) -> Result<Ipv4Addr, IpamError> {
        std::fs::create_dir_all(&self.dir).map_err(self.io())?;
        let hosts: Vec<Ipv4Addr> = self.cidr.hosts().skip(1).collect();
        let last = std::fs::read_to_string(self.dir.join(LAST))
            .ok()
            .and_then(|s| s.trim().parse::<Ipv4Addr>().ok());
        let start = last
            .and_then(|l| hosts.iter().position(|h| *h == l))
            .map_or(0, |i| i + 1);
        for i in 0..hosts.len() {
            let ip = hosts[(start + i) % hosts.len()];
            let path = self.dir.join(ip.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut f) => {
                    f.write_all(key.as_bytes()).map_err(self.io())?;
                    let _ = std::fs::write(self.dir.join(LAST), ip.to_string());
                    return Ok(ip);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(self.io()(e)),
            }
        }
        Err(IpamError::Exhausted(self.cidr))
    }

    /// Frees what `key` holds.
    pub fn release(&self, key: &str) {
        self.with_held(|held| {
            if let Some(ip) = held.remove(key) {
                let _ = std::fs::remove_file(self.dir.join(ip.to_string()));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_unique_sticky_and_reusable() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(Cidr::parse("10.9.0.0/29").unwrap(), dir.path());
        let a = ipam.allocate("pod-a").unwrap();
        assert_eq!(
            a,
            Ipv4Addr::new(10, 9, 0, 2),
            "the gateway .1 is the bridge's"
        );
        assert_eq!(
            ipam.allocate("pod-a").unwrap(),
            a,
            "the same pod keeps its address"
        );
        let b = ipam.allocate("pod-b").unwrap();
        assert_ne!(a, b);
        for key in ["c", "d", "e"] {
            ipam.allocate(key).unwrap();
        }
        assert!(matches!(ipam.allocate("g"), Err(IpamError::Exhausted(_))));
        ipam.release("pod-a");
        assert_eq!(ipam.allocate("g").unwrap(), a, "the only free one");
        ipam.release("c");
        ipam.release("g");
        // Round the range from the last handed out (a): c's before a's.
        let next = ipam.allocate("h").unwrap();
        assert_eq!(next, Ipv4Addr::new(10, 9, 0, 4));
        // Another instance (a restarted agent) sees the same records.
        let again = Ipam::new(Cidr::parse("10.9.0.0/29").unwrap(), dir.path());
        assert_eq!(again.address_of("pod-b"), Some(b));
        assert_eq!(again.address_of("h"), Some(next));
        assert_eq!(again.address_of("c"), None, "released on disk too");
    }
}
