//! Container probes (liveness, readiness, startup): `httpGet` and `tcpSocket` from inside
//! the pod's network namespace (a thread that joins it, so the agent reaches the pod
//! wherever the pod bridge lives), `exec` through the runtime. Timing follows the probe's
//! fields: initial delay, period, timeout, success and failure thresholds.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::errors::{InNetnsError, ProbeError};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Startup,
    Liveness,
    Readiness,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Startup => "Startup",
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
        }
    }
}

/// Where a probe runs: the pod's network namespace and address, and the container.
pub struct Target {
    pub netns: PathBuf,
    pub pod_ip: IpAddr,
    pub machine: std::sync::Arc<dyn super::machine::Machine>,
    pub container_id: String,
    /// The container run's bundle, whose process spec exec probes run as.
    pub bundle: PathBuf,
}

/// One probe's running tally for one container run.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub successes: i32,
    pub failures: i32,
    /// The last verdict the thresholds allow (None before the first).
    pub passing: Option<bool>,
    pub next: Option<Instant>,
}

/// A container run: (pod uid, container, run number).
pub type RunKey = (String, String, u32);

/// The probes of the node's container runs, with their tallies by run and kind: the sync
/// loop asks it what a run's due probes say, and decides what follows.
#[derive(Default)]
pub struct Prober {
    tallies: Mutex<HashMap<(RunKey, Kind), Tally>>,
}

/// What one look at a run's probes found.
pub struct Verdict<'a> {
    /// When the next of its probes is due.
    pub next: Option<Duration>,
    /// Past its startup probe (or it has none).
    pub started: bool,
    /// Its readiness probe passes (or it has none, or it was not reached).
    pub ready: bool,
    /// A liveness or startup probe that failed for good: the run is to be stopped.
    pub failed: Option<(Kind, &'a Probe)>,
}

impl Prober {
    /// Runs the probes of run `run` (of container `c`, started at `started`) that are due,
    /// in upstream's order — nothing after the startup probe until it passes — telling
    /// `on_failure` of each failed attempt.
    pub async fn check<'a>(
        &self,
        run: &RunKey,
        c: &'a Container,
        target: &Target,
        started: Instant,
        on_failure: impl Fn(Kind, &str),
    ) -> Verdict<'a> {
        let mut verdict = Verdict {
            next: None,
            started: true,
            ready: true,
            failed: None,
        };
        let probes = [
            (Kind::Startup, c.startup_probe.as_ref()),
            (Kind::Liveness, c.liveness_probe.as_ref()),
            (Kind::Readiness, c.readiness_probe.as_ref()),
        ];
        for (kind, probe) in probes {
            let Some(probe) = probe else { continue };
            if kind != Kind::Startup && !verdict.started {
                break; // nothing else runs until the container has started
            }
            let key = (run.clone(), kind);
            let now = Instant::now();
            let mut tally = skiff_client::lock(&self.tallies)
                .get(&key)
                .cloned()
                .unwrap_or_default();
            if tally.due(probe, started, now) {
                let result = self::run(probe, c, target).await;
                if let Err(why) = &result {
                    on_failure(kind, &why.to_string());
                }
                tally.record(probe, result.is_ok());
                tally.schedule(probe, now);
            }
            let due_in = tally
                .next
                .map(|n| n.saturating_duration_since(Instant::now()))
                .unwrap_or(Duration::from_millis(100));
            verdict.next = Some(verdict.next.map_or(due_in, |d| d.min(due_in)));
            let passing = tally.passing;
            skiff_client::lock(&self.tallies).insert(key, tally);
            match kind {
                Kind::Startup => verdict.started = passing == Some(true),
                Kind::Readiness => verdict.ready = passing == Some(true),
                Kind::Liveness => {}
            }
            if kind != Kind::Readiness && passing == Some(false) {
                verdict.failed = Some((kind, probe));
                return verdict;
            }
        }
        verdict
    }

    /// Forgets a run's tallies (it is being replaced).
    pub fn forget_run(&self, run: &RunKey) {
        skiff_client::lock(&self.tallies).retain(|(r, _), _| r != run);
    }

    /// Forgets the tallies of pods other than `known` (by uid).
    pub fn retain_pods(&self, known: &std::collections::HashSet<String>) {
        skiff_client::lock(&self.tallies).retain(|((uid, ..), _), _| known.contains(uid));
    }
}

fn port_of(port: &IntOrString, c: &Container) -> Result<u16, ProbeError> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| ProbeError::Port(*p)),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok())
            .ok_or_else(|| ProbeError::NoNamedPort(name.clone())),
    }
}

/// Runs `f` on a thread of its own inside the network namespace at `netns` (setns would
/// otherwise leak into a shared thread) and awaits its answer.
pub(super) async fn in_netns<T: Send + 'static, E: From<InNetnsError> + Send + 'static>(
    netns: PathBuf,
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        // The thread ends with the work, and its namespace with it.
        let result = match skiff_net::enter_netns(&netns) {
            Ok(()) => f(),
            Err(e) => Err(InNetnsError::from(e).into()),
        };
        let _ = tx.send(result);
    });
    rx.await
        .unwrap_or_else(|_| Err(InNetnsError::Thread.into()))
}

/// Where an httpGet or tcpSocket probe connects: its `host` if it names an address, else
/// the pod's.
fn address(host: Option<&str>, port: u16, pod_ip: IpAddr) -> SocketAddr {
    let ip = host.and_then(|h| h.parse().ok()).unwrap_or(pod_ip);
    SocketAddr::new(ip, port)
}

