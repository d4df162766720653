//! Simulated nodes: registration, heartbeats (Leases in `kube-node-lease`, as kubelet's
//! node lease), and a stand-in kubelet for the pods bound to them.
//!
//! Addresses are data only, never used for traffic: node `i` reports InternalIP
//! `127.1.x.y` (loopback, so nothing that ever dials it leaves the machine) and owns pod
//! CIDR `10.{128 + i/256}.{i%256}.0/24`, from which its pods get their IPs.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_client::informer::split_key;
use skiff_client::objects::{is_deleting, now, pod_node, time_text};
use skiff_client::{EventRecorder, Informer, WorkQueue};

use crate::AgentError;
use crate::kubelet::pod_dir::Attempt;
use crate::kubelet::status::{ContainerView, pod_status};
use crate::node::{
    LEASE_DURATION_SECONDS, NodeDescription, lease_renew_interval, node_conditions, renew_lease,
};

/// How often the Ready condition's heartbeat is refreshed in node status when nothing
/// changed (kubelet's node status report frequency).
const STATUS_REFRESH: Duration = Duration::from_secs(300);
/// Concurrent API requests while registering nodes, renewing leases and updating pods.
const CONCURRENCY: usize = 32;
/// How often the pods' statuses in the API are compared with what the nodes run, and
/// written back where they differ (kubelet's status manager sync period): another writer
/// — the node lifecycle controller marking pods not ready while a node was silent — does
/// not get the last word.
const STATUS_RECONCILE_EVERY: Duration = Duration::from_secs(10);

#[derive(Clone, Debug)]
pub struct SimulatedConfig {
    pub nodes: usize,
    pub name_prefix: String,
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    pub lease_duration_seconds: i32,
}

impl SimulatedConfig {
    pub fn new(nodes: usize, name_prefix: &str) -> Self {
        SimulatedConfig {
            nodes,
            name_prefix: name_prefix.to_string(),
            cpu: "8".into(),
            memory: "32Gi".into(),
            max_pods: 110,
            lease_duration_seconds: LEASE_DURATION_SECONDS,
        }
    }

    fn lease_renew(&self) -> Duration {
        lease_renew_interval(self.lease_duration_seconds)
    }

    fn node_name(&self, i: usize) -> String {
        format!("{}{i}", self.name_prefix)
    }
}

/// One simulated node's fixed facts.
#[derive(Clone)]
struct SimNode {
    name: String,
    ip: String,
    /// The /24 its pods' IPs come from, as its first three octets.
    pod_net: String,
}

fn sim_node(config: &SimulatedConfig, i: usize) -> SimNode {
    SimNode {
        name: config.node_name(i),
        ip: format!("127.1.{}.{}", (i / 250) % 256, 1 + i % 250),
        pod_net: format!("10.{}.{}", 128 + (i / 256) % 128, i % 256),
    }
}

/// Registers the nodes, then keeps them alive and runs their pods until the task ends.
/// `progress` is told how many nodes are registered as registration goes.
///
/// Heartbeats go over a connection of their own (kubelet's heartbeat client): a lease
/// renewal never waits behind pod work on a busy connection.
pub async fn run(
    api: kube::Config,
    config: SimulatedConfig,
    progress: impl Fn(usize, usize),
) -> Result<(), AgentError> {
    let client = Client::try_from(api.clone())?;
    let heartbeat_client = Client::try_from(api)?;
    let nodes: Arc<Vec<SimNode>> =
        Arc::new((0..config.nodes).map(|i| sim_node(&config, i)).collect());
    register_all(&client, &config, &nodes, &progress).await?;
    let heartbeats = tokio::spawn(heartbeat(heartbeat_client, config.clone(), nodes.clone()));
    let kubelet = tokio::spawn(run_pods(client, nodes));
    let _ = tokio::join!(heartbeats, kubelet);
    Ok(())
}

