//! A pod's status as the kubelet reports it, from what its containers did: container
//! states (running, waiting with upstream's reasons, terminated with exit code and reason),
//! last states and restart counts, the phase, and the Initialized / ContainersReady / Ready
//! / PodReadyToStartContainers conditions.

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};

use super::pod_dir::Attempt;

/// Why a container is not running, when it is not (upstream's waiting reasons).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: &'static str,
    pub message: String,
}

/// What the status needs to know of one container.
#[derive(Debug, Clone)]
pub struct ContainerView {
    pub name: String,
    /// The OCI runtime's name, the scheme of container IDs (`runc://<id>`).
    pub runtime: String,
    pub image: String,
    pub image_id: Option<String>,
    pub attempts: Vec<Attempt>,
    pub waiting: Option<Waiting>,
    /// Running and passing its readiness probe (if it has one).
    pub ready: bool,
    /// Running and past its startup probe (if it has one).
    pub started: bool,
}

fn terminated(a: &Attempt, runtime: &str) -> Option<Value> {
    let exit = a.exit.as_ref()?;
    let reason = if exit.oom_killed {
        "OOMKilled"
    } else if exit.error.is_some() {
        "StartError"
    } else if exit.exit_code == 0 {
        "Completed"
    } else {
        "Error"
    };
    let mut t = json!({
        "exitCode": exit.exit_code,
        "reason": reason,
        "startedAt": a.started_at.as_deref().map(api_time),
        "finishedAt": api_time(&exit.finished_at),
        "containerID": format!("{runtime}://{}", a.id),
    });
    if let Some(sig) = exit.signal {
        t["signal"] = sig.into();
    }
    if let Some(e) = &exit.error {
        t["message"] = e.clone().into();
    } else if let Some(m) = a.termination_message.as_ref().filter(|m| !m.is_empty()) {
        t["message"] = m.clone().into();
    }
    Some(json!({"terminated": t}))
}

/// A time the monitor recorded (to the nanosecond) as the API writes times: whole
/// seconds (`metav1.Time`). The status as written must be what reads back, or every
/// sync would find it changed.
fn api_time(recorded: &str) -> String {
    skiff_apimachinery::time::parse_time(recorded.trim())
        .map(skiff_apimachinery::time::format_time)
        .unwrap_or_else(|| recorded.to_string())
}

impl ContainerView {
    pub fn running(&self) -> bool {
        self.attempts.last().is_some_and(Attempt::is_running)
    }

    /// Whether the last run ended with exit code 0.
    pub fn succeeded(&self) -> bool {
        self.attempts
            .last()
            .and_then(|a| a.exit.as_ref())
            .is_some_and(|e| e.exit_code == 0 && e.error.is_none())
    }

    pub fn exited(&self) -> bool {
        self.attempts.last().is_some_and(|a| a.exit.is_some())
    }

    pub fn status(&self) -> Value {
        let latest = self.attempts.last();
        let state = match (latest, &self.waiting) {
            (_, Some(w)) => json!({"waiting": {"reason": w.reason, "message": w.message}}),
            (Some(a), None) if a.is_running() => {
                json!({"running": {"startedAt": a.started_at.as_deref().map(api_time)}})
            }
            (Some(a), None) if a.exit.is_some() => terminated(a, &self.runtime).unwrap_or_default(),
            _ => json!({"waiting": {"reason": "ContainerCreating"}}),
        };
        // The run before the one the state shows (when waiting to restart: the last one).
        let previous = match (&self.waiting, latest) {
            (Some(_), Some(a)) if a.exit.is_some() => Some(a),
            _ => self.attempts.iter().rev().nth(1),
        };
        let restarts = match (&self.waiting, latest) {
            (Some(_), Some(a)) if a.exit.is_some() => self.attempts.len(),
            _ => self.attempts.len().saturating_sub(1),
        };
        let mut status = json!({
            "name": self.name,
            "image": self.image,
            "imageID": self.image_id.clone().unwrap_or_default(),
            "state": state,
            "lastState": previous
                .and_then(|a| terminated(a, &self.runtime))
                .unwrap_or_else(|| json!({})),
            "ready": self.ready,
            "restartCount": restarts,
            "started": self.started,
        });
        if let Some(a) = latest {
            status["containerID"] = format!("{}://{}", self.runtime, a.id).into();
        }
        status
    }
}

/// The pod's phase (upstream's rules).
pub fn phase(pod: &Pod, init: &[ContainerView], apps: &[ContainerView]) -> &'static str {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    if init.iter().any(|c| !c.succeeded()) {
        let failed_for_good =
            policy == "Never" && init.iter().any(|c| c.exited() && !c.succeeded());
        return if failed_for_good { "Failed" } else { "Pending" };
    }
    if apps.iter().any(|c| c.attempts.is_empty()) {
        return "Pending";
    }
    if apps.iter().any(ContainerView::running) || policy == "Always" {
        return "Running";
    }
    // Every container has ended and none restarts unless OnFailure says so.
    if apps.iter().all(ContainerView::succeeded) {
        "Succeeded"
    } else if policy == "Never" {
        "Failed"
    } else {
        "Running"
    }
}

