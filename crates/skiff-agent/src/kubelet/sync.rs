//! One pod's reconciliation: what should run (its spec) against what runs (its directory
//! and the runtime), one step at a time, then the status. A sync never waits for a
//! container: it starts what is due and looks again later.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use skiff_client::informer::split_key;
use skiff_client::objects::is_deleting;
use skiff_client::{EventRecorder, Store};
use skiff_image::{Image, ImageStore, Keyring};
use skiff_net::PodNetwork;
use skiff_runtime::monitor::MonitorConfig;
use skiff_runtime::rootfs::Rootfs;
use skiff_runtime::{OciRuntime, Runtime};

use super::KubeletConfig;
use super::container::{container_spec, expand};
use super::pod_dir::{Attempt, PodDir};
use super::status::{ContainerView, Waiting, pod_status};

/// Back-off after a container exits: 10 s doubling to 5 min (upstream's), forgotten once
/// a run lasted 10 minutes.
const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often a pod with running containers is looked at again (to see exits).
const RECHECK: Duration = Duration::from_millis(500);
const LOG_MAX_SIZE: u64 = 10 << 20;
const LOG_MAX_FILES: usize = 5;

/// Where `envFrom` and `valueFrom` key references read.
#[derive(Debug, Clone, Copy)]
enum Source {
    ConfigMap,
    Secret,
}

impl Source {
    fn kind(self) -> &'static str {
        match self {
            Source::ConfigMap => "ConfigMap",
            Source::Secret => "Secret",
        }
    }
}

pub struct Kubelet {
    pub(super) client: Client,
    pub(super) config: KubeletConfig,
    pub(super) pods: Store<Pod>,
    pub(super) runtime: OciRuntime,
    pub(super) network: PodNetwork,
    pub(super) images: ImageStore,
    pub(super) events: EventRecorder,
    /// Image pull failures per pod uid and container: (failures, next attempt).
    pub(super) pull_failures: Mutex<HashMap<(String, String), (u32, Instant)>>,
    pub(super) probes: Mutex<super::probe::Tallies>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Node(String),
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn parse_time(t: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(t.trim(), &time::format_description::well_known::Rfc3339).ok()
}

fn since(t: &str) -> Duration {
    parse_time(t)
        .map(|t| (time::OffsetDateTime::now_utc() - t).unsigned_abs())
        .unwrap_or_default()
}

/// Runs blocking node work (runc, mounts, files) off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("node task failed: {e}"))?
}

impl Kubelet {
    fn dir(&self, pod: &Pod) -> PodDir {
        PodDir::new(
            &self.config.data_dir,
            &pod.namespace().unwrap_or_default(),
            &pod.name_any(),
            &pod.uid().unwrap_or_default(),
        )
    }