async fn register_all(
    client: &Client,
    config: &SimulatedConfig,
    nodes: &[SimNode],
    progress: &impl Fn(usize, usize),
) -> Result<(), AgentError> {
    let total = nodes.len();
    let mut done = 0;
    // Owned per request: borrowed futures here would not be Send.
    let requests = nodes.iter().cloned().map(|node| {
        let (client, config) = (client.clone(), config.clone());
        async move { register(&client, &config, &node).await }
    });
    let mut results = futures_util::stream::iter(requests).buffer_unordered(CONCURRENCY);
    while let Some(result) = results.next().await {
        result?;
        done += 1;
        if done % 100 == 0 || done == total {
            progress(done, total);
        }
    }
    Ok(())
}

/// A simulated node as the API sees it: 8 CPUs, 32 Gi, 110 pods, loopback addresses.
fn description(config: &SimulatedConfig, node: &SimNode) -> NodeDescription {
    NodeDescription {
        name: node.name.clone(),
        ip: node.ip.clone(),
        external_ip: None,
        // Nothing listens there: a simulated node has no streams to give.
        kubelet_port: 10250,
        pod_cidr: Some(format!("{}.0/24", node.pod_net)),
        cpu: config.cpu.clone(),
        memory: config.memory.clone(),
        max_pods: config.max_pods,
        ephemeral_storage: "100Gi".into(),
        kernel_version: "simulated".into(),
        os_image: "skiff simulated node".into(),
        container_runtime_version: "simulated://1.0".into(),
        pressure: Default::default(),
        extra_labels: vec![
            (
                "node.kubernetes.io/instance-type".into(),
                "skiff-simulated".into(),
            ),
            ("type".into(), "simulated".into()),
        ],
        extra_annotations: vec![("skiff.dev/simulated".into(), "true".into())],
    }
}

async fn register(
    client: &Client,
    config: &SimulatedConfig,
    node: &SimNode,
) -> Result<(), AgentError> {
    crate::node::register(
        client,
        &description(config, node),
        config.lease_duration_seconds,
    )
    .await
}

/// Renews every lease each quarter of the lease duration, the nodes' renewals spread over
/// that interval, and posts Ready status when the node object does not show it (the node
/// lifecycle controller marked it Unknown while we were away) or when the last report is
/// getting old. Renewals start on schedule even when earlier ones are slow: up to
/// [`CONCURRENCY`] are in flight, so one slow answer delays no other node.
async fn heartbeat(client: Client, config: SimulatedConfig, nodes: Arc<Vec<SimNode>>) {
    let nodes_api = Api::<Node>::all(client.clone());
    let informer = Informer::new(nodes_api.clone(), watcher::Config::default());
    let shown = informer.store();
    let _watch = informer.start();
    let renew = config.lease_renew();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
    let mut last_report = tokio::time::Instant::now();
    loop {
        let started = tokio::time::Instant::now();
        let report_all = last_report.elapsed() >= STATUS_REFRESH;
        if report_all {
            last_report = started;
        }
        let gap = renew / (nodes.len().max(1) as u32 * 2);
        for node in nodes.iter() {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                return;
            };
            let ready_shown = shown
                .get(&node.name)
                .is_some_and(|n| skiff_client::objects::node_is_ready(&n));
            let previous = (report_all || !ready_shown)
                .then(|| {
                    shown
                        .get(&node.name)
                        .and_then(|n| n.status.as_ref()?.conditions.clone())
                })
                .map(Option::unwrap_or_default);
            let (client, nodes_api, name) = (client.clone(), nodes_api.clone(), node.name.clone());
            let lease_seconds = config.lease_duration_seconds;
            tokio::spawn(async move {
                let _permit = permit;
                beat(&client, &nodes_api, &name, lease_seconds, previous).await;
            });
            tokio::time::sleep(gap).await;
        }
        tokio::time::sleep_until(started + renew).await;
    }
}

