//! ServiceCIDRs: the ranges Service cluster IPs come from. Every cluster has `kubernetes`,
//! the `--service-cidr` range (made at start, `bootstrap.rs`, Ready as upstream's); others
//! are stored and validated, but addresses come from `--service-cidr` alone, and writing
//! one says so.

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("networking.k8s.io", "v1",
    "ServiceCIDR", "servicecidrs", "servicecidr", namespaced: false, short: [],
    categories: [], sub: [Status]);

/// The default ServiceCIDR's name, as upstream's.
pub const DEFAULT: &str = "kubernetes";

/// The default ServiceCIDR for `cidr`, ready.
pub fn default_cidr(cidr: &str) -> Value {
    json!({"metadata": {"name": DEFAULT}, "spec": {"cidrs": [cidr]},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "",
            "message": "Kubernetes Service CIDR is ready",
            "lastTransitionTime": skiff_api::object::now_rfc3339()}]}})
}

pub struct ServiceCidrs;

impl Kind for ServiceCidrs {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let cidrs = arr(obj, &["spec", "cidrs"]);
        if cidrs.is_empty() {
            causes.push(Cause::required("spec.cidrs"));
        }
        if cidrs.len() > 2 {
            causes.push(Cause::too_many("spec.cidrs", cidrs.len(), 2));
        }
        for (i, c) in cidrs.iter().enumerate() {
            let valid = c
                .as_str()
                .and_then(|c| c.split_once('/'))
                .is_some_and(|(ip, bits)| {
                    ip.parse::<std::net::IpAddr>().is_ok_and(|ip| {
                        bits.parse::<u8>()
                            .is_ok_and(|b| b <= if ip.is_ipv4() { 32 } else { 128 })
                    })
                });
            if !valid {
                causes.push(Cause::invalid(
                    format!("spec.cidrs[{i}]"),
                    c,
                    "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
                ));
            }
        }
        if let Some(old) = old
            && field(obj, &["spec", "cidrs"]) != field(old, &["spec", "cidrs"])
        {
            causes.push(Cause::invalid(
                "spec.cidrs",
                field(obj, &["spec", "cidrs"]).unwrap_or(&Value::Null),
                "field is immutable",
            ));
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        if meta_str(obj, "name") == Some(DEFAULT) {
            return Vec::new();
        }
        stored_but(
            obj,
            "ServiceCIDR",
            "skiff allocates cluster IPs only from --service-cidr (the \"kubernetes\" ServiceCIDR)",
        )
    }
}

impl Printer for ServiceCidrs {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new("CIDRs", "string", 0, "list of IPv4 and IPv6 CIDRs"),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let cidrs: Vec<&str> = arr(obj, &["spec", "cidrs"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        vec![
            text(meta_str(obj, "name")),
            cidrs.join(",").into(),
            age_cell(obj, now),
        ]
    }
}
