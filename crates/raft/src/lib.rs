//! # flotilla-raft: the Raft consensus core, with no I/O
//!
//! A deterministic state machine implementing the extended Raft paper (Ongaro & Ousterhout):
//! leader election with randomised timeouts (§5.2), log replication with the consistency
//! check (§5.3), commitment of current-term entries only (§5.4.2), fast log back-tracking
//! (§5.3, the follower's conflict hint lets the leader skip a term per round trip), and
//! service-initiated snapshots with InstallSnapshot for followers behind them (§7), sent in
//! chunks with flow control (Figure 13's offset and done), and flow control in bytes for
//! replication and proposals.
//!
//! The core has no threads, clocks, sockets, disks or global randomness. A driver feeds it
//! three kinds of input and then acts on the [`Ready`] it returns:
//!
//! * [`Raft::tick`]: one unit of logical time (Flotilla's drivers use 10 ms);
//! * [`Raft::step`]: a [`Message`] from another peer;
//! * [`Raft::propose`] / [`Raft::snapshot`]: requests from the service above;
//! * [`Raft::read_index`]: a read the service wants confirmed without the log (ReadIndex,
//!   thesis §6.4, or a leader lease with [`ReadMode::Lease`]).
//! * [`Raft::transfer_leadership`]: hand a leader's leadership to another voter (thesis
//!   §3.10, `TimeoutNow`).
//! * [`Raft::propose_membership`]: add a learner, promote it to voter, or remove a member,
//!   one server at a time (thesis §4.1; see [`Membership`]).
//!
//! [`Raft::ready`] then says what to persist, what to send (only after persisting), what
//! is committed and must be applied, in order, and which reads may be answered. The same code runs under the deterministic
//! simulator (`flotilla-sim`) and, later, real TCP and disk drivers.
//!
//! ## Invariants the core keeps
//! * **Election safety**: a peer votes at most once per term, and the vote is persisted before
//!   the reply leaves (`Ready` ordering).
//! * **Log matching**: an AppendEntries is accepted only if the entry before it matches
//!   (`prev_log_index`, `prev_log_term`); a follower truncates only at a real conflict.
//! * **Leader completeness**: votes go only to candidates whose log is at least as up to date.
//! * **Commit**: only entries of the leader's term are committed by counting replicas; a
//!   committed entry is never truncated (violations panic with the peer and index).
//! * **Apply order**: `Ready::applies` hands out indices strictly in order, each exactly once
//!   per incarnation; a snapshot apply replaces everything up to its index.
//!
//! ## Example: three peers wired together by hand
//! ```
//! use flotilla_raft::{Apply, Config, NodeId, Raft};
//!
//! let voters: Vec<NodeId> = (1..=3).map(NodeId::new).collect();
//! let mut peers: Vec<Raft> = (voters.iter())
//!     .map(|&id| Raft::new(Config::new(id, voters.clone(), id.get())))
//!     .collect();
//! let mut applied = vec![Vec::new(); 3];
//! for _ in 0..200 {
//!     for p in peers.iter_mut() { p.tick(); }
//!     // Deliver every message until the cluster is quiet (a perfect network).
//!     loop {
//!         let mut sent = Vec::new();
//!         for (i, p) in peers.iter_mut().enumerate() {
//!             let ready = p.ready(); // (a real driver persists here, before sending)
//!             sent.extend(ready.messages);
//!             for a in ready.applies {
//!                 if let Apply::Command { data, .. } = a { applied[i].push(data); }
//!             }
//!         }
//!         if sent.is_empty() { break; }
//!         for m in sent { peers[m.to.index() - 1].step(m.from, m.msg); }
//!     }
//!     if let Some(leader) = peers.iter_mut().find(|p| p.is_leader()) {
//!         if leader.log().last_index() == 0 { leader.propose(b"hello".to_vec()).unwrap(); }
//!     }
//! }
//! assert!(applied.iter().all(|a| a == &vec![b"hello".to_vec()]));
//! ```

pub mod bytes_field;
mod config;
mod error;
mod log;
mod membership;
mod message;
mod raft;
mod ready;
mod rng;
mod state;

/// The byte buffers snapshots are held and sent in (re-exported for drivers).
pub use bytes::Bytes;
#[cfg(any(test, feature = "sabotage"))]
pub use config::Sabotage;
pub use config::{
    Config, ReadMode, DEFAULT_MAX_APPEND_BYTES, DEFAULT_MAX_INFLIGHT_BYTES,
    DEFAULT_MAX_SNAPSHOT_INFLIGHT_BYTES, DEFAULT_MAX_UNCOMMITTED_BYTES,
    DEFAULT_SNAPSHOT_CHUNK_BYTES,
};
pub use error::{ConfigError, LogError, ProposeError, TransferError};
pub use flotilla_snapshot::{
    MemorySpool, SnapshotData, SnapshotReader, SnapshotSource, SnapshotSpool, SnapshotWriter,
};
pub use log::RaftLog;
pub use membership::{Membership, MembershipChange, MembershipError};
pub use message::{ConflictHint, Entry, EntryKind, Envelope, Message};
pub use raft::{Raft, Role};
pub use ready::{Apply, LogWrite, ReadState, Ready, Snapshot};
pub use state::{encode_changes, DecodeError, HardState, PersistentState};

/// A peer's identity within its cluster (the same type as `flotilla_node::NodeId`).
pub use flotilla_id::NodeId;

#[cfg(test)]
mod tests;
