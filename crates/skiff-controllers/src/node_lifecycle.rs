//! Node lifecycle: nodes heartbeat by renewing their Lease in `kube-node-lease` (and by
//! posting status). A node silent for longer than the grace period
//! (`--node-monitor-grace-period`, 50 s by default) has its conditions set to Unknown
//! ("Kubelet stopped posting node status.") and its pods marked not ready. Nodes that are
//! not Ready carry the `not-ready` or `unreachable` taints, NoSchedule and NoExecute; the
//! NoExecute ones evict pods once their tolerations run out (every pod tolerates both for
//! 300 s by default, through the API server's DefaultTolerationSeconds admission), so their
//! controllers recreate them elsewhere.
//!
//! Silence is measured on this controller's own clock — how long since the heartbeat last
//! changed — so clock skew between machines does not matter.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_client::objects::{
    NOT_READY_TAINT, UNREACHABLE_TAINT, delete_only, is_deleting, node_ready_condition, now,
    pod_condition, pod_node, pod_phase, tolerates,
};
use skiff_client::{EventRecorder, InformerFactory, Store};

const LEASE_NAMESPACE: &str = "kube-node-lease";

use crate::Error;

/// How often nodes are looked at (upstream's `--node-monitor-period`).
const MONITOR_PERIOD: Duration = Duration::from_secs(1);
/// Upstream's default since 1.32 (it was 40 s): five of kubelet's 10 s lease renewals,
/// and longer than an HTTP/2 connection takes to be found dead and replaced (45 s), so a
/// node whose connection broke is not marked unreachable before it could reconnect.
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(50);

/// How many lease renewals a grace period should span: a node may miss this many less
/// one before it is marked unreachable (upstream's "N times the status update frequency").
pub const RENEWALS_PER_GRACE_PERIOD: u32 = 5;

/// A grace period no node can keep: shorter than two of its lease renewals.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "a node-monitor grace period of {grace:?} is shorter than two lease renewals (nodes renew \
     every {renew_every:?}): one late renewal would mark a healthy node unreachable; use at \
     least {:?} ({:?} is the default)",
    *renew_every * RENEWALS_PER_GRACE_PERIOD,
    DEFAULT_GRACE_PERIOD
)]
pub struct GracePeriodTooShort {
    pub grace: Duration,
    pub renew_every: Duration,
}

/// Checks a grace period against how often nodes renew their leases. Shorter than two
/// renewals is refused: one late renewal would mark a healthy node unreachable and its
/// pods not ready. Shorter than [`RENEWALS_PER_GRACE_PERIOD`] renewals answers a warning.
pub fn check_grace_period(
    grace: Duration,
    renew_every: Duration,
) -> Result<Option<String>, GracePeriodTooShort> {
    if grace < renew_every * 2 {
        return Err(GracePeriodTooShort { grace, renew_every });
    }
    Ok((grace < renew_every * RENEWALS_PER_GRACE_PERIOD).then(|| {
        format!(
            "a node-monitor grace period of {grace:?} spans fewer than {RENEWALS_PER_GRACE_PERIOD} \
             lease renewals (nodes renew every {renew_every:?}): a node under load may be \
             marked unreachable for a moment"
        )
    }))
}

