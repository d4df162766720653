//! What every node agent does for its Node, simulated or real: the Node object (capacity,
//! addresses, node info, conditions) registered or reported in again, and the Lease in
//! `kube-node-lease` renewed as kubelet's node lease.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_client::objects::now;

use crate::AgentError;

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// How long a node's lease is valid (kubelet's `--node-lease-duration-seconds` default).
pub const LEASE_DURATION_SECONDS: i32 = 40;

/// How often a node renews a lease valid for `lease_duration_seconds`: every quarter of
/// it, as kubelet does (10 s for the default 40 s).
pub fn lease_renew_interval(lease_duration_seconds: i32) -> std::time::Duration {
    std::time::Duration::from_millis(lease_duration_seconds.max(1) as u64 * 250)
}

/// The facts a node reports about itself.
#[derive(Clone, Debug)]
pub struct NodeDescription {
    pub name: String,
    pub ip: String,
    pub external_ip: Option<String>,
    /// Where the node's streaming endpoints listen (`daemonEndpoints.kubeletEndpoint`).
    pub kubelet_port: u16,
    /// What the node brings (`--pod-cidr`); `None`: the cluster assigns one.
    pub pod_cidr: Option<String>,
    pub cpu: String,
    pub memory: String,
    pub max_pods: u32,
    pub ephemeral_storage: String,
    pub kernel_version: String,
    pub os_image: String,
    pub container_runtime_version: String,
    pub extra_labels: Vec<(String, String)>,
    pub extra_annotations: Vec<(String, String)>,
    pub pressure: Pressure,
}

pub fn node_object(node: &NodeDescription) -> Value {
    let now = now();
    // The architecture as Kubernetes (and OCI) name it.
    let arch = skiff_oci::Platform::current().architecture;
    let mut labels = json!({
        "kubernetes.io/hostname": node.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux",
        "beta.kubernetes.io/arch": arch,
    });
    for (k, v) in &node.extra_labels {
        labels[k] = v.clone().into();
    }
    let mut annotations = json!({"node.alpha.kubernetes.io/ttl": "0"});
    for (k, v) in &node.extra_annotations {
        annotations[k] = v.clone().into();
    }
    let resources = json!({
        "cpu": node.cpu, "memory": node.memory,
        "pods": node.max_pods.to_string(), "ephemeral-storage": node.ephemeral_storage,
    });
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": node.name,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": match &node.pod_cidr {
            Some(cidr) => json!({"podCIDR": cidr, "podCIDRs": [cidr]}),
            None => json!({}),
        },
        "status": {
            "capacity": resources,
            "allocatable": resources,
            "conditions": node_conditions(&now, node.pressure, None),
            "addresses": addresses(node),
            "daemonEndpoints": {"kubeletEndpoint": {"Port": node.kubelet_port}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "",
                "kernelVersion": node.kernel_version, "osImage": node.os_image,
                "containerRuntimeVersion": node.container_runtime_version,
                "kubeletVersion": concat!("v1.33.0-skiff.", env!("CARGO_PKG_VERSION")),
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": arch,
            },
        },
    })
}

/// InternalIP, ExternalIP if it has one, Hostname: the order kubelet reports them in.
fn addresses(node: &NodeDescription) -> Value {
    let mut addresses = vec![json!({"type": "InternalIP", "address": node.ip})];
    if let Some(external) = &node.external_ip {
        addresses.push(json!({"type": "ExternalIP", "address": external}));
    }
    addresses.push(json!({"type": "Hostname", "address": node.name}));
    Value::Array(addresses)
}

/// The node's resource pressures, as the kubelet's eviction thresholds judge them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pid: bool,
}

