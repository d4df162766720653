//! The built-in load balancer (k3s's ServiceLB, MetalLB's address pools): every Service of
//! type LoadBalancer without a `loadBalancerClass` gets external addresses in
//! `status.loadBalancer.ingress`, which every node's service proxy answers on.
//!
//! - Without a pool, the addresses are the nodes' own: their ExternalIPs if any node has one,
//!   else their InternalIPs, of Ready nodes not labelled
//!   `node.kubernetes.io/exclude-from-external-load-balancers` (upstream's rule).
//! - With `--lb-address-pool`, one address of the pool per Service, kept while the Service
//!   keeps it; a Service whose address is taken or outside the pool gets the lowest free one.
//! - A Service that stops being a LoadBalancer (or is deleted) gives its address back: its
//!   status is cleared, and the pool's free addresses are read from the Services' statuses
//!   alone, so nothing else records an allocation.
//!
//! Events are upstream's service controller's: EnsuringLoadBalancer, EnsuredLoadBalancer,
//! SyncLoadBalancerFailed.
//!
//! Invariant: one worker, so two Services are never handed one pool address by concurrent
//! syncs; a status just written is remembered until the informer shows it.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Service};
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_client::informer::key_of;
use skiff_client::objects::node_is_ready;
use skiff_client::{Change, EventRecorder, InformerFactory, Store, WorkQueue};

use crate::Error;

const EXCLUDE_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// A Service waiting for a pool address looks again this often.
const POOL_RETRY: Duration = Duration::from_secs(30);

/// Addresses for LoadBalancer Services: a CIDR (`192.0.2.0/28`, every address of it) or
/// a range (`192.0.2.10-192.0.2.20`, both ends included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddressPool {
    first: u32,
    last: u32,
    text: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{0:?} is not an address pool: give a CIDR (192.0.2.0/28) or a range of IPv4 addresses (192.0.2.10-192.0.2.20)"
)]
pub struct PoolError(String);

impl AddressPool {
    pub fn parse(text: &str) -> Result<AddressPool, PoolError> {
        let err = || PoolError(text.to_string());
        let (first, last) = if let Some((a, b)) = text.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|_| err())?;
            let b: Ipv4Addr = b.trim().parse().map_err(|_| err())?;
            (u32::from(a), u32::from(b))
        } else {
            let (addr, prefix) = text.split_once('/').ok_or_else(err)?;
            let addr: Ipv4Addr = addr.parse().map_err(|_| err())?;
            let prefix: u32 = prefix.parse().map_err(|_| err())?;
            if !(8..=32).contains(&prefix) {
                return Err(err());
            }
            let size = 1u64 << (32 - prefix);
            let first = u32::from(addr) & !((size - 1) as u32);
            (first, first + (size - 1) as u32)
        };
        if first > last {
            return Err(err());
        }
        Ok(AddressPool {
            first,
            last,
            text: text.to_string(),
        })
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(ip))
    }

    /// The lowest address of the pool not in `taken`.
    fn free(&self, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        (self.first..=self.last)
            .map(Ipv4Addr::from)
            .find(|ip| !taken.contains(ip))
    }
}

impl std::fmt::Display for AddressPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

pub struct LoadBalancerController {
    client: Client,
    services: Store<Service>,
    nodes: Store<Node>,
    pool: Option<AddressPool>,
    events: EventRecorder,
    queue: WorkQueue,
    /// Ingress addresses written but maybe not yet seen by the informer, by Service key.
    written: Mutex<HashMap<String, Vec<Ipv4Addr>>>,
}

/// Whether this controller looks after the Service's load balancer.
fn ours(svc: &Service) -> bool {
    let spec = svc.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_ref()).is_none()
}

fn ingress_ips(svc: &Service) -> Vec<Ipv4Addr> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect()
}

