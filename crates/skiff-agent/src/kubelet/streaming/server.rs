//! The node's streaming endpoints, kubelet's port 10250: what the API server relays `kubectl
//! logs`, `kubectl exec`, `kubectl attach` and `kubectl port-forward` to.
//!
//! HTTPS with a self-signed serving certificate (kubelet's default), and only for clients
//! that present a certificate signed by the cluster CA (the API server's kubelet-client
//! certificate): kubelet's `--client-ca-file` authentication. Errors are Kubernetes
//! `Status` bodies, which the API server passes on unchanged.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use k8s_openapi::api::core::v1::Pod;
use skiff_api::ApiError;
use tokio::net::TcpListener;

use super::exec::ExecOptions;
use super::{Containers, portforward, proxy, remotecommand, websocket};
use crate::kubelet::errors::ServerError;
use crate::kubelet::logs::{self, LogOptions};
use crate::kubelet::pod_dir::{Attempt, PodDir, run_is_over};

/// Numbers exec sessions (their pid files) within this agent's life.
static EXEC_SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A bound streaming listener; [`StreamListener::serve`] starts answering once the kubelet
/// exists (the Node is registered with the port first).
pub struct StreamListener {
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    pub port: u16,
}

impl StreamListener {
    /// Binds `addr` and makes the node's serving certificate for `names`; only clients with
    /// certificates signed by `client_ca` (DER) are let in.
    pub async fn bind(
        addr: SocketAddr,
        names: &[String],
        client_ca: &[Vec<u8>],
    ) -> Result<StreamListener, ServerError> {
        let (cert, key) = skiff_tls::self_signed(&names[0], names)?;
        let acceptor = skiff_tls::acceptor(&cert, &key, Some(client_ca))?;
        let bind_error = |source| ServerError::Bind { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(bind_error)?;
        let port = listener.local_addr().map_err(bind_error)?.port();
        Ok(StreamListener {
            listener,
            acceptor,
            port,
        })
    }

    pub async fn serve(self, node: Arc<dyn Containers>) {
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/containerLogs/{namespace}/{pod}/{container}",
                get(container_logs),
            )
            .route(
                "/exec/{namespace}/{pod}/{uid}/{container}",
                any(container_exec),
            )
            .route(
                "/attach/{namespace}/{pod}/{uid}/{container}",
                any(container_attach),
            )
            .route("/portForward/{namespace}/{pod}/{uid}", any(port_forward))
            .route(
                "/proxy/{namespace}/{pod}/{uid}/{scheme}/{port}/",
                any(proxy::proxy_root),
            )
            .route(
                "/proxy/{namespace}/{pod}/{uid}/{scheme}/{port}/{*path}",
                any(proxy::proxy_path),
            )
            .with_state(node);
        skiff_tls::serve(self.listener, self.acceptor, app).await;
    }
}

pub(super) fn status(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::BAD_REQUEST);
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        err.to_status().to_string(),
    )
        .into_response()
}

fn pod_of(node: &dyn Containers, namespace: &str, name: &str) -> Result<Arc<Pod>, ApiError> {
    node.pod(namespace, name)
        .ok_or_else(|| ApiError::new(404, "NotFound", format!("pods \"{name}\" not found")))
}

