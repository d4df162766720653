//! Content negotiation: which body formats a request may carry and which representation the
//! response takes (JSON, YAML, or a server-side `Table`), following the client's `Accept`
//! order.

use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use skiff_api::ApiError;

/// The request body formats the API reads.
pub const BODY_TYPES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// How a response is rendered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Yaml,
    /// Kubernetes protobuf, for the kinds the schema knows (others fall back to JSON, which
    /// every client that asks for protobuf also accepts).
    Protobuf,
    /// `meta.k8s.io` Table (v1 or v1beta1: the same shape).
    Table {
        v1beta1: bool,
    },
    /// `meta.k8s.io` PartialObjectMetadata (or its List): each object's metadata alone, as
    /// metadata informers, the garbage collector and `kubectl get --show-labels`-style tools
    /// ask for; in JSON or protobuf.
    Metadata {
        protobuf: bool,
        v1beta1: bool,
    },
}

/// Which server-side conversions a request may answer in (upstream's `as=` parameter).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Conversions {
    /// None: writes, subresources.
    None,
    /// A get or a watch: a Table, or `PartialObjectMetadata`.
    Object,
    /// A list: a Table, or `PartialObjectMetadataList`.
    List,
}

impl Output {
    /// Whether the body is Kubernetes protobuf.
    pub fn is_protobuf(self) -> bool {
        matches!(
            self,
            Output::Protobuf | Output::Metadata { protobuf: true, .. }
        )
    }

    /// The apiVersion of the metadata-only kinds this output asks for.
    pub fn metadata_api_version(self) -> Option<&'static str> {
        match self {
            Output::Metadata { v1beta1: true, .. } => Some("meta.k8s.io/v1beta1"),
            Output::Metadata { .. } => Some("meta.k8s.io/v1"),
            _ => None,
        }
    }
}

/// One `Accept` entry: the media type and its parameters.
struct MediaRange<'a> {
    essence: &'a str,
    params: Vec<(&'a str, &'a str)>,
}

fn parse_media(entry: &str) -> MediaRange<'_> {
    let mut parts = entry.split(';');
    let essence = parts.next().unwrap_or("").trim();
    let params = parts
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    MediaRange { essence, params }
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Picks the response representation, following the client's `Accept` order; `as=`
/// conversions are taken only where `conversions` allows them (others are passed over for
/// the next entry, as upstream does).
pub fn output(headers: &HeaderMap, conversions: Conversions) -> Result<Output, ApiError> {
    let accept = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    if accept.is_empty() {
        return Ok(Output::Json);
    }
    for entry in accept.split(',') {
        let m = parse_media(entry);
        let param = |k: &str| m.params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        let version = match param("v") {
            Some("v1") => Some(false),
            Some("v1beta1") => Some(true),
            _ => None,
        };
        let meta = param("g") == Some("meta.k8s.io");
        match (m.essence, param("as")) {
            ("application/json", Some("Table")) if conversions != Conversions::None && meta => {
                if let Some(v1beta1) = version {
                    return Ok(Output::Table { v1beta1 });
                }
            }
            ("application/json" | PROTOBUF, Some(kind)) if meta => {
                let wanted = match conversions {
                    Conversions::Object => "PartialObjectMetadata",
                    Conversions::List => "PartialObjectMetadataList",
                    Conversions::None => continue,
                };
                if let (true, Some(v1beta1)) = (kind == wanted, version) {
                    let protobuf = m.essence == PROTOBUF;
                    return Ok(Output::Metadata { protobuf, v1beta1 });
                }
            }
            // Other conversions are not served: try the next entry.
            (_, Some(_)) => {}
            ("application/json" | "application/*" | "*/*", None) => return Ok(Output::Json),
            ("application/yaml", None) => return Ok(Output::Yaml),
            (PROTOBUF, None) => return Ok(Output::Protobuf),
            _ => {}
        }
    }
    Err(ApiError::not_acceptable(&[
        "application/json",
        "application/yaml",
        "application/vnd.kubernetes.protobuf",
    ]))
}

/// An object's metadata as `PartialObjectMetadata` of `api_version`.
pub fn partial_object_metadata(obj: &Value, api_version: &str) -> Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": api_version,
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
    })
}

