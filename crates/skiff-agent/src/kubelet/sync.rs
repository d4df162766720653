//! One pod's reconciliation: what should run (its spec) against what runs (its directory
//! and the runtime), one step at a time, then the status. A sync never waits for a
//! container: it starts what is due and looks again later.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Pod};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::{Value, json};
use skiff_client::objects::{is_deleting, time_text};
use skiff_runtime::rootfs::Rootfs;

use super::Kubelet;
use super::backoff::{BACKOFF_RESET, backoff};
use super::container::{container_spec, ephemeral_containers};
pub use super::errors::SyncError;
use super::errors::{ContainerError, MachineError, SandboxSetupError};
use super::machine::Run;
use super::pod_dir::{
    Attempt, CHANGED_FILE, DEADLINE_FILE, IMAGE_FILE, Logs, PID_HOLDER, PodDir, TERMINATION_LOG,
    TERMINATION_MESSAGE,
};
use super::status::{ContainerView, Failure, Waiting, pod_status};

/// How soon a container just started is looked at again for its probes.
const PROBE_START: Duration = Duration::from_millis(100);

fn has_probes(c: &Container) -> bool {
    c.startup_probe.is_some() || c.liveness_probe.is_some() || c.readiness_probe.is_some()
}

/// Now, to the nanosecond, as the monitors record times: for the node's own records
/// (termination marks, grace periods). What goes into the API takes whole seconds
/// (`skiff_apimachinery::time::now_rfc3339`).
pub(super) use skiff_runtime::monitor::now_rfc3339;

fn parse_time(t: &str) -> Option<time::OffsetDateTime> {
    skiff_apimachinery::time::parse_time(t.trim())
}

pub(super) fn since(t: &str) -> Duration {
    parse_time(t)
        .map(|t| (time::OffsetDateTime::now_utc() - t).unsigned_abs())
        .unwrap_or_default()
}

/// Runs blocking node work (runc, mounts, files) off the async threads.
pub(super) async fn blocking<T: Send + 'static, E: From<MachineError> + Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(MachineError::Io {
            what: "a node task".into(),
            source: std::io::Error::other(e),
        }
        .into())
    })
}

impl Kubelet {
    /// Sends `signal` to a container run through the runtime.
    pub(super) async fn signal(&self, id: &str, signal: i32) -> Result<(), MachineError> {
        let (machine, id) = (self.machine.clone(), id.to_string());
        blocking(move || Ok(machine.runtime().kill(&id, signal)?)).await
    }

    pub(super) fn dir(&self, pod: &Pod) -> PodDir {
        PodDir::new(
            &self.config.data_dir,
            &pod.namespace().unwrap_or_default(),
            &pod.name_any(),
            &pod.uid().unwrap_or_default(),
        )
    }