/// The node's conditions now. A condition whose status is what `previous` shows keeps its
/// `lastTransitionTime`; the heartbeat time is always `now`.
pub fn node_conditions(
    now: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
    pressure: Pressure,
    previous: Option<&[k8s_openapi::api::core::v1::NodeCondition]>,
) -> Value {
    let condition = |type_: &str,
                     on: bool,
                     (reason, message): (&str, &str),
                     (on_reason, on_message): (&str, &str)| {
        let status = if on { "True" } else { "False" };
        let since = previous
            .into_iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        let (reason, message) = if on {
            (on_reason, on_message)
        } else {
            (reason, message)
        };
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    let ready = previous
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    json!([
        condition(
            "MemoryPressure",
            pressure.memory,
            ("KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            ("KubeletHasInsufficientMemory", "kubelet has insufficient memory available"),
        ),
        condition(
            "DiskPressure",
            pressure.disk,
            ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("KubeletHasDiskPressure", "kubelet has disk pressure"),
        ),
        condition(
            "PIDPressure",
            pressure.pid,
            ("KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("KubeletHasInsufficientPID", "kubelet has insufficient PID available"),
        ),
        {
            "type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status",
            "lastHeartbeatTime": now, "lastTransitionTime": ready,
        },
    ])
}

/// Registers the node, or reports it in again (ready, fresh heartbeat) when an earlier run
/// did; then makes sure its lease exists.
pub async fn register(
    client: &Client,
    node: &NodeDescription,
    lease_duration_seconds: i32,
) -> Result<(), AgentError> {
    let nodes = Api::<Node>::all(client.clone());
    let value = node_object(node);
    let object: Node = serde_json::from_value(value.clone()).expect("a valid Node");
    let err = |source| AgentError::Register {
        node: node.name.clone(),
        source,
    };
    match nodes.create(&PostParams::default(), &object).await {
        Ok(_) => {}
        // Registered by an earlier run: report in again (ready, fresh heartbeat, and what
        // may have changed since: addresses, the streaming port, capacity, versions).
        Err(e) if skiff_client::is_status(&e, 409) => {
            // Conditions whose status did not change keep their transition times.
            let previous = nodes
                .get_opt(&node.name)
                .await
                .ok()
                .flatten()
                .and_then(|n| n.status?.conditions);
            let mut status = value["status"].clone();
            status["conditions"] = node_conditions(&now(), node.pressure, previous.as_deref());
            let patch = json!({"status": status});
            nodes
                .patch_status(&node.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(err)?;
        }
        Err(e) => return Err(err(e)),
    }
    let node_uid = nodes.get(&node.name).await.map_err(err)?.uid();
    renew_lease(
        client,
        &node.name,
        node_uid.as_deref(),
        lease_duration_seconds,
    )
    .await
    .map_err(err)
}

/// The pod CIDR the cluster assigned this node (`spec.podCIDR`, from the server's node
/// IPAM), waited for; after 5 s says every 30 s that it is still waiting, and why.
pub async fn assigned_pod_cidr(client: &Client, node: &str) -> Result<skiff_net::Cidr, AgentError> {
    let nodes = Api::<Node>::all(client.clone());
    let started = std::time::Instant::now();
    let mut said = None::<std::time::Instant>;
    loop {
        let assigned = nodes
            .get_opt(node)
            .await
            .map_err(|source| AgentError::Register {
                node: node.to_string(),
                source,
            })?
            .and_then(|n| n.spec?.pod_cidr);
        if let Some(cidr) = assigned {
            return skiff_net::Cidr::parse(&cidr).map_err(|e| AgentError::PodCidr {
                node: node.to_string(),
                cause: e.to_string(),
            });
        }
        let quiet = std::time::Duration::from_secs(5);
        if started.elapsed() >= quiet
            && said.is_none_or(|t| t.elapsed() >= std::time::Duration::from_secs(30))
        {
            said = Some(std::time::Instant::now());
            tracing::warn!(
                "node {node} has no pod CIDR yet ({}s): the server assigns one from its --cluster-cidr; \
                 or give this agent --pod-cidr",
                started.elapsed().as_secs()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Creates or renews a node's lease (owned by its Node, so it goes with it).
pub async fn renew_lease(
    client: &Client,
    node: &str,
    node_uid: Option<&str>,
    duration_seconds: i32,
) -> Result<(), kube::Error> {
    let leases = Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE);
    let renew = MicroTime(Timestamp::now());
    let patch = json!({"spec": {"renewTime": renew, "holderIdentity": node}});
    match leases
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => return Ok(()),
        Err(e) if skiff_client::is_status(&e, 404) => {}
        Err(e) => return Err(e),
    }
    let mut lease = Lease {
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(renew),
            ..LeaseSpec::default()
        }),
        ..Lease::default()
    };
    lease.metadata.name = Some(node.to_string());
    lease.metadata.namespace = Some(LEASE_NAMESPACE.to_string());
    if let Some(uid) = node_uid {
        lease.metadata.owner_references = Some(vec![
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: "v1".into(),
                kind: "Node".into(),
                name: node.to_string(),
                uid: uid.to_string(),
                ..Default::default()
            },
        ]);
    }
    // Made meanwhile (another renewal): that is the goal.
    skiff_client::tolerating(leases.create(&PostParams::default(), &lease).await, &[409])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeCondition;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(seconds: i64) -> Time {
        Time(Timestamp::from_second(seconds).unwrap())
    }

    #[test]
    fn conditions_keep_their_transition_times_until_they_change() {
        let first = node_conditions(&at(100), Pressure::default(), None);
        let previous: Vec<NodeCondition> = serde_json::from_value(first).unwrap();
        let pressed = Pressure {
            memory: true,
            ..Default::default()
        };
        let later = node_conditions(&at(200), pressed, Some(&previous));
        let by_type = |t: &str| {
            later
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        let memory = by_type("MemoryPressure");
        assert_eq!(
            (memory["status"].as_str(), memory["reason"].as_str()),
            (Some("True"), Some("KubeletHasInsufficientMemory"))
        );
        assert_eq!(
            memory["lastTransitionTime"],
            serde_json::to_value(at(200)).unwrap()
        );
        let disk = by_type("DiskPressure");
        assert_eq!(disk["status"], "False");
        assert_eq!(
            disk["lastTransitionTime"],
            serde_json::to_value(at(100)).unwrap()
        );
        assert_eq!(
            disk["lastHeartbeatTime"],
            serde_json::to_value(at(200)).unwrap()
        );
        assert_eq!(
            by_type("Ready")["lastTransitionTime"],
            serde_json::to_value(at(100)).unwrap()
        );
    }
}