const NODE_CONDITIONS: &[&str] = &["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// When this controller last saw each node's heartbeat change.
struct Health {
    heartbeat: Option<i64>,
    changed: Instant,
}

pub struct NodeLifecycle {
    client: Client,
    grace: Duration,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    health: Mutex<HashMap<String, Health>>,
    events: EventRecorder,
}

impl NodeLifecycle {
    pub fn new(client: Client, grace: Duration, informers: &mut InformerFactory) -> Arc<Self> {
        Arc::new(NodeLifecycle {
            events: EventRecorder::new(client.clone(), "node-controller", None),
            grace,
            nodes: informers.all::<Node>().store(),
            leases: informers.namespaced::<Lease>(LEASE_NAMESPACE).store(),
            pods: informers.all::<Pod>().store(),
            health: Mutex::new(HashMap::new()),
            client,
        })
    }

    pub async fn run(self: Arc<Self>) {
        let mut tick = tokio::time::interval(MONITOR_PERIOD);
        loop {
            tick.tick().await;
            for node in self.nodes.list() {
                if let Err(e) = self.monitor(&node).await {
                    tracing::debug!(node = %node.name_any(), error = %e, "node lifecycle");
                }
            }
            if let Err(e) = self.evict().await {
                tracing::debug!(error = %e, "taint eviction");
            }
        }
    }

    /// The node's latest heartbeat: its lease renewal or its Ready condition's heartbeat.
    fn heartbeat(&self, node: &Node) -> Option<i64> {
        let lease = self
            .leases
            .get(&format!("{LEASE_NAMESPACE}/{}", node.name_any()))
            .and_then(|l| {
                l.spec
                    .as_ref()?
                    .renew_time
                    .as_ref()
                    .map(|t| t.0.as_microsecond())
            });
        let status = node_ready_condition(node)
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0.as_microsecond());
        lease.max(status)
    }

    fn silent_too_long(&self, node: &Node) -> bool {
        let beat = self.heartbeat(node);
        let mut health = skiff_client::lock(&self.health);
        let h = health.entry(node.name_any()).or_insert(Health {
            heartbeat: beat,
            changed: Instant::now(),
        });
        if h.heartbeat != beat {
            h.heartbeat = beat;
            h.changed = Instant::now();
        }
        h.changed.elapsed() > self.grace
    }

    async fn monitor(&self, node: &Node) -> Result<(), Error> {
        let name = node.name_any();
        let api = Api::<Node>::all(self.client.clone());
        let mut ready = node_ready_condition(node).map(|c| c.status.clone());
        if self.silent_too_long(node) && ready.as_deref() != Some("Unknown") {
            self.mark_unknown(&api, node).await?;
            self.events.normal(
                node,
                "NodeNotReady",
                format!("Node {name} status is now: NodeNotReady"),
            );
            self.mark_pods_not_ready(&name).await?;
            ready = Some("Unknown".into());
        }
        self.sync_taints(&api, node, ready.as_deref()).await
    }

    async fn mark_unknown(&self, api: &Api<Node>, node: &Node) -> Result<Node, Error> {
        let now = now();
        let conditions: Vec<_> = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|mut c| {
                if NODE_CONDITIONS.contains(&c.type_.as_str()) {
                    c.status = "Unknown".into();
                    c.reason = Some("NodeStatusUnknown".into());
                    c.message = Some("Kubelet stopped posting node status.".into());
                    c.last_transition_time = Some(now.clone());
                }
                c
            })
            .collect();
        let patch = json!({"status": {"conditions": conditions}});
        Ok(api
            .patch_status(
                &node.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?)
    }

    async fn mark_pods_not_ready(&self, node: &str) -> Result<(), Error> {
        for pod in self
            .pods
            .list()
            .into_iter()
            .filter(|p| pod_node(p) == Some(node))
        {
            if pod_condition(&pod, "Ready").is_none_or(|c| c.status != "True") {
                continue;
            }
            let patch = json!({"status": {"conditions": [{
                "type": "Ready", "status": "False", "lastTransitionTime": now(),
            }]}});
            let api =
                Api::<Pod>::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
            let result = api
                .patch_status(
                    &pod.name_any(),
                    &PatchParams::default(),
                    &Patch::Strategic(&patch),
                )
                .await;
            skiff_client::tolerating(result, &[404])?;
        }
        Ok(())
    }

    /// Puts the taints that say why a node is not Ready on it, and takes them off once it is.
    async fn sync_taints(
        &self,
        api: &Api<Node>,
        node: &Node,
        ready: Option<&str>,
    ) -> Result<(), Error> {
        let wanted = match ready {
            Some("True") => None,
            Some("False") => Some(NOT_READY_TAINT),
            // Unknown, or a node that never reported.
            _ => Some(UNREACHABLE_TAINT),
        };
        let current = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        let ours = |t: &Taint| t.key == NOT_READY_TAINT || t.key == UNREACHABLE_TAINT;
        let mut taints: Vec<Taint> = current
            .iter()
            .filter(|t| !ours(t) || Some(t.key.as_str()) == wanted)
            .cloned()
            .collect();
        if let Some(key) = wanted {
            for effect in ["NoSchedule", "NoExecute"] {
                if !taints.iter().any(|t| t.key == key && t.effect == effect) {
                    taints.push(Taint {
                        key: key.into(),
                        effect: effect.into(),
                        time_added: (effect == "NoExecute").then(now),
                        value: None,
                    });
                }
            }
        }
        if taints == current {
            return Ok(());
        }
        let taints = if taints.is_empty() {
            serde_json::Value::Null
        } else {
            json!(taints)
        };
        // The resourceVersion guards taints others (kubectl taint) set meanwhile.
        let patch = json!({"metadata": {"resourceVersion": node.resource_version()}, "spec": {"taints": taints}});
        let result = api
            .patch(
                &node.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        skiff_client::tolerating(result, &[409, 404])?;
        Ok(())
    }

    /// Deletes the pods whose tolerations of their node's NoExecute taints have run out.
    async fn evict(&self) -> Result<(), Error> {
        let tainted: HashMap<String, Vec<Taint>> = self
            .nodes
            .list()
            .into_iter()
            .filter_map(|n| {
                let taints: Vec<Taint> = n
                    .spec
                    .as_ref()?
                    .taints
                    .clone()?
                    .into_iter()
                    .filter(|t| t.effect == "NoExecute")
                    .collect();
                (!taints.is_empty()).then(|| (n.name_any(), taints))
            })
            .collect();
        if tainted.is_empty() {
            return Ok(());
        }
        let now_s = Timestamp::now().as_second();
        for pod in self.pods.list() {
            let Some(taints) = pod_node(&pod).and_then(|n| tainted.get(n)) else {
                continue;
            };
            if is_deleting(pod.as_ref()) || matches!(pod_phase(&pod), "Succeeded" | "Failed") {
                continue;
            }
            if eviction_due(&pod, taints, now_s) {
                self.evict_pod(&pod).await?;
            }
        }
        Ok(())
    }

    async fn evict_pod(&self, pod: &Pod) -> Result<(), Error> {
        let (ns, name) = (pod.namespace().unwrap_or_default(), pod.name_any());
        let api = Api::<Pod>::namespaced(self.client.clone(), &ns);
        let condition = json!({"status": {"conditions": [{
            "type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager",
            "message": "Taint manager: deleting due to NoExecute taint", "lastTransitionTime": now(),
        }]}});
        let _ = api
            .patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Strategic(&condition),
            )
            .await;
        self.events.normal(
            pod,
            "TaintManagerEviction",
            format!("Marking for deletion Pod {ns}/{name}"),
        );
        let result = api.delete(&name, &delete_only(pod.uid())).await;
        skiff_client::tolerating(result, &[404, 409])?;
        Ok(())
    }
}

