//! # flotilla-rsm: replicated state machines on the Raft core
//!
//! Everything a service needs to run as a Raft-replicated state machine, written once and used
//! by the key/value service, the shard controller, the shard groups and the TCP server:
//!
//! * [`StateMachine`]: the service's deterministic state (apply a command, return its reply;
//!   snapshot; restore).
//! * [`Sessions`]: the exactly-once table (client id → last sequence number and its reply),
//!   kept inside the replicated state and its snapshots, so a retried command is applied once
//!   even across leader changes and restarts; with the replicated clock (the leader's time
//!   stamped into each entry) by which sessions expire, and the rule that refuses a request
//!   whose session expired rather than applying it a second time (`session.rs`'s module doc).
//! * [`Replica`]: the driver around the Raft core, itself a sans-I/O
//!   [`flotilla_node::Process`]: it proposes client requests, applies committed entries in log
//!   order, answers a waiting client only if the entry applied at its index is the one it
//!   proposed (same term), snapshots when the persisted Raft state reaches `max_raft_state`,
//!   and restores from snapshot + log on restart.
//! * [`Clerk`] and [`ClerkHost`]: the client side: remembers the leader, retries elsewhere on
//!   "wrong leader" or timeout, one outstanding request per clerk, a fresh sequence number per
//!   operation. A host multiplexes many clerks in one process.
//! * [`decode_shared`] and [`shared_bytes`]: commands decoded once, at apply, with their
//!   large byte strings as views of the log entry's buffer rather than copies.
//! * [`stream`]: snapshots written to a writer and read from a reader piece by piece, so
//!   a large state is never a second time in memory as its encoding.
//! * [`RaftPeer`]: the glue that turns the core's `Ready` into a process's outputs (persist,
//!   then send, then apply), shared by the replica and the Raft lab tester.
//!
//! The simulator and the TCP driver both run these same types; nothing here knows which.

mod clerk;
mod machine;
mod msg;
mod peer;
mod replica;
mod session;
mod shared;
pub mod stream;

pub use clerk::{Clerk, ClerkConfig, ClerkEvent, ClerkHost};
pub use machine::{
    snapshot_to_vec, ApplyCtx, CheckDepth, SnapshotError, SnapshotJob, StateMachine,
};
pub use msg::{
    AdminError, AdminOp, AdminReply, AdminRequest, AdminResponse, ClientId, Msg, MsgOf, Request,
    Response, RsmError,
};
pub use peer::{Flushed, RaftPeer};
pub use replica::{Replica, ReplicaConfig, RestoreError};
pub use session::{Applied, Check, SessionLimits, SessionTable, Sessions, Stamp, TableBlob};
pub use shared::{decode_shared, shared_bytes};
