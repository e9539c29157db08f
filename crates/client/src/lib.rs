//! # flotilla-client: the async client of Flotilla's services
//!
//! Whoever serves end users (the Redis-protocol router, operators' tools, benchmarks, tests)
//! runs many clerks, each one sequential client of a service, in one sans-I/O process, and
//! calls them from async code. This crate drives any such process for real, on
//! `flotilla-host`'s driver loop and over a `flotilla-transport` connection set:
//!
//! * [`Client`]: the one client, generic over a [`ClerkProcess`]: `new_clerk`, `call`,
//!   `abandon`, `remove_clerk`, `transport`. A reply reaches only the call that started the
//!   operation it answers, even across abandoned calls (the invariant is documented in
//!   `waiters.rs`).
//! * [`group`]: [`GroupClient`], over a replicated group's `flotilla_rsm::ClerkHost`; it
//!   follows the group's membership.
//! * [`sharded`]: [`ShardClient`], over the sharded system's `flotilla_shardkv::ShardClientHost`;
//!   it adds the controller's calls (`ctrl`, `query`) and what a shard clerk knows
//!   (`config_of`).
//! * [`admin`]: what operators' tools and the client ask of a running group: statuses of many
//!   nodes at once, the membership they describe, membership changes and leader transfers.
//!
//! Failures are [`ClientError`]s, which the binary words for people.
//!
//! The layers, bottom up (issue 17): `flotilla-transport` → `flotilla-host` → this crate →
//! the router and the `flotilla` binary. The servers (`flotilla-server`) sit beside it, on the
//! same two crates.

pub mod admin;
mod client;
mod error;
pub mod group;
pub mod sharded;
mod waiters;

pub use client::{ClerkProcess, Client};
pub use error::ClientError;
pub use group::{GroupClient, REFRESH};
pub use sharded::{ShardClient, ShardExtra};
