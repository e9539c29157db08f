//! # flotilla-transport: Flotilla's connections
//!
//! The lowest layer of the deployed side: it moves opaque service messages (any type that
//! serializes) between processes and knows nothing of Raft or of what the messages mean.
//! `flotilla-server` sits on it and chooses the message types.
//!
//! * [`frame`]: what travels on a connection (handshake frames, batches of service messages,
//!   status requests), in `flotilla-wire`'s length-prefixed, checksummed frames, and the byte
//!   caps on them.
//! * [`auth`]: the handshake. Every connection proves knowledge of the cluster secret in both
//!   directions (HMAC-SHA256 over fresh nonces) before any message is accepted, so a process
//!   without the secret can neither join a group nor send Raft messages.
//! * [`tls`]: rustls configuration, when certificates are configured.
//! * [`ids`]: the resolver that names nodes by address and dials them on first use.
//! * [`transport`]: connections to peers (dialed, reconnected with backoff, one writer per
//!   peer that batches whatever is queued into one frame) and from clients (accepted; replies
//!   go back on the same connection).

pub mod auth;
pub mod frame;
pub mod ids;
pub mod tls;
pub mod transport;

pub use auth::{HandshakeError, Secret, SecretError};
pub use frame::{Frame, NodeStatus, ShardView};
pub use tls::TlsConfigError;
pub use transport::{Transport, TransportConfig};

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Wire(#[from] flotilla_wire::WireError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("handshake with {peer} failed: {reason}")]
    Handshake {
        peer: String,
        reason: HandshakeError,
    },
}
