//! The type schema of the served API: Kubernetes' own protobuf descriptors, compiled from
//! upstream's generated.proto files (`data/kubernetes-1.33.protoset`, made by
//! `scripts/gen-protoset.sh`). It names every field of every message, which is what decoding
//! protobuf bodies and finding unknown fields in JSON ones both need. Proto field names are
//! the JSON names.

use std::collections::HashMap;
use std::sync::OnceLock;

use prost::Message as _;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};

#[derive(Debug)]
pub struct FieldDef {
    pub name: String,
    /// The field's documentation, from upstream's comments.
    pub description: String,
    pub ty: Type,
    pub repeated: bool,
    /// Fully qualified message name for message fields (`.api.core.v1.PodSpec`).
    pub type_name: String,
}

#[derive(Debug, Default)]
pub struct MessageDef {
    pub fields: HashMap<u32, FieldDef>,
    /// JSON name → field number.
    pub by_name: HashMap<String, u32>,
    /// Fields whose message is inlined in JSON (Go's `json:",inline"` embeddings): their
    /// fields are this message's fields.
    pub inline: Vec<u32>,
    pub map_entry: bool,
    /// Field numbers in declaration order (the order documents list them in).
    pub order: Vec<u32>,
    /// The message's documentation, from upstream's comments.
    pub description: String,
}

/// The embedded structs Go inlines in JSON, as (message, protobuf field). Protobuf nests them
/// (`Volume.volumeSource.emptyDir`); JSON does not (`volume.emptyDir`). Found by comparing
/// every message's fields with k8s-openapi's JSON field names for the same type (the core
/// group's), and among the other groups' fields named after their own message type, the
/// ones upstream's Go types embed: these are all the fields JSON does not name.
const INLINE_FIELDS: &[(&str, &str)] = &[
    (".api.core.v1.Volume", "volumeSource"),
    (".api.core.v1.Probe", "handler"),
    (
        ".api.core.v1.EphemeralContainer",
        "ephemeralContainerCommon",
    ),
    (
        ".api.core.v1.PersistentVolumeSpec",
        "persistentVolumeSource",
    ),
    (".api.core.v1.ConfigMapEnvSource", "localObjectReference"),
    (".api.core.v1.ConfigMapKeySelector", "localObjectReference"),
    (".api.core.v1.ConfigMapProjection", "localObjectReference"),
    (".api.core.v1.ConfigMapVolumeSource", "localObjectReference"),
    (".api.core.v1.SecretEnvSource", "localObjectReference"),
    (".api.core.v1.SecretKeySelector", "localObjectReference"),
    (".api.core.v1.SecretProjection", "localObjectReference"),
    (".api.networking.v1.IngressRule", "ingressRuleValue"),
    (".api.admissionregistration.v1.RuleWithOperations", "rule"),
    (
        ".api.admissionregistration.v1.NamedRuleWithOperations",
        "ruleWithOperations",
    ),
];

/// Every message of the served API groups, by fully qualified name.
/// Fields whose protobuf name is not their JSON name (upstream's Go field has a JSON tag
/// that differs from its protobuf tag): (message, protobuf name, JSON name). Every other
/// field of the schema is named alike in both, which a test checks.
const JSON_NAMES: &[(&str, &str, &str)] = &[
    (
        ".api.admissionregistration.v1.MutatingWebhookConfiguration",
        "Webhooks",
        "webhooks",
    ),
    (
        ".api.admissionregistration.v1.ValidatingWebhookConfiguration",
        "Webhooks",
        "webhooks",
    ),
    (
        ".api.admissionregistration.v1.Validation",
        "Expression",
        "expression",
    ),
    (
        ".api.admissionregistration.v1.Variable",
        "Expression",
        "expression",
    ),
    (".api.admissionregistration.v1.Variable", "Name", "name"),
];

/// The JSON name of a field of `message`.
fn json_name<'a>(message: &str, proto: &'a str) -> &'a str {
    JSON_NAMES
        .iter()
        .find(|(m, p, _)| *m == message && *p == proto)
        .map_or(proto, |(_, _, json)| json)
}