/// One node's heartbeat: its lease renewed, and its conditions posted when `report` holds
/// the conditions the API shows.
async fn beat(
    client: &Client,
    nodes_api: &Api<Node>,
    name: &str,
    lease_seconds: i32,
    report: Option<Vec<k8s_openapi::api::core::v1::NodeCondition>>,
) {
    if let Err(e) = renew_lease(client, name, None, lease_seconds).await {
        tracing::warn!(node = %name, error = %e, "renewing the node lease");
    }
    let Some(previous) = report else {
        return;
    };
    let conditions = node_conditions(&now(), Default::default(), Some(&previous));
    let patch = json!({"status": {"conditions": conditions}});
    if let Err(e) = nodes_api
        .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        tracing::warn!(node = %name, error = %e, "updating node status");
    }
}

/// Pod IPs in use on each node, by the last octet.
#[derive(Default)]
struct Addresses {
    used: HashMap<String, BTreeSet<u8>>,
    by_pod: HashMap<String, (String, u8)>,
}

impl Addresses {
    fn assign(&mut self, pod_key: &str, node: &str) -> Option<u8> {
        if let Some((n, ip)) = self.by_pod.get(pod_key)
            && n == node
        {
            return Some(*ip);
        }
        let used = self.used.entry(node.to_string()).or_default();
        let ip = (2..=254u8).find(|o| !used.contains(o))?;
        used.insert(ip);
        self.by_pod
            .insert(pod_key.to_string(), (node.to_string(), ip));
        Some(ip)
    }

    fn adopt(&mut self, pod_key: &str, node: &str, octet: u8) {
        self.used.entry(node.to_string()).or_default().insert(octet);
        self.by_pod
            .insert(pod_key.to_string(), (node.to_string(), octet));
    }

    fn release(&mut self, pod_key: &str) {
        if let Some((node, ip)) = self.by_pod.remove(pod_key)
            && let Some(used) = self.used.get_mut(&node)
        {
            used.remove(&ip);
        }
    }
}

struct Kubelet {
    client: Client,
    pods: skiff_client::Store<Pod>,
    /// Node name → its pod network prefix.
    nodes: HashMap<String, (String, String)>,
    addresses: Mutex<Addresses>,
    events: EventRecorder,
}

async fn run_pods(client: Client, nodes: Arc<Vec<SimNode>>) {
    let queue = WorkQueue::new();
    let mut informer = Informer::new(Api::<Pod>::all(client.clone()), watcher::Config::default());
    let ours: Arc<HashMap<String, (String, String)>> = Arc::new(
        nodes
            .iter()
            .map(|n| (n.name.clone(), (n.pod_net.clone(), n.ip.clone())))
            .collect(),
    );
    {
        let queue = queue.clone();
        let ours = ours.clone();
        informer.on_change(move |change| {
            let pod = change.object();
            if pod_node(pod).is_some_and(|n| ours.contains_key(n)) {
                queue.add(skiff_client::informer::key_of(pod.as_ref()));
            }
        });
    }
    let store = informer.store();
    let synced = informer.synced();
    let _informer = informer.start();
    synced.wait().await;
    tokio::spawn(reconcile_statuses(
        store.clone(),
        ours.clone(),
        queue.clone(),
    ));
    let kubelet = Arc::new(Kubelet {
        events: EventRecorder::new(client.clone(), "kubelet", None),
        client,
        pods: store.clone(),
        nodes: (*ours).clone(),
        addresses: Mutex::new(Addresses::default()),
    });
    // Adopt the addresses of pods an earlier run started.
    {
        let mut addresses = skiff_client::lock(&kubelet.addresses);
        for pod in store.list() {
            let (Some(node), Some(ip)) = (
                pod_node(&pod),
                pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()),
            ) else {
                continue;
            };
            if let Some((net, _)) = kubelet.nodes.get(node)
                && let Some(octet) = ip
                    .strip_prefix(&format!("{net}."))
                    .and_then(|o| o.parse().ok())
            {
                addresses.adopt(&skiff_client::informer::key_of(pod.as_ref()), node, octet);
            }
        }
    }
    queue
        .run_workers(CONCURRENCY, move |key| {
            let kubelet = kubelet.clone();
            async move { kubelet.sync(&key).await.map(|()| None) }
        })
        .await;
}

