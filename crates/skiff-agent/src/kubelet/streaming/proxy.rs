//! `/proxy/{namespace}/{pod}/{uid}/{scheme}/{port}/{path}`: the API server's `pods/proxy`
//! and `services/proxy` requests, relayed to the pod at its address and port. The connection
//! is opened from inside the pod's network namespace (the pod's address is its own there),
//! so a pod is reachable through its node whatever the API server's place in the network;
//! `https` pods are spoken to over TLS without checking their certificate, as upstream's API
//! server does. Upgrades (WebSocket) pass through.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Uri, header};
use axum::response::Response;
use skiff_api::ApiError;
use tokio_rustls::rustls::pki_types::ServerName;

use super::Containers;
use super::server::{pod_with_uid, status};
use crate::kubelet::probe::in_netns;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The path parameters: namespace, pod, uid, scheme, port (and the rest of the path).
type Target = (String, String, String, String, u16);

pub async fn proxy_root(
    State(node): State<Arc<dyn Containers>>,
    Path(target): Path<Target>,
    req: Request,
) -> Response {
    relay(node, target, String::new(), req).await
}

pub async fn proxy_path(
    State(node): State<Arc<dyn Containers>>,
    Path((namespace, pod, uid, scheme, port, path)): Path<(
        String,
        String,
        String,
        String,
        u16,
        String,
    )>,
    req: Request,
) -> Response {
    relay(node, (namespace, pod, uid, scheme, port), path, req).await
}

fn unavailable(message: String) -> Response {
    status(&ApiError::unavailable(message))
}

async fn relay(
    node: Arc<dyn Containers>,
    (namespace, name, uid, scheme, port): Target,
    path: String,
    mut req: Request,
) -> Response {
    let pod = match pod_with_uid(node.as_ref(), &namespace, &name, &uid) {
        Ok(p) => p,
        Err(e) => return status(&e),
    };
    let Some(ip) = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    else {
        return unavailable(format!("pod {name} has no address yet"));
    };
    let netns = node.pod_netns(&pod);
    let to = SocketAddr::new(ip, port);
    let connected = in_netns(netns, move || {
        let stream = TcpStream::connect_timeout(&to, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
        stream.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok::<_, String>(stream)
    })
    .await
    .and_then(|s| tokio::net::TcpStream::from_std(s).map_err(|e| e.to_string()));
    let tcp = match connected {
        Ok(s) => s,
        Err(e) => return unavailable(format!("error trying to reach service: dial tcp {to}: {e}")),
    };
    let query = req
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let uri: Uri = match format!("/{path}{query}").parse() {
        Ok(u) => u,
        Err(e) => return status(&ApiError::bad_request(format!("the proxied path: {e}"))),
    };
    let upgrade = req
        .headers()
        .contains_key(header::UPGRADE)
        .then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    parts.uri = uri;
    parts.headers.remove(header::AUTHORIZATION);
    if let Ok(host) = HeaderValue::from_str(&to.to_string()) {
        parts.headers.insert(header::HOST, host);
    }
    let forward = hyper::Request::from_parts(parts, body);
    let relayed = if scheme == "https" {
        let config = skiff_tls::client_config_anonymous_any_server();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let name = ServerName::IpAddress(ip.into());
        match connector.connect(name, tcp).await {
            Ok(tls) => skiff_tls::relay(tls, forward, upgrade).await,
            Err(e) => return unavailable(format!("error trying to reach service: tls: {e}")),
        }
    } else {
        skiff_tls::relay(tcp, forward, upgrade).await
    };
    match relayed {
        Ok(response) => response.map(Body::new),
        Err(e) => unavailable(format!("error trying to reach service: {e}")),
    }
}