/// One probe attempt: Ok(()) on success, else why it failed (upstream's wording).
pub async fn run(probe: &Probe, c: &Container, target: &Target) -> Result<(), ProbeError> {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(http) = &probe.http_get {
        let addr = address(http.host.as_deref(), port_of(&http.port, c)?, target.pod_ip);
        let path = http
            .path
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "/".into());
        let headers: Vec<(String, String)> = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return in_netns(target.netns.clone(), move || {
            http_get(addr, &path, &headers, timeout)
        })
        .await;
    }
    if let Some(tcp) = &probe.tcp_socket {
        let addr = address(tcp.host.as_deref(), port_of(&tcp.port, c)?, target.pod_ip);
        return in_netns(target.netns.clone(), move || {
            TcpStream::connect_timeout(&addr, timeout)
                .map(drop)
                .map_err(|source| ProbeError::Dial { addr, source })
        })
        .await;
    }
    if let Some(exec) = &probe.exec {
        let command = exec.command.clone().unwrap_or_default();
        let machine = target.machine.clone();
        let (id, bundle) = (target.container_id.clone(), target.bundle.clone());
        return tokio::task::spawn_blocking(move || {
            exec_in(machine.runtime(), &id, &bundle, &command, timeout)
        })
        .await
        .map_err(std::io::Error::other)?;
    }
    Err(ProbeError::NoHandler)
}

fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Result<(), ProbeError> {
    let url = format!("http://{addr}{path}");
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|source| ProbeError::HttpDial {
            url: url.clone(),
            addr,
            source,
        })?;
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    let mut head = [0u8; 64];
    let read = stream
        .write_all(request.as_bytes())
        .and_then(|()| stream.read(&mut head));
    let n = read.map_err(|source| ProbeError::Http {
        url: url.clone(),
        source,
    })?;
    let line = String::from_utf8_lossy(&head[..n]);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or(ProbeError::HttpMalformed { url })?;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(ProbeError::HttpStatus(code))
    }
}

fn exec_in(
    runtime: &dyn skiff_runtime::Runtime,
    id: &str,
    bundle: &std::path::Path,
    command: &[String],
    timeout: Duration,
) -> Result<(), ProbeError> {
    let mut exec = runtime.exec_command(id, bundle, command, false, None)?;
    let mut child = exec
        .command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait()? {
            Some(status) if status.success() => return Ok(()),
            Some(status) => {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(match status.code() {
                    Some(code) => ProbeError::Exited {
                        command: command.to_vec(),
                        code,
                        detail: err.trim().to_string(),
                    },
                    None => ProbeError::Killed(command.to_vec()),
                });
            }
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ProbeError::TimedOut(command.to_vec()));
            }
        }
    }
}

impl Tally {
    /// Records one result against the probe's thresholds.
    pub fn record(&mut self, probe: &Probe, ok: bool) {
        if ok {
            self.successes += 1;
            self.failures = 0;
            if self.successes >= probe.success_threshold.unwrap_or(1).max(1) {
                self.passing = Some(true);
            }
        } else {
            self.failures += 1;
            self.successes = 0;
            if self.failures >= probe.failure_threshold.unwrap_or(3).max(1) {
                self.passing = Some(false);
            }
        }
    }

    /// Whether the probe is due now (after its initial delay from `started`, then every
    /// period).
    pub fn due(&self, probe: &Probe, started: Instant, now: Instant) -> bool {
        match self.next {
            Some(next) => now >= next,
            None => {
                now >= started
                    + Duration::from_secs(probe.initial_delay_seconds.unwrap_or(0).max(0) as u64)
            }
        }
    }

    pub fn schedule(&mut self, probe: &Probe, now: Instant) {
        self.next =
            Some(now + Duration::from_secs(probe.period_seconds.unwrap_or(10).max(1) as u64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_decide_the_verdict() {
        let probe = Probe {
            success_threshold: Some(2),
            failure_threshold: Some(2),
            ..Default::default()
        };
        let mut t = Tally::default();
        t.record(&probe, true);
        assert_eq!(t.passing, None);
        t.record(&probe, true);
        assert_eq!(t.passing, Some(true));
        t.record(&probe, false);
        assert_eq!(t.passing, Some(true), "one failure is not enough");
        t.record(&probe, false);
        assert_eq!(t.passing, Some(false));
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c = Container {
            ports: Some(vec![k8s_openapi::api::core::v1::ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(
            port_of(&IntOrString::String("http".into()), &c).unwrap(),
            8080
        );
        assert_eq!(port_of(&IntOrString::Int(81), &c).unwrap(), 81);
        let missing = port_of(&IntOrString::String("grpc".into()), &c).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "no port named \"grpc\" in the container"
        );
        let exited = ProbeError::Exited {
            command: vec!["cat".into()],
            code: 1,
            detail: String::new(),
        };
        assert_eq!(exited.to_string(), "command [\"cat\"] exited with 1");
    }

    #[test]
    fn the_first_probe_waits_for_the_initial_delay() {
        let probe = Probe {
            initial_delay_seconds: Some(5),
            period_seconds: Some(2),
            ..Default::default()
        };
        let start = Instant::now();
        let mut t = Tally::default();
        assert!(!t.due(&probe, start, start + Duration::from_secs(4)));
        assert!(t.due(&probe, start, start + Duration::from_secs(5)));
        t.schedule(&probe, start + Duration::from_secs(5));
        assert!(!t.due(&probe, start, start + Duration::from_secs(6)));
        assert!(t.due(&probe, start, start + Duration::from_secs(7)));
    }
}
