//! A pod's sync, teardown and stop logic against the fake machine and network
//! (`fake.rs`), a fake API server that records what the agent writes (its status patches
//! are fed back into the pod store, as the agent's informer would see them), and a real
//! image store pulling from skiff's own registry on loopback. No root, no containers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, Service};
use serde_json::{Value, json};
use skiff_client::Store;
use skiff_image::build::{BuiltImage, Compression, LayerBuilder};
use skiff_image::{Endpoint, ImageStore, RegistriesConfig, RegistryClient};
use skiff_oci::Platform;
use skiff_oci::manifest::RunConfig;

use super::Kubelet;
use super::KubeletConfig;
use super::fake::{FakeMachine, FakeNetwork};
use super::machine::PodNetworking;

const NODE: &str = "node-a";
const REGISTRY_TOKEN: &str = "registry-admin";

/// A request the agent sent to the API.
#[derive(Debug, Clone)]
struct Written {
    method: String,
    path: String,
    body: Value,
}

struct Harness {
    kubelet: Arc<Kubelet>,
    machine: Arc<FakeMachine>,
    network: Arc<FakeNetwork>,
    pods: Store<Pod>,
    services: Store<Service>,
    written: Arc<Mutex<Vec<Written>>>,
    /// What the fake API answers reads with, by path.
    objects: Objects,
    _data: tempfile::TempDir,
    _registry: (tempfile::TempDir, tokio::task::JoinHandle<()>),
}

type Objects = Arc<Mutex<HashMap<String, Value>>>;

/// An API server that answers every write with its body (a Pod for a status patch) and
/// every read with the object at its path, else 404.
fn fake_api(written: Arc<Mutex<Vec<Written>>>, objects: Objects) -> kube::Client {
    let service = tower::service_fn(move |request: hyper::Request<kube::client::Body>| {
        let (written, objects) = (written.clone(), objects.clone());
        async move {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await?;
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let path = parts.uri.path().to_string();
            let method = parts.method.to_string();
            written.lock().unwrap().push(Written {
                method: method.clone(),
                path: path.clone(),
                body: body.clone(),
            });
            let served = objects.lock().unwrap().get(&path).cloned();
            let (code, answer) = match method.as_str() {
                "GET" if served.is_some() => (200, served.unwrap_or_default()),
                "GET" => (
                    404,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "NotFound", "code": 404}),
                ),
                _ if path.ends_with("/status") => (
                    200,
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
                ),
                "DELETE" => (
                    200,
                    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
                ),
                _ => (200, body),
            };
            let response = hyper::Response::builder()
                .status(code)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(answer.to_string().into_bytes()))
                .unwrap();
            Ok::<_, kube::Error>(response)
        }
    });
    kube::Client::new(service, "default")
}

/// skiff's registry on loopback, holding `library/app` tags `v1` and `v2`.
async fn registry() -> (Endpoint, tempfile::TempDir, tokio::task::JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let storage = skiff_registry::Storage::open(dir.path()).unwrap();
    let (addr, task) = skiff_registry::serve(
        "127.0.0.1:0".parse().unwrap(),
        storage,
        Arc::new(|t: &str| t == REGISTRY_TOKEN),
    )
    .await
    .unwrap();
    let endpoint = Endpoint::new(&format!("http://{addr}"));
    let client = RegistryClient::new(offline());
    let credentials = skiff_image::Credentials {
        username: "skiff".into(),
        password: REGISTRY_TOKEN.into(),
    };
    let repository = client.repository(&endpoint, "library/app", Some(credentials), true);
    for tag in ["v1", "v2"] {
        let layer = LayerBuilder::new()
            .file("etc/version", tag.as_bytes(), 0o644)
            .finish(Compression::Gzip);
        let run = RunConfig {
            cmd: Some(vec!["/serve".into()]),
            ..Default::default()
        };
        let image = BuiltImage::new(vec![layer], run, &Platform::current());
        image.push(&repository, tag).await.unwrap();
    }
    (endpoint, dir, task)
}

/// Nothing leaves the machine: no fall-back to public registries.
fn offline() -> RegistriesConfig {
    RegistriesConfig {
        disable_default_endpoint: true,
        ..Default::default()
    }
}

fn pod(name: &str, spec: Value) -> Pod {
    let mut spec = spec;
    spec["nodeName"] = NODE.into();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": spec,
    }))
    .unwrap()
}

fn web(image: &str) -> Value {
    json!({"name": "web", "image": image})
}

