//! The harness for end-to-end tests: a real API server on loopback (its own data directory,
//! embedded datastore, ephemeral port) and the real clients that drive it — every versioned
//! kubectl on the machine, and curl for raw HTTP.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use serde_json::Value;
use skiff_apiserver::{RunningServer, ServerConfig};
use skiff_store::Store;

pub mod cluster;
pub mod images;
pub mod node;

/// Where the machine's versioned kubectl binaries live (Google Cloud SDK's layout).
const KUBECTL_DIR: &str = "/usr/lib/google-cloud-sdk/bin";

/// Where `scripts/install-test-clients.sh` puts Helm 4 and kubectl 1.35.
const TEST_CLIENTS_DIR: &str = "/opt/skiff-test-clients";

/// A client binary installed by `scripts/install-test-clients.sh` (`helm`, `kubectl` 1.35);
/// panics with how to install it when it is missing.
pub fn test_client(name: &str) -> PathBuf {
    let dir = std::env::var_os("SKIFF_TEST_CLIENTS").unwrap_or_else(|| TEST_CLIENTS_DIR.into());
    let path = Path::new(&dir).join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-clients.sh (scripts/test does)",
        path.display()
    );
    path
}

/// The kubectl minor versions the acceptance covers.
pub const KUBECTL_MINORS: std::ops::RangeInclusive<u32> = 28..=33;

/// How a test's server is set up (the defaults are `skiff server`'s).
pub struct Options {
    pub etcd: bool,
    pub controllers: bool,
    pub event_ttl: std::time::Duration,
    /// Both DefaultTolerationSeconds values.
    pub toleration_seconds: i64,
    pub node_monitor_grace_period: std::time::Duration,
    /// `--lb-address-pool`.
    pub lb_address_pool: Option<skiff_controllers::AddressPool>,
    /// Where the API server and the registry listen (default: loopback).
    pub bind_address: Option<std::net::IpAddr>,
    /// `--service-cidr` and `--service-node-port-range`.
    pub service_network: skiff_apiserver::ServiceNetwork,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            etcd: false,
            controllers: true,
            event_ttl: skiff_apiserver::DEFAULT_EVENT_TTL,
            toleration_seconds: skiff_apiserver::DEFAULT_TOLERATION_SECONDS,
            node_monitor_grace_period: skiff_controllers::Config::default()
                .node_monitor_grace_period,
            lb_address_pool: None,
            bind_address: None,
            service_network: Default::default(),
        }
    }
}

/// A running server for one test.
pub struct TestServer {
    // Dropped first: the server stops before its runtime and directories go.
    server: Option<RunningServer>,
    runtime: tokio::runtime::Runtime,
    pub store: Arc<dyn Store>,
    /// The embedded image registry (plain HTTP on loopback), as `skiff server` runs it.
    pub registry: std::net::SocketAddr,
    dir: tempfile::TempDir,
    /// The etcd behind `store`, when there is one; dropped last.
    _etcd: Option<skiff_testkit::EtcdServer>,
}

impl TestServer {
    /// A server on the embedded datastore, with its controllers and scheduler (as
    /// `skiff server`).
    pub fn start() -> TestServer {
        Self::start_with(Options::default())
    }

    /// A server that expires events after `ttl` (to see the expiry happen).
    pub fn start_with_event_ttl(ttl: std::time::Duration) -> TestServer {
        Self::start_with(Options {
            event_ttl: ttl,
            ..Options::default()
        })
    }

    /// The API server alone: for tests of API semantics that a controller would act on
    /// (a terminating namespace, say) before the test could look.
    pub fn start_api_only() -> TestServer {
        Self::start_with(Options {
            controllers: false,
            ..Options::default()
        })
    }

    /// The API server alone over a real etcd (kept alive by the returned server).
    pub fn start_with_etcd() -> TestServer {
        Self::start_with(Options {
            etcd: true,
            controllers: false,
            ..Options::default()
        })
    }

