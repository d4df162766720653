//! `/openapi/v2` as protobuf (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`):
//! the Swagger 2.0 document of [`crate::openapi::swagger_document`] in gnostic's
//! `openapi.v2.Document` message, which kubectl ≤ 1.28 reads to learn whether the server
//! validates fields (a `fieldValidation` parameter on an operation with
//! `x-kubernetes-group-version-kind`) and, if not, to validate manifests itself.
//!
//! Only what the JSON document holds is written: paths with their operations, parameters
//! and responses, and the definitions' schemas. Values gnostic keeps as `Any` (defaults,
//! enums, vendor extensions) are written as YAML text, for which JSON text serves. Field
//! numbers are gnostic's (`openapiv2/OpenAPIv2.proto`); proto3 leaves out empty values.

use serde_json::{Map, Value};

/// The content type kubectl asks for.
pub const CONTENT_TYPE: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

/// A protobuf message being written.
#[derive(Default)]
struct Message(Vec<u8>);

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn bytes(&mut self, number: u32, bytes: &[u8]) {
        self.varint(u64::from(number) << 3 | 2);
        self.varint(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }

    fn string(&mut self, number: u32, value: Option<&Value>) {
        if let Some(s) = value.and_then(Value::as_str).filter(|s| !s.is_empty()) {
            self.bytes(number, s.as_bytes());
        }
    }

    fn strings(&mut self, number: u32, value: Option<&Value>) {
        for s in value.and_then(Value::as_array).into_iter().flatten() {
            self.string(number, Some(s));
        }
    }

    fn boolean(&mut self, number: u32, value: Option<&Value>) {
        if value.and_then(Value::as_bool) == Some(true) {
            self.varint(u64::from(number) << 3);
            self.varint(1);
        }
    }

    fn message(&mut self, number: u32, inner: Message) {
        self.bytes(number, &inner.0);
    }

    /// An `Any` field (see [`any`]).
    fn any(&mut self, number: u32, value: &Value) {
        self.message(number, any(value));
    }

    /// `NamedAny` entries for the `x-…` keys of an object.
    fn vendor_extensions(&mut self, number: u32, object: &Map<String, Value>) {
        for (name, value) in object.iter().filter(|(k, _)| k.starts_with("x-")) {
            self.message(number, named(name, any(value)));
        }
    }
}

/// gnostic's `Any`: the value as YAML text (field 2; JSON is YAML).
fn any(value: &Value) -> Message {
    let mut any = Message::default();
    any.bytes(2, value.to_string().as_bytes());
    any
}

/// gnostic's `Named…` entry of a map: the key (1) and the value's message (2).
fn named(name: &str, value: Message) -> Message {
    let mut entry = Message::default();
    entry.bytes(1, name.as_bytes());
    entry.message(2, value);
    entry
}

/// The members of the object at `key` of `value` (none when it is absent or no object).
fn members<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = (&'a String, &'a Value)> {
    value
        .get(key)
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

/// The elements of the array at `key` of `value` (none when it is absent or no array).
fn each<'a>(value: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    value
        .get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// The protobuf form of a Swagger 2.0 document (JSON).
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut out = Message::default();
    out.string(1, doc.get("swagger"));
    if let Some(info) = doc.get("info") {
        let mut m = Message::default();
        m.string(1, info.get("title"));
        m.string(2, info.get("version"));
        out.message(2, m);
    }
    let mut paths = Message::default();
    for (path, item) in members(doc, "paths") {
        paths.message(2, named(path, path_item(item)));
    }
    out.message(8, paths);
    let mut definitions = Message::default();
    for (name, s) in members(doc, "definitions") {
        definitions.message(1, named(name, schema(s)));
    }
    out.message(9, definitions);
    out.0
}

fn path_item(item: &Value) -> Message {
    let mut m = Message::default();
    for (method, number) in [
        ("get", 2),
        ("put", 3),
        ("post", 4),
        ("delete", 5),
        ("options", 6),
        ("head", 7),
        ("patch", 8),
    ] {
        if let Some(op) = item.get(method) {
            m.message(number, operation(op));
        }
    }
    for p in each(item, "parameters") {
        m.message(9, parameters_item(p));
    }
    if let Some(o) = item.as_object() {
        m.vendor_extensions(10, o);
    }
    m
}

