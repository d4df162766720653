//! The proxier: keeps the node's table equal to what the cluster's Services and
//! EndpointSlices ask for (read from the agent's informers). Every change to either wakes
//! one sync (changes that arrive during
//! a sync are taken by the next, so syncs never queue up); a sync computes the whole table
//! (`rules::table`), then sends the kernel only the difference from what it last applied,
//! as one transaction.
//!
//! Invariants:
//! - `applied` is exactly what the kernel was last given, or `None` when that is not known
//!   (start, a refused transaction, the table found missing); then the next sync replaces
//!   the whole table (a full sync), as kube-proxy does after a failed partial one.
//! - The table is replaced, never patched, on start: an agent restart rebuilds the same
//!   rules from the API, whatever the kernel held.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use skiff_client::Store;
use skiff_net::nftables::{self, NftError, Table};
use skiff_net::{Netns, WiringError, sysctl};

use crate::from_api::{SERVICE_NAME_LABEL, endpoints_of, service_ports};
use crate::health::{self, Health, HealthServers};
use crate::model::{Endpoint, ServicePort};
use crate::rules::{self, ProxyConfig, TABLE};

/// How often the kernel is checked for the table (someone ran `nft flush ruleset`).
const DRIFT_CHECK: Duration = Duration::from_secs(30);
/// How often the whole table is replaced even when nothing seems amiss (kube-proxy's
/// full-sync period).
const FULL_SYNC: Duration = Duration::from_secs(3600);
/// The wait before a sync that failed is tried again.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("programming the service rules: {0}")]
    Nft(#[from] NftError),
    #[error("preparing the node for service traffic: {0}")]
    Sysctl(#[from] WiringError),
}

/// What one sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncKind {
    /// The kernel already held the table.
    Nothing,
    Partial,
    Full,
}

#[derive(Debug, Clone, Copy)]
pub struct SyncReport {
    pub kind: SyncKind,
    /// Lines of the nft transaction.
    pub statements: usize,
    /// Computing the table and the difference.
    pub compute: Duration,
    /// The kernel's transaction (nft).
    pub apply: Duration,
}

pub struct Proxier {
    netns: Netns,
    node_name: String,
    config: ProxyConfig,
    applied: Option<Table>,
    last_full: Option<Instant>,
    health: BTreeMap<u16, Health>,
}

impl Proxier {
    pub fn new(netns: Netns, node_name: &str, config: ProxyConfig) -> Proxier {
        Proxier {
            netns,
            node_name: node_name.to_string(),
            config,
            applied: None,
            last_full: None,
            health: BTreeMap::new(),
        }
    }

    /// Every proxied service port with its endpoints.
    fn service_ports(
        &self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> Vec<(ServicePort, Vec<Endpoint>)> {
        let mut by_service: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
        for slice in slices {
            let meta = &slice.metadata;
            if let (Some(ns), Some(service)) = (
                meta.namespace.as_deref(),
                meta.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)),
            ) {
                by_service.entry((ns, service)).or_default().push(slice);
            }
        }
        let mut ports = Vec::new();
        for service in services {
            let key = (
                service.metadata.namespace.as_deref().unwrap_or(""),
                service.metadata.name.as_deref().unwrap_or(""),
            );
            let slices = by_service.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            for port in service_ports(service) {
                let endpoints = endpoints_of(&port, slices.iter().copied(), &self.node_name);
                ports.push((port, endpoints));
            }
        }
        ports
    }

    /// The health check ports the last sync found wanted.
    pub fn health(&self) -> &BTreeMap<u16, Health> {
        &self.health
    }

    /// Brings the kernel's table to what these Services and EndpointSlices ask for.
    pub fn sync(
        &mut self,
        services: &[Arc<Service>],
        slices: &[Arc<EndpointSlice>],
    ) -> Result<SyncReport, ProxyError> {
        let started = Instant::now();
        let ports = self.service_ports(services, slices);
        let view = || ports.iter().map(|(p, e)| (p, e.as_slice()));
        let desired = rules::table(&self.config, view());
        self.health = health::wanted(view());
        let full_due = self.last_full.is_none_or(|t| t.elapsed() >= FULL_SYNC);
        let partial = match &self.applied {
            Some(old) if !full_due => desired.update(old),
            _ => None,
        };
        let (kind, script) = match partial {
            Some(s) if s.is_empty() => (SyncKind::Nothing, s),
            Some(s) => (SyncKind::Partial, s),
            None => (SyncKind::Full, desired.create()),
        };
        let compute = started.elapsed();
        let applying = Instant::now();
        if kind != SyncKind::Nothing {
            // Unknown until the kernel answers.
            self.applied = None;
            nftables::apply(&self.netns, &script)?;
        }
        if kind == SyncKind::Full {
            self.last_full = Some(Instant::now());
        }
        self.applied = Some(desired);
        Ok(SyncReport {
            kind,
            statements: script.lines().count(),
            compute,
            apply: applying.elapsed(),
        })
    }

    /// Whether the kernel still has the table; if not, the next sync is a full one.
    pub fn check_drift(&mut self) -> Result<bool, ProxyError> {
        let present = nftables::has_chain(&self.netns, "ip", TABLE, "services")?;
        if !present && self.applied.is_some() {
            tracing::warn!(
                "the service rules' table ip {TABLE} is gone from the kernel; rebuilding it"
            );
            self.applied = None;
        }
        Ok(present)
    }
}

