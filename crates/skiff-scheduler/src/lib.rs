//! skiff's scheduler, an API client like kube-scheduler: it watches pods and nodes, picks a
//! node for each pending pod (filters, then scores), and binds it through `pods/binding`.
//! Decisions are made one pod at a time against a cache in which every chosen pod is
//! assumed onto its node at once; bindings go out concurrently, so throughput is bounded by
//! the API, not by round trips. Pods that fit nowhere get `PodScheduled=False` and a
//! FailedScheduling event, and are tried again when nodes change or pods go away.

pub mod cache;
pub mod filters;
pub mod scores;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_client::informer::{key_of, split_key};
use skiff_client::objects::{is_deleting, pod_condition, pod_node};
use skiff_client::{Change, EventRecorder, InformerFactory, Store, WorkQueue, lock};
use tokio::sync::Semaphore;

use cache::{Cache, pod_info};

/// The scheduler name pods ask for by default.
pub const SCHEDULER_NAME: &str = "default-scheduler";
/// Bindings in flight at once.
const BINDINGS_IN_FLIGHT: usize = 128;
/// Unschedulable pods are retried at least this often even if nothing seems to change.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(60);

pub struct Scheduler {
    client: Client,
    pods: Store<Pod>,
    cache: Mutex<Cache>,
    queue: WorkQueue,
    unschedulable: Mutex<HashSet<String>>,
    events: EventRecorder,
    bindings: Arc<Semaphore>,
    /// Breaks ties between equally good nodes so equal nodes share the load.
    tie: std::sync::atomic::AtomicUsize,
}

/// Runs a scheduler with informers of its own until the task is dropped.
pub async fn run(client: Client) {
    let mut informers = InformerFactory::new(client.clone());
    let scheduler = Scheduler::new(client, &mut informers);
    let _informers = informers.start().await;
    scheduler.run().await;
}

impl Scheduler {
    /// A scheduler whose pod and node watches are `informers`' (start it before `run`).
    pub fn new(client: Client, informers: &mut InformerFactory) -> Arc<Scheduler> {
        let scheduler = Arc::new(Scheduler {
            events: EventRecorder::new(client.clone(), SCHEDULER_NAME, None),
            client,
            pods: informers.all::<Pod>().store(),
            cache: Mutex::new(Cache::default()),
            queue: WorkQueue::new(),
            unschedulable: Mutex::new(HashSet::new()),
            bindings: Arc::new(Semaphore::new(BINDINGS_IN_FLIGHT)),
            tie: Default::default(),
        });
        let s = scheduler.clone();
        informers
            .all::<Pod>()
            .on_change(move |change| s.pod_changed(change));
        let s = scheduler.clone();
        informers
            .all::<Node>()
            .on_change(move |change| s.node_changed(change));
        scheduler
    }

    /// Schedules until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let s = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(UNSCHEDULABLE_RETRY);
            loop {
                tick.tick().await;
                s.retry_unschedulable();
            }
        });
        // One decision at a time (each sees the last one's assumption); bindings run beside.
        let s = self.clone();
        self.queue
            .run_workers(1, move |key| {
                let s = s.clone();
                async move { s.schedule_one(&key).await.map(|()| None) }
            })
            .await;
    }
}

fn wants_us(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.scheduler_name.as_deref())
        .unwrap_or(SCHEDULER_NAME)
        == SCHEDULER_NAME
        && pod_node(pod).is_none()
        && !is_deleting(pod)
        && !matches!(
            skiff_client::objects::pod_phase(pod),
            "Succeeded" | "Failed"
        )
}

impl Scheduler {
    fn pod_changed(&self, change: &Change<Pod>) {
        let pod = change.object();
        let key = key_of(pod.as_ref());
        let freed = match change {
            Change::Deleted(_) => lock(&self.cache).remove_pod(&key),
            _ => lock(&self.cache).observe_pod(&key, pod),
        };
        if freed {
            self.retry_unschedulable();
        }
        if !matches!(change, Change::Deleted(_)) && wants_us(pod) {
            self.queue.add(key);
        }
    }

