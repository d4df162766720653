//! skiff's cluster DNS (CoreDNS's `kubernetes` and `forward` plugins, with a cache): the
//! cluster domain answered from Services and EndpointSlices, other names forwarded to the
//! node's resolvers. Every node runs one, in its network namespace on its pod gateway
//! address; the `kube-dns` Service (`internalTrafficPolicy: Local`) sends each pod's
//! questions to its own node's.
//!
//! - `zone.rs` — the records (a pure function of Services and EndpointSlices).
//! - `forward.rs` — other names: the node's resolvers, a TTL cache.
//! - `server.rs` — hickory's UDP and TCP serving around one handler.

pub mod forward;
pub mod server;
pub mod zone;

pub use forward::Forwarder;
pub use server::{CurrentZone, Handler, bind, serve, upstream_socket};
pub use zone::Zone;