pub struct Schema {
    pub messages: HashMap<String, MessageDef>,
}

/// Upstream's comment as documentation, as its OpenAPI generator renders it: the `+marker`
/// lines (code generator tags) dropped, wrapped lines joined with spaces, paragraphs kept.
fn describe(comments: &HashMap<Vec<i32>, String>, path: &[i32]) -> String {
    let Some(comment) = comments.get(path) else {
        return String::new();
    };
    let mut paragraphs: Vec<String> = vec![String::new()];
    for line in comment.lines().map(str::trim) {
        if line.starts_with('+') || line == "---" {
            continue;
        }
        let current = paragraphs.last_mut().expect("one paragraph at least");
        if line.is_empty() {
            if !current.is_empty() {
                paragraphs.push(String::new());
            }
        } else {
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(line);
        }
    }
    paragraphs.retain(|p| !p.is_empty());
    paragraphs.join("\n\n")
}

fn collect(
    prefix: &str,
    msg: &DescriptorProto,
    path: Vec<i32>,
    comments: &HashMap<Vec<i32>, String>,
    out: &mut HashMap<String, MessageDef>,
) {
    let full = format!("{prefix}.{}", msg.name());
    let mut def = MessageDef {
        map_entry: msg.options.as_ref().is_some_and(|o| o.map_entry()),
        description: describe(comments, &path),
        ..MessageDef::default()
    };
    for (i, f) in msg.field.iter().enumerate() {
        if INLINE_FIELDS.contains(&(full.as_str(), f.name())) {
            def.inline.push(f.number() as u32);
        }
        let name = json_name(&full, f.name());
        def.by_name.insert(name.to_string(), f.number() as u32);
        def.order.push(f.number() as u32);
        let field_path: Vec<i32> = path.iter().copied().chain([2, i as i32]).collect();
        def.fields.insert(
            f.number() as u32,
            FieldDef {
                // Kubernetes' proto field names are its JSON names (but for `JSON_NAMES`).
                name: name.to_string(),
                description: describe(comments, &field_path),
                ty: f.r#type(),
                repeated: f.label() == Label::Repeated,
                type_name: f.type_name().to_string(),
            },
        );
    }
    for (j, nested) in msg.nested_type.iter().enumerate() {
        let nested_path = path.iter().copied().chain([3, j as i32]).collect();
        collect(&full, nested, nested_path, comments, out);
    }
    out.insert(full, def);
}

pub fn schema() -> &'static Schema {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let bytes = include_bytes!("../data/kubernetes-1.33.protoset");
        let set = FileDescriptorSet::decode(&bytes[..]).expect(
            "the committed descriptor set decodes (regenerate with scripts/gen-protoset.sh)",
        );
        let mut messages = HashMap::new();
        for file in &set.file {
            let prefix = format!(".{}", file.package());
            let comments: HashMap<Vec<i32>, String> = file
                .source_code_info
                .iter()
                .flat_map(|info| &info.location)
                .filter_map(|l| Some((l.path.clone(), l.leading_comments.clone()?)))
                .collect();
            for (i, msg) in file.message_type.iter().enumerate() {
                collect(&prefix, msg, vec![4, i as i32], &comments, &mut messages);
            }
        }
        Schema { messages }
    })
}

/// The apimachinery kinds every group version carries.
const META_IN_EVERY_GROUP: &[&str] = &[
    "Status",
    "DeleteOptions",
    "CreateOptions",
    "UpdateOptions",
    "PatchOptions",
    "GetOptions",
    "ListOptions",
    "WatchEvent",
];