/// Every [`STATUS_RECONCILE_EVERY`], queues each pod of these nodes whose status in the
/// API is not the one its node reports (see [`shows_running`]); the sync writes it back.
async fn reconcile_statuses(
    pods: skiff_client::Store<Pod>,
    ours: Arc<HashMap<String, (String, String)>>,
    queue: WorkQueue,
) {
    let mut every = tokio::time::interval(STATUS_RECONCILE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        for pod in pods.list() {
            let ours = pod_node(&pod).is_some_and(|n| ours.contains_key(n));
            if ours && !is_deleting(pod.as_ref()) && !shows_running(&pod) {
                queue.add(skiff_client::informer::key_of(pod.as_ref()));
            }
        }
    }
}

/// The annotation that stands in for a readiness probe on simulated nodes: a pod with
/// `"false"` here runs not ready (for trying what follows readiness: endpoints, rollouts).
pub const SIMULATED_READY_ANNOTATION: &str = "skiff.dev/simulated-ready";

/// Whether a simulated node reports the pod ready.
fn simulated_ready(pod: &Pod) -> bool {
    pod.annotations()
        .get(SIMULATED_READY_ANNOTATION)
        .is_none_or(|v| v != "false")
}

/// Whether the API shows a pod as a simulated node runs it: Running, with an address, and
/// ready or not as [`simulated_ready`] says.
fn shows_running(pod: &Pod) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let ready = if simulated_ready(pod) {
        "True"
    } else {
        "False"
    };
    status.phase.as_deref() == Some("Running")
        && status.pod_ip.is_some()
        && ["Ready", "ContainersReady"].iter().all(|t| {
            status
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == *t && c.status == ready)
        })
}

impl Kubelet {
    async fn sync(&self, key: &str) -> Result<(), kube::Error> {
        let Some(pod) = self.pods.get(key) else {
            skiff_client::lock(&self.addresses).release(key);
            return Ok(());
        };
        let Some(node) = pod_node(&pod).filter(|n| self.nodes.contains_key(*n)) else {
            return Ok(());
        };
        let (ns, name) = split_key(key);
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        if is_deleting(pod.as_ref()) {
            // Nothing runs, so the pod is stopped at once: the final delete, as kubelet's.
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..skiff_client::objects::delete_only(pod.uid())
            };
            skiff_client::tolerating(api.delete(name, &params).await, &[404, 409])?;
            return Ok(());
        }
        if shows_running(&pod) {
            return Ok(());
        }
        // Running already (marked not ready while its node was silent, say): the status is
        // written back as the node holds it, with the same address and start times.
        let restoring = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let (net, host_ip) = &self.nodes[node];
        let octet = skiff_client::lock(&self.addresses).assign(key, node);
        let Some(octet) = octet else {
            tracing::warn!(%node, pod = %key, "no free pod IP on the simulated node");
            return Ok(());
        };
        let pod_ip = format!("{net}.{octet}");
        let patch = json!({"status": running_status(&pod, &pod_ip, host_ip)});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        if restoring {
            return Ok(());
        }
        for c in pod.spec.iter().flat_map(|s| &s.containers) {
            self.events.normal(
                pod.as_ref(),
                "Started",
                format!("Started container {}", c.name),
            );
        }
        Ok(())
    }
}

