//! The pod subresources a node answers — `log`, `exec`, `attach`, `portforward` — relayed to
//! the node agent that runs the pod, as upstream's API server relays them to the kubelet.
//!
//! The server checks what it can know itself (the pod exists, is on a node, names a real
//! container), then opens TLS to the agent's endpoint from the Node's status (its InternalIP,
//! then ExternalIP, then Hostname, at `daemonEndpoints.kubeletEndpoint.Port`), presenting the
//! cluster's kubelet-client certificate. A log streams back as it is read; an upgrade
//! (WebSocket or SPDY) is answered with the agent's 101 and the two connections are joined
//! byte for byte, so the protocols themselves live only in the agent.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use rustls::pki_types::ServerName;
use serde_json::Value;
use skiff_api::{ApiError, Subresource};
use tokio::net::TcpStream;

use crate::request::ResourceRequest;
use crate::state::ApiState;

const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// Headers that belong to the hop to the API server, not to the agent.
const HOP_HEADERS: &[header::HeaderName] = &[
    header::AUTHORIZATION,
    header::HOST,
    header::CONTENT_LENGTH,
    header::TRANSFER_ENCODING,
];

/// How the API server reaches node agents.
pub struct NodeDialer {
    tls: tokio_rustls::TlsConnector,
}

impl NodeDialer {
    pub fn new(
        client_cert_pem: &str,
        client_key_pem: &str,
    ) -> Result<NodeDialer, skiff_tls::TlsError> {
        let config = skiff_tls::client_config_any_server(client_cert_pem, client_key_pem)?;
        Ok(NodeDialer {
            tls: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// Sends `request` to the agent at `host:port` and answers its response; a 101 joins the
    /// caller's connection (from `upgrade`) to the agent's.
    async fn relay(
        &self,
        host: &str,
        port: u16,
        request: hyper::Request<Body>,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Result<Response, ApiError> {
        let dial_error = |e: &dyn std::fmt::Display| {
            ApiError::unavailable(format!(
                "error dialing backend: the node agent at {host}:{port}: {e}"
            ))
        };
        let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect((host, port)))
            .await
            .map_err(|_| dial_error(&"timed out"))?
            .map_err(|e| dial_error(&e))?;
        let _ = tcp.set_nodelay(true);
        let name = ServerName::try_from(host.to_string()).map_err(|e| dial_error(&e))?;
        let tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| dial_error(&e))?;
        let response = skiff_tls::relay(tls, request, upgrade)
            .await
            .map_err(|e| match e {
                skiff_tls::RelayError::UnexpectedUpgrade => ApiError::bad_request(e.to_string()),
                e => dial_error(&e),
            })?;
        Ok(response.map(Body::new))
    }
}

/// Answers `pods/<name>/{log,exec,attach,portforward}`.
pub async fn serve(
    state: Arc<ApiState>,
    rr: ResourceRequest,
    req: Request,
) -> Result<Response, ApiError> {
    let sub = rr.subresource.expect("only node streams come here");
    let namespace = rr.namespace.as_deref().unwrap_or("default");
    let name = rr.name.as_deref().unwrap_or_default();
    let pod = state
        .objects
        .get(rr.rt(), Some(namespace), name)
        .await?
        .object;
    let query = req.uri().query().unwrap_or("").to_string();
    let uid = pod["metadata"]["uid"].as_str().unwrap_or_default();
    let path = match sub {
        Subresource::PortForward => format!("/portForward/{namespace}/{name}/{uid}"),
        _ => {
            let container = container_of(&pod, name, &query)?;
            match sub {
                Subresource::Log => format!("/containerLogs/{namespace}/{name}/{container}"),
                Subresource::Exec => format!("/exec/{namespace}/{name}/{uid}/{container}"),
                _ => format!("/attach/{namespace}/{name}/{uid}/{container}"),
            }
        }
    };
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let nodes = &crate::registry::core::node::RESOURCE;
    let node = state.objects.get(nodes, None, node_name).await?.object;
    let (host, port) = agent_endpoint(&node).ok_or_else(|| {
        ApiError::unavailable(format!(
            "node {node_name} reports no address or port for its agent"
        ))
    })?;
    forward_to_agent(&state, &host, port, path, req).await
}

/// Relays `req` (its method, headers, query, body; an upgrade joined) to `path` on the node
/// agent at `host:port`, and answers the agent's response.
pub(crate) async fn forward_to_agent(
    state: &ApiState,
    host: &str,
    port: u16,
    path: String,
    mut req: Request,
) -> Result<Response, ApiError> {
    let target = match req.uri().query() {
        Some(query) if !query.is_empty() => format!("{path}?{query}"),
        _ => path,
    };
    let upgrade = req
        .headers()
        .contains_key(header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut forward = hyper::Request::builder()
        .method(parts.method)
        .uri(target)
        .body(body)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    copy_headers(&parts.headers, forward.headers_mut());
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    if let Ok(v) = HeaderValue::from_str(&host_header) {
        forward.headers_mut().insert(header::HOST, v);
    }
    state.nodes.relay(host, port, forward, upgrade).await
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if !HOP_HEADERS.contains(k) {
            to.append(k.clone(), v.clone());
        }
    }
}

/// The container a request is for: `?container=`, else the pod's only container, else a
/// 400 naming the choices (upstream's wording).
fn container_of(pod: &Value, pod_name: &str, query: &str) -> Result<String, ApiError> {
    let names = |list: &str| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let (containers, init, ephemeral) = (
        names("containers"),
        names("initContainers"),
        names("ephemeralContainers"),
    );
    let requested = serde_urlencoded::from_str::<Vec<(String, String)>>(query)
        .unwrap_or_default()
        .into_iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty());
    match requested {
        Some(c) if containers.contains(&c) || init.contains(&c) || ephemeral.contains(&c) => Ok(c),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {pod_name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => {
            let mut message = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                containers.join(" ")
            );
            if !init.is_empty() {
                message.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(message))
        }
    }
}

/// Where a node's agent listens: the first InternalIP, ExternalIP or Hostname address and
/// the kubelet endpoint's port.
pub(crate) fn agent_endpoint(node: &Value) -> Option<(String, u16)> {
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    let addresses = node["status"]["addresses"].as_array()?;
    let host = ["InternalIP", "ExternalIP", "Hostname"]
        .iter()
        .find_map(|kind| {
            addresses
                .iter()
                .find(|a| a["type"] == *kind)
                .and_then(|a| a["address"].as_str())
        })?;
    Some((
        host.to_string(),
        u16::try_from(port).ok().filter(|p| *p > 0)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_container_is_named_defaulted_or_a_clear_error() {
        let one = json!({"spec": {"containers": [{"name": "web"}]}});
        assert_eq!(container_of(&one, "p", "").unwrap(), "web");
        assert_eq!(
            container_of(&one, "p", "container=web&follow=true").unwrap(),
            "web"
        );
        let err = container_of(&one, "p", "container=db").unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "container db is not valid for pod p")
        );
        let two = json!({"spec": {
            "containers": [{"name": "a"}, {"name": "b"}],
            "initContainers": [{"name": "setup"}],
        }});
        assert_eq!(container_of(&two, "p", "container=setup").unwrap(), "setup");
        assert_eq!(
            container_of(&two, "p", "").unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [setup]"
        );
    }

    #[test]
    fn the_agent_is_found_by_address_preference_and_port() {
        let node = json!({"status": {
            "addresses": [
                {"type": "Hostname", "address": "node-1"},
                {"type": "InternalIP", "address": "10.0.0.5"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        }});
        assert_eq!(agent_endpoint(&node), Some(("10.0.0.5".into(), 10250)));
        let no_port = json!({"status": {"addresses": [{"type": "Hostname", "address": "n"}]}});
        assert_eq!(agent_endpoint(&no_port), None);
    }
}