impl Harness {
    async fn new(pods: Vec<Pod>) -> Harness {
        let data = tempfile::tempdir().unwrap();
        let (registry, registry_dir, registry_task) = registry().await;
        let written = Arc::new(Mutex::new(Vec::new()));
        let objects = Objects::default();
        let client = fake_api(written.clone(), objects.clone());
        let machine = Arc::new(FakeMachine::default());
        let network = Arc::new(FakeNetwork::default());
        let config = KubeletConfig {
            node_name: NODE.into(),
            data_dir: data.path().to_path_buf(),
            runtime_binary: "runc".into(),
            skiff_binary: "skiff".into(),
            node_netns: skiff_net::Netns::Current,
            pod_cidr: Some(skiff_net::Cidr::parse("10.244.0.0/24").unwrap()),
            node_ip: "192.0.2.1".into(),
            node_external_ip: None,
            lease_duration_seconds: 40,
            registry: Some(registry.clone()),
            workers: 1,
            streaming_address: "127.0.0.1:0".parse().unwrap(),
            cluster_ca: Vec::new(),
            proxy: None,
            cluster_dns: Some(super::dns::ClusterDns {
                nameserver: "10.43.0.10".parse().unwrap(),
                domain: "cluster.local".into(),
            }),
            resolv_conf: data.path().join("resolv.conf"),
            cluster_cidr: None,
            pod_network: super::node_routes::PodNetworkMode::HostGw,
            sync_frequency: super::DEFAULT_SYNC_FREQUENCY,
        };
        let images = ImageStore::open(
            data.path().join("images"),
            RegistryClient::new(offline()),
            Some(registry.clone()),
        )
        .unwrap();
        let pods = Store::of(pods);
        let services = Store::of([]);
        let kubelet = Arc::new(Kubelet::new(
            client,
            config,
            (pods.clone(), services.clone()),
            machine.clone(),
            network.clone(),
            images,
        ));
        Harness {
            kubelet,
            machine,
            network,
            pods,
            services,
            written,
            objects,
            _data: data,
            _registry: (registry_dir, registry_task),
        }
    }

    /// Syncs the pod; then the pod store sees the status the sync wrote, as the agent's
    /// informer would.
    async fn sync(&self, name: &str) -> Option<Duration> {
        let before = self.written.lock().unwrap().len();
        let again = self.kubelet.sync(&format!("default/{name}")).await.unwrap();
        let status_path = format!("/api/v1/namespaces/default/pods/{name}/status");
        let patches: Vec<Value> = self.written.lock().unwrap()[before..]
            .iter()
            .filter(|w| w.method == "PATCH" && w.path == status_path)
            .map(|w| w.body["status"].clone())
            .collect();
        if let Some(mut pod) = self
            .pods
            .get(&format!("default/{name}"))
            .map(|p| (*p).clone())
        {
            let mut status = serde_json::to_value(pod.status.take().unwrap_or_default()).unwrap();
            for patch in &patches {
                // As the API server applies the agent's merge patches.
                skiff_api::patch::merge_patch(&mut status, patch);
            }
            pod.status = serde_json::from_value(status).unwrap();
            self.pods.put(pod);
        }
        again
    }

    fn status(&self, name: &str) -> Value {
        let pod = self.pods.get(&format!("default/{name}")).unwrap();
        serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap()
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut Value)) {
        let pod = self.pods.get(&format!("default/{name}")).unwrap();
        let mut value = serde_json::to_value(pod.as_ref()).unwrap();
        change(&mut value);
        self.pods.put(serde_json::from_value(value).unwrap());
    }

    /// The reasons of the events written so far, waiting until `wanted` is among them (the
    /// recorder writes in the background).
    async fn events_with(&self, wanted: &str) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let reasons: Vec<String> = self
                .written
                .lock()
                .unwrap()
                .iter()
                .filter(|w| w.method == "POST" && w.path.ends_with("/events"))
                .filter_map(|w| w.body["reason"].as_str().map(str::to_string))
                .collect();
            if reasons.iter().any(|r| r == wanted) || tokio::time::Instant::now() > deadline {
                return reasons;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn signals(&self) -> Vec<(String, i32)> {
        self.machine.signals.lock().unwrap().clone()
    }
}

fn container_status<'a>(status: &'a Value, list: &str, name: &str) -> &'a Value {
    status[list]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {list} entry for {name} in {status:#}"))
}

