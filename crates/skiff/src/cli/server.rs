//! `skiff server`: a whole cluster in one process: the API server over the datastore (with
//! its compactor), the image registry, the controllers and the scheduler as API clients, and
//! this machine's node agent (unless `--disable-agent`).

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;
use skiff_apiserver::ServerConfig;

use super::datastore::DatastoreArgs;

#[derive(Args, Debug)]
pub struct ServerArgs {
    #[command(flatten)]
    datastore: DatastoreArgs,
    /// Address to serve the Kubernetes API on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// The address pods reach the API at (the `kubernetes` Service's endpoint; default:
    /// the bind address, or this node's address for a wildcard bind).
    #[arg(long, value_name = "IP")]
    advertise_address: Option<IpAddr>,
    /// Port of the Kubernetes API (HTTPS).
    #[arg(long, default_value_t = 6443)]
    https_port: u16,
    /// Port of the embedded image registry (plain HTTP, on the bind address; 0 picks one).
    #[arg(long, default_value_t = 5000)]
    registry_port: u16,
    /// Where to write the admin kubeconfig (mode 0600).
    #[arg(long, default_value = "/etc/skiff/kubeconfig.yaml")]
    write_kubeconfig: PathBuf,
    /// How long events are kept after they were last seen (seconds).
    #[arg(long, default_value_t = skiff_apiserver::DEFAULT_EVENT_TTL.as_secs(), value_name = "SECONDS")]
    event_ttl: u64,
    /// How long new pods tolerate a node that is not ready before they are evicted.
    #[arg(long, default_value_t = skiff_apiserver::DEFAULT_TOLERATION_SECONDS, value_name = "SECONDS")]
    default_not_ready_toleration_seconds: i64,
    /// How long new pods tolerate an unreachable node before they are evicted.
    #[arg(long, default_value_t = skiff_apiserver::DEFAULT_TOLERATION_SECONDS, value_name = "SECONDS")]
    default_unreachable_toleration_seconds: i64,
    /// How long a node may go without a heartbeat before it is marked unreachable
    /// (e.g. 50s, 2m); at least two of the nodes' lease renewals (every 10 s).
    #[arg(long, default_value = "50s", value_parser = super::parse_duration, value_name = "DURATION")]
    node_monitor_grace_period: std::time::Duration,
    /// The range Services' cluster IPs come from (its first address is the `kubernetes`
    /// Service's, its tenth the cluster DNS's).
    #[arg(long, default_value = "10.43.0.0/16", value_name = "CIDR")]
    service_cidr: skiff_net::Cidr,
    /// The range NodePorts come from.
    #[arg(long, default_value = "30000-32767", value_parser = parse_port_range, value_name = "FROM-TO")]
    service_node_port_range: std::ops::RangeInclusive<u16>,
    /// Addresses for LoadBalancer Services, one each: a CIDR (192.0.2.0/28) or a range
    /// (192.0.2.10-192.0.2.20). Default: the nodes' own addresses, as k3s's ServiceLB.
    #[arg(long, value_name = "CIDR|RANGE")]
    lb_address_pool: Option<String>,
    /// Run without the scheduler (another one, anywhere, can place the pods).
    #[arg(long)]
    disable_scheduler: bool,
    /// Run without the controllers (ReplicaSet, Deployment, garbage collector, endpoints,
    /// nodes, namespaces, service accounts): an API server that another process's
    /// controllers drive, or the API alone for benchmarks.
    #[arg(long)]
    disable_controller_manager: bool,
    /// Run without this machine's node agent (a control plane only; nodes join with
    /// `skiff agent`).
    #[arg(long)]
    disable_agent: bool,
    /// This machine's pod addresses, when it runs its node agent (default: the subnet of
    /// the cluster CIDR the node IPAM assigns it).
    #[arg(long, value_name = "CIDR")]
    pod_cidr: Option<skiff_net::Cidr>,
    /// The size of each node's subnet of the cluster CIDR (a /24: 254 pods a node).
    #[arg(long, default_value_t = skiff_controllers::DEFAULT_NODE_CIDR_MASK_SIZE, value_name = "BITS")]
    node_cidr_mask_size: u8,
    /// Port of this machine's node streaming endpoints (logs, exec; HTTPS on the bind
    /// address, for the API server only), when it runs its node agent.
    #[arg(long, default_value_t = 10250, value_name = "PORT")]
    kubelet_port: u16,
    /// The OCI runtime binary of this machine's node agent (runc; crun takes the same
    /// flags).
    #[arg(long, default_value = "runc", value_name = "BINARY")]
    runtime: PathBuf,
    #[command(flatten)]
    network: super::network::NetworkArgs,
}

