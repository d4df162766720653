//! The node agent that runs pods as real containers (the kubelet's job): it registers its
//! Node with this machine's capacity, keeps its Lease, and reconciles every pod bound to it
//! — sandbox and network, image pulls, init containers then app containers through runc
//! and the container monitor, restarts with CrashLoopBackOff, graceful termination — and
//! reports pod status and events as upstream's kubelet does.
//!
//! State lives on disk (`pod_dir.rs`) and in the container monitors, not in this process:
//! after an agent restart, running containers are found and adopted, never recreated.
//!
//! It also serves the node's streaming endpoints (`streaming/`, kubelet's port 10250), which
//! the API server relays `kubectl logs`, `exec`, `attach` and `port-forward` to.

mod backoff;
mod container;
pub mod dns;
mod env;
mod errors;
#[cfg(test)]
mod fake;
mod hooks;
pub mod host;
mod images;
mod lb_announce;
mod logs;
mod machine;
mod node_dns;
pub mod node_routes;
pub(crate) mod pod_dir;
mod probe;
pub mod reset;
mod service_env;
mod sources;
pub(crate) mod status;
mod streaming;
mod sync;
#[cfg(test)]
mod sync_tests;
mod teardown;
mod tokens;
mod volumes;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_client::{EventRecorder, Informer, Store, WorkQueue};
use skiff_image::{Endpoint, ImageStore, RegistriesConfig, RegistryClient};
use skiff_net::{Cidr, Netns, PodNetwork};
use skiff_runtime::OciRuntime;
use tokio::sync::Notify;

use crate::AgentError;
use crate::node::{NodeDescription, node_conditions, renew_lease};
use machine::{Machine, PodNetworking};
use sources::Sources;
use tokens::Tokens;
use volumes::Volumes;

pub use errors::{KubeletError, RuntimeCheckError, WipeError};
pub use teardown::wipe;

impl streaming::Containers for Kubelet {
    fn pod(&self, namespace: &str, name: &str) -> Option<Arc<Pod>> {
        self.pods.get(&format!("{namespace}/{name}"))
    }

    fn pod_dir(&self, pod: &Pod) -> pod_dir::PodDir {
        self.dir(pod)
    }

    fn pod_netns(&self, pod: &Pod) -> PathBuf {
        self.pod_netns(pod, &self.dir(pod))
    }

    fn runtime(&self) -> &dyn skiff_runtime::Runtime {
        self.machine.runtime()
    }
}

/// The bridge a node's pods hang off, in its network namespace.
pub const POD_BRIDGE: &str = "skiff0";

/// Where the OCI runtime keeps its containers' state: a directory named after the runtime
/// binary (`runc`, `crun`), as each reads only its own state format.
pub fn runtime_root(data_dir: &std::path::Path, runtime_binary: &std::path::Path) -> PathBuf {
    data_dir.join(skiff_runtime::runc::runtime_name(runtime_binary))
}

/// How the agent runs this node.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    pub data_dir: PathBuf,
    /// The OCI runtime binary (runc, or crun).
    pub runtime_binary: PathBuf,
    /// This program, run as `internal container-monitor` for each container.
    pub skiff_binary: PathBuf,
    /// Where the pod bridge lives: the host's namespace, or (tests) one of their own.
    pub node_netns: Netns,
    /// The node's pod addresses (`--pod-cidr`); `None`: the subnet the cluster assigns
    /// (the Node's `spec.podCIDR`), waited for at start.
    pub pod_cidr: Option<Cidr>,
    pub node_ip: String,
    /// An address the node is reached at from outside the cluster (`--node-external-ip`).
    pub node_external_ip: Option<String>,
    pub lease_duration_seconds: i32,
    /// The cluster's embedded registry, tried first for every image.
    pub registry: Option<Endpoint>,
    /// Concurrent pod syncs.
    pub workers: usize,
    /// Where the streaming endpoints listen (kubelet's `--address` and `--port`; port 0
    /// picks a free one, which the Node reports).
    pub streaming_address: SocketAddr,
    /// The cluster CA (DER): only clients it signed (the API server) may stream.
    pub cluster_ca: Vec<Vec<u8>>,
    /// How often a running pod is synced with nothing happening to it (`--sync-frequency`):
    /// its volumes' files follow their sources and its tokens are renewed.
    pub sync_frequency: Duration,
    /// The service proxy's settings, when this node programs Services into its network
    /// namespace (`--proxy-mode nftables`); `None` leaves Services to another proxy.
    pub proxy: Option<skiff_proxy::ProxyConfig>,
    /// The cluster DNS pods are given, which this node also serves on its pod gateway
    /// address (`--cluster-dns`, `--cluster-domain`); `None`: pods get the node's resolver.
    pub cluster_dns: Option<dns::ClusterDns>,
    /// The node's own resolver settings (`--resolv-conf`): `dnsPolicy: Default` pods get
    /// them, and the node's DNS forwards names outside the cluster to its nameservers.
    pub resolv_conf: PathBuf,
    /// The cluster's pod addresses (`--cluster-cidr`): what leaves them from a pod is
    /// masqueraded; `None`: what leaves this node's pod CIDR.
    pub cluster_cidr: Option<Cidr>,
    /// How pods reach the other nodes' pods (`--pod-network`).
    pub pod_network: node_routes::PodNetworkMode,
}

