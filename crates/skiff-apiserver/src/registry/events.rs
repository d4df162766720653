//! Events in `events.k8s.io/v1`: the same stored objects as core/v1 Events (converted on
//! the way in and out, `skiff_api::conversion`), printed alike.

use serde_json::Value;
use skiff_api::ResourceType;
use skiff_api::table::{Column, Printer, Timed};
use time::OffsetDateTime;

use crate::registry::Kind;
use crate::registry::core::event;

/// Stored with core/v1 Events, as upstream: one event, read through either API.
pub static RESOURCE: ResourceType = ResourceType {
    storage: "events",
    ..skiff_api::resource_type!("events.k8s.io", "v1", "Event", "events", "event",
        namespaced: true, short: ["ev"], categories: [], sub: [])
};

pub struct Events;

impl Kind for Events {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        &[
            "regarding.kind",
            "regarding.namespace",
            "regarding.name",
            "regarding.uid",
            "regarding.apiVersion",
            "regarding.resourceVersion",
            "regarding.fieldPath",
            "reason",
            "reportingController",
            "type",
        ]
    }
}

impl Printer for Events {
    fn columns(&self) -> Vec<Column> {
        event::columns()
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        event::event_cells(obj, now)
    }

    fn timed(&self, column: &str, obj: &Value) -> Option<Timed> {
        event::timed(column, obj)
    }
}
