//! Discovery documents, built from the served resource types: the legacy ones (`APIVersions`,
//! `APIGroupList`, `APIResourceList`) and aggregated discovery (`APIGroupDiscoveryList`, in
//! `apidiscovery.k8s.io/v2` and `v2beta1`, which differ only in their apiVersion).

use serde_json::{Value, json};

use crate::resources::{self, ResourceType, Subresource};

const SUBRESOURCE_VERBS: &[&str] = &["get", "patch", "update"];

/// The kind a subresource answers with: (group, version, kind).
fn subresource_kind(
    rt: &ResourceType,
    sub: Subresource,
) -> (&'static str, &'static str, &'static str) {
    match sub {
        Subresource::Status => (rt.group, rt.version, rt.kind),
        Subresource::Scale => ("autoscaling", "v1", "Scale"),
        Subresource::Binding => ("", "v1", "Binding"),
        Subresource::Finalize | Subresource::Approval => (rt.group, rt.version, rt.kind),
        Subresource::Token => ("authentication.k8s.io", "v1", "TokenRequest"),
        Subresource::Log => ("", "v1", "Pod"),
        Subresource::Exec => ("", "v1", "PodExecOptions"),
        Subresource::Attach => ("", "v1", "PodAttachOptions"),
        Subresource::PortForward => ("", "v1", "PodPortForwardOptions"),
        Subresource::EphemeralContainers => ("", "v1", "Pod"),
        Subresource::Proxy => match rt.kind {
            "Node" => ("", "v1", "NodeProxyOptions"),
            "Service" => ("", "v1", "ServiceProxyOptions"),
            _ => ("", "v1", "PodProxyOptions"),
        },
    }
}

fn subresource_verbs(sub: Subresource) -> &'static [&'static str] {
    match sub {
        Subresource::Binding | Subresource::Token => &["create"],
        Subresource::Finalize => &["update"],
        Subresource::Log => &["get"],
        Subresource::Exec | Subresource::Attach | Subresource::PortForward => &["create", "get"],
        Subresource::Proxy => &["create", "delete", "get", "patch", "update"],
        _ => SUBRESOURCE_VERBS,
    }
}

/// `GET /api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &str, versions: &[&str]) -> Value {
    let gv = |v: &str| json!({"groupVersion": format!("{group}/{v}"), "version": v});
    json!({
        "name": group,
        "versions": versions.iter().map(|v| gv(v)).collect::<Vec<_>>(),
        "preferredVersion": gv(versions[0]),
    })
}

/// `GET /apis` (legacy form), for the served `types`.
pub fn api_group_list(types: &[&ResourceType]) -> Value {
    let groups: Vec<Value> = resources::groups(types)
        .into_iter()
        .filter(|(g, _)| !g.is_empty())
        .map(|(g, versions)| group_entry(g, &versions))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `GET /apis/<group>` (legacy form), if the group exists.
pub fn api_group(types: &[&ResourceType], group: &str) -> Option<Value> {
    let (g, versions) = resources::groups(types)
        .into_iter()
        .find(|(g, _)| !g.is_empty() && *g == group)?;
    let mut entry = group_entry(g, &versions);
    entry["kind"] = "APIGroup".into();
    entry["apiVersion"] = "v1".into();
    Some(entry)
}

/// `GET /api/v1` or `/apis/<group>/<version>`, if that group version exists.
pub fn api_resource_list(types: &[&ResourceType], group: &str, version: &str) -> Option<Value> {
    let types: Vec<&ResourceType> = resources::in_group_version(types, group, version).collect();
    if types.is_empty() {
        return None;
    }
    let mut list = Vec::new();
    for rt in types {
        let mut entry = json!({
            "name": rt.plural,
            "singularName": rt.singular,
            "namespaced": rt.namespaced,
            "kind": rt.kind,
            "verbs": rt.verbs,
        });
        if !rt.short_names.is_empty() {
            entry["shortNames"] = json!(rt.short_names);
        }
        if !rt.categories.is_empty() {
            entry["categories"] = json!(rt.categories);
        }
        list.push(entry);
        for &sub in rt.subresources {
            let (g, v, k) = subresource_kind(rt, sub);
            let mut entry = json!({
                "name": format!("{}/{}", rt.plural, sub.name()),
                "singularName": "",
                "namespaced": rt.namespaced,
                "kind": k,
                "verbs": subresource_verbs(sub),
            });
            if (g, v) != (rt.group, rt.version) {
                entry["group"] = g.into();
                entry["version"] = v.into();
            }
            list.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": list,
    }))
}

