//! The node agent's pod startup latency (as root, real runc): a `skiff server` process
//! (its own agent disabled) and a `skiff agent` process whose pod bridge lives in a network
//! namespace made here. With the image present, pods are created at a concurrency and each
//! is timed from its create call to the watch showing it Ready. Beside it, the floor: the
//! same container (same layer, same overlay, same security defaults) started directly
//! with `runc run --detach` at the same concurrency. Then the agent's resident memory with 20 pods running.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use skiff_image::build::{BuiltImage, Compression, LayerBuilder};
use skiff_runtime::sandbox::Sandbox;
use tokio::sync::Mutex;

use crate::api::{ServerProcess, rss_kib, rss_split_kib, skiff_binary, start_server};
use crate::fields;
use crate::stats::{Latencies, emit, in_parallel, round};

struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn busybox_layer() -> Result<LayerBuilder> {
    let busybox =
        std::fs::read("/bin/busybox").context("busybox (apt-get install busybox-static)")?;
    let mut layer = LayerBuilder::new()
        .dir("bin/")
        .file("bin/busybox", &busybox, 0o755);
    for applet in ["sh", "sleep"] {
        layer = layer.symlink(&format!("bin/{applet}"), "busybox");
    }
    Ok(layer.dir("tmp/").dir("etc/"))
}

async fn push_image(server: &ServerProcess, registry: &str) -> Result<()> {
    let run = skiff_oci::manifest::RunConfig {
        env: Some(vec!["PATH=/bin".into()]),
        cmd: Some(vec!["sleep".into(), "100000".into()]),
        ..Default::default()
    };
    let image = BuiltImage::new(
        vec![busybox_layer()?.finish(Compression::Gzip)],
        run,
        &skiff_oci::Platform::current(),
    );
    let client = skiff_image::RegistryClient::new(Default::default());
    let endpoint = skiff_image::Endpoint::new(&format!("http://{registry}"));
    let creds = skiff_image::Credentials {
        username: "skiff".into(),
        password: server.token().to_string(),
    };
    let repo = client.repository(&endpoint, "library/bench", Some(creds), true);
    image.push(&repo, "v1").await?;
    Ok(())
}

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "startup"}},
        "spec": {"terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "c", "image": "bench:v1", "imagePullPolicy": "IfNotPresent"}]},
    }))?)
}

/// Whether this process runs as root (the node scenario needs it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

