//! Expectations, as upstream's controllers keep them: after a controller asks for pods to be
//! created or deleted, it must not act on the same owner again until its informer has seen
//! those changes, or it would create (or delete) twice. An expectation that is never met
//! (a watch event lost) expires, so a controller is never stuck.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const EXPIRY: Duration = Duration::from_secs(300);

struct Pending {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

#[derive(Default)]
pub struct Expectations {
    owners: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        skiff_client::lock(&self.owners)
    }

    /// Whether the owner's earlier requests have all been observed (or have expired).
    pub fn satisfied(&self, owner: &str) -> bool {
        match self.lock().get(owner) {
            None => true,
            Some(p) => (p.adds <= 0 && p.deletes.is_empty()) || p.since.elapsed() > EXPIRY,
        }
    }

    pub fn expect_creations(&self, owner: &str, n: usize) {
        self.lock().insert(
            owner.to_string(),
            Pending {
                adds: n as i64,
                deletes: HashSet::new(),
                since: Instant::now(),
            },
        );
    }

    pub fn expect_deletions(&self, owner: &str, pods: impl IntoIterator<Item = String>) {
        self.lock().insert(
            owner.to_string(),
            Pending {
                adds: 0,
                deletes: pods.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// A pod of this owner appeared (or a creation failed and will never appear).
    pub fn creation_observed(&self, owner: &str) {
        if let Some(p) = self.lock().get_mut(owner) {
            p.adds -= 1;
        }
    }

    /// This pod of the owner is going (or its deletion failed and will not be observed).
    pub fn deletion_observed(&self, owner: &str, pod: &str) {
        if let Some(p) = self.lock().get_mut(owner) {
            p.deletes.remove(pod);
        }
    }

    pub fn forget(&self, owner: &str) {
        self.lock().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_change_is_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));
        e.expect_deletions("ns/rs", ["ns/p1".to_string()]);
        e.deletion_observed("ns/rs", "ns/p1");
        e.deletion_observed("ns/rs", "ns/p1");
        assert!(e.satisfied("ns/rs"));
    }
}