    pub async fn sync(&self, key: &str) -> Result<Option<Duration>, SyncError> {
        let Some(pod) = self.pods.get(key) else {
            // Gone from the API (deleted at once, with no grace): stop what it ran now.
            let pending = self.remove_orphans().await;
            return Ok(pending.then_some(Duration::from_millis(200)));
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
                // Its logs stay readable until the pod object goes.
                self.teardown(&dir, Logs::Keep).await;
            }
            return Ok(None);
        }
        self.run_pod(&pod, &dir).await
    }

    /// Sandbox, network, then containers; then the status.
    async fn run_pod(&self, pod: &Pod, dir: &PodDir) -> Result<Option<Duration>, SyncError> {
        let sandbox_started = Instant::now();
        let sandbox = self.ensure_sandbox(pod, dir).await;
        tracing::debug!(pod = %pod.name_any(), ms = sandbox_started.elapsed().as_millis() as u64, "sandbox ensured");
        let pod_ip = match sandbox {
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
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(time_text)
            .unwrap_or_else(skiff_apimachinery::time::now_rfc3339);
        let deadline = deadline_left(pod, &start_time);
        if deadline == Some(Duration::ZERO) || dir.root.join(DEADLINE_FILE).exists() {
            return self
                .end_for_deadline(pod, dir, &pod_ip.to_string(), &start_time)
                .await;
        }
        let env_base = self.field_env(pod, &pod_ip.to_string());
        if let Err(e) = self.volumes.ensure(pod, dir, &env_base).await {
            self.events.warning(pod, "FailedMount", e.to_string());
            return Ok(Some(Duration::from_secs(5)));
        }
        let mut again: Option<Duration> = deadline;
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
        // Ephemeral containers (`kubectl debug`): run once each, never restarted.
        let mut ephemeral_views = Vec::new();
        for c in ephemeral_containers(pod) {
            let (view, next) = self
                .ensure_container(pod, dir, &c, "Never", &env_base)
                .await;
            if let Some(d) = next {
                soonest(d);
            }
            ephemeral_views.push(view);
        }
        let ip = pod_ip.to_string();
        let mut status = pod_status(
            pod,
            &init_views,
            &app_views,
            Some(&ip),
            &self.config.node_ip,
            &start_time,
            None,
        );
        if !ephemeral_views.is_empty() {
            status["ephemeralContainerStatuses"] = ephemeral_views
                .iter()
                .map(ContainerView::status)
                .collect::<Vec<_>>()
                .into();
        }
        self.write_status(pod, status).await?;
        let resync = self.config.sync_frequency;
        Ok(Some(again.map_or(resync, |a| a.min(resync))))
    }

    /// A pod past its `activeDeadlineSeconds`, as the kubelet ends it: the event once,
    /// every run stopped with the pod's grace period (as a deletion stops them, Killing
    /// events included), then phase Failed with reason
    /// DeadlineExceeded (once nothing runs; the finished pod is then torn down as any).
    async fn end_for_deadline(
        &self,
        pod: &Pod,
        dir: &PodDir,
        pod_ip: &str,
        start_time: &str,
    ) -> Result<Option<Duration>, SyncError> {
        let marker = dir.root.join(DEADLINE_FILE);
        if !marker.exists() {
            let _ = std::fs::write(&marker, b"");
            self.events
                .warning(pod, DEADLINE_REASON, DEADLINE_MESSAGE.to_string());
        }
        if self
            .stop_all_runs(pod, dir, termination_grace(pod, None))
            .await
        {
            return Ok(Some(Duration::from_millis(200)));
        }
        let spec = pod.spec.clone().unwrap_or_default();
        let views = |list: &[Container]| {
            list.iter()
                .map(|c| self.view(dir, c, None))
                .collect::<Vec<_>>()
        };
        let status = pod_status(
            pod,
            &views(spec.init_containers.as_deref().unwrap_or_default()),
            &views(&spec.containers),
            Some(pod_ip),
            &self.config.node_ip,
            start_time,
            Some(&Failure {
                reason: DEADLINE_REASON,
                message: DEADLINE_MESSAGE,
            }),
        );
        self.write_status(pod, status).await?;
        Ok(None)
    }

    /// The namespaces a container joins beyond its sandbox's, as its pod asks: the node's
    /// network and UTS (`hostNetwork`), IPC (`hostIPC`) and PID (`hostPID`) namespaces;
    /// the pod's holder's PID namespace (`shareProcessNamespace`); for an ephemeral
    /// container, its target's PID namespace.
    fn join_namespaces(
        &self,
        pod: &Pod,
        dir: &PodDir,
        c: &Container,
        namespaces: &mut skiff_runtime::spec::SharedNamespaces,
    ) -> Result<(), ContainerError> {
        let pod_spec = pod.spec.as_ref();
        if uses_host_network(pod) {
            namespaces.network = Some(self.pod_netns(pod, dir));
            namespaces.uts = Some(agent_namespace("uts"));
        }
        if pod_spec.and_then(|s| s.host_ipc) == Some(true) {
            namespaces.ipc = Some(agent_namespace("ipc"));
        }
        if pod_spec.and_then(|s| s.host_pid) == Some(true) {
            namespaces.pid = Some(agent_namespace("pid"));
        }
        if shares_process_namespace(pod) {
            let pid = self
                .machine
                .pid_holder(&dir.root.join(PID_HOLDER))
                .ok_or(ContainerError::PidNamespaceGone)?;
            namespaces.pid = Some(skiff_runtime::pod_init::namespace(pid));
            return Ok(());
        }
        let target = pod_spec
            .and_then(|s| s.ephemeral_containers.as_ref())
            .and_then(|list| list.iter().find(|e| e.name == c.name))
            .and_then(|e| e.target_container_name.as_deref());
        if let Some(target) = target {
            let running = dir
                .attempts(target)
                .into_iter()
                .rev()
                .find(Attempt::is_running);
            let pid = running
                .and_then(|run| std::fs::read_to_string(run.bundle.join("pid")).ok())
                .ok_or_else(|| ContainerError::TargetNotRunning(target.to_string()))?;
            namespaces.pid = Some(format!("/proc/{}/ns/pid", pid.trim()).into());
        }
        Ok(())
    }

    /// The network namespace the pod's containers live in: its sandbox's own, or with
    /// `hostNetwork` the node's (the agent's, or the one `--node-netns` names).
    pub(super) fn pod_netns(&self, pod: &Pod, dir: &PodDir) -> std::path::PathBuf {
        if !uses_host_network(pod) {
            return dir.sandbox().net();
        }
        match &self.config.node_netns {
            skiff_net::Netns::Path(path) => path.clone(),
            skiff_net::Netns::Current => agent_namespace("net"),
        }
    }

    fn view(&self, dir: &PodDir, c: &Container, waiting: Option<Waiting>) -> ContainerView {
        let mut attempts = dir.attempts(&c.name);
        // The status shows the last two runs: their termination messages.
        let shown = attempts.len().saturating_sub(2);
        for a in attempts.iter_mut().skip(shown).filter(|a| a.exit.is_some()) {
            a.termination_message = termination_message(a, c, &dir.log_path(&c.name, a.number));
        }
        let running = attempts.last().is_some_and(Attempt::is_running);
        ContainerView {
            // Without probes a running container is ready (init containers: see run_pod).
            ready: running,
            started: running,
            name: c.name.clone(),
            runtime: self.machine.runtime().name(),
            image: c.image.clone().unwrap_or_default(),
            image_id: self.images.id_of(c.image.as_deref().unwrap_or_default()),
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
            v
        };
        let interesting = [
            "phase",
            "conditions",
            "podIP",
            "hostIP",
            "containerStatuses",
            "initContainerStatuses",
            "ephemeralContainerStatuses",
        ];
        let (current, wanted) = (strip(&current), strip(&status));
        let differs = interesting
            .iter()
            .any(|k| current.get(*k) != wanted.get(*k));
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
    async fn ensure_sandbox(
        &self,
        pod: &Pod,
        dir: &PodDir,
    ) -> Result<std::net::Ipv4Addr, SandboxSetupError> {
        let hostname: String = if uses_host_network(pod) {
            // It shares the node's UTS namespace too, so the node's name.
            super::host::hostname()
        } else {
            pod.spec
                .as_ref()
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| pod.name_any())
        }
        .chars()
        .take(63)
        .collect();
        let sandbox = dir.sandbox();
        let key = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
        std::fs::create_dir_all(dir.etc())
            .and_then(|()| std::fs::write(dir.root.join("pod"), &key))
            .map_err(|source| pod_file(dir, source))?;
        let fresh = !self.machine.sandbox_exists(&sandbox);
        if fresh {
            let (machine, s, h) = (self.machine.clone(), sandbox.clone(), hostname.clone());
            blocking(move || machine.create_sandbox(&s, &h)).await?;
        }
        // A sandbox that was there already was wired when it was made: every later sync of
        // the pod skips the netlink requests. A host-network pod has the node's address.
        let ip = if uses_host_network(pod) {
            self.config
                .node_ip
                .parse()
                .map_err(|_| SandboxSetupError::HostAddress(self.config.node_ip.clone()))?
        } else {
            match self.network.address_of(&dir.uid).filter(|_| !fresh) {
                Some(ip) => ip,
                None => self.network.attach(&dir.uid, &sandbox.net())?,
            }
        };
        let files = [
            (
                "hosts",
                super::dns::hosts_file(pod, ip, &hostname, self.config.cluster_dns.as_ref()),
            ),
            ("hostname", format!("{hostname}\n")),
            (
                "resolv.conf",
                super::dns::pod_resolver(
                    pod,
                    self.config.cluster_dns.as_ref(),
                    &self.host_resolver,
                )
                .render(),
            ),
        ];
        for (name, content) in files {
            let path = dir.etc().join(name);
            if std::fs::read_to_string(&path).ok().as_deref() != Some(content.as_str()) {
                std::fs::write(&path, content).map_err(|source| pod_file(dir, source))?;
            }
        }
        if shares_process_namespace(pod) {
            let holder = dir.root.join(PID_HOLDER);
            if self.machine.pid_holder(&holder).is_none() {
                // New, or gone (and every process in its namespace with it): the
                // containers start again in a fresh one.
                let machine = self.machine.clone();
                blocking(move || machine.start_pid_holder(&holder)).await?;
            }
        }
        for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
            if v.empty_dir.is_some() {
                std::fs::create_dir_all(dir.volume(&v.name))
                    .map_err(|source| pod_file(dir, source))?;
            }
        }
        Ok(ip)
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
            Some(a) if a.is_running() && a.term_sent.is_some() => {
                // Being stopped (a failed probe or hook): SIGKILL once its grace is over.
                let mut view = self.view(dir, c, None);
                view.ready = false;
                return (view, Some(self.kill_after_grace(a, None).await));
            }
            Some(a) if a.is_running() && definition_changed(a, c) => {
                // As the kubelet when a container's spec changes (its image, the one field
                // a pod update may change): stopped, then started again whatever the
                // restart policy says, without back-off.
                self.events.normal(
                    pod,
                    "Killing",
                    format!("Container {} definition changed, will be restarted", c.name),
                );
                let _ = std::fs::write(a.bundle.join(CHANGED_FILE), b"");
                self.stop_run(pod, dir, Some(c), a, termination_grace(pod, None))
                    .await;
                let mut view = self.view(dir, c, None);
                view.ready = false;
                return (view, Some(Duration::from_millis(100)));
            }
            Some(a) if a.is_running() => {
                // Exits are noticed by the exit watcher; only probes need a look later.
                let mut view = self.view(dir, c, None);
                let next = self.probe(pod, dir, c, a, fields, &mut view).await;
                return (view, next);
            }
            _ => {}
        }
        if let Some(last) = attempts.last()
            && let Some(exit) = &last.exit
        {
            let replaced = last.bundle.join(CHANGED_FILE).exists();
            let restart = replaced
                || match policy {
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
            let delay = if replaced {
                Duration::ZERO
            } else {
                backoff(short_runs)
            };
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
            // Looked at again soon for its probes (the exit watcher reports an end).
            Ok(()) => (
                self.view(dir, c, None),
                has_probes(c).then_some(PROBE_START),
            ),
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
        use super::probe::{Kind, Target};
        let ip = fields.get("status.podIP").and_then(|ip| ip.parse().ok())?;
        let target = Target {
            netns: self.pod_netns(pod, dir),
            pod_ip: ip,
            machine: self.machine.clone(),
            container_id: a.id.clone(),
            bundle: a.bundle.clone(),
        };
        let started = Instant::now() - a.started_at.as_deref().map(since).unwrap_or_default();
        let run = (dir.uid.clone(), c.name.clone(), a.number);
        let verdict = self
            .probes
            .check(&run, c, &target, started, |kind: Kind, why: &str| {
                self.events.warning(
                    pod,
                    "Unhealthy",
                    format!("{} probe failed: {why}", kind.name()),
                )
            })
            .await;
        if let Some((kind, probe)) = verdict.failed {
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
            // As the kubelet: preStop, then SIGTERM; SIGKILL when the grace period (the
            // probe's own, else the pod's) is over.
            let grace = termination_grace(pod, probe.termination_grace_period_seconds);
            self.stop_run(pod, dir, Some(c), a, grace).await;
            self.probes.forget_run(&run);
            view.ready = false;
            return Some(Duration::from_millis(100));
        }
        view.started = view.started && verdict.started;
        view.ready = view.ready && verdict.ready && verdict.started;
        verdict.next
    }

    /// A new run: image, root filesystem, spec, then the monitor, which starts it.
    async fn start_new(
        &self,
        pod: &Pod,
        dir: &PodDir,
        c: &Container,
        number: u32,
        fields: &BTreeMap<String, String>,
    ) -> Result<(), Waiting> {
        let t0 = Instant::now();
        let image = self
            .images
            .ensure(&self.client, &self.events, pod, c)
            .await?;
        let t_image = t0.elapsed();
        // A run that cannot be made: a Failed event, and the container waits with `reason`.
        let not_made = |reason: &'static str, message: String| {
            self.events
                .warning(pod, "Failed", format!("Error: {message}"));
            Waiting { reason, message }
        };
        let failed = |message: String| not_made("CreateContainerError", message);
        let env = self
            .environment(pod, c, &image, fields)
            .await
            .map_err(|e| not_made("CreateContainerConfigError", e.to_string()))?;
        let bundle = dir.attempt_dir(&c.name, number);
        let id = dir.container_id(&c.name, number);
        let (machine, layers, at) = (self.machine.clone(), image.layers.clone(), bundle.clone());
        blocking(move || machine.mount_rootfs(&at, &layers))
            .await
            .map_err(|e| failed(e.to_string()))?;
        let rootfs = Rootfs::at(&bundle).path();
        let spec = container_spec(pod, c, &image.config, dir, number, rootfs, &env).and_then(
            |mut spec| {
                self.join_namespaces(pod, dir, c, &mut spec.namespaces)?;
                let config = skiff_runtime::spec::runtime_config(&spec)?;
                Ok((spec, config))
            },
        );
        let (spec, config) = match spec {
            Ok(made) => made,
            Err(e) => {
                // Nothing was created yet: only the mount goes.
                let _ = self.machine.remove_rootfs(&bundle);
                return Err(failed(e.to_string()));
            }
        };
        serde_json::to_vec(&config)
            .map_err(std::io::Error::from)
            .and_then(|json| std::fs::write(bundle.join("config.json"), json))
            .map_err(|e| failed(e.to_string()))?;
        // The file the container may leave its termination message in.
        std::fs::write(bundle.join(TERMINATION_LOG), b"")
            .and_then(|()| {
                std::fs::set_permissions(
                    bundle.join(TERMINATION_LOG),
                    std::os::unix::fs::PermissionsExt::from_mode(0o666),
                )
            })
            .map_err(|e| failed(e.to_string()))?;
        // What the run was made from, so a changed spec is noticed (see `ensure_container`).
        std::fs::write(
            bundle.join(IMAGE_FILE),
            c.image.as_deref().unwrap_or_default(),
        )
        .map_err(|e| failed(e.to_string()))?;
        let run = Run {
            id,
            bundle: bundle.clone(),
            log: dir.log_path(&c.name, number),
            cgroups_path: spec.cgroups_path.clone(),
            exit_notice: dir.exit_notice.clone(),
        };
        let t_prepared = t0.elapsed();
        if c.stdin == Some(true) {
            make_fifo(&bundle.join(skiff_runtime::monitor::STDIN_FIFO))
                .map_err(|e| failed(format!("the container's stdin: {e}")))?;
            if c.stdin_once == Some(true) {
                std::fs::write(bundle.join(skiff_runtime::monitor::STDIN_ONCE), b"")
                    .map_err(|e| failed(format!("the container's stdin: {e}")))?;
            }
        }
        if c.tty == Some(true) {
            make_fifo(&bundle.join(skiff_runtime::monitor::RESIZE_FIFO))
                .map_err(|e| failed(format!("the container's terminal: {e}")))?;
        }
        let machine = self.machine.clone();
        blocking(move || machine.start(&run))
            .await
            .map_err(|e| failed(e.to_string()))?;
        let t_running = t0.elapsed();
        // The monitor created and started it in one runtime call.
        self.events
            .normal(pod, "Created", format!("Created container {}", c.name));
        self.events
            .normal(pod, "Started", format!("Started container {}", c.name));
        self.post_start(pod, dir, c, number).await;
        let ms = |d: Duration| d.as_millis() as u64;
        tracing::debug!(
            pod = %pod.name_any(), container = %c.name,
            image_ms = ms(t_image), prepared_ms = ms(t_prepared), running_ms = ms(t_running),
            started_ms = ms(t0.elapsed()),
            "container started"
        );
        Ok(())
    }
}