fn operation(op: &Value) -> Message {
    let mut m = Message::default();
    m.strings(1, op.get("tags"));
    m.string(2, op.get("summary"));
    m.string(3, op.get("description"));
    m.string(5, op.get("operationId"));
    m.strings(6, op.get("produces"));
    m.strings(7, op.get("consumes"));
    for p in each(op, "parameters") {
        m.message(8, parameters_item(p));
    }
    if op.get("responses").is_some() {
        let mut r = Message::default();
        for (code, response) in members(op, "responses") {
            let mut value = Message::default();
            let mut body = Message::default();
            body.string(1, response.get("description"));
            if let Some(s) = response.get("schema") {
                let mut item = Message::default();
                item.message(1, schema(s));
                body.message(2, item);
            }
            value.message(1, body);
            r.message(1, named(code, value));
        }
        m.message(9, r);
    }
    m.strings(10, op.get("schemes"));
    m.boolean(11, op.get("deprecated"));
    if let Some(o) = op.as_object() {
        m.vendor_extensions(13, o);
    }
    m
}

/// A parameter (by its `in`) or a reference to one.
fn parameters_item(p: &Value) -> Message {
    let mut item = Message::default();
    if let Some(reference) = p.get("$ref") {
        let mut r = Message::default();
        r.string(1, Some(reference));
        item.message(2, r);
        return item;
    }
    let mut parameter = Message::default();
    let location = p.get("in").and_then(Value::as_str).unwrap_or_default();
    if location == "body" {
        let mut body = Message::default();
        body.string(1, p.get("description"));
        body.string(2, p.get("name"));
        body.string(3, p.get("in"));
        body.boolean(4, p.get("required"));
        if let Some(s) = p.get("schema") {
            body.message(5, schema(s));
        }
        parameter.message(1, body);
    } else {
        // Header, formData, query and path parameters share their first fields; after
        // `name`, formData and query have `allowEmptyValue`, which shifts the rest by one.
        let (variant, shift) = match location {
            "header" => (1, 0),
            "formData" => (2, 1),
            "query" => (3, 1),
            _ => (4, 0),
        };
        let mut sub = Message::default();
        sub.boolean(1, p.get("required"));
        sub.string(2, p.get("in"));
        sub.string(3, p.get("description"));
        sub.string(4, p.get("name"));
        if shift == 1 {
            sub.boolean(5, p.get("allowEmptyValue"));
        }
        sub.string(5 + shift, p.get("type"));
        sub.string(6 + shift, p.get("format"));
        sub.boolean(19 + shift, p.get("uniqueItems"));
        let mut non_body = Message::default();
        non_body.message(variant, sub);
        parameter.message(2, non_body);
    }
    item.message(1, parameter);
    item
}

