//! `policy/v1`: PodDisruptionBudgets, how many of a set of pods voluntary disruptions (a
//! drain's evictions) must leave running. Stored and validated as upstream's; their status
//! and the eviction API come with the disruption controller (a later part of issue 15).

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::selectors::Selector;
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, int, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("policy", "v1",
    "PodDisruptionBudget", "poddisruptionbudgets", "poddisruptionbudget", namespaced: true,
    short: ["pdb"], categories: [], sub: [Status]);

pub struct PodDisruptionBudgets;

impl Kind for PodDisruptionBudgets {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"currentHealthy": 0, "desiredHealthy": 0,
            "disruptionsAllowed": 0, "expectedPods": 0});
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let (min, max) = (
            field(obj, &["spec", "minAvailable"]),
            field(obj, &["spec", "maxUnavailable"]),
        );
        if min.is_some() && max.is_some() {
            causes.push(Cause::invalid(
                "spec",
                field(obj, &["spec"]).unwrap_or(&Value::Null),
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        for (key, value) in [("minAvailable", min), ("maxUnavailable", max)] {
            if let Some(v) = value {
                validate_int_or_percent(v, &format!("spec.{key}"), &mut causes);
            }
        }
        if let Some(sel) = field(obj, &["spec", "selector"])
            && let Err(e) = Selector::from_label_selector(sel)
        {
            causes.push(Cause::invalid("spec.selector", sel, &e.to_string()));
        }
        if let Some(policy) = field(obj, &["spec", "unhealthyPodEvictionPolicy"])
            && !matches!(policy.as_str(), Some("IfHealthyBudget" | "AlwaysAllow"))
        {
            causes.push(Cause::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                policy,
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
        causes
    }
}

/// A count (not negative) or a percentage (0–100 %).
fn validate_int_or_percent(v: &Value, at: &str, causes: &mut Vec<Cause>) {
    match v {
        Value::Number(n) if n.as_i64().is_some_and(|n| n < 0) => {
            causes.push(Cause::invalid(at, v, "must be greater than or equal to 0"));
        }
        Value::Number(_) => {}
        Value::String(s) => match s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) {
            Some(p) if (0..=100).contains(&p) => {}
            Some(_) => causes.push(Cause::invalid(at, v, "must not be greater than 100%")),
            None => causes.push(Cause::invalid(
                at,
                v,
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
        },
        _ => causes.push(Cause::invalid(at, v, "must be an integer or a percentage")),
    }
}

impl Printer for PodDisruptionBudgets {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Min Available",
                "string",
                0,
                "The minimum number of pods that must be available, either as a number or a percentage.",
            ),
            Column::new(
                "Max Unavailable",
                "string",
                0,
                "The maximum number of pods that may be unavailable, either as a number or a percentage.",
            ),
            Column::new(
                "Allowed Disruptions",
                "integer",
                0,
                "Calculated number of pod disruptions that are currently allowed.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let shown = |key: &str| match field(obj, &["spec", key]) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "N/A".to_string(),
        };
        vec![
            text(meta_str(obj, "name")),
            shown("minAvailable").into(),
            shown("maxUnavailable").into(),
            int(obj, &["status", "disruptionsAllowed"]).into(),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_are_counts_or_percentages_not_both() {
        let both = json!({"spec": {"minAvailable": 1, "maxUnavailable": "50%"}});
        assert_eq!(
            PodDisruptionBudgets.validate(&both, None)[0].message,
            "spec: Invalid value: {\"maxUnavailable\":\"50%\",\"minAvailable\":1}: minAvailable and maxUnavailable cannot be both set"
        );
        let bad = json!({"spec": {"minAvailable": "150%"}});
        assert_eq!(
            PodDisruptionBudgets.validate(&bad, None)[0].message,
            "spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%"
        );
        let ok = json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2}});
        assert!(PodDisruptionBudgets.validate(&ok, None).is_empty());
        let cells = PodDisruptionBudgets.cells(&ok, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(cells[1..4], [json!("2"), json!("N/A"), json!(0)]);
    }
}
