//! OpenAPI v3 documents, one per group version, from the resource registry.
//!
//! What they carry today: every path with its operations, each tagged with
//! `x-kubernetes-group-version-kind` and `x-kubernetes-action`, and the `fieldValidation`
//! query parameter on writes — what kubectl reads to decide that the server validates fields
//! itself (so `apply`, `create -f` and `edit` work with their default `--validate=strict`).
//! Component schemas (for `kubectl explain`) are not generated yet.

use serde_json::{Map, Value, json};

use crate::resources::{self, ResourceType, Subresource};

fn gvk(rt: &ResourceType) -> Value {
    json!({"group": rt.group, "version": rt.version, "kind": rt.kind})
}

fn query_param(name: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": "string", "uniqueItems": true}})
}

fn path_param(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string", "uniqueItems": true}})
}

fn write_params() -> Vec<Value> {
    vec![
        query_param(
            "dryRun",
            "When present, indicates that modifications should not be persisted.",
        ),
        query_param(
            "fieldManager",
            "fieldManager is a name associated with the actor or entity that is making these changes.",
        ),
        query_param(
            "fieldValidation",
            "fieldValidation instructs the server on how to handle objects in the request containing unknown or duplicate fields. Valid values are: Ignore, Warn, Strict.",
        ),
    ]
}

fn operation(rt: &ResourceType, action: &str, id: &str, params: Vec<Value>) -> Value {
    json!({
        "operationId": id,
        "parameters": params,
        "responses": {"200": {"description": "OK"}, "401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": gvk(rt),
    })
}

fn id(verb: &str, rt: &ResourceType, suffix: &str) -> String {
    let gv: String = format!("{}{}", rt.group.split('.').next().unwrap_or(""), rt.version);
    let scope = if rt.namespaced { "Namespaced" } else { "" };
    format!("{verb}{}{scope}{}{suffix}", capitalize(&gv), rt.kind)
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

fn base_path(rt: &ResourceType) -> String {
    let root = if rt.group.is_empty() {
        "/api/v1".to_string()
    } else {
        format!("/apis/{}/{}", rt.group, rt.version)
    };
    if rt.namespaced {
        format!("{root}/namespaces/{{namespace}}/{}", rt.plural)
    } else {
        format!("{root}/{}", rt.plural)
    }
}

fn scope_params(rt: &ResourceType, named: bool) -> Vec<Value> {
    let mut p = Vec::new();
    if named {
        p.push(path_param("name"));
    }
    if rt.namespaced {
        p.push(path_param("namespace"));
    }
    p
}

/// The paths of one resource type.
fn resource_paths(rt: &ResourceType, paths: &mut Map<String, Value>) {
    let collection = base_path(rt);
    let mut ops = Map::new();
    ops.insert("parameters".into(), Value::Array(scope_params(rt, false)));
    if rt.verbs.contains(&"list") {
        ops.insert(
            "get".into(),
            operation(rt, "list", &id("list", rt, ""), vec![]),
        );
    }
    if rt.verbs.contains(&"create") {
        ops.insert(
            "post".into(),
            operation(rt, "post", &id("create", rt, ""), write_params()),
        );
    }
    if rt.verbs.contains(&"deletecollection") {
        ops.insert(
            "delete".into(),
            operation(
                rt,
                "deletecollection",
                &id("deleteCollection", rt, ""),
                vec![],
            ),
        );
    }
    paths.insert(collection.clone(), Value::Object(ops));
    if !rt.is_stored() {
        return;
    }
    let item = format!("{collection}/{{name}}");
    paths.insert(
        item.clone(),
        json!({
            "parameters": scope_params(rt, true),
            "get": operation(rt, "get", &id("read", rt, ""), vec![]),
            "put": operation(rt, "put", &id("replace", rt, ""), write_params()),
            "patch": operation(rt, "patch", &id("patch", rt, ""), write_params()),
            "delete": operation(rt, "delete", &id("delete", rt, ""), vec![]),
        }),
    );
    for &sub in rt.subresources {
        if sub == Subresource::Binding {
            continue;
        }
        let suffix = capitalize(sub.name());
        paths.insert(
            format!("{item}/{}", sub.name()),
            json!({
                "parameters": scope_params(rt, true),
                "get": operation(rt, "get", &id("read", rt, &suffix), vec![]),
                "put": operation(rt, "put", &id("replace", rt, &suffix), write_params()),
                "patch": operation(rt, "patch", &id("patch", rt, &suffix), write_params()),
            }),
        );
    }
}

/// The document for one group version (`api/v1`, `apis/apps/v1`), if it exists.
pub fn group_version_document(group: &str, version: &str, server_version: &str) -> Option<Value> {
    let mut paths = Map::new();
    for rt in resources::in_group_version(group, version) {
        resource_paths(rt, &mut paths);
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": server_version},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}

/// The `/openapi/v3` index keys: `api/v1`, `apis/apps/v1`, …
pub fn group_version_keys() -> Vec<String> {
    resources::groups()
        .into_iter()
        .flat_map(|(g, versions)| {
            versions.into_iter().map(move |v| {
                if g.is_empty() {
                    format!("api/{v}")
                } else {
                    format!("apis/{g}/{v}")
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        // kubectl's check before it trusts the server with --validate=strict.
        let doc = group_version_document("apps", "v1", "v1.33.0").unwrap();
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "Deployment"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
        assert!(
            doc["paths"]
                .get("/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale")
                .is_some()
        );
        assert!(group_version_document("apps", "v9", "v1").is_none());
    }

    #[test]
    fn the_index_names_every_group_version() {
        let keys = group_version_keys();
        assert!(keys.contains(&"api/v1".to_string()));
        assert!(keys.contains(&"apis/apps/v1".to_string()));
        let core = group_version_document("", "v1", "v1").unwrap();
        assert!(core["paths"].get("/api/v1/nodes/{name}").is_some());
        assert!(
            core["paths"]
                .get("/api/v1/namespaces/{namespace}/pods/{name}/status")
                .is_some()
        );
    }
}
