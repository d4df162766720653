//! `application/vnd.kubernetes.protobuf`: reading request bodies into the JSON form the
//! server works with (kubectl ≥ 1.32 sends typed creates this way and has no fallback), and
//! writing responses for clients that prefer it ([`encode_object`]).
//!
//! Decoding walks the type schema ([`crate::schema`], Kubernetes' own descriptors)
//! generically and applies Kubernetes' JSON conventions: proto field names
//! are the JSON names, `Time` becomes RFC 3339, `IntOrString` a number or a string,
//! `Quantity` its string, `RawExtension`/`FieldsV1` their embedded JSON, `bytes` base64, maps
//! objects. Absent optional fields stay absent (proto2 keeps presence).

use std::collections::HashMap;

use base64::Engine;
use prost_types::field_descriptor_proto::Type;
use serde_json::{Map, Value};

use crate::schema::{FieldDef, message_name, schema};

mod encode;
pub use encode::{encode_object, encode_watch_frame};

/// The magic prefix of Kubernetes' protobuf envelope.
pub const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    #[error("not a Kubernetes protobuf body (missing the k8s\\0 prefix)")]
    NoMagic,
    #[error("malformed protobuf: {0}")]
    Malformed(String),
    #[error("no protobuf schema for {api_version} {kind}")]
    UnknownType { api_version: String, kind: String },
}

fn malformed(what: impl Into<String>) -> ProtobufError {
    ProtobufError::Malformed(what.into())
}

/// A minimal protobuf wire reader.
struct Reader<'a> {
    buf: &'a [u8],
}

enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| malformed("truncated varint"))?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(malformed("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if self.buf.len() < n {
            return Err(malformed("truncated field"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn next(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtobufError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = u32::try_from(key >> 3).map_err(|_| malformed("field number out of range"))?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("8 bytes"),
            )),
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| malformed("length out of range"))?;
                Wire::Bytes(self.take(len)?)
            }
            5 => Wire::Fixed32(u32::from_le_bytes(
                self.take(4)?.try_into().expect("4 bytes"),
            )),
            w => return Err(malformed(format!("unsupported wire type {w}"))),
        };
        Ok(Some((number, wire)))
    }
}

