//! Node IPAM (kube-controller-manager's `--allocate-node-cidrs`, range allocator): every
//! Node without `spec.podCIDR` gets the lowest subnet of the cluster CIDR (`/24` by
//! default) that no other Node holds; a node agent then gives its pods addresses from it.
//! A Node that brings its own (`skiff agent --pod-cidr`) keeps it, and no other Node gets a
//! subnet overlapping it. A deleted Node's subnet is free again: the allocation is read
//! from the Nodes alone.
//!
//! Events are upstream's: `CIDRNotAvailable` when the cluster CIDR is used up.
//!
//! Invariant: one worker, and a subnet just written is remembered until the informer shows
//! it, so two Nodes never get the same subnet.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use skiff_client::informer::key_of;
use skiff_client::{EventRecorder, InformerFactory, Store, WorkQueue};
use skiff_net::Cidr;

use crate::Error;

/// A Node waiting for a subnet looks again this often.
const EXHAUSTED_RETRY: Duration = Duration::from_secs(30);

pub struct NodeIpamController {
    client: Client,
    nodes: Store<Node>,
    cluster_cidr: Cidr,
    mask_size: u8,
    events: EventRecorder,
    queue: WorkQueue,
    /// Subnets written but maybe not yet seen by the informer, by node name.
    written: Mutex<HashMap<String, Cidr>>,
}

fn pod_cidr(node: &Node) -> Option<Cidr> {
    Cidr::parse(node.spec.as_ref()?.pod_cidr.as_deref()?).ok()
}

/// The lowest subnet of `cluster` of `mask` bits overlapping none of `taken`.
pub fn free_subnet(cluster: Cidr, mask: u8, taken: &[Cidr]) -> Option<Cidr> {
    cluster
        .subnets(mask)
        .find(|candidate| !taken.iter().any(|t| t.overlaps(candidate)))
}

impl NodeIpamController {
    pub fn new(
        client: Client,
        cluster_cidr: Cidr,
        mask_size: u8,
        informers: &mut InformerFactory,
    ) -> Arc<Self> {
        let c = Arc::new(NodeIpamController {
            events: EventRecorder::new(client.clone(), "node-controller", None),
            client,
            nodes: informers.all::<Node>().store(),
            cluster_cidr,
            mask_size,
            queue: WorkQueue::new(),
            written: Mutex::new(HashMap::new()),
        });
        let me = c.clone();
        informers.all::<Node>().on_change(move |change| {
            if pod_cidr(change.object()).is_none() {
                me.queue.add(key_of(change.object().as_ref()));
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>) {
        // One worker: see the module's invariant.
        self.queue.run_reconciler(1, self.clone()).await;
    }
}

impl skiff_client::Reconcile for NodeIpamController {
    type Error = Error;

    async fn reconcile(&self, name: &str) -> Result<Option<Duration>, Error> {
        let Some(node) = self.nodes.get(name) else {
            self.written.lock().expect("not poisoned").remove(name);
            return Ok(None);
        };
        if pod_cidr(&node).is_some() {
            return Ok(None);
        }
        let chosen = {
            let mut written = self.written.lock().expect("not poisoned");
            // What the informer shows wins over what was written.
            let nodes = self.nodes.list();
            written.retain(|n, _| {
                nodes
                    .iter()
                    .any(|node| node.name_any() == *n && pod_cidr(node).is_none())
            });
            if let Some(cidr) = written.get(name) {
                Some(*cidr)
            } else {
                let taken: Vec<Cidr> = nodes
                    .iter()
                    .filter_map(|n| pod_cidr(n))
                    .chain(written.values().copied())
                    .collect();
                let free = free_subnet(self.cluster_cidr, self.mask_size, &taken);
                if let Some(cidr) = free {
                    written.insert(name.to_string(), cidr);
                }
                free
            }
        };
        let Some(cidr) = chosen else {
            self.events.warning(
                node.as_ref(),
                "CIDRNotAvailable",
                format!(
                    "Node {name} status is now: CIDRNotAvailable (no /{} left in the cluster CIDR {})",
                    self.mask_size, self.cluster_cidr
                ),
            );
            return Ok(Some(EXHAUSTED_RETRY));
        };
        let cidr = cidr.to_string();
        let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        let result = Api::<Node>::all(self.client.clone())
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await;
        skiff_client::tolerating(result, &[404])?;
        tracing::info!(node = name, pod_cidr = %cidr, "assigned the node its pod CIDR");
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_subnets_skip_every_taken_or_overlapping_one() {
        let cluster = Cidr::parse("10.42.0.0/16").unwrap();
        let c = |s: &str| Cidr::parse(s).unwrap();
        assert_eq!(free_subnet(cluster, 24, &[]), Some(c("10.42.0.0/24")));
        assert_eq!(
            free_subnet(cluster, 24, &[c("10.42.0.0/24"), c("10.42.2.0/24")]),
            Some(c("10.42.1.0/24"))
        );
        // A node's own wider CIDR (--pod-cidr) blocks every subnet inside it.
        assert_eq!(
            free_subnet(cluster, 24, &[c("10.42.0.0/23")]),
            Some(c("10.42.2.0/24"))
        );
        let small = Cidr::parse("10.42.0.0/23").unwrap();
        assert_eq!(
            free_subnet(small, 24, &[c("10.42.0.0/24"), c("10.42.1.0/24")]),
            None
        );
    }
}
