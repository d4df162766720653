//! `admissionregistration.k8s.io/v1`: webhook configurations and validating admission
//! policies with their bindings. Stored, defaulted and validated as upstream's; calling
//! webhooks and evaluating policies come with admission webhooks (a later issue), and every
//! write says they are not enforced yet.

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, entry_default, stored_but};

pub mod mutatingwebhookconfiguration;
pub mod validatingadmissionpolicy;
pub mod validatingadmissionpolicybinding;
pub mod validatingwebhookconfiguration;

/// Upstream's webhook defaults (`SetDefaults_ValidatingWebhook`, `…MutatingWebhook`).
fn default_webhooks(obj: &mut Value, mutating: bool) {
    let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for hook in hooks.iter_mut().filter_map(Value::as_object_mut) {
        entry_default(hook, "failurePolicy", json!("Fail"));
        entry_default(hook, "matchPolicy", json!("Equivalent"));
        entry_default(hook, "namespaceSelector", json!({}));
        entry_default(hook, "objectSelector", json!({}));
        entry_default(hook, "timeoutSeconds", json!(10));
        if mutating {
            entry_default(hook, "reinvocationPolicy", json!("Never"));
        }
        if let Some(service) = hook
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            entry_default(service, "port", json!(443));
        }
        for rule in hook
            .get_mut("rules")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            if let Some(rule) = rule.as_object_mut() {
                entry_default(rule, "scope", json!("*"));
            }
        }
    }
}

/// Upstream's rules for each webhook: a qualified name, side effects and review versions
/// stated, exactly one of a URL or a Service to call.
fn validate_webhooks(obj: &Value, causes: &mut Vec<Cause>) {
    for (i, hook) in arr(obj, &["webhooks"]).iter().enumerate() {
        let at = format!("webhooks[{i}]");
        let name = hook.get("name").and_then(Value::as_str).unwrap_or_default();
        if name.is_empty() {
            causes.push(Cause::required(format!("{at}.name")));
        } else if name.split('.').filter(|s| !s.is_empty()).count() < 3 {
            causes.push(Cause::invalid(
                format!("{at}.name"),
                &name.into(),
                "should be a domain with at least three segments separated by dots",
            ));
        }
        match hook.get("sideEffects").and_then(Value::as_str) {
            None => causes.push(Cause::required_because(
                format!("{at}.sideEffects"),
                "must specify one of None, NoneOnDryRun",
            )),
            Some("None" | "NoneOnDryRun") => {}
            Some(other) => causes.push(Cause::not_supported(
                format!("{at}.sideEffects"),
                &other.into(),
                &["None", "NoneOnDryRun"],
            )),
        }
        if arr(hook, &["admissionReviewVersions"]).is_empty() {
            causes.push(Cause::required_because(
                format!("{at}.admissionReviewVersions"),
                "must specify one of v1, v1beta1",
            ));
        }
        let url = field(hook, &["clientConfig", "url"]).is_some_and(|u| !u.is_null());
        let service = field(hook, &["clientConfig", "service"]).is_some_and(|s| !s.is_null());
        if url == service {
            causes.push(Cause::required_because(
                format!("{at}.clientConfig"),
                "exactly one of url or service is required",
            ));
        }
    }
}

/// The two webhook configuration kinds, alike but for their facts and whether their
/// webhooks may be reinvoked (mutating ones).
pub struct WebhookConfigurations {
    pub(crate) resource: &'static ResourceType,
    pub(crate) mutating: bool,
}

impl Kind for WebhookConfigurations {
    fn resource(&self) -> &ResourceType {
        self.resource
    }

    fn default(&self, obj: &mut Value) {
        default_webhooks(obj, self.mutating);
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        validate_webhooks(obj, &mut causes);
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            self.resource.kind,
            "skiff calls no admission webhooks yet",
        )
    }
}

impl Printer for WebhookConfigurations {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Webhooks",
                "integer",
                0,
                "Webhooks indicates the number of webhooks in the configuration.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            arr(obj, &["webhooks"]).len().into(),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhooks_get_defaults_and_need_a_target() {
        let mut c = json!({"webhooks": [{"name": "check.example.com", "sideEffects": "None",
            "admissionReviewVersions": ["v1"], "clientConfig": {"service": {"namespace": "a", "name": "b"}},
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"]}]},
            {"name": "short", "clientConfig": {}}]});
        default_webhooks(&mut c, true);
        assert_eq!(c["webhooks"][0]["failurePolicy"], "Fail");
        assert_eq!(c["webhooks"][0]["clientConfig"]["service"]["port"], 443);
        assert_eq!(c["webhooks"][0]["rules"][0]["scope"], "*");
        assert_eq!(c["webhooks"][0]["reinvocationPolicy"], "Never");
        let mut causes = Vec::new();
        validate_webhooks(&c, &mut causes);
        let messages: Vec<&str> = causes.iter().map(|c| c.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "webhooks[1].name: Invalid value: \"short\": should be a domain with at least three segments separated by dots",
                "webhooks[1].sideEffects: Required value: must specify one of None, NoneOnDryRun",
                "webhooks[1].admissionReviewVersions: Required value: must specify one of v1, v1beta1",
                "webhooks[1].clientConfig: Required value: exactly one of url or service is required",
            ]
        );
    }
}
