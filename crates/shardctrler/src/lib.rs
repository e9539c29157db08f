//! # flotilla-shardctrler: the shard controller
//!
//! The keys of a sharded Flotilla are split into a fixed number of shards, each served by one
//! replica group. The controller, itself a Raft-replicated service, keeps the numbered
//! sequence of configurations (which group serves which shard, and each group's servers) and
//! changes it on Join, Leave and Move (the 6.5840 `shardctrler` lab):
//!
//! * [`ShardConfig`] and [`rebalance`]: the even, minimal-movement, deterministic assignment.
//! * [`Ctrler`]: the state machine, run by `flotilla_rsm::Replica` as the KV service is, so it
//!   gets the same log, exactly-once table, snapshots and ReadIndex reads (Query is a read).

mod config;
mod machine;

pub use config::{min_moves, rebalance, Gid, ShardConfig, DEFAULT_SHARDS};
pub use machine::{CtrlCommand, CtrlError, CtrlReply, Ctrler};

#[cfg(test)]
mod tests;