/// Whether the pod's containers share one PID namespace (`shareProcessNamespace`).
fn shares_process_namespace(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.share_process_namespace) == Some(true)
}

/// This agent's own namespace of `kind` (the node's), by path.
fn agent_namespace(kind: &str) -> std::path::PathBuf {
    format!("/proc/{}/ns/{kind}", std::process::id()).into()
}

/// Whether the pod runs in the node's network (and UTS) namespace.
pub(super) fn uses_host_network(pod: &Pod) -> bool {
    pod.spec.as_ref().and_then(|s| s.host_network) == Some(true)
}

const DEADLINE_REASON: &str = "DeadlineExceeded";
const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// How long the pod may still run under its `activeDeadlineSeconds` (zero: its time is
/// up), counted from its start time; None without a deadline.
fn deadline_left(pod: &Pod, start_time: &str) -> Option<Duration> {
    let seconds = pod.spec.as_ref()?.active_deadline_seconds?;
    let limit = Duration::from_secs(seconds.max(0) as u64);
    Some(limit.saturating_sub(since(start_time)))
}

/// Upstream's bounds: the file is read up to 4 KiB; a message from the log is its last 80
/// lines, at most 2 KiB.
const TERMINATION_MESSAGE_MAX: u64 = 4096;
const FALLBACK_LINES: usize = 80;
const FALLBACK_BYTES: usize = 2048;

