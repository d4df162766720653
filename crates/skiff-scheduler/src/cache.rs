//! The scheduler's view of the cluster: each node with what its bound and assumed pods
//! request. A pod is "assumed" onto its node the moment it is chosen, before the binding
//! lands, so the next decision already sees it (upstream's assume/forget).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use skiff_apimachinery::quantity;
use skiff_client::objects::{controller_of, pod_node};

/// Upstream's requests for a container that states none, used only for scoring, so that
/// best-effort pods still spread instead of piling onto one node.
const DEFAULT_MILLI_CPU: i64 = 100;
const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.pods += o.pods;
    }

    fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.pods -= o.pods;
    }
}

/// What the scheduler needs of one pod.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub node: String,
    pub requests: Resources,
    /// Requests with upstream's non-zero defaults, for scoring.
    pub scoring: Resources,
    pub host_ports: Vec<HostPort>,
    pub owner: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Upstream's rule: the same port and protocol conflict when either side binds all
    /// addresses or both bind the same one.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.ip) || wildcard(&other.ip) || self.ip == other.ip)
    }
}

pub struct NodeInfo {
    pub node: Arc<Node>,
    /// The taints that keep pods off (NoSchedule, NoExecute), worked out once per node
    /// change rather than per decision.
    pub taints: Vec<k8s_openapi::api::core::v1::Taint>,
    pub allocatable: Resources,
    pub requested: Resources,
    pub scoring: Resources,
    pub host_ports: Vec<HostPort>,
    /// Pods on this node per controller uid, for spreading.
    pub owners: HashMap<String, u32>,
    pub pods: HashSet<String>,
}

impl NodeInfo {
    fn new(node: Arc<Node>) -> Self {
        let allocatable = allocatable(&node);
        NodeInfo {
            taints: crate::filters::scheduling_taints(&node),
            node,
            allocatable,
            requested: Resources::default(),
            scoring: Resources::default(),
            host_ports: Vec::new(),
            owners: HashMap::new(),
            pods: HashSet::new(),
        }
    }

    fn add_pod(&mut self, key: &str, pod: &PodInfo) {
        self.requested.add(&pod.requests);
        self.scoring.add(&pod.scoring);
        self.host_ports.extend(pod.host_ports.iter().cloned());
        if let Some(owner) = &pod.owner {
            *self.owners.entry(owner.clone()).or_default() += 1;
        }
        self.pods.insert(key.to_string());
    }

    fn remove_pod(&mut self, key: &str, pod: &PodInfo) {
        if !self.pods.remove(key) {
            return;
        }
        self.requested.sub(&pod.requests);
        self.scoring.sub(&pod.scoring);
        for p in &pod.host_ports {
            if let Some(i) = self.host_ports.iter().position(|h| h == p) {
                self.host_ports.swap_remove(i);
            }
        }
        if let Some(owner) = &pod.owner
            && let Some(n) = self.owners.get_mut(owner)
        {
            *n -= 1;
            if *n == 0 {
                self.owners.remove(owner);
            }
        }
    }
}

fn allocatable(node: &Node) -> Resources {
    let status = node.status.as_ref();
    let get = |name: &str| {
        status
            .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
            .and_then(|a| a.get(name))
            .map(|q| q.0.as_str())
    };
    Resources {
        milli_cpu: get("cpu").and_then(quantity::millis).unwrap_or(0),
        memory: get("memory").and_then(quantity::units).unwrap_or(0),
        pods: get("pods").and_then(quantity::units).unwrap_or(110),
    }
}

/// A pod's requests: the sum over its containers, or the largest init container's if that
/// is more, plus overhead; a container with limits but no requests requests its limits.
pub fn pod_requests(pod: &Pod) -> (Resources, Resources) {
    let Some(spec) = pod.spec.as_ref() else {
        return (Resources::default(), Resources::default());
    };
    let container = |c: &k8s_openapi::api::core::v1::Container| {
        let r = c.resources.as_ref();
        let get = |name: &str| {
            r.and_then(|r| r.requests.as_ref().and_then(|m| m.get(name)))
                .or_else(|| r.and_then(|r| r.limits.as_ref().and_then(|m| m.get(name))))
                .map(|q| q.0.as_str())
        };
        let cpu = get("cpu").and_then(quantity::millis);
        let memory = get("memory").and_then(quantity::units);
        (
            Resources {
                milli_cpu: cpu.unwrap_or(0),
                memory: memory.unwrap_or(0),
                pods: 0,
            },
            Resources {
                milli_cpu: cpu.unwrap_or(DEFAULT_MILLI_CPU),
                memory: memory.unwrap_or(DEFAULT_MEMORY),
                pods: 0,
            },
        )
    };
    let mut sum = (Resources::default(), Resources::default());
    for c in &spec.containers {
        let (r, s) = container(c);
        sum.0.add(&r);
        sum.1.add(&s);
    }
    for c in spec.init_containers.iter().flatten() {
        let (r, _) = container(c);
        sum.0.milli_cpu = sum.0.milli_cpu.max(r.milli_cpu);
        sum.0.memory = sum.0.memory.max(r.memory);
    }
    for (name, q) in spec.overhead.iter().flatten() {
        match name.as_str() {
            "cpu" => sum.0.milli_cpu += quantity::millis(&q.0).unwrap_or(0),
            "memory" => sum.0.memory += quantity::units(&q.0).unwrap_or(0),
            _ => {}
        }
    }
    sum.0.pods = 1;
    sum.1.pods = 1;
    sum
}