/// Decodes the `k8s\0` envelope (`runtime.Unknown`): answers apiVersion, kind and the object
/// as JSON.
pub fn decode_object(body: &[u8]) -> Result<Value, ProtobufError> {
    let inner = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoMagic)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let mut r = Reader { buf: inner };
    while let Some((n, wire)) = r.next()? {
        match (n, wire) {
            (1, Wire::Bytes(type_meta)) => {
                let mut t = Reader { buf: type_meta };
                while let Some((n, w)) = t.next()? {
                    match (n, w) {
                        (1, Wire::Bytes(b)) => api_version = utf8(b)?,
                        (2, Wire::Bytes(b)) => kind = utf8(b)?,
                        _ => {}
                    }
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let name = message_name(&api_version, &kind);
    if !schema().messages.contains_key(&name) {
        return Err(ProtobufError::UnknownType { api_version, kind });
    }
    let mut obj = decode_message(&name, raw, 0)?;
    if let Value::Object(map) = &mut obj {
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), kind.into());
    }
    Ok(obj)
}

fn utf8(b: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(b.to_vec()).map_err(|_| malformed("string field is not UTF-8"))
}

/// Nesting deeper than this is refused (hostile input must not exhaust the stack).
const MAX_DEPTH: usize = 64;

fn decode_message(name: &str, bytes: &[u8], depth: usize) -> Result<Value, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(malformed("message nested too deeply"));
    }
    if let Some(v) = well_known(name, bytes)? {
        return Ok(v);
    }
    let def = schema()
        .messages
        .get(name)
        .ok_or_else(|| malformed(format!("no schema for message {name}")))?;
    let mut out = Map::new();
    let mut r = Reader { buf: bytes };
    while let Some((n, wire)) = r.next()? {
        // Unknown fields are skipped, as proto readers do.
        let Some(field) = def.fields.get(&n) else {
            continue;
        };
        if def.inline.contains(&n) {
            // An inlined embedding: its fields are the parent's in JSON.
            if let Wire::Bytes(b) = wire
                && let Value::Object(fields) = decode_message(&field.type_name, b, depth + 1)?
            {
                out.extend(fields);
            }
            continue;
        }
        let mut values = Vec::new();
        match (field.ty, wire) {
            // Packed repeated scalars.
            (
                Type::Int32 | Type::Int64 | Type::Uint32 | Type::Uint64 | Type::Bool | Type::Enum,
                Wire::Bytes(b),
            ) if field.repeated => {
                let mut p = Reader { buf: b };
                while !p.buf.is_empty() {
                    values.push(scalar(field, Wire::Varint(p.varint()?))?);
                }
            }
            (Type::Message, Wire::Bytes(b)) => {
                values.push(decode_message(&field.type_name, b, depth + 1)?);
            }
            (Type::Message, _) => {
                return Err(malformed(format!("field {} is not a message", field.name)));
            }
            (_, w) => values.push(scalar(field, w)?),
        }
        let target_is_map = field.ty == Type::Message
            && schema()
                .messages
                .get(&field.type_name)
                .is_some_and(|m| m.map_entry);
        if target_is_map {
            let entry = out
                .entry(field.name.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            for v in values {
                let key = match v.get("key") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                // An absent value is the value type's zero (an empty label value is "").
                let value = v.get("value").cloned().unwrap_or_else(|| {
                    let value_type = schema()
                        .messages
                        .get(&field.type_name)
                        .and_then(|m| m.fields.get(&2))
                        .map(|f| f.ty);
                    match value_type {
                        Some(Type::String | Type::Bytes) => Value::String(String::new()),
                        Some(Type::Bool) => Value::Bool(false),
                        Some(Type::Message) | None => Value::Object(Map::new()),
                        Some(_) => Value::from(0),
                    }
                });
                if let Value::Object(m) = entry {
                    m.insert(key, value);
                }
            }
        } else if field.repeated {
            let entry = out
                .entry(field.name.clone())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(a) = entry {
                a.extend(values);
            }
        } else if let Some(v) = values.pop()
            && !unset(&field.name, &v)
        {
            out.insert(field.name.clone(), v);
        }
    }
    Ok(Value::Object(out))
}

fn scalar(field: &FieldDef, wire: Wire<'_>) -> Result<Value, ProtobufError> {
    Ok(match (field.ty, wire) {
        (Type::String, Wire::Bytes(b)) => Value::String(utf8(b)?),
        (Type::Bytes, Wire::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Type::Bool, Wire::Varint(v)) => Value::Bool(v != 0),
        (Type::Int32, Wire::Varint(v)) => Value::from(v as i64 as i32),
        (Type::Int64, Wire::Varint(v)) => Value::from(v as i64),
        (Type::Uint32 | Type::Uint64, Wire::Varint(v)) => Value::from(v),
        (Type::Enum, Wire::Varint(v)) => Value::from(v as i64),
        (Type::Double, Wire::Fixed64(v)) => {
            serde_json::Number::from_f64(f64::from_bits(v)).map_or(Value::Null, Value::Number)
        }
        (Type::Float, Wire::Fixed32(v)) => {
            serde_json::Number::from_f64(f64::from(f32::from_bits(v)))
                .map_or(Value::Null, Value::Number)
        }
        (Type::Fixed64 | Type::Sfixed64, Wire::Fixed64(v)) => Value::from(v as i64),
        (Type::Fixed32 | Type::Sfixed32, Wire::Fixed32(v)) => Value::from(v as i32),
        (ty, _) => {
            return Err(malformed(format!(
                "field {} has the wrong wire type for {ty:?}",
                field.name
            )));
        }
    })
}

