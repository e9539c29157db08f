//! # flotilla-net: Flotilla's processes over TCP
//!
//! The simulator drives [`flotilla_node::Process`]es in virtual time; this crate drives the very
//! same processes for real:
//!
//! * [`frame`]: what travels on a connection (handshake frames, batches of service messages,
//!   status requests), in `flotilla-wire`'s length-prefixed, checksummed frames.
//! * [`auth`]: the handshake. Every connection proves knowledge of the cluster secret in both
//!   directions (HMAC-SHA256 over fresh nonces) before any message is accepted, so a process
//!   without the secret can neither join a group nor send Raft messages.
//! * [`transport`]: connections to peers (dialed, reconnected with backoff, one writer per
//!   peer that batches whatever is queued into one frame) and from clients (accepted; replies
//!   go back on the same connection).
//! * [`driver`]: the event loop that owns one process on a thread of its own: it feeds inputs
//!   and 10 ms ticks, stages every save with the storage, syncs once per batch (group commit),
//!   and only then hands the batch's messages to the transport.
//! * [`sharded`]: the sharded system on TCP: controller and shard-group replicas, node ids
//!   from addresses, and the clients a router and `flotilla ctl` use.
//! * [`admin`]: what operators' tools and the router ask of a running group: statuses of many
//!   nodes at once, the membership they describe, membership changes and leader transfers.
//!
//! Everything binds where it is told; the binary defaults to 127.0.0.1.

pub mod admin;
pub mod auth;
pub mod clients;
pub mod driver;
pub mod frame;
pub mod metrics;
pub mod router;
pub mod server;
pub mod sharded;
pub mod tls;
pub mod transport;

pub use auth::Secret;
pub use driver::{Durable, Input, MemoryDurable, ProcessHandle};
pub use frame::{Frame, NodeStatus, ShardView};
pub use transport::{Transport, TransportConfig};

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
