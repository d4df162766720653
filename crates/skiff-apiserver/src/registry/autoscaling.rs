//! `autoscaling/v2`: HorizontalPodAutoscalers, a scale target's replicas following its
//! metrics. Stored, defaulted and validated as upstream's; no metrics pipeline or
//! autoscaler acts on them yet (a later issue), and every write says so.
//!
//! `autoscaling/v1` serves the same objects (stored as v2, converted both ways by
//! `skiff_api::conversion::hpa`): its rules are v2's, applied to the converted object.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, int, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, entry_default, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("autoscaling", "v2",
    "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
    namespaced: true, short: ["hpa"], categories: ["all"], sub: [Status]);

/// The same objects as `autoscaling/v1` shows them.
pub static RESOURCE_V1: ResourceType = skiff_api::resource_type!("autoscaling", "v1",
    "HorizontalPodAutoscaler", "horizontalpodautoscalers", "horizontalpodautoscaler",
    namespaced: true, short: ["hpa"], categories: ["all"], sub: [Status]);

pub struct HorizontalPodAutoscalers;

pub struct HorizontalPodAutoscalersV1;

impl Kind for HorizontalPodAutoscalersV1 {
    fn resource(&self) -> &ResourceType {
        &RESOURCE_V1
    }

    /// Upstream's v1 `SetDefaults_HorizontalPodAutoscaler`: one replica at least.
    fn default(&self, obj: &mut Value) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            entry_default(spec, "minReplicas", json!(1));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        HorizontalPodAutoscalers.prepare_for_create(obj);
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(u) = field(obj, &["spec", "targetCPUUtilizationPercentage"])
            .and_then(Value::as_i64)
            .filter(|u| *u < 1)
        {
            causes.push(Cause::invalid(
                "spec.targetCPUUtilizationPercentage",
                &u.into(),
                "must be greater than or equal to 1",
            ));
        }
        let v2 = skiff_api::conversion::hpa::to_v2(obj.clone());
        let old = old.map(|o| skiff_api::conversion::hpa::to_v2(o.clone()));
        causes.extend(HorizontalPodAutoscalers.validate(&v2, old.as_ref()));
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        HorizontalPodAutoscalers.warnings(obj)
    }
}

impl Printer for HorizontalPodAutoscalersV1 {
    fn columns(&self) -> Vec<Column> {
        HorizontalPodAutoscalers.columns()
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        HorizontalPodAutoscalers.cells(&skiff_api::conversion::hpa::to_v2(obj.clone()), now)
    }
}

impl Kind for HorizontalPodAutoscalers {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    /// Upstream's `SetDefaults_HorizontalPodAutoscaler`: one replica at least, CPU at 80 %
    /// when no metric is named, and a stated behavior's missing rules filled in.
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        entry_default(spec, "minReplicas", json!(1));
        let no_metrics = spec
            .get("metrics")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if no_metrics {
            spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu",
                    "target": {"type": "Utilization", "averageUtilization": 80}}}]),
            );
        }
        if let Some(behavior) = spec.get_mut("behavior").and_then(Value::as_object_mut) {
            let up = behavior.entry("scaleUp").or_insert_with(|| json!({}));
            if let Some(up) = up.as_object_mut() {
                entry_default(up, "stabilizationWindowSeconds", json!(0));
                entry_default(up, "selectPolicy", json!("Max"));
                entry_default(
                    up,
                    "policies",
                    json!([{"type": "Pods", "value": 4, "periodSeconds": 15},
                           {"type": "Percent", "value": 100, "periodSeconds": 15}]),
                );
            }
            let down = behavior.entry("scaleDown").or_insert_with(|| json!({}));
            if let Some(down) = down.as_object_mut() {
                entry_default(down, "stabilizationWindowSeconds", json!(300));
                entry_default(down, "selectPolicy", json!("Max"));
                entry_default(
                    down,
                    "policies",
                    json!([{"type": "Percent", "value": 100, "periodSeconds": 15}]),
                );
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({"currentReplicas": 0, "desiredReplicas": 0});
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        for key in ["kind", "name"] {
            if field_str(obj, &["spec", "scaleTargetRef", key]).is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("spec.scaleTargetRef.{key}")));
            }
        }
        let min = field(obj, &["spec", "minReplicas"]).and_then(Value::as_i64);
        let max = field(obj, &["spec", "maxReplicas"]).and_then(Value::as_i64);
        match max {
            None => causes.push(Cause::required("spec.maxReplicas")),
            Some(m) if m < 1 => causes.push(Cause::invalid(
                "spec.maxReplicas",
                &m.into(),
                "must be greater than or equal to 1",
            )),
            Some(m) if min.is_some_and(|min| min > m) => causes.push(Cause::invalid(
                "spec.maxReplicas",
                &m.into(),
                "must be greater than or equal to `minReplicas`",
            )),
            Some(_) => {}
        }
        if let Some(min) = min
            && min < 1
        {
            causes.push(Cause::invalid(
                "spec.minReplicas",
                &min.into(),
                "must be greater than or equal to 1",
            ));
        }
        let kinds = [
            "Object",
            "Pods",
            "Resource",
            "ContainerResource",
            "External",
        ];
        for (i, m) in arr(obj, &["spec", "metrics"]).iter().enumerate() {
            let ty = m.get("type").cloned().unwrap_or(Value::Null);
            if !ty.as_str().is_some_and(|t| kinds.contains(&t)) {
                causes.push(Cause::not_supported(
                    format!("spec.metrics[{i}].type"),
                    &ty,
                    &kinds,
                ));
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "HorizontalPodAutoscaler",
            "skiff has no metrics pipeline or autoscaler yet: replicas will not follow it",
        )
    }
}