/// Why a container has no run to read yet (its waiting reason, as the kubelet says it).
fn waiting_reason(pod: &Pod, container: &str) -> String {
    let status = pod.status.as_ref();
    status
        .into_iter()
        .flat_map(|s| {
            let init = s.init_container_statuses.iter().flatten();
            init.chain(s.container_statuses.iter().flatten())
        })
        .find(|c| c.name == container)
        .and_then(|c| c.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .unwrap_or_else(|| "ContainerCreating".into())
}

async fn container_logs(
    State(node): State<Arc<dyn Containers>>,
    Path((namespace, name, container)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    match open_logs(
        node.as_ref(),
        &namespace,
        &name,
        &container,
        query.as_deref(),
    ) {
        Ok(body) => ([(header::CONTENT_TYPE, "text/plain")], body).into_response(),
        Err(e) => status(&e),
    }
}

fn open_logs(
    node: &dyn Containers,
    namespace: &str,
    name: &str,
    container: &str,
    query: Option<&str>,
) -> Result<Body, ApiError> {
    let options =
        LogOptions::parse(query.unwrap_or(""), time::OffsetDateTime::now_utc()).map_err(|m| {
            ApiError::new(
                422,
                "Invalid",
                format!("PodLogOptions \"{name}\" is invalid: {m}"),
            )
        })?;
    let pod = pod_of(node, namespace, name)?;
    let dir = node.pod_dir(&pod);
    // Each run with its bundle; a finished pod's directory is gone, its logs kept: its
    // runs are the logged ones, all over.
    let runs: Vec<(u32, Option<std::path::PathBuf>)> = if dir.root.exists() {
        dir.attempts(container)
            .into_iter()
            .filter(|a| a.started_at.is_some())
            .map(|a| (a.number, Some(a.bundle)))
            .collect()
    } else {
        dir.logged_runs(container)
            .into_iter()
            .map(|n| (n, None))
            .collect()
    };
    let run = if options.previous {
        runs.len().checked_sub(2).map(|i| &runs[i]).ok_or_else(|| {
            ApiError::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            ))
        })?
    } else {
        runs.last().ok_or_else(|| {
            ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {}",
                waiting_reason(&pod, container)
            ))
        })?
    };
    let (number, bundle) = run.clone();
    let log = dir.log_path(container, number);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::task::spawn_blocking(move || {
        let result = logs::stream(
            &log,
            &options,
            || bundle.as_ref().is_none_or(|b| run_is_over(b)),
            |_, chunk| {
                if chunk.is_empty() {
                    !tx.is_closed()
                } else {
                    tx.blocking_send(Ok(Bytes::from(chunk))).is_ok()
                }
            },
        );
        if let Err(e) = result {
            let _ = tx.blocking_send(Err(e));
        }
    });
    Ok(Body::from_stream(futures_util::stream::poll_fn(
        move |cx| rx.poll_recv(cx),
    )))
}

/// The protocols a request offers in `Sec-WebSocket-Protocol`.
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect()
}

/// Whether a request asks to upgrade to `protocol` (`websocket`, `SPDY/3.1`).
fn upgrades_to(headers: &HeaderMap, protocol: &str) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(protocol))
}

