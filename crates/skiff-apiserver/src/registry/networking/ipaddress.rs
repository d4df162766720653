//! IPAddresses: one per allocated Service cluster IP, naming the Service that holds it.
//! They are the allocator's own records (`allocators.rs` takes an address by creating its
//! IPAddress, which fails if one exists), so `kubectl get ipaddresses` lists exactly what is
//! allocated, and an IPAddress made by hand reserves its address.

use serde_json::Value;
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{Column, NAME, Printer, text};
use skiff_api::validation::NameRule;
use skiff_api::{Cause, ResourceType};
use time::OffsetDateTime;

use crate::registry::Kind;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("networking.k8s.io", "v1",
    "IPAddress", "ipaddresses", "ipaddress", namespaced: false, short: ["ip"], categories: [],
    sub: []);

pub struct IpAddresses;

impl Kind for IpAddresses {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    /// An address's name is the address itself, in its canonical form.
    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        let name = meta_str(obj, "name").unwrap_or_default();
        match name.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.to_string() == name => {}
            Ok(ip) => causes.push(Cause::invalid(
                "metadata.name",
                &name.into(),
                &format!("must be in canonical form (\"{ip}\")"),
            )),
            Err(_) => causes.push(Cause::invalid(
                "metadata.name",
                &name.into(),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            )),
        }
        match field(obj, &["spec", "parentRef"]) {
            None | Some(Value::Null) => causes.push(Cause::required("spec.parentRef")),
            Some(parent) => {
                for key in ["resource", "name"] {
                    if parent[key].as_str().is_none_or(str::is_empty) {
                        causes.push(Cause::required(format!("spec.parentRef.{key}")));
                    }
                }
            }
        }
        if let Some(old) = old
            && field(obj, &["spec", "parentRef"]) != field(old, &["spec", "parentRef"])
        {
            causes.push(Cause::invalid(
                "spec.parentRef",
                field(obj, &["spec", "parentRef"]).unwrap_or(&Value::Null),
                "the field is immutable",
            ));
        }
        causes
    }
}

impl Printer for IpAddresses {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column::new(
                "ParentRef",
                "string",
                0,
                "ParentRef references the resource that an IPAddress is attached to.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, _now: OffsetDateTime) -> Vec<Value> {
        let parent = |k: &str| field_str(obj, &["spec", "parentRef", k]).unwrap_or_default();
        let resource = match parent("group") {
            "" => parent("resource").to_string(),
            group => format!("{}.{group}", parent("resource")),
        };
        let reference = match parent("namespace") {
            "" => format!("{resource}/{}", parent("name")),
            ns => format!("{resource}/{ns}/{}", parent("name")),
        };
        vec![text(meta_str(obj, "name")), reference.into()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn addresses_are_named_canonically_and_print_their_parent() {
        let ip = json!({"metadata": {"name": "10.43.0.1"}, "spec": {"parentRef":
            {"group": "", "resource": "services", "namespace": "default", "name": "kubernetes"}}});
        assert!(IpAddresses.validate(&ip, None).is_empty());
        assert_eq!(
            IpAddresses.cells(&ip, OffsetDateTime::UNIX_EPOCH)[1],
            "services/default/kubernetes"
        );
        let odd = json!({"metadata": {"name": "10.043.0.1"}, "spec": {}});
        let fields: Vec<String> = IpAddresses
            .validate(&odd, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(fields, ["metadata.name", "spec.parentRef"]);
        let mut moved = ip.clone();
        moved["spec"]["parentRef"]["name"] = json!("other");
        assert_eq!(
            IpAddresses.validate(&moved, Some(&ip))[0]
                .message
                .split(':')
                .next(),
            Some("spec.parentRef")
        );
    }
}
