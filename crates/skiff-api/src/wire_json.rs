//! JSON as kube-apiserver writes it: an object's fields in the order of its Go struct
//! (`kind`, `apiVersion`, `metadata`, `spec`, `status`, and so on down), maps with sorted
//! keys, and every response body ending in a newline. Clients that compare bodies as text,
//! and people reading `curl` output, see what upstream's server would send.
//!
//! The order comes from the type schema ([`crate::schema`]): Kubernetes' generated.proto
//! files declare each message's fields in the Go struct's order. Objects of kinds the schema
//! does not know (custom resources) are written with sorted keys, which is what upstream's
//! unstructured encoding does too. Fields the schema does not name come after the named ones,
//! sorted.
//!
//! Invariants: the output is the same JSON value as `serde_json::to_vec` writes (only the
//! order of object members differs), and writing never fails.

use serde_json::{Map, Value};

use crate::schema::{MessageDef, is_opaque, message_name, schema};

/// The JSON of an API object (or list, or Status) in upstream's field order, without the
/// trailing newline (bodies add it: [`body`]).
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    write_object(&mut out, value);
    out
}

/// A response body: [`to_vec`] and a newline, as upstream ends every JSON body.
pub fn body(value: &Value) -> Vec<u8> {
    let mut out = to_vec(value);
    out.push(b'\n');
    out
}

/// Writes an object whose message is named by its own `apiVersion` and `kind`.
pub fn write_object(out: &mut Vec<u8>, value: &Value) {
    let message = match value {
        Value::Object(map) => match (
            map.get("apiVersion").and_then(Value::as_str),
            map.get("kind").and_then(Value::as_str),
        ) {
            (Some(api_version), Some(kind)) => Some(message_name(api_version, kind)),
            _ => None,
        },
        _ => None,
    };
    match message.as_deref().and_then(|m| schema().message(m)) {
        Some(def) => write_message(out, value, def, true),
        None => write_plain(out, value),
    }
}

/// Writes `value` as a message of the given name (`.api.core.v1.ObjectMeta`); sorted keys
/// when the schema does not know it.
pub fn write_as(out: &mut Vec<u8>, value: &Value, message: &str) {
    match schema().message(message) {
        Some(def) => write_message(out, value, def, false),
        None => write_plain(out, value),
    }
}

fn write_plain(out: &mut Vec<u8>, value: &Value) {
    serde_json::to_writer(&mut *out, value).expect("JSON values serialize");
}

fn write_key(out: &mut Vec<u8>, key: &str, first: &mut bool) {
    if !*first {
        out.push(b',');
    }
    *first = false;
    serde_json::to_writer(&mut *out, key).expect("strings serialize");
    out.push(b':');
}

/// Writes an object as message `def`: `kind` and `apiVersion` first at the top level (Go's
/// embedded TypeMeta), then the message's fields in declaration order, then the rest.
fn write_message(out: &mut Vec<u8>, value: &Value, def: &MessageDef, top: bool) {
    let Value::Object(map) = value else {
        return write_plain(out, value);
    };
    out.push(b'{');
    let mut first = true;
    let mut written = 0usize;
    if top {
        for key in ["kind", "apiVersion"] {
            if let Some(v) = map.get(key) {
                write_key(out, key, &mut first);
                write_plain(out, v);
                written += 1;
            }
        }
    }
    written += write_fields(out, map, def, &mut first);
    if written < map.len() {
        for (key, v) in map {
            let known = (top && (key == "kind" || key == "apiVersion"))
                || schema().resolve_in(def, key).is_some();
            if !known {
                write_key(out, key, &mut first);
                write_plain(out, v);
            }
        }
    }
    out.push(b'}');
}

/// Writes the members of `map` that `def` declares, in its order (an inlined embedding's
/// fields at its place); answers how many it wrote.
fn write_fields(
    out: &mut Vec<u8>,
    map: &Map<String, Value>,
    def: &MessageDef,
    first: &mut bool,
) -> usize {
    let mut written = 0;
    for number in &def.order {
        let Some(field) = def.fields.get(number) else {
            continue;
        };
        if def.inline.contains(number) {
            if let Some(inner) = schema().message(&field.type_name) {
                written += write_fields(out, map, inner, first);
            }
            continue;
        }
        let Some(v) = map.get(&field.name) else {
            continue;
        };
        write_key(out, &field.name, first);
        written += 1;
        write_field_value(out, v, field);
    }
    written
}