/// The condition types the node writes; any other a pod has (a readiness gate's, the
/// scheduler's, DisruptionTarget) belongs to someone else and is kept as it is.
const NODE_CONDITIONS: &[&str] = &[
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
];

/// Why the pod's readiness gates hold it back, if they do: upstream's message for the
/// first gate whose condition is missing or not True.
fn readiness_gates_pending(pod: &Pod) -> Option<String> {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.readiness_gates.iter().flatten())
        .find_map(|gate| {
            let kind = &gate.condition_type;
            match conditions.iter().find(|c| &c.type_ == kind) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate {kind:?} does not exist."
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate {kind:?} is not \"True\", but {}",
                    c.status
                )),
                Some(_) => None,
            }
        })
}

fn condition(pod: &Pod, type_: &str, status: bool, reason: Option<&str>) -> Value {
    let status = if status { "True" } else { "False" };
    let old = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_));
    let since = match old {
        Some(c) if c.status == status => c
            .last_transition_time
            .as_ref()
            .map(|t| json!(t))
            .unwrap_or_else(|| json!(skiff_client::objects::now())),
        _ => json!(skiff_client::objects::now()),
    };
    let mut c = json!({"type": type_, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
    if let Some(r) = reason {
        c["reason"] = r.into();
    }
    c
}

/// Why the node failed a pod whatever its containers did (its active deadline passed).
pub struct Failure {
    pub reason: &'static str,
    pub message: &'static str,
}

/// The whole `status` to write.
pub fn pod_status(
    pod: &Pod,
    init: &[ContainerView],
    apps: &[ContainerView],
    pod_ip: Option<&str>,
    host_ip: &str,
    start_time: &str,
    failure: Option<&Failure>,
) -> Value {
    let phase = match failure {
        Some(_) => "Failed",
        None => phase(pod, init, apps),
    };
    let initialized = init.iter().all(ContainerView::succeeded);
    let all_ready = !apps.is_empty() && apps.iter().all(|c| c.ready);
    let containers_ready = all_ready && phase == "Running";
    let gates = readiness_gates_pending(pod);
    let ready = containers_ready && gates.is_none();
    let completed = phase == "Succeeded" || phase == "Failed";
    let not_ready_reason = |ready: bool| {
        (!ready).then_some(if completed {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        })
    };
    // Upstream's message on both conditions while containers hold the pod back.
    let unready: Vec<&str> = apps
        .iter()
        .filter(|c| !c.ready)
        .map(|c| c.name.as_str())
        .collect();
    let unready_message = (!completed && !unready.is_empty())
        .then(|| format!("containers with unready status: [{}]", unready.join(" ")));
    let mut ready_condition = condition(pod, "Ready", ready, not_ready_reason(ready));
    let mut containers_ready_condition = condition(
        pod,
        "ContainersReady",
        containers_ready,
        not_ready_reason(containers_ready),
    );
    if let Some(message) = &unready_message {
        ready_condition["message"] = message.clone().into();
        containers_ready_condition["message"] = message.clone().into();
    }
    if containers_ready && let Some(message) = gates {
        ready_condition["reason"] = "ReadinessGatesNotReady".into();
        ready_condition["message"] = message.into();
    }
    let scheduled = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"))
        .map(|c| json!(c))
        .unwrap_or_else(|| condition(pod, "PodScheduled", true, None));
    let mut conditions = vec![
        condition(pod, "PodReadyToStartContainers", pod_ip.is_some(), None),
        condition(
            pod,
            "Initialized",
            initialized,
            (!initialized).then_some("ContainersNotInitialized"),
        ),
        ready_condition,
        containers_ready_condition,
        scheduled,
    ];
    // Conditions others own stay, as they were.
    for c in pod
        .status
        .iter()
        .flat_map(|s| s.conditions.iter().flatten())
        .filter(|c| c.type_ != "PodScheduled" && !NODE_CONDITIONS.contains(&c.type_.as_str()))
    {
        conditions.push(json!(c));
    }
    let mut status = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "startTime": start_time,
        "containerStatuses": apps.iter().map(ContainerView::status).collect::<Vec<_>>(),
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = init
            .iter()
            .map(ContainerView::status)
            .collect::<Vec<_>>()
            .into();
    }
    if let Some(ip) = pod_ip {
        status["podIP"] = ip.into();
        status["podIPs"] = json!([{"ip": ip}]);
    }
    if let Some(f) = failure {
        status["reason"] = f.reason.into();
        status["message"] = f.message.into();
    }
    status
}

#[cfg(test)]
mod tests {
    use super::api_time;

    #[test]
    fn recorded_times_reach_the_api_in_whole_seconds() {
        assert_eq!(
            api_time("2026-11-30T04:11:48.237283073Z"),
            "2026-11-30T04:11:48Z"
        );
        assert_eq!(api_time("2026-11-30T04:11:48Z\n"), "2026-11-30T04:11:48Z");
        assert_eq!(api_time("not a time"), "not a time");
    }
}
