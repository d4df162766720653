//! Field selectors (`fieldSelector=`): every kind supports `metadata.name` and
//! `metadata.namespace`, and each kind lists its own further fields (its module in the
//! server's registry, as upstream's field label conversion functions); anything else is
//! refused.

use serde_json::Value;

use crate::object::field;
use crate::selectors::Selector;
use crate::status::ApiError;

/// Every field a kind can be selected by: name, namespace and the kind's own (`extra`).
pub fn selectable_fields(extra: &'static [&'static str]) -> impl Iterator<Item = &'static str> {
    ["metadata.name", "metadata.namespace"]
        .into_iter()
        .chain(extra.iter().copied())
}

/// Refuses a selector naming a field the kind cannot be selected by (its `extra` fields
/// besides name and namespace), as upstream does (`field label not supported: spec.foo`).
pub fn check_field_selector(extra: &[&str], selector: &Selector) -> Result<(), ApiError> {
    for r in &selector.requirements {
        let known = matches!(r.key.as_str(), "metadata.name" | "metadata.namespace")
            || extra.contains(&r.key.as_str());
        if !known {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {}",
                r.key
            )));
        }
    }
    Ok(())
}

/// The value a field selector compares against: strings as they are, booleans and numbers
/// in their text form, missing fields as the empty string (upstream's convention, so that
/// `spec.nodeName=` finds unscheduled pods).
pub fn field_value(obj: &Value, key: &str) -> String {
    // Event's `source` field label means `source.component`.
    let path: Vec<&str> = match key {
        "source" => vec!["source", "component"],
        _ => key.split('.').collect(),
    };
    match field(obj, &path) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ if key == "spec.unschedulable" || key == "spec.hostNetwork" => "false".into(),
        _ if key == "status.replicas" => "0".into(),
        _ => String::new(),
    }
}

/// Whether an object passes a (checked) field selector.
pub fn matches_fields(selector: &Selector, obj: &Value) -> bool {
    if selector.is_empty() {
        return true;
    }
    let values: Vec<(String, String)> = selector
        .requirements
        .iter()
        .map(|r| (r.key.clone(), field_value(obj, &r.key)))
        .collect();
    selector.matches(|k| {
        values
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn describe_event_selectors_work() {
        let extra = [
            "involvedObject.name",
            "involvedObject.namespace",
            "involvedObject.uid",
            "source",
        ];
        let sel = Selector::parse_fields(
            "involvedObject.name=web,involvedObject.namespace=default,involvedObject.uid=u1,source=kubelet",
        )
        .unwrap();
        check_field_selector(&extra, &sel).unwrap();
        let ev = json!({"involvedObject": {"name": "web", "namespace": "default", "uid": "u1"}, "source": {"component": "kubelet"}});
        assert!(matches_fields(&sel, &ev));
        let other = json!({"involvedObject": {"name": "web", "namespace": "default", "uid": "u2"}});
        assert!(!matches_fields(&sel, &other));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let sel = Selector::parse_fields("data.x=1").unwrap();
        let e = check_field_selector(&[], &sel).unwrap_err();
        assert_eq!(e.code, 400);
        assert_eq!(e.message, "field label not supported: data.x");
    }

    #[test]
    fn missing_fields_compare_as_empty() {
        let sel = Selector::parse_fields("spec.nodeName=").unwrap();
        assert!(matches_fields(&sel, &json!({"spec": {}})));
        assert!(!matches_fields(&sel, &json!({"spec": {"nodeName": "n1"}})));
        let sel = Selector::parse_fields("metadata.name=a").unwrap();
        assert!(matches_fields(&sel, &json!({"metadata": {"name": "a"}})));
    }
}
