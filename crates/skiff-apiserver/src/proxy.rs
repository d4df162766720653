//! The proxy subresources, as upstream's API server serves them: `pods/{[scheme:]name[:port]}/
//! proxy/{path}`, `services/{[scheme:]name[:port]}/proxy/{path}` and `nodes/{name}/proxy/
//! {path}` (what `kubectl proxy` and the dashboard's links use). Any method; bodies, query
//! strings and upgrades pass through.
//!
//! A pod is reached through the node agent that runs it (which connects from inside the
//! pod's network namespace), over the same TLS connection with the kubelet-client certificate
//! as logs and exec: the API server needs no route to pod addresses, wherever it runs. A
//! Service's request goes to one of its ready endpoints, picked at random from its
//! EndpointSlices, on that endpoint's node; a node's goes to its agent's own endpoints.

use std::sync::Arc;

use axum::extract::Request;
use axum::response::Response;
use serde_json::Value;
use skiff_api::ApiError;

use crate::node_stream::{agent_endpoint, forward_to_agent};
use crate::request::ResourceRequest;
use crate::state::ApiState;

/// `[scheme:]name[:port]`, as upstream's `SplitSchemeNamePort`: the scheme is `http` (the
/// default) or `https`.
pub fn split_scheme_name_port(id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return None;
    }
    Some((if scheme.is_empty() { "http" } else { scheme }, name, port))
}

fn invalid_id(id: &str) -> ApiError {
    ApiError::bad_request(format!("invalid service request {id:?}"))
}

pub async fn serve(
    state: Arc<ApiState>,
    rr: ResourceRequest,
    req: Request,
) -> Result<Response, ApiError> {
    let id = rr.name_or_empty().to_string();
    let (scheme, name, port) = split_scheme_name_port(&id).ok_or_else(|| invalid_id(&id))?;
    let path = rr.subpath.clone().unwrap_or_default();
    let namespace = rr.namespace.as_deref().unwrap_or("default");
    match rr.rt().plural {
        "nodes" => {
            let node = state.objects.get(rr.rt(), None, name).await?.object;
            let (host, agent_port) = agent_endpoint(&node).ok_or_else(|| {
                ApiError::unavailable(format!(
                    "node {name} reports no address or port for its agent"
                ))
            })?;
            forward_to_agent(&state, &host, agent_port, format!("/{path}"), req).await
        }
        "pods" => {
            let pod = state
                .objects
                .get(rr.rt(), Some(namespace), name)
                .await?
                .object;
            let port = pod_port(&pod, scheme, port)?;
            to_pod(&state, &pod, scheme, port, &path, req).await
        }
        _ => {
            let service = state
                .objects
                .get(rr.rt(), Some(namespace), name)
                .await?
                .object;
            let (port_name, _) = service_port(&service, port).ok_or_else(|| {
                ApiError::unavailable(format!("no endpoints available for service \"{id}\""))
            })?;
            let (pod_name, target_port) = pick_endpoint(&state, namespace, name, &port_name)
                .await?
                .ok_or_else(|| {
                    ApiError::unavailable(format!("no endpoints available for service \"{name}\""))
                })?;
            let pods = &crate::registry::core::pod::RESOURCE;
            let pod = state
                .objects
                .get(pods, Some(namespace), &pod_name)
                .await?
                .object;
            to_pod(&state, &pod, scheme, target_port, &path, req).await
        }
    }
}

/// The pod port a `pods/…:port/proxy` names: a number, a container port's name, or (none)
/// the scheme's own.
fn pod_port(pod: &Value, scheme: &str, port: &str) -> Result<u16, ApiError> {
    if port.is_empty() {
        return Ok(if scheme == "https" { 443 } else { 80 });
    }
    if let Ok(n) = port.parse::<u16>() {
        return Ok(n);
    }
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == port)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "no container port named {port:?} in pod {}",
                pod["metadata"]["name"]
            ))
        })
}

