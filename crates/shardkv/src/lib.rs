//! # flotilla-shardkv: shard groups
//!
//! A sharded Flotilla splits keys into shards ([`key_shard`]); the controller
//! (`flotilla-shardctrler`) assigns each shard to a replica group; each group is a
//! Raft-replicated key/value service that serves the shards its configuration gives it (the
//! 6.5840 `shardkv` lab, with both challenges):
//!
//! * [`ShardKv`]: a group's state machine. Configurations are applied one at a time, in
//!   order, through the group's log; shards move with their clients' exactly-once records,
//!   in pages bounded in bytes (each its own message and its own log entry);
//!   a group serves a shard only once it has all of it and never after giving it away;
//!   shards a change does not move are served throughout, and each incoming shard as soon as
//!   it arrives; a shard handed off is deleted once its new owner has it.
//! * [`ShardServer`]: a group replica as a sans-I/O process (the replica driver plus the
//!   leader's loop that polls the controller, pulls shards and confirms deletions);
//!   [`CtrlServer`]: a controller replica on the same message type, [`ShardMsg`].
//! * [`ShardClerk`] / [`ShardClerkHost`]: the client: key → shard → group from the latest
//!   configuration it knows, refreshed on "wrong group".
//!
//! Design notes: `docs/sharding.md`.

mod clerk;
mod client_host;
mod machine;
mod msg;
mod server;

pub use clerk::{ShardClerk, ShardClerkConfig, ShardClerkEvent, ShardClerkHost};
pub use client_host::{ClientEvent, ShardClientHost};
pub use machine::{
    key_shard, PullCursor, ShardCommand, ShardKv, ShardPage, ShardReply, ShardState,
    MAX_PAGE_BYTES, SESSION_RECORD_BYTES,
};
pub use msg::{CtrlMsg, GroupMsg, ShardMsg};
pub use server::{
    CtrlServer, PullStats, Resolver, ShardServer, ShardServerConfig, DEFAULT_PAGE_BYTES,
};

#[cfg(test)]
mod tests;