/// The message that carries objects of `apiVersion`/`kind` (`.api.apps.v1.Deployment`).
pub fn message_name(api_version: &str, kind: &str) -> String {
    let (group, version) = crate::resources::split_api_version(api_version);
    // apimachinery's option and error kinds belong to every group version (upstream's
    // `AddToGroupVersion`): client-go sends `DeleteOptions` as `v1` or `apps/v1` alike.
    if META_IN_EVERY_GROUP.contains(&kind) || group == "meta.k8s.io" {
        return format!(".apimachinery.pkg.apis.meta.v1.{kind}");
    }
    // The two groups served by upstream's extension servers have their packages there.
    match group {
        "apiextensions.k8s.io" => {
            return format!(".apiextensions_apiserver.pkg.apis.apiextensions.{version}.{kind}");
        }
        "apiregistration.k8s.io" => {
            return format!(".kube_aggregator.pkg.apis.apiregistration.{version}.{kind}");
        }
        _ => {}
    }
    let short = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    format!(".api.{short}.{version}.{kind}")
}

impl MessageDef {
    /// The field with this JSON name.
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.get(self.by_name.get(name)?)
    }
}

impl Schema {
    pub fn message(&self, name: &str) -> Option<&MessageDef> {
        self.messages.get(name)
    }

    /// The field a JSON key names in a message, looking through inlined embeddings.
    pub fn resolve(&self, message: &str, key: &str) -> Option<&FieldDef> {
        self.resolve_in(self.message(message)?, key)
    }

    /// [`Schema::resolve`] in a message already looked up.
    pub fn resolve_in<'a>(&'a self, def: &'a MessageDef, key: &str) -> Option<&'a FieldDef> {
        if let Some(n) = def.by_name.get(key)
            && !def.inline.contains(n)
        {
            return def.fields.get(n);
        }
        def.inline
            .iter()
            .filter_map(|n| def.fields.get(n))
            .find_map(|f| self.resolve(&f.type_name, key))
    }
}

/// Messages whose JSON form is a scalar or free-form JSON, not their message shape.
pub fn is_opaque(message: &str) -> bool {
    matches!(
        message,
        ".apimachinery.pkg.apis.meta.v1.Time"
            | ".apimachinery.pkg.apis.meta.v1.MicroTime"
            | ".apimachinery.pkg.apis.meta.v1.Duration"
            | ".apimachinery.pkg.util.intstr.IntOrString"
            | ".apimachinery.pkg.api.resource.Quantity"
            | ".apimachinery.pkg.runtime.RawExtension"
            | ".apimachinery.pkg.apis.meta.v1.FieldsV1"
    ) || message.ends_with(".ExtraValue")
        // A CustomResourceDefinition's schema is JSON Schema, whose JSON (`x-kubernetes-*`,
        // `$ref`, a bool or a schema, a schema or a list) is not its message's shape; it is
        // checked as a schema instead (`structural.rs`).
        || message.starts_with(".apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps")
        || message == ".apiextensions_apiserver.pkg.apis.apiextensions.v1.JSON"
}

/// Removes the fields of `obj` that its type does not have (upstream drops them when it
/// decodes into Go structs) and answers their paths (`spec.template.spec.containers[0].bogus`)
/// for `fieldValidation`. Types the schema does not know are left alone.
pub fn prune_unknown_fields(
    api_version: &str,
    kind: &str,
    obj: &mut serde_json::Value,
) -> Vec<String> {
    let name = message_name(api_version, kind);
    let mut unknown = Vec::new();
    if schema().message(&name).is_none() {
        return unknown;
    }
    if let serde_json::Value::Object(map) = obj {
        map.retain(|k, v| {
            if k == "apiVersion" || k == "kind" {
                return true;
            }
            prune_field(&name, k, v, k, &mut unknown)
        });
    }
    unknown
}

/// Prunes one field of a message; answers whether the field exists.
fn prune_field(
    message: &str,
    key: &str,
    value: &mut serde_json::Value,
    path: &str,
    unknown: &mut Vec<String>,
) -> bool {
    if schema().message(message).is_none() {
        return true;
    }
    let Some(field) = schema().resolve(message, key) else {
        unknown.push(path.to_string());
        return false;
    };
    if field.ty != Type::Message || value.is_null() {
        return true;
    }
    let target = field.type_name.as_str();
    let entry = schema().message(target);
    if let Some(entry) = entry.filter(|m| m.map_entry) {
        // A map: keys are free, values have the entry's value type.
        let value_field = entry.fields.get(&2);
        if let (Some(vf), serde_json::Value::Object(map)) = (value_field, value)
            && vf.ty == Type::Message
        {
            for (k, v) in map.iter_mut() {
                prune_value(&vf.type_name, v, &format!("{path}.{k}"), unknown);
            }
        }
        return true;
    }
    match value {
        serde_json::Value::Array(items) if field.repeated => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_value(target, item, &format!("{path}[{i}]"), unknown);
            }
        }
        other => prune_value(target, other, path, unknown),
    }
    true
}

