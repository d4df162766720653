//! skiff's controllers: level-triggered, idempotent control loops that are ordinary API
//! clients (kube-rs), so each could run anywhere. `skiff server` runs them in-process
//! against its own API.
//!
//! They share one informer per resource (an `InformerFactory`, which `skiff server` also
//! hands the scheduler): each controller registers its handlers (which only queue keys),
//! then the informers start, and each controller's workers sync keys from its own queue
//! once every informer has listed.

mod deployment;
mod endpoints;
mod expectations;
mod garbage_collector;
mod namespace;
mod node_ipam;
mod node_lifecycle;
mod replicaset;
mod root_ca;
mod service_lb;

use std::time::Duration;

use std::sync::Arc;

use kube::Client;
use skiff_client::InformerFactory;

pub use namespace::NAMESPACE_FINALIZER;
pub use node_lifecycle::{DEFAULT_GRACE_PERIOD, GracePeriodTooShort, check_grace_period};
pub use service_lb::{AddressPool, PoolError};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("API request failed: {0}")]
    Api(#[from] kube::Error),
    #[error("discovering the API's resources: {0}")]
    Discovery(kube::Error),
    #[error("encoding a request: {0}")]
    Encode(#[from] serde_json::Error),
}

/// How soon a reconcile that failed, or is waiting on others, runs again.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// The controllers' settings (flags of `skiff server`).
#[derive(Clone, Debug)]
pub struct Config {
    /// How long a node may be silent before it is considered unreachable
    /// (`--node-monitor-grace-period`).
    pub node_monitor_grace_period: Duration,
    /// The cluster CA (PEM) every namespace gets in its `kube-root-ca.crt` ConfigMap
    /// (`--root-ca-file` upstream); none publishes nothing.
    pub root_ca_pem: Option<String>,
    /// Where LoadBalancer Services' addresses come from (`--lb-address-pool`); none: the
    /// nodes' own addresses.
    pub lb_address_pool: Option<AddressPool>,
    /// The cluster's pod addresses, split into a subnet per Node (`--cluster-cidr`,
    /// `--node-cidr-mask-size`); none: Nodes bring their own.
    pub cluster_cidr: Option<skiff_net::Cidr>,
    pub node_cidr_mask_size: u8,
}

/// Upstream's `--node-cidr-mask-size` for IPv4.
pub const DEFAULT_NODE_CIDR_MASK_SIZE: u8 = 24;

impl Default for Config {
    fn default() -> Self {
        Config {
            node_monitor_grace_period: node_lifecycle::DEFAULT_GRACE_PERIOD,
            root_ca_pem: None,
            lb_address_pool: None,
            cluster_cidr: None,
            node_cidr_mask_size: DEFAULT_NODE_CIDR_MASK_SIZE,
        }
    }
}

/// Every controller, registered on a shared informer factory; `run` once it has started.
pub struct Controllers {
    client: Client,
    replicasets: Arc<replicaset::ReplicaSetController>,
    deployments: Arc<deployment::DeploymentController>,
    endpoints: Arc<endpoints::EndpointsController>,
    load_balancers: Arc<service_lb::LoadBalancerController>,
    node_ipam: Option<Arc<node_ipam::NodeIpamController>>,
    nodes: Arc<node_lifecycle::NodeLifecycle>,
    namespaces: Arc<namespace::NamespaceController>,
}

impl Controllers {
    /// Registers every controller's handlers on `informers` (start it afterwards).
    pub fn new(client: Client, config: Config, informers: &mut InformerFactory) -> Self {
        Controllers {
            replicasets: replicaset::ReplicaSetController::new(client.clone(), informers),
            deployments: deployment::DeploymentController::new(client.clone(), informers),
            endpoints: endpoints::EndpointsController::new(client.clone(), informers),
            node_ipam: config.cluster_cidr.map(|cidr| {
                node_ipam::NodeIpamController::new(
                    client.clone(),
                    cidr,
                    config.node_cidr_mask_size,
                    informers,
                )
            }),
            load_balancers: service_lb::LoadBalancerController::new(
                client.clone(),
                config.lb_address_pool,
                informers,
            ),
            nodes: node_lifecycle::NodeLifecycle::new(
                client.clone(),
                config.node_monitor_grace_period,
                informers,
            ),
            namespaces: namespace::NamespaceController::new(
                client.clone(),
                config.root_ca_pem,
                informers,
            ),
            client,
        }
    }

    /// Runs every controller until the task is dropped (the informers must have started).
    pub async fn run(self) {
        let gc = loop {
            match garbage_collector::GarbageCollector::start(self.client.clone()).await {
                Ok(gc) => break gc,
                Err(e) => {
                    tracing::warn!(error = %e, "garbage collector: retrying discovery");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        };
        tokio::join!(
            gc.run(),
            self.namespaces.run(),
            self.replicasets.run(),
            self.deployments.run(),
            self.endpoints.run(),
            self.load_balancers.run(),
            async {
                if let Some(ipam) = self.node_ipam {
                    ipam.run().await
                }
            },
            self.nodes.run()
        );
    }
}

/// Runs every controller on informers of its own, until the task is dropped.
pub async fn run(client: Client, config: Config) {
    let mut informers = InformerFactory::new(client.clone());
    let controllers = Controllers::new(client, config, &mut informers);
    let _informers = informers.start().await;
    controllers.run().await;
}
