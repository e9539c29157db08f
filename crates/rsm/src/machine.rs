//! The trait a replicated service implements.

use std::fmt::Debug;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Restoring a snapshot failed: its bytes were not written by this service's `snapshot`.
#[derive(Debug, thiserror::Error)]
#[error("corrupt snapshot: {0}")]
pub struct SnapshotError(pub String);

/// A deterministic service state replicated through the Raft log.
///
/// # Correctness
/// * `apply` must be a pure function of the state and the command: every replica applies the
///   same commands in the same order and must reach the same state and reply. No clocks, no
///   randomness, no iteration over hash-map order.
/// * `restore(snapshot())` must give back an equal state.
/// * Exactly-once is not the machine's concern: [`crate::Sessions`] filters duplicates before
///   `apply` sees them, unless the machine keeps its own records
///   ([`StateMachine::REPLICA_SESSIONS`] false).
pub trait StateMachine {
    type Command: Clone + Debug + Serialize + DeserializeOwned;
    type Reply: Clone + Debug + Serialize + DeserializeOwned;

    /// Whether the replica's exactly-once table filters this machine's commands (by the
    /// request's client and sequence number). A machine whose exactly-once records must move
    /// with parts of its state (a shard group hands each shard's records to the shard's next
    /// owner) sets it false, carries the client's tag inside its commands and filters
    /// duplicates itself; every command then reaches `apply`, including a replica's own
    /// ([`crate::Replica::propose_own`]).
    const REPLICA_SESSIONS: bool = true;

    /// Applies a committed command and returns the reply for the client that sent it.
    fn apply(&mut self, cmd: Self::Command) -> Self::Reply;

    /// True for commands that change nothing (reads). Their replies are not remembered in the
    /// session table: re-executing them is harmless, and remembering them would make memory
    /// grow with every client that only reads.
    fn is_read_only(_cmd: &Self::Command) -> bool {
        false
    }

    /// Checks a command before it is proposed. An `Err` is sent back to the client as the
    /// command's reply without touching the log (oversized or malformed requests).
    fn validate(_cmd: &Self::Command) -> Result<(), Self::Reply> {
        Ok(())
    }

    /// The whole state, encoded.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with one encoded by [`StateMachine::snapshot`].
    fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError>;
}
