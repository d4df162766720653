//! Services and EndpointSlices, as the API serves them → the proxy's model, as kube-proxy
//! reads them: only Services with a cluster IP (not headless, not ExternalName), IPv4
//! slices, a slice's port matched to the Service's by name and protocol, an endpoint listed
//! by several slices counted once.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

use crate::model::{Endpoint, Protocol, ServicePort};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds` (3 hours).
const DEFAULT_AFFINITY_SECONDS: u32 = 10800;

/// The service ports of one Service (none if it is not proxied).
pub fn service_ports(service: &Service) -> Vec<ServicePort> {
    let (Some(spec), Some(namespace), Some(name)) = (
        service.spec.as_ref(),
        service.metadata.namespace.as_deref(),
        service.metadata.name.as_deref(),
    ) else {
        return Vec::new();
    };
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return Vec::new(); // headless ("None"), ExternalName, or IPv6
    };
    if kind == "ExternalName" {
        return Vec::new();
    }
    let external_ips: Vec<Ipv4Addr> = spec
        .external_ips
        .iter()
        .flatten()
        .map(String::as_str)
        .chain(
            service
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| lb.ingress.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|i| i.ip.as_deref()),
        )
        .filter_map(|ip| ip.parse().ok())
        .collect();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(DEFAULT_AFFINITY_SECONDS)
    });
    let node_ports = matches!(kind, "NodePort" | "LoadBalancer");
    spec.ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let protocol = Protocol::parse(p.protocol.as_deref().unwrap_or("TCP"))?;
            let port = u16::try_from(p.port).ok()?;
            let node_port = p
                .node_port
                .filter(|_| node_ports)
                .and_then(|n| u16::try_from(n).ok());
            let mut sp = ServicePort {
                namespace: namespace.to_string(),
                name: name.to_string(),
                port_name: p.name.clone().unwrap_or_default(),
                protocol,
                cluster_ip,
                port,
                node_port,
                external_ips: external_ips.clone(),
                affinity_timeout,
                external_local: false,
                internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
                health_check_node_port: None,
            };
            sp.external_local =
                sp.has_external() && spec.external_traffic_policy.as_deref() == Some("Local");
            if sp.external_local && kind == "LoadBalancer" {
                sp.health_check_node_port = spec
                    .health_check_node_port
                    .and_then(|p| u16::try_from(p).ok());
            }
            Some(sp)
        })
        .collect()
}

/// The endpoints `slices` (of one Service) list for `port`, each once, in address order.
pub fn endpoints_of<'a>(
    port: &ServicePort,
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    node_name: &str,
) -> Vec<Endpoint> {
    let mut found: BTreeMap<(Ipv4Addr, u16), Endpoint> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(target) = slice.ports.iter().flatten().find_map(|p| {
            let same_name = p.name.as_deref().unwrap_or("") == port.port_name;
            let same_protocol =
                Protocol::parse(p.protocol.as_deref().unwrap_or("TCP")) == Some(port.protocol);
            (same_name && same_protocol)
                .then_some(p.port)
                .flatten()
                .and_then(|n| u16::try_from(n).ok())
        }) else {
            continue;
        };
        for e in &slice.endpoints {
            let Some(ip) = e.addresses.first().and_then(|a| a.parse().ok()) else {
                continue;
            };
            let conditions = e.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let endpoint = Endpoint {
                ip,
                port: target,
                ready,
                serving: conditions.and_then(|c| c.serving).unwrap_or(ready),
                terminating: conditions.and_then(|c| c.terminating).unwrap_or(false),
                local: e.node_name.as_deref() == Some(node_name),
            };
            found.entry((ip, target)).or_insert(endpoint);
        }
    }
    found.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(json: serde_json::Value) -> Service {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn ports_of_a_load_balancer_carry_node_ports_and_ingress_addresses() {
        let s = service(serde_json::json!({
            "metadata": {"name": "hello-node", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "clusterIP": "10.43.0.30",
                "externalTrafficPolicy": "Local", "sessionAffinity": "ClientIP",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 31234},
                          {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 31235}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}, {"hostname": "lb.example"}]}}
        }));
        let ports = service_ports(&s);
        assert_eq!(ports.len(), 2);
        let http = &ports[0];
        assert_eq!(http.id(), "default/hello-node/tcp/http");
        assert_eq!(
            (http.port, http.node_port, http.external_ips.as_slice()),
            (8080, Some(31234), &[Ipv4Addr::new(192, 0, 2, 7)][..])
        );
        assert_eq!(http.affinity_timeout, Some(DEFAULT_AFFINITY_SECONDS));
        assert!(http.external_local && !http.internal_local);
        assert_eq!(ports[1].protocol, Protocol::Udp);
    }

    #[test]
    fn headless_external_name_and_cluster_ip_only_services_are_read_as_upstream() {
        let headless = service(serde_json::json!({
            "metadata": {"name": "h", "namespace": "default"},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]}
        }));
        assert!(service_ports(&headless).is_empty());
        let external = service(serde_json::json!({
            "metadata": {"name": "e", "namespace": "default"},
            "spec": {"type": "ExternalName", "externalName": "example.com"}
        }));
        assert!(service_ports(&external).is_empty());
        let plain = service(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.9", "externalTrafficPolicy": "Local",
                "ports": [{"port": 80, "nodePort": 30001}]}
        }));
        let ports = service_ports(&plain);
        // A ClusterIP Service has no node port to answer on, whatever the field says.
        assert_eq!((ports[0].node_port, ports[0].external_local), (None, false));
    }

    #[test]
    fn endpoints_match_the_port_by_name_and_protocol_and_count_once() {
        let s = service(serde_json::json!({
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.9", "ports": [{"name": "http", "port": 80}]}
        }));
        let port = &service_ports(&s)[0];
        let slice = |endpoints: serde_json::Value, port_name: &str| -> EndpointSlice {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web-x", "namespace": "default"},
                "addressType": "IPv4",
                "ports": [{"name": port_name, "port": 8080, "protocol": "TCP"}],
                "endpoints": endpoints,
            }))
            .unwrap()
        };
        let a = slice(
            serde_json::json!([
                {"addresses": ["10.42.0.5"], "nodeName": "node-a",
                 "conditions": {"ready": false, "serving": true, "terminating": true}},
                {"addresses": ["10.42.1.5"], "nodeName": "node-b"}
            ]),
            "http",
        );
        let b = slice(serde_json::json!([{"addresses": ["10.42.1.5"]}]), "http");
        let other = slice(serde_json::json!([{"addresses": ["10.42.2.5"]}]), "metrics");
        let eps = endpoints_of(port, [&a, &b, &other], "node-a");
        assert_eq!(eps.len(), 2);
        assert_eq!(
            (
                eps[0].ip,
                eps[0].port,
                eps[0].ready,
                eps[0].serving,
                eps[0].terminating,
                eps[0].local
            ),
            (Ipv4Addr::new(10, 42, 0, 5), 8080, false, true, true, true)
        );
        assert!(eps[1].ready && !eps[1].local);
    }
}
