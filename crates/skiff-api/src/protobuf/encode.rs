//! Writing objects as Kubernetes protobuf: the JSON form walked with the type schema, the
//! apimachinery types in their message shapes, inside the `k8s\0` + `runtime.Unknown`
//! envelope. The inverse of the decoder in this module's parent.

use base64::Engine;
use prost_types::field_descriptor_proto::Type;
use serde_json::Value;

use super::{MAGIC, ProtobufError, malformed};
use crate::schema::{FieldDef, is_opaque, message_name, schema};

/// Nesting deeper than this is refused, as in decoding.
const MAX_DEPTH: usize = 64;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn tag(out: &mut Vec<u8>, number: u32, wire: u8) {
    varint(out, (u64::from(number) << 3) | u64::from(wire));
}

fn bytes_field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    tag(out, number, 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint_field(out: &mut Vec<u8>, number: u32, v: u64) {
    tag(out, number, 0);
    varint(out, v);
}

/// An object of a served kind, as a Kubernetes protobuf body.
pub fn encode_object(obj: &Value) -> Result<Vec<u8>, ProtobufError> {
    let api_version = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or_default();
    let name = message_name(api_version, kind);
    if schema().message(&name).is_none() {
        return Err(ProtobufError::UnknownType {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        });
    }
    let raw = encode_message(&name, obj, 0)?;
    let mut type_meta = Vec::new();
    bytes_field(&mut type_meta, 1, api_version.as_bytes());
    bytes_field(&mut type_meta, 2, kind.as_bytes());
    let mut out = MAGIC.to_vec();
    bytes_field(&mut out, 1, &type_meta);
    bytes_field(&mut out, 2, &raw);
    bytes_field(&mut out, 3, b"");
    bytes_field(&mut out, 4, b"");
    Ok(out)
}

/// One frame of a protobuf watch stream (`application/vnd.kubernetes.protobuf;stream=watch`):
/// a 4-byte big-endian length, then a `meta.v1.WatchEvent` {type, object: RawExtension{raw:
/// the object's protobuf envelope}}.
pub fn encode_watch_frame(event_type: &str, obj: &Value) -> Result<Vec<u8>, ProtobufError> {
    let object = encode_object(obj)?;
    let mut raw_extension = Vec::with_capacity(object.len() + 8);
    bytes_field(&mut raw_extension, 1, &object);
    let mut event = Vec::with_capacity(raw_extension.len() + 16);
    bytes_field(&mut event, 1, event_type.as_bytes());
    bytes_field(&mut event, 2, &raw_extension);
    let mut frame = Vec::with_capacity(event.len() + 4);
    frame.extend_from_slice(&(event.len() as u32).to_be_bytes());
    frame.extend_from_slice(&event);
    Ok(frame)
}

fn encode_message(message: &str, value: &Value, depth: usize) -> Result<Vec<u8>, ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(malformed("object nested too deeply"));
    }
    if is_opaque(message) {
        return well_known(message, value);
    }
    let def = schema()
        .message(message)
        .ok_or_else(|| malformed(format!("no schema for message {message}")))?;
    let Value::Object(map) = value else {
        return Err(malformed(format!("{message} must be an object")));
    };
    let mut out = Vec::new();
    for n in &def.order {
        let field = &def.fields[n];
        if def.inline.contains(n) {
            // An inlined embedding: its fields are the parent's keys.
            let inner = encode_message(&field.type_name, value, depth + 1)?;
            bytes_field(&mut out, *n, &inner);
            continue;
        }
        let Some(v) = map.get(&field.name).filter(|v| !v.is_null()) else {
            continue;
        };
        let entry = schema().message(&field.type_name).filter(|m| m.map_entry);
        if let Some(entry) = entry {
            let Value::Object(m) = v else {
                return Err(malformed(format!("{} must be an object", field.name)));
            };
            let value_field = entry.fields.get(&2);
            for (k, item) in m {
                let mut e = Vec::new();
                bytes_field(&mut e, 1, k.as_bytes());
                if let Some(vf) = value_field
                    && !item.is_null()
                {
                    single(&mut e, 2, vf, item, depth)?;
                }
                bytes_field(&mut out, *n, &e);
            }
        } else if field.repeated {
            let Value::Array(items) = v else {
                return Err(malformed(format!("{} must be a list", field.name)));
            };
            for item in items {
                single(&mut out, *n, field, item, depth)?;
            }
        } else {
            single(&mut out, *n, field, v, depth)?;
        }
    }
    Ok(out)
}

