//! Service health check ports (kube-proxy's service health server): a LoadBalancer Service
//! with `externalTrafficPolicy: Local` has a `healthCheckNodePort`, and every node answers
//! HTTP there — 200 when it has endpoints of the Service, 503 when not — so an outside load
//! balancer sends traffic only to nodes that keep it. The body is kube-proxy's:
//! `{"service":{"namespace":"…","name":"…"},"localEndpoints":N,"serviceProxyHealthy":true}`.
//!
//! Listeners are made in the node's network namespace and live as long as their port is
//! wanted; a change of counts is seen by the next request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use skiff_net::Netns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::model::Endpoint;
use crate::model::{ServicePort, categorize};

/// What one health port reports: the Service and its endpoints on this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

/// The health ports these service ports want, with what each reports.
pub fn wanted<'a>(
    ports: impl IntoIterator<Item = (&'a ServicePort, &'a [Endpoint])>,
) -> BTreeMap<u16, Health> {
    let mut wanted = BTreeMap::new();
    for (port, endpoints) in ports {
        let Some(health_port) = port.health_check_node_port else {
            continue;
        };
        let local = categorize(port, endpoints).local.len();
        let entry = wanted.entry(health_port).or_insert(Health {
            namespace: port.namespace.clone(),
            name: port.name.clone(),
            local_endpoints: 0,
        });
        entry.local_endpoints = entry.local_endpoints.max(local);
    }
    wanted
}

/// The answer to a health check.
pub fn response(health: &Health) -> String {
    let (status, body) = (
        if health.local_endpoints > 0 {
            "200 OK"
        } else {
            "503 Service Unavailable"
        },
        format!(
            r#"{{"service":{{"namespace":"{}","name":"{}"}},"localEndpoints":{},"serviceProxyHealthy":true}}"#,
            health.namespace, health.name, health.local_endpoints
        ),
    );
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

struct Listener {
    health: Arc<Mutex<Health>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The node's health servers.
pub struct HealthServers {
    netns: Netns,
    listeners: HashMap<u16, Listener>,
}

impl HealthServers {
    pub fn new(netns: Netns) -> HealthServers {
        HealthServers {
            netns,
            listeners: HashMap::new(),
        }
    }

    /// Serves exactly `wanted`: new ports listened on, gone ones closed, counts updated.
    pub async fn sync(&mut self, wanted: &BTreeMap<u16, Health>) {
        self.listeners.retain(|port, _| wanted.contains_key(port));
        for (port, health) in wanted {
            if let Some(listener) = self.listeners.get(port) {
                *listener.health.lock().expect("not poisoned") = health.clone();
                continue;
            }
            let netns = self.netns.clone();
            let port = *port;
            let bound = tokio::task::spawn_blocking(move || {
                netns.bind_tcp(std::net::SocketAddr::from(([0, 0, 0, 0], port)))
            })
            .await
            .expect("binding does not panic");
            let listener = match bound.and_then(|l| {
                l.set_nonblocking(true)?;
                tokio::net::TcpListener::from_std(l)
            }) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(
                        "the health check port {port} of {}/{}: {e}",
                        health.namespace,
                        health.name
                    );
                    continue;
                }
            };
            let shared = Arc::new(Mutex::new(health.clone()));
            let task = tokio::spawn(serve(listener, shared.clone()));
            self.listeners.insert(
                port,
                Listener {
                    health: shared,
                    task,
                },
            );
        }
    }
}

async fn serve(listener: tokio::net::TcpListener, health: Arc<Mutex<Health>>) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let health = health.clone();
        tokio::spawn(async move {
            // The request itself does not matter (any path answers), only that it came.
            let mut buf = [0u8; 1024];
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), conn.read(&mut buf)).await;
            let answer = response(&health.lock().expect("not poisoned"));
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::{ep, port};

    #[test]
    fn health_ports_count_this_nodes_ready_endpoints() {
        let mut p = port();
        p.node_port = Some(30080);
        p.external_local = true;
        p.health_check_node_port = Some(32000);
        let here = ep(2, true, true, false, true);
        let there = ep(3, true, true, false, false);
        let with_local = [here, there];
        let w = wanted([(&p, &with_local[..])]);
        assert_eq!(w[&32000].local_endpoints, 1);
        assert!(response(&w[&32000]).starts_with("HTTP/1.1 200 OK"));
        assert!(response(&w[&32000]).ends_with(
            r#"{"service":{"namespace":"default","name":"web"},"localEndpoints":1,"serviceProxyHealthy":true}"#
        ));
        let only_there = [there];
        let w = wanted([(&p, &only_there[..])]);
        assert!(response(&w[&32000]).starts_with("HTTP/1.1 503 Service Unavailable"));
        let mut plain = port();
        plain.health_check_node_port = None;
        assert!(wanted([(&plain, &with_local[..])]).is_empty());
    }
}
