//! ValidatingWebhookConfigurations: which requests are sent to which admission webhooks.

use serde_json::Value;
use skiff_api::table::{Column, Printer};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use super::{default_webhooks, validate_webhooks, webhook_cells, webhook_columns};
use crate::registry::{Kind, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("admissionregistration.k8s.io",
    "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations",
    "validatingwebhookconfiguration", namespaced: false, short: [], categories: ["api-extensions"],
    sub: []);

pub struct ValidatingWebhookConfigurations;

impl Kind for ValidatingWebhookConfigurations {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn default(&self, obj: &mut Value) {
        default_webhooks(obj, false);
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_webhooks(obj, &mut causes);
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "ValidatingWebhookConfiguration",
            "skiff calls no admission webhooks yet",
        )
    }
}

impl Printer for ValidatingWebhookConfigurations {
    fn columns(&self) -> Vec<Column> {
        webhook_columns()
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        webhook_cells(obj, now)
    }
}