fn single(
    out: &mut Vec<u8>,
    n: u32,
    field: &FieldDef,
    v: &Value,
    depth: usize,
) -> Result<(), ProtobufError> {
    let wrong = || {
        malformed(format!(
            "{} has the wrong type for {:?}",
            field.name, field.ty
        ))
    };
    match field.ty {
        Type::String => bytes_field(out, n, v.as_str().ok_or_else(wrong)?.as_bytes()),
        Type::Bytes => {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().ok_or_else(wrong)?)
                .map_err(|_| malformed(format!("{} is not base64", field.name)))?;
            bytes_field(out, n, &decoded);
        }
        Type::Bool => varint_field(out, n, u64::from(v.as_bool().ok_or_else(wrong)?)),
        Type::Int32 | Type::Int64 | Type::Enum | Type::Sint32 | Type::Sint64 => {
            varint_field(out, n, v.as_i64().ok_or_else(wrong)? as u64);
        }
        Type::Uint32 | Type::Uint64 => varint_field(out, n, v.as_u64().ok_or_else(wrong)?),
        Type::Double => {
            tag(out, n, 1);
            out.extend_from_slice(&v.as_f64().ok_or_else(wrong)?.to_bits().to_le_bytes());
        }
        Type::Float => {
            tag(out, n, 5);
            out.extend_from_slice(
                &(v.as_f64().ok_or_else(wrong)? as f32)
                    .to_bits()
                    .to_le_bytes(),
            );
        }
        Type::Message => {
            let inner = encode_message(&field.type_name, v, depth + 1)?;
            bytes_field(out, n, &inner);
        }
        _ => return Err(wrong()),
    }
    Ok(())
}

/// The message shapes of the apimachinery types whose JSON is a scalar or free-form.
fn well_known(message: &str, value: &Value) -> Result<Vec<u8>, ProtobufError> {
    let mut out = Vec::new();
    match message.rsplit('.').next().unwrap_or_default() {
        "Time" | "MicroTime" => {
            let t = value
                .as_str()
                .and_then(crate::object::parse_time)
                .ok_or_else(|| malformed(format!("{value} is not an RFC 3339 time")))?;
            varint_field(&mut out, 1, t.unix_timestamp() as u64);
            if t.nanosecond() != 0 {
                varint_field(&mut out, 2, u64::from(t.nanosecond()));
            }
        }
        "IntOrString" => match value {
            Value::Number(n) => {
                varint_field(&mut out, 1, 0);
                varint_field(&mut out, 2, n.as_i64().unwrap_or_default() as u64);
            }
            Value::String(s) => {
                varint_field(&mut out, 1, 1);
                bytes_field(&mut out, 3, s.as_bytes());
            }
            _ => return Err(malformed("an int-or-string must be a number or a string")),
        },
        "Quantity" => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(malformed("a quantity must be a string")),
            };
            bytes_field(&mut out, 1, text.as_bytes());
        }
        "ExtraValue" => {
            for item in value.as_array().into_iter().flatten() {
                bytes_field(&mut out, 1, item.as_str().unwrap_or_default().as_bytes());
            }
        }
        "Duration" => {
            let nanos = value.as_str().and_then(parse_go_duration).unwrap_or(0);
            varint_field(&mut out, 1, nanos as u64);
        }
        // RawExtension and FieldsV1: the JSON itself.
        _ => bytes_field(&mut out, 1, value.to_string().as_bytes()),
    }
    Ok(out)
}

/// Go's duration syntax (`1h2m3.5s`, `250ms`) in nanoseconds.
fn parse_go_duration(s: &str) -> Option<i64> {
    let (negative, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3.6e12,
            "m" => 6e10,
            "s" => 1e9,
            "ms" => 1e6,
            "us" | "µs" => 1e3,
            "ns" => 1.0,
            _ => return None,
        };
        total += number * scale;
        rest = &rest[unit_len..];
    }
    Some(if negative {
        -total as i64
    } else {
        total as i64
    })
}

#[cfg(test)]
mod tests {
    use super::super::decode_object;
    use super::*;
    use serde_json::json;

    fn round_trip(obj: Value) {
        let bytes = encode_object(&obj).unwrap();
        assert_eq!(decode_object(&bytes).unwrap(), obj);
    }

    #[test]
    fn objects_survive_encoding_and_decoding() {
        round_trip(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web", "node-role.kubernetes.io/control-plane": ""},
                         "creationTimestamp": "2026-11-25T12:00:00Z", "generation": 2,
                         "managedFields": [{"manager": "kubectl", "operation": "Apply", "apiVersion": "apps/v1",
                                            "time": "2026-11-25T12:00:00Z", "fieldsType": "FieldsV1",
                                            "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:v1",
                                      "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                      "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}},
                                      "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 5}}],
                                  "volumes": [{"name": "v", "emptyDir": {"medium": "Memory"}}]}}},
            "status": {"replicas": 1, "conditions": [{"type": "Available", "status": "True",
                       "lastTransitionTime": "2026-11-25T12:00:01Z", "reason": "MinimumReplicasAvailable"}]}
        }));
        round_trip(
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                          "data": {"k": "aGVsbG8="}, "type": "Opaque"}),
        );
        round_trip(
            json!({"apiVersion": "v1", "kind": "ConfigMapList", "metadata": {"resourceVersion": "7"},
                          "items": [{"metadata": {"name": "a"}, "data": {"x": "1"}}]}),
        );
    }

    #[test]
    fn micro_times_and_durations() {
        round_trip(
            json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "n"},
                          "spec": {"holderIdentity": "n", "leaseDurationSeconds": 40,
                                   "renewTime": "2026-11-25T12:00:00.123456Z"}}),
        );
        assert_eq!(parse_go_duration("1h2m3.5s"), Some(3_723_500_000_000));
        assert_eq!(parse_go_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_go_duration("x"), None);
    }

    #[test]
    fn kinds_without_a_schema_are_refused() {
        assert!(matches!(
            encode_object(&json!({"apiVersion": "v1", "kind": "Widget"})),
            Err(ProtobufError::UnknownType { .. })
        ));
    }
}