pub fn pod_host_ports(pod: &Pod) -> Vec<HostPort> {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|hp| *hp > 0)?;
            Some(HostPort {
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip: p.host_ip.clone().unwrap_or_default(),
                port,
            })
        })
        .collect()
}

pub fn pod_info(pod: &Pod, node: &str) -> PodInfo {
    let (requests, scoring) = pod_requests(pod);
    PodInfo {
        node: node.to_string(),
        requests,
        scoring,
        host_ports: pod_host_ports(pod),
        owner: controller_of(pod).map(|r| r.uid.clone()),
    }
}

#[derive(Default)]
pub struct Cache {
    pub nodes: HashMap<String, NodeInfo>,
    pods: HashMap<String, PodInfo>,
}

impl Cache {
    pub fn set_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        match self.nodes.get_mut(&name) {
            Some(info) => {
                info.allocatable = allocatable(&node);
                info.taints = crate::filters::scheduling_taints(&node);
                info.node = node;
            }
            None => {
                let mut info = NodeInfo::new(node);
                // Pods that were bound before their node was seen.
                for (key, pod) in self.pods.iter().filter(|(_, p)| p.node == name) {
                    info.add_pod(key, pod);
                }
                self.nodes.insert(name, info);
            }
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Records a pod as occupying its node (bound, or assumed by a decision).
    pub fn add_pod(&mut self, key: &str, info: PodInfo) {
        self.remove_pod(key);
        if let Some(node) = self.nodes.get_mut(&info.node) {
            node.add_pod(key, &info);
        }
        self.pods.insert(key.to_string(), info);
    }

    pub fn remove_pod(&mut self, key: &str) -> bool {
        let Some(old) = self.pods.remove(key) else {
            return false;
        };
        if let Some(node) = self.nodes.get_mut(&old.node) {
            node.remove_pod(key, &old);
        }
        true
    }

    pub fn has_pod(&self, key: &str) -> bool {
        self.pods.contains_key(key)
    }

    /// Keeps the cache in step with a pod as the API shows it.
    pub fn observe_pod(&mut self, key: &str, pod: &Pod) -> bool {
        let terminal = matches!(
            skiff_client::objects::pod_phase(pod),
            "Succeeded" | "Failed"
        );
        match pod_node(pod) {
            Some(node) if !terminal => {
                self.add_pod(key, pod_info(pod, node));
                false
            }
            // Finished pods free their node; unbound ones hold nothing (unless assumed).
            Some(_) => self.remove_pod(key),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn requests_sum_containers_and_default_for_scoring() {
        let p = pod(json!({"spec": {"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "1"}}},
            {"name": "c"},
        ], "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "3"}}}]}}));
        let (r, s) = pod_requests(&p);
        assert_eq!(r.milli_cpu, 3000, "the init container's request is larger");
        assert_eq!(r.memory, 64 * 1024 * 1024);
        assert_eq!(s.milli_cpu, 250 + 1000 + DEFAULT_MILLI_CPU);
        assert_eq!(r.pods, 1);
    }

    #[test]
    fn assumed_pods_count_against_their_node_once() {
        let mut cache = Cache::default();
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "2", "memory": "1Gi", "pods": "10"}}}))
        .unwrap();
        cache.set_node(Arc::new(node));
        let p = pod(json!({"spec": {"containers": [{"name": "a",
            "resources": {"requests": {"cpu": "500m"}}}]}}));
        cache.add_pod("ns/p", pod_info(&p, "n1"));
        cache.add_pod("ns/p", pod_info(&p, "n1"));
        assert_eq!(cache.nodes["n1"].requested.milli_cpu, 500);
        assert!(cache.remove_pod("ns/p"));
        assert_eq!(cache.nodes["n1"].requested, Resources::default());
    }

    #[test]
    fn host_ports_conflict_as_upstream() {
        let hp = |ip: &str, port| HostPort {
            protocol: "TCP".into(),
            ip: ip.into(),
            port,
        };
        assert!(hp("", 80).conflicts(&hp("10.0.0.1", 80)));
        assert!(!hp("10.0.0.2", 80).conflicts(&hp("10.0.0.1", 80)));
        assert!(!hp("", 80).conflicts(&hp("", 81)));
    }
}
