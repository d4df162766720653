//! Endpoints and EndpointSlices for Services with a selector: which pods back a Service, at
//! which addresses and ports, and whether each is ready. Both are rewritten from the pods
//! the Service selects whenever one of them (or the Service) changes.
//!
//! - Endpoints `<service>`: subsets grouping addresses by their resolved ports; ready pods
//!   in `addresses`, others in `notReadyAddresses` (all in `addresses` with
//!   `publishNotReadyAddresses`). Terminating pods and pods without an IP are left out.
//!   EndpointSlices keep terminating pods (ready false, serving by their readiness,
//!   terminating true), as upstream's do since the terminating condition went GA.
//! - EndpointSlices `<service>-<suffix>` (at most 100 endpoints each), labelled
//!   `kubernetes.io/service-name` and managed-by `endpointslice-controller.k8s.io`, owned by
//!   the Service; endpoints carry ready/serving/terminating conditions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_client::informer::{key_of, split_key};
use skiff_client::objects::{controller_reference, is_deleting, pod_is_ready};
use skiff_client::{Change, InformerFactory, Store, WorkQueue};

use crate::Error;

const WORKERS: usize = 4;
const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
const MANAGED_BY: &str = "endpointslice-controller.k8s.io";

pub struct EndpointsController {
    client: Client,
    services: Store<Service>,
    pods: Store<Pod>,
    endpoints: Store<Endpoints>,
    slices: Store<EndpointSlice>,
    queue: WorkQueue,
}

/// One pod's place behind a Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Backend {
    ip: String,
    node: Option<String>,
    pod: String,
    uid: String,
    ready: bool,
    terminating: bool,
}

type Ports = Vec<(Option<String>, i32, String)>;

fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    svc.spec
        .as_ref()?
        .selector
        .as_ref()
        .filter(|s| !s.is_empty())
}

/// `publishNotReadyAddresses`: every pod counts as ready.
fn publishes_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn selects(svc: &Service, pod: &Pod) -> bool {
    selector(svc).is_some_and(|sel| {
        let labels = pod.metadata.labels.as_ref();
        sel.iter()
            .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
    })
}

impl EndpointsController {
    pub fn new(client: Client, informers: &mut InformerFactory) -> Arc<Self> {
        let c = Arc::new(EndpointsController {
            client,
            services: informers.all::<Service>().store(),
            pods: informers.all::<Pod>().store(),
            endpoints: informers.all::<Endpoints>().store(),
            slices: informers.all::<EndpointSlice>().store(),
            queue: WorkQueue::new(),
        });
        let me = c.clone();
        informers
            .all::<Service>()
            .on_change(move |change| me.queue.add(key_of(change.object().as_ref())));
        let me = c.clone();
        informers.all::<Pod>().on_change(move |change| {
            let (old, new) = match change {
                Change::Added(p) | Change::Deleted(p) => (None, p),
                Change::Updated { old, new } => (Some(old), new),
            };
            let ns = new.namespace().unwrap_or_default();
            for svc in me.services.in_namespace(&ns) {
                if selects(&svc, new) || old.is_some_and(|o| selects(&svc, o)) {
                    me.queue.add(key_of(svc.as_ref()));
                }
            }
        });
        c
    }

    pub async fn run(self: Arc<Self>) {
        self.queue.run_reconciler(WORKERS, self.clone()).await;
    }