/// A Running pod status, as kubelet reports one whose containers all started (built by the
/// real node's `kubelet::status`), ready unless [`simulated_ready`] says otherwise. What
/// the pod already shows of that — conditions already at their status, start times — is
/// kept, so writing it again changes only what was wrong.
fn running_status(pod: &Pod, pod_ip: &str, host_ip: &str) -> Value {
    let now = time_text(&now());
    let status = pod.status.as_ref();
    let started_at = |name: &str| {
        status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.name == name))
            .and_then(|c| c.state.as_ref()?.running.as_ref()?.started_at.clone())
            .map_or_else(|| now.clone(), |t| time_text(&t))
    };
    let uid = pod.uid().unwrap_or_default();
    let containers: Vec<ContainerView> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| {
            let image = c.image.clone().unwrap_or_default();
            ContainerView {
                name: c.name.clone(),
                runtime: "simulated".into(),
                image_id: Some(format!("simulated://{image}")),
                image,
                attempts: vec![Attempt {
                    number: 0,
                    bundle: Default::default(),
                    id: format!("{uid}-{}", c.name),
                    started_at: Some(started_at(&c.name)),
                    exit: None,
                    term_sent: None,
                    termination_message: None,
                }],
                waiting: None,
                ready: simulated_ready(pod),
                started: true,
            }
        })
        .collect();
    let start_time = status
        .and_then(|s| s.start_time.as_ref())
        .map_or(now.clone(), time_text);
    pod_status(
        pod,
        &[],
        &containers,
        Some(pod_ip),
        host_ip,
        &start_time,
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_are_loopback_and_pod_networks_distinct() {
        let config = SimulatedConfig::new(1000, "sim-");
        let nets: BTreeSet<String> = (0..1000).map(|i| sim_node(&config, i).pod_net).collect();
        assert_eq!(nets.len(), 1000);
        for i in [0, 249, 250, 999] {
            assert!(sim_node(&config, i).ip.starts_with("127."));
        }
        assert_eq!(config.node_name(7), "sim-7");
    }

    #[test]
    fn pod_addresses_are_reused_after_release() {
        let mut a = Addresses::default();
        assert_eq!(a.assign("ns/a", "n"), Some(2));
        assert_eq!(a.assign("ns/a", "n"), Some(2), "stable for one pod");
        assert_eq!(a.assign("ns/b", "n"), Some(3));
        a.release("ns/a");
        assert_eq!(a.assign("ns/c", "n"), Some(2));
    }

    #[test]
    fn running_statuses_are_the_kubelets_and_keep_what_the_pod_shows() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1",
                         "annotations": {SIMULATED_READY_ANNOTATION: "false"}},
            "spec": {"containers": [{"name": "a", "image": "app:v1"}, {"name": "b", "image": "side:v1"}]},
        }))
        .unwrap();
        let first = running_status(&pod, "10.128.0.2", "127.1.0.1");
        assert_eq!(first["phase"], "Running");
        assert_eq!(first["podIP"], "10.128.0.2");
        assert_eq!(first["hostIP"], "127.1.0.1");
        let a = &first["containerStatuses"][0];
        assert_eq!(a["containerID"], "simulated://u1-a");
        assert_eq!(a["imageID"], "simulated://app:v1");
        assert_eq!(
            (
                a["ready"].clone(),
                a["started"].clone(),
                a["restartCount"].clone()
            ),
            (json!(false), json!(true), json!(0))
        );
        let ready = first["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "False");
        assert_eq!(ready["reason"], "ContainersNotReady");
        assert_eq!(ready["message"], "containers with unready status: [a b]");

        // Written back later (the seconds moved on): the start times and transitions stay.
        let mut shown = first.clone();
        shown["startTime"] = "2026-01-01T00:00:00Z".into();
        shown["containerStatuses"][0]["state"]["running"]["startedAt"] =
            "2026-01-01T00:00:01Z".into();
        for c in shown["conditions"].as_array_mut().unwrap() {
            c["lastTransitionTime"] = "2026-01-01T00:00:02Z".into();
        }
        pod.status = serde_json::from_value(shown).unwrap();
        let again = running_status(&pod, "10.128.0.2", "127.1.0.1");
        assert_eq!(again["startTime"], "2026-01-01T00:00:00Z");
        assert_eq!(
            again["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2026-01-01T00:00:01Z"
        );
        assert!(
            again["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .all(|c| c["lastTransitionTime"] == "2026-01-01T00:00:02Z")
        );
    }

    #[test]
    fn the_node_object_is_a_valid_node() {
        let config = SimulatedConfig::new(1, "sim-");
        let node: Node = serde_json::from_value(crate::node::node_object(&description(
            &config,
            &sim_node(&config, 0),
        )))
        .unwrap();
        let status = node.status.unwrap();
        assert_eq!(status.allocatable.unwrap()["pods"].0, "110");
        assert!(
            status
                .conditions
                .unwrap()
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        );
    }
}
