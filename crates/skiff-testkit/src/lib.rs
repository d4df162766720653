//! Helpers shared by skiff's tests and benchmark programs.
//!
//! Everything here starts real components (never mocks) and binds only to loopback.

mod etcd;

pub use etcd::{EtcdServer, EtcdTls};

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
