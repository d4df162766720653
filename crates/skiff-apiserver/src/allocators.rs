//! Service cluster IPs and node ports, allocated as datastore keys: taking an address is
//! creating its IPAddress object (`networking.k8s.io/v1`, naming the Service as its
//! `parentRef`, as upstream 1.33's allocator does) or `/ranges/servicenodeports/<port>`,
//! which fails if another service — or another API server sharing the datastore — holds it.
//! No in-memory bitmap can disagree with the store, and a crash between allocating and
//! creating the service leaks at most one address (which the key's value names).

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};
use skiff_api::{ApiError, Cause, ResourceType};
use skiff_store::{Store, StoreError};

/// The IPAddress objects' storage (`registry::networking::ipaddress`).
pub(crate) const IP_PREFIX: &str = "/ipaddresses.networking.k8s.io/";
pub(crate) const PORT_PREFIX: &str = "/ranges/servicenodeports/";
/// Where cluster IPs were taken before they were IPAddress objects (migrated at start).
pub(crate) const OLD_IP_PREFIX: &str = "/ranges/serviceips/";

/// What an address key holds for `owner` (`services/<namespace>/<name>`): for a cluster
/// IP its IPAddress object, for a node port the owner itself.
pub(crate) fn record(key: &str, owner: &str) -> Bytes {
    let Some(ip) = key.strip_prefix(IP_PREFIX) else {
        return Bytes::from(owner.to_string());
    };
    let mut parts = owner.splitn(3, '/');
    let (resource, namespace, name) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let family = if ip.contains(':') { "IPv6" } else { "IPv4" };
    let object = json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IPAddress",
        "metadata": {"name": ip, "uid": crate::strategy::new_uid(),
            "creationTimestamp": skiff_api::object::now_rfc3339(),
            "labels": {"ipaddress.kubernetes.io/ip-family": family,
                       "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io"}},
        "spec": {"parentRef": {"group": "", "resource": resource, "namespace": namespace, "name": name}},
    });
    Bytes::from(object.to_string())
}

/// Who an address key's value says holds it (`services/<namespace>/<name>`).
pub(crate) fn record_owner(value: &[u8]) -> String {
    match serde_json::from_slice::<Value>(value) {
        Ok(obj) if obj.is_object() => {
            let p = &obj["spec"]["parentRef"];
            let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            format!(
                "{}/{}/{}",
                text("resource"),
                text("namespace"),
                text("name")
            )
        }
        _ => String::from_utf8_lossy(value).into_owned(),
    }
}

/// Where Services' addresses come from (`--service-cidr`, `--service-node-port-range`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceNetwork {
    /// The cluster IPs' range: network address and prefix length.
    pub cidr: (Ipv4Addr, u8),
    pub node_ports: std::ops::RangeInclusive<u16>,
}

impl Default for ServiceNetwork {
    /// k3s's 10.43.0.0/16 and upstream's 30000-32767.
    fn default() -> Self {
        ServiceNetwork {
            cidr: (Ipv4Addr::new(10, 43, 0, 0), 16),
            node_ports: 30000..=32767,
        }
    }
}

impl ServiceNetwork {
    /// The range's `n`th address (`n` = 1: the `kubernetes` Service's; 10: the cluster
    /// DNS's by convention).
    pub fn address(&self, n: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.0) + n)
    }
}

/// What one service holds, so it can be given back.
#[derive(Debug, Default)]
pub struct Held {
    pub ips: Vec<Ipv4Addr>,
    pub ports: Vec<u16>,
}

impl Held {
    /// The datastore keys that hold these addresses.
    pub fn keys(&self) -> impl Iterator<Item = String> + '_ {
        let ips = self.ips.iter().map(|ip| format!("{IP_PREFIX}{ip}"));
        ips.chain(self.ports.iter().map(|p| format!("{PORT_PREFIX}{p}")))
    }
}

pub struct ServiceAllocator {
    store: Arc<dyn Store>,
    base: u32,
    size: u32,
    network: ServiceNetwork,
}

/// The owner recorded on a service's address keys.
pub(crate) fn owner_of(svc: &Value) -> String {
    format!(
        "services/{}/{}",
        skiff_api::object::meta_str(svc, "namespace").unwrap_or_default(),
        skiff_api::object::meta_str(svc, "name").unwrap_or_default()
    )
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the OS random source is available");
    u32::from_le_bytes(b)
}

fn store_failure(e: StoreError) -> ApiError {
    if e.is_unavailable() {
        ApiError::unavailable(format!("the datastore is unavailable: {e}"))
    } else {
        ApiError::internal(format!("allocating service addresses: {e}"))
    }
}

impl ServiceAllocator {
    pub fn network(&self) -> &ServiceNetwork {
        &self.network
    }

    pub fn new(store: Arc<dyn Store>, network: ServiceNetwork) -> ServiceAllocator {
        let (net, bits) = network.cidr;
        // The range is at least a /30 (the command line's CIDRs are /8 to /30).
        let bits = bits.clamp(8, 30);
        ServiceAllocator {
            store,
            base: u32::from(net) & (u32::MAX << (32 - bits)),
            size: 1 << (32 - bits),
            network,
        }
    }

