//! LimitRanges: per-container and per-pod defaults and bounds in a namespace, defaulted and
//! validated as upstream's. New pods get them through the LimitRanger admission
//! (`core/pod/limit_ranger.rs`).

use serde_json::{Map, Value, json};
use skiff_api::quantity::millis;
use skiff_api::table::{Printer, arr};
use skiff_api::{Cause, ResourceType};

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "LimitRange",
    "limitranges", "limitrange", namespaced: true, short: ["limits"], categories: [], sub: []);

pub struct LimitRanges;

/// The bounds of one item, in the order upstream compares them (smallest first).
const ORDER: [&str; 4] = ["min", "defaultRequest", "default", "max"];

impl Kind for LimitRanges {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    /// Upstream's `SetDefaults_LimitRangeItem`: for containers, a default limit is the
    /// max, a default request the default limit, else the min.
    fn default(&self, obj: &mut Value) {
        let Some(items) = obj["spec"]["limits"].as_array_mut() else {
            return;
        };
        for item in items.iter_mut().filter(|i| i["type"] == "Container") {
            let section = |item: &Value, key: &str| -> Map<String, Value> {
                item[key].as_object().cloned().unwrap_or_default()
            };
            let (max, min) = (section(item, "max"), section(item, "min"));
            let mut default = section(item, "default");
            for (k, v) in &max {
                default.entry(k.clone()).or_insert_with(|| v.clone());
            }
            let mut request = section(item, "defaultRequest");
            for (k, v) in default.iter().chain(&min) {
                request.entry(k.clone()).or_insert_with(|| v.clone());
            }
            if !default.is_empty() {
                item["default"] = default.into();
            }
            if !request.is_empty() {
                item["defaultRequest"] = request.into();
            }
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let types = ["Pod", "Container", "PersistentVolumeClaim"];
        for (i, item) in arr(obj, &["spec", "limits"]).iter().enumerate() {
            let at = format!("spec.limits[{i}]");
            let ty = item.get("type").cloned().unwrap_or(Value::Null);
            if !ty.as_str().is_some_and(|t| types.contains(&t)) {
                causes.push(Cause::not_supported(format!("{at}.type"), &ty, &types));
            }
            if ty == "Pod" {
                for key in ["default", "defaultRequest"] {
                    if item
                        .get(key)
                        .is_some_and(|d| d.as_object().is_some_and(|m| !m.is_empty()))
                    {
                        causes.push(Cause::forbidden(
                            format!("{at}.{key}"),
                            "may not be specified when `type` is 'Pod'",
                        ));
                    }
                }
            }
            validate_bounds(item, &at, &mut causes);
        }
        causes
    }
}

/// Each resource's bounds in order: min ≤ defaultRequest ≤ default ≤ max, as upstream words
/// each pair that is out of order; quantities must parse.
fn validate_bounds(item: &Value, at: &str, causes: &mut Vec<Cause>) {
    let mut resources: Vec<&String> = ORDER
        .iter()
        .filter_map(|k| item[*k].as_object())
        .flat_map(|m| m.keys())
        .collect();
    resources.sort();
    resources.dedup();
    for resource in resources {
        let value = |key: &str| -> Option<(i64, String)> {
            let v = item[key].get(resource.as_str())?;
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
            millis(&text).map(|m| (m, text))
        };
        for key in ORDER {
            if let Some(v) = item[key].get(resource.as_str())
                && v.as_str().and_then(millis).is_none()
            {
                causes.push(Cause::invalid(
                    format!("{at}.{key}[{resource}]"),
                    v,
                    "must be a quantity",
                ));
            }
        }
        let pairs = [
            ("min", "max", "min value {a} is greater than max value {b}"),
            (
                "defaultRequest",
                "default",
                "default request value {a} is greater than default limit value {b}",
            ),
            (
                "default",
                "max",
                "default value {a} is greater than max value {b}",
            ),
            (
                "defaultRequest",
                "max",
                "default request value {a} is greater than max value {b}",
            ),
            (
                "min",
                "defaultRequest",
                "min value {a} is greater than default request value {b}",
            ),
        ];
        for (low, high, words) in pairs {
            if let (Some((a, a_text)), Some((b, b_text))) = (value(low), value(high))
                && a > b
            {
                causes.push(Cause::invalid(
                    format!("{at}.{low}[{resource}]"),
                    &json!(a_text),
                    &words.replace("{a}", &a_text).replace("{b}", &b_text),
                ));
            }
        }
    }
}

/// Upstream prints limit ranges with the default columns (name, creation time).
impl Printer for LimitRanges {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_items_default_from_their_bounds() {
        let mut lr = json!({"spec": {"limits": [
            {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}},
            {"type": "Pod", "max": {"cpu": "4"}}]}});
        LimitRanges.default(&mut lr);
        let c = &lr["spec"]["limits"][0];
        assert_eq!(c["default"], json!({"cpu": "2"}));
        assert_eq!(c["defaultRequest"], json!({"cpu": "2", "memory": "64Mi"}));
        assert!(lr["spec"]["limits"][1].get("default").is_none());
        assert!(LimitRanges.validate(&lr, None).is_empty());
    }

    #[test]
    fn bounds_out_of_order_are_refused() {
        let lr = json!({"spec": {"limits": [
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}, "default": {"memory": "lots"}},
            {"type": "Pod", "default": {"cpu": "1"}}]}});
        let messages: Vec<String> = LimitRanges
            .validate(&lr, None)
            .into_iter()
            .map(|c| c.message)
            .collect();
        assert_eq!(
            messages,
            [
                "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1",
                "spec.limits[0].default[memory]: Invalid value: \"lots\": must be a quantity",
                "spec.limits[1].default: Forbidden: may not be specified when `type` is 'Pod'",
            ]
        );
    }
}
