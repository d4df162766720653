//! What the merge of a patch (`strategic.rs`) and the ownership of fields
//! (`managed_fields.rs`) need to know of a type as they walk an object: the type of a
//! field's values, how a list field merges, whether a field is a map, whether a value is
//! owned as a whole. Built-in kinds answer from their protobuf schema and upstream's patch
//! tags; custom resources from their structural schema (`x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys`, `x-kubernetes-map-type`), as upstream's server-side apply
//! reads them.

use crate::schema::schema;
use crate::structural::Schema;

/// How a list field merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListStrategy {
    /// Objects merged by these keys (one for built-in kinds' `patchMergeKey`; a custom
    /// resource's `x-kubernetes-list-map-keys` may name several).
    MergeByKey(&'static [&'static str]),
    /// Scalars merged as a set.
    MergeScalars,
    /// The patch's list replaces the original (upstream's `atomic`).
    Replace,
}

/// The type at one place of an object.
#[derive(Clone, Debug)]
pub enum TypeNode<'a> {
    /// A built-in kind's message (fully qualified, as [`crate::schema`] names it).
    Message(String),
    /// A node of a custom resource's structural schema.
    Schema(&'a Schema),
    /// Nothing known: objects merge key by key, lists are replaced.
    Unknown,
}

impl TypeNode<'static> {
    /// The root of a built-in kind (unknown when the schema does not have it).
    pub fn of(api_version: &str, kind: &str) -> TypeNode<'static> {
        let message = crate::schema::message_name(api_version, kind);
        if schema().message(&message).is_some() {
            TypeNode::Message(message)
        } else {
            TypeNode::Unknown
        }
    }
}

impl<'a> TypeNode<'a> {
    fn message(name: String) -> TypeNode<'a> {
        if name.is_empty() {
            TypeNode::Unknown
        } else {
            TypeNode::Message(name)
        }
    }

    /// The schema node of property `key` (map values through `additionalProperties`).
    fn property(s: &'a Schema, key: &str) -> Option<&'a Schema> {
        s.properties.get(key).or(s.additional.as_deref())
    }

    /// The type of field `key`'s values: a list's elements, a map's values.
    pub fn field(&self, key: &str) -> TypeNode<'a> {
        match self {
            TypeNode::Message(message) => {
                let s = schema();
                let Some(def) = s.resolve(message, key) else {
                    return TypeNode::Unknown;
                };
                match s.message(&def.type_name) {
                    Some(entry) if entry.map_entry => TypeNode::message(
                        entry
                            .fields
                            .get(&2)
                            .map(|v| v.type_name.clone())
                            .unwrap_or_default(),
                    ),
                    _ => TypeNode::message(def.type_name.clone()),
                }
            }
            TypeNode::Schema(s) => match Self::property(s, key) {
                Some(child) => match &child.items {
                    Some(items) => TypeNode::Schema(items),
                    None => TypeNode::Schema(child),
                },
                None => TypeNode::Unknown,
            },
            TypeNode::Unknown => TypeNode::Unknown,
        }
    }

    /// How the list field `key` merges.
    pub fn list_strategy(&self, key: &str) -> ListStrategy {
        match self {
            TypeNode::Message(message) => crate::strategic::builtin_list_strategy(message, key),
            TypeNode::Schema(s) => {
                let Some(child) = Self::property(s, key) else {
                    return ListStrategy::Replace;
                };
                match child.list_type.as_deref() {
                    Some("map") if !child.list_map_keys.is_empty() => {
                        ListStrategy::MergeByKey(child.list_map_keys)
                    }
                    Some("set") => ListStrategy::MergeScalars,
                    _ => ListStrategy::Replace,
                }
            }
            TypeNode::Unknown => ListStrategy::Replace,
        }
    }

    /// Whether field `key` is a map (each of its keys owned on its own).
    pub fn is_map_field(&self, key: &str) -> bool {
        match self {
            TypeNode::Message(message) => {
                let s = schema();
                s.resolve(message, key)
                    .and_then(|def| s.message(&def.type_name))
                    .is_some_and(|m| m.map_entry)
            }
            TypeNode::Schema(s) => Self::property(s, key).is_some_and(|child| {
                child.additional.is_some() && child.map_type.as_deref() != Some("atomic")
            }),
            TypeNode::Unknown => false,
        }
    }

    /// Whether a value of this type is owned as a whole (upstream's `structType=atomic`
    /// built-ins, `x-kubernetes-map-type: atomic`, free-form values).
    pub fn is_atomic(&self) -> bool {
        match self {
            TypeNode::Message(message) => {
                crate::managed_fields::atomic_struct(message) || crate::schema::is_opaque(message)
            }
            TypeNode::Schema(s) => {
                s.map_type.as_deref() == Some("atomic") || s.preserve_unknown || s.int_or_string
            }
            TypeNode::Unknown => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_schemas_say_how_their_lists_and_maps_merge() {
        let s = Schema::parse(
            &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["port", "protocol"],
                    "items": {"type": "object", "properties": {"port": {"type": "integer"},
                        "protocol": {"type": "string"}, "name": {"type": "string"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                    "properties": {"app": {"type": "string"}}}}}}}),
            "s",
        )
        .unwrap();
        let root = TypeNode::Schema(&s);
        let spec = root.field("spec");
        assert_eq!(
            spec.list_strategy("ports"),
            ListStrategy::MergeByKey(&["port", "protocol"])
        );
        assert_eq!(spec.list_strategy("tags"), ListStrategy::MergeScalars);
        assert_eq!(spec.list_strategy("args"), ListStrategy::Replace);
        assert!(spec.is_map_field("labels"));
        assert!(!spec.is_map_field("selector"));
        assert!(spec.field("selector").is_atomic());
        assert!(matches!(
            spec.field("ports").field("name"),
            TypeNode::Schema(_)
        ));
        let pod = TypeNode::of("v1", "Pod");
        assert_eq!(
            pod.field("spec").list_strategy("containers"),
            ListStrategy::MergeByKey(&["name"])
        );
        assert!(pod.field("metadata").is_map_field("labels"));
        assert!(matches!(
            TypeNode::of("example.com/v1", "Widget"),
            TypeNode::Unknown
        ));
    }
}
