//! `batch/v1`: Jobs (pods run to completion) and CronJobs (Jobs on a schedule). Stored,
//! defaulted and validated as upstream's; no controller runs them yet (a later issue), and
//! every write of one says so in a Warning.

use serde_json::{Map, Value, json};
use skiff_api::Cause;
use skiff_api::object::field;

use crate::registry::core::pod::validation::validate_pod_spec;
use crate::registry::entry_default;

pub mod cronjob;
pub mod job;

/// Upstream's rules for a Job's spec (also a CronJob's job template's): counts are not
/// negative, pods restart `OnFailure` or `Never`, the template is a valid pod spec.
pub(crate) fn validate_job_spec(spec: Option<&Value>, at: &str, causes: &mut Vec<Cause>) {
    let number = |k: &str| spec.and_then(|s| s.get(k)).and_then(Value::as_i64);
    for key in [
        "parallelism",
        "completions",
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
    ] {
        if let Some(n) = number(key)
            && n < 0
        {
            causes.push(Cause::invalid(
                format!("{at}.{key}"),
                &n.into(),
                "must be greater than or equal to 0",
            ));
        }
    }
    if let Some(mode) = spec.and_then(|s| s.get("completionMode"))
        && !matches!(mode.as_str(), Some("NonIndexed" | "Indexed"))
    {
        causes.push(Cause::not_supported(
            format!("{at}.completionMode"),
            mode,
            &["NonIndexed", "Indexed"],
        ));
    }
    let template = spec.and_then(|s| s.get("template"));
    let pod_spec = template.and_then(|t| t.get("spec"));
    let policy = pod_spec
        .and_then(|s| s.get("restartPolicy"))
        .cloned()
        .unwrap_or(json!(""));
    if !matches!(policy.as_str(), Some("OnFailure" | "Never")) {
        causes.push(Cause::not_supported(
            format!("{at}.template.spec.restartPolicy"),
            &policy,
            &["OnFailure", "Never"],
        ));
    }
    causes.extend(skiff_api::validation::validate_labels(
        template.and_then(|t| field(t, &["metadata", "labels"])),
        &format!("{at}.template.metadata.labels"),
    ));
    validate_pod_spec(pod_spec, &format!("{at}.template.spec"), causes);
}

/// The defaults upstream gives a Job's spec (`SetDefaults_Job`).
pub(crate) fn default_job_spec(spec: &mut Map<String, Value>) {
    if !spec.contains_key("completions") && !spec.contains_key("parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    entry_default(spec, "parallelism", json!(1));
    let limit = if spec.contains_key("backoffLimitPerIndex") {
        json!(i32::MAX)
    } else {
        json!(6)
    };
    entry_default(spec, "backoffLimit", limit);
    entry_default(spec, "completionMode", json!("NonIndexed"));
    entry_default(spec, "suspend", json!(false));
    let replacement = if spec.contains_key("podFailurePolicy") {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    entry_default(spec, "podReplacementPolicy", json!(replacement));
}
