//! Upstream's kubelet back-off, one for crashing containers and failing image pulls.

use std::time::Duration;

/// Back-off after a container exits (or an image pull fails): 10 s doubling to 5 min
/// (upstream's); a container's is forgotten once a run lasted 10 minutes.
pub const BACKOFF_START: Duration = Duration::from_secs(10);
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
pub const BACKOFF_RESET: Duration = Duration::from_secs(600);

/// The wait after `failures` failures in a row (at least one).
pub fn backoff(failures: u32) -> Duration {
    (BACKOFF_START * 2u32.saturating_pow(failures.saturating_sub(1))).min(BACKOFF_MAX)
}
