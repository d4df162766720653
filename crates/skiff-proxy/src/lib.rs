//! skiff's service proxy: on every node, the cluster's Services and EndpointSlices become
//! one nftables table (`ip skiff`), in the shape of kube-proxy's nftables mode — verdict
//! maps from service addresses to per-service chains, a random pick among ready endpoints,
//! DNAT in the kernel (no user-space hop), masquerade only where replies would otherwise
//! miss this node, and an immediate reject for a service with no endpoint.
//!
//! - `model.rs` — service ports and endpoints as plain data; which endpoints take which
//!   traffic (`categorize`).
//! - `from_api.rs` — Services and EndpointSlices → the model.
//! - `rules.rs` — the model → the table (a pure function).
//! - `health.rs` — health check ports of LoadBalancers that keep client addresses.
//! - `proxier.rs` — the sync loop: informers, one transaction per burst of changes, a
//!   partial sync by difference, a full one on start, on failure and on drift.

pub mod from_api;
pub mod health;
pub mod model;
pub mod proxier;
pub mod rules;

pub use proxier::{Proxier, ProxyError, SyncKind, SyncReport, prepare_node, remove_rules, run};
pub use rules::{ProxyConfig, TABLE};