#[tokio::test]
async fn init_containers_run_first_then_the_app_and_the_pod_becomes_ready() {
    let spec = json!({"initContainers": [{"name": "init", "image": "app:v1"}],
                      "containers": [web("app:v1")]});
    let h = Harness::new(vec![pod("p", spec)]).await;

    h.sync("p").await;
    assert_eq!(h.machine.started(), ["uid-p-init-0"]);
    let status = h.status("p");
    assert_eq!(status["phase"], "Pending");
    assert_eq!(status["podIP"], "10.244.0.2");
    assert_eq!(status["hostIP"], "192.0.2.1");
    assert!(
        container_status(&status, "initContainerStatuses", "init")["state"]["running"].is_object()
    );
    let app = container_status(&status, "containerStatuses", "web");
    assert_eq!(app["state"]["waiting"]["reason"], "PodInitializing");

    h.machine.exit("uid-p-init-0", 0, None);
    h.sync("p").await;
    assert_eq!(h.machine.started(), ["uid-p-init-0", "uid-p-web-0"]);
    let status = h.status("p");
    assert_eq!(status["phase"], "Running", "{status:#}");
    let init = container_status(&status, "initContainerStatuses", "init");
    assert_eq!(init["state"]["terminated"]["reason"], "Completed");
    let app = container_status(&status, "containerStatuses", "web");
    assert!(app["state"]["running"].is_object());
    assert_eq!(app["ready"], true);
    assert_eq!(app["containerID"], "fake://uid-p-web-0");
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap();
    assert_eq!(ready["status"], "True");
    let reasons = h.events_with("Started").await;
    for reason in ["Pulled", "Created", "Started"] {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{reason} missing from {reasons:?}"
        );
    }
    // Nothing changed: the sync writes no status again and starts nothing.
    let writes = h.written.lock().unwrap().len();
    h.sync("p").await;
    let status_writes = h.written.lock().unwrap()[writes..]
        .iter()
        .filter(|w| w.method == "PATCH")
        .count();
    assert_eq!(status_writes, 0);
    assert_eq!(h.machine.started().len(), 2);
}

#[tokio::test]
async fn a_crashing_container_backs_off_then_restarts() {
    let h = Harness::new(vec![pod("p", json!({"containers": [web("app:v1")]}))]).await;
    h.sync("p").await;
    h.machine.exit("uid-p-web-0", 1, None);

    let again = h.sync("p").await.unwrap();
    assert!(
        again <= Duration::from_secs(10) && again > Duration::from_secs(8),
        "{again:?}"
    );
    assert_eq!(
        h.machine.started(),
        ["uid-p-web-0"],
        "restarted within its back-off"
    );
    let status = h.status("p");
    let web = container_status(&status, "containerStatuses", "web");
    assert_eq!(web["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(web["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(web["ready"], false);
    assert!(
        h.events_with("BackOff")
            .await
            .iter()
            .any(|r| r == "BackOff")
    );

    // Its back-off over (the exit recorded 11 s ago): a new run, counted as a restart.
    let bundle = h
        .kubelet
        .config
        .data_dir
        .join("pods/uid-p/containers/web/0");
    let mut exit: Value =
        serde_json::from_slice(&std::fs::read(bundle.join("exit")).unwrap()).unwrap();
    let earlier = time::OffsetDateTime::now_utc() - time::Duration::seconds(11);
    exit["finishedAt"] = earlier
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
        .into();
    std::fs::write(bundle.join("exit"), exit.to_string()).unwrap();
    h.sync("p").await;
    assert_eq!(h.machine.started(), ["uid-p-web-0", "uid-p-web-1"]);
    let status = h.status("p");
    let web = container_status(&status, "containerStatuses", "web");
    assert_eq!(web["restartCount"], 1);
    assert!(web["state"]["running"].is_object());
}

#[tokio::test]
async fn a_failed_container_under_restart_policy_never_fails_the_pod_and_frees_the_node() {
    let spec = json!({"restartPolicy": "Never", "containers": [web("app:v1")]});
    let h = Harness::new(vec![pod("p", spec)]).await;
    h.sync("p").await;
    h.machine.exit("uid-p-web-0", 3, None);

    h.sync("p").await;
    assert_eq!(h.machine.started(), ["uid-p-web-0"]);
    let status = h.status("p");
    assert_eq!(status["phase"], "Failed");
    let web = container_status(&status, "containerStatuses", "web");
    assert_eq!(web["state"]["terminated"]["exitCode"], 3);
    assert_eq!(web["state"]["terminated"]["reason"], "Error");

    // Finished for good: its sandbox and address go; its logs stay for `kubectl logs`.
    h.sync("p").await;
    assert_eq!(*h.machine.removed_sandboxes.lock().unwrap(), ["uid-p"]);
    assert_eq!(h.network.address_of("uid-p"), None);
    assert!(!h.kubelet.config.data_dir.join("pods/uid-p").exists());
}

#[tokio::test]
async fn a_deleted_pod_is_stopped_with_sigterm_then_torn_down_and_removed() {
    let h = Harness::new(vec![pod("p", json!({"containers": [web("app:v1")]}))]).await;
    h.sync("p").await;
    h.update("p", |p| {
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
        p["metadata"]["deletionGracePeriodSeconds"] = 30.into();
    });

    let again = h.sync("p").await;
    assert_eq!(h.signals(), [("uid-p-web-0".to_string(), 15)]);
    assert!(again.is_some(), "looked at again until its runs are gone");
    assert!(
        h.events_with("Killing")
            .await
            .iter()
            .any(|r| r == "Killing")
    );

    // SIGTERM ended it: the node's resources go, then the pod object.
    assert_eq!(h.sync("p").await, None);
    assert_eq!(*h.machine.removed_sandboxes.lock().unwrap(), ["uid-p"]);
    assert_eq!(h.network.address_of("uid-p"), None);
    let deletes: Vec<Written> = h
        .written
        .lock()
        .unwrap()
        .iter()
        .filter(|w| w.method == "DELETE")
        .cloned()
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].path, "/api/v1/namespaces/default/pods/p");
    assert_eq!(deletes[0].body["gracePeriodSeconds"], 0);
    assert_eq!(deletes[0].body["preconditions"]["uid"], "uid-p");
}

