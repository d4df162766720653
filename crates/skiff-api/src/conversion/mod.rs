//! Conversion between a resource's API form and its storage form, for resources that share
//! storage with another version: `events.k8s.io/v1` Events are stored as `core/v1` Events,
//! as upstream does, so an event written through either API is read through both (kube-rs'
//! recorder writes the new API; `kubectl describe` and `kubectl events` read the core one);
//! `autoscaling/v1` HorizontalPodAutoscalers are stored as `autoscaling/v2` ones
//! ([`hpa`]); custom resources are stored in their storage version.

pub mod hpa;

use serde_json::{Map, Value};

use crate::resources::ResourceType;

/// Field renames between core/v1 Event (first) and events.k8s.io/v1 Event (second).
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

/// Whether `rt`'s objects are stored as they are served (every resource but
/// `events.k8s.io/v1` Events and custom resources served in a version other than their
/// storage version).
pub fn stored_as_served(rt: &ResourceType) -> bool {
    !is_new_event(rt)
        && !is_autoscaling_v1(rt)
        && (rt.stored_version.is_empty() || rt.stored_version == rt.api_version())
}

fn is_autoscaling_v1(rt: &ResourceType) -> bool {
    (rt.group, rt.version, rt.kind) == ("autoscaling", "v1", "HorizontalPodAutoscaler")
}

fn is_new_event(rt: &ResourceType) -> bool {
    (rt.group, rt.kind) == ("events.k8s.io", "Event")
}

fn rename(obj: &mut Value, from_first: bool, api_version: &str) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let mut out = Map::with_capacity(map.len());
    for (k, v) in std::mem::take(map) {
        let renamed = EVENT_FIELDS
            .iter()
            .find(|(core, new)| if from_first { core == &k } else { new == &k })
            .map(|(core, new)| if from_first { *new } else { *core });
        out.insert(renamed.map(str::to_string).unwrap_or(k), v);
    }
    out.insert("apiVersion".into(), api_version.into());
    *map = out;
}

/// A stored object as `rt` presents it.
pub fn from_storage(rt: &ResourceType, mut obj: Value) -> Value {
    if is_new_event(rt) {
        rename(&mut obj, true, "events.k8s.io/v1");
    } else if is_autoscaling_v1(rt) {
        obj = hpa::to_v1(obj);
    } else if !rt.stored_version.is_empty() {
        // A custom resource, possibly written through another version: the versions of one
        // resource hold the same fields (the `None` strategy), so only the apiVersion says
        // which is read.
        set_api_version(&mut obj, &rt.api_version());
    }
    obj
}

fn set_api_version(obj: &mut Value, api_version: &str) {
    if let Some(map) = obj.as_object_mut()
        && map.get("apiVersion").and_then(Value::as_str) != Some(api_version)
    {
        map.insert("apiVersion".into(), api_version.into());
    }
}

/// An object of `rt` as it is stored.
pub fn to_storage(rt: &ResourceType, mut obj: Value) -> Value {
    if is_new_event(rt) {
        rename(&mut obj, false, "v1");
    } else if is_autoscaling_v1(rt) {
        obj = hpa::to_v2(obj);
    } else if !rt.stored_version.is_empty() {
        set_api_version(&mut obj, rt.stored_version);
    }
    obj
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::{CORE_EVENTS, EVENTS};
    use serde_json::json;

    #[test]
    fn events_round_trip_between_the_two_apis() {
        let rt = &EVENTS;
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "pulled", "reason": "Pulled",
            "reportingController": "skiff", "reportingInstance": "n1", "type": "Normal",
            "eventTime": "2026-11-25T12:00:00.000000Z", "deprecatedCount": 2});
        let stored = to_storage(rt, new.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "pulled");
        assert_eq!(stored["reportingComponent"], "skiff");
        assert_eq!(stored["count"], 2);
        assert_eq!(from_storage(rt, stored), new);
        let core = &CORE_EVENTS;
        assert_eq!(
            from_storage(core, new.clone()),
            new,
            "core events are stored as they are"
        );
    }

    #[test]
    fn custom_resources_are_read_in_the_version_asked_for() {
        let v2 = ResourceType {
            stored_version: "example.com/v1",
            ..crate::resource_type!("example.com", "v2", "Widget", "widgets", "widget",
                namespaced: true, short: [], categories: [], sub: [])
        };
        let v1 = ResourceType {
            version: "v1",
            ..v2
        };
        let written = json!({"apiVersion": "example.com/v2", "kind": "Widget", "spec": {"a": 1}});
        assert!(!stored_as_served(&v2));
        assert!(stored_as_served(&v1));
        let stored = to_storage(&v2, written.clone());
        assert_eq!(stored["apiVersion"], "example.com/v1");
        assert_eq!(from_storage(&v2, stored.clone()), written);
        assert_eq!(
            from_storage(&v1, stored.clone())["apiVersion"],
            "example.com/v1"
        );
        assert_eq!(from_storage(&v1, written)["apiVersion"], "example.com/v1");
    }
}
