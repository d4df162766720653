//! `discovery.k8s.io`: EndpointSlices, the addresses behind a Service (ready, serving and
//! terminating endpoints, for proxies and DNS).

use serde_json::Value;
use skiff_api::ResourceType;
use skiff_api::object::{field_str, meta_str};
use skiff_api::table::{
    AGE, Column, NAME, Printer, age_cell, arr, none_if_empty, text, truncated_list,
};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("discovery.k8s.io", "v1",
    "EndpointSlice", "endpointslices", "endpointslice", namespaced: true, short: [],
    categories: [], sub: []);

pub struct EndpointSlices;

impl Kind for EndpointSlices {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }
}

impl Printer for EndpointSlices {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("AddressType", "string", 0, "The IP protocol for this slice"),
            Column::new("Ports", "string", 0, "The ports for this slice"),
            Column::new("Endpoints", "string", 0, "The endpoints for this slice"),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let ports: Vec<String> = arr(obj, &["ports"])
            .iter()
            .filter_map(|p| p.get("port").and_then(Value::as_i64).map(|n| n.to_string()))
            .collect();
        let addrs: Vec<&str> = arr(obj, &["endpoints"])
            .iter()
            .flat_map(|e| arr(e, &["addresses"]).iter().filter_map(Value::as_str))
            .collect();
        vec![
            text(meta_str(obj, "name")),
            text(field_str(obj, &["addressType"])),
            none_if_empty(ports.join(",")),
            none_if_empty(truncated_list(&addrs)),
            age_cell(obj, now),
        ]
    }
}
