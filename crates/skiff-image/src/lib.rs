//! skiff's node image store: what a node needs to run an image.
//!
//! - [`store`]: the content-addressed store: pull (sharing concurrent work), list, remove, GC.
//! - [`resolve`]: which endpoints an image is looked for at (the cluster's registry first).
//! - [`archive`]: `docker save` and OCI layout archives read into images to push.
//! - [`copy`]: an image copied between registries (into the cluster's).
//! - [`build`]: images assembled from files (layers, configuration, manifest) and pushed.
//! - [`registry`]: a distribution-API client (HTTPS/HTTP, basic and bearer auth, redirects).
//! - [`config`]: `registries.yaml` (mirrors, credentials, TLS per host).
//! - [`auth`]: credentials, `imagePullSecrets` keyrings, authentication challenges.
//! - [`unpack`]: one layer into an overlayfs-ready directory, safely (a security boundary).

pub mod archive;
pub mod auth;
pub mod build;
pub mod config;
pub mod copy;
mod decompress;
pub mod fetch;
pub mod registry_client;
pub mod resolve;
pub mod store;

#[cfg(test)]
mod store_tests;
pub mod unpack;

pub use auth::{Credentials, Keyring};
pub use config::RegistriesConfig;
pub use registry_client::{Endpoint, RegistryClient};
pub use resolve::PullError;
pub use store::{GcPolicy, Image, ImageStore, Progress, PullEvent};