/// The aggregated discovery versions, in the order the server prefers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AggregatedVersion {
    V2,
    V2Beta1,
}

impl AggregatedVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => "apidiscovery.k8s.io/v2",
            AggregatedVersion::V2Beta1 => "apidiscovery.k8s.io/v2beta1",
        }
    }

    /// The exact `Content-Type` of the reply; kubectl refuses any other.
    pub fn content_type(self) -> &'static str {
        match self {
            AggregatedVersion::V2 => {
                "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
            }
            AggregatedVersion::V2Beta1 => {
                "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
            }
        }
    }
}

fn gvk(group: &str, version: &str, kind: &str) -> Value {
    json!({"group": group, "version": version, "kind": kind})
}

fn aggregated_resource(rt: &ResourceType) -> Value {
    let mut entry = json!({
        "resource": rt.plural,
        "responseKind": gvk(rt.group, rt.version, rt.kind),
        "scope": if rt.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": rt.singular,
        "verbs": rt.verbs,
    });
    if !rt.short_names.is_empty() {
        entry["shortNames"] = json!(rt.short_names);
    }
    if !rt.categories.is_empty() {
        entry["categories"] = json!(rt.categories);
    }
    if !rt.subresources.is_empty() {
        let subs: Vec<Value> = rt
            .subresources
            .iter()
            .map(|&sub| {
                let (g, v, k) = subresource_kind(rt, sub);
                json!({
                    "subresource": sub.name(),
                    "responseKind": gvk(g, v, k),
                    "verbs": subresource_verbs(sub),
                })
            })
            .collect();
        entry["subresources"] = subs.into();
    }
    entry
}

/// `GET /api` (`core == true`) or `GET /apis` as aggregated discovery.
pub fn aggregated(types: &[&ResourceType], core: bool, version: AggregatedVersion) -> Value {
    let items: Vec<Value> = resources::groups(types)
        .into_iter()
        .filter(|(g, _)| g.is_empty() == core)
        .map(|(g, versions)| {
            let versions: Vec<Value> = versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = resources::in_group_version(types, g, v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            let metadata = if g.is_empty() {
                json!({})
            } else {
                json!({"name": g})
            };
            json!({"metadata": metadata, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": version.api_version(),
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::testing::TYPES;

    #[test]
    fn core_discovery_lists_pods_with_short_names_and_subresources() {
        let doc = aggregated(TYPES, true, AggregatedVersion::V2);
        let items = doc["items"].as_array().unwrap();
        assert_eq!(items.len(), 1);
        let resources = items[0]["versions"][0]["resources"].as_array().unwrap();
        let pods = resources.iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["scope"], "Namespaced");
        assert!(
            pods["subresources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["subresource"] == "status")
        );
    }

    #[test]
    fn scale_answers_autoscaling_v1() {
        let doc = api_resource_list(TYPES, "apps", "v1").unwrap();
        let scale = doc["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "deployments/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
        assert!(api_resource_list(TYPES, "apps", "v9").is_none());
    }

    #[test]
    fn group_list_has_no_core_group() {
        let doc = api_group_list(TYPES);
        let names: Vec<&str> = doc["groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"apps"));
        assert!(!names.contains(&""));
        assert_eq!(
            api_group(TYPES, "apps").unwrap()["preferredVersion"]["groupVersion"],
            "apps/v1"
        );
    }
}
