//! OpenAPI v3 documents, one per group version, from the resource registry.
//!
//! Every path with its operations, each tagged with `x-kubernetes-group-version-kind` and
//! `x-kubernetes-action`, and the `fieldValidation` query parameter on writes — what kubectl
//! reads to decide that the server validates fields itself (so `apply`, `create -f` and
//! `edit` work with their default `--validate=strict`). And the component schemas of every
//! type the group version uses, generated from the type schema ([`crate::schema`]) with
//! upstream's descriptions and patch strategies — what `kubectl explain` prints.

use prost_types::field_descriptor_proto::Type;
use serde_json::{Map, Value, json};

use crate::resources::{self, ResourceType, Subresource};
use crate::schema::{FieldDef, is_opaque, message_name, schema};

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
        // Create-only subresources have no get/put/patch to describe.
        if matches!(sub, Subresource::Binding | Subresource::Token) {
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

/// The component name of a message (`io.k8s.api.apps.v1.Deployment`).
fn schema_name(message: &str) -> String {
    // Upstream's names keep the Go module's dashes, which protobuf packages cannot have.
    let name = message
        .trim_start_matches('.')
        .replacen("apiextensions_apiserver.", "apiextensions-apiserver.", 1)
        .replacen("kube_aggregator.", "kube-aggregator.", 1);
    format!("io.k8s.{name}")
}

fn reference(message: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{}", schema_name(message))})
}

/// The schemas of the apimachinery types whose JSON is not their message shape.
fn opaque_schema(message: &str) -> Value {
    match message.rsplit('.').next().unwrap_or_default() {
        "Time" | "MicroTime" => json!({"type": "string", "format": "date-time"}),
        "IntOrString" => {
            json!({"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": true})
        }
        "Quantity" => json!({"type": "string", "format": "quantity"}),
        "Duration" => json!({"type": "string"}),
        "ExtraValue" => json!({"type": "array", "items": {"type": "string", "default": ""}}),
        _ => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    }
}

fn scalar_schema(ty: Type) -> Value {
    match ty {
        Type::String => json!({"type": "string"}),
        Type::Bool => json!({"type": "boolean"}),
        Type::Int32 | Type::Uint32 | Type::Sint32 | Type::Fixed32 | Type::Sfixed32 | Type::Enum => {
            json!({"type": "integer", "format": "int32"})
        }
        Type::Int64 | Type::Uint64 | Type::Sint64 | Type::Fixed64 | Type::Sfixed64 => {
            json!({"type": "integer", "format": "int64"})
        }
        Type::Double | Type::Float => json!({"type": "number", "format": "double"}),
        Type::Bytes => json!({"type": "string", "format": "byte"}),
        Type::Message | Type::Group => json!({"type": "object"}),
    }
}

/// The schema of one field of `parent`, queueing the messages it refers to.
fn field_schema(parent: &str, field: &FieldDef, queue: &mut Vec<String>) -> Value {
    let value_schema = |f: &FieldDef, queue: &mut Vec<String>| -> Value {
        if f.ty == Type::Message {
            queue.push(f.type_name.clone());
            reference(&f.type_name)
        } else {
            scalar_schema(f.ty)
        }
    };
    let entry = schema().message(&field.type_name).filter(|m| m.map_entry);
    let mut out = if let Some(entry) = entry {
        let value = entry
            .fields
            .get(&2)
            .map(|v| value_schema(v, queue))
            .unwrap_or_else(|| json!({}));
        json!({"type": "object", "additionalProperties": value})
    } else if field.repeated {
        let mut list = json!({"type": "array", "items": value_schema(field, queue)});
        if let Some((strategy, key)) = crate::strategic::patch_extensions(parent, &field.name) {
            list["x-kubernetes-patch-strategy"] = strategy.into();
            match key {
                Some(k) => {
                    list["x-kubernetes-patch-merge-key"] = k.into();
                    list["x-kubernetes-list-type"] = "map".into();
                    list["x-kubernetes-list-map-keys"] = json!([k]);
                }
                None => list["x-kubernetes-list-type"] = "set".into(),
            }
        }
        list
    } else if field.ty == Type::Message {
        // A reference with a description is wrapped, as upstream's v3 documents do.
        queue.push(field.type_name.clone());
        json!({"allOf": [reference(&field.type_name)]})
    } else {
        scalar_schema(field.ty)
    };
    if !field.description.is_empty() {
        out["description"] = field.description.clone().into();
    }
    out
}

/// The properties of a message, inlined embeddings expanded.
fn properties(message: &str, props: &mut Map<String, Value>, queue: &mut Vec<String>) {
    let Some(def) = schema().message(message) else {
        return;
    };
    for n in &def.order {
        let field = &def.fields[n];
        if def.inline.contains(n) {
            properties(&field.type_name, props, queue);
        } else {
            props.insert(field.name.clone(), field_schema(message, field, queue));
        }
    }
}

/// The schema of one message.
fn message_schema(message: &str, queue: &mut Vec<String>) -> Value {
    let description = schema()
        .message(message)
        .map(|d| d.description.clone())
        .unwrap_or_default();
    let mut out = if is_opaque(message) {
        opaque_schema(message)
    } else {
        let mut props = Map::new();
        properties(message, &mut props, queue);
        json!({"type": "object", "properties": props})
    };
    if !description.is_empty() {
        out["description"] = description.into();
    }
    out
}

/// A custom resource's schema for one version, as its definition gives it: the object's
/// own schema, with apiVersion, kind and metadata added as upstream adds them.
pub struct CustomSchema<'a> {
    pub group: &'a str,
    pub version: &'a str,
    pub kind: &'a str,
    pub schema: Value,
}

