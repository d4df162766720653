//! Events expire: upstream keeps them for `--event-ttl` (one hour) after they were last
//! seen, so a busy cluster's event history stays bounded. A sweep removes the expired ones.

use std::time::Duration;

use serde_json::Value;
use skiff_api::ApiError;
use skiff_api::object::{meta_str, parse_time};

use crate::storage::Objects;

/// Upstream's default `--event-ttl`.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// Whether an event was last seen before `cutoff`.
fn expired(event: &Value, cutoff: time::OffsetDateTime) -> bool {
    crate::registry::core::event::event_times(event)
        .0
        .and_then(parse_time)
        .is_some_and(|last| last < cutoff)
}

/// Deletes every event last seen more than `ttl` ago; answers how many went.
pub async fn sweep(objects: &Objects, ttl: Duration) -> Result<usize, ApiError> {
    let rt = &crate::registry::core::event::RESOURCE;
    let cutoff = time::OffsetDateTime::now_utc() - ttl;
    let page = objects
        .list(rt, None, 0, None, None, |e| expired(e, cutoff))
        .await?;
    let mut removed = 0;
    for event in &page.items {
        let rv = meta_str(event, "resourceVersion").and_then(|v| v.parse().ok());
        let (Some(name), Some(rv)) = (meta_str(event, "name"), rv) else {
            continue;
        };
        // Changed (seen again) or deleted meanwhile: the next sweep decides.
        if objects
            .delete(rt, meta_str(event, "namespace"), name, rv)
            .await
            .is_ok()
        {
            removed += 1;
        }
    }
    Ok(removed)
}

/// Sweeps every `ttl / 2` (at most every minute) for as long as the task runs.
pub async fn run(objects: Objects, ttl: Duration) {
    let every = (ttl / 2)
        .min(Duration::from_secs(60))
        .max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        match sweep(&objects, ttl).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(expired = n, "events expired"),
            Err(e) => tracing::warn!(error = %e, "event expiry sweep failed"),
        }
    }
}
