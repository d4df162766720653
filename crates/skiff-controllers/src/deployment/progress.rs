//! Deployment status: the counts summed over its ReplicaSets, and the Available and
//! Progressing conditions with upstream's reasons and messages (which `kubectl rollout
//! status` reads).

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;

use super::util::{max_unavailable, replicas, rs_replicas, rs_status};

pub const PROGRESSING: &str = "Progressing";
pub const AVAILABLE: &str = "Available";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

pub fn condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
) -> DeploymentCondition {
    let now = skiff_client::objects::now();
    DeploymentCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message),
        last_update_time: Some(now.clone()),
        last_transition_time: Some(now),
    }
}

/// Sets a condition; an unchanged one (same status and reason) is left alone, and a
/// status that did not flip keeps its transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut c: DeploymentCondition) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if let Some(existing) = conditions.iter_mut().find(|e| e.type_ == c.type_) {
        if existing.status == c.status && existing.reason == c.reason {
            return;
        }
        if existing.status == c.status {
            c.last_transition_time = existing.last_transition_time.clone();
        }
        *existing = c;
    } else {
        conditions.push(c);
    }
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(cs) = status.conditions.as_mut() {
        cs.retain(|c| c.type_ != type_);
    }
}

/// The status the ReplicaSets add up to (conditions carried over, Available decided).
pub fn calculate(
    all: &[ReplicaSet],
    new_rs: Option<&ReplicaSet>,
    d: &Deployment,
) -> DeploymentStatus {
    let (mut actual, mut ready, mut available) = (0, 0, 0);
    for rs in all {
        let (r, rd, a) = rs_status(rs);
        actual += r;
        ready += rd;
        available += a;
    }
    let total: i32 = all.iter().map(rs_replicas).sum();
    let old = d.status.clone().unwrap_or_default();
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual),
        updated_replicas: Some(new_rs.map_or(0, |rs| rs_status(rs).0)),
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: old.collision_count,
        conditions: old.conditions.clone(),
        terminating_replicas: None,
    };
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                AVAILABLE,
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
            ),
        );
    }
    status
}

/// Every replica updated, present and available, for the current generation.
pub fn complete(d: &Deployment, status: &DeploymentStatus) -> bool {
    let n = replicas(d);
    status.updated_replicas == Some(n)
        && status.replicas == Some(n)
        && status.available_replicas == Some(n)
        && status.observed_generation >= d.metadata.generation
}

/// Whether the rollout moved forward since the last status.
fn progressing(d: &Deployment, new: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let get = |v: Option<i32>| v.unwrap_or(0);
    let old_old = get(old.replicas) - get(old.updated_replicas);
    let new_old = get(new.replicas) - get(new.updated_replicas);
    get(new.updated_replicas) > get(old.updated_replicas)
        || new_old < old_old
        || get(new.ready_replicas) > get(old.ready_replicas)
        || get(new.available_replicas) > get(old.available_replicas)
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// Whether the rollout has not progressed for longer than its deadline.
pub fn timed_out(d: &Deployment, status: &DeploymentStatus) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(c) = condition(status, PROGRESSING) else {
        return false;
    };
    match c.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => c
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0.as_second() + i64::from(deadline) < Timestamp::now().as_second()),
    }
}

/// Decides Progressing for a status computed by `calculate`, as upstream's
/// `syncRolloutStatus`; returns how long until the deadline should be checked again.
pub fn update_progressing(
    d: &Deployment,
    new_rs: Option<&ReplicaSet>,
    status: &mut DeploymentStatus,
) -> Option<std::time::Duration> {
    if progress_deadline(d).is_none() {
        remove_condition(status, PROGRESSING);
        return None;
    }
    let current = condition(status, PROGRESSING).cloned();
    if current.as_ref().and_then(|c| c.reason.as_deref()) == Some(TIMED_OUT) {
        return None;
    }
    let rs_name = new_rs.map(|rs| rs.name_any()).unwrap_or_default();
    if complete(d, status) {
        set_condition(
            status,
            new_condition(
                PROGRESSING,
                "True",
                NEW_RS_AVAILABLE,
                format!("ReplicaSet \"{rs_name}\" has successfully progressed."),
            ),
        );
        return None;
    }
    if progressing(d, status) {
        let message = if new_rs.is_some() {
            format!("ReplicaSet \"{rs_name}\" is progressing.")
        } else {
            "Deployment is progressing.".into()
        };
        let mut c = new_condition(PROGRESSING, "True", RS_UPDATED, message);
        if let Some(cur) = current.as_ref().filter(|c| c.status == "True") {
            c.last_transition_time = cur.last_transition_time.clone();
        }
        // Progress refreshes the deadline even when the reason is unchanged.
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        conditions.retain(|x| x.type_ != PROGRESSING);
        conditions.push(c);
    } else if timed_out(d, status) {
        set_condition(
            status,
            new_condition(
                PROGRESSING,
                "False",
                TIMED_OUT,
                format!("ReplicaSet \"{rs_name}\" has timed out progressing."),
            ),
        );
        return None;
    }
    // Look again when the deadline would pass without progress.
    let deadline = i64::from(progress_deadline(d)?);
    let since = condition(status, PROGRESSING)?
        .last_update_time
        .as_ref()?
        .0
        .as_second();
    let left = (since + deadline - Timestamp::now().as_second()).max(0) as u64;
    Some(std::time::Duration::from_secs(left + 1))
}
