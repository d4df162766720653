//! The OCI image format as skiff's registry (`skiff-registry`) and node image store
//! (`skiff-image`) both need it: sha256 digests, media types, manifests and indexes, image
//! configurations and image references with Docker's name normalization.

pub mod digest;
pub mod manifest;
pub mod reference;

pub use digest::{Sha256, digest_hex, sha256_digest};
pub use manifest::{Descriptor, ImageConfig, Index, Manifest, Platform, media_type};
pub use reference::{Reference, ReferenceError};