/// Fields that are pointers in the Go types, whose zero value is a choice rather than "unset"
/// (`replicas: 0`, `allowPrivilegeEscalation: false`, `runAsUser: 0`).
const POINTER_FIELDS: &[&str] = &[
    "replicas",
    "revisionHistoryLimit",
    "progressDeadlineSeconds",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "runAsUser",
    "runAsGroup",
    "fsGroup",
    "defaultMode",
    "mode",
    "priority",
    "deletionGracePeriodSeconds",
    "gracePeriodSeconds",
    "expirationSeconds",
    "leaseDurationSeconds",
    "leaseTransitions",
    "timeoutSeconds",
    "port",
    "enableServiceLinks",
    "automountServiceAccountToken",
    "runAsNonRoot",
    "readOnlyRootFilesystem",
    "allowPrivilegeEscalation",
    "privileged",
    "optional",
    "immutable",
    "hostUsers",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "allocatedLoadBalancerNodePorts",
    "ready",
    "serving",
    "terminating",
];

/// The one string pointer whose empty value means something (no dynamic provisioning).
const MEANINGFUL_EMPTY_STRINGS: &[&str] = &["storageClassName"];

/// Go's protobuf encoding writes every non-pointer field, set or not; in Go (and so in the
/// API) a zero there means unset, and its JSON omits it. Zeros of pointer fields are kept.
fn unset(name: &str, value: &Value) -> bool {
    let zero = match value {
        Value::Null => return true,
        Value::String(s) => return s.is_empty() && !MEANINGFUL_EMPTY_STRINGS.contains(&name),
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        _ => false,
    };
    zero && !POINTER_FIELDS.contains(&name)
}

/// The apimachinery types whose JSON form is not their message shape.
fn well_known(name: &str, bytes: &[u8]) -> Result<Option<Value>, ProtobufError> {
    let fields = || -> Result<HashMap<u32, Wire<'_>>, ProtobufError> {
        let mut r = Reader { buf: bytes };
        let mut m = HashMap::new();
        while let Some((n, w)) = r.next()? {
            m.insert(n, w);
        }
        Ok(m)
    };
    let int = |m: &HashMap<u32, Wire<'_>>, n: u32| match m.get(&n) {
        Some(Wire::Varint(v)) => *v as i64,
        _ => 0,
    };
    let bytes_of = |m: &HashMap<u32, Wire<'_>>, n: u32| -> Vec<u8> {
        match m.get(&n) {
            Some(Wire::Bytes(b)) => b.to_vec(),
            _ => Vec::new(),
        }
    };
    Ok(Some(match name {
        ".apimachinery.pkg.apis.meta.v1.Time" | ".apimachinery.pkg.apis.meta.v1.MicroTime" => {
            let m = fields()?;
            // Go's zero Time (always encoded) is `null` in JSON.
            if int(&m, 1) == 0 && int(&m, 2) == 0 {
                return Ok(Some(Value::Null));
            }
            let t = time::OffsetDateTime::from_unix_timestamp(int(&m, 1))
                .map_err(|_| malformed("timestamp out of range"))?
                + time::Duration::nanoseconds(int(&m, 2));
            Value::String(if name.ends_with("MicroTime") {
                crate::object::format_micro_time(t)
            } else {
                crate::object::format_time(t)
            })
        }
        ".apimachinery.pkg.util.intstr.IntOrString" => {
            let m = fields()?;
            if int(&m, 1) == 1 {
                Value::String(utf8(&bytes_of(&m, 3))?)
            } else {
                Value::from(int(&m, 2) as i32)
            }
        }
        ".apimachinery.pkg.api.resource.Quantity" => Value::String(utf8(&bytes_of(&fields()?, 1))?),
        ".apimachinery.pkg.runtime.RawExtension" | ".apimachinery.pkg.apis.meta.v1.FieldsV1" => {
            let raw = bytes_of(&fields()?, 1);
            if raw.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&raw)
                    .map_err(|e| malformed(format!("embedded JSON: {e}")))?
            }
        }
        ".apimachinery.pkg.apis.meta.v1.Duration" => Value::String(go_duration(int(&fields()?, 1))),
        n if n.ends_with(".ExtraValue") => {
            let mut r = Reader { buf: bytes };
            let mut items = Vec::new();
            while let Some((n, w)) = r.next()? {
                if let (1, Wire::Bytes(b)) = (n, w) {
                    items.push(Value::String(utf8(b)?));
                }
            }
            Value::Array(items)
        }
        _ => return Ok(None),
    }))
}