    async fn sync(&self, key: &str) -> Result<(), Error> {
        let Some(svc) = self.services.get(key) else {
            // Endpoints go with their Service through the garbage collector (slices) or here.
            let (ns, name) = split_key(key);
            if self.endpoints.get(key).is_some() {
                ignore_missing(
                    Api::<Endpoints>::namespaced(self.client.clone(), ns)
                        .delete(name, &DeleteParams::default())
                        .await,
                )?;
            }
            return Ok(());
        };
        if selector(&svc).is_none() || is_deleting(svc.as_ref()) {
            // Without a selector, endpoints are the user's to manage.
            return Ok(());
        }
        let (ns, _) = split_key(key);
        let publish_not_ready = publishes_not_ready(&svc);
        let mut backends: Vec<(Backend, Ports)> = Vec::new();
        for pod in self.pods.in_namespace(ns) {
            if !selects(&svc, &pod) {
                continue;
            }
            let Some(ip) = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.clone())
                .filter(|ip| !ip.is_empty())
            else {
                continue;
            };
            // Terminating pods stay in the slices (ready false, serving as their readiness
            // says, terminating true), as upstream's: proxies fall back to them while no
            // ready endpoint is left. Endpoints leave them out.
            let terminating = is_deleting(pod.as_ref());
            let backend = Backend {
                ip,
                node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
                pod: pod.name_any(),
                uid: pod.uid().unwrap_or_default(),
                ready: pod_is_ready(&pod) || publish_not_ready,
                terminating,
            };
            backends.push((backend, resolve_ports(&svc, &pod)));
        }
        backends.sort();
        self.write_endpoints(&svc, ns, &backends).await?;
        self.write_slices(&svc, ns, &backends).await
    }

    async fn write_endpoints(
        &self,
        svc: &Service,
        ns: &str,
        backends: &[(Backend, Ports)],
    ) -> Result<(), Error> {
        let mut subsets: BTreeMap<&Ports, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
        for (b, ports) in backends.iter().filter(|(b, _)| !b.terminating) {
            let address = json!({
                "ip": b.ip, "nodeName": b.node,
                "targetRef": {"kind": "Pod", "namespace": ns, "name": b.pod, "uid": b.uid},
            });
            let entry = subsets.entry(ports).or_default();
            if b.ready {
                entry.0.push(address)
            } else {
                entry.1.push(address)
            }
        }
        let subsets: Vec<Value> = subsets
            .into_iter()
            .map(|(ports, (ready, not_ready))| {
                let mut subset = json!({"ports": ports.iter().map(|(name, port, protocol)| {
                    json!({"name": name, "port": port, "protocol": protocol})
                }).collect::<Vec<_>>()});
                if !ready.is_empty() {
                    subset["addresses"] = json!(ready);
                }
                if !not_ready.is_empty() {
                    subset["notReadyAddresses"] = json!(not_ready);
                }
                subset
            })
            .collect();
        let name = svc.name_any();
        let mut labels = svc.labels().clone();
        if svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None") {
            labels.insert("service.kubernetes.io/headless".into(), String::new());
        }
        let desired: Endpoints = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "subsets": if subsets.is_empty() { Value::Null } else { json!(subsets) },
        }))?;
        let api = Api::<Endpoints>::namespaced(self.client.clone(), ns);
        match self.endpoints.get(&format!("{ns}/{name}")) {
            Some(current)
                if current.subsets == desired.subsets
                    && current.metadata.labels == desired.metadata.labels =>
            {
                Ok(())
            }
            Some(current) => {
                let mut updated = desired;
                updated.metadata.resource_version = current.resource_version();
                updated.metadata.annotations = current.metadata.annotations.clone();
                ignore_missing(api.replace(&name, &PostParams::default(), &updated).await)
            }
            // (Made meanwhile: the 409 retries once the informer shows it.)
            None => {
                api.create(&PostParams::default(), &desired).await?;
                Ok(())
            }
        }
    }

    async fn write_slices(
        &self,
        svc: &Service,
        ns: &str,
        backends: &[(Backend, Ports)],
    ) -> Result<(), Error> {
        let publish_not_ready = publishes_not_ready(svc);
        // One slice family per distinct port set, as upstream; each chunked by 100.
        let mut by_ports: BTreeMap<&Ports, Vec<&Backend>> = BTreeMap::new();
        for (b, ports) in backends {
            by_ports.entry(ports).or_default().push(b);
        }
        if by_ports.is_empty() {
            // A slice with no endpoints still says the Service has none (and its ports).
            by_ports.insert(&EMPTY_PORTS, Vec::new());
        }
        let mut desired: Vec<(Value, Value)> = Vec::new();
        for (ports, backends) in &by_ports {
            // An unnamed port is named "" in a slice (clients dereference the name).
            let ports: Vec<Value> = ports
                .iter()
                .map(|(name, port, protocol)| json!({"name": name.clone().unwrap_or_default(), "port": port, "protocol": protocol}))
                .collect();
            let chunks: Vec<&[&Backend]> = if backends.is_empty() {
                vec![&[]]
            } else {
                backends.chunks(MAX_ENDPOINTS_PER_SLICE).collect()
            };
            for chunk in chunks {
                let endpoints: Vec<Value> = chunk
                    .iter()
                    .map(|b| json!({
                        "addresses": [b.ip],
                        "conditions": {"ready": b.ready && (!b.terminating || publish_not_ready), "serving": b.ready, "terminating": b.terminating},
                        "nodeName": b.node,
                        "targetRef": {"kind": "Pod", "namespace": ns, "name": b.pod, "uid": b.uid},
                    }))
                    .collect();
                desired.push((json!(endpoints), json!(ports)));
            }
        }
        let uid = svc.uid().unwrap_or_default();
        let mut existing: Vec<Arc<EndpointSlice>> = self.slices.controlled_by(&uid);
        existing.sort_by_key(|s| s.name_any());
        let api = Api::<EndpointSlice>::namespaced(self.client.clone(), ns);
        let mut labels = svc.labels().clone();
        labels.insert(SERVICE_NAME_LABEL.into(), svc.name_any());
        labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
        for (i, (endpoints, ports)) in desired.iter().enumerate() {
            let mut slice: EndpointSlice = serde_json::from_value(json!({
                "metadata": {"generateName": format!("{}-", svc.name_any()), "namespace": ns, "labels": labels},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": ports,
            }))?;
            slice.metadata.owner_references = Some(vec![controller_reference(svc)]);
            match existing.get(i) {
                Some(current)
                    if current.endpoints == slice.endpoints
                        && current.ports == slice.ports
                        && current.metadata.labels == slice.metadata.labels => {}
                Some(current) => {
                    slice.metadata.name = Some(current.name_any());
                    slice.metadata.generate_name = None;
                    slice.metadata.resource_version = current.resource_version();
                    ignore_missing(
                        api.replace(&current.name_any(), &PostParams::default(), &slice)
                            .await,
                    )?;
                }
                None => {
                    api.create(&PostParams::default(), &slice).await?;
                }
            }
        }
        for surplus in existing.iter().skip(desired.len()) {
            ignore_missing(
                api.delete(&surplus.name_any(), &DeleteParams::default())
                    .await
                    .map(|_| ()),
            )?;
        }
        Ok(())
    }
}

