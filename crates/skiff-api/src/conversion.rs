//! Conversion between a resource's API form and its storage form, for resources that share
//! storage with another version: `events.k8s.io/v1` Events are stored as `core/v1` Events,
//! as upstream does, so an event written through either API is read through both (kube-rs'
//! recorder writes the new API; `kubectl describe` and `kubectl events` read the core one).

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
/// `events.k8s.io/v1` Events).
pub fn stored_as_served(rt: &ResourceType) -> bool {
    !is_new_event(rt)
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
    }
    obj
}

/// An object of `rt` as it is stored.
pub fn to_storage(rt: &ResourceType, mut obj: Value) -> Value {
    if is_new_event(rt) {
        rename(&mut obj, false, "v1");
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
}
