//! ServiceAccounts: identities for pods, with their tokens (`serviceaccounts/token`).

use serde_json::Value;
use skiff_api::ResourceType;
use skiff_api::object::meta_str;
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, len_of, text};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("", "v1", "ServiceAccount",
    "serviceaccounts", "serviceaccount", namespaced: true, short: ["sa"], categories: [],
    sub: [Token]);

pub struct ServiceAccounts;

impl Kind for ServiceAccounts {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }
}

impl Printer for ServiceAccounts {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Secrets",
                "string",
                0,
                "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            len_of(obj, "secrets").into(),
            age_cell(obj, now),
        ]
    }
}
