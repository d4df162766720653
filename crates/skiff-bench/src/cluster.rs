//! The control-plane benchmark at scale: a `skiff server` process (its scheduler disabled)
//! with `skiff agent --simulated-nodes N` beside it, and skiff's scheduler run here as the
//! API client it always is. Scenarios, side by side in one run:
//! - bind baseline: pending pods bound round-robin straight through `pods/binding` — the
//!   API's ceiling for placement, with no decisions made;
//! - scheduler backlog: the same number of pending pods, then the scheduler starts;
//! - scheduler stream: pods created at a concurrency while the scheduler runs, each timed
//!   from its create to the watch showing it bound;
//! - a Deployment of many replicas from creation to all Ready, then a rolling update of it.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tokio::sync::Mutex;

use crate::api::{ServerProcess, skiff_binary, start_server};
use crate::fields;
use crate::stats::{Latencies, emit, in_parallel, round};

struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct Sizes {
    pub nodes: usize,
    pub pods: usize,
    pub replicas: i32,
    pub concurrency: usize,
}

pub async fn run(sizes: Sizes) -> Result<()> {
    let server = start_server(&["--disable-scheduler"]).await?;
    let kubeconfig = std::fs::read_to_string(server.kubeconfig())?;
    let client = skiff_client::client_from_kubeconfig(&kubeconfig).await?;

    let started = Instant::now();
    let _agent = start_agent(&server, sizes.nodes)?;
    wait_nodes_ready(&client, sizes.nodes).await?;
    emit(
        "cluster_nodes_ready",
        fields!("nodes" => sizes.nodes, "seconds" => round(started.elapsed().as_secs_f64())),
    );

    bind_baseline(&client, &server, &sizes).await?;
    scheduler_backlog(&client, &server, &sizes).await?;
    scheduler_stream(&client, &sizes).await?;
    deployment(&client, &sizes).await?;
    emit(
        "cluster_server_rss",
        fields!("rss_mib" => round(server.rss_mib()?)),
    );
    Ok(())
}

fn start_agent(server: &ServerProcess, nodes: usize) -> Result<AgentProcess> {
    let child = Command::new(skiff_binary()?)
        .args([
            "agent",
            "--simulated-nodes",
            &nodes.to_string(),
            "--kubeconfig",
        ])
        .arg(server.kubeconfig())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting skiff agent")?;
    Ok(AgentProcess(child))
}

async fn wait_nodes_ready(client: &kube::Client, n: usize) -> Result<()> {
    let nodes = Api::<Node>::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let list = nodes.list(&ListParams::default()).await?;
        let ready = list
            .items
            .iter()
            .filter(|node| skiff_client::objects::node_is_ready(node))
            .count();
        if ready >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("only {ready} of {n} simulated nodes became Ready");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn namespace(client: &kube::Client, name: &str) -> Result<Api<Pod>> {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await?;
    // The namespace controller adds its default ServiceAccount; nothing here waits on it.
    Ok(Api::namespaced(client.clone(), name))
}

fn pending_pod(i: usize) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("p-{i}"), "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "registry.local/hello:v1",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    }))
    .expect("a valid pod")
}

async fn create_pending(api: &Api<Pod>, count: usize, concurrency: usize) -> Result<()> {
    let api = api.clone();
    in_parallel(count, concurrency, move |i| {
        let api = api.clone();
        async move {
            api.create(&PostParams::default(), &pending_pod(i)).await?;
            Ok(())
        }
    })
    .await?;
    Ok(())
}

type Seen = Arc<Mutex<HashMap<String, Instant>>>;

/// Watches a namespace's pods: when each was first seen bound, and first seen Running.
struct PodWatch {
    bound: Seen,
    running: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl PodWatch {
    fn start(api: &Api<Pod>) -> PodWatch {
        let (bound, running): (Seen, Seen) = Default::default();
        let (b, r, api) = (bound.clone(), running.clone(), api.clone());
        let task = tokio::spawn(async move {
            let mut stream = watcher::watcher(api, watcher::Config::default()).boxed();
            while let Some(Ok(event)) = stream.next().await {
                if let Event::Apply(p) | Event::InitApply(p) = event {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    if p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some() {
                        b.lock()
                            .await
                            .entry(name.clone())
                            .or_insert_with(Instant::now);
                    }
                    if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                        r.lock().await.entry(name).or_insert_with(Instant::now);
                    }
                }
            }
        });
        PodWatch {
            bound,
            running,
            task,
        }
    }

