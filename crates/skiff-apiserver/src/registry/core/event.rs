//! Events (core/v1): what happened to an object, for people (`kubectl describe`, `kubectl
//! events`). Stored once for both event APIs; `events.k8s.io` (`registry::events`) reads
//! and writes the same objects under its own field names.

use serde_json::Value;
use skiff_api::ResourceType;
use skiff_api::object::{age, field_str, meta_str};
use skiff_api::table::{Column, Printer, Timed, int, text, time_of};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "Event", "events",
    "event", namespaced: true, short: ["ev"], categories: [], sub: []);

pub struct CoreEvents;

impl Kind for CoreEvents {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ]
    }
}

impl Printer for CoreEvents {
    fn columns(&self) -> Vec<Column> {
        columns()
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        event_cells(obj, now)
    }

    fn timed(&self, column: &str, obj: &Value) -> Option<Timed> {
        timed(column, obj)
    }
}

/// Both event APIs' columns (upstream prints them alike).
pub(crate) fn columns() -> Vec<Column> {
    vec![
        Column::new("Last Seen", "string", 0, "Time when last event occurred"),
        Column::new("Type", "string", 0, "Type of event"),
        Column::new("Reason", "string", 0, "Reason of the event"),
        Column::new("Object", "string", 0, "The object that this event is about"),
        Column::new("Subobject", "string", 1, "Subobject of the event"),
        Column::new("Source", "string", 1, "Event source"),
        Column::new("Message", "string", 0, "Message of the event"),
        Column::new("First Seen", "string", 1, "Time when first event occurred"),
        Column::new("Count", "string", 1, "Count of this event"),
        Column("Name", "string", "name", 1, "Name of the event"),
    ]
}

/// Both event APIs' time-dependent cells: LAST SEEN and FIRST SEEN.
pub(crate) fn timed(column: &str, obj: &Value) -> Option<Timed> {
    match column {
        "Last Seen" => Some(Timed::Age(time_of(event_times(obj).0))),
        "First Seen" => Some(Timed::Age(time_of(event_times(obj).1))),
        _ => None,
    }
}

/// An event's LAST SEEN and FIRST SEEN timestamps, from whichever fields it carries.
pub fn event_times(obj: &Value) -> (Option<&str>, Option<&str>) {
    let last = field_str(obj, &["lastTimestamp"])
        .or(field_str(obj, &["eventTime"]))
        .or(field_str(obj, &["series", "lastObservedTime"]))
        .or(meta_str(obj, "creationTimestamp"));
    let first = field_str(obj, &["firstTimestamp"]).or(field_str(obj, &["eventTime"]));
    (last, first)
}

pub(crate) fn event_cells(obj: &Value, now: OffsetDateTime) -> Vec<Value> {
    let name = text(meta_str(obj, "name"));
    let regarding = obj.get("involvedObject").or(obj.get("regarding"));
    let kind = regarding
        .and_then(|r| field_str(r, &["kind"]))
        .unwrap_or_default()
        .to_lowercase();
    let rname = regarding
        .and_then(|r| field_str(r, &["name"]))
        .unwrap_or_default();
    let (last, first) = event_times(obj);
    let source = field_str(obj, &["source", "component"])
        .or(field_str(obj, &["reportingComponent"]))
        .or(field_str(obj, &["reportingController"]))
        .unwrap_or_default();
    vec![
        age(last, now).into(),
        text(field_str(obj, &["type"])),
        text(field_str(obj, &["reason"])),
        format!("{kind}/{rname}").into(),
        text(regarding.and_then(|r| field_str(r, &["fieldPath"]))),
        text(Some(source)),
        text(field_str(obj, &["message"]).or(field_str(obj, &["note"]))),
        age(first, now).into(),
        int(obj, &["count"]).max(1).to_string().into(),
        name,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api::table::PrecomputedRow;

    #[test]
    fn seen_columns_print_at_the_time_asked() {
        let event = json!({"metadata": {"name": "e"}, "involvedObject": {"kind": "Pod", "name": "p"},
                           "lastTimestamp": "2026-11-25T11:59:00Z", "firstTimestamp": "2026-11-25T11:00:00Z", "count": 3});
        let row = PrecomputedRow::new(&CoreEvents, &event);
        let now = skiff_api::object::parse_time("2026-11-25T12:00:00Z").unwrap();
        let cells = row.cells_at(now);
        assert_eq!(
            (cells[0].as_str(), cells[3].as_str(), cells[7].as_str()),
            (Some("60s"), Some("pod/p"), Some("60m"))
        );
    }
}