fn schema(s: &Value) -> Message {
    let mut m = Message::default();
    let Some(o) = s.as_object() else {
        return m;
    };
    m.string(1, o.get("$ref"));
    m.string(2, o.get("format"));
    m.string(3, o.get("title"));
    m.string(4, o.get("description"));
    if let Some(default) = o.get("default") {
        m.any(5, default);
    }
    m.strings(19, o.get("required"));
    for value in each(s, "enum") {
        m.any(20, value);
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Message::default();
            item.boolean(2, Some(&Value::Bool(*b)));
            m.message(21, item);
        }
        Some(inner @ Value::Object(_)) => {
            let mut item = Message::default();
            item.message(1, schema(inner));
            m.message(21, item);
        }
        _ => {}
    }
    match o.get("type") {
        Some(Value::String(t)) => {
            let mut types = Message::default();
            types.bytes(1, t.as_bytes());
            m.message(22, types);
        }
        Some(list @ Value::Array(_)) => {
            let mut types = Message::default();
            types.strings(1, Some(list));
            m.message(22, types);
        }
        _ => {}
    }
    if let Some(items) = o.get("items") {
        let mut list = Message::default();
        match items {
            Value::Array(all) => all.iter().for_each(|i| list.message(1, schema(i))),
            one => list.message(1, schema(one)),
        }
        m.message(23, list);
    }
    for inner in each(s, "allOf") {
        m.message(24, schema(inner));
    }
    if o.get("properties").is_some() {
        let mut props = Message::default();
        for (name, property) in members(s, "properties") {
            props.message(1, named(name, schema(property)));
        }
        m.message(25, props);
    }
    m.boolean(27, o.get("readOnly"));
    m.vendor_extensions(31, o);
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Reads the fields of one message: (number, wire type, bytes or varint).
    fn fields(mut b: &[u8]) -> Vec<(u32, Vec<u8>)> {
        fn varint(b: &mut &[u8]) -> u64 {
            let mut v = 0;
            for i in 0.. {
                let byte = b[0];
                *b = &b[1..];
                v |= u64::from(byte & 0x7f) << (7 * i);
                if byte & 0x80 == 0 {
                    break;
                }
            }
            v
        }
        let mut out = Vec::new();
        while !b.is_empty() {
            let key = varint(&mut b);
            let value = if key & 7 == 2 {
                let len = varint(&mut b) as usize;
                let (v, rest) = b.split_at(len);
                b = rest;
                v.to_vec()
            } else {
                vec![varint(&mut b) as u8]
            };
            out.push(((key >> 3) as u32, value));
        }
        out
    }

    fn field(b: &[u8], number: u32) -> Vec<u8> {
        fields(b).into_iter().find(|(n, _)| *n == number).unwrap().1
    }

    #[test]
    fn the_document_carries_paths_parameters_and_definitions() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": {"/api/v1/namespaces/{namespace}/configmaps/{name}": {
                "patch": {
                    "parameters": [{"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true}],
                    "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/io.k8s.api.core.v1.ConfigMap"}}},
                    "x-kubernetes-group-version-kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                },
            }},
            "definitions": {"io.k8s.api.core.v1.ConfigMap": {
                "type": "object", "description": "d",
                "properties": {"data": {"type": "object", "additionalProperties": {"type": "string"}}},
                "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "ConfigMap"}],
            }},
        });
        let pb = encode(&doc);
        assert_eq!(field(&pb, 1), b"2.0");
        assert_eq!(field(&field(&pb, 2), 2), b"v1.33.0");
        // paths → NamedPathItem → PathItem.patch → Operation.parameters[0] → Parameter →
        // NonBodyParameter → QueryParameterSubSchema.name
        let named = field(&field(&pb, 8), 2);
        assert_eq!(
            field(&named, 1),
            b"/api/v1/namespaces/{namespace}/configmaps/{name}"
        );
        let op = field(&field(&named, 2), 8);
        let query = field(&field(&field(&field(&op, 8), 1), 2), 3);
        assert_eq!(field(&query, 4), b"fieldValidation");
        assert_eq!(field(&query, 2), b"query");
        assert_eq!(field(&query, 6), b"string");
        let gvk = field(&op, 13);
        assert_eq!(field(&gvk, 1), b"x-kubernetes-group-version-kind");
        let yaml: Value = serde_json::from_slice(&field(&field(&gvk, 2), 2)).unwrap();
        assert_eq!(yaml["kind"], "ConfigMap");
        // definitions → NamedSchema → Schema: type, properties.data.additionalProperties
        let def = field(&field(&pb, 9), 1);
        assert_eq!(field(&def, 1), b"io.k8s.api.core.v1.ConfigMap");
        let s = field(&def, 2);
        assert_eq!(field(&field(&s, 22), 1), b"object");
        let data = field(&field(&s, 25), 1);
        assert_eq!(field(&data, 1), b"data");
        let additional = field(&field(&data, 2), 21);
        assert_eq!(field(&field(&field(&additional, 1), 22), 1), b"string");
    }

    #[test]
    fn the_served_document_encodes() {
        let doc = crate::openapi::swagger_document(
            crate::resources::testing::TYPES,
            "v1.33.0",
            &crate::openapi::builtin_only,
        );
        let pb = encode(&doc);
        assert!(pb.len() > 100_000, "{} bytes", pb.len());
    }
}