/// One metric's `current/target` as kubectl shows it (`cpu: <unknown>/80%`).
fn target_cell(metric: &Value, current: Option<&Value>) -> String {
    let resource = |m: &Value, key: &str| -> String {
        let target = &m[key]["target"];
        let wanted = match target["type"].as_str() {
            Some("Utilization") => format!("{}%", target["averageUtilization"]),
            Some("AverageValue") => target["averageValue"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            _ => target["value"].as_str().unwrap_or_default().to_string(),
        };
        let now = current
            .and_then(|c| match target["type"].as_str() {
                Some("Utilization") => c[key]["current"]["averageUtilization"]
                    .as_i64()
                    .map(|u| format!("{u}%")),
                _ => c[key]["current"]["averageValue"]
                    .as_str()
                    .map(str::to_string),
            })
            .unwrap_or_else(|| "<unknown>".into());
        format!(
            "{}: {now}/{wanted}",
            m[key]["name"].as_str().unwrap_or_default()
        )
    };
    match metric["type"].as_str() {
        Some("Resource") => resource(metric, "resource"),
        Some("ContainerResource") => resource(metric, "containerResource"),
        Some(other) => format!("<unknown>/<{other}>"),
        None => "<unknown>".into(),
    }
}

impl Printer for HorizontalPodAutoscalers {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Reference",
                "string",
                0,
                "reference to scaled resource; horizontal pod autoscaler will learn the current resource consumption and will set the desired number of pods by using its Scale subresource.",
            ),
            Column::new(
                "Targets",
                "string",
                0,
                "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).",
            ),
            Column::new(
                "MinPods",
                "string",
                0,
                "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.",
            ),
            Column::new(
                "MaxPods",
                "integer",
                0,
                "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.",
            ),
            Column::new(
                "Replicas",
                "integer",
                0,
                "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let reference = format!(
            "{}/{}",
            field_str(obj, &["spec", "scaleTargetRef", "kind"]).unwrap_or_default(),
            field_str(obj, &["spec", "scaleTargetRef", "name"]).unwrap_or_default()
        );
        let currents = arr(obj, &["status", "currentMetrics"]);
        let targets: Vec<String> = arr(obj, &["spec", "metrics"])
            .iter()
            .enumerate()
            .map(|(i, m)| target_cell(m, currents.get(i)))
            .collect();
        let targets = match targets.len() {
            0 => "<none>".to_string(),
            1..=2 => targets.join(", "),
            n => format!("{} + {} more...", targets[..2].join(", "), n - 2),
        };
        let min = field(obj, &["spec", "minReplicas"])
            .and_then(Value::as_i64)
            .map_or("<unset>".to_string(), |m| m.to_string());
        vec![
            text(meta_str(obj, "name")),
            reference.into(),
            targets.into(),
            min.into(),
            int(obj, &["spec", "maxReplicas"]).into(),
            int(obj, &["status", "currentReplicas"]).into(),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn autoscalers_default_to_cpu_and_print_their_targets() {
        let mut hpa = json!({"metadata": {"name": "web"}, "spec": {"maxReplicas": 5,
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"}}});
        HorizontalPodAutoscalers.default(&mut hpa);
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert!(HorizontalPodAutoscalers.validate(&hpa, None).is_empty());
        let cells = HorizontalPodAutoscalers.cells(&hpa, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            cells[1..5],
            [
                json!("Deployment/web"),
                json!("cpu: <unknown>/80%"),
                json!("1"),
                json!(5)
            ]
        );
        let mut bad = json!({"spec": {"minReplicas": 3, "maxReplicas": 2,
            "scaleTargetRef": {"kind": "Deployment", "name": "web"}}});
        HorizontalPodAutoscalers.default(&mut bad);
        assert_eq!(
            HorizontalPodAutoscalers.validate(&bad, None)[0].message,
            "spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"
        );
    }
}
