//! ValidatingAdmissionPolicyBindings: where a policy applies, with which parameters and
//! actions.

use serde_json::Value;
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("admissionregistration.k8s.io",
    "v1", "ValidatingAdmissionPolicyBinding", "validatingadmissionpolicybindings",
    "validatingadmissionpolicybinding", namespaced: false, short: [],
    categories: ["api-extensions"], sub: []);

pub struct ValidatingAdmissionPolicyBindings;

impl Kind for ValidatingAdmissionPolicyBindings {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if field_str(obj, &["spec", "policyName"]).is_none_or(str::is_empty) {
            causes.push(Cause::required("spec.policyName"));
        }
        let actions = arr(obj, &["spec", "validationActions"]);
        if actions.is_empty() {
            causes.push(Cause::required_because(
                "spec.validationActions",
                "at least one validation action is required",
            ));
        }
        for (i, a) in actions.iter().enumerate() {
            if !matches!(a.as_str(), Some("Deny" | "Warn" | "Audit")) {
                causes.push(Cause::not_supported(
                    format!("spec.validationActions[{i}]"),
                    a,
                    &["Audit", "Deny", "Warn"],
                ));
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "ValidatingAdmissionPolicyBinding",
            "skiff evaluates no admission policies yet",
        )
    }
}

impl Printer for ValidatingAdmissionPolicyBindings {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "PolicyName",
                "string",
                0,
                "PolicyName references a ValidatingAdmissionPolicy name which the ValidatingAdmissionPolicyBinding binds to.",
            ),
            Column::new(
                "ParamRef",
                "string",
                0,
                "ParamRef specifies the parameter resource used to configure the admission control policy.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let param_ref = match field(obj, &["spec", "paramRef"]) {
            Some(p) => match (field_str(p, &["namespace"]), field_str(p, &["name"])) {
                (Some(ns), Some(name)) => format!("{ns}/{name}"),
                (None, Some(name)) => format!("*/{name}"),
                _ => "*/*".to_string(),
            },
            None => "<unset>".into(),
        };
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["spec", "policyName"])),
            param_ref.into(),
            age_cell(obj, now),
        ]
    }
}