#[tokio::test]
async fn a_changed_image_replaces_the_run_without_back_off() {
    let h = Harness::new(vec![pod("p", json!({"containers": [web("app:v1")]}))]).await;
    h.sync("p").await;
    h.update("p", |p| {
        p["spec"]["containers"][0]["image"] = "app:v2".into()
    });

    h.sync("p").await;
    assert_eq!(h.signals(), [("uid-p-web-0".to_string(), 15)]);
    h.sync("p").await;
    assert_eq!(h.machine.started(), ["uid-p-web-0", "uid-p-web-1"]);
    let status = h.status("p");
    let web = container_status(&status, "containerStatuses", "web");
    assert_eq!(web["image"], "app:v2");
    assert!(web["state"]["running"].is_object());
    assert!(
        h.events_with("Killing")
            .await
            .iter()
            .any(|r| r == "Killing")
    );
}

#[tokio::test]
async fn a_missing_image_is_reported_and_retried_soon() {
    let h = Harness::new(vec![pod("p", json!({"containers": [web("absent:v9")]}))]).await;
    let again = h.sync("p").await.unwrap();
    assert!(again <= Duration::from_secs(1), "{again:?}");
    assert!(h.machine.started().is_empty());
    let status = h.status("p");
    let web = container_status(&status, "containerStatuses", "web");
    assert_eq!(
        web["state"]["waiting"]["reason"], "ErrImagePull",
        "{status:#}"
    );
    assert!(h.events_with("Failed").await.iter().any(|r| r == "Failed"));
}

#[tokio::test]
async fn a_pod_the_api_forgot_is_killed_and_torn_down() {
    let h = Harness::new(vec![pod("p", json!({"containers": [web("app:v1")]}))]).await;
    h.sync("p").await;
    // Deleted while the agent was away: gone from its store, still on the node.
    h.pods.remove("default/p");
    assert_eq!(h.sync("p").await, None);
    assert_eq!(h.signals(), [("uid-p-web-0".to_string(), 9)]);
    assert_eq!(*h.machine.removed_sandboxes.lock().unwrap(), ["uid-p"]);
    assert_eq!(h.network.address_of("uid-p"), None);
    assert!(!h.kubelet.config.data_dir.join("pods/uid-p").exists());
}