    pub fn start_with(options: Options) -> TestServer {
        let etcd = options.etcd.then(|| {
            skiff_testkit::EtcdServer::start().expect("start etcd (apt-get install etcd-server)")
        });
        let dir = tempfile::tempdir().expect("temp dir");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let data_dir = dir.path().to_path_buf();
        let (server, store, registry) = runtime.block_on(async {
            let config = match &etcd {
                Some(etcd) => skiff_store::DatastoreConfig::Etcd(skiff_store::EtcdConfig::new(
                    &etcd.endpoint(),
                )),
                None => skiff_store::DatastoreConfig::embedded(data_dir.join("db/state.redb")),
            };
            let store = skiff_store::open(config).await.expect("open the datastore");
            let server = skiff_apiserver::start(ServerConfig {
                data_dir: data_dir.clone(),
                bind_address: options
                    .bind_address
                    .unwrap_or_else(|| "127.0.0.1".parse().unwrap()),
                https_port: 0,
                write_kubeconfig: Some(data_dir.join("kubeconfig")),
                advertise_address: None,
                cluster_dns: Some(options.service_network.address(10)),
                service_network: options.service_network.clone(),
                store: store.clone(),
                event_ttl: options.event_ttl,
                not_ready_toleration_seconds: options.toleration_seconds,
                unreachable_toleration_seconds: options.toleration_seconds,
            })
            .await
            .expect("start the API server");
            let (registry, _) = skiff_registry::serve(
                std::net::SocketAddr::new(
                    options
                        .bind_address
                        .unwrap_or_else(|| "127.0.0.1".parse().unwrap()),
                    0,
                ),
                skiff_registry::Storage::open(data_dir.join("registry")).expect("registry storage"),
                server.token_check(),
            )
            .await
            .expect("start the registry");
            let client = skiff_client::client_from_kubeconfig(&server.kubeconfig)
                .await
                .expect("a client for the server");
            skiff_client::cluster_registry::publish(&client, registry.port())
                .await
                .expect("publish the registry's address");
            // As `skiff server` does: the controllers and the scheduler, as API clients.
            if options.controllers {
                let client = skiff_client::client_from_kubeconfig(&server.kubeconfig)
                    .await
                    .expect("a client for the controllers");
                let config = skiff_controllers::Config {
                    node_monitor_grace_period: options.node_monitor_grace_period,
                    root_ca_pem: Some(server.ca_pem.clone()),
                    lb_address_pool: options.lb_address_pool.clone(),
                    cluster_cidr: Some(skiff_net::Cidr::parse("10.42.0.0/16").unwrap()),
                    node_cidr_mask_size: skiff_controllers::DEFAULT_NODE_CIDR_MASK_SIZE,
                };
                let mut informers = skiff_client::InformerFactory::new(client.clone());
                let controllers =
                    skiff_controllers::Controllers::new(client.clone(), config, &mut informers);
                let scheduler = skiff_scheduler::Scheduler::new(client.clone(), &mut informers);
                let lease = |name: &str| {
                    skiff_client::leader::LeaderLease::new(client.clone(), name, "test-server")
                };
                let (scheduler_lease, controllers_lease) =
                    (lease("kube-scheduler"), lease("kube-controller-manager"));
                tokio::spawn(async move {
                    let _informers = informers.start().await;
                    tokio::spawn(
                        scheduler_lease.run_while_leader("the scheduler", scheduler.run()),
                    );
                    controllers_lease
                        .run_while_leader("the controllers", controllers.run())
                        .await;
                });
            }
            (server, store, registry)
        });
        TestServer {
            server: Some(server),
            runtime,
            store,
            registry,
            dir,
            _etcd: etcd,
        }
    }

    fn server(&self) -> &RunningServer {
        self.server.as_ref().expect("server is running")
    }

    pub fn url(&self) -> &str {
        &self.server().url
    }

    pub fn token(&self) -> &str {
        &self.server().admin_token
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig")
    }