/// The node agent: its configuration, the API's view of its pods, the machine, and the
/// managers the pod loop (`sync.rs`) calls.
pub struct Kubelet {
    client: Client,
    config: KubeletConfig,
    pods: Store<Pod>,
    /// Every service of the cluster (service-link variables).
    services: Store<k8s_openapi::api::core::v1::Service>,
    /// Namespaces, mounts, container processes: the machine (a fake in tests).
    machine: Arc<dyn Machine>,
    network: Arc<dyn PodNetworking>,
    images: images::Images,
    events: EventRecorder,
    probes: probe::Prober,
    /// One pass over orphaned pods at a time; asks made meanwhile are run by that pass.
    orphans: teardown::OrphanPasses,
    /// The ConfigMaps and Secrets pods read (env and volumes).
    sources: Arc<Sources>,
    volumes: Volumes,
    /// The node's resolv.conf, read at start.
    host_resolver: dns::Resolver,
}

impl Kubelet {
    /// The agent with its managers, over this machine and pod network.
    fn new(
        client: Client,
        config: KubeletConfig,
        stores: (Store<Pod>, Store<k8s_openapi::api::core::v1::Service>),
        machine: Arc<dyn Machine>,
        network: Arc<dyn PodNetworking>,
        images: skiff_image::ImageStore,
    ) -> Kubelet {
        let sources = Arc::new(Sources::new(client.clone()));
        let tokens = Tokens::new(client.clone());
        let host_resolver =
            dns::Resolver::parse(&std::fs::read_to_string(&config.resolv_conf).unwrap_or_default());
        Kubelet {
            events: EventRecorder::new(client.clone(), "kubelet", Some(&config.node_name)),
            volumes: Volumes::new(sources.clone(), tokens, machine.clone()),
            sources,
            client,
            config,
            pods: stores.0,
            services: stores.1,
            machine,
            network,
            images: images::Images::new(images),
            probes: Default::default(),
            orphans: Default::default(),
            host_resolver,
        }
    }
}

/// Upstream's `--sync-frequency`.
pub const DEFAULT_SYNC_FREQUENCY: Duration = Duration::from_secs(60);

fn description(config: &KubeletConfig, kubelet_port: u16) -> NodeDescription {
    NodeDescription {
        name: config.node_name.clone(),
        ip: config.node_ip.clone(),
        external_ip: config.node_external_ip.clone(),
        kubelet_port,
        pod_cidr: config.pod_cidr.map(|c| c.to_string()),
        cpu: host::cpus().to_string(),
        memory: format!("{}Ki", host::memory_kib()),
        max_pods: 110,
        ephemeral_storage: format!("{}Ki", host::disk_bytes(&config.data_dir) / 1024),
        kernel_version: host::kernel_version(),
        os_image: host::os_image(),
        container_runtime_version: host::runtime_version(&config.runtime_binary),
        extra_labels: Vec::new(),
        extra_annotations: Vec::new(),
        pressure: host::pressure(&config.data_dir),
    }
}

