//! Leader election on a `coordination.k8s.io/v1` Lease in `kube-system`, as client-go's
//! `leaderelection` does for the scheduler and the controller manager: a component works
//! only while it holds its lease, renews it every few seconds, and takes it over from a
//! holder that stopped renewing for the lease's duration. The lease also tells others the
//! component is alive (`kubectl get cs`, `kubectl get leases -n kube-system`).
//!
//! Invariant: at most one holder renews a lease at a time — every write names the
//! resourceVersion it read, so of two candidates racing for an expired lease one wins and
//! the other sees a conflict and waits.
//!
//! An identity that survives restarts (a server's own, kept in its data directory) takes
//! its lease back at once after a restart instead of waiting for it to expire.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ObjectMeta, PostParams};

/// Upstream's defaults: a lease lasts 15 s and its holder renews it every 2 s.
pub const LEASE_DURATION: Duration = Duration::from_secs(15);
pub const RETRY_PERIOD: Duration = Duration::from_secs(2);

/// One component's lease.
#[derive(Clone)]
pub struct LeaderLease {
    leases: Api<Lease>,
    name: String,
    identity: String,
}

impl LeaderLease {
    /// The lease `kube-system/<name>` for the candidate `identity`.
    pub fn new(client: kube::Client, name: &str, identity: &str) -> LeaderLease {
        LeaderLease {
            leases: Api::namespaced(client, "kube-system"),
            name: name.to_string(),
            identity: identity.to_string(),
        }
    }

    /// Runs a component while this candidate holds the lease: it starts once the lease is
    /// held and stops if another holder takes the lease over (saying so).
    pub async fn run_while_leader(self, what: &str, work: impl std::future::Future<Output = ()>) {
        self.acquire().await;
        tokio::select! {
            _ = work => {}
            _ = self.renew() => tracing::error!(
                lease = %self.name,
                "{what} lost their lease to another candidate and stopped; restart to stand as a candidate again"
            ),
        }
    }

    /// Waits until this candidate holds the lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_hold().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::debug!(lease = %self.name, error = %e, "leader election"),
            }
            tokio::time::sleep(RETRY_PERIOD).await;
        }
    }

    /// Renews the lease for as long as the component runs; returns if another holder took
    /// it (the component must stop).
    pub async fn renew(&self) {
        let mut failing_since = None;
        loop {
            tokio::time::sleep(RETRY_PERIOD).await;
            match self.try_hold().await {
                Ok(true) => failing_since = None,
                Ok(false) => {
                    tracing::warn!(lease = %self.name, "another holder took the lease");
                    return;
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(std::time::Instant::now);
                    tracing::warn!(lease = %self.name, error = %e, "renewing the lease");
                    // Past the lease's duration another candidate may hold it.
                    if since.elapsed() >= LEASE_DURATION {
                        return;
                    }
                }
            }
        }
    }

    /// One attempt: creates, renews or takes over the lease; answers whether this
    /// candidate holds it now.
    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let seconds = LEASE_DURATION.as_secs() as i32;
        let Some(mut lease) = self.leases.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.leases.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(e) if crate::is_status(&e, 409) => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let ours = spec.holder_identity.as_deref() == Some(self.identity.as_str());
        if !ours {
            let duration = i64::from(spec.lease_duration_seconds.unwrap_or(seconds));
            let expired = spec
                .renew_time
                .as_ref()
                .is_none_or(|t| Timestamp::now().as_second() - t.0.as_second() > duration);
            if spec
                .holder_identity
                .as_deref()
                .is_some_and(|h| !h.is_empty())
                && !expired
            {
                return Ok(false);
            }
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(now.clone());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.renew_time = Some(now);
        spec.lease_duration_seconds = Some(seconds);
        match self
            .leases
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if crate::is_status(&e, 409) => Ok(false),
            Err(e) => Err(e),
        }
    }
}
