//! The HTTP surface: health endpoints, `/version`, discovery, and every resource path, behind
//! bearer-token authentication.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::json;
use skiff_api::ApiError;
use skiff_api::discovery::{self, AggregatedVersion};

use crate::authn::Auth;
use crate::handlers;
use crate::negotiate::Output;
use crate::negotiate::{error_response, respond};
use crate::state::ApiState;

/// Paths anyone may read without credentials (upstream's `system:public-info-viewer`).
const PUBLIC_PATHS: &[&str] = &["/healthz", "/livez", "/readyz", "/version"];

async fn authenticate(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let public = PUBLIC_PATHS
        .iter()
        .any(|p| path == *p || path.strip_prefix(p).is_some_and(|r| r.starts_with('/')));
    if public {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token.and_then(|t| auth.authenticate(t)) {
        Some(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        None => error_response(&ApiError::unauthorized()),
    }
}

async fn ok() -> &'static str {
    "ok"
}

async fn version() -> Response {
    let body = json!({
        "major": "1",
        "minor": skiff_api::KUBERNETES_MINOR.to_string(),
        "gitVersion": skiff_api::GIT_VERSION,
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": concat!("skiff ", env!("CARGO_PKG_VERSION")),
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    });
    respond(StatusCode::OK, &body, Output::Json)
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The aggregated discovery version the client asked for first, if any. kubectl requires the
/// reply's Content-Type to be exactly the one it asked for.
fn aggregated_version(headers: &HeaderMap) -> Option<AggregatedVersion> {
    let accept = headers.get(header::ACCEPT)?.to_str().ok()?;
    for entry in accept.split(',') {
        let params: Vec<&str> = entry.split(';').map(str::trim).collect();
        if params.first() != Some(&"application/json") {
            continue;
        }
        let has = |p: &str| params.contains(&p);
        if !has("g=apidiscovery.k8s.io") || !has("as=APIGroupDiscoveryList") {
            // Plain JSON listed before any aggregated form: the legacy documents.
            if params.len() == 1 {
                return None;
            }
            continue;
        }
        if has("v=v2") {
            return Some(AggregatedVersion::V2);
        }
        if has("v=v2beta1") {
            return Some(AggregatedVersion::V2Beta1);
        }
    }
    None
}

fn aggregated(s: &ServerInfo, core: bool, version: AggregatedVersion) -> Response {
    let doc = discovery::aggregated(&s.registry.served().resources(), core, version);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, version.content_type())],
        doc.to_string(),
    )
        .into_response()
}

async fn api_root(headers: HeaderMap, State(s): State<Arc<ServerInfo>>) -> Response {
    match aggregated_version(&headers) {
        Some(v) => aggregated(&s, true, v),
        None => respond(
            StatusCode::OK,
            &discovery::api_versions(&s.address),
            Output::Json,
        ),
    }
}

async fn apis_root(headers: HeaderMap, State(s): State<Arc<ServerInfo>>) -> Response {
    match aggregated_version(&headers) {
        Some(v) => aggregated(&s, false, v),
        None => respond(
            StatusCode::OK,
            &discovery::api_group_list(&s.registry.served().resources()),
            Output::Json,
        ),
    }
}

async fn api_group(Path(group): Path<String>, State(s): State<Arc<ServerInfo>>) -> Response {
    match discovery::api_group(&s.registry.served().resources(), &group) {
        Some(doc) => respond(StatusCode::OK, &doc, Output::Json),
        None => error_response(&ApiError::no_such_path()),
    }
}

async fn core_resources(State(s): State<Arc<ServerInfo>>) -> Response {
    group_resources(&s, "", "v1")
}

async fn group_version(
    Path((group, version)): Path<(String, String)>,
    State(s): State<Arc<ServerInfo>>,
) -> Response {
    group_resources(&s, &group, &version)
}

fn group_resources(s: &ServerInfo, group: &str, version: &str) -> Response {
    match discovery::api_resource_list(&s.registry.served().resources(), group, version) {
        Some(doc) => respond(StatusCode::OK, &doc, Output::Json),
        None => error_response(&ApiError::no_such_path()),
    }
}

