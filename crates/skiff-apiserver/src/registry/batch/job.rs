//! Jobs: pods run until enough of them succeed.

use serde_json::{Value, json};
use skiff_api::object::{age, field, field_str, meta_str};
use skiff_api::selectors::Selector;
use skiff_api::table::{
    AGE, Column, NAME, Printer, Timed, age_cell, arr, format_label_selector, int, none_if_empty,
    text, time_of,
};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::{default_job_spec, validate_job_spec};
use crate::registry::apps::{CONTAINERS, IMAGES, template_containers};
use crate::registry::core::pod::defaults as pod_defaults;
use crate::registry::{Kind, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("batch", "v1", "Job", "jobs",
    "job", namespaced: true, short: [], categories: ["all"], sub: [Status]);

/// The labels a generated selector puts on the template: the current and the legacy name.
const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
const CONTROLLER_UID_LABELS: [&str; 2] = ["batch.kubernetes.io/controller-uid", "controller-uid"];

pub struct Jobs;

impl Kind for Jobs {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            default_job_spec(spec);
        }
        pod_defaults::pod_template(obj);
    }

    /// Status empty; unless the selector is manual, one generated from the Job's uid, with
    /// the labels it selects put on the template (upstream's `generateSelector`); the Job
    /// takes its template's labels when it has none of its own.
    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
        let manual = field(obj, &["spec", "manualSelector"]).and_then(Value::as_bool) == Some(true);
        if !manual {
            generate_selector(obj);
        }
        let has_labels = field(obj, &["metadata", "labels"])
            .and_then(Value::as_object)
            .is_some_and(|l| !l.is_empty());
        if let Some(labels) = field(obj, &["spec", "template", "metadata", "labels"]).cloned()
            && !has_labels
            && labels.as_object().is_some_and(|l| !l.is_empty())
        {
            obj["metadata"]["labels"] = labels;
        }
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let spec = field(obj, &["spec"]);
        validate_job_spec(spec, "spec", &mut causes);
        match field(obj, &["spec", "selector"]) {
            None => causes.push(Cause::required("spec.selector")),
            Some(sel) => match Selector::from_label_selector(sel) {
                Ok(s) => {
                    let labels = field(obj, &["spec", "template", "metadata", "labels"]);
                    if !s.matches_labels(labels) {
                        causes.push(Cause::invalid(
                            "spec.template.metadata.labels",
                            labels.unwrap_or(&Value::Null),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
                Err(e) => causes.push(Cause::invalid("spec.selector", sel, &e.to_string())),
            },
        }
        if let Some(old) = old {
            let suspended = field(old, &["spec", "suspend"]).and_then(Value::as_bool) == Some(true);
            let mut immutable = vec!["selector", "completions"];
            // A suspended Job's template may still change (upstream: before it starts).
            if !suspended {
                immutable.push("template");
            }
            for key in immutable {
                let now = field(obj, &["spec", key]);
                if now != field(old, &["spec", key]) {
                    causes.push(Cause::invalid(
                        format!("spec.{key}"),
                        now.unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
        causes
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &["status.successful"]
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "Job",
            "skiff runs no Job controller yet: no pods will be created for it",
        )
    }
}

/// Upstream's `generateSelector`. A spec not shaped as one is left for validation to refuse.
fn generate_selector(obj: &mut Value) {
    let shaped = |v: Option<&Value>| v.is_none_or(|v| v.is_object() || v.is_null());
    let ok = shaped(obj.get("spec"))
        && shaped(field(obj, &["spec", "template"]))
        && shaped(field(obj, &["spec", "template", "metadata"]))
        && shaped(field(obj, &["spec", "selector"]));
    if !ok {
        return;
    }
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let uid = meta_str(obj, "uid").unwrap_or_default().to_string();
    let template = &mut obj["spec"]["template"];
    if !template["metadata"]["labels"].is_object() {
        template["metadata"]["labels"] = json!({});
    }
    let labels = template["metadata"]["labels"]
        .as_object_mut()
        .expect("made an object above");
    for key in JOB_NAME_LABELS {
        labels.entry(key).or_insert_with(|| name.clone().into());
    }
    for key in CONTROLLER_UID_LABELS {
        labels.entry(key).or_insert_with(|| uid.clone().into());
    }
    let selector = &mut obj["spec"]["selector"];
    if !selector["matchLabels"].is_object() {
        selector["matchLabels"] = json!({});
    }
    selector["matchLabels"]
        .as_object_mut()
        .expect("made an object above")
        .entry(CONTROLLER_UID_LABELS[0])
        .or_insert_with(|| uid.into());
}

/// STATUS as upstream's printer names it from the conditions.
fn status(obj: &Value) -> &'static str {
    let has = |ty: &str| {
        arr(obj, &["status", "conditions"]).iter().any(|c| {
            field_str(c, &["type"]) == Some(ty) && field_str(c, &["status"]) == Some("True")
        })
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if meta_str(obj, "deletionTimestamp").is_some() {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

/// COMPLETIONS: succeeded of wanted (`2/3`, or `0/1 of 4` for a work queue).
fn completions(obj: &Value) -> String {
    let succeeded = int(obj, &["status", "succeeded"]);
    match field(obj, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(n) => format!("{succeeded}/{n}"),
        None => match int(obj, &["spec", "parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

impl Printer for Jobs {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Status", "string", 0, "Status of the job."),
            Column::new(
                "Completions",
                "string",
                0,
                "The number of pods which reached phase Succeeded.",
            ),
            Column::new(
                "Duration",
                "string",
                0,
                "Time required to complete the job.",
            ),
            AGE,
            CONTAINERS,
            IMAGES,
            Column::new(
                "Selector",
                "string",
                1,
                "A label query over pods that should match the pod count.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let start = field_str(obj, &["status", "startTime"]);
        let duration = match (
            time_of(start),
            time_of(field_str(obj, &["status", "completionTime"])),
        ) {
            (None, _) => String::new(),
            (Some(_), None) => age(start, now),
            (Some(s), Some(c)) => skiff_api::object::human_duration((c - s).whole_seconds()),
        };
        let (containers, images) = template_containers(obj);
        vec![
            text(meta_str(obj, "name")),
            status(obj).into(),
            completions(obj).into(),
            duration.into(),
            age_cell(obj, now),
            containers.into(),
            images.into(),
            none_if_empty(format_label_selector(field(obj, &["spec", "selector"]))),
        ]
    }

    fn timed(&self, column: &str, obj: &Value) -> Option<Timed> {
        match column {
            "Age" => Some(Timed::Age(time_of(meta_str(obj, "creationTimestamp")))),
            // A running Job's duration grows until it completes.
            "Duration" if field_str(obj, &["status", "completionTime"]).is_none() => {
                let start = time_of(field_str(obj, &["status", "startTime"]))?;
                Some(Timed::Age(Some(start)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Value {
        json!({"metadata": {"name": "pi", "uid": "u-1"}, "spec": {"template": {"spec": {
            "restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}}}})
    }

    #[test]
    fn jobs_get_upstream_defaults_and_a_generated_selector() {
        let mut j = job();
        Jobs.default(&mut j);
        Jobs.prepare_for_create(&mut j);
        let spec = &j["spec"];
        assert_eq!(
            (spec["completions"].clone(), spec["parallelism"].clone()),
            (json!(1), json!(1))
        );
        assert_eq!(spec["backoffLimit"], 6);
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"]["matchLabels"]["batch.kubernetes.io/controller-uid"],
            "u-1"
        );
        assert_eq!(spec["template"]["metadata"]["labels"]["job-name"], "pi");
        assert_eq!(
            j["metadata"]["labels"]["batch.kubernetes.io/job-name"],
            "pi"
        );
        assert!(
            Jobs.validate(&j, None).is_empty(),
            "{:?}",
            Jobs.validate(&j, None)
        );
    }

    #[test]
    fn malformed_specs_are_refused_not_a_panic() {
        for spec in [json!("x"), json!({"template": 5}), json!({"selector": []})] {
            let mut j = json!({"metadata": {"name": "j", "uid": "u"}, "spec": spec});
            Jobs.default(&mut j);
            Jobs.prepare_for_create(&mut j);
            assert!(!Jobs.validate(&j, None).is_empty());
        }
    }

    #[test]
    fn pods_of_a_job_may_not_restart_always() {
        let mut j = job();
        j["spec"]["template"]["spec"]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        Jobs.default(&mut j);
        Jobs.prepare_for_create(&mut j);
        let causes = Jobs.validate(&j, None);
        assert_eq!(
            causes[0].message,
            "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
        );
    }

    #[test]
    fn rows_show_status_completions_and_duration() {
        let now = skiff_api::object::parse_time("2026-11-25T12:00:00Z").unwrap();
        let mut j = job();
        Jobs.default(&mut j);
        j["status"] = json!({"startTime": "2026-11-25T11:58:00Z", "succeeded": 0});
        let cells = Jobs.cells(&j, now);
        assert_eq!(cells[1..4], [json!("Running"), json!("0/1"), json!("2m")]);
        j["status"] = json!({"startTime": "2026-11-25T11:58:00Z", "completionTime": "2026-11-25T11:58:30Z",
            "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
        let cells = Jobs.cells(&j, now);
        assert_eq!(cells[1..4], [json!("Complete"), json!("1/1"), json!("30s")]);
    }
}
