//! CronJobs: Jobs made on a schedule.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{
    AGE, Column, NAME, Printer, Timed, age_cell, arr, format_label_selector, none_if_empty, text,
    time_of,
};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::validate_job_spec;
use crate::registry::apps::{CONTAINERS, IMAGES, container_cells};
use crate::registry::core::pod::defaults as pod_defaults;
use crate::registry::{Kind, set_default, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("batch", "v1", "CronJob",
    "cronjobs", "cronjob", namespaced: true, short: ["cj"], categories: ["all"], sub: [Status]);

/// A CronJob's name, with the 11 characters its Jobs' names add, must fit a label value.
const MAX_NAME: usize = 52;

pub struct CronJobs;

impl Kind for CronJobs {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        set_default(obj, "spec", "concurrencyPolicy", json!("Allow"));
        set_default(obj, "spec", "suspend", json!(false));
        set_default(obj, "spec", "successfulJobsHistoryLimit", json!(3));
        set_default(obj, "spec", "failedJobsHistoryLimit", json!(1));
        if let Some(template) = obj.get_mut("spec").and_then(|s| s.get_mut("jobTemplate")) {
            pod_defaults::pod_template(template);
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(name) = meta_str(obj, "name")
            && name.len() > MAX_NAME
        {
            causes.push(Cause::invalid(
                "metadata.name",
                &name.into(),
                &format!("must be no more than {MAX_NAME} characters"),
            ));
        }
        match field_str(obj, &["spec", "schedule"]).filter(|s| !s.is_empty()) {
            None => causes.push(Cause::required("spec.schedule")),
            Some(schedule) if schedule.contains("TZ") => causes.push(Cause::invalid(
                "spec.schedule",
                &schedule.into(),
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            )),
            Some(schedule) => {
                if let Err(e) = skiff_apimachinery::cron::parse(schedule) {
                    causes.push(Cause::invalid(
                        "spec.schedule",
                        &schedule.into(),
                        &e.to_string(),
                    ));
                }
            }
        }
        if let Some(zone) = field_str(obj, &["spec", "timeZone"])
            && !known_time_zone(zone)
        {
            causes.push(Cause::invalid(
                "spec.timeZone",
                &zone.into(),
                &format!("unknown time zone {zone}"),
            ));
        }
        if let Some(policy) = field(obj, &["spec", "concurrencyPolicy"])
            && !matches!(policy.as_str(), Some("Allow" | "Forbid" | "Replace"))
        {
            causes.push(Cause::not_supported(
                "spec.concurrencyPolicy",
                policy,
                &["Allow", "Forbid", "Replace"],
            ));
        }
        for key in [
            "startingDeadlineSeconds",
            "successfulJobsHistoryLimit",
            "failedJobsHistoryLimit",
        ] {
            if let Some(n) = field(obj, &["spec", key]).and_then(Value::as_i64)
                && n < 0
            {
                causes.push(Cause::invalid(
                    format!("spec.{key}"),
                    &n.into(),
                    "must be greater than or equal to 0",
                ));
            }
        }
        validate_job_spec(
            field(obj, &["spec", "jobTemplate", "spec"]),
            "spec.jobTemplate.spec",
            &mut causes,
        );
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "CronJob",
            "skiff runs no CronJob controller yet: no Jobs will be created on its schedule",
        )
    }
}

/// Whether the zone is in the machine's time zone database (upstream's `time.LoadLocation`
/// reads the same IANA names). `Local` is not a zone a schedule can be pinned to.
fn known_time_zone(zone: &str) -> bool {
    let sane = !zone.is_empty()
        && zone != "Local"
        && !zone.starts_with('/')
        && !zone.split('/').any(|p| p == ".." || p.is_empty());
    if !sane {
        return false;
    }
    let database = std::path::Path::new("/usr/share/zoneinfo");
    zone == "UTC" || !database.is_dir() || database.join(zone).is_file()
}

impl Printer for CronJobs {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("Schedule", "string", 0, "The schedule in Cron format."),
            Column::new(
                "Timezone",
                "string",
                0,
                "The time zone name for the given schedule.",
            ),
            Column::new(
                "Suspend",
                "boolean",
                0,
                "Whether subsequent executions are suspended.",
            ),
            Column::new(
                "Active",
                "integer",
                0,
                "A list of pointers to currently running jobs.",
            ),
            Column::new(
                "Last Schedule",
                "string",
                0,
                "Information when was the last time the job was successfully scheduled.",
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
        let suspend = match field(obj, &["spec", "suspend"]).and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let last = field_str(obj, &["status", "lastScheduleTime"])
            .map_or("<none>".to_string(), |t| {
                skiff_api::object::age(Some(t), now)
            });
        let (containers, images) = container_cells(field(
            obj,
            &["spec", "jobTemplate", "spec", "template", "spec"],
        ));
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["spec", "schedule"])),
            text(Some(
                field_str(obj, &["spec", "timeZone"]).unwrap_or("<none>"),
            )),
            suspend.into(),
            arr(obj, &["status", "active"]).len().into(),
            last.into(),
            age_cell(obj, now),
            containers.into(),
            images.into(),
            none_if_empty(format_label_selector(field(
                obj,
                &["spec", "jobTemplate", "spec", "selector"],
            ))),
        ]
    }

    fn timed(&self, column: &str, obj: &Value) -> Option<Timed> {
        match column {
            "Age" => Some(Timed::Age(time_of(meta_str(obj, "creationTimestamp")))),
            "Last Schedule" => {
                let at = time_of(field_str(obj, &["status", "lastScheduleTime"]))?;
                Some(Timed::Age(Some(at)))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cronjob(schedule: &str) -> Value {
        let mut c = json!({"metadata": {"name": "nightly"}, "spec": {"schedule": schedule,
            "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "c", "image": "busybox"}]}}}}}});
        CronJobs.default(&mut c);
        c
    }

    #[test]
    fn cronjobs_get_defaults_and_their_schedule_checked() {
        let c = cronjob("0 3 * * *");
        assert_eq!(c["spec"]["concurrencyPolicy"], "Allow");
        assert_eq!(c["spec"]["successfulJobsHistoryLimit"], 3);
        assert_eq!(
            c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );
        assert!(CronJobs.validate(&c, None).is_empty());
        let bad = CronJobs.validate(&cronjob("61 * * * *"), None);
        assert_eq!(
            bad[0].message,
            "spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"
        );
        let tz = CronJobs.validate(&cronjob("CRON_TZ=UTC 0 3 * * *"), None);
        assert!(tz[0].message.contains("use timeZone field instead"));
    }

    #[test]
    fn rows_show_schedule_suspend_and_last_run() {
        let now = skiff_api::object::parse_time("2026-11-25T12:00:00Z").unwrap();
        let mut c = cronjob("*/5 * * * *");
        c["status"] =
            json!({"lastScheduleTime": "2026-11-25T11:55:00Z", "active": [{"name": "x"}]});
        let cells = CronJobs.cells(&c, now);
        assert_eq!(
            cells[1..6],
            [
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("5m")
            ]
        );
    }
}
