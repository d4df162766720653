//! Periodic compaction, the way the Kubernetes API server schedules it.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::Store;
use crate::types::Revision;

/// Upstream's `--etcd-compaction-interval` default.
pub const DEFAULT_COMPACTION_INTERVAL: Duration = Duration::from_secs(300);

/// Every `interval`, compacts to the revision seen at the previous tick, so at least one
/// interval of history always stays available to watchers that fall behind, while disk use
/// stays bounded under any write rate.
pub fn spawn_compactor(store: Arc<dyn Store>, interval: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut previous: Option<Revision> = None;
        loop {
            ticker.tick().await;
            if let Some(revision) = previous {
                match store.compact(revision).await {
                    Ok(()) => tracing::debug!(revision, "datastore compacted"),
                    Err(err) => {
                        tracing::warn!(revision, error = %err, "datastore compaction failed")
                    }
                }
            }
            match store.current_revision().await {
                Ok(revision) => previous = Some(revision),
                Err(err) => tracing::warn!(error = %err, "cannot read the datastore revision"),
            }
        }
    })
}
