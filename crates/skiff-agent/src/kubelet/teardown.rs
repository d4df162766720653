//! The end of a pod on the node: graceful termination of a deleted pod, removal of every
//! trace it had (containers, root filesystems, network, namespaces, cgroups, files), and
//! of pods the API no longer has.

use std::collections::HashSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use skiff_client::informer::split_key;
use skiff_runtime::Runtime;
use skiff_runtime::rootfs::Rootfs;

use super::Kubelet;
use super::errors::{MachineError, SyncError, WipeError};
use super::pod_dir::{Logs, PodDir};
use super::sync::blocking;

/// Coalesces asks for a pass over orphaned pods (see `Kubelet::remove_orphans`).
#[derive(Default)]
pub(super) struct OrphanPasses {
    asked: std::sync::atomic::AtomicBool,
    running: tokio::sync::Mutex<()>,
}

impl Kubelet {
    /// Stops every run of the pod that still runs, as the kubelet kills a pod: a Killing
    /// event, preStop, SIGTERM, and SIGKILL once `grace` seconds have passed since. Answers
    /// whether any still runs (look again shortly).
    pub(super) async fn stop_all_runs(&self, pod: &Pod, dir: &PodDir, grace: u64) -> bool {
        let running = dir.running();
        for a in &running {
            if a.term_sent.is_some() {
                self.kill_after_grace(a, Some(Duration::from_secs(grace)))
                    .await;
                continue;
            }
            let name = a
                .bundle
                .parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            self.events
                .normal(pod, "Killing", format!("Stopping container {name}"));
            let container = pod.spec.as_ref().and_then(|s| {
                s.containers
                    .iter()
                    .chain(s.init_containers.iter().flatten())
                    .find(|c| c.name == name)
                    .cloned()
            });
            self.stop_run(pod, dir, container.as_ref(), a, grace).await;
        }
        !running.is_empty()
    }

