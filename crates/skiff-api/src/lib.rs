//! The Kubernetes API as data, with no sockets and no files: the facts of a resource type
//! ([`resources`]), how errors look ([`status`]), selectors, patches, validation shared by
//! every kind, discovery documents and server-side tables. The API server
//! (`skiff-apiserver`) serves these, and its registry holds each kind's own rules; keeping
//! these pure keeps them unit-testable and fuzzable.
//!
//! Objects are `serde_json::Value`s throughout: the server stores and serves every kind the
//! same way, and kind-specific rules reach into the fields they know.

pub mod conversion;
pub mod discovery;
pub mod duplicates;
pub mod field_types;
pub mod fields;
pub mod intern;
pub mod jsonpath;
pub mod managed_fields;
pub mod object;
pub mod openapi;
pub mod openapi_v2_protobuf;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod schema;
pub mod status;
pub mod strategic;
pub mod structural;
pub mod table;
pub mod validation;
pub mod wire_json;

pub use resources::{ResourceType, Subresource};
pub use skiff_apimachinery::{labels as selectors, quantity};
pub use status::{ApiError, Cause};

/// The Kubernetes version whose API this server implements.
pub const KUBERNETES_MINOR: u32 = 33;
/// `/version`'s gitVersion. The minor version picks the kubectl binary the machine's kubectl
/// dispatcher runs.
pub const GIT_VERSION: &str = "v1.33.0+skiff";
