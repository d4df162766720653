//! The API server benchmark: a real `skiff server` process (embedded store) driven over
//! HTTPS/HTTP2 as client-go would drive it — pod creates at a concurrency, lists of every pod
//! as JSON and as a Table, watch delivery to many watchers, and the server's RSS. The
//! datastore alone, under the same load, runs beside it as the baseline: the difference is
//! what the API layer costs.
//!
//! The API figures are the API server's alone (`--disable-controller-manager
//! --disable-scheduler`): with them in the process, every create also wakes the scheduler
//! (which, with no nodes, records a FailedScheduling event and a condition per pod) and the
//! controllers' informers, and the figures measure all of that. The whole server is measured
//! after, as its own line (`api_whole_server`), so both costs stay visible.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;

use crate::fields;
use crate::stats::{Latencies, emit, in_parallel, ms, round};

const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
const NAMESPACE: &str = "default";

/// A `skiff server` child process on loopback, killed on drop.
pub(crate) struct ServerProcess {
    child: Child,
    addr: SocketAddr,
    ca_pem: String,
    token: String,
    dir: tempfile::TempDir,
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerProcess {
    pub(crate) fn token(&self) -> &str {
        &self.token
    }

    pub(crate) fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub(crate) fn rss_mib(&self) -> Result<f64> {
        Ok(rss_kib(self.child.id())? / 1024.0)
    }

    /// The server's CPU time so far, in seconds: CPU per operation is the figure that holds
    /// still on a noisy machine, where throughput swings with the neighbours.
    pub(crate) fn cpu_seconds(&self) -> Result<f64> {
        Ok(skiff_runtime::procfs::cpu_seconds(self.child.id())?)
    }
}

/// A process's resident memory (VmRSS) in KiB.
pub(crate) fn rss_kib(pid: u32) -> Result<f64> {
    Ok(skiff_runtime::procfs::rss_kib(pid)? as f64)
}

/// A process's resident memory split as (anonymous, file-backed) KiB.
pub(crate) fn rss_split_kib(pid: u32) -> Result<(f64, f64)> {
    let (anon, file) = skiff_runtime::procfs::rss_split_kib(pid)?;
    Ok((anon as f64, file as f64))
}

/// The `skiff` binary next to this one (build it with `cargo build --release -p skiff`).
pub(crate) fn skiff_binary() -> Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("skiff");
    if !bin.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release -p skiff` (same profile as skiff-bench)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts `skiff server` with `extra` flags and waits until it has written its kubeconfig
/// (and its registry listens, when `extra` names the port).
pub(crate) async fn start_server(extra: &[&str]) -> Result<ServerProcess> {
    let dir = tempfile::tempdir()?;
    let port = skiff_testkit::free_port()?;
    let child = Command::new(skiff_binary()?)
        .args([
            "server",
            "--bind-address",
            "127.0.0.1",
            "--https-port",
            &port.to_string(),
            // Benchmarks measure the control plane; nodes, when they need any, are simulated.
            "--disable-agent",
        ])
        // Any free port for the registry unless the scenario names one.
        .args(if extra.contains(&"--registry-port") {
            &[][..]
        } else {
            &["--registry-port", "0"][..]
        })
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--write-kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .args(extra)
        // SKIFF_BENCH_SERVER_LOG=skiff_apiserver::requests=debug logs every request.
        .env(
            "RUST_LOG",
            std::env::var("SKIFF_BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting skiff server")?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    // The kubeconfig is written once the API serves; the registry listens a moment later.
    let registry = extra
        .iter()
        .position(|a| *a == "--registry-port")
        .and_then(|i| extra.get(i + 1))
        .map(|port| format!("127.0.0.1:{port}"));
    let ready = || async {
        dir.path().join("kubeconfig").exists()
            && match &registry {
                Some(r) => tokio::net::TcpStream::connect(r).await.is_ok(),
                None => true,
            }
    };
    while !ready().await {
        if Instant::now() > deadline {
            bail!("skiff server did not become ready within 30s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca_pem = std::fs::read_to_string(dir.path().join("tls/ca.crt"))?;
    let token = std::fs::read_to_string(dir.path().join("token"))?
        .trim()
        .to_string();
    Ok(ServerProcess {
        child,
        addr,
        ca_pem,
        token,
        dir,
    })
}

/// One HTTP/2 connection (requests multiplex over it, as client-go's do).
#[derive(Clone)]
pub(crate) struct Client {
    sender: SendRequest<Full<Bytes>>,
    token: Arc<str>,
}

pub(crate) async fn connect(server: &ServerProcess) -> Result<Client> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server.ca_pem.as_bytes()) {
        roots.add(cert?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(server.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(Client {
        sender,
        token: server.token.as_str().into(),
    })
}

impl Client {
    fn request(&self, method: &str, path: &str, accept: &str, body: Bytes) -> Request<Full<Bytes>> {
        Request::builder()
            .method(method)
            .uri(format!("https://localhost{path}"))
            .header("authorization", format!("Bearer {}", self.token))
            .header("accept", accept)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .expect("a valid request")
    }

    async fn respond(
        &mut self,
        method: &str,
        path: &str,
        accept: &str,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>> {
        let req = self.request(method, path, accept, body);
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }

    pub(crate) async fn send(
        &mut self,
        method: &str,
        path: &str,
        accept: &str,
        body: Bytes,
    ) -> Result<(u16, Bytes)> {
        let resp = self.respond(method, path, accept, body).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, body))
    }

    /// Reads the whole answer as it arrives and keeps only its length: a list's time is
    /// the server's to deliver it, not this process's to store it (copying the first 22 MB
    /// body into one buffer faulted in fresh huge pages here for ~170 ms, which made the
    /// first of ten lists the p99).
    async fn send_counting(&mut self, path: &str, accept: &str) -> Result<(u16, usize)> {
        let resp = self.respond("GET", path, accept, Bytes::new()).await?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut len = 0;
        while let Some(frame) = body.frame().await {
            len += frame?.data_ref().map_or(0, Bytes::len);
        }
        Ok((status, len))
    }
}

fn pod(name: &str) -> Bytes {
    Bytes::from(
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "bench", "tier": "web"}},
            "spec": {"containers": [{"name": "web", "image": "registry.local/hello-node:v1",
                                     "ports": [{"containerPort": 8080}],
                                     "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
        })
        .to_string(),
    )
}

/// Creates `count` pods with `concurrency` requests in flight; answers their latencies.
async fn create_pods(
    client: &Client,
    prefix: &str,
    count: usize,
    concurrency: usize,
) -> Result<(Latencies, Duration)> {
    let start = Instant::now();
    let (client, prefix) = (client.clone(), prefix.to_string());
    let lat = in_parallel(count, concurrency, move |i| {
        let mut client = client.clone();
        let name = format!("{prefix}-{i}");
        async move {
            let (status, body) = client
                .send(
                    "POST",
                    &format!("/api/v1/namespaces/{NAMESPACE}/pods"),
                    "application/json",
                    pod(&name),
                )
                .await?;
            if status != 201 {
                bail!(
                    "create answered {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(())
        }
    })
    .await?;
    Ok((lat, start.elapsed()))
}

pub async fn run(
    pods: usize,
    concurrency: usize,
    lists: usize,
    watchers: usize,
    watch_events: usize,
) -> Result<()> {
    let server = start_server(&["--disable-controller-manager", "--disable-scheduler"]).await?;
    let client = connect(&server).await?;
    let rss_empty = server.rss_mib()?;

    let (mut lat, elapsed) = create_pods(&client, "pod", pods, concurrency).await?;
    let rss_after_creates = server.rss_mib()?;
    emit(
        "api_create_pods",
        [
            fields!("pods" => pods, "concurrency" => concurrency,
                    "creates_per_s" => round(pods as f64 / elapsed.as_secs_f64())),
            lat.summary(""),
        ]
        .concat(),
    );

    for (label, accept) in [("json", "application/json"), ("table", TABLE_ACCEPT)] {
        let mut lat = Latencies::with_capacity(lists);
        let mut bytes = 0;
        let mut c = client.clone();
        for _ in 0..lists {
            let t = Instant::now();
            let (status, len) = c
                .send_counting(&format!("/api/v1/namespaces/{NAMESPACE}/pods"), accept)
                .await?;
            lat.push(t.elapsed());
            if status != 200 {
                bail!("list answered {status}");
            }
            bytes = len;
        }
        emit(
            &format!("api_list_pods_{label}"),
            [
                fields!("pods" => pods, "response_bytes" => bytes),
                lat.summary(""),
            ]
            .concat(),
        );
    }
    emit(
        "api_server_rss",
        fields!("pods" => pods, "rss_mib" => round(server.rss_mib()?), "rss_empty_mib" => round(rss_empty),
                "rss_after_creates_mib" => round(rss_after_creates)),
    );

    watch_delivery(&server, watchers, watch_events).await?;
    drop(server);
    whole_server(pods, concurrency).await
}

/// [`run`], then the datastore alone under the same load as the baseline, with values the
/// size of the stored pods.
pub async fn run_with_baseline(
    pods: usize,
    concurrency: usize,
    lists: usize,
    watchers: usize,
    watch_events: usize,
) -> Result<()> {
    use crate::store::{self, Backend};
    run(pods, concurrency, lists, watchers, watch_events).await?;
    let pod_bytes = 700;
    store::write(Backend::Embedded, pods, concurrency, pod_bytes).await?;
    store::range(Backend::Embedded, pods, pod_bytes, lists).await?;
    store::watch(Backend::Embedded, watchers, watch_events, pod_bytes).await
}

/// The same creates against a whole `skiff server` (controllers and scheduler, no nodes):
/// its rate and what it holds once they settled.
async fn whole_server(pods: usize, concurrency: usize) -> Result<()> {
    let server = start_server(&[]).await?;
    let client = connect(&server).await?;
    let (mut lat, elapsed) = create_pods(&client, "pod", pods, concurrency).await?;
    // Let the scheduler and controllers work through what the creates queued.
    tokio::time::sleep(Duration::from_secs(5)).await;
    emit(
        "api_whole_server",
        [
            fields!("pods" => pods, "concurrency" => concurrency,
                    "creates_per_s" => round(pods as f64 / elapsed.as_secs_f64()),
                    "rss_mib" => round(server.rss_mib()?)),
            lat.summary(""),
        ]
        .concat(),
    );
    Ok(())
}

/// `watchers` watches on one pod's changes, spread over connections (an HTTP/2 connection
/// carries at most 100 streams here, as client-go's default), then `events` updates, paced;
/// latency from each update's send to its arrival at every watcher.
async fn watch_delivery(server: &ServerProcess, watchers: usize, events: usize) -> Result<()> {
    let mut writer = connect(server).await?;
    let (status, body) = writer
        .send(
            "POST",
            &format!("/api/v1/namespaces/{NAMESPACE}/pods"),
            "application/json",
            pod("watched"),
        )
        .await?;
    if status != 201 {
        bail!(
            "create answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    let created: serde_json::Value = serde_json::from_slice(&body)?;
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();

    let sent: Arc<std::sync::Mutex<Vec<Option<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![None; events]));
    let mut handles = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..watchers.div_ceil(100) {
        clients.push(connect(server).await?);
    }
    let ready = Arc::new(tokio::sync::Barrier::new(watchers + 1));
    for w in 0..watchers {
        let mut client = clients[w / 100].clone();
        let sent = sent.clone();
        let ready = ready.clone();
        let path = format!(
            "/api/v1/namespaces/{NAMESPACE}/pods?watch=true&resourceVersion={rv}&fieldSelector=metadata.name%3Dwatched"
        );
        handles.push(tokio::spawn(async move {
            let req = client.request("GET", &path, "application/json", Bytes::new());
            client.sender.ready().await?;
            let resp = client.sender.send_request(req).await?;
            ready.wait().await;
            let mut body = resp.into_body();
            let mut lat = Latencies::with_capacity(events);
            let mut buf = Vec::new();
            while lat.len() < events {
                let Some(frame) = body.frame().await else {
                    break;
                };
                let Ok(data) = frame?.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=end).collect();
                    // The sequence number rides in an annotation; find it without a full parse.
                    let text = String::from_utf8_lossy(&line);
                    if let Some(seq) = text
                        .split("\"bench/seq\":\"")
                        .nth(1)
                        .and_then(|s| s.split('"').next())
                        .and_then(|s| s.parse::<usize>().ok())
                    {
                        let at = sent.lock().expect("not poisoned")[seq];
                        if let Some(at) = at {
                            lat.push(at.elapsed());
                        }
                    }
                }
            }
            anyhow::Ok(lat)
        }));
    }
    ready.wait().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    for seq in 0..events {
        let patch = json!({"metadata": {"annotations": {"bench/seq": seq.to_string()}}});
        sent.lock().expect("not poisoned")[seq] = Some(Instant::now());
        let req = writer.request(
            "PATCH",
            &format!("/api/v1/namespaces/{NAMESPACE}/pods/watched"),
            "application/json",
            Bytes::from(patch.to_string()),
        );
        let mut req = req;
        req.headers_mut()
            .insert("content-type", "application/merge-patch+json".parse()?);
        writer.sender.ready().await?;
        let resp = writer.sender.send_request(req).await?;
        if resp.status() != 200 {
            bail!("patch answered {}", resp.status());
        }
        resp.into_body().collect().await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut all = Latencies::with_capacity(watchers * events);
    for h in handles {
        match tokio::time::timeout(Duration::from_secs(60), h).await {
            Ok(r) => all.extend(r??),
            Err(_) => bail!("a watcher did not receive every event within 60s"),
        }
    }
    emit(
        "api_watch_delivery",
        [
            fields!("watchers" => watchers, "events" => events, "deliveries" => all.len(),
                    "duration_ms" => round(ms(start.elapsed()))),
            all.summary(""),
        ]
        .concat(),
    );
    Ok(())
}
