//! `apiregistration.k8s.io/v1`: APIServices, which server answers each group version. Every
//! group version this server serves has a Local one (made at start, `bootstrap.rs`, as
//! upstream's autoregistration does); one naming a Service is stored and validated, but
//! proxying to aggregated API servers comes later (API aggregation), and writing one says so.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::validation::NameRule;
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("apiregistration.k8s.io", "v1",
    "APIService", "apiservices", "apiservice", namespaced: false, short: [],
    categories: ["api-extensions"], sub: [Status]);

/// Upstream's priorities for its built-in group versions (kube-aggregator's
/// `apiVersionPriorities`): (group, version, group priority minimum, version priority).
const PRIORITIES: &[(&str, &str, i64, i64)] = &[
    ("", "v1", 18000, 1),
    ("apps", "v1", 17800, 15),
    ("events.k8s.io", "v1", 17750, 15),
    ("authentication.k8s.io", "v1", 17700, 15),
    ("authorization.k8s.io", "v1", 17600, 15),
    ("autoscaling", "v1", 17500, 15),
    ("autoscaling", "v2", 17500, 30),
    ("batch", "v1", 17400, 15),
    ("certificates.k8s.io", "v1", 17300, 15),
    ("networking.k8s.io", "v1", 17200, 15),
    ("policy", "v1", 17100, 15),
    ("rbac.authorization.k8s.io", "v1", 17000, 15),
    ("storage.k8s.io", "v1", 16800, 15),
    ("apiextensions.k8s.io", "v1", 16700, 15),
    ("admissionregistration.k8s.io", "v1", 16700, 15),
    ("scheduling.k8s.io", "v1", 16600, 15),
    ("coordination.k8s.io", "v1", 16500, 15),
    ("node.k8s.io", "v1", 16300, 15),
    ("discovery.k8s.io", "v1", 16200, 15),
    ("flowcontrol.apiserver.k8s.io", "v1", 16100, 21),
    ("apiregistration.k8s.io", "v1", 18000, 15),
];

/// The Local APIService of a group version this server serves, as upstream makes it.
pub fn local(group: &str, version: &str) -> Value {
    let (group_min, version_priority) = PRIORITIES
        .iter()
        .find(|(g, v, ..)| *g == group && *v == version)
        .map_or((1000, 15), |(_, _, g, v)| (*g, *v));
    json!({
        "metadata": {"name": format!("{version}.{group}"),
                     "labels": {"kube-aggregator.kubernetes.io/automanaged": "onstart"}},
        "spec": {"group": group, "version": version,
                 "groupPriorityMinimum": group_min, "versionPriority": version_priority},
    })
}

/// The APIService of a group version a CustomResourceDefinition serves, as upstream's
/// CRD registration controller makes it.
pub fn for_custom(group: &str, version: &str) -> Value {
    json!({
        "metadata": {"name": format!("{version}.{group}"),
                     "labels": {"kube-aggregator.kubernetes.io/automanaged": "true"}},
        "spec": {"group": group, "version": version,
                 "groupPriorityMinimum": 1000, "versionPriority": 100},
    })
}

pub struct ApiServices;

impl Kind for ApiServices {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    /// `v1.` (the core group's) is a name: any path segment is, then it must be
    /// `version.group`.
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    /// A local APIService is available at once; one naming a Service would be once its
    /// server answered, which nothing checks yet.
    fn prepare_for_create(&self, obj: &mut Value) {
        let local = field(obj, &["spec", "service"]).is_none_or(Value::is_null);
        let condition = if local {
            json!({"type": "Available", "status": "True", "reason": "Local",
                   "message": "Local APIServices are always available",
                   "lastTransitionTime": skiff_api::object::now_rfc3339()})
        } else {
            json!({"type": "Available", "status": "False", "reason": "ServiceNotFound",
                   "message": "skiff does not proxy to aggregated API servers yet",
                   "lastTransitionTime": skiff_api::object::now_rfc3339()})
        };
        obj["status"] = json!({"conditions": [condition]});
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let group = field_str(obj, &["spec", "group"]).unwrap_or_default();
        let version = field_str(obj, &["spec", "version"]).unwrap_or_default();
        if version.is_empty() {
            causes.push(Cause::required("spec.version"));
        }
        let name = meta_str(obj, "name").unwrap_or_default();
        let required = format!("{version}.{group}");
        if !version.is_empty() && name != required {
            causes.push(Cause::invalid(
                "metadata.name",
                &name.into(),
                &format!("must be `spec.version+\".\"+spec.group`: {required:?}"),
            ));
        }
        for key in ["groupPriorityMinimum", "versionPriority"] {
            let p = field(obj, &["spec", key])
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let bound = if key == "versionPriority" {
                1000
            } else {
                20000
            };
            if p <= 0 || p >= bound {
                causes.push(Cause::invalid(
                    format!("spec.{key}"),
                    &p.into(),
                    &format!("must be positive and less than {bound}"),
                ));
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        let remote = field(obj, &["spec", "service"]).is_some_and(|s| !s.is_null());
        if !remote {
            return Vec::new();
        }
        stored_but(
            obj,
            "APIService",
            "skiff proxies to no aggregated API servers yet",
        )
    }
}

impl Printer for ApiServices {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Service",
                "string",
                0,
                "The reference to the service that hosts this API endpoint.",
            ),
            Column::new(
                "Available",
                "string",
                0,
                "Whether this service is available.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let service = match field(obj, &["spec", "service"]).filter(|s| !s.is_null()) {
            Some(s) => format!(
                "{}/{}",
                field_str(s, &["namespace"]).unwrap_or_default(),
                field_str(s, &["name"]).unwrap_or_default()
            ),
            None => "Local".into(),
        };
        let available = arr(obj, &["status", "conditions"])
            .iter()
            .find(|c| field_str(c, &["type"]) == Some("Available"))
            .map(|c| match field_str(c, &["status"]) {
                Some("True") => "True".to_string(),
                Some(s) => format!("{s} ({})", field_str(c, &["reason"]).unwrap_or_default()),
                None => "Unknown".to_string(),
            })
            .unwrap_or_else(|| "Unknown".into());
        vec![
            text(meta_str(obj, "name")),
            service.into(),
            available.into(),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_apiservices_are_named_and_ranked_as_upstreams() {
        let mut apps = local("apps", "v1");
        assert_eq!(apps["metadata"]["name"], "v1.apps");
        assert_eq!(apps["spec"]["groupPriorityMinimum"], 17800);
        ApiServices.prepare_for_create(&mut apps);
        assert!(ApiServices.validate(&apps, None).is_empty());
        let mut misnamed = local("apps", "v1");
        misnamed["metadata"]["name"] = json!("apps");
        assert_eq!(
            ApiServices.validate(&misnamed, None)[0].message,
            "metadata.name: Invalid value: \"apps\": must be `spec.version+\".\"+spec.group`: \"v1.apps\""
        );
        let cells = ApiServices.cells(&apps, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(cells[1..3], [json!("Local"), json!("True")]);
        assert_eq!(local("", "v1")["metadata"]["name"], "v1.");
    }
}
