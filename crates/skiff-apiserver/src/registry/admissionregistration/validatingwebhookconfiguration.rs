//! ValidatingWebhookConfigurations: which requests are sent to which admission webhooks
//! (both kinds' rules are `super::WebhookConfigurations`).

use skiff_api::ResourceType;

use super::WebhookConfigurations;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("admissionregistration.k8s.io",
    "v1", "ValidatingWebhookConfiguration", "validatingwebhookconfigurations",
    "validatingwebhookconfiguration", namespaced: false, short: [], categories: ["api-extensions"],
    sub: []);

pub fn kind() -> WebhookConfigurations {
    WebhookConfigurations {
        resource: &RESOURCE,
        mutating: false,
    }
}
