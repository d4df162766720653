//! What every request handler shares: the datastore, the watch caches, the allocators and
//! the issuers the API server was started with.

use std::sync::Arc;

use crate::allocators::ServiceAllocator;
use crate::objects::Objects;
use crate::watch_cache::Caches;

/// What every handler shares.
pub struct ApiState {
    pub objects: Objects,
    pub caches: Caches,
    pub services: ServiceAllocator,
    pub tolerations: DefaultTolerations,
    pub tokens: Arc<crate::sa_token::TokenIssuer>,
    pub nodes: crate::node_stream::NodeDialer,
}

/// What the DefaultTolerationSeconds admission gives new pods.
pub struct DefaultTolerations {
    pub not_ready_seconds: i64,
    pub unreachable_seconds: i64,
}