/// The Service port a request names (its name, its number, or nothing for a Service with
/// one port): the port's name and number.
fn service_port(service: &Value, port: &str) -> Option<(String, u16)> {
    let ports = service["spec"]["ports"].as_array()?;
    let found = ports.iter().find(|p| {
        let name = p["name"].as_str().unwrap_or_default();
        (!port.is_empty() && name == port)
            || port
                .parse::<u64>()
                .is_ok_and(|n| p["port"].as_u64() == Some(n))
            || (port.is_empty() && ports.len() == 1)
    })?;
    Some((
        found["name"].as_str().unwrap_or_default().to_string(),
        u16::try_from(found["port"].as_u64()?).ok()?,
    ))
}

/// A ready endpoint of the Service for its port `port_name`, at random: the pod behind it
/// and the port on the pod.
async fn pick_endpoint(
    state: &ApiState,
    namespace: &str,
    service: &str,
    port_name: &str,
) -> Result<Option<(String, u16)>, ApiError> {
    let slices = &crate::registry::discovery::RESOURCE;
    let page = state
        .objects
        .list(slices, Some(namespace), 0, None, None, |s| {
            s["metadata"]["labels"]["kubernetes.io/service-name"] == service
        })
        .await?;
    let mut candidates = Vec::new();
    for slice in &page.items {
        let Some(port) = slice["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or_default() == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for e in slice["endpoints"].as_array().into_iter().flatten() {
            let ready = e["conditions"]["ready"].as_bool().unwrap_or(true);
            if ready
                && e["targetRef"]["kind"] == "Pod"
                && let Some(pod) = e["targetRef"]["name"].as_str()
            {
                candidates.push((pod.to_string(), port));
            }
        }
    }
    if candidates.is_empty() {
        return Ok(None);
    }
    let mut pick = [0u8; 4];
    let _ = getrandom::fill(&mut pick);
    let i = u32::from_ne_bytes(pick) as usize % candidates.len();
    Ok(Some(candidates.swap_remove(i)))
}

async fn to_pod(
    state: &ApiState,
    pod: &Value,
    scheme: &str,
    port: u16,
    path: &str,
    req: Request,
) -> Result<Response, ApiError> {
    let meta = &pod["metadata"];
    let (namespace, name, uid) = (
        meta["namespace"].as_str().unwrap_or_default(),
        meta["name"].as_str().unwrap_or_default(),
        meta["uid"].as_str().unwrap_or_default(),
    );
    let node_name = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if node_name.is_empty() {
        return Err(ApiError::unavailable(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    let nodes = &crate::registry::core::node::RESOURCE;
    let node = state.objects.get(nodes, None, node_name).await?.object;
    let (host, agent_port) = agent_endpoint(&node).ok_or_else(|| {
        ApiError::unavailable(format!(
            "node {node_name} reports no address or port for its agent"
        ))
    })?;
    let agent_path = format!("/proxy/{namespace}/{name}/{uid}/{scheme}/{port}/{path}");
    forward_to_agent(state, &host, agent_port, agent_path, req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_split_as_upstreams() {
        assert_eq!(split_scheme_name_port("web"), Some(("http", "web", "")));
        assert_eq!(
            split_scheme_name_port("web:8080"),
            Some(("http", "web", "8080"))
        );
        assert_eq!(
            split_scheme_name_port("https:web:tls"),
            Some(("https", "web", "tls"))
        );
        for bad in ["ftp:web:21", ":80", "a:b:c:d", ""] {
            assert_eq!(split_scheme_name_port(bad), None, "{bad}");
        }
    }

    #[test]
    fn ports_resolve_by_name_number_or_the_only_one() {
        let one = json!({"spec": {"ports": [{"name": "http", "port": 8080}]}});
        assert_eq!(service_port(&one, ""), Some(("http".into(), 8080)));
        assert_eq!(service_port(&one, "8080"), Some(("http".into(), 8080)));
        assert_eq!(service_port(&one, "http"), Some(("http".into(), 8080)));
        assert_eq!(service_port(&one, "9090"), None);
        let two = json!({"spec": {"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}});
        assert_eq!(service_port(&two, ""), None);
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}]}});
        assert_eq!(pod_port(&pod, "http", "").unwrap(), 80);
        assert_eq!(pod_port(&pod, "https", "").unwrap(), 443);
        assert_eq!(pod_port(&pod, "http", "web").unwrap(), 8080);
        assert_eq!(pod_port(&pod, "http", "9000").unwrap(), 9000);
        assert!(pod_port(&pod, "http", "nope").is_err());
    }
}