async fn not_found() -> Response {
    error_response(&ApiError::no_such_path())
}

/// Facts about this server that handlers report.
pub struct ServerInfo {
    /// `host:port` clients reach the API at.
    pub address: String,
    /// The kinds served, which discovery and the OpenAPI documents list.
    pub registry: Arc<crate::registry::Registry>,
}

async fn openapi_index(State(s): State<Arc<ServerInfo>>) -> Response {
    let mut paths = serde_json::Map::new();
    let docs = s.registry.served().openapi();
    for (key, _, hash) in &docs.docs {
        paths.insert(
            key.clone(),
            json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={hash}")}),
        );
    }
    respond(StatusCode::OK, &json!({"paths": paths}), Output::Json)
}

/// The legacy path of the protobuf OpenAPI v2 document (kubectl's second try).
async fn legacy_swagger(State(s): State<Arc<ServerInfo>>) -> Response {
    openapi_v2_protobuf(&s)
}

fn openapi_v2_protobuf(s: &ServerInfo) -> Response {
    (
        StatusCode::OK,
        // Not the type asked for: its `@` is no valid media type character, and Go's
        // parser (kubectl's) refuses it. Upstream answers octet-stream too.
        [(header::CONTENT_TYPE, "application/octet-stream")],
        s.registry.served().openapi().v2_protobuf.clone(),
    )
        .into_response()
}

/// `/openapi/v2`: protobuf when it is asked for first (kubectl ≤ 1.28), else JSON.
async fn openapi_v2(headers: HeaderMap, State(s): State<Arc<ServerInfo>>) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let json = || {
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            s.registry.served().openapi().v2.clone(),
        )
            .into_response()
    };
    if accept.is_empty() {
        return json();
    }
    // The first entry this serves decides, in the client's order.
    for media in accept
        .split(',')
        .map(|a| a.split(';').next().unwrap_or("").trim())
    {
        match media {
            skiff_api::openapi_v2_protobuf::CONTENT_TYPE => return openapi_v2_protobuf(&s),
            "application/json" | "*/*" | "application/*" => return json(),
            _ => {}
        }
    }
    error_response(&ApiError::not_acceptable(&[
        "application/json",
        skiff_api::openapi_v2_protobuf::CONTENT_TYPE,
    ]))
}

async fn openapi_doc(Path(key): Path<String>, State(s): State<Arc<ServerInfo>>) -> Response {
    let docs = s.registry.served().openapi();
    match docs.docs.iter().find(|(k, _, _)| *k == key) {
        Some((_, body, _)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.clone(),
        )
            .into_response(),
        None => error_response(&ApiError::no_such_path()),
    }
}

pub fn router(state: Arc<ApiState>, auth: Arc<Auth>, info: Arc<ServerInfo>) -> Router {
    let discovery = Router::new()
        .route("/api", get(api_root))
        .route("/api/", get(api_root))
        .route("/openapi/v2", get(openapi_v2))
        .route("/swagger-2.0.0.pb-v1", get(legacy_swagger))
        .route("/openapi/v3", get(openapi_index))
        .route("/openapi/v3/{*key}", get(openapi_doc))
        .route("/apis", get(apis_root))
        .route("/apis/", get(apis_root))
        .route("/api/v1", get(core_resources))
        .route("/apis/{group}", get(api_group))
        .route("/apis/{group}/{version}", get(group_version))
        .with_state(info);
    let resources = Router::new()
        .route("/api/v1/{*rest}", any(handlers::resource))
        .route("/apis/{group}/{version}/{*rest}", any(handlers::resource))
        .with_state(state);
    Router::new()
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .route("/version", get(version))
        .merge(discovery)
        .merge(resources)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(auth, authenticate))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn discovery_follows_the_clients_order() {
        let new = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            aggregated_version(&accept(new)),
            Some(AggregatedVersion::V2)
        );
        let old = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(
            aggregated_version(&accept(old)),
            Some(AggregatedVersion::V2Beta1)
        );
        assert_eq!(aggregated_version(&accept("application/json")), None);
        assert_eq!(aggregated_version(&HeaderMap::new()), None);
    }
}