/// Whether a pod must leave a node with these NoExecute taints at `now` (seconds): at once
/// if one is not tolerated, else when the shortest tolerationSeconds since the taint was
/// added has passed; never if all are tolerated without limit.
fn eviction_due(pod: &Pod, taints: &[Taint], now: i64) -> bool {
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    taints.iter().any(|taint| {
        let matching: Vec<_> = tolerations.iter().filter(|t| tolerates(t, taint)).collect();
        if matching.is_empty() {
            return true;
        }
        // Tolerated forever by any toleration without a limit.
        if matching.iter().any(|t| t.toleration_seconds.is_none()) {
            return false;
        }
        let seconds = matching
            .iter()
            .filter_map(|t| t.toleration_seconds)
            .min()
            .unwrap_or(0)
            .max(0);
        let added = taint.time_added.as_ref().map_or(now, |t| t.0.as_second());
        added + seconds <= now
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_periods_are_judged_against_the_renew_interval() {
        let renew = Duration::from_secs(10);
        assert_eq!(check_grace_period(DEFAULT_GRACE_PERIOD, renew), Ok(None));
        assert!(
            check_grace_period(Duration::from_secs(40), renew)
                .unwrap()
                .is_some()
        );
        let refused = check_grace_period(Duration::from_secs(15), renew).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("shorter than two lease renewals"),
            "{refused}"
        );
        // Tests run nodes with short leases, and so may use short grace periods.
        assert_eq!(
            check_grace_period(Duration::from_secs(3), Duration::from_millis(500)),
            Ok(None)
        );
    }
}