pub async fn run(pods: usize, concurrency: usize) -> Result<()> {
    if !is_root() {
        bail!("the node benchmark runs containers: run it as root");
    }
    let port = skiff_testkit::free_port()?;
    let server = start_server(&["--registry-port", &port.to_string()]).await?;
    let registry = format!("127.0.0.1:{port}");
    push_image(&server, &registry).await?;
    let client =
        skiff_client::client_from_kubeconfig(&std::fs::read_to_string(server.kubeconfig())?)
            .await?;

    let work = tempfile::tempdir()?;
    let netns = Sandbox::at(work.path().join("node-ns"));
    netns.create("bench-node")?;
    let data = work.path().join("agent");
    let agent = AgentProcess(
        Command::new(skiff_binary()?)
            .args([
                "agent",
                "--node-name",
                "bench-node",
                "--pod-cidr",
                "10.244.0.0/16",
                "--node-ip",
                "127.0.0.1",
            ])
            .arg("--kubeconfig")
            .arg(server.kubeconfig())
            .arg("--data-dir")
            .arg(&data)
            .arg("--node-netns")
            .arg(netns.net())
            // SKIFF_AGENT_LOG=skiff_agent=debug shows where each pod's startup goes.
            .env(
                "RUST_LOG",
                std::env::var("SKIFF_AGENT_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let result = measure(&client, &agent, &data, pods, concurrency).await;
    // Clean up whatever happened: pods first (the agent tears them down), then the rest.
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    let _ = api
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    // The agent tears each pod down once it is gone from the API.
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline
        && std::fs::read_dir(data.join("pods")).is_ok_and(|mut d| d.next().is_some())
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(agent);
    // Whatever is left (the agent failed, or took too long) goes too.
    if let Err(e) = skiff_agent::kubelet::wipe(&data, Path::new("runc")) {
        eprintln!("cleaning up the node: {e}");
    }
    let _ = netns.remove();
    result?;
    floor(pods, concurrency)?;
    Ok(())
}

async fn measure(
    client: &kube::Client,
    agent: &AgentProcess,
    data: &Path,
    pods: usize,
    concurrency: usize,
) -> Result<()> {
    let nodes = Api::<Node>::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !nodes
        .get_opt("bench-node")
        .await?
        .is_some_and(|n| skiff_client::objects::node_is_ready(&n))
    {
        if Instant::now() > deadline {
            bail!("the node agent did not become Ready");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api = Api::<Pod>::namespaced(client.clone(), "default");
    // The image is pulled once, outside the measurement.
    api.create(&PostParams::default(), &pod("warm-up")?).await?;
    let ready: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    {
        let ready = ready.clone();
        let api = api.clone();
        tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let Event::Apply(p) | Event::InitApply(p) = event
                    && skiff_client::objects::pod_is_ready(&p)
                {
                    ready
                        .lock()
                        .await
                        .entry(p.metadata.name.clone().unwrap_or_default())
                        .or_insert_with(Instant::now);
                }
            }
        });
    }
    let wait_ready = |name: String, ready: Arc<Mutex<HashMap<String, Instant>>>| async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(t) = ready.lock().await.get(&name) {
                return Ok::<Instant, anyhow::Error>(*t);
            }
            if Instant::now() > deadline {
                bail!("pod {name} did not become Ready");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    wait_ready("warm-up".into(), ready.clone()).await?;

    let started = Instant::now();
    let latencies = {
        let (api, ready) = (api.clone(), ready.clone());
        in_parallel(pods, concurrency, move |i| {
            let (api, ready) = (api.clone(), ready.clone());
            async move {
                let name = format!("p{i}");
                api.create(&PostParams::default(), &pod(&name)?).await?;
                // in_parallel times the whole op: the create call until the watch saw Ready.
                wait_ready(name, ready).await?;
                Ok(())
            }
        })
        .await?
    };
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies: Latencies = latencies;
    let mut fields = fields!("pods" => pods, "concurrency" => concurrency,
                             "pods_per_s" => round(pods as f64 / elapsed));
    fields.extend(latencies.summary("create_to_ready_"));
    emit("node_pod_startup", fields);

    // Down to 20 pods, idle, then the agent's and the monitors' memory.
    for i in 20..pods {
        api.delete(&format!("p{i}"), &DeleteParams::default())
            .await?;
    }
    let _ = api.delete("warm-up", &DeleteParams::default()).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while api.list(&ListParams::default()).await?.items.len() > 20.min(pods) {
        if Instant::now() > deadline {
            bail!("pods were not deleted");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let monitors = monitor_pids(data);
    // A monitor may end between the listing and the reading.
    let monitor_kib: f64 = monitors.iter().map(|p| rss_kib(*p).unwrap_or(0.0)).sum();
    let (anon_kib, file_kib) = rss_split_kib(agent.0.id())?;
    emit(
        "node_agent_rss",
        fields!("pods" => 20.min(pods),
                "agent_rss_mib" => round(rss_kib(agent.0.id())? / 1024.0),
                "agent_anon_mib" => round(anon_kib / 1024.0),
                "agent_file_mib" => round(file_kib / 1024.0),
                "monitors" => monitors.len(),
                "monitor_rss_mib_each" => round(monitor_kib / 1024.0 / monitors.len().max(1) as f64)),
    );
    Ok(())
}

/// The container monitors serving this benchmark's node.
fn monitor_pids(data: &Path) -> Vec<u32> {
    let needle = data.display().to_string();
    skiff_runtime::procfs::pids()
        .filter(|pid| {
            let args = skiff_runtime::procfs::cmdline(*pid);
            args.iter().any(|a| a == "container-monitor")
                && args.iter().any(|a| a.contains(&needle))
        })
        .collect()
}

/// The floor: the same container started with `runc run --detach` at the pods'
/// concurrency (so it meets the same contention for the CPUs), each timed from the call to
/// runc returning with the process running; its overlay is mounted just before, untimed.
fn floor(count: usize, concurrency: usize) -> Result<()> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir()?;
    let layer_dir = dir.path().join("layer");
    std::fs::create_dir_all(&layer_dir)?;
    let layer = busybox_layer()?.finish(Compression::None);
    skiff_image::unpack::unpack_layer(&layer.bytes[..], &layer_dir, &Default::default())?;
    let root = dir.path().join("runc");
    let latencies = std::sync::Mutex::new(Latencies::with_capacity(count));
    let bundles: std::sync::Mutex<Vec<(String, PathBuf)>> = Default::default();
    let next = AtomicUsize::new(0);
    let run_one = |i: usize| -> Result<()> {
        let id = format!("floor-{}-{i}", std::process::id());
        let bundle = dir.path().join(&id);
        let rootfs = skiff_runtime::rootfs::Rootfs::at(&bundle);
        rootfs.mount(std::slice::from_ref(&layer_dir))?;
        skiff_client::lock(&bundles).push((id.clone(), bundle.clone()));
        let spec = skiff_runtime::spec::ContainerSpec {
            args: vec!["sleep".into(), "100000".into()],
            env: vec!["PATH=/bin".into()],
            rootfs: rootfs.path(),
            cgroups_path: format!("/skiff-bench-floor/{id}"),
            ..Default::default()
        };
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(&skiff_runtime::spec::runtime_config(&spec)?)?,
        )?;
        let begin = Instant::now();
        let status = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["run", "--detach", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        skiff_client::lock(&latencies).push(begin.elapsed());
        if !status.success() {
            bail!("runc run {id} failed");
        }
        Ok(())
    };
    let result = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..concurrency.max(1))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= count {
                            return Ok(());
                        }
                        run_one(i)?;
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a floor worker panicked")))
            })
            .collect::<Result<Vec<()>>>()
    });
    let bundles = bundles.into_inner().unwrap_or_default();
    let mut latencies = latencies.into_inner().unwrap_or_default();
    for (id, bundle) in &bundles {
        let _ = Command::new("runc")
            .arg("--root")
            .arg(&root)
            .args(["delete", "--force", id])
            .status();
        let _ = skiff_runtime::rootfs::Rootfs::at(bundle).remove();
    }
    let _ = skiff_runtime::cgroups::remove("/skiff-bench-floor");
    result?;
    let mut fields = fields!("containers" => count, "concurrency" => concurrency);
    fields.extend(latencies.summary("runc_run_"));
    emit("node_runc_floor", fields);
    Ok(())
}
