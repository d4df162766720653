//! What every request handler shares: the datastore, the watch caches, the allocators and
//! the issuers the API server was started with.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::allocators::ServiceAllocator;
use crate::registry::Registry;
use crate::storage::Objects;
use crate::watch_cache::Caches;

/// What every handler shares.
pub struct ApiState {
    /// The kinds served.
    pub registry: Arc<Registry>,
    pub objects: Objects,
    pub caches: Caches,
    pub services: ServiceAllocator,
    pub tolerations: DefaultTolerations,
    /// The credentials accepted, and the ServiceAccount token issuer.
    pub auth: Arc<crate::authn::Auth>,
    pub nodes: crate::node_stream::NodeDialer,
    pub namespace_deletions: RecentNamespaceDeletions,
    /// Quota usage admitted and not yet stored (`quota.rs`).
    pub quota_in_flight: crate::quota::InFlight,
}

impl ApiState {
    /// Every object of `rt` (in one namespace, or all), decoded: from its watch cache at
    /// the freshness asked for, else from the datastore. What admission and in-server
    /// controllers read, as upstream's read their listers.
    pub async fn objects_of(
        &self,
        rt: &skiff_api::ResourceType,
        ns: Option<&str>,
        freshness: crate::watch_cache::Freshness,
    ) -> Result<Vec<serde_json::Value>, skiff_api::ApiError> {
        let everything = skiff_api::selectors::Selector::default();
        match self
            .caches
            .list(rt, ns, freshness, &everything, &everything)
            .await?
        {
            Some(page) => Ok(page
                .items
                .iter()
                .filter_map(|c| serde_json::from_slice(&c.bytes).ok())
                .collect()),
            None => Ok(self
                .objects
                .list(rt, ns, 0, None, None, |_| true)
                .await?
                .items),
        }
    }
}

/// Namespaces whose deletion began through this server lately. Admission reads these from
/// the datastore, not the watch cache, which may be a moment behind: content created right
/// after a namespace's delete answered must be refused (upstream's lifecycle admission
/// keeps the same list, `forceLiveLookupCache`, for the same time).
#[derive(Default)]
pub struct RecentNamespaceDeletions {
    began: Mutex<HashMap<String, Instant>>,
}

impl RecentNamespaceDeletions {
    /// Upstream's `forceLiveLookupTTL`.
    const FOR: Duration = Duration::from_secs(30);

    pub fn note(&self, namespace: &str) {
        let now = Instant::now();
        let mut began = self.began.lock().expect("namespace deletions lock");
        began.retain(|_, at| now.duration_since(*at) < Self::FOR);
        began.insert(namespace.to_string(), now);
    }

    pub fn recent(&self, namespace: &str) -> bool {
        let began = self.began.lock().expect("namespace deletions lock");
        began
            .get(namespace)
            .is_some_and(|at| at.elapsed() < Self::FOR)
    }
}

/// What the DefaultTolerationSeconds admission gives new pods.
pub struct DefaultTolerations {
    pub not_ready_seconds: i64,
    pub unreachable_seconds: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_deletion_is_recent_for_its_namespace_only() {
        let deletions = RecentNamespaceDeletions::default();
        assert!(!deletions.recent("doomed"));
        deletions.note("doomed");
        assert!(deletions.recent("doomed"));
        assert!(!deletions.recent("kept"));
    }
}