/// Go's `time.Duration` string form for whole and fractional seconds (`1h2m3s`, `1.5s`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    let (h, rem) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let secs = rem as f64 / 1e9;
    let mut out = sign.to_string();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if h > 0 || m > 0 {
        out.push_str(&format!("{m}m"));
    }
    out.push_str(&format!("{secs}s"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A tiny encoder for hand-made test messages.
    fn field_bytes(n: u32, b: &[u8]) -> Vec<u8> {
        let mut out = varint(u64::from(n) << 3 | 2);
        out.extend(varint(b.len() as u64));
        out.extend_from_slice(b);
        out
    }

    fn field_varint(n: u32, v: u64) -> Vec<u8> {
        let mut out = varint(u64::from(n) << 3);
        out.extend(varint(v));
        out
    }

    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return out;
            }
            out.push(b | 0x80);
        }
    }

    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = field_bytes(1, api_version.as_bytes());
        type_meta.extend(field_bytes(2, kind.as_bytes()));
        let mut body = MAGIC.to_vec();
        body.extend(field_bytes(1, &type_meta));
        body.extend(field_bytes(2, raw));
        body.extend(field_bytes(4, b"application/vnd.kubernetes.protobuf"));
        body
    }

    #[test]
    fn a_configmap_decodes_with_maps_and_metadata() {
        // ConfigMap{metadata: {name: "cfg", labels: {app: web}}, data: {k: v}}
        let mut labels_entry = field_bytes(1, b"app");
        labels_entry.extend(field_bytes(2, b"web"));
        let mut meta = field_bytes(1, b"cfg");
        meta.extend(field_bytes(11, &labels_entry));
        let mut data_entry = field_bytes(1, b"k");
        data_entry.extend(field_bytes(2, b"v"));
        let mut cm = field_bytes(1, &meta);
        cm.extend(field_bytes(2, &data_entry));
        let obj = decode_object(&envelope("v1", "ConfigMap", &cm)).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cfg", "labels": {"app": "web"}}, "data": {"k": "v"}})
        );
    }

    #[test]
    fn deployments_keep_zero_values_and_int_or_string() {
        // Deployment{spec: {replicas: 0, strategy: {rollingUpdate: {maxSurge: "25%", maxUnavailable: 1}}}}
        let mut surge = field_varint(1, 1);
        surge.extend(field_bytes(3, b"25%"));
        let unavailable = field_varint(2, 1);
        let mut ru = field_bytes(1, &unavailable);
        ru.extend(field_bytes(2, &surge));
        let strategy = field_bytes(2, &ru);
        let mut spec = field_varint(1, 0);
        spec.extend(field_bytes(4, &strategy));
        spec.extend(field_varint(5, 0)); // minReadySeconds: not a pointer, zero means unset
        spec.extend(field_bytes(
            3,
            &field_bytes(
                2,
                &field_bytes(2, &[field_bytes(1, b"c"), field_bytes(2, b"")].concat()),
            ),
        )); // template.spec.containers[0] = {name: c, image: ""}
        let d = field_bytes(2, &spec);
        let obj = decode_object(&envelope("apps/v1", "Deployment", &d)).unwrap();
        assert_eq!(obj["spec"]["replicas"], 0, "a pointer's zero is kept");
        assert!(obj["spec"].get("minReadySeconds").is_none());
        assert_eq!(
            obj["spec"]["template"]["spec"]["containers"],
            json!([{"name": "c"}])
        );
        assert_eq!(
            obj["spec"]["strategy"]["rollingUpdate"],
            json!({"maxUnavailable": 1, "maxSurge": "25%"})
        );
    }

    #[test]
    fn inlined_embeddings_decode_into_their_parent() {
        // Pod{spec: {volumes: [{name: v, volumeSource: {emptyDir: {}}}]}}
        let mut volume = field_bytes(1, b"v");
        volume.extend(field_bytes(2, &field_bytes(2, b"")));
        let spec = field_bytes(1, &volume);
        let obj = decode_object(&envelope("v1", "Pod", &field_bytes(2, &spec))).unwrap();
        assert_eq!(
            obj["spec"]["volumes"],
            json!([{"name": "v", "emptyDir": {}}])
        );
    }

    #[test]
    fn times_become_rfc3339() {
        let mut t = field_varint(1, 1_764_000_000);
        t.extend(field_varint(2, 0));
        let meta = field_bytes(8, &t); // creationTimestamp
        let obj = decode_object(&envelope("v1", "Namespace", &field_bytes(1, &meta))).unwrap();
        assert_eq!(obj["metadata"]["creationTimestamp"], "2025-11-24T16:00:00Z");
    }

    #[test]
    fn delete_options_decode_under_any_group_version() {
        // What Helm's uninstall sends: DeleteOptions{propagationPolicy: "Background"} typed
        // with the resource's group version.
        let body = field_bytes(4, b"Background");
        for api_version in ["v1", "apps/v1", "meta.k8s.io/v1"] {
            let obj = decode_object(&envelope(api_version, "DeleteOptions", &body)).unwrap();
            assert_eq!(obj["propagationPolicy"], "Background", "{api_version}");
            assert_eq!(obj["kind"], "DeleteOptions");
        }
    }

    #[test]
    fn every_request_body_kind_has_a_schema() {
        // The kinds clients send as protobuf bodies besides stored objects.
        for (api_version, kind) in [
            ("v1", "DeleteOptions"),
            ("batch/v1", "DeleteOptions"),
            ("autoscaling/v1", "Scale"),
            ("policy/v1", "Eviction"),
            ("authentication.k8s.io/v1", "TokenRequest"),
            ("authentication.k8s.io/v1", "TokenReview"),
            ("authentication.k8s.io/v1", "SelfSubjectReview"),
            ("v1", "Binding"),
            ("authorization.k8s.io/v1", "SubjectAccessReview"),
            ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
            ("authorization.k8s.io/v1", "LocalSubjectAccessReview"),
            ("authorization.k8s.io/v1", "SelfSubjectRulesReview"),
        ] {
            let decoded = decode_object(&envelope(api_version, kind, b""));
            assert!(decoded.is_ok(), "{api_version} {kind}: {decoded:?}");
        }
    }

    #[test]
    fn hostile_bodies_are_errors() {
        assert_eq!(decode_object(b"{}"), Err(ProtobufError::NoMagic));
        assert!(matches!(
            decode_object(b"k8s\0\x0a\xff"),
            Err(ProtobufError::Malformed(_))
        ));
        assert!(matches!(
            decode_object(&envelope("v9", "Nope", b"")),
            Err(ProtobufError::UnknownType { .. })
        ));
        // A length that runs past the end.
        assert!(decode_object(&envelope("v1", "ConfigMap", b"\x0a\x10ab")).is_err());
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            let mut body = MAGIC.to_vec();
            body.extend(envelope("apps/v1", "Deployment", &bytes).into_iter().skip(MAGIC.len()));
            let _ = decode_object(&body);
            let _ = decode_object(&[MAGIC, &bytes[..]].concat());
        }
    }
}