/// The kernel settings service traffic needs in the node's namespace: forwarding (DNAT to
/// pods is routed), and bridged traffic passing the IP hooks, so a pod's reply to another
/// pod on the same bridge is un-DNATed (kube-proxy's `br_netfilter` requirement). Without
/// the bridge module, pods on one node reach each other's Services unreliably; that is
/// logged, not fatal.
pub fn prepare_node(netns: &Netns) -> Result<(), ProxyError> {
    sysctl::write(netns, "net/ipv4/ip_forward", "1")?;
    let bridged = "net/bridge/bridge-nf-call-iptables";
    match sysctl::read(netns, bridged)? {
        Some(_) => sysctl::write(netns, bridged, "1")?,
        None => tracing::warn!(
            "the kernel has no {bridged} (br_netfilter is not loaded): a pod reaching a Service \
             whose endpoint is on its own node may get no answer; run `modprobe br_netfilter`"
        ),
    }
    Ok(())
}

/// Removes skiff's service rules from `netns` (`--proxy-mode none`, `skiff node reset`).
pub fn remove_rules(netns: &Netns) -> Result<(), ProxyError> {
    nftables::apply(netns, &Table::delete_script("ip", TABLE))?;
    Ok(())
}

/// Runs the proxier until the task is dropped: a sync whenever `wake` is notified (the
/// caller's informers on every Service and EndpointSlice, listed already, notify it on
/// each change), and drift checks.
pub async fn run(
    mut proxier: Proxier,
    service_store: Store<Service>,
    slice_store: Store<EndpointSlice>,
    wake: Arc<tokio::sync::Notify>,
) -> Result<(), ProxyError> {
    let netns = proxier.netns.clone();
    tokio::task::spawn_blocking(move || prepare_node(&netns))
        .await
        .expect("preparing the node does not panic")?;
    let mut health_servers = HealthServers::new(proxier.netns.clone());
    let mut last_check = Instant::now();
    loop {
        let (svcs, eps) = (service_store.list(), slice_store.list());
        let (back, result) = tokio::task::spawn_blocking(move || {
            let mut p = proxier;
            if last_check.elapsed() >= DRIFT_CHECK
                && let Err(e) = p.check_drift()
            {
                tracing::warn!("checking the service rules: {e}");
            }
            let result = p.sync(&svcs, &eps);
            (p, result)
        })
        .await
        .expect("a sync does not panic");
        proxier = back;
        health_servers.sync(proxier.health()).await;
        if last_check.elapsed() >= DRIFT_CHECK {
            last_check = Instant::now();
        }
        match result {
            Ok(report) if report.kind != SyncKind::Nothing => tracing::debug!(
                kind = ?report.kind,
                statements = report.statements,
                compute_ms = report.compute.as_secs_f64() * 1e3,
                apply_ms = report.apply.as_secs_f64() * 1e3,
                "service rules synced"
            ),
            Ok(_) => {}
            Err(e) => {
                tracing::warn!("{e}; retrying with a full sync");
                tokio::time::sleep(RETRY).await;
                continue;
            }
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(DRIFT_CHECK) => {}
        }
    }
}
