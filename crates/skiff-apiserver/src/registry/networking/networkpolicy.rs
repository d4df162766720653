//! NetworkPolicies: which traffic may reach and leave the pods they select.

use serde_json::{Value, json};
use skiff_api::object::{field, meta_str};
use skiff_api::selectors::Selector;
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, format_label_selector, text};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("networking.k8s.io", "v1",
    "NetworkPolicy", "networkpolicies", "networkpolicy", namespaced: true, short: ["netpol"],
    categories: [], sub: []);

pub struct NetworkPolicies;

impl Kind for NetworkPolicies {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    /// Upstream's `SetDefaults_NetworkPolicy`: policy types from the rules present (Ingress
    /// always), ports TCP.
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        for rules in ["ingress", "egress"] {
            for rule in spec
                .get_mut(rules)
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                for port in rule
                    .get_mut("ports")
                    .and_then(Value::as_array_mut)
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = port.as_object_mut() {
                        p.entry("protocol").or_insert(json!("TCP"));
                    }
                }
            }
        }
        let unset = spec
            .get("policyTypes")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if unset {
            let mut types = vec![json!("Ingress")];
            if spec
                .get("egress")
                .and_then(Value::as_array)
                .is_some_and(|e| !e.is_empty())
            {
                types.push(json!("Egress"));
            }
            spec.insert("policyTypes".into(), types.into());
        }
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(sel) = field(obj, &["spec", "podSelector"])
            && let Err(e) = Selector::from_label_selector(sel)
        {
            causes.push(Cause::invalid("spec.podSelector", sel, &e.to_string()));
        }
        let types = field(obj, &["spec", "policyTypes"]).and_then(Value::as_array);
        for (i, t) in types.into_iter().flatten().enumerate() {
            if !matches!(t.as_str(), Some("Ingress" | "Egress")) {
                causes.push(Cause::not_supported(
                    format!("spec.policyTypes[{i}]"),
                    t,
                    &["Ingress", "Egress"],
                ));
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "NetworkPolicy",
            "skiff enforces no network policies yet: traffic is not restricted",
        )
    }
}

impl Printer for NetworkPolicies {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Pod-Selector",
                "string",
                0,
                "Selects the pods to which this NetworkPolicy object applies.",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let selector = format_label_selector(field(obj, &["spec", "podSelector"]));
        let selector = if selector.is_empty() {
            "<none>".to_string()
        } else {
            selector
        };
        vec![
            text(meta_str(obj, "name")),
            selector.into(),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_types_follow_the_rules_present() {
        let mut p = json!({"spec": {"podSelector": {}, "egress": [{"ports": [{"port": 53}]}]}});
        NetworkPolicies.default(&mut p);
        assert_eq!(p["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(p["spec"]["egress"][0]["ports"][0]["protocol"], "TCP");
        let mut q = json!({"spec": {"podSelector": {"matchLabels": {"app": "db"}}}});
        NetworkPolicies.default(&mut q);
        assert_eq!(q["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(
            NetworkPolicies.cells(&q, OffsetDateTime::UNIX_EPOCH)[1],
            "app=db"
        );
    }
}
