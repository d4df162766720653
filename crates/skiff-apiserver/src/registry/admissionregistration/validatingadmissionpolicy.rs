//! ValidatingAdmissionPolicies: CEL rules requests must pass.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, entry_default, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("admissionregistration.k8s.io",
    "v1", "ValidatingAdmissionPolicy", "validatingadmissionpolicies",
    "validatingadmissionpolicy", namespaced: false, short: [], categories: ["api-extensions"],
    sub: [Status]);

pub struct ValidatingAdmissionPolicies;

impl Kind for ValidatingAdmissionPolicies {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        entry_default(spec, "failurePolicy", json!("Fail"));
        if let Some(m) = spec
            .get_mut("matchConstraints")
            .and_then(Value::as_object_mut)
        {
            entry_default(m, "matchPolicy", json!("Equivalent"));
            entry_default(m, "namespaceSelector", json!({}));
            entry_default(m, "objectSelector", json!({}));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if field(obj, &["spec", "matchConstraints"]).is_none() {
            causes.push(Cause::required("spec.matchConstraints"));
        }
        let rules = ["validations", "auditAnnotations"]
            .iter()
            .map(|k| arr(obj, &["spec", k]).len())
            .sum::<usize>();
        if rules == 0 {
            causes.push(Cause::required_because(
                "spec.validations",
                "validations or auditAnnotations must contain at least one item",
            ));
        }
        for (i, v) in arr(obj, &["spec", "validations"]).iter().enumerate() {
            if field_str(v, &["expression"]).is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("spec.validations[{i}].expression")));
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "ValidatingAdmissionPolicy",
            "skiff evaluates no admission policies yet",
        )
    }
}

impl Printer for ValidatingAdmissionPolicies {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Validations",
                "integer",
                0,
                "Validations indicates the number of validation expressions",
            ),
            Column::new(
                "ParamKind",
                "string",
                0,
                "ParamKind specifies the kind of resources used to parameterize this policy",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let param_kind = match field(obj, &["spec", "paramKind"]) {
            Some(p) => format!(
                "{}/{}",
                field_str(p, &["apiVersion"]).unwrap_or_default(),
                field_str(p, &["kind"]).unwrap_or_default()
            ),
            None => "<unset>".into(),
        };
        vec![
            text(meta_str(obj, "name")),
            arr(obj, &["spec", "validations"]).len().into(),
            param_kind.into(),
            age_cell(obj, now),
        ]
    }
}