/// The nodes' addresses a pool-less load balancer hands out: ExternalIPs if any eligible
/// node has one, else InternalIPs; sorted.
pub fn node_addresses(nodes: &[Arc<Node>]) -> Vec<Ipv4Addr> {
    let eligible: Vec<&Node> = nodes
        .iter()
        .map(|n| n.as_ref())
        .filter(|n| node_is_ready(n) && !n.labels().contains_key(EXCLUDE_LABEL))
        .collect();
    let of_type = |kind: &str| -> BTreeSet<Ipv4Addr> {
        eligible
            .iter()
            .filter_map(|n| n.status.as_ref()?.addresses.as_ref())
            .flatten()
            .filter(|a| a.type_ == kind)
            .filter_map(|a| a.address.parse().ok())
            .collect()
    };
    let external = of_type("ExternalIP");
    let chosen = if external.is_empty() {
        of_type("InternalIP")
    } else {
        external
    };
    chosen.into_iter().collect()
}

impl LoadBalancerController {
    pub fn new(
        client: Client,
        pool: Option<AddressPool>,
        informers: &mut InformerFactory,
    ) -> Arc<Self> {
        let c = Arc::new(LoadBalancerController {
            events: EventRecorder::new(client.clone(), "service-controller", None),
            client,
            services: informers.all::<Service>().store(),
            nodes: informers.all::<Node>().store(),
            pool,
            queue: WorkQueue::new(),
            written: Mutex::new(HashMap::new()),
        });
        let me = c.clone();
        informers.all::<Service>().on_change(move |change| {
            me.queue.add(key_of(change.object().as_ref()));
            // A pool address given back goes at once to a Service waiting for one.
            let released = match change {
                Change::Deleted(s) => !ingress_ips(s).is_empty(),
                Change::Updated { old, new } => {
                    !ingress_ips(old).is_empty() && ingress_ips(new).is_empty()
                }
                Change::Added(_) => false,
            };
            if released && me.pool.is_some() {
                for svc in me.services.list().iter() {
                    if ours(svc) && ingress_ips(svc).is_empty() {
                        me.queue.add(key_of(svc.as_ref()));
                    }
                }
            }
        });
        // A node's addresses or readiness change what every pool-less balancer answers.
        let me = c.clone();
        informers.all::<Node>().on_change(move |_| {
            if me.pool.is_none() {
                for svc in me.services.list().iter().filter(|s| ours(s)) {
                    me.queue.add(key_of(svc.as_ref()));
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>) {
        // One worker: see the module's invariant.
        self.queue.run_reconciler(1, self.clone()).await;
    }

    /// The ingress addresses of every Service but `key`, as last written or seen.
    fn taken_by_others(&self, key: &str) -> BTreeSet<Ipv4Addr> {
        let written = self.written.lock().expect("not poisoned");
        self.services
            .list()
            .iter()
            .filter(|s| key_of(s.as_ref()) != key)
            .flat_map(|s| {
                written
                    .get(&key_of(s.as_ref()))
                    .cloned()
                    .unwrap_or_else(|| ingress_ips(s))
            })
            .collect()
    }

    /// The addresses `svc` should have, or why it has none.
    fn desired(&self, key: &str, svc: &Service) -> Result<Vec<Ipv4Addr>, String> {
        let Some(pool) = &self.pool else {
            return Ok(node_addresses(&self.nodes.list()));
        };
        let taken = self.taken_by_others(key);
        let current = ingress_ips(svc);
        if let Some(ip) = current.first()
            && current.len() == 1
            && pool.contains(*ip)
            && !taken.contains(ip)
        {
            return Ok(current);
        }
        pool.free(&taken)
            .map(|ip| vec![ip])
            .ok_or_else(|| format!("no address left in the load-balancer pool {pool}"))
    }

    async fn write_ingress(&self, svc: &Service, ips: &[Ipv4Addr]) -> Result<(), Error> {
        let ingress: Vec<_> = ips
            .iter()
            .map(|ip| json!({"ip": ip.to_string(), "ipMode": "VIP"}))
            .collect();
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        let api =
            Api::<Service>::namespaced(self.client.clone(), &svc.namespace().unwrap_or_default());
        let result = api
            .patch_status(
                &svc.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await;
        skiff_client::tolerating(result, &[404])?;
        Ok(())
    }
}

impl skiff_client::Reconcile for LoadBalancerController {
    type Error = Error;

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, Error> {
        let Some(svc) = self.services.get(key) else {
            self.written.lock().expect("not poisoned").remove(key);
            return Ok(None);
        };
        let current = ingress_ips(&svc);
        if !ours(&svc) {
            self.written.lock().expect("not poisoned").remove(key);
            // No longer a LoadBalancer: its address goes back. (One of another class is
            // its own controller's to answer.)
            let is_balancer =
                svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
            if !current.is_empty() && !is_balancer {
                self.write_ingress(&svc, &[]).await?;
            }
            return Ok(None);
        }
        let desired = match self.desired(key, &svc) {
            Ok(ips) => ips,
            Err(why) => {
                self.events.warning(
                    svc.as_ref(),
                    "SyncLoadBalancerFailed",
                    format!("Error syncing load balancer: {why}"),
                );
                return Ok(Some(POOL_RETRY));
            }
        };
        self.written
            .lock()
            .expect("not poisoned")
            .insert(key.to_string(), desired.clone());
        if desired == current {
            return Ok(None);
        }
        self.events.normal(
            svc.as_ref(),
            "EnsuringLoadBalancer",
            "Ensuring load balancer".into(),
        );
        self.write_ingress(&svc, &desired).await?;
        self.events.normal(
            svc.as_ref(),
            "EnsuredLoadBalancer",
            "Ensured load balancer".into(),
        );
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_parse_from_cidrs_and_ranges() {
        let cidr = AddressPool::parse("192.0.2.16/30").unwrap();
        assert!(cidr.contains(Ipv4Addr::new(192, 0, 2, 16)));
        assert!(cidr.contains(Ipv4Addr::new(192, 0, 2, 19)));
        assert!(!cidr.contains(Ipv4Addr::new(192, 0, 2, 20)));
        let range = AddressPool::parse("192.0.2.10-192.0.2.11").unwrap();
        let mut taken = BTreeSet::new();
        assert_eq!(range.free(&taken), Some(Ipv4Addr::new(192, 0, 2, 10)));
        taken.insert(Ipv4Addr::new(192, 0, 2, 10));
        assert_eq!(range.free(&taken), Some(Ipv4Addr::new(192, 0, 2, 11)));
        taken.insert(Ipv4Addr::new(192, 0, 2, 11));
        assert_eq!(range.free(&taken), None);
        for bad in [
            "",
            "192.0.2.0",
            "192.0.2.9-192.0.2.1",
            "x/24",
            "192.0.2.0/7",
            "a-b",
        ] {
            assert!(AddressPool::parse(bad).is_err(), "{bad}");
        }
        assert!(
            PoolError("x".into())
                .to_string()
                .contains("192.0.2.10-192.0.2.20"),
            "the error shows the forms"
        );
    }

    fn node(name: &str, ready: bool, addresses: &[(&str, &str)], excluded: bool) -> Arc<Node> {
        let labels = if excluded {
            json!({EXCLUDE_LABEL: ""})
        } else {
            json!({})
        };
        let addresses: Vec<_> = addresses
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect();
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": labels},
                "status": {"addresses": addresses, "conditions": [
                    {"type": "Ready", "status": if ready { "True" } else { "False" }}]},
            }))
            .unwrap(),
        )
    }

    #[test]
    fn node_addresses_prefer_external_ones_of_ready_included_nodes() {
        let a = node(
            "a",
            true,
            &[("InternalIP", "10.0.0.2"), ("Hostname", "a")],
            false,
        );
        let b = node("b", true, &[("InternalIP", "10.0.0.1")], false);
        let down = node("c", false, &[("InternalIP", "10.0.0.3")], false);
        let excluded = node("d", true, &[("InternalIP", "10.0.0.4")], true);
        let ips = node_addresses(&[a.clone(), b.clone(), down, excluded]);
        assert_eq!(
            ips,
            [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)]
        );
        let e = node(
            "e",
            true,
            &[("InternalIP", "10.0.0.5"), ("ExternalIP", "192.0.2.5")],
            false,
        );
        assert_eq!(node_addresses(&[a, b, e]), [Ipv4Addr::new(192, 0, 2, 5)]);
    }
}