fn prune_value(
    message: &str,
    value: &mut serde_json::Value,
    path: &str,
    unknown: &mut Vec<String>,
) {
    if is_opaque(message) {
        return;
    }
    if let serde_json::Value::Object(map) = value {
        map.retain(|k, v| prune_field(message, k, v, &format!("{path}.{k}"), unknown));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_fields_are_found_at_every_depth_and_removed() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "labels": {"any": "key"}, "bogus": 1},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                     "strategy": {"rollingUpdate": {"maxSurge": "25%"}},
                     "template": {"metadata": {"creationTimestamp": null},
                                  "spec": {"containers": [{"name": "c", "image": "i", "wat": true,
                                           "resources": {"limits": {"cpu": "1"}},
                                           "ports": [{"containerPort": 80, "extra": 1}]}]}},
                     "replicaz": 3},
            "status": {}
        });
        let unknown = prune_unknown_fields("apps/v1", "Deployment", &mut d);
        assert_eq!(
            unknown,
            [
                "metadata.bogus",
                "spec.replicaz",
                "spec.template.spec.containers[0].ports[0].extra",
                "spec.template.spec.containers[0].wat",
            ]
        );
        assert!(d["spec"].get("replicaz").is_none());
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "1"
        );
        assert_eq!(d["metadata"]["labels"]["any"], "key");
    }

    #[test]
    fn inlined_embeddings_are_fields_of_their_parent() {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {
            "volumes": [{"name": "v", "emptyDir": {}}, {"name": "c", "configMap": {"name": "cm", "items": []}}],
            "containers": [{"name": "c", "image": "i", "env": [{"name": "A", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}]}],
            "ephemeralContainers": [{"name": "debug", "image": "busybox", "targetContainerName": "c"}]}});
        let before = pod.clone();
        assert!(prune_unknown_fields("v1", "Pod", &mut pod).is_empty());
        assert_eq!(pod, before);
        let mut bad = json!({"spec": {"volumes": [{"name": "v", "volumeSource": {}}]}});
        assert_eq!(
            prune_unknown_fields("v1", "Pod", &mut bad),
            ["spec.volumes[0].volumeSource"]
        );
    }

    #[test]
    fn descriptions_come_from_upstream_comments_without_markers() {
        let spec = schema().message(".api.apps.v1.DeploymentSpec").unwrap();
        let replicas = spec.field("replicas").unwrap();
        assert!(
            replicas.description.starts_with("Number of desired pods."),
            "{}",
            replicas.description
        );
        assert!(!replicas.description.contains("+optional"));
        let d = schema().message(".api.apps.v1.Deployment").unwrap();
        assert!(
            d.description
                .contains("Deployment enables declarative updates"),
            "{}",
            d.description
        );
    }
}

#[cfg(test)]
mod json_name_tests {
    /// Capitalized names are protobuf's, not JSON's: each is renamed or is upstream's own
    /// JSON name (DaemonEndpoint's `Port`; FieldsV1's `Raw` is opaque JSON).
    #[test]
    fn every_field_has_its_json_name() {
        let s = super::schema();
        let mut capitalized: Vec<String> = s
            .messages
            .iter()
            .flat_map(|(name, m)| m.fields.values().map(move |f| (name, f)))
            .filter(|(_, f)| f.name.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|(name, f)| format!("{name}.{}", f.name))
            .collect();
        capitalized.sort();
        assert_eq!(
            capitalized,
            [
                ".api.core.v1.DaemonEndpoint.Port",
                ".apimachinery.pkg.apis.meta.v1.FieldsV1.Raw"
            ]
        );
    }
}
