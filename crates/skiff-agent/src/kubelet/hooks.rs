//! Lifecycle hooks: `postStart` right after a container starts (a failure kills the run,
//! which then restarts as its policy says) and `preStop` before the stop signal (within
//! the grace period, which it counts against). Handlers are the probes' — exec, httpGet,
//! tcpSocket — plus `sleep`, so they run through the probe code.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod, Probe};

use super::Kubelet;
use super::errors::ProbeError;
use super::pod_dir::{GRACE, PodDir};
use super::probe::{self, Target};
use super::sync::{now_rfc3339, since};

/// The longest a postStart hook may take (upstream sets none; a stuck hook would hold the
/// container's start forever).
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    fn handler(self, c: &Container) -> Option<&LifecycleHandler> {
        let lifecycle = c.lifecycle.as_ref()?;
        match self {
            Hook::PostStart => lifecycle.post_start.as_ref(),
            Hook::PreStop => lifecycle.pre_stop.as_ref(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Hook::PostStart => "PostStart",
            Hook::PreStop => "PreStop",
        }
    }
}

/// Runs one handler against a container run.
async fn run(
    handler: &LifecycleHandler,
    c: &Container,
    target: &Target,
    timeout: Duration,
) -> Result<(), ProbeError> {
    if let Some(sleep) = &handler.sleep {
        let wanted = Duration::from_secs(sleep.seconds.max(0) as u64);
        tokio::time::sleep(wanted.min(timeout)).await;
        return Ok(());
    }
    let as_probe = Probe {
        exec: handler.exec.clone(),
        http_get: handler.http_get.clone(),
        tcp_socket: handler.tcp_socket.clone(),
        timeout_seconds: Some(timeout.as_secs().clamp(1, i32::MAX as u64) as i32),
        ..Default::default()
    };
    if as_probe.exec.is_none() && as_probe.http_get.is_none() && as_probe.tcp_socket.is_none() {
        return Err(ProbeError::NoAction);
    }
    probe::run(&as_probe, c, target).await
}

impl Kubelet {
    /// Runs `hook` of container `c` (its run `number` in the pod's `dir`) if it has one;
    /// a failure is a warning event and the answer.
    pub(super) async fn run_hook(
        &self,
        hook: Hook,
        pod: &Pod,
        dir: &PodDir,
        c: &Container,
        number: u32,
        timeout: Duration,
    ) -> Result<(), ProbeError> {
        let Some(handler) = hook.handler(c) else {
            return Ok(());
        };
        let pod_ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse().ok())
            .or_else(|| self.network.address_of(&dir.uid).map(Into::into))
            .unwrap_or(std::net::Ipv4Addr::LOCALHOST.into());
        let target = Target {
            netns: self.pod_netns(pod, dir),
            pod_ip,
            machine: self.machine.clone(),
            container_id: dir.container_id(&c.name, number),
            bundle: dir.attempt_dir(&c.name, number),
        };
        let result = run(handler, c, &target, timeout).await;
        if let Err(why) = &result {
            self.events.warning(
                pod,
                &format!("Failed{}Hook", hook.name()),
                format!("{}Hook failed: {why}", hook.name()),
            );
        }
        result
    }

    /// Stops a run the kubelet's way: `term` recorded (the grace period counts from it),
    /// the preStop hook of its container `c` (when the spec still has it) within the grace,
    /// then SIGTERM (SIGKILL for no grace). A run still there when the grace is over gets
    /// [`Kubelet::kill_after_grace`].
    pub(super) async fn stop_run(
        &self,
        pod: &Pod,
        dir: &PodDir,
        c: Option<&Container>,
        run: &super::pod_dir::Attempt,
        grace: u64,
    ) {
        let _ = std::fs::write(run.bundle.join("term"), now_rfc3339());
        let _ = std::fs::write(run.bundle.join(GRACE), grace.to_string());
        if let Some(c) = c
            && grace > 0
        {
            let timeout = Duration::from_secs(grace);
            let _ = self
                .run_hook(Hook::PreStop, pod, dir, c, run.number, timeout)
                .await;
        }
        let signal = if grace == 0 { 9 } else { 15 };
        let _ = self.signal(&run.id, signal).await;
    }

    /// A run being stopped (`term` recorded): SIGKILL once the grace period has passed —
    /// `grace` (a deletion's), else the one [`Kubelet::stop_run`] recorded — and only once
    /// (a `kill` file records that it went). Answers when to look again.
    pub(super) async fn kill_after_grace(
        &self,
        run: &super::pod_dir::Attempt,
        grace: Option<Duration>,
    ) -> Duration {
        let grace = grace.unwrap_or_else(|| {
            let recorded = std::fs::read_to_string(run.bundle.join(GRACE));
            // A run stopped by an agent from before grace files: the pod default.
            Duration::from_secs(
                recorded
                    .ok()
                    .and_then(|g| g.parse().ok())
                    .unwrap_or(super::sync::DEFAULT_GRACE_SECONDS),
            )
        });
        let sent = run.term_sent.as_deref().map(since).unwrap_or_default();
        if sent < grace {
            return (grace - sent).min(Duration::from_secs(1));
        }
        let marker = run.bundle.join("kill");
        if !marker.exists() && self.signal(&run.id, 9).await.is_ok() {
            let _ = std::fs::write(marker, now_rfc3339());
        }
        Duration::from_millis(200)
    }

    /// After a start: the postStart hook; if it fails, the run is killed (and restarts
    /// as its policy says).
    pub(super) async fn post_start(&self, pod: &Pod, dir: &PodDir, c: &Container, number: u32) {
        if self
            .run_hook(Hook::PostStart, pod, dir, c, number, POST_START_TIMEOUT)
            .await
            .is_ok()
        {
            return;
        }
        self.events.normal(
            pod,
            "Killing",
            format!("FailedPostStartHook: stopping container {}", c.name),
        );
        let _ = std::fs::write(dir.attempt_dir(&c.name, number).join("term"), now_rfc3339());
        let _ = self.signal(&dir.container_id(&c.name, number), 9).await;
    }
}
