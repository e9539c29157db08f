//! # flotilla-router: the Redis-protocol front
//!
//! Speaks RESP2 (and RESP3 after `HELLO 3`) to clients and forwards every key/value command to
//! the replicated service through a clerk per connection.
//!
//! A connection's commands run in order, one at a time (its clerk has one operation
//! outstanding), and pipelined requests are answered in order with their replies written
//! together. Bad input never crashes the router: malformed requests and requests over the
//! limits are answered with an error and the connection is closed; unknown commands and wrong
//! arities get an error and the connection goes on.
//!
//! The router fronts either one replicated KV group or a sharded Flotilla (with
//! [`RouterConfig::sharded`]): there each connection's clerk maps every key to its shard and
//! the shard to its group by the controller's latest configuration, and follows the shards as
//! they move. Multi-key commands (MGET, MSET, DEL, EXISTS) are split by group, the groups'
//! parts run at once (each on a clerk of its own), and the replies are put back in the order
//! of the keys.
//!
//! ## Limits
//!
//! What a connection may make the router hold is bounded: with a password, a client that has
//! not authenticated may send only Redis's small requests (10 arguments of 16 KiB,
//! [`flotilla_resp::Limits::UNAUTHENTICATED`]); the bytes all connections hold of requests not
//! yet answered share one budget, [`RouterConfig::max_buffered_bytes`], past which reading
//! pauses (see `input.rs` for how every request still completes); replies are written as they
//! pile up, so a client that does not read them stops its pipeline instead of making them
//! accumulate; and a connection idle for [`RouterConfig::idle_timeout`] (neither sending nor
//! taking replies) is closed, as Redis's `timeout` does.
//!
//! ## The files, in the order a request meets them
//!
//! * `config.rs`: [`RouterConfig`], what the binary sets.
//! * `listener.rs`: [`run_router`], the accept loop, and `Router`, the state all connections
//!   share (counters, idle clerks, the budget); a connection's admission (TLS, `max_clients`).
//! * `session.rs`: one connection's loop: read (within the budget, `input.rs`), decode, answer
//!   in order, write, close when idle.
//! * `conn.rs`: `Conn`, what the router knows of one connection (protocol, authenticated,
//!   name, clerks): the state command handlers read and change.
//! * `cmd/`: the commands. `cmd/mod.rs` parses a request and dispatches the command to its
//!   family's handler, in one `match`; one file per family: `strings.rs`, `keys.rs`,
//!   `connection.rs`, `server.rs`.
//! * `clerks.rs`: how a handler runs key/value operations: the connection's clerk, the
//!   command timeout, multi-key commands split by group.
//! * `backend.rs`: the service behind the router (a group's clients or a sharded system's):
//!   the only file that knows the client types.
//!
//! ## Adding a command
//!
//! * A key/value command: its spec in `flotilla-resp` (a `data` entry: arity, Redis's flags,
//!   key range and docs) and its handler in `flotilla_kv::engine`; the router needs nothing
//!   unless the command spans shards in a new way (`cmd/data.rs`).
//! * Any other command: a [`flotilla_resp::Command`] variant with its spec, a handler in the
//!   file of its family under `cmd/`, and its arm in the `match` in `cmd/mod.rs` (exhaustive,
//!   so a command parsed but not dispatched does not compile).
//!
//! State a command keeps per connection (a `MULTI`'s queued commands, `WATCH`ed keys) is a
//! field of `Conn`; a rule that holds back commands before they run (authentication, a
//! `MULTI` queueing them) goes in `cmd/mod.rs`'s `dispatch`, ahead of the match.

mod backend;
mod clerks;
mod cmd;
mod config;
mod conn;
mod input;
mod listener;
mod session;
mod stats;
mod wakeups;

pub use config::{limits, RouterConfig, ShardedRouting, DEFAULT_MAX_BUFFERED_BYTES};
pub use listener::run_router;

/// Why a router could not start.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The clients of the service behind it could not be set up (say, a controller address
    /// that does not parse).
    #[error(transparent)]
    Backend(#[from] flotilla_client::ClientError),
}
