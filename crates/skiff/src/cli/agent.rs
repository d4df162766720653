//! `skiff agent`: this machine as a node of a cluster (pods run as real containers), or,
//! with `--simulated-nodes N`, many simulated nodes that play kubelet without running
//! anything.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use skiff_agent::kubelet::KubeletConfig;
use skiff_agent::simulated::SimulatedConfig;

#[derive(Args, Debug)]
pub struct AgentArgs {
    /// Kubeconfig of the cluster to join (as `skiff server --write-kubeconfig` writes it).
    #[arg(long, default_value = "/etc/skiff/kubeconfig.yaml")]
    kubeconfig: PathBuf,
    /// This node's name (default: the host name).
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// Where the node keeps its images, pods and logs.
    #[arg(long, default_value = "/var/lib/skiff/agent", value_name = "DIR")]
    data_dir: PathBuf,
    /// The OCI runtime binary (runc; crun takes the same flags).
    #[arg(long, default_value = "runc", value_name = "BINARY")]
    runtime: PathBuf,
    /// The node's pod addresses (default: the subnet of the cluster CIDR the server
    /// assigns this node, its spec.podCIDR).
    #[arg(long, value_name = "CIDR")]
    pod_cidr: Option<skiff_net::Cidr>,
    /// The network namespace (a pinned file) that holds the pod bridge, instead of this
    /// process's own: how tests keep pod networks off the machine's network.
    #[arg(long, value_name = "FILE")]
    node_netns: Option<PathBuf>,
    /// Address of the node's streaming endpoints (logs, exec), which the API server calls.
    #[arg(long, default_value = "0.0.0.0", value_name = "IP")]
    kubelet_address: std::net::IpAddr,
    /// Port of the node's streaming endpoints (0 picks a free one; the Node reports it).
    #[arg(long, default_value_t = 10250, value_name = "PORT")]
    kubelet_port: u16,
    /// The cluster registry as HOST:PORT (default: what the cluster publishes).
    #[arg(long, value_name = "HOST:PORT")]
    registry: Option<String>,
    /// Register this many simulated nodes instead of running containers here.
    #[arg(long, value_name = "N")]
    simulated_nodes: Option<usize>,
    /// Simulated nodes are named PREFIX0, PREFIX1, …
    #[arg(long, default_value = "sim-node-", value_name = "PREFIX")]
    node_name_prefix: String,
    /// How long each node's lease is valid; it is renewed every quarter of this.
    #[arg(long, default_value_t = skiff_agent::node::LEASE_DURATION_SECONDS, value_name = "SECONDS")]
    node_lease_duration_seconds: i32,
    /// How often a running pod is synced with nothing happening to it: its volumes follow
    /// their ConfigMaps and Secrets, and its tokens are renewed, this often.
    #[arg(long, default_value = "1m", value_parser = super::parse_duration, value_name = "DURATION")]
    sync_frequency: std::time::Duration,
    #[command(flatten)]
    network: super::network::NetworkArgs,
}

/// The cluster DNS Service's address as the cluster has it (`kube-system/kube-dns`), else
/// the default service range's tenth address.
async fn cluster_dns_address(client: &kube::Client) -> std::net::Ipv4Addr {
    kube::Api::<k8s_openapi::api::core::v1::Service>::namespaced(client.clone(), "kube-system")
        .get_opt("kube-dns")
        .await
        .ok()
        .flatten()
        .and_then(|s| s.spec?.cluster_ip?.parse().ok())
        .unwrap_or(std::net::Ipv4Addr::new(10, 43, 0, 10))
}

impl AgentArgs {
    pub async fn run(self) -> Result<()> {
        let yaml = std::fs::read_to_string(&self.kubeconfig).with_context(|| {
            format!(
                "cannot read the kubeconfig {} (pass the server's with --kubeconfig)",
                self.kubeconfig.display()
            )
        })?;
        let api = skiff_client::config_from_kubeconfig(&yaml)
            .await
            .with_context(|| format!("the kubeconfig {}", self.kubeconfig.display()))?;
        match self.simulated_nodes {
            Some(nodes) => self.run_simulated(api, nodes).await,
            None => self.run_node(api).await,
        }
    }

    async fn run_node(self, kube_config: kube::Config) -> Result<()> {
        let client = kube::Client::try_from(kube_config.clone())
            .with_context(|| format!("the kubeconfig {}", self.kubeconfig.display()))?;
        let node_name = self
            .node_name
            .clone()
            .unwrap_or_else(skiff_agent::kubelet::host::hostname);
        let pod_cidr = self.pod_cidr;
        let cluster_ca = kube_config.root_cert.clone().with_context(|| {
            "the kubeconfig has no certificate-authority-data (the node agent checks the API server's client certificate against it); use the kubeconfig `skiff server` writes"
        })?;
        let registry = match self.registry.clone() {
            Some(r) => Some(r),
            None => {
                let config = &kube_config;
                let host = config.cluster_url.host().unwrap_or("127.0.0.1").to_string();
                skiff_client::cluster_registry::port(&client)
                    .await
                    .ok()
                    .flatten()
                    .map(|port| format!("{host}:{port}"))
            }
        };
        let config = KubeletConfig {
            node_name: node_name.clone(),
            data_dir: self.data_dir.clone(),
            runtime_binary: self.runtime.clone(),
            skiff_binary: std::env::current_exe().context("finding this program's path")?,
            node_netns: match &self.node_netns {
                Some(p) => skiff_net::Netns::Path(p.clone()),
                None => skiff_net::Netns::Current,
            },
            pod_cidr,
            node_ip: self.network.node_ip().to_string(),
            node_external_ip: self.network.node_external_ip(),
            lease_duration_seconds: self.node_lease_duration_seconds.max(1),
            registry: registry.map(|r| skiff_image::Endpoint::new(&format!("http://{r}"))),
            workers: 8,
            streaming_address: std::net::SocketAddr::new(self.kubelet_address, self.kubelet_port),
            cluster_ca,
            sync_frequency: self.sync_frequency,
            proxy: self.network.proxy(),
            cluster_dns: Some(self.network.cluster_dns(cluster_dns_address(&client).await)),
            resolv_conf: self.network.resolv_conf(),
            cluster_cidr: Some(self.network.cluster_cidr()),
            pod_network: self.network.pod_network(),
        };
        let pods_from = pod_cidr.map_or("the subnet the cluster assigns".into(), |c| c.to_string());
        eprintln!(
            "node {node_name} joining (pods from {pods_from}, data in {})",
            self.data_dir.display()
        );
        tokio::select! {
            result = skiff_agent::kubelet::run(kube_config, config) => result.context("the node agent")?,
            _ = tokio::signal::ctrl_c() => eprintln!("stopping: containers keep running and are adopted at the next start"),
        }
        Ok(())
    }

    async fn run_simulated(self, api: kube::Config, nodes: usize) -> Result<()> {
        if nodes == 0 {
            bail!("--simulated-nodes must be at least 1");
        }
        let mut config = SimulatedConfig::new(nodes, &self.node_name_prefix);
        config.lease_duration_seconds = self.node_lease_duration_seconds.max(1);
        eprintln!(
            "registering {nodes} simulated nodes ({}0…)",
            self.node_name_prefix
        );
        let agent = skiff_agent::simulated::run(api, config, |done, total| {
            eprintln!("  {done}/{total} nodes registered");
        });
        tokio::select! {
            result = agent => result.context("simulated nodes")?,
            _ = tokio::signal::ctrl_c() => eprintln!("stopping: the nodes stop reporting"),
        }
        Ok(())
    }
}
