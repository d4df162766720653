//! Endpoints: the addresses behind a Service, in the legacy shape (the endpoints
//! controller writes them beside EndpointSlices).

use serde_json::Value;
use skiff_api::ResourceType;
use skiff_api::object::{field_str, meta_str};
use skiff_api::table::{
    AGE, Column, NAME, Printer, age_cell, arr, none_if_empty, text, truncated_list,
};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "Endpoints",
    "endpoints", "endpoints", namespaced: true, short: ["ep"], categories: [], sub: []);

pub struct EndpointsKind;

impl Kind for EndpointsKind {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }
}

impl Printer for EndpointsKind {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Endpoints",
                "string",
                0,
                "Endpoints is the list of endpoints in the object.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            none_if_empty(endpoints_string(obj)),
            age_cell(obj, now),
        ]
    }
}

/// `ip:port` for every address and port, at most three then `+ N more...`.
fn endpoints_string(obj: &Value) -> String {
    let mut out = Vec::new();
    for subset in arr(obj, &["subsets"]) {
        let ports: Vec<i64> = arr(subset, &["ports"])
            .iter()
            .filter_map(|p| p.get("port").and_then(Value::as_i64))
            .collect();
        for a in arr(subset, &["addresses"]) {
            let ip = field_str(a, &["ip"]).unwrap_or_default();
            if ports.is_empty() {
                out.push(ip.to_string());
            }
            for p in &ports {
                out.push(format!("{ip}:{p}"));
            }
        }
    }
    let refs: Vec<&str> = out.iter().map(String::as_str).collect();
    truncated_list(&refs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn endpoints_print_address_port_pairs() {
        let ep = json!({"metadata": {"name": "web"}, "subsets": [{
            "addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.1.6"}],
            "ports": [{"port": 8080}, {"port": 9090}]}]});
        assert_eq!(
            endpoints_string(&ep),
            "10.42.0.5:8080,10.42.0.5:9090,10.42.1.6:8080 + 1 more..."
        );
    }
}