/// Decodes a request body as JSON or YAML by its `Content-Type` (JSON when absent).
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = content_type(headers);
    let essence = parse_media(ct).essence;
    match essence {
        "" | "application/json" => decode_json(body),
        "application/yaml" => decode_yaml(body),
        PROTOBUF => skiff_api::protobuf::decode_object(body).map_err(|e| {
            ApiError::bad_request(format!("the body of the request could not be decoded: {e}"))
        }),
        _ => Err(ApiError::unsupported_media_type(ct, BODY_TYPES)),
    }
}

pub fn decode_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as JSON: {e}"
        ))
    })
}

pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the body of the request is not UTF-8 YAML"))?;
    serde_saphyr::from_str(text).map_err(|e| {
        ApiError::bad_request(format!(
            "the body of the request could not be decoded as YAML: {e}"
        ))
    })
}

/// The body and `Content-Type` of a response.
pub fn encode(value: &Value, output: Output) -> (Vec<u8>, &'static str) {
    match output {
        Output::Protobuf | Output::Metadata { protobuf: true, .. } => {
            match skiff_api::protobuf::encode_object(value) {
                Ok(bytes) => (bytes, PROTOBUF),
                Err(e) => {
                    tracing::debug!(error = %e, "answering JSON instead of protobuf");
                    (skiff_api::wire_json::body(value), "application/json")
                }
            }
        }
        Output::Yaml => match serde_saphyr::to_string(value) {
            Ok(s) => (s.into_bytes(), "application/yaml"),
            Err(_) => (skiff_api::wire_json::body(value), "application/json"),
        },
        _ => (skiff_api::wire_json::body(value), "application/json"),
    }
}

/// An error as a `Status` response.
pub fn error_response(err: &ApiError) -> Response {
    let code = StatusCode::from_u16(err.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        code,
        [(CONTENT_TYPE, "application/json")],
        skiff_api::wire_json::body(&err.to_status()),
    )
        .into_response()
}

/// A JSON or YAML response.
pub fn respond(code: StatusCode, value: &Value, output: Output) -> Response {
    let (body, content_type) = encode(value, output);
    (code, [(CONTENT_TYPE, content_type)], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accept(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(ACCEPT, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn kubectl_get_asks_for_a_table_first() {
        let h = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(
            output(&h, Conversions::List).unwrap(),
            Output::Table { v1beta1: false }
        );
        assert_eq!(output(&h, Conversions::None).unwrap(), Output::Json);
    }

    #[test]
    fn protobuf_is_served_when_preferred() {
        let h = accept("application/vnd.kubernetes.protobuf,application/json");
        assert_eq!(output(&h, Conversions::List).unwrap(), Output::Protobuf);
        let h = accept("application/json,application/vnd.kubernetes.protobuf");
        assert_eq!(output(&h, Conversions::List).unwrap(), Output::Json);
        let html = output(&accept("text/html"), Conversions::List);
        assert_eq!(html.unwrap_err().code, 406);
        assert_eq!(
            output(&accept("application/yaml"), Conversions::List).unwrap(),
            Output::Yaml
        );
    }

    #[test]
    fn metadata_only_is_served_for_the_matching_verb() {
        let list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        let get = "application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        let json_meta = Output::Metadata {
            protobuf: false,
            v1beta1: false,
        };
        assert_eq!(output(&accept(list), Conversions::List).unwrap(), json_meta);
        assert_eq!(
            output(&accept(get), Conversions::Object).unwrap(),
            Output::Metadata {
                protobuf: true,
                v1beta1: false
            }
        );
        // The list form on a get (and any conversion on a write) is not acceptable alone,
        // and passed over for the next entry.
        assert_eq!(
            output(&accept(list), Conversions::Object).unwrap_err().code,
            406
        );
        let with_json = format!("{list},application/json");
        assert_eq!(
            output(&accept(&with_json), Conversions::None).unwrap(),
            Output::Json
        );
    }

    #[test]
    fn bodies_decode_by_content_type() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
        let v = decode_body(&h, b"kind: ConfigMap\ndata:\n  a: '1'\n").unwrap();
        assert_eq!(v["data"]["a"], "1");
        h.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(decode_body(&h, b"{}").unwrap_err().code, 415);
        assert_eq!(
            decode_body(&HeaderMap::new(), b"{nope").unwrap_err().code,
            400
        );
    }
}
