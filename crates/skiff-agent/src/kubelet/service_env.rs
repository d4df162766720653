//! Service links: the environment variables a container gets for the services it could
//! reach (`enableServiceLinks`), as upstream's kubelet writes them — `{NAME}_SERVICE_HOST`
//! and `_SERVICE_PORT` (plus one per named port), and Docker's link variables
//! (`{NAME}_PORT`, `{NAME}_PORT_{port}_{PROTO}` and its `_PROTO`, `_PORT`, `_ADDR`).
//! The `kubernetes` service of the `default` namespace is always there: it is how a
//! program finds the API from inside a pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// Every service-link variable for a pod in `namespace`, from the cluster's `services`.
pub fn service_links<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    namespace: &str,
    enable_service_links: bool,
) -> BTreeMap<String, String> {
    // Name → service; the pod's namespace's own win over the API's `kubernetes` service.
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for service in services {
        if cluster_ip(service).is_none() {
            continue;
        }
        let name = service.metadata.name.clone().unwrap_or_default();
        let ns = service.metadata.namespace.as_deref().unwrap_or_default();
        if ns == "default" && name == "kubernetes" {
            chosen.entry(name).or_insert(service);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, service);
        }
    }
    let mut env = BTreeMap::new();
    for (name, service) in chosen {
        let ip = cluster_ip(service).unwrap_or_default();
        let prefix = name.to_uppercase().replace('-', "_");
        let ports = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        env.insert(format!("{prefix}_SERVICE_HOST"), ip.to_string());
        if let Some(first) = ports.first() {
            env.insert(format!("{prefix}_SERVICE_PORT"), first.port.to_string());
        }
        for (i, port) in ports.iter().enumerate() {
            if let Some(port_name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let port_name = port_name.to_uppercase().replace('-', "_");
                env.insert(
                    format!("{prefix}_SERVICE_PORT_{port_name}"),
                    port.port.to_string(),
                );
            }
            let protocol = port.protocol.as_deref().unwrap_or("TCP");
            let lower = protocol.to_lowercase();
            let host_port = if ip.contains(':') {
                format!("[{ip}]:{}", port.port)
            } else {
                format!("{ip}:{}", port.port)
            };
            let url = format!("{lower}://{host_port}");
            if i == 0 {
                env.insert(format!("{prefix}_PORT"), url.clone());
            }
            let p = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            env.insert(format!("{p}_PROTO"), lower);
            env.insert(format!("{p}_PORT"), port.port.to_string());
            env.insert(format!("{p}_ADDR"), ip.to_string());
            env.insert(p, url);
        }
    }
    env
}

/// A service's cluster IP, unless it has none (headless or not yet allocated).
fn cluster_ip(service: &Service) -> Option<&str> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports},
        }))
        .unwrap()
    }

    #[test]
    fn variables_as_upstreams_kubelet_writes_them() {
        let services = [
            service(
                "default",
                "kubernetes",
                "10.43.0.1",
                serde_json::json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            service(
                "shop",
                "web-front",
                "10.43.0.20",
                serde_json::json!([{"name": "http", "port": 80}, {"port": 53, "protocol": "UDP"}]),
            ),
            service(
                "shop",
                "headless",
                "None",
                serde_json::json!([{"port": 80}]),
            ),
            service(
                "other",
                "elsewhere",
                "10.43.0.30",
                serde_json::json!([{"port": 80}]),
            ),
        ];
        let env = service_links(&services, "shop", true);
        let expected: BTreeMap<String, String> = [
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.43.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.43.0.1"),
            ("WEB_FRONT_SERVICE_HOST", "10.43.0.20"),
            ("WEB_FRONT_SERVICE_PORT", "80"),
            ("WEB_FRONT_SERVICE_PORT_HTTP", "80"),
            ("WEB_FRONT_PORT", "tcp://10.43.0.20:80"),
            ("WEB_FRONT_PORT_80_TCP", "tcp://10.43.0.20:80"),
            ("WEB_FRONT_PORT_80_TCP_PROTO", "tcp"),
            ("WEB_FRONT_PORT_80_TCP_PORT", "80"),
            ("WEB_FRONT_PORT_80_TCP_ADDR", "10.43.0.20"),
            ("WEB_FRONT_PORT_53_UDP", "udp://10.43.0.20:53"),
            ("WEB_FRONT_PORT_53_UDP_PROTO", "udp"),
            ("WEB_FRONT_PORT_53_UDP_PORT", "53"),
            ("WEB_FRONT_PORT_53_UDP_ADDR", "10.43.0.20"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
        // Without service links only the API's own service is there.
        let env = service_links(&services, "shop", false);
        assert!(env.keys().all(|k| k.starts_with("KUBERNETES_")), "{env:?}");
        assert_eq!(env.len(), 8);
    }
}