/// The termination message of an ended run, taken once (every later sync of the pod reads
/// what was kept rather than the run's files and log again).
fn termination_message(run: &Attempt, c: &Container, log: &std::path::Path) -> Option<String> {
    let kept = run.bundle.join(TERMINATION_MESSAGE);
    if let Ok(message) = std::fs::read_to_string(&kept) {
        return Some(message);
    }
    let message = take_termination_message(run, c, log).unwrap_or_default();
    let _ = std::fs::write(&kept, &message);
    Some(message)
}

/// An ended run's termination message as the kubelet takes it: the file the container
/// wrote at its `terminationMessagePath`; with `FallbackToLogsOnError`, when that is empty
/// and the run failed, the end of its log.
fn take_termination_message(run: &Attempt, c: &Container, log: &std::path::Path) -> Option<String> {
    use std::io::Read;
    let mut written = Vec::new();
    if let Ok(file) = std::fs::File::open(run.bundle.join(TERMINATION_LOG)) {
        let _ = file.take(TERMINATION_MESSAGE_MAX).read_to_end(&mut written);
    }
    if !written.is_empty() {
        return Some(String::from_utf8_lossy(&written).into_owned());
    }
    let failed = run.exit.as_ref().is_some_and(|e| e.exit_code != 0);
    if !failed || c.termination_message_policy.as_deref() != Some("FallbackToLogsOnError") {
        return None;
    }
    let options = super::logs::LogOptions {
        tail_lines: Some(FALLBACK_LINES),
        ..Default::default()
    };
    let mut text = Vec::new();
    super::logs::stream(
        log,
        &options,
        || true,
        |_, bytes| {
            text.extend(bytes);
            true
        },
    )
    .ok()?;
    let start = text.len().saturating_sub(FALLBACK_BYTES);
    Some(String::from_utf8_lossy(&text[start..]).into_owned())
}