impl skiff_client::Reconcile for EndpointsController {
    type Error = Error;

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>, Error> {
        self.sync(key).await.map(|()| None)
    }
}

static EMPTY_PORTS: Ports = Vec::new();

fn ignore_missing<T>(result: Result<T, kube::Error>) -> Result<(), Error> {
    skiff_client::tolerating(result, &[404])?;
    Ok(())
}

/// The Service's ports as this pod serves them: a numeric targetPort as is, a named one
/// looked up among the pod's container ports (a pod without it is left out of that port).
fn resolve_ports(svc: &Service, pod: &Pod) -> Ports {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let mut ports = Vec::new();
    for p in svc.spec.iter().flat_map(|s| s.ports.iter().flatten()) {
        let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into());
        let number = match &p.target_port {
            None => Some(p.port),
            Some(IntOrString::Int(n)) => Some(*n),
            Some(IntOrString::String(name)) => pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|cp| {
                    cp.name.as_deref() == Some(name.as_str())
                        && cp.protocol.as_deref().unwrap_or("TCP") == protocol
                })
                .map(|cp| cp.container_port),
        };
        if let Some(number) = number {
            ports.push((p.name.clone(), number, protocol));
        }
    }
    ports
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_target_ports_resolve_per_pod() {
        let svc: Service = serde_json::from_value(json!({"spec": {"selector": {"app": "web"},
            "ports": [{"name": "http", "port": 80, "targetPort": "web"},
                      {"name": "metrics", "port": 9090, "targetPort": 9100}]}}))
        .unwrap();
        let pod: Pod = serde_json::from_value(json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}]}})).unwrap();
        assert!(selects(&svc, &pod));
        assert_eq!(
            resolve_ports(&svc, &pod),
            vec![
                (Some("http".into()), 8080, "TCP".into()),
                (Some("metrics".into()), 9100, "TCP".into()),
            ]
        );
    }
}