/// Upstream's component name of a custom kind: the group reversed, then version and kind
/// (`com.example.v1.Widget`).
pub fn custom_schema_name(group: &str, version: &str, kind: &str) -> String {
    let reversed: Vec<&str> = group.split('.').rev().collect();
    format!("{}.{version}.{kind}", reversed.join("."))
}

const OBJECT_META: &str = ".k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta";

fn custom_component(custom: CustomSchema<'_>, queue: &mut Vec<String>) -> (String, Value) {
    let mut root = custom.schema;
    if !root.is_object() {
        root = json!({"type": "object"});
    }
    root["type"] = "object".into();
    let props = root
        .as_object_mut()
        .expect("made an object")
        .entry("properties")
        .or_insert_with(|| json!({}));
    if let Some(props) = props.as_object_mut() {
        props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values."}));
        props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase."}));
        props.insert("metadata".into(), json!({"allOf": [reference(OBJECT_META)], "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"}));
    }
    queue.push(OBJECT_META.to_string());
    root["x-kubernetes-group-version-kind"] =
        json!([{"group": custom.group, "kind": custom.kind, "version": custom.version}]);
    (
        custom_schema_name(custom.group, custom.version, custom.kind),
        root,
    )
}

/// Component schemas for the given kinds (and custom kinds) and everything they refer to.
fn components(kinds: &[(&str, &str, &str)], customs: Vec<CustomSchema<'_>>) -> Map<String, Value> {
    let mut out = Map::new();
    let mut queue = Vec::new();
    for custom in customs {
        let (name, schema) = custom_component(custom, &mut queue);
        out.insert(name, schema);
    }
    for (group, version, kind) in kinds {
        let api_version = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        let message = message_name(&api_version, kind);
        if schema().message(&message).is_none() {
            continue;
        }
        let mut root = message_schema(&message, &mut queue);
        let props = root["properties"]
            .as_object_mut()
            .expect("kinds are objects");
        props.insert("apiVersion".into(), json!({"type": "string", "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values."}));
        props.insert("kind".into(), json!({"type": "string", "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase."}));
        root["x-kubernetes-group-version-kind"] =
            json!([{"group": group, "kind": kind, "version": version}]);
        out.insert(schema_name(&message), root);
    }
    while let Some(message) = queue.pop() {
        let name = schema_name(&message);
        if !out.contains_key(&name) {
            let s = message_schema(&message, &mut queue);
            out.insert(name, s);
        }
    }
    out
}

/// Where a custom kind's schema comes from (built-in kinds have theirs in the protobuf
/// schema): `None` for a built-in kind.
pub type CustomSchemas<'a> = &'a dyn Fn(&ResourceType) -> Option<Value>;

/// No custom kinds.
pub fn builtin_only(_: &ResourceType) -> Option<Value> {
    None
}

/// The document for one group version (`api/v1`, `apis/apps/v1`), if it exists.
pub fn group_version_document(
    types: &[&ResourceType],
    group: &str,
    version: &str,
    server_version: &str,
    custom: CustomSchemas<'_>,
) -> Option<Value> {
    let mut paths = Map::new();
    let mut kinds = Vec::new();
    let mut customs = Vec::new();
    for rt in resources::in_group_version(types, group, version) {
        resource_paths(rt, &mut paths);
        match custom(rt) {
            Some(schema) => customs.push(CustomSchema {
                group: rt.group,
                version: rt.version,
                kind: rt.kind,
                schema,
            }),
            None => kinds.push((rt.group, rt.version, rt.kind)),
        }
        if rt.has_subresource(Subresource::Scale)
            && !kinds.contains(&("autoscaling", "v1", "Scale"))
        {
            kinds.push(("autoscaling", "v1", "Scale"));
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": server_version},
        "paths": paths,
        "components": {"schemas": components(&kinds, customs)},
    }))
}

/// Rewrites a v3 fragment into Swagger 2.0: references point at `#/definitions/`, and
/// parameters carry their type directly.
fn to_swagger(v: &mut Value) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                *r = r.replace("#/components/schemas/", "#/definitions/");
            }
            if map.get("in").is_some()
                && let Some(Value::Object(schema)) = map.remove("schema")
            {
                map.extend(schema);
            }
            map.values_mut().for_each(to_swagger);
        }
        Value::Array(items) => items.iter_mut().for_each(to_swagger),
        _ => {}
    }
}