/// Whether the spec now names another image than the run was made from (runs from before
/// the record count as unchanged).
fn definition_changed(run: &super::pod_dir::Attempt, c: &Container) -> bool {
    let recorded = std::fs::read_to_string(run.bundle.join(IMAGE_FILE));
    run.term_sent.is_none()
        && recorded.is_ok_and(|image| image != c.image.as_deref().unwrap_or_default())
}

/// A FIFO at `path` (mode 0600).
fn make_fifo(path: &std::path::Path) -> std::io::Result<()> {
    let mode = rustix::fs::Mode::from_raw_mode(0o600);
    match rustix::fs::mkfifoat(rustix::fs::CWD, path, mode) {
        Err(rustix::io::Errno::EXIST) => Ok(()),
        other => Ok(other?),
    }
}

/// The grace period for stopping a container: `override_seconds` (a probe's own), else
/// the pod's `terminationGracePeriodSeconds`, else 30.
pub(super) fn termination_grace(pod: &Pod, override_seconds: Option<i64>) -> u64 {
    override_seconds
        .or(pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(DEFAULT_GRACE_SECONDS as i64)
        .max(0) as u64
}

/// Upstream's `terminationGracePeriodSeconds` default.
pub(super) const DEFAULT_GRACE_SECONDS: u64 = 30;

/// A file of the pod's directory could not be written.
fn pod_file(dir: &PodDir, source: std::io::Error) -> SandboxSetupError {
    MachineError::Io {
        what: format!("the pod's files in {}", dir.root.display()),
        source,
    }
    .into()
}