    /// A deleted pod: SIGTERM, the grace period, SIGKILL; then the node's resources go and
    /// the pod object with them.
    pub(super) async fn terminate(
        &self,
        pod: &Pod,
        dir: &PodDir,
    ) -> Result<Option<Duration>, SyncError> {
        let grace = super::sync::termination_grace(pod, pod.metadata.deletion_grace_period_seconds);
        if self.stop_all_runs(pod, dir, grace).await {
            return Ok(Some(Duration::from_millis(200)));
        }
        self.teardown(dir, Logs::Remove).await;
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
    pub(super) async fn teardown(&self, dir: &PodDir, logs: Logs) {
        let (machine, dir2) = (self.machine.clone(), dir.clone());
        let result = blocking(move || {
            let containers = dir2.root.join("containers");
            for c in std::fs::read_dir(&containers)
                .into_iter()
                .flatten()
                .flatten()
            {
                let name = c.file_name().to_string_lossy().into_owned();
                for a in dir2.attempts(&name) {
                    machine.remove_run(&a.id, &a.bundle)?;
                }
            }
            Ok::<_, MachineError>(())
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(pod = %dir.uid, error = %e, "removing containers");
            return;
        }
        self.network.detach(&dir.uid);
        let (machine, pod) = (self.machine.clone(), dir.clone());
        let root = dir.root.clone();
        let log_dir = (logs == Logs::Remove).then(|| dir.logs.clone());
        let result = blocking(move || {
            machine.remove_sandbox(&pod)?;
            if let Some(logs) = log_dir {
                let _ = std::fs::remove_dir_all(&logs);
            }
            match std::fs::remove_dir_all(&root) {
                Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                    Err(MachineError::Io {
                        what: format!("the pod directory {}", root.display()),
                        source,
                    })
                }
                _ => Ok(()),
            }
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(pod = %dir.uid, error = %e, "removing the pod's sandbox");
        }
    }

    /// Pod directories whose pod the API no longer has are torn down. Answers whether
    /// some are still on their way out (killed, not yet reaped). Every sync of a pod gone
    /// from the API asks for this: asks made while a pass runs are folded into it (run
    /// once more after it), so workers never tear the same pod down side by side.
    pub(super) async fn remove_orphans(&self) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        self.orphans.asked.store(true, SeqCst);
        loop {
            let Ok(pass) = self.orphans.running.try_lock() else {
                return false; // the running pass sees the ask
            };
            let mut pending = false;
            while self.orphans.asked.swap(false, SeqCst) {
                pending = self.remove_orphans_once().await;
            }
            drop(pass);
            // An ask between the last look and the unlock found the lock taken.
            if !self.orphans.asked.load(SeqCst) {
                return pending;
            }
        }
    }

    async fn remove_orphans_once(&self) -> bool {
        let known: HashSet<String> = self.pods.list().iter().filter_map(|p| p.uid()).collect();
        self.probes.retain_pods(&known);
        self.images.retain_pods(&known);
        self.volumes.retain_pods(&known);
        let pods = self.config.data_dir.join("pods");
        let Ok(entries) = std::fs::read_dir(&pods) else {
            return false;
        };
        let mut pending = false;
        for entry in entries.flatten() {
            let uid = entry.file_name().to_string_lossy().into_owned();
            if known.contains(&uid) {
                continue;
            }
            let key = std::fs::read_to_string(entry.path().join("pod")).unwrap_or_default();
            let (ns, name) = split_key(&key);
            let dir = PodDir::new(&self.config.data_dir, ns, name, &uid);
            for a in dir.running() {
                let _ = self.signal(&a.id, 9).await;
            }
            if dir.running().is_empty() {
                tracing::info!(pod = %key, %uid, "removing a pod the API no longer has");
                self.teardown(&dir, Logs::Remove).await;
            } else {
                pending = true;
            }
        }
        pending
    }
}

/// Removes everything a node's data directory still runs or holds mounted, with no agent
/// and no API: the last resort after an agent is gone (test clean-up, node resets). It
/// goes on past what fails, so one stuck piece leaves only itself behind; the answer
/// lists every failure.
pub fn wipe(data_dir: &std::path::Path, runtime_binary: &std::path::Path) -> Result<(), WipeError> {
    let runtime = skiff_runtime::OciRuntime::new(
        runtime_binary,
        super::runtime_root(data_dir, runtime_binary),
    );
    let mut failures = Vec::new();
    let mut note = |what: String, result: Result<(), String>| {
        if let Err(e) = result {
            failures.push(format!("{what}: {e}"));
        }
    };
    for state in runtime.list().unwrap_or_default() {
        note(
            format!("deleting container {}", state.id),
            runtime.delete(&state.id, true).map_err(|e| e.to_string()),
        );
        note(
            format!("{}", state.bundle.display()),
            Rootfs::at(&state.bundle)
                .remove()
                .map_err(|e| e.to_string()),
        );
    }
    let pods = data_dir.join("pods");
    for entry in std::fs::read_dir(&pods).into_iter().flatten().flatten() {
        let uid = entry.file_name().to_string_lossy().into_owned();
        let dir = PodDir::new(data_dir, "", "", &uid);
        for container in std::fs::read_dir(entry.path().join("containers"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for a in dir.attempts(&container.file_name().to_string_lossy()) {
                note(
                    format!("{}", a.bundle.display()),
                    Rootfs::at(&a.bundle).remove().map_err(|e| e.to_string()),
                );
            }
        }
        super::machine::release_sandbox(&dir, |e| {
            note(format!("pod {uid}"), Err(e.to_string()));
        });
        note(
            format!("{}", entry.path().display()),
            remove_dir_settled(&entry.path()).map_err(|e| e.to_string()),
        );
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(WipeError(failures))
    }
}

/// Removes a pod directory whose container monitors may still be recording the exits the
/// forced delete caused (a monitor drains its container's output for up to 2 s first): a
/// file that lands mid-removal is retried, for up to 3 s.
fn remove_dir_settled(dir: &std::path::Path) -> std::io::Result<()> {
    let mut tries = 0;
    loop {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && tries < 60 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}