/// `/openapi/v2`: every group version in one Swagger 2.0 document (JSON), for clients that
/// still read it.
pub fn swagger_document(
    types: &[&ResourceType],
    server_version: &str,
    custom: CustomSchemas<'_>,
) -> Value {
    let mut paths = Map::new();
    let mut definitions = Map::new();
    for (group, versions) in resources::groups(types) {
        for version in versions {
            let Some(doc) = group_version_document(types, group, version, server_version, custom)
            else {
                continue;
            };
            if let Some(p) = doc["paths"].as_object() {
                paths.extend(p.clone());
            }
            if let Some(d) = doc["components"]["schemas"].as_object() {
                definitions.extend(d.clone());
            }
        }
    }
    let mut doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": server_version},
        "paths": paths,
        "definitions": definitions,
    });
    to_swagger(&mut doc);
    doc
}

/// The `/openapi/v3` index keys: `api/v1`, `apis/apps/v1`, …
pub fn group_version_keys(types: &[&ResourceType]) -> Vec<String> {
    resources::groups(types)
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
    use crate::resources::testing::TYPES;

    #[test]
    fn patch_operations_carry_gvk_and_field_validation() {
        // kubectl's check before it trusts the server with --validate=strict.
        let doc = group_version_document(TYPES, "apps", "v1", "v1.33.0", &builtin_only).unwrap();
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
        assert!(group_version_document(TYPES, "apps", "v9", "v1", &builtin_only).is_none());
    }

    #[test]
    fn schemas_carry_descriptions_references_and_patch_strategies() {
        let doc = group_version_document(TYPES, "apps", "v1", "v1.33.0", &builtin_only).unwrap();
        let schemas = &doc["components"]["schemas"];
        let d = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["x-kubernetes-group-version-kind"][0]["kind"],
            "Deployment"
        );
        assert_eq!(
            d["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert!(
            strategy["description"]
                .as_str()
                .unwrap()
                .contains("replace existing pods")
        );
        let containers = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(
            containers["items"]["$ref"],
            "#/components/schemas/io.k8s.api.core.v1.Container"
        );
        // Inlined embeddings are the parent's own properties.
        let volume = &schemas["io.k8s.api.core.v1.Volume"]["properties"];
        assert!(volume.get("emptyDir").is_some() && volume.get("volumeSource").is_none());
        let labels =
            &schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["labels"];
        assert_eq!(labels["additionalProperties"]["type"], "string");
        assert_eq!(
            schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["x-kubernetes-int-or-string"],
            true
        );
        assert!(schemas.get("io.k8s.api.autoscaling.v1.Scale").is_some());
    }

    #[test]
    fn the_swagger_document_uses_definitions() {
        let doc = swagger_document(TYPES, "v1.33.0", &builtin_only);
        assert_eq!(doc["swagger"], "2.0");
        let d = &doc["definitions"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            d["properties"]["spec"]["allOf"][0]["$ref"],
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        let fv = patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "fieldValidation")
            .unwrap();
        assert_eq!(fv["type"], "string");
        assert!(fv.get("schema").is_none());
        assert!(!doc.to_string().contains("#/components/"));
    }

    #[test]
    fn the_index_names_every_group_version() {
        let keys = group_version_keys(TYPES);
        assert!(keys.contains(&"api/v1".to_string()));
        assert!(keys.contains(&"apis/apps/v1".to_string()));
        let core = group_version_document(TYPES, "", "v1", "v1", &builtin_only).unwrap();
        assert!(core["paths"].get("/api/v1/nodes/{name}").is_some());
        assert!(
            core["paths"]
                .get("/api/v1/namespaces/{namespace}/pods/{name}/status")
                .is_some()
        );
    }

    #[test]
    fn custom_kinds_carry_their_definitions_schema() {
        let widgets = crate::resource_type!("example.com", "v1", "Widget", "widgets", "widget",
            namespaced: true, short: [], categories: [], sub: [Status, Scale]);
        let custom = |rt: &ResourceType| {
            (rt.kind == "Widget").then(|| {
                json!({"type": "object", "description": "A widget.",
                    "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}})
            })
        };
        let doc = group_version_document(&[&widgets], "example.com", "v1", "v1", &custom).unwrap();
        let schemas = &doc["components"]["schemas"];
        let w = &schemas["com.example.v1.Widget"];
        assert_eq!(
            w["properties"]["spec"]["properties"]["size"]["type"],
            "integer"
        );
        assert_eq!(w["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
        assert!(w["properties"]["metadata"]["allOf"][0]["$ref"].is_string());
        assert!(schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"].is_object());
        assert!(schemas["io.k8s.api.autoscaling.v1.Scale"].is_object());
        assert!(
            doc["paths"]["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/scale"]
                .is_object()
        );
    }
}
