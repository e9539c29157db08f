//! # flotilla-net: Flotilla's processes over TCP
//!
//! The simulator drives [`flotilla_node::Process`]es in virtual time; this crate drives the very
//! same processes for real. It sits on `flotilla-transport` (frames, the authenticated
//! handshake, TLS, dialing and accepting), which moves its service messages without knowing
//! what they are:
//!
//! * [`driver`]: the event loop that owns one process on a thread of its own: it feeds inputs
//!   and 10 ms ticks, stages every save with the storage, syncs once per batch (group commit),
//!   and only then hands the batch's messages to the transport.
//! * [`metrics`]: the Prometheus metrics a replica exports.
//! * [`server`]: one replica of a replicated group on TCP, from its stored state.
//! * [`clients`]: the clerks' driver: commands to a group over the transport.
//! * [`sharded`]: the sharded system on TCP: controller and shard-group replicas, node ids
//!   from addresses, and the clients a router and `flotilla ctl` use.
//! * [`router`]: the RESP (Redis protocol) front that turns client commands into clerk calls.
//! * [`admin`]: what operators' tools and the router ask of a running group: statuses of many
//!   nodes at once, the membership they describe, membership changes and leader transfers.
//! * `budget`: compile-time checks that every service message fits the transport's frames.
//!
//! Everything binds where it is told; the binary defaults to 127.0.0.1.
//!
//! The layers, bottom up (issue 17): `flotilla-transport` → this crate (to be split into a
//! host — the driver loop and metrics — a client and a router) → the `flotilla` binary.

pub mod admin;
mod budget;
pub mod clients;
pub mod driver;
pub mod metrics;
pub mod router;
pub mod server;
pub mod sharded;

pub use driver::{Durable, Input, MemoryDurable, ProcessHandle};

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

/// A connection's failure, as the variant of the same name: callers match on `Handshake`.
impl From<flotilla_transport::TransportError> for NetError {
    fn from(e: flotilla_transport::TransportError) -> Self {
        use flotilla_transport::TransportError as T;
        match e {
            T::Wire(e) => NetError::Wire(e),
            T::Io(e) => NetError::Io(e),
            T::Handshake { peer, reason } => NetError::Handshake { peer, reason },
        }
    }
}