/// Answers a SPDY/3.1 upgrade that offers `protocol` in `X-Stream-Protocol-Version` with
/// 101 and hands the connection to `serve`; anything else is a 403 as upstream answers.
fn spdy_upgrade<F, Fut>(mut req: Request, protocol: &'static str, serve: F) -> Response
where
    F: FnOnce(hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let offered: Vec<String> = req
        .headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .collect();
    if !offered.iter().any(|p| p == protocol) {
        return status(&ApiError::new(
            403,
            "Forbidden",
            format!(
                "unable to upgrade: none of the offered protocols {offered:?} is supported; supports [{protocol}]"
            ),
        ));
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => serve(hyper_util::rt::TokioIo::new(io)).await,
            Err(e) => tracing::debug!(error = %e, "SPDY upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1")
        .header("X-Stream-Protocol-Version", protocol)
        .body(Body::empty())
        .expect("a valid response")
}

/// What an exec or attach asks for, and the container run (with its pod's directory) it
/// is for.
fn session_target(
    node: &dyn Containers,
    namespace: &str,
    name: &str,
    uid: &str,
    container: &str,
    query: Option<String>,
) -> Result<(ExecOptions, PodDir, Attempt), ApiError> {
    let options =
        ExecOptions::parse(query.as_deref().unwrap_or("")).map_err(ApiError::bad_request)?;
    let (dir, run) = running_container(node, namespace, name, uid, container)?;
    Ok((options, dir, run))
}

async fn container_exec(
    State(node): State<Arc<dyn Containers>>,
    Path((namespace, name, uid, container)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let (options, _, run) =
        match session_target(node.as_ref(), &namespace, &name, &uid, &container, query) {
            Ok(t) => t,
            Err(e) => return status(&e),
        };
    let id = run.id.clone();
    if options.command.is_empty() {
        return status(&ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    // Unique per session: the process id a dropped session kills.
    let pid_file = run.bundle.join(format!(
        "exec-{}.pid",
        EXEC_SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let exec = node.runtime().exec_command(
        &id,
        &run.bundle,
        &options.command,
        options.tty,
        Some(&pid_file),
    );
    let exec = match exec {
        Ok(exec) => exec,
        Err(e) => return status(&ApiError::internal(e.to_string())),
    };
    let session = super::exec::session(exec, options.clone(), pid_file);
    serve_session(req, options, session).await
}

async fn container_attach(
    State(node): State<Arc<dyn Containers>>,
    Path((namespace, name, uid, container)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Response {
    let (options, dir, run) =
        match session_target(node.as_ref(), &namespace, &name, &uid, &container, query) {
            Ok(t) => t,
            Err(e) => return status(&e),
        };
    let log = dir.log_path(&container, run.number);
    let fifo = run.bundle.join(skiff_runtime::monitor::STDIN_FIFO);
    let stdin = (options.stdin && fifo.exists()).then_some(fifo);
    let resize = Some(run.bundle.join(skiff_runtime::monitor::RESIZE_FIFO)).filter(|p| p.exists());
    let session = super::attach::session(log, run.bundle.clone(), stdin, resize);
    serve_session(req, options, session).await
}

/// Serves a session (exec or attach) over whichever transport the client asked for:
/// SPDY, or WebSocket channels.
async fn serve_session(
    req: Request,
    options: ExecOptions,
    session: super::exec::Session,
) -> Response {
    if upgrades_to(req.headers(), "SPDY/3.1") {
        return spdy_upgrade(req, remotecommand::PROTOCOL, move |io| {
            remotecommand::serve(io, options, session)
        });
    }
    if !upgrades_to(req.headers(), "websocket") {
        return status(&ApiError::bad_request(
            "Upgrade request required (WebSocket with v5.channel.k8s.io or v4.channel.k8s.io, or SPDY/3.1)",
        ));
    }
    let offered = offered_protocols(req.headers());
    let Some(protocol) = websocket::PROTOCOLS
        .into_iter()
        .find(|p| offered.iter().any(|o| o == p))
    else {
        // A client that offers nothing we speak falls back to another transport.
        return status(&ApiError::bad_request(format!(
            "requested protocol(s) are not supported: {offered:?}; supports {:?}",
            websocket::PROTOCOLS
        )));
    };
    let (mut parts, _) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    upgrade
        .protocols([protocol])
        .on_upgrade(move |socket| websocket::serve(socket, protocol, options, session))
}

/// The pod, if it is the one the caller means (the API server sends its uid).
pub(super) fn pod_with_uid(
    node: &dyn Containers,
    namespace: &str,
    name: &str,
    uid: &str,
) -> Result<Arc<Pod>, ApiError> {
    let pod = pod_of(node, namespace, name)?;
    if !uid.is_empty() && pod.metadata.uid.as_deref() != Some(uid) {
        return Err(ApiError::new(
            404,
            "NotFound",
            format!("pods \"{name}\" with UID {uid} not found"),
        ));
    }
    Ok(pod)
}

/// A container's current run, if it is running, and its pod's directory.
fn running_container(
    node: &dyn Containers,
    namespace: &str,
    name: &str,
    uid: &str,
    container: &str,
) -> Result<(PodDir, Attempt), ApiError> {
    let pod = pod_with_uid(node, namespace, name, uid)?;
    let dir = node.pod_dir(&pod);
    dir.attempts(container)
        .pop()
        .filter(|a| a.is_running())
        .map(|run| (dir.clone(), run))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to upgrade connection: container not found (\"{container}\")"
            ))
        })
}

async fn port_forward(
    State(node): State<Arc<dyn Containers>>,
    Path((namespace, name, uid)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let pod = match pod_with_uid(node.as_ref(), &namespace, &name, &uid) {
        Ok(p) => p,
        Err(e) => return status(&e),
    };
    let netns = node.pod_netns(&pod);
    if !netns.exists() {
        return status(&ApiError::bad_request(format!(
            "unable to upgrade connection: pod {name} has no running sandbox"
        )));
    }
    let target = portforward::Target {
        pod: format!("{namespace}/{name}"),
        uid: pod.metadata.uid.clone().unwrap_or_default(),
        netns,
    };
    if upgrades_to(req.headers(), "SPDY/3.1") {
        return spdy_upgrade(req, portforward::PROTOCOL, move |io| {
            portforward::serve(io, target)
        });
    }
    if !upgrades_to(req.headers(), "websocket")
        || !offered_protocols(req.headers())
            .iter()
            .any(|p| p == portforward::WEBSOCKET_PROTOCOL)
    {
        return status(&ApiError::bad_request(format!(
            "Upgrade request required (SPDY/3.1 with {}, or WebSocket with {})",
            portforward::PROTOCOL,
            portforward::WEBSOCKET_PROTOCOL
        )));
    }
    let (mut parts, _) = req.into_parts();
    match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade
            .protocols([portforward::WEBSOCKET_PROTOCOL])
            .on_upgrade(move |socket| portforward::serve_websocket(socket, target)),
        Err(rejection) => rejection.into_response(),
    }
}