/// An image whose config sets `env`.
fn image_with_env(env: &[&str]) -> skiff_image::Image {
    skiff_image::Image {
        name: "docker.io/library/app:v1".into(),
        digest: "sha256:0".into(),
        config: serde_json::from_value(json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Env": env},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .unwrap(),
        layers: Vec::new(),
        size: 0,
    }
}

impl Harness {
    fn serve(&self, path: &str, object: Value) {
        self.objects.lock().unwrap().insert(path.into(), object);
    }

    async fn environment(
        &self,
        pod: &Pod,
        image: &skiff_image::Image,
    ) -> Result<BTreeMap<String, String>, String> {
        let fields = self.kubelet.field_env(pod, "10.244.0.9");
        let c = &pod.spec.as_ref().unwrap().containers[0];
        let env = self.kubelet.environment(pod, c, image, &fields).await;
        env.map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn the_environment_is_the_images_then_service_links_then_env_from_then_env() {
    let spec = json!({"containers": [{
        "name": "web", "image": "app:v1",
        "resources": {"limits": {"memory": "64Mi"}},
        "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "CM_"}],
        "env": [
            {"name": "A", "value": "$(CM_B)-and-$(PATH)"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory", "divisor": "1Mi"}}},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "k", "optional": true}}},
        ],
    }]});
    let p = pod("p", spec);
    let h = Harness::new(vec![p.clone()]).await;
    h.serve(
        "/api/v1/namespaces/default/configmaps/settings",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"},
               "data": {"A": "from-the-map", "B": "b"}}),
    );
    h.serve(
        "/api/v1/namespaces/default/secrets/creds",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds"},
               "data": {"token": "czNjcjN0"}}),
    );
    h.services.put(
        serde_json::from_value(json!({
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]},
        }))
        .unwrap(),
    );
    let env = h
        .environment(&p, &image_with_env(&["PATH=/bin", "A=from-the-image"]))
        .await
        .unwrap();
    let expected = [
        ("PATH", "/bin"),
        ("A", "b-and-/bin"),
        ("CM_A", "from-the-map"),
        ("CM_B", "b"),
        ("POD", "p"),
        ("IP", "10.244.0.9"),
        ("NODE", NODE),
        ("MEM", "64"),
        ("TOKEN", "s3cr3t"),
        ("DB_SERVICE_HOST", "10.43.0.20"),
        ("DB_SERVICE_PORT", "5432"),
        ("DB_PORT_5432_TCP_ADDR", "10.43.0.20"),
    ];
    for (k, v) in expected {
        assert_eq!(env.get(k).map(String::as_str), Some(v), "{k} in {env:#?}");
    }
    assert!(
        !env.contains_key("GONE"),
        "an optional key that is missing is left out"
    );

    // Without service links, no service's variables.
    let mut quiet = p.clone();
    quiet.spec.as_mut().unwrap().enable_service_links = Some(false);
    let env = h.environment(&quiet, &image_with_env(&[])).await.unwrap();
    assert!(!env.keys().any(|k| k.starts_with("DB_")), "{env:#?}");
}

#[tokio::test]
async fn a_missing_source_or_key_fails_the_container_with_upstreams_message() {
    let env = |from: Value| {
        pod(
            "p",
            json!({"containers": [{"name": "web", "image": "app:v1",
                                        "env": [{"name": "X", "valueFrom": from}]}]}),
        )
    };
    let h = Harness::new(Vec::new()).await;
    h.serve(
        "/api/v1/namespaces/default/configmaps/settings",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"a": "1"}}),
    );
    let image = image_with_env(&[]);
    let missing_map = env(json!({"configMapKeyRef": {"name": "absent", "key": "a"}}));
    let e = h.environment(&missing_map, &image).await.unwrap_err();
    assert_eq!(e, "configmap \"absent\" not found");
    let missing_key = env(json!({"configMapKeyRef": {"name": "settings", "key": "b"}}));
    let e = h.environment(&missing_key, &image).await.unwrap_err();
    assert_eq!(e, "couldn't find key b in ConfigMap default/settings");
    let bad_field = env(json!({"fieldRef": {"fieldPath": "status.phase"}}));
    let e = h.environment(&bad_field, &image).await.unwrap_err();
    assert!(e.contains("unsupported fieldRef \"status.phase\""), "{e}");

    // A container that cannot get its environment waits with the reason, and says why.
    let p = pod(
        "q",
        json!({"containers": [{"name": "web", "image": "app:v1",
        "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "b"}}}]}]}),
    );
    h.pods.put(p);
    h.sync("q").await;
    let status = h.status("q");
    let web = container_status(&status, "containerStatuses", "web");
    assert_eq!(
        web["state"]["waiting"]["reason"],
        "CreateContainerConfigError"
    );
    assert_eq!(
        web["state"]["waiting"]["message"],
        "couldn't find key b in ConfigMap default/settings"
    );
    assert!(h.machine.started().is_empty());
}