    pub async fn sync(&self, key: &str) -> Result<Option<Duration>, SyncError> {
        let Some(pod) = self.pods.get(key) else {
            return Ok(None); // housekeeping tears down what is left
        };
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(&self.config.node_name) {
            return Ok(None);
        }
        let dir = self.dir(&pod);
        if is_deleting(pod.as_ref()) {
            return self.terminate(&pod, &dir).await;
        }
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, Some("Succeeded" | "Failed")) {
            // Done for good: nothing runs any more; free the node's resources.
            if dir.root.exists() && dir.running().is_empty() {
                self.teardown(&dir).await;
            }
            return Ok(None);
        }
        self.run_pod(&pod, &dir).await
    }

    /// Sandbox, network, then containers; then the status.
    async fn run_pod(&self, pod: &Pod, dir: &PodDir) -> Result<Option<Duration>, SyncError> {
        let pod_ip = match self.ensure_sandbox(pod, dir).await {
            Ok(ip) => ip,
            Err(message) => {
                self.events.warning(
                    pod,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {message}"),
                );
                return Ok(Some(Duration::from_secs(5)));
            }
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let policy = spec
            .restart_policy
            .clone()
            .unwrap_or_else(|| "Always".into());
        let env_base = self.field_env(pod, &pod_ip.to_string());
        let mut again: Option<Duration> = None;
        let mut soonest = |d: Duration| {
            again = Some(again.map_or(d, |a: Duration| a.min(d)));
        };

        let mut init_views = Vec::new();
        let mut init_done = true;
        for c in spec.init_containers.iter().flatten() {
            if !init_done {
                init_views.push(self.view(dir, c, None));
                continue;
            }
            // Init containers restart on failure unless the policy is Never.
            let init_policy = if policy == "Never" {
                "Never"
            } else {
                "OnFailure"
            };
            let (view, next) = self
                .ensure_container(pod, dir, c, init_policy, &env_base)
                .await;
            if let Some(d) = next {
                soonest(d);
            }
            init_done = view.succeeded();
            let mut view = view;
            // An init container counts as ready once it has completed.
            view.ready = init_done;
            init_views.push(view);
        }
        let mut app_views = Vec::new();
        for c in &spec.containers {
            if !init_done {
                let waiting = Waiting {
                    reason: "PodInitializing",
                    message: String::new(),
                };
                app_views.push(self.view(dir, c, Some(waiting)));
                continue;
            }
            let (view, next) = self.ensure_container(pod, dir, c, &policy, &env_base).await;
            if let Some(d) = next {
                soonest(d);
            }
            app_views.push(view);
        }
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| json!(t).as_str().unwrap_or_default().to_string())
            .unwrap_or_else(now_rfc3339);
        let ip = pod_ip.to_string();
        let status = pod_status(
            pod,
            &init_views,
            &app_views,
            Some(&ip),
            &self.config.node_ip,
            &start_time,
        );
        self.write_status(pod, status).await?;
        Ok(again)
    }

    fn view(&self, dir: &PodDir, c: &Container, waiting: Option<Waiting>) -> ContainerView {
        let attempts = dir.attempts(&c.name);
        let running = attempts.last().is_some_and(Attempt::is_running);
        ContainerView {
            // Without probes a running container is ready (init containers: see run_pod).
            ready: running,
            started: running,
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: self
                .images
                .image(c.image.as_deref().unwrap_or_default())
                .and_then(|i| {
                    let name = skiff_oci::Reference::parse(&i.name).ok()?.name();
                    Some(format!("{name}@{}", i.digest))
                }),
            attempts,
            waiting,
        }
    }

    /// Patches the status when it changed (conditions' times aside).
    async fn write_status(&self, pod: &Pod, status: Value) -> Result<(), SyncError> {
        let current =
            serde_json::to_value(pod.status.clone().unwrap_or_default()).unwrap_or_default();
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(cs) = v.get_mut("conditions").and_then(Value::as_array_mut) {
                for c in cs {
                    if let Some(o) = c.as_object_mut() {
                        o.remove("lastTransitionTime");
                        o.remove("lastProbeTime");
                    }
                }
            }
            v.as_object_mut().map(|o| o.remove("qosClass"));
            v
        };
        let interesting = [
            "phase",
            "conditions",
            "podIP",
            "hostIP",
            "containerStatuses",
            "initContainerStatuses",
        ];
        let differs = interesting
            .iter()
            .any(|k| strip(&current).get(*k) != strip(&status).get(*k));
        if !differs {
            return Ok(());
        }
        let api = Api::<Pod>::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        skiff_client::tolerating(
            api.patch_status(
                &pod.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&json!({"status": status})),
            )
            .await,
            &[404],
        )?;
        Ok(())
    }

    /// The pod's namespaces, files and address; answers the address.
    async fn ensure_sandbox(&self, pod: &Pod, dir: &PodDir) -> Result<std::net::Ipv4Addr, String> {
        let hostname: String = pod
            .spec
            .as_ref()
            .and_then(|s| s.hostname.clone())
            .unwrap_or_else(|| pod.name_any())
            .chars()
            .take(63)
            .collect();
        let sandbox = dir.sandbox();
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        std::fs::create_dir_all(dir.etc()).map_err(|e| e.to_string())?;
        std::fs::write(dir.root.join("pod"), &key).map_err(|e| e.to_string())?;
        if !sandbox.exists() {
            let (s, h) = (sandbox.clone(), hostname.clone());
            blocking(move || s.create(&h).map_err(|e| e.to_string())).await?;
        }
        let ip = self
            .network
            .attach(&dir.uid, &sandbox.net())
            .map_err(|e| e.to_string())?;
        let namespace = pod.namespace().unwrap_or_default();
        let files = [
            (
                "hosts",
                format!(
                    "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{ip}\t{hostname}\n"
                ),
            ),
            ("hostname", format!("{hostname}\n")),
            (
                "resolv.conf",
                format!(
                    "search {namespace}.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.43.0.10\noptions ndots:5\n"
                ),
            ),
        ];
        for (name, content) in files {
            let path = dir.etc().join(name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                std::fs::write(&path, content).map_err(|e| e.to_string())?;
            }
        }
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if v.empty_dir.is_some() {
                std::fs::create_dir_all(dir.volume(&v.name)).map_err(|e| e.to_string())?;
            }
        }
        Ok(ip)
    }

    /// Environment from the pod's own fields (the downward API's env).
    fn field_env(&self, pod: &Pod, pod_ip: &str) -> BTreeMap<String, String> {
        let mut f = BTreeMap::new();
        f.insert("metadata.name".into(), pod.name_any());
        f.insert(
            "metadata.namespace".into(),
            pod.namespace().unwrap_or_default(),
        );
        f.insert("metadata.uid".into(), pod.uid().unwrap_or_default());
        f.insert("spec.nodeName".into(), self.config.node_name.clone());
        f.insert(
            "spec.serviceAccountName".into(),
            pod.spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        );
        f.insert("status.podIP".into(), pod_ip.to_string());
        f.insert("status.hostIP".into(), self.config.node_ip.clone());
        for (k, v) in pod.labels() {
            f.insert(format!("metadata.labels['{k}']"), v.clone());
        }
        for (k, v) in pod.annotations() {
            f.insert(format!("metadata.annotations['{k}']"), v.clone());
        }
        f
    }

    /// The container's environment: the image's, then the container's (`envFrom`, then
    /// `env`, with `$(VAR)` references to what came before).
    async fn environment(
        &self,
        pod: &Pod,
        c: &Container,
        image: &Image,
        fields: &BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, String> {
        let namespace = pod.namespace().unwrap_or_default();
        let mut env: BTreeMap<String, String> = image
            .config
            .config
            .env
            .iter()
            .flatten()
            .filter_map(|e| {
                e.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        for from in c.env_from.iter().flatten() {
            let prefix = from.prefix.clone().unwrap_or_default();
            let data = if let Some(cm) = &from.config_map_ref {
                self.source_data(
                    Source::ConfigMap,
                    &namespace,
                    &cm.name,
                    cm.optional.unwrap_or(false),
                )
                .await?
            } else if let Some(s) = &from.secret_ref {
                self.source_data(
                    Source::Secret,
                    &namespace,
                    &s.name,
                    s.optional.unwrap_or(false),
                )
                .await?
            } else {
                BTreeMap::new()
            };
            for (k, v) in data {
                env.insert(format!("{prefix}{k}"), v);
            }
        }
        for e in c.env.iter().flatten() {
            let value = if let Some(v) = &e.value {
                expand(v, &env)
            } else if let Some(from) = &e.value_from {
                if let Some(field) = &from.field_ref {
                    fields.get(&field.field_path).cloned().ok_or_else(|| {
                        format!(
                            "unsupported fieldRef {:?} in env {:?}",
                            field.field_path, e.name
                        )
                    })?
                } else if let Some((source, name, key, optional)) = from
                    .config_map_key_ref
                    .as_ref()
                    .map(|r| {
                        (
                            Source::ConfigMap,
                            &r.name,
                            &r.key,
                            r.optional.unwrap_or(false),
                        )
                    })
                    .or_else(|| {
                        from.secret_key_ref
                            .as_ref()
                            .map(|r| (Source::Secret, &r.name, &r.key, r.optional.unwrap_or(false)))
                    })
                {
                    let data = self.source_data(source, &namespace, name, optional).await?;
                    match data.get(key) {
                        Some(v) => v.clone(),
                        None if optional => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {key} in {} {namespace}/{name}",
                                source.kind()
                            ));
                        }
                    }
                } else {
                    return Err(format!(
                        "env {:?}: resourceFieldRef is not supported yet",
                        e.name
                    ));
                }
            } else {
                String::new()
            };
            env.insert(e.name.clone(), value);
        }
        Ok(env)
    }

    /// A ConfigMap's or Secret's data (Secret values decoded); empty when it is missing
    /// and optional.
    async fn source_data(
        &self,
        source: Source,
        ns: &str,
        name: &str,
        optional: bool,
    ) -> Result<BTreeMap<String, String>, String> {
        let found = match source {
            Source::ConfigMap => Api::<ConfigMap>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map(|cm| cm.map(|cm| cm.data.unwrap_or_default())),
            Source::Secret => Api::<Secret>::namespaced(self.client.clone(), ns)
                .get_opt(name)
                .await
                .map(|s| {
                    s.map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                            .collect()
                    })
                }),
        };
        match found {
            Ok(Some(data)) => Ok(data),
            Ok(None) if optional => Ok(BTreeMap::new()),
            Ok(None) => Err(format!(
                "{} \"{name}\" not found",
                source.kind().to_lowercase()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Credentials from the pod's imagePullSecrets.
    async fn keyring(&self, pod: &Pod) -> Keyring {
        let mut keyring = Keyring::default();
        let ns = pod.namespace().unwrap_or_default();
        let api = Api::<Secret>::namespaced(self.client.clone(), &ns);
        for r in pod
            .spec
            .iter()
            .flat_map(|s| s.image_pull_secrets.iter().flatten())
        {
            if let Ok(Some(secret)) = api.get_opt(&r.name).await {
                let data = secret.data.unwrap_or_default();
                for key in [".dockerconfigjson", ".dockercfg"] {
                    if let Some(bytes) = data.get(key)
                        && let Err(e) = keyring.add_docker_config(&bytes.0)
                    {
                        tracing::warn!(secret = %r.name, error = %e, "ignoring an image pull secret");
                    }
                }
            }
        }
        keyring
    }

    /// The container's image, pulled as its policy says; a waiting state when it cannot be.
    async fn image(&self, pod: &Pod, c: &Container) -> Result<Image, Waiting> {
        let reference = c.image.clone().unwrap_or_default();
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            let tagless = !reference.rsplit('/').next().unwrap_or("").contains(':');
            if reference.ends_with(":latest") || (tagless && !reference.contains('@')) {
                "Always".into()
            } else {
                "IfNotPresent".into()
            }
        });
        let present = self.images.image(&reference);
        match (policy.as_str(), present) {
            ("Never", Some(image)) | ("IfNotPresent", Some(image)) => {
                self.images.touch(&reference);
                return Ok(image);
            }
            ("Never", None) => {
                let message = format!(
                    "Container image \"{reference}\" is not present with pull policy of Never"
                );
                self.events
                    .warning(pod, "ErrImageNeverPull", message.clone());
                return Err(Waiting {
                    reason: "ErrImageNeverPull",
                    message,
                });
            }
            _ => {}
        }
        let key = (pod.uid().unwrap_or_default(), c.name.clone());
        if let Some((failures, next)) = skiff_client::lock(&self.pull_failures).get(&key).copied()
            && Instant::now() < next
        {
            return Err(Waiting {
                reason: "ImagePullBackOff",
                message: format!("Back-off pulling image \"{reference}\""),
            })
            .inspect_err(|_| {
                if failures > 0 {
                    self.events.normal(
                        pod,
                        "BackOff",
                        format!("Back-off pulling image \"{reference}\""),
                    );
                }
            });
        }
        self.events
            .normal(pod, "Pulling", format!("Pulling image \"{reference}\""));
        let started = Instant::now();
        let keyring = self.keyring(pod).await;
        match self.images.pull(&reference, &keyring, None).await {
            Ok(image) => {
                skiff_client::lock(&self.pull_failures).remove(&key);
                let secs = started.elapsed().as_secs_f64();
                self.events.normal(
                    pod,
                    "Pulled",
                    format!(
                        "Successfully pulled image \"{reference}\" in {secs:.3}s ({secs:.3}s including waiting). Image size: {} bytes.",
                        image.size
                    ),
                );
                Ok(image)
            }
            Err(e) => {
                let mut failures = skiff_client::lock(&self.pull_failures);
                let entry = failures.entry(key).or_insert((0, Instant::now()));
                entry.0 += 1;
                let delay = (BACKOFF_START * 2u32.saturating_pow(entry.0 - 1)).min(BACKOFF_MAX);
                entry.1 = Instant::now() + delay;
                let message = format!("Failed to pull image \"{reference}\": {e}");
                self.events.warning(pod, "Failed", message.clone());
                self.events
                    .warning(pod, "Failed", "Error: ErrImagePull".into());
                Err(Waiting {
                    reason: "ErrImagePull",
                    message,
                })
            }
        }
    }

    /// Brings one container to what its policy wants; answers its view and when to look
    /// again.
    async fn ensure_container(
        &self,
        pod: &Pod,
        dir: &PodDir,
        c: &Container,
        policy: &str,
        fields: &BTreeMap<String, String>,
    ) -> (ContainerView, Option<Duration>) {
        let attempts = dir.attempts(&c.name);
        match attempts.last() {
            Some(a) if a.is_running() => {
                let mut view = self.view(dir, c, None);
                let next = self.probe(pod, dir, c, a, fields, &mut view).await;
                return (view, Some(next.map_or(RECHECK, |n| n.min(RECHECK))));
            }
            Some(a) if a.exit.is_none() && a.bundle.join("created").exists() => {
                // Created but never started (the agent stopped in between): start it now.
                if let Err(e) = self.start_created(a).await {
                    self.events.warning(pod, "Failed", format!("Error: {e}"));
                }
                return (self.view(dir, c, None), Some(RECHECK));
            }
            _ => {}
        }
        if let Some(last) = attempts.last()
            && let Some(exit) = &last.exit
        {
            let restart = match policy {
                "Always" => true,
                "OnFailure" => exit.exit_code != 0 || exit.error.is_some(),
                _ => false,
            };
            if !restart {
                return (self.view(dir, c, None), None);
            }
            // Consecutive short runs back off; a long one resets the count.
            let short_runs = attempts
                .iter()
                .rev()
                .take_while(|a| {
                    let ran = match (&a.started_at, a.exit.as_ref()) {
                        (Some(s), Some(e)) => parse_time(s)
                            .zip(parse_time(&e.finished_at))
                            .map(|(s, f)| (f - s).unsigned_abs())
                            .unwrap_or_default(),
                        _ => Duration::ZERO,
                    };
                    ran < BACKOFF_RESET
                })
                .count() as u32;
            let delay = (BACKOFF_START * 2u32.saturating_pow(short_runs.saturating_sub(1)))
                .min(BACKOFF_MAX);
            let waited = since(&exit.finished_at);
            if waited < delay {
                let message = format!(
                    "back-off {}s restarting failed container={} pod={}_{}({})",
                    delay.as_secs(),
                    c.name,
                    pod.name_any(),
                    pod.namespace().unwrap_or_default(),
                    dir.uid
                );
                if !last.bundle.join("backoff").exists() {
                    let _ = std::fs::write(last.bundle.join("backoff"), b"");
                    self.events.warning(
                        pod,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}_{}({})",
                            c.name,
                            pod.name_any(),
                            pod.namespace().unwrap_or_default(),
                            dir.uid
                        ),
                    );
                }
                let waiting = Waiting {
                    reason: "CrashLoopBackOff",
                    message,
                };
                return (self.view(dir, c, Some(waiting)), Some(delay - waited));
            }
        }
        let number = attempts.last().map_or(0, |a| a.number + 1);
        match self.start_new(pod, dir, c, number, fields).await {
            Ok(()) => (self.view(dir, c, None), Some(RECHECK)),
            Err(waiting) => {
                let again =
                    if waiting.reason == "ErrImagePull" || waiting.reason == "ImagePullBackOff" {
                        Duration::from_secs(1)
                    } else {
                        Duration::from_secs(5)
                    };
                (self.view(dir, c, Some(waiting)), Some(again))
            }
        }
    }

    /// Runs the container's probes that are due; sets the view's `ready` and `started`;
    /// kills a run whose liveness or startup probe failed for good. Answers when the next
    /// probe is due.
    async fn probe(
        &self,
        pod: &Pod,
        dir: &PodDir,
        c: &Container,
        a: &Attempt,
        fields: &BTreeMap<String, String>,
        view: &mut ContainerView,
    ) -> Option<Duration> {
        use super::probe::{Kind, Target, run};
        let ip = fields.get("status.podIP").and_then(|ip| ip.parse().ok())?;
        let target = Target {
            netns: dir.sandbox().net(),
            pod_ip: ip,
            runtime: self.runtime.clone(),
            container_id: a.id.clone(),
        };
        let started = Instant::now() - a.started_at.as_deref().map(since).unwrap_or_default();
        let key = |kind| (dir.uid.clone(), c.name.clone(), a.number, kind);
        let mut next: Option<Duration> = None;
        let probes = [
            (Kind::Startup, c.startup_probe.as_ref()),
            (Kind::Liveness, c.liveness_probe.as_ref()),
            (Kind::Readiness, c.readiness_probe.as_ref()),
        ];
        let mut startup_passed = true;
        for (kind, probe) in probes {
            let Some(probe) = probe else { continue };
            if kind != Kind::Startup && !startup_passed {
                break; // nothing else runs until the container has started
            }
            let now = Instant::now();
            let mut tally = skiff_client::lock(&self.probes)
                .get(&key(kind))
                .cloned()
                .unwrap_or_default();
            if tally.due(probe, started, now) {
                let result = run(probe, c, &target).await;
                if let Err(why) = &result {
                    self.events.warning(
                        pod,
                        "Unhealthy",
                        format!("{} probe failed: {why}", kind.name()),
                    );
                }
                tally.record(probe, result.is_ok());
                tally.schedule(probe, now);
            }
            let due_in = tally
                .next
                .map(|n| n.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(100));
            next = Some(next.map_or(due_in, |d| d.min(due_in)));
            let passing = tally.passing;
            skiff_client::lock(&self.probes).insert(key(kind), tally);
            match kind {
                Kind::Startup => startup_passed = passing == Some(true),
                Kind::Readiness => view.ready = view.ready && passing == Some(true),
                Kind::Liveness => {}
            }
            if kind != Kind::Readiness && passing == Some(false) {
                let what = if kind == Kind::Liveness {
                    "liveness"
                } else {
                    "startup"
                };
                self.events.normal(
                    pod,
                    "Killing",
                    format!(
                        "Container {} failed {what} probe, will be restarted",
                        c.name
                    ),
                );
                let _ = std::fs::write(a.bundle.join("term"), now_rfc3339());
                let (runtime, id) = (self.runtime.clone(), a.id.clone());
                let _ = blocking(move || runtime.kill(&id, 9).map_err(|e| e.to_string())).await;
                skiff_client::lock(&self.probes)
                    .retain(|k, _| !(k.0 == dir.uid && k.1 == c.name && k.2 == a.number));
                view.ready = false;
                return Some(Duration::from_millis(100));
            }
        }
        view.started = view.started && startup_passed;
        view.ready = view.ready && startup_passed;
        next
    }

    async fn start_created(&self, a: &Attempt) -> Result<(), String> {
        std::fs::write(a.bundle.join("started"), now_rfc3339()).map_err(|e| e.to_string())?;
        let (runtime, id) = (self.runtime.clone(), a.id.clone());
        blocking(move || runtime.start(&id).map_err(|e| e.to_string())).await
    }

    /// A new run: image, root filesystem, spec, monitor, start.
    async fn start_new(
        &self,
        pod: &Pod,
        dir: &PodDir,
        c: &Container,
        number: u32,
        fields: &BTreeMap<String, String>,
    ) -> Result<(), Waiting> {
        let image = self.image(pod, c).await?;
        let failed = |message: String| {
            self.events
                .warning(pod, "Failed", format!("Error: {message}"));
            Waiting {
                reason: "CreateContainerError",
                message,
            }
        };
        let env = self
            .environment(pod, c, &image, fields)
            .await
            .map_err(|e| {
                self.events.warning(pod, "Failed", format!("Error: {e}"));
                Waiting {
                    reason: "CreateContainerConfigError",
                    message: e,
                }
            })?;
        let bundle = dir.attempt_dir(&c.name, number);
        let rootfs = Rootfs::at(&bundle);
        let layers = image.layers.clone();
        let r = Rootfs::at(&bundle);
        blocking(move || r.mount(&layers).map_err(|e| e.to_string()))
            .await
            .map_err(failed)?;
        let spec = match container_spec(pod, c, &image.config, dir, number, rootfs.path(), &env) {
            Ok(s) => s,
            Err(e) => {
                let _ = rootfs.remove();
                return Err(failed(e));
            }
        };
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(&skiff_runtime::spec::runtime_config(&spec)).unwrap_or_default(),
        )
        .map_err(|e| failed(e.to_string()))?;
        let monitor = MonitorConfig {
            runtime_binary: self.runtime.binary().to_path_buf(),
            runtime_root: self.runtime.root().to_path_buf(),
            id: dir.container_id(&c.name, number),
            bundle: bundle.clone(),
            log: dir.log_path(&c.name, number),
            cgroups_path: spec.cgroups_path.clone(),
            log_max_size: LOG_MAX_SIZE,
            log_max_files: LOG_MAX_FILES,
        };
        let skiff = self.config.skiff_binary.clone();
        blocking(move || skiff_runtime::monitor::spawn(&skiff, &monitor))
            .await
            .map_err(failed)?;
        self.events
            .normal(pod, "Created", format!("Created container {}", c.name));
        std::fs::write(bundle.join("started"), now_rfc3339()).map_err(|e| failed(e.to_string()))?;
        let (runtime, id) = (self.runtime.clone(), dir.container_id(&c.name, number));
        blocking(move || runtime.start(&id).map_err(|e| e.to_string()))
            .await
            .map_err(failed)?;
        self.events
            .normal(pod, "Started", format!("Started container {}", c.name));
        Ok(())
    }

    /// A deleted pod: SIGTERM, the grace period, SIGKILL; then the node's resources go and
    /// the pod object with them.
    async fn terminate(&self, pod: &Pod, dir: &PodDir) -> Result<Option<Duration>, SyncError> {
        let grace = pod
            .metadata
            .deletion_grace_period_seconds
            .or(pod
                .spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds))
            .unwrap_or(30)
            .max(0) as u64;
        let running = dir.running();
        for a in &running {
            let (runtime, id) = (self.runtime.clone(), a.id.clone());
            match &a.term_sent {
                None => {
                    let _ = std::fs::write(a.bundle.join("term"), now_rfc3339());
                    let name = a
                        .bundle
                        .parent()
                        .and_then(|p| p.file_name())
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    self.events
                        .normal(pod, "Killing", format!("Stopping container {name}"));
                    let signal = if grace == 0 { 9 } else { 15 };
                    let _ = blocking(move || runtime.kill(&id, signal).map_err(|e| e.to_string()))
                        .await;
                }
                Some(sent) if since(sent) >= Duration::from_secs(grace) => {
                    let _ = blocking(move || runtime.kill(&id, 9).map_err(|e| e.to_string())).await;
                }
                Some(_) => {}
            }
        }
        if !running.is_empty() {
            return Ok(Some(Duration::from_millis(200)));
        }
        self.teardown(dir).await;
        let api = Api::<Pod>::namespaced(self.client.clone(), &pod.namespace().unwrap_or_default());
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            ..skiff_client::objects::delete_only(pod.uid())
        };
        skiff_client::tolerating(api.delete(&pod.name_any(), &params).await, &[404, 409])?;
        Ok(None)
    }

    /// Every trace of the pod on the node: containers, root filesystems, network,
    /// namespaces, cgroups, files.
    pub(super) async fn teardown(&self, dir: &PodDir) {
        let (runtime, dir2) = (self.runtime.clone(), dir.clone());
        let result = blocking(move || {
            let containers = dir2.root.join("containers");
            for c in std::fs::read_dir(&containers)
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = c.file_name().to_string_lossy().into_owned();
                for a in dir2.attempts(&name) {
                    runtime.delete(&a.id, true).map_err(|e| e.to_string())?;
                    Rootfs::at(&a.bundle).remove().map_err(|e| e.to_string())?;
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(pod = %dir.uid, error = %e, "removing containers");
            return;
        }
        self.network.detach(&dir.uid);
        let sandbox = dir.sandbox();
        let cgroup = dir.cgroup();
        let (root, logs) = (dir.root.clone(), dir.logs.clone());
        let result = blocking(move || {
            sandbox.remove().map_err(|e| e.to_string())?;
            skiff_runtime::cgroups::remove(&cgroup).map_err(|e| format!("cgroup {cgroup}: {e}"))?;
            let _ = std::fs::remove_dir_all(&logs);
            match std::fs::remove_dir_all(&root) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            }
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(pod = %dir.uid, error = %e, "removing the pod's sandbox");
        }
    }

    /// The manifest digests of the images the pods bound here use.
    pub(super) fn images_in_use(&self) -> HashSet<String> {
        self.pods
            .list()
            .iter()
            .flat_map(|p| {
                let spec = p.spec.clone().unwrap_or_default();
                spec.containers
                    .into_iter()
                    .chain(spec.init_containers.unwrap_or_default())
                    .filter_map(|c| c.image)
                    .collect::<Vec<_>>()
            })
            .filter_map(|image| self.images.image(&image).map(|i| i.digest))
            .collect()
    }

    /// Pod directories whose pod the API no longer has.
    pub(super) async fn remove_orphans(&self) {
        let known: HashSet<String> = self.pods.list().iter().filter_map(|p| p.uid()).collect();
        skiff_client::lock(&self.probes).retain(|k, _| known.contains(&k.0));
        skiff_client::lock(&self.pull_failures).retain(|k, _| known.contains(&k.0));
        let pods = self.config.data_dir.join("pods");
        let Ok(entries) = std::fs::read_dir(&pods) else {
            return;
        };
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if known.contains(&uid) {
                continue;
            }
            let key = std::fs::read_to_string(entry.path().join("pod")).unwrap_or_default();
            let (ns, name) = split_key(&key);
            let dir = PodDir::new(&self.config.data_dir, ns, name, &uid);
            for a in dir.running() {
                let (runtime, id) = (self.runtime.clone(), a.id.clone());
                let _ = blocking(move || runtime.kill(&id, 9).map_err(|e| e.to_string())).await;
            }
            if dir.running().is_empty() {
                tracing::info!(pod = %key, %uid, "removing a pod the API no longer has");
                self.teardown(&dir).await;
            }
        }
    }
}