fn write_field_value(out: &mut Vec<u8>, v: &Value, field: &crate::schema::FieldDef) {
    use prost_types::field_descriptor_proto::Type;
    if field.type_name == ".apimachinery.pkg.runtime.RawExtension" {
        // An embedded object (a Table row's object, a WatchEvent's): upstream encoded it
        // in its own type's order.
        return match v {
            Value::Array(items) if field.repeated => write_list(out, items, write_object),
            _ => write_object(out, v),
        };
    }
    if field.ty != Type::Message || is_opaque(&field.type_name) {
        return write_plain(out, v);
    }
    let Some(def) = schema().message(&field.type_name) else {
        return write_plain(out, v);
    };
    if def.map_entry {
        // A map: keys sorted (as Go writes maps), values by the entry's value type.
        let Value::Object(entries) = v else {
            return write_plain(out, v);
        };
        let value_field = def.fields.get(&2);
        out.push(b'{');
        let mut first = true;
        for (key, item) in entries {
            write_key(out, key, &mut first);
            match value_field {
                Some(f) => write_field_value(out, item, f),
                None => write_plain(out, item),
            }
        }
        out.push(b'}');
        return;
    }
    match v {
        Value::Array(items) if field.repeated => {
            write_list(out, items, |out, item| write_message(out, item, def, false))
        }
        _ => write_message(out, v, def, false),
    }
}

fn write_list(out: &mut Vec<u8>, items: &[Value], mut write: impl FnMut(&mut Vec<u8>, &Value)) {
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write(out, item);
    }
    out.push(b']');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn keys(bytes: &[u8]) -> Vec<String> {
        // The top-level keys in the order written (serde_json's Map would sort them).
        let text = std::str::from_utf8(bytes).unwrap();
        let mut de = serde_json::Deserializer::from_str(text);
        struct Keys(Vec<String>);
        impl<'de> serde::de::Visitor<'de> for Keys {
            type Value = Vec<String>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                mut self,
                mut m: A,
            ) -> Result<Self::Value, A::Error> {
                while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                    self.0.push(k);
                }
                Ok(self.0)
            }
        }
        serde::Deserializer::deserialize_map(&mut de, Keys(Vec::new())).unwrap()
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "status": {"phase": "Running", "podIP": "10.42.0.5"},
            "spec": {"volumes": [{"name": "v", "emptyDir": {}}],
                     "containers": [{"name": "c", "image": "i", "args": ["a"],
                                     "resources": {"requests": {"memory": "1Mi", "cpu": "1"}}}]},
            "metadata": {"uid": "u", "namespace": "ns", "name": "p",
                         "labels": {"z": "1", "a": "2"}, "resourceVersion": "5"},
            "zzz-unknown": 1, "aaa-unknown": 2,
        })
    }

    #[test]
    fn objects_are_written_in_the_go_structs_order() {
        let bytes = to_vec(&pod());
        assert_eq!(
            keys(&bytes),
            [
                "kind",
                "apiVersion",
                "metadata",
                "spec",
                "status",
                "aaa-unknown",
                "zzz-unknown"
            ]
        );
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(r#""metadata":{"name":"p","namespace":"ns","uid":"u","resourceVersion":"5","labels":{"a":"2","z":"1"}}"#),
            "{text}"
        );
        assert!(text.contains(r#"{"name":"c","image":"i","args":["a"],"resources":{"requests":{"cpu":"1","memory":"1Mi"}}}"#), "{text}");
        // An inlined embedding's fields stand where the embedding is (Volume.volumeSource).
        assert!(
            text.contains(r#""volumes":[{"name":"v","emptyDir":{}}]"#),
            "{text}"
        );
        assert!(
            text.contains(r#""status":{"phase":"Running","podIP":"10.42.0.5"}"#),
            "{text}"
        );
    }

    #[test]
    fn the_value_is_the_same_whatever_the_order() {
        for value in [
            pod(),
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "code": 404, "reason": "NotFound", "message": "m", "details": {"name": "x", "kind": "pods"}}),
            json!({"kind": "Widget", "apiVersion": "example.com/v1", "spec": {"b": 1, "a": [1, {"y": 2, "x": 1}]}}),
            json!([1, "two", null]),
            json!({"apiVersion": "v1", "kind": "Pod", "spec": "not an object", "metadata": [1]}),
        ] {
            let written: Value = serde_json::from_slice(&to_vec(&value)).unwrap();
            assert_eq!(written, value);
        }
    }

    #[test]
    fn status_bodies_read_as_upstreams_and_end_with_a_newline() {
        let status = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": "pods \"x\" not found", "reason": "NotFound",
                            "details": {"name": "x", "kind": "pods"}, "code": 404});
        let text = String::from_utf8(body(&status)).unwrap();
        assert_eq!(
            text,
            "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":\"pods \\\"x\\\" not found\",\"reason\":\"NotFound\",\"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}\n"
        );
    }

    #[test]
    fn unknown_kinds_are_written_with_sorted_keys() {
        let cr =
            json!({"kind": "Widget", "apiVersion": "example.com/v1", "spec": {"b": 1, "a": 2}});
        assert_eq!(
            String::from_utf8(to_vec(&cr)).unwrap(),
            r#"{"apiVersion":"example.com/v1","kind":"Widget","spec":{"a":2,"b":1}}"#
        );
    }
}
