//! # flotilla-kv: the key/value service
//!
//! * [`KvCommand`] / [`KvReply`]: Get, Put, Append, Delete on binary keys and values, with
//!   size limits checked before anything reaches the log ([`KvError`]).
//! * [`Kv`]: the key/value [`flotilla_rsm::StateMachine`]. Replicated with
//!   [`flotilla_rsm::Replica`] it is the linearizable, exactly-once KV service (the 6.5840
//!   `kvraft` lab): every write goes through the Raft log; Gets are read-only
//!   ([`flotilla_rsm::StateMachine::is_read_only`]), so they are served by ReadIndex by
//!   default, by a leader lease, or through the log, as the Raft configuration's
//!   [`flotilla_raft::ReadMode`] says.
//! * [`KvServer`]: the single-node server with at-most-once semantics (the 6.5840 `kvsrv`
//!   lab), where Append returns the value it replaced.
//!
//! Clients are [`flotilla_rsm::Clerk`]s; [`KvClerk`] names the type.

mod command;
pub mod engine;
mod server;
mod slot;
pub mod snapshot;
mod store;
mod stream;
mod zset;

pub use command::{command_keys, Arg, KvCommand, KvError, KvReply, MAX_KEY_BYTES, MAX_VALUE_BYTES};
pub use server::KvServer;
pub use slot::{Data, Hash, List, Set, Slot};
pub use store::{AppendReply, Kv, Value};
pub use stream::{Stream, StreamId};
pub use zset::{Score, ZSet};

/// The message type of the KV service (Raft traffic, requests, responses).
pub type KvMsg = flotilla_rsm::Msg<KvCommand, KvReply>;
/// A KV client.
pub type KvClerk = flotilla_rsm::Clerk<KvCommand>;
/// A process running many KV clients.
pub type KvClerkHost = flotilla_rsm::ClerkHost<KvCommand, KvReply>;
/// One replica of the replicated KV service.
pub type KvReplica = flotilla_rsm::Replica<Kv>;