/// Runs the node until the task is dropped. Heartbeats (the lease, the node's status) go
/// over a connection of their own, as kubelet's heartbeat client: they never wait behind pod
/// work.
pub async fn run(api: kube::Config, config: KubeletConfig) -> Result<(), KubeletError> {
    let client = Client::try_from(api.clone()).map_err(AgentError::from)?;
    let heartbeat_client = Client::try_from(api).map_err(AgentError::from)?;
    host::check_runtime(&config.runtime_binary)?;
    std::fs::create_dir_all(&config.data_dir).map_err(|source| KubeletError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let registries = RegistriesConfig::load(&config.data_dir.join("registries.yaml"))?;
    let images = ImageStore::open(
        config.data_dir.join("images"),
        RegistryClient::new(registries),
        config.registry.clone(),
    )?;
    let streams = streaming::StreamListener::bind(
        config.streaming_address,
        &[config.node_name.clone(), config.node_ip.clone()],
        &config.cluster_ca,
    )
    .await?;
    crate::node::register(
        &client,
        &description(&config, streams.port),
        config.lease_duration_seconds,
    )
    .await?;
    let pod_cidr = match config.pod_cidr {
        Some(cidr) => cidr,
        None => crate::node::assigned_pod_cidr(&client, &config.node_name).await?,
    };
    let backend = node_routes::prepare(&config, pod_cidr).await;
    let mut network = PodNetwork::new(
        config.node_netns.clone(),
        POD_BRIDGE,
        pod_cidr,
        config.data_dir.join("ipam"),
    );
    if let skiff_net::Backend::Vxlan(link) = backend {
        network = network.with_mtu(link.mtu);
    }
    network.ensure_bridge()?;
    let egress = config.cluster_cidr.unwrap_or(pod_cidr);
    if let Err(e) = skiff_net::egress::ensure_egress(&config.node_netns, egress) {
        tracing::error!("{e}; pods on this node cannot reach beyond the cluster");
    }
    tokio::spawn(heartbeat(heartbeat_client, config.clone(), images.clone()));

    let selector = format!("spec.nodeName={}", config.node_name);
    let pods_api = Api::<Pod>::all(client.clone());
    let mut informer = Informer::new(pods_api, watcher::Config::default().fields(&selector));
    let queue = WorkQueue::new();
    {
        let queue = queue.clone();
        informer.on_change(move |change| {
            queue.add(skiff_client::informer::key_of(change.object().as_ref()));
        });
    }
    let store = informer.store();
    let synced = informer.synced();
    let _informer = informer.start();
    // Every Node: routes to the other nodes' pod subnets, and which pool addresses of
    // LoadBalancers this node holds.
    let mut nodes = Informer::new(Api::<Node>::all(client.clone()), watcher::Config::default());
    let (routes_wake, announce_wake) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    for wake in [&routes_wake, &announce_wake] {
        let w = wake.clone();
        nodes.on_change(move |_| w.notify_one());
    }
    let node_store = nodes.store();
    let _nodes = nodes.start();
    tokio::spawn(node_routes::run(
        config.node_netns.clone(),
        backend,
        config.node_name.clone(),
        node_store.clone(),
        routes_wake,
    ));
    // Every Service and EndpointSlice: the containers' service-link variables, the service
    // proxy, the node's DNS and its load-balancer addresses; each change wakes them.
    let mut services = Informer::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let mut slices = Informer::new(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
    );
    let (proxy_wake, dns_wake) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    for wake in [&proxy_wake, &dns_wake, &announce_wake] {
        let w = wake.clone();
        services.on_change(move |_| w.notify_one());
        let w = wake.clone();
        slices.on_change(move |_| w.notify_one());
    }
    let (service_store, services_synced) = (services.store(), services.synced());
    let (slice_store, slices_synced) = (slices.store(), slices.synced());
    tokio::spawn(lb_announce::run(
        config.node_netns.clone(),
        config.node_name.clone(),
        config.node_ip.clone(),
        (service_store.clone(), node_store),
        announce_wake,
    ));
    let _services = services.start();
    let _slices = slices.start();
    synced.wait().await;
    services_synced.wait().await;
    slices_synced.wait().await;
    if let Some(proxy) = config.proxy.clone() {
        let proxier =
            skiff_proxy::Proxier::new(config.node_netns.clone(), &config.node_name, proxy);
        let stores = (service_store.clone(), slice_store.clone());
        tokio::spawn(async move {
            if let Err(e) = skiff_proxy::run(proxier, stores.0, stores.1, proxy_wake).await {
                tracing::error!("the service proxy stopped: {e}");
            }
        });
    }
    if let Some(cluster) = &config.cluster_dns {
        // Pods without cluster DNS are still pods: the node runs on and says why.
        let started = node_dns::start(
            &client,
            &config,
            cluster,
            pod_cidr.gateway(),
            (service_store.clone(), slice_store),
            dns_wake,
        )
        .await;
        if let Err(e) = started {
            tracing::error!("{e}; pods on this node cannot resolve cluster names");
        }
    }
    let machine = machine::Host {
        runtime: OciRuntime::new(
            &config.runtime_binary,
            runtime_root(&config.data_dir, &config.runtime_binary),
        ),
        skiff_binary: config.skiff_binary.clone(),
    };
    let kubelet = Arc::new(Kubelet::new(
        client,
        config,
        (store, service_store),
        Arc::new(machine),
        Arc::new(network),
        images,
    ));
    tokio::spawn(streams.serve(kubelet.clone()));
    tokio::spawn(housekeeping(kubelet.clone()));
    tokio::spawn(watch_exits(kubelet.config.data_dir.clone(), queue.clone()));
    let workers = kubelet.config.workers.max(1);
    queue
        .run_workers(workers, move |key| {
            let kubelet = kubelet.clone();
            async move { kubelet.sync(&key).await }
        })
        .await;
    Ok(())
}

/// Pods on disk the API no longer has (deleted while the agent was away) are torn down;
/// every minute, images no pod here uses go if the disk is fuller than the kubelet's
/// thresholds (85 %, down to 80 %).
async fn housekeeping(kubelet: Arc<Kubelet>) {
    let mut last_gc = tokio::time::Instant::now();
    loop {
        kubelet.remove_orphans().await;
        if last_gc.elapsed() >= Duration::from_secs(60) {
            last_gc = tokio::time::Instant::now();
            let in_use = kubelet.images.in_use(&kubelet.pods.list());
            let images = kubelet.images.store.clone();
            let report = tokio::task::spawn_blocking(move || {
                images.collect_garbage(&in_use, skiff_image::GcPolicy::default())
            })
            .await;
            if let Ok(report) = report
                && !report.removed.is_empty()
            {
                tracing::info!(images = ?report.removed, bytes = report.freed_bytes, "image garbage collection");
            }
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// Queues the pods whose containers ended, so a running pod costs nothing until something
/// happens to it (the kubelet's PLEG role). Monitors leave a notice per pod in one
/// directory, read every 250 ms; every 10 s all recorded exits are looked at too, for
/// monitors started before notices existed and notices lost to a full disk.
async fn watch_exits(data_dir: PathBuf, queue: WorkQueue) {
    const FULL_SCAN: Duration = Duration::from_secs(10);
    let mut seen: std::collections::HashSet<PathBuf> = Default::default();
    let mut first = true;
    let mut last_scan: Option<tokio::time::Instant> = None;
    loop {
        let dir = data_dir.clone();
        let scan = last_scan.is_none_or(|t| t.elapsed() >= FULL_SCAN);
        let (noticed, exits) = tokio::task::spawn_blocking(move || {
            let noticed = take_exit_notices(&dir);
            let exits = if scan { exit_files(&dir) } else { Vec::new() };
            (noticed, exits)
        })
        .await
        .unwrap_or_default();
        for key in noticed {
            queue.add(key);
        }
        if scan {
            last_scan = Some(tokio::time::Instant::now());
            // What is on disk now is what was seen: gone pods' exits leave the set.
            let mut now_seen = std::collections::HashSet::with_capacity(exits.len());
            for (path, key) in exits {
                if !first && !seen.contains(&path) {
                    queue.add(key);
                }
                now_seen.insert(path);
            }
            seen = now_seen;
            first = false;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The keys of the pods with an exit notice; the notices go.
fn take_exit_notices(data_dir: &std::path::Path) -> Vec<String> {
    let notices = pod_dir::exit_notices(data_dir);
    let Ok(entries) = std::fs::read_dir(&notices) else {
        return Vec::new();
    };
    let mut keys = Vec::new();
    for entry in entries.flatten() {
        // Removed before the pod is read: an exit after this leaves a new notice.
        let _ = std::fs::remove_file(entry.path());
        let uid = entry.file_name();
        if let Ok(key) = std::fs::read_to_string(data_dir.join("pods").join(&uid).join("pod")) {
            keys.push(key);
        }
    }
    keys
}

/// Every recorded container exit on the node, with its pod's key.
fn exit_files(data_dir: &std::path::Path) -> Vec<(PathBuf, String)> {
    let read = |p: &std::path::Path| std::fs::read_dir(p).into_iter().flatten().flatten();
    let mut out = Vec::new();
    for pod in read(&data_dir.join("pods")) {
        let Ok(key) = std::fs::read_to_string(pod.path().join("pod")) else {
            continue;
        };
        for container in read(&pod.path().join("containers")) {
            for attempt in read(&container.path()) {
                let exit = attempt.path().join("exit");
                if exit.exists() {
                    out.push((exit, key.clone()));
                }
            }
        }
    }
    out
}

/// Renews the lease every quarter of its duration; reports the conditions and images when
/// a pressure or the images changed, when the Node does not show Ready, and every five
/// minutes regardless.
async fn heartbeat(client: Client, config: KubeletConfig, image_store: ImageStore) {
    let nodes = Api::<Node>::all(client.clone());
    let renew = crate::node::lease_renew_interval(config.lease_duration_seconds);
    let mut last_report = tokio::time::Instant::now();
    let mut reported = host::pressure(&config.data_dir);
    let mut reported_images = serde_json::Value::Null;
    loop {
        tokio::time::sleep(renew).await;
        let node = nodes.get_opt(&config.node_name).await.ok().flatten();
        let ready = node
            .as_ref()
            .is_some_and(skiff_client::objects::node_is_ready);
        if let Err(e) = renew_lease(
            &client,
            &config.node_name,
            node.as_ref().and_then(|n| n.uid()).as_deref(),
            config.lease_duration_seconds,
        )
        .await
        {
            tracing::warn!(error = %e, "renewing the node lease");
        }
        let (data_dir, store) = (config.data_dir.clone(), image_store.clone());
        let (pressure, node_images) = tokio::task::spawn_blocking(move || {
            (
                host::pressure(&data_dir),
                images::node_images(&store.list()),
            )
        })
        .await
        .unwrap_or((reported, reported_images.clone()));
        if pressure != reported {
            tracing::warn!(?pressure, "the node's resource pressure changed");
        }
        if !ready
            || pressure != reported
            || node_images != reported_images
            || last_report.elapsed() >= Duration::from_secs(300)
        {
            let previous = node
                .as_ref()
                .and_then(|n| n.status.as_ref()?.conditions.clone());
            let conditions =
                node_conditions(&skiff_client::objects::now(), pressure, previous.as_deref());
            let patch = json!({"status": {"conditions": conditions, "images": node_images}});
            match nodes
                .patch_status(
                    &config.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => {
                    last_report = tokio::time::Instant::now();
                    reported = pressure;
                    reported_images = node_images;
                }
                Err(e) => tracing::warn!(error = %e, "reporting node status"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_notices_name_their_pods_and_are_taken_once() {
        let data = tempfile::tempdir().unwrap();
        let pod = data.path().join("pods/uid-a");
        std::fs::create_dir_all(&pod).unwrap();
        std::fs::write(pod.join("pod"), "default/web").unwrap();
        let notices = pod_dir::exit_notices(data.path());
        std::fs::create_dir_all(&notices).unwrap();
        std::fs::write(notices.join("uid-a"), "").unwrap();
        // A pod torn down already: its notice goes, naming nothing.
        std::fs::write(notices.join("uid-gone"), "").unwrap();
        assert_eq!(take_exit_notices(data.path()), ["default/web"]);
        assert!(take_exit_notices(data.path()).is_empty());
        assert_eq!(std::fs::read_dir(&notices).unwrap().count(), 0);
    }
}