    fn node_changed(&self, change: &Change<Node>) {
        let relevant = match change {
            Change::Added(node) => {
                lock(&self.cache).set_node(node.clone());
                true
            }
            Change::Updated { old, new } => {
                lock(&self.cache).set_node(new.clone());
                scheduling_facts(old) != scheduling_facts(new)
            }
            Change::Deleted(node) => {
                lock(&self.cache).remove_node(&node.name_any());
                false
            }
        };
        if relevant {
            self.retry_unschedulable();
        }
    }

    fn retry_unschedulable(&self) {
        let keys: Vec<String> = lock(&self.unschedulable).drain().collect();
        for key in keys {
            self.queue.add(key);
        }
    }

    async fn schedule_one(self: &Arc<Self>, key: &str) -> Result<(), kube::Error> {
        let Some(pod) = self.pods.get(key) else {
            return Ok(());
        };
        if !wants_us(&pod) || lock(&self.cache).has_pod(key) {
            return Ok(());
        }
        let info = pod_info(&pod, "");
        let decision = {
            let cache = lock(&self.cache);
            decide(
                &pod,
                &info,
                &cache,
                self.tie.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            )
        };
        match decision {
            Ok(node) => {
                let mut assumed = info;
                assumed.node = node.clone();
                lock(&self.cache).add_pod(key, assumed);
                let permit = self
                    .bindings
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("never closed");
                let s = self.clone();
                let key = key.to_string();
                tokio::spawn(async move {
                    s.bind(&key, &pod, &node).await;
                    drop(permit);
                });
                Ok(())
            }
            Err(message) => {
                lock(&self.unschedulable).insert(key.to_string());
                self.events
                    .warning(pod.as_ref(), "FailedScheduling", message.clone());
                self.mark_unschedulable(key, &pod, &message).await
            }
        }
    }

    async fn bind(&self, key: &str, pod: &Pod, node: &str) {
        let (ns, name) = split_key(key);
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": pod.uid()},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node},
        });
        match api
            .create_subresource::<_, serde_json::Value>(
                "binding",
                name,
                &PostParams::default(),
                &binding,
            )
            .await
        {
            Ok(_) => self.events.normal(
                pod,
                "Scheduled",
                format!("Successfully assigned {ns}/{name} to {node}"),
            ),
            Err(e) => {
                // Not bound by us: release the assumption; a pod that still waits is retried.
                lock(&self.cache).remove_pod(key);
                let still_waiting = self.pods.get(key).is_some_and(|p| wants_us(&p));
                if still_waiting {
                    tracing::debug!(pod = %key, %node, error = %e, "binding failed, retrying");
                    self.queue.add_rate_limited(key);
                }
            }
        }
    }

    async fn mark_unschedulable(
        &self,
        key: &str,
        pod: &Pod,
        message: &str,
    ) -> Result<(), kube::Error> {
        let current = pod_condition(pod, "PodScheduled");
        if current.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message)) {
            return Ok(());
        }
        let (ns, name) = split_key(key);
        // Only onto the pod as judged: one bound meanwhile (by another scheduler, or by
        // hand) must keep its PodScheduled=True, so a changed pod is a conflict, and the
        // pod goes back to the queue to be looked at again.
        let patch = json!({
            "metadata": {"resourceVersion": pod.resource_version()},
            "status": {"conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": message, "lastProbeTime": null,
                "lastTransitionTime": skiff_client::objects::now(),
            }]},
        });
        let result = Api::<Pod>::namespaced(self.client.clone(), ns)
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await;
        match result {
            Err(e) if skiff_client::is_status(&e, 409) => {
                self.queue.add_rate_limited(key);
                Ok(())
            }
            other => skiff_client::tolerating(other, &[404]).map(|_| ()),
        }
    }
}

/// What about a node can change where pods fit (not its heartbeats).
fn scheduling_facts(node: &Node) -> serde_json::Value {
    let ready = skiff_client::objects::node_ready_condition(node).map(|c| c.status.clone());
    json!([
        node.spec,
        node.metadata.labels,
        node.status.as_ref().map(|s| &s.allocatable),
        ready,
    ])
}