impl ServerArgs {
    pub async fn run(self) -> Result<()> {
        // Judged against the renewals of nodes with the default lease, as this machine's.
        let renew_every =
            skiff_agent::node::lease_renew_interval(skiff_agent::node::LEASE_DURATION_SECONDS);
        match skiff_controllers::check_grace_period(self.node_monitor_grace_period, renew_every) {
            Err(refused) => anyhow::bail!("--node-monitor-grace-period: {refused}"),
            Ok(Some(warning)) => eprintln!("warning: --node-monitor-grace-period: {warning}"),
            Ok(None) => {}
        }
        // The cluster DNS sits at the service range's tenth address unless told otherwise,
        // and must lie in the range: kube-dns is a Service like any other.
        let tenth = std::net::Ipv4Addr::from(u32::from(self.service_cidr.network) + 10);
        let cluster_dns = self.network.cluster_dns(tenth);
        if !self.service_cidr.contains(cluster_dns.nameserver) {
            anyhow::bail!(
                "--cluster-dns {} is outside --service-cidr {}: choose an address inside it (the default is its tenth, {tenth})",
                cluster_dns.nameserver,
                self.service_cidr
            );
        }
        let data_dir = &self.datastore.data_dir;
        std::fs::create_dir_all(data_dir.join("db")).with_context(|| {
            format!(
                "cannot create the data directory {} (run as root, or choose one with --data-dir)",
                data_dir.display()
            )
        })?;
        let store = skiff_store::open(self.datastore.config())
            .await
            .context("opening the datastore")?;
        let _compactor =
            skiff_store::spawn_compactor(store.clone(), skiff_store::DEFAULT_COMPACTION_INTERVAL);
        let server = skiff_apiserver::start(ServerConfig {
            data_dir: data_dir.clone(),
            bind_address: self.bind_address,
            https_port: self.https_port,
            write_kubeconfig: Some(self.write_kubeconfig.clone()),
            advertise_address: Some(self.advertise_address.unwrap_or(
                if self.bind_address.is_unspecified() {
                    self.network.node_ip()
                } else {
                    self.bind_address
                },
            )),
            cluster_dns: Some(cluster_dns.nameserver),
            service_network: skiff_apiserver::ServiceNetwork {
                cidr: (self.service_cidr.network, self.service_cidr.prefix),
                node_ports: self.service_node_port_range.clone(),
            },
            store,
            event_ttl: std::time::Duration::from_secs(self.event_ttl),
            not_ready_toleration_seconds: self.default_not_ready_toleration_seconds,
            unreachable_toleration_seconds: self.default_unreachable_toleration_seconds,
        })
        .await?;
        let registry = skiff_registry::Storage::open(data_dir.join("registry"))
            .context("opening the registry's storage")?;
        // Pushes take the tokens the API server takes.
        let (registry_addr, _registry) = skiff_registry::serve(
            std::net::SocketAddr::new(self.bind_address, self.registry_port),
            registry,
            server.token_check(),
        )
        .await?;
        let client = skiff_client::client_from_kubeconfig(&server.kubeconfig)
            .await
            .context("connecting the controllers to the API")?;
        let pod_cidr = self.pod_cidr;
        skiff_client::cluster_registry::publish(&client, registry_addr.port())
            .await
            .context("publishing the registry's address")?;
        let config = skiff_controllers::Config {
            node_monitor_grace_period: self.node_monitor_grace_period,
            root_ca_pem: Some(server.ca_pem.clone()),
            lb_address_pool: self
                .lb_address_pool
                .as_deref()
                .map(skiff_controllers::AddressPool::parse)
                .transpose()
                .context("--lb-address-pool")?,
            cluster_cidr: Some(self.network.cluster_cidr()),
            node_cidr_mask_size: self.node_cidr_mask_size,
        };
        // One informer per resource for the controllers and the scheduler together.
        let mut informers = skiff_client::InformerFactory::new(client.clone());
        let controllers = (!self.disable_controller_manager)
            .then(|| skiff_controllers::Controllers::new(client.clone(), config, &mut informers));
        let scheduler = (!self.disable_scheduler)
            .then(|| skiff_scheduler::Scheduler::new(client.clone(), &mut informers));
        // The scheduler and the controllers each work while they hold their lease, as
        // upstream's do; this server's identity outlives restarts, so a restarted server
        // takes its leases back at once.
        let identity = server_identity(data_dir)?;
        let lease =
            |name: &str| skiff_client::leader::LeaderLease::new(client.clone(), name, &identity);
        let (scheduler_lease, controllers_lease) =
            (lease("kube-scheduler"), lease("kube-controller-manager"));
        if !self.disable_agent {
            let registry_host = if self.bind_address.is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                self.bind_address.to_string()
            };
            let config = skiff_agent::kubelet::KubeletConfig {
                node_name: skiff_agent::kubelet::host::hostname(),
                data_dir: data_dir.join("agent"),
                runtime_binary: self.runtime.clone(),
                skiff_binary: std::env::current_exe().context("finding this program's path")?,
                node_netns: skiff_net::Netns::Current,
                pod_cidr,
                node_ip: self.network.node_ip().to_string(),
                node_external_ip: self.network.node_external_ip(),
                lease_duration_seconds: skiff_agent::node::LEASE_DURATION_SECONDS,
                registry: Some(skiff_image::Endpoint::new(&format!(
                    "http://{registry_host}:{}",
                    registry_addr.port()
                ))),
                workers: 8,
                streaming_address: std::net::SocketAddr::new(self.bind_address, self.kubelet_port),
                cluster_ca: skiff_tls::certificates_from_pem(&server.ca_pem, "the cluster CA")?,
                sync_frequency: skiff_agent::kubelet::DEFAULT_SYNC_FREQUENCY,
                proxy: self.network.proxy(),
                cluster_dns: Some(cluster_dns.clone()),
                resolv_conf: self.network.resolv_conf(),
                cluster_cidr: Some(self.network.cluster_cidr()),
                pod_network: self.network.pod_network(),
            };
            let agent_api = skiff_client::config_from_kubeconfig(&server.kubeconfig).await?;
            tokio::spawn(async move {
                if let Err(e) = skiff_agent::kubelet::run(agent_api, config).await {
                    eprintln!(
                        "error: this machine's node agent stopped: {e:#} (it needs root and an OCI \
                         runtime, runc or --runtime; --disable-agent runs the control plane \
                         alone)"
                    );
                }
            });
        }
        let _control_plane = tokio::spawn(async move {
            let _informers = informers.start().await;
            if let Some(scheduler) = scheduler {
                tokio::spawn(scheduler_lease.run_while_leader("the scheduler", scheduler.run()));
            }
            if let Some(controllers) = controllers {
                controllers_lease
                    .run_while_leader("the controllers", controllers.run())
                    .await
            }
            // The scheduler's informers live as long as this task.
            std::future::pending::<()>().await
        });
        eprintln!(
            "skiff server ready at {}; kubeconfig written to {}; image registry at http://{registry_addr}",
            server.url,
            self.write_kubeconfig.display()
        );
        tokio::select! {
            _ = server.wait() => anyhow::bail!("the API server stopped"),
            _ = tokio::signal::ctrl_c() => {
                eprintln!("shutting down");
                Ok(())
            }
        }
    }
}