    /// Whether `ip` is a usable address of the range (not the network or broadcast address).
    fn in_range(&self, ip: Ipv4Addr) -> bool {
        let n = u32::from(ip);
        n > self.base && n < self.base + self.size - 1
    }

    /// Takes one key; false when someone holds it.
    async fn take(&self, key: String, owner: &str) -> Result<bool, ApiError> {
        let value = record(&key, owner);
        match self.store.create(&key, value).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(store_failure(e)),
        }
    }

    async fn give_back(&self, key: String) {
        match self.store.delete(&key, None).await {
            Ok(_) | Err(StoreError::NotFound { .. }) => {}
            Err(e) => tracing::warn!(%key, error = %e, "could not release a service address"),
        }
    }

    pub async fn release(&self, held: &Held) {
        for key in held.keys() {
            self.give_back(key).await;
        }
    }

    /// The addresses a stored service holds.
    pub fn held_by(svc: &Value) -> Held {
        let spec = svc.get("spec");
        let ips = spec
            .and_then(|s| s.get("clusterIPs"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
            .unwrap_or_default();
        let node_ports = spec
            .and_then(|s| s.get("ports"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("nodePort")?.as_u64());
        let health = spec
            .and_then(|s| s.get("healthCheckNodePort"))
            .and_then(Value::as_u64);
        let ports = node_ports
            .chain(health)
            .filter_map(|p| u16::try_from(p).ok())
            .filter(|p| *p != 0)
            .collect();
        Held { ips, ports }
    }

    async fn cluster_ip(
        &self,
        rt: &ResourceType,
        name: &str,
        svc: &mut Value,
        owner: &str,
        held: &mut Held,
    ) -> Result<(), ApiError> {
        let spec = &mut svc["spec"];
        if spec.get("type").and_then(Value::as_str) == Some("ExternalName") {
            return Ok(());
        }
        let requested = spec
            .get("clusterIP")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if requested == "None" {
            spec["clusterIPs"] = json!(["None"]);
        } else if requested.is_empty() {
            let start = random_u32() % (self.size - 2);
            let mut found = None;
            for i in 0..self.size - 2 {
                let ip = Ipv4Addr::from(self.base + 1 + (start + i) % (self.size - 2));
                if self.take(format!("{IP_PREFIX}{ip}"), owner).await? {
                    found = Some(ip);
                    break;
                }
            }
            let ip = found.ok_or_else(|| {
                ApiError::internal("failed to allocate a service IP: the service range is full")
            })?;
            held.ips.push(ip);
            spec["clusterIP"] = ip.to_string().into();
            spec["clusterIPs"] = json!([ip.to_string()]);
        } else {
            let invalid = |why: &str| {
                ApiError::invalid(
                    rt,
                    name,
                    vec![Cause::invalid("spec.clusterIPs", &json!([requested]), why)],
                )
            };
            let ip: Ipv4Addr = requested
                .parse()
                .map_err(|_| invalid("must be a valid IP address"))?;
            if !self.in_range(ip) {
                return Err(invalid(&format!(
                    "failed to allocate IP {ip}: the provided IP ({ip}) is not in the valid range. The range of valid IPs is {}/{}",
                    self.network.cidr.0, self.network.cidr.1
                )));
            }
            if !self.take(format!("{IP_PREFIX}{ip}"), owner).await? {
                return Err(invalid(&format!(
                    "failed to allocate IP {ip}: provided IP is already allocated"
                )));
            }
            held.ips.push(ip);
            spec["clusterIPs"] = json!([ip.to_string()]);
        }
        spec["ipFamilies"] = json!(["IPv4"]);
        spec["ipFamilyPolicy"] = json!("SingleStack");
        Ok(())
    }

    /// Node ports for the ports of a NodePort or LoadBalancer service that lack one, and the
    /// requested ones, skipping those `keep` already holds (an update's old ports).
    async fn node_ports(
        &self,
        rt: &ResourceType,
        name: &str,
        svc: &mut Value,
        owner: &str,
        keep: &[u16],
        held: &mut Held,
    ) -> Result<(), ApiError> {
        let ty = svc["spec"]
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("ClusterIP")
            .to_string();
        if ty != "NodePort" && ty != "LoadBalancer" {
            if let Some(spec) = svc["spec"].as_object_mut() {
                spec.remove("healthCheckNodePort");
            }
            return Ok(());
        }
        let count = svc["spec"]["ports"].as_array().map_or(0, Vec::len);
        for i in 0..count {
            let wanted = svc["spec"]["ports"][i]["nodePort"].as_u64().unwrap_or(0);
            let field = format!("spec.ports[{i}].nodePort");
            let port = self
                .node_port(rt, name, owner, wanted, &field, keep, held)
                .await?;
            svc["spec"]["ports"][i]["nodePort"] = port.into();
        }
        // A LoadBalancer that keeps client addresses gets a port its nodes answer health
        // checks on (upstream's healthCheckNodePort).
        let local = svc["spec"]["externalTrafficPolicy"] == "Local";
        if ty == "LoadBalancer" && local {
            let wanted = svc["spec"]["healthCheckNodePort"].as_u64().unwrap_or(0);
            let port = self
                .node_port(
                    rt,
                    name,
                    owner,
                    wanted,
                    "spec.healthCheckNodePort",
                    keep,
                    held,
                )
                .await?;
            svc["spec"]["healthCheckNodePort"] = port.into();
        } else if let Some(spec) = svc["spec"].as_object_mut() {
            spec.remove("healthCheckNodePort");
        }
        Ok(())
    }

    /// One node port for `field`: `wanted` if it is set (in the range, and free unless
    /// `keep` holds it already), else any free one; what is newly taken goes in `held`.
    #[allow(clippy::too_many_arguments)]
    async fn node_port(
        &self,
        rt: &ResourceType,
        name: &str,
        owner: &str,
        wanted: u64,
        field: &str,
        keep: &[u16],
        held: &mut Held,
    ) -> Result<u16, ApiError> {
        let range = &self.network.node_ports;
        if wanted != 0 {
            let invalid = |why: &str| {
                ApiError::invalid(rt, name, vec![Cause::invalid(field, &json!(wanted), why)])
            };
            let Some(port) = u16::try_from(wanted).ok().filter(|p| range.contains(p)) else {
                return Err(invalid(&format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    range.start(),
                    range.end()
                )));
            };
            if keep.contains(&port) || held.ports.contains(&port) {
                return Ok(port);
            }
            if !self.take(format!("{PORT_PREFIX}{port}"), owner).await? {
                return Err(invalid("provided port is already allocated"));
            }
            held.ports.push(port);
            return Ok(port);
        }
        let span = u32::from(range.end() - range.start()) + 1;
        let start = random_u32() % span;
        for k in 0..span {
            let port = range.start() + ((start + k) % span) as u16;
            if self.take(format!("{PORT_PREFIX}{port}"), owner).await? {
                held.ports.push(port);
                return Ok(port);
            }
        }
        Err(ApiError::internal(
            "failed to allocate a node port: the range is full",
        ))
    }

    /// Gives a new service its cluster IP and node ports. On error nothing stays held.
    pub async fn allocate(
        &self,
        rt: &ResourceType,
        svc: &mut Value,
        owner: &str,
    ) -> Result<Held, ApiError> {
        let name = skiff_api::object::name(svc).unwrap_or_default().to_string();
        let mut held = Held::default();
        let result = async {
            self.cluster_ip(rt, &name, svc, owner, &mut held).await?;
            self.node_ports(rt, &name, svc, owner, &[], &mut held).await
        }
        .await;
        match result {
            Ok(()) => Ok(held),
            Err(e) => {
                self.release(&held).await;
                Err(e)
            }
        }
    }

    /// An update: the cluster IP cannot change (it is kept when omitted); node ports are
    /// allocated for new ports and released when no longer used. Answers what was newly
    /// taken (to give back if the update fails) and what to release once it succeeded.
    pub async fn reallocate(
        &self,
        rt: &ResourceType,
        old: &Value,
        new: &mut Value,
        owner: &str,
    ) -> Result<(Held, Held), ApiError> {
        let name = skiff_api::object::name(old).unwrap_or_default().to_string();
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let missing = new["spec"]
                .get(field)
                .is_none_or(|v| v.is_null() || v == "");
            if missing && let Some(v) = old["spec"].get(field) {
                new["spec"][field] = v.clone();
            }
        }
        if new["spec"].get("clusterIP") != old["spec"].get("clusterIP") {
            let value = new["spec"].get("clusterIP").cloned().unwrap_or(Value::Null);
            return Err(ApiError::invalid(
                rt,
                &name,
                vec![Cause::invalid(
                    "spec.clusterIPs[0]",
                    &value,
                    "may not change once set",
                )],
            ));
        }
        let before = Self::held_by(old);
        let mut taken = Held::default();
        if let Err(e) = self
            .node_ports(rt, &name, new, owner, &before.ports, &mut taken)
            .await
        {
            self.release(&taken).await;
            return Err(e);
        }
        let after = Self::held_by(new);
        let release = Held {
            ips: Vec::new(),
            ports: before
                .ports
                .into_iter()
                .filter(|p| !after.ports.contains(p))
                .collect(),
        };
        Ok((taken, release))
    }

    /// Records an address already in use (the built-in `kubernetes` Service's).
    /// Takes `ip` for `owner` (a built-in Service's fixed address); answers whether
    /// `owner` holds it — false when another Service does.
    pub async fn reserve_ip(&self, ip: Ipv4Addr, owner: &str) -> Result<bool, ApiError> {
        let key = format!("{IP_PREFIX}{ip}");
        if self.take(key.clone(), owner).await? {
            return Ok(true);
        }
        let held = self.store.get(&key).await.map_err(store_failure)?;
        Ok(held.kv.is_some_and(|kv| record_owner(&kv.value) == owner))
    }
}