/// How many feasible nodes to look for before scoring (upstream's adaptive
/// percentageOfNodesToScore: 50% less 1% per 125 nodes, at least 5%, at least 100 nodes).
/// Enough for good placement; in a big cluster it spares filtering every node per pod.
fn feasible_wanted(nodes: usize) -> usize {
    if nodes <= 100 {
        return nodes;
    }
    let percent = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percent / 100).max(100)
}

/// The node for `pod`, or upstream's message saying why there is none. Filtering starts at
/// a rotating offset (`tie`) so the nodes looked at differ from pod to pod.
fn decide(pod: &Pod, info: &cache::PodInfo, cache: &Cache, tie: usize) -> Result<String, String> {
    let mut reasons: HashMap<String, usize> = HashMap::new();
    let mut feasible = Vec::new();
    let wanted = feasible_wanted(cache.nodes.len());
    let offset = if cache.nodes.is_empty() {
        0
    } else {
        tie % cache.nodes.len()
    };
    let nodes = cache
        .nodes
        .iter()
        .skip(offset)
        .chain(cache.nodes.iter().take(offset));
    for (name, node) in nodes {
        let why = filters::check(pod, info, node);
        if why.is_empty() {
            feasible.push((name, node));
            if feasible.len() >= wanted {
                break;
            }
        }
        for r in why {
            *reasons.entry(r).or_default() += 1;
        }
    }
    if feasible.is_empty() {
        let mut reasons: Vec<(String, usize)> = reasons.into_iter().collect();
        reasons.sort();
        return Err(filters::unschedulable_message(cache.nodes.len(), &reasons));
    }
    let most_of_owner = info
        .owner
        .as_ref()
        .map(|o| {
            feasible
                .iter()
                .map(|(_, n)| n.owners.get(o).copied().unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    // The best score; among equals, the first in this pod's rotated order.
    let mut best: Option<(i64, &String)> = None;
    for (name, node) in &feasible {
        let score = scores::score(info, node, most_of_owner);
        if best.is_none_or(|(b, _)| score > b) {
            best = Some((score, name));
        }
    }
    Ok(best.map(|(_, n)| n.clone()).expect("feasible is not empty"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cache_with(nodes: &[&str]) -> Cache {
        let mut cache = Cache::default();
        for n in nodes {
            let node: Node = serde_json::from_value(json!({"metadata": {"name": n},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                    "conditions": [{"type": "Ready", "status": "True"}]}}))
            .unwrap();
            cache.set_node(Arc::new(node));
        }
        cache
    }

    fn owned_pod() -> Pod {
        serde_json::from_value(
            json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1",
            "kind": "ReplicaSet", "name": "rs", "uid": "rs-uid", "controller": true}]},
            "spec": {"containers": [{"name": "a"}]}}),
        )
        .unwrap()
    }

    #[test]
    fn the_pods_of_one_owner_spread_over_nodes() {
        let mut cache = cache_with(&["a", "b"]);
        let pod = owned_pod();
        let mut placed = HashMap::<String, u32>::new();
        for i in 0..4 {
            let info = pod_info(&pod, "");
            let node = decide(&pod, &info, &cache, 0).unwrap();
            let mut assumed = info;
            assumed.node = node.clone();
            cache.add_pod(&format!("ns/p{i}"), assumed);
            *placed.entry(node).or_default() += 1;
        }
        assert_eq!(placed.get("a"), Some(&2));
        assert_eq!(placed.get("b"), Some(&2));
    }

    #[test]
    fn big_clusters_filter_a_share_of_nodes() {
        assert_eq!(feasible_wanted(50), 50);
        assert_eq!(feasible_wanted(1000), 420);
        assert_eq!(feasible_wanted(5000), 500);
        assert_eq!(feasible_wanted(200), 100);
    }

    #[test]
    fn no_feasible_node_gives_upstreams_message() {
        let cache = cache_with(&["a", "b"]);
        let pod: Pod = serde_json::from_value(json!({"spec": {"nodeSelector": {"x": "y"},
            "containers": [{"name": "a"}]}}))
        .unwrap();
        let err = decide(&pod, &pod_info(&pod, ""), &cache, 0).unwrap_err();
        assert_eq!(
            err,
            "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector."
        );
    }
}