/// `FROM-TO` (`30000-32767`): a range of ports, FROM ≤ TO.
fn parse_port_range(s: &str) -> Result<std::ops::RangeInclusive<u16>, String> {
    let err = || format!("{s:?} is not a port range like 30000-32767");
    let (from, to) = s.split_once('-').ok_or_else(err)?;
    let (from, to): (u16, u16) = (
        from.trim().parse().map_err(|_| err())?,
        to.trim().parse().map_err(|_| err())?,
    );
    if from == 0 || from > to {
        return Err(err());
    }
    Ok(from..=to)
}

/// This server's identity as a lease holder: its host name and an id kept in its data
/// directory (made on first start).
fn server_identity(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("server-id");
    let id = match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
        _ => {
            let mut bytes = [0u8; 8];
            getrandom::fill(&mut bytes).map_err(|e| anyhow::anyhow!("random id: {e}"))?;
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            id
        }
    };
    Ok(format!("{}_{id}", skiff_agent::kubelet::host::hostname()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges_parse_as_kube_apiserver_takes_them() {
        assert_eq!(parse_port_range("30000-32767"), Ok(30000..=32767));
        assert_eq!(parse_port_range("8000-8000"), Ok(8000..=8000));
        for bad in ["", "30000", "32767-30000", "0-10", "a-b", "1-70000"] {
            assert!(parse_port_range(bad).is_err(), "{bad}");
        }
    }
}