    /// Waits until `n` pods were seen in `seen`.
    async fn wait(seen: &Seen, n: usize, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(600);
        while seen.lock().await.len() < n {
            if Instant::now() > deadline {
                bail!("only {} of {n} pods were {what}", seen.lock().await.len());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// Waits for every pod to run (the simulated kubelets caught up), so the next scenario
    /// starts on a quiet cluster; answers when the last one did.
    async fn settle(self, n: usize) -> Result<Instant> {
        Self::wait(&self.running, n, "Running").await?;
        self.task.abort();
        let last = self.running.lock().await.values().max().copied();
        Ok(last.unwrap_or_else(Instant::now))
    }
}

/// The server's CPU time per pod, in ms, since `cpu_before` (seconds).
fn server_cpu_ms_per_pod(server: &ServerProcess, cpu_before: f64, pods: usize) -> Result<f64> {
    Ok(round(
        (server.cpu_seconds()? - cpu_before) * 1000.0 / pods as f64,
    ))
}

async fn bind_baseline(client: &kube::Client, server: &ServerProcess, sizes: &Sizes) -> Result<()> {
    let api = namespace(client, "bench-bind").await?;
    create_pending(&api, sizes.pods, sizes.concurrency).await?;
    let watch = PodWatch::start(&api);
    let nodes = sizes.nodes;
    let binder = api.clone();
    let cpu_before = server.cpu_seconds()?;
    let start = Instant::now();
    let mut lat = in_parallel(sizes.pods, sizes.concurrency, move |i| {
        let api = binder.clone();
        async move {
            let binding = json!({"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": format!("p-{i}")},
                "target": {"apiVersion": "v1", "kind": "Node", "name": format!("sim-node-{}", i % nodes)}});
            api.create_subresource::<_, serde_json::Value>("binding", &format!("p-{i}"), &PostParams::default(), &binding)
                .await?;
            Ok(())
        }
    })
    .await?;
    let elapsed = start.elapsed();
    let all_running = watch.settle(sizes.pods).await?.duration_since(start);
    emit(
        "baseline_direct_bindings",
        [
            fields!("pods" => sizes.pods, "nodes" => sizes.nodes, "concurrency" => sizes.concurrency,
                    "pods_bound_per_s" => round(sizes.pods as f64 / elapsed.as_secs_f64()),
                    "all_running_after_s" => round(all_running.as_secs_f64()),
                    "server_cpu_ms_per_pod" => server_cpu_ms_per_pod(server, cpu_before, sizes.pods)?),
            lat.summary("binding_"),
        ]
        .concat(),
    );
    Ok(())
}

async fn scheduler_backlog(
    client: &kube::Client,
    server: &ServerProcess,
    sizes: &Sizes,
) -> Result<()> {
    let api = namespace(client, "bench-backlog").await?;
    create_pending(&api, sizes.pods, sizes.concurrency).await?;
    let watch = PodWatch::start(&api);
    let cpu_before = server.cpu_seconds()?;
    let start = Instant::now();
    // From here on the scheduler runs for the rest of the benchmark.
    tokio::spawn(skiff_scheduler::run(client.clone()));
    PodWatch::wait(&watch.bound, sizes.pods, "bound").await?;
    let elapsed = start.elapsed();
    let mut lat = Latencies::with_capacity(sizes.pods);
    let bound = watch.bound.lock().await.clone();
    for t in bound.values() {
        lat.push(t.duration_since(start));
    }
    // The rate once binding is under way (the start includes listing every pod and node).
    let first = bound.values().min().copied().unwrap_or(start);
    let last = bound.values().max().copied().unwrap_or(start);
    let binding_phase = last.duration_since(first).as_secs_f64().max(1e-3);
    emit(
        "scheduler_backlog",
        [
            fields!("pods" => sizes.pods, "nodes" => sizes.nodes,
                    "pods_bound_per_s" => round(sizes.pods as f64 / elapsed.as_secs_f64()),
                    "binding_phase_pods_per_s" => round(sizes.pods as f64 / binding_phase),
                    "first_binding_after_ms" => round(first.duration_since(start).as_secs_f64() * 1000.0),
                    "all_running_after_s" => round(watch.settle(sizes.pods).await?.duration_since(start).as_secs_f64()),
                    "server_cpu_ms_per_pod" => server_cpu_ms_per_pod(server, cpu_before, sizes.pods)?),
            lat.summary("since_start_"),
        ]
        .concat(),
    );
    Ok(())
}

async fn scheduler_stream(client: &kube::Client, sizes: &Sizes) -> Result<()> {
    let api = namespace(client, "bench-stream").await?;
    let watch = PodWatch::start(&api);
    let created: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let start = Instant::now();
    {
        let (api, created) = (api.clone(), created.clone());
        in_parallel(sizes.pods, sizes.concurrency, move |i| {
            let (api, created) = (api.clone(), created.clone());
            async move {
                let sent = Instant::now();
                api.create(&PostParams::default(), &pending_pod(i)).await?;
                created.lock().await.insert(format!("p-{i}"), sent);
                Ok(())
            }
        })
        .await?;
    }
    let creates_done = start.elapsed();
    PodWatch::wait(&watch.bound, sizes.pods, "bound").await?;
    let elapsed = start.elapsed();
    let mut lat = Latencies::with_capacity(sizes.pods);
    let bound = watch.bound.lock().await.clone();
    for (name, sent) in created.lock().await.iter() {
        if let Some(at) = bound.get(name) {
            lat.push(at.saturating_duration_since(*sent));
        }
    }
    emit(
        "scheduler_stream",
        [
            fields!("pods" => sizes.pods, "nodes" => sizes.nodes, "concurrency" => sizes.concurrency,
                    "creates_per_s" => round(sizes.pods as f64 / creates_done.as_secs_f64()),
                    "pods_bound_per_s" => round(sizes.pods as f64 / elapsed.as_secs_f64()),
                    "all_running_after_s" => round(watch.settle(sizes.pods).await?.duration_since(start).as_secs_f64())),
            lat.summary("create_to_bound_"),
        ]
        .concat(),
    );
    Ok(())
}

/// Polls a Deployment until `done` holds for its status.
async fn wait_deployment(
    api: &Api<Deployment>,
    name: &str,
    done: impl Fn(&Deployment) -> bool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let d = api.get(name).await?;
        if done(&d) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("deployment {name} did not finish: {:?}", d.status);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deployment(client: &kube::Client, sizes: &Sizes) -> Result<()> {
    namespace(client, "bench-deploy").await?;
    let api = Api::<Deployment>::namespaced(client.clone(), "bench-deploy");
    let n = sizes.replicas;
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": n, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "registry.local/web:v1",
                    "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}},
    }))?;
    let start = Instant::now();
    api.create(&PostParams::default(), &d).await?;
    wait_deployment(&api, "web", |d| {
        d.status
            .as_ref()
            .is_some_and(|s| s.ready_replicas == Some(n) && s.available_replicas == Some(n))
    })
    .await?;
    let created = start.elapsed();
    emit(
        "deployment_create_to_ready",
        fields!("replicas" => n, "seconds" => round(created.as_secs_f64()),
                "pods_ready_per_s" => round(f64::from(n) / created.as_secs_f64())),
    );

    let start = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.local/web:v2"}]}}}});
    let updated = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    let generation = updated.metadata.generation;
    wait_deployment(&api, "web", |d| {
        d.status.as_ref().is_some_and(|s| {
            s.observed_generation >= generation
                && s.updated_replicas == Some(n)
                && s.replicas == Some(n)
                && s.available_replicas == Some(n)
        })
    })
    .await?;
    let rolled = start.elapsed();
    emit(
        "deployment_rolling_update",
        fields!("replicas" => n, "seconds" => round(rolled.as_secs_f64()),
                "pods_replaced_per_s" => round(f64::from(n) / rolled.as_secs_f64())),
    );
    Ok(())
}
