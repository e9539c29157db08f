//! Why a client's request failed, for the binary to word for people.

use std::time::Duration;

use flotilla_id::alloc::DuplicateNodeId;
use flotilla_rsm::RsmError;
use flotilla_shardctrler::CtrlError;
use flotilla_transport::TransportError;

/// Why a client could not start, or a request of it got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A connection failed: dialing, the handshake, a frame.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The peer answered with something other than what the request asks for.
    #[error("unexpected answer from {peer}: {answer}")]
    Unexpected { peer: String, answer: String },
    /// No answer within the caller's limit. A change asked for may still take effect.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The service took the command but cannot carry it out
    /// ([`RsmError::DiskFull`]: its outcome is then unknown).
    #[error(transparent)]
    Service(#[from] RsmError),
    /// The shard controller refused the command, changing nothing.
    #[error("the controller refused: {0}")]
    Refused(#[from] CtrlError),
    /// The client's process stopped (its runtime is shutting down).
    #[error("the clerk host stopped")]
    Stopped,
    /// A task asking a node failed (it panicked or was cancelled).
    #[error("the request's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// Two of the servers given would share a node id.
    #[error(transparent)]
    SameNodeId(#[from] DuplicateNodeId),
    /// The settings given cannot work (no shards).
    #[error("bad configuration: {0}")]
    Config(&'static str),
}

/// A frame that could not be written or read: a connection's failure.
impl From<flotilla_wire::WireError> for ClientError {
    fn from(e: flotilla_wire::WireError) -> Self {
        ClientError::Transport(e.into())
    }
}
