//! # flotilla-server: Flotilla's servers on TCP
//!
//! The simulator drives [`flotilla_node::Process`]es in virtual time; this crate runs the very
//! same replicas for real, as servers. It sits on two crates that know nothing of the
//! services: `flotilla-transport` (frames, the authenticated handshake, TLS, dialing and
//! accepting, node ids), which moves their messages, and `flotilla-host` (the driver loop,
//! generic over `Process`, that stages saves with a `flotilla_node::Durable` and syncs once
//! per batch before sending; the metrics), which runs them:
//!
//! * [`server`]: one replica of a replicated group on TCP, from its stored state.
//! * [`sharded`]: the sharded system's servers on TCP: shard-group and controller replicas.
//! * `budget`: compile-time checks that every service message fits the transport's frames.
//!
//! Everything binds where it is told; the binary defaults to 127.0.0.1.
//!
//! The layers, bottom up (issue 17): `flotilla-transport` → `flotilla-host` (with
//! `flotilla-node`'s `Durable`, implemented for disk by `flotilla-storage`) → this crate, and
//! beside it `flotilla-client` (the clients and admin calls) → `flotilla-router` (the
//! Redis-protocol front, on `flotilla-client`) → the `flotilla` binary. The servers use no
//! client: what both need is below them (the id rules in `flotilla-id`, the dialing resolver
//! in `flotilla-transport`, the tick in `flotilla-host`).

mod budget;
pub mod server;
pub mod sharded;

pub use flotilla_host::{Durable, Input, MemoryDurable, ProcessHandle};

/// Why a connection or a process driver failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Wire(#[from] flotilla_wire::WireError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("handshake with {peer} failed: {reason}")]
    Handshake { peer: String, reason: String },
    #[error("storage failed: {0}")]
    Storage(String),
    #[error("bad configuration: {0}")]
    Config(String),
}

/// A driver loop's failure, as the variant of the same name.
impl From<flotilla_host::HostError> for NetError {
    fn from(e: flotilla_host::HostError) -> Self {
        match e {
            flotilla_host::HostError::Storage(e) => NetError::Storage(e),
        }
    }
}

/// A connection's failure, as the variant of the same name: callers match on `Handshake`.
impl From<flotilla_transport::TransportError> for NetError {
    fn from(e: flotilla_transport::TransportError) -> Self {
        use flotilla_transport::TransportError as T;
        match e {
            T::Wire(e) => NetError::Wire(e),
            T::Io(e) => NetError::Io(e),
            T::Handshake { peer, reason } => NetError::Handshake {
                peer,
                reason: reason.to_string(),
            },
        }
    }
}
