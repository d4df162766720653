//! Ingresses: HTTP routes from hosts and paths to Services.

use serde_json::Value;
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text, truncated_list};
use skiff_api::validation::{dns1123_label_errors, dns1123_subdomain_errors};
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::{Kind, stored_but};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("networking.k8s.io", "v1",
    "Ingress", "ingresses", "ingress", namespaced: true, short: ["ing"], categories: [],
    sub: [Status]);

pub struct Ingresses;

impl Kind for Ingresses {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = serde_json::json!({});
    }

    fn validate(&self, obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let spec = field(obj, &["spec"]);
        let has = |k: &str| spec.and_then(|s| s.get(k)).is_some_and(|v| !v.is_null());
        if !has("defaultBackend") && arr(obj, &["spec", "rules"]).is_empty() {
            causes.push(Cause::invalid(
                "spec",
                spec.unwrap_or(&Value::Null),
                "either `defaultBackend` or `rules` must be specified",
            ));
        }
        if let Some(backend) = spec.and_then(|s| s.get("defaultBackend")) {
            validate_backend(backend, "spec.defaultBackend", &mut causes);
        }
        for (i, rule) in arr(obj, &["spec", "rules"]).iter().enumerate() {
            let at = format!("spec.rules[{i}]");
            if let Some(host) = field_str(rule, &["host"]).filter(|h| !h.is_empty()) {
                let bare = host.strip_prefix("*.").unwrap_or(host);
                for e in dns1123_subdomain_errors(bare) {
                    causes.push(Cause::invalid(format!("{at}.host"), &host.into(), &e));
                }
            }
            for (j, path) in arr(rule, &["http", "paths"]).iter().enumerate() {
                let at = format!("{at}.http.paths[{j}]");
                validate_path(path, &at, &mut causes);
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        stored_but(
            obj,
            "Ingress",
            "skiff runs no ingress controller yet: nothing routes its hosts and paths",
        )
    }
}

/// One path of a rule: an absolute path of a known type, to a backend.
fn validate_path(path: &Value, at: &str, causes: &mut Vec<Cause>) {
    let types = ["Exact", "Prefix", "ImplementationSpecific"];
    match path.get("pathType") {
        None | Some(Value::Null) => causes.push(Cause::required_because(
            format!("{at}.pathType"),
            "pathType must be specified",
        )),
        Some(t) if !t.as_str().is_some_and(|t| types.contains(&t)) => {
            causes.push(Cause::not_supported(format!("{at}.pathType"), t, &types));
        }
        Some(t) => {
            let p = field_str(path, &["path"]).unwrap_or_default();
            if t != "ImplementationSpecific" && !p.starts_with('/') {
                causes.push(Cause::invalid(
                    format!("{at}.path"),
                    &p.into(),
                    "must be an absolute path",
                ));
            }
        }
    }
    match path.get("backend") {
        Some(b) => validate_backend(b, &format!("{at}.backend"), causes),
        None => causes.push(Cause::required(format!("{at}.backend"))),
    }
}

/// A backend: a Service by name and port (by name or number), or a resource; not both.
fn validate_backend(backend: &Value, at: &str, causes: &mut Vec<Cause>) {
    let (service, resource) = (backend.get("service"), backend.get("resource"));
    match (service, resource) {
        (Some(_), Some(_)) => causes.push(Cause::invalid(
            at,
            &"".into(),
            "cannot set both resource and service backends",
        )),
        (None, Some(_)) => {}
        (None, None) => causes.push(Cause::invalid(
            at,
            &"".into(),
            "resource or service backend is required",
        )),
        (Some(svc), None) => {
            match field_str(svc, &["name"]).filter(|n| !n.is_empty()) {
                None => causes.push(Cause::required(format!("{at}.service.name"))),
                Some(n) => {
                    for e in dns1123_label_errors(n) {
                        causes.push(Cause::invalid(format!("{at}.service.name"), &n.into(), &e));
                    }
                }
            }
            let name = field_str(svc, &["port", "name"]).filter(|n| !n.is_empty());
            let number = field(svc, &["port", "number"])
                .and_then(Value::as_i64)
                .filter(|n| *n != 0);
            match (name, number) {
                (Some(_), Some(_)) => causes.push(Cause::invalid(
                    at,
                    &"".into(),
                    "cannot set both port name & port number",
                )),
                (None, None) => causes.push(Cause::required_because(
                    format!("{at}.service.port"),
                    "port name or number is required",
                )),
                (None, Some(n)) if !(1..=65535).contains(&n) => causes.push(Cause::invalid(
                    format!("{at}.service.port.number"),
                    &n.into(),
                    "must be between 1 and 65535, inclusive",
                )),
                _ => {}
            }
        }
    }
}

impl Printer for Ingresses {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "Class",
                "string",
                0,
                "The name of the IngressClass resource that should be used.",
            ),
            Column::new(
                "Hosts",
                "string",
                0,
                "Hosts that incoming requests are matched against.",
            ),
            Column::new(
                "Address",
                "string",
                0,
                "Address is a list containing ingress points for the load-balancer",
            ),
            Column::new(
                "Ports",
                "string",
                0,
                "Ports of TLS configurations that open",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let hosts: Vec<&str> = arr(obj, &["spec", "rules"])
            .iter()
            .filter_map(|r| field_str(r, &["host"]))
            .filter(|h| !h.is_empty())
            .collect();
        let hosts = if hosts.is_empty() {
            "*".to_string()
        } else {
            truncated_list(&hosts)
        };
        let address: Vec<&str> = arr(obj, &["status", "loadBalancer", "ingress"])
            .iter()
            .filter_map(|i| field_str(i, &["ip"]).or(field_str(i, &["hostname"])))
            .collect();
        let ports = if arr(obj, &["spec", "tls"]).is_empty() {
            "80"
        } else {
            "80, 443"
        };
        vec![
            text(meta_str(obj, "name")),
            text(Some(
                field_str(obj, &["spec", "ingressClassName"]).unwrap_or("<none>"),
            )),
            hosts.into(),
            address.join(",").into(),
            ports.into(),
            age_cell(obj, now),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_need_a_type_and_a_backend_port() {
        let ing = json!({"spec": {"rules": [{"host": "hello.example", "http": {"paths": [
            {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 80}}}},
            {"path": "/x", "backend": {"service": {"name": "web", "port": {}}}},
            {"path": "rel", "pathType": "Exact", "backend": {}}]}}]}});
        let messages: Vec<String> = Ingresses
            .validate(&ing, None)
            .into_iter()
            .map(|c| c.message)
            .collect();
        assert_eq!(
            messages,
            [
                "spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified",
                "spec.rules[0].http.paths[1].backend.service.port: Required value: port name or number is required",
                "spec.rules[0].http.paths[2].path: Invalid value: \"rel\": must be an absolute path",
                "spec.rules[0].http.paths[2].backend: Invalid value: \"\": resource or service backend is required",
            ]
        );
        let row = Ingresses.cells(&ing, OffsetDateTime::UNIX_EPOCH);
        assert_eq!(
            row[1..5],
            [
                json!("<none>"),
                json!("hello.example"),
                json!(""),
                json!("80")
            ]
        );
    }
}