    pub fn ca_file(&self) -> PathBuf {
        self.dir.path().join("tls/ca.crt")
    }

    /// Runs a future on the server's runtime (for direct datastore access).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// A kubectl of the given minor version against this server, with its own cache dir.
    pub fn kubectl(&self, minor: u32) -> Kubectl {
        Kubectl {
            bin: kubectl_binary(minor),
            kubeconfig: self.kubeconfig(),
            cache: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// A raw HTTPS request with curl (the admin token unless `token` says otherwise).
    pub fn http(&self, method: &str, path: &str) -> Http<'_> {
        Http {
            server: self,
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: None,
            token: Some(self.token().to_string()),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _guard = self.runtime.enter();
            drop(server);
        }
    }
}

/// The `skiff` binary of this checkout: `$SKIFF_BIN`, else the one beside the test's own
/// target directory (`scripts/test` builds it before the tests).
pub fn skiff_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SKIFF_BIN") {
        return path.into();
    }
    // target/debug/deps/<test binary> → target/debug/skiff
    let exe = std::env::current_exe().expect("the test binary's path");
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("a target directory")
        .join("skiff");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p skiff` (scripts/test does)",
        path.display()
    );
    path
}

impl TestServer {
    /// `helm ARGS` (Helm 4) against this server, with its config, cache and data under
    /// `home` (so tests share nothing through ~/.config/helm).
    pub fn helm(&self, home: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(test_client("helm"));
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .env("HELM_CONFIG_HOME", home.join("config"))
            .env("HELM_CACHE_HOME", home.join("cache"))
            .env("HELM_DATA_HOME", home.join("data"));
        cmd
    }

    /// `skiff ARGS` against this server: it finds the cluster through `KUBECONFIG`.
    pub fn skiff(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(skiff_binary());
        cmd.args(args).env("KUBECONFIG", self.kubeconfig());
        cmd
    }
}

/// Node tests (containers, namespaces, mounts) need root; says so instead of failing oddly.
pub fn assert_root() {
    let uid = Command::new("id").arg("-u").output().expect("id");
    assert_eq!(
        String::from_utf8_lossy(&uid.stdout).trim(),
        "0",
        "node tests run as root"
    );
}

/// The mount points under `dir`: what a node test must not leave.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    skiff_runtime::procfs::mounts_under(dir)
}

/// The path of `kubectl.1.<minor>`; panics with what to install when it is missing.
pub fn kubectl_binary(minor: u32) -> PathBuf {
    let path = Path::new(KUBECTL_DIR).join(format!("kubectl.1.{minor}"));
    assert!(
        path.exists(),
        "{} is missing: these tests drive the versioned kubectl binaries of the Google Cloud SDK \
         (package google-cloud-cli, component kubectl)",
        path.display()
    );
    path
}

pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

impl Kubectl {
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(args)
            .env_remove("KUBECONFIG");
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run kubectl")
    }

    /// Runs with `stdin` fed to the process. A kubectl still running after two minutes (a
    /// stream the server never ends) is killed, and so fails.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let pid = child.id().to_string();
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished
                .recv_timeout(std::time::Duration::from_secs(120))
                .is_err()
            {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
        });
        let out = child.wait_with_output().expect("wait for kubectl");
        let _ = done.send(());
        let _ = watchdog.join();
        out
    }

    /// Runs and expects success; answers stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        check(&self.bin, args, self.run(args))
    }

    pub fn ok_stdin(&self, args: &[&str], stdin: &str) -> String {
        check(&self.bin, args, self.run_with_stdin(args, stdin))
    }

    /// Runs and expects failure; answers stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        self.failed(args, self.run(args))
    }

    /// Runs with `stdin` and expects failure; answers stderr.
    pub fn fails_stdin(&self, args: &[&str], stdin: &str) -> String {
        self.failed(args, self.run_with_stdin(args, stdin))
    }

    fn failed(&self, args: &[&str], out: Output) -> String {
        assert!(
            !out.status.success(),
            "{} {args:?} should have failed; stdout:\n{}",
            self.bin.display(),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `-o json` output, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        serde_json::from_str(&self.ok(&all)).expect("kubectl printed JSON")
    }
}

fn check(bin: &Path, args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A raw request, sent with curl.
pub struct Http<'a> {
    server: &'a TestServer,
    method: String,
    path: String,
    headers: Vec<String>,
    body: Option<Vec<u8>>,
    token: Option<String>,
}

/// A raw response: status code and body.
pub struct Reply {
    pub code: u16,
    /// The body as text (lossy for binary bodies; see `bytes`).
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Http<'_> {
    pub fn header(mut self, h: &str) -> Self {
        self.headers.push(h.to_string());
        self
    }

    pub fn json(self, body: &Value) -> Self {
        self.header("Content-Type: application/json")
            .body(body.to_string().into_bytes())
    }

    pub fn body(mut self, body: Vec<u8>) -> Self {
        self.body = Some(body);
        self
    }

    pub fn without_token(mut self) -> Self {
        self.token = None;
        self
    }

    pub fn send(self) -> Reply {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--cacert"])
            .arg(self.server.ca_file())
            .args(["-X", &self.method, "-w", "\n%{http_code}"]);
        if let Some(t) = &self.token {
            cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        for h in &self.headers {
            cmd.args(["-H", h]);
        }
        if self.body.is_some() {
            cmd.args(["--data-binary", "@-"]);
        }
        cmd.arg(format!("{}{}", self.server.url(), self.path));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("run curl (apt-get install curl)");
        let mut stdin = child.stdin.take().unwrap();
        if let Some(b) = &self.body {
            stdin.write_all(b).unwrap();
        }
        drop(stdin);
        let out = child.wait_with_output().expect("wait for curl");
        // curl's `-w` appends "\n<code>" after the body.
        let split = out.stdout.iter().rposition(|b| *b == b'\n').unwrap_or(0);
        let (body, code) = out.stdout.split_at(split);
        let code = String::from_utf8_lossy(code);
        Reply {
            code: code.trim().parse().unwrap_or_else(|_| {
                panic!("curl failed: {}", String::from_utf8_lossy(&out.stderr))
            }),
            body: String::from_utf8_lossy(body).into_owned(),
            bytes: body.to_vec(),
        }
    }
}

/// Polls until `check` passes or the time is up (controllers act asynchronously).
pub fn eventually(what: &str, within: std::time::Duration, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + within;
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "{what} did not happen within {within:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Simulated nodes (`skiff agent --simulated-nodes`) joined to a test's server, on a
/// runtime of their own: dropping them stops them at once, as killing the agent would.
pub struct SimulatedNodes {
    runtime: Option<tokio::runtime::Runtime>,
}

impl SimulatedNodes {
    /// `count` nodes named `prefix0…`, renewing their leases every quarter of
    /// `lease_seconds`; returns once all are registered.
    pub fn start(server: &TestServer, count: usize, prefix: &str, lease_seconds: i32) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let kubeconfig = std::fs::read_to_string(server.kubeconfig()).expect("kubeconfig");
        let (registered_tx, registered_rx) = std::sync::mpsc::channel();
        let mut config = skiff_agent::simulated::SimulatedConfig::new(count, prefix);
        config.lease_duration_seconds = lease_seconds;
        runtime.spawn(async move {
            let api = skiff_client::config_from_kubeconfig(&kubeconfig)
                .await
                .expect("a client for the simulated nodes");
            let result = skiff_agent::simulated::run(api, config, move |done, total| {
                if done == total {
                    let _ = registered_tx.send(());
                }
            })
            .await;
            if let Err(e) = result {
                panic!("simulated nodes failed: {e}");
            }
        });
        registered_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the simulated nodes registered");
        SimulatedNodes {
            runtime: Some(runtime),
        }
    }

    /// Stops every node at once: no more heartbeats, no more pod updates.
    pub fn kill(mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for SimulatedNodes {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
