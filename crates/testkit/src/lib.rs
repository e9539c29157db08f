//! # flotilla-testkit: testers for Flotilla services on the deterministic simulator
//!
//! * [`seeds`]: runs a scenario over the seeds chosen by the environment, and on failure prints
//!   the seed and the exact command that replays it.
//! * [`raft_server`]: [`RaftServer`], the Raft core wrapped as a simulated [`flotilla_node::Process`].
//! * [`raft_tester`]: [`RaftTester`], the MIT labs' raft `config.go` harness (checkOneLeader,
//!   one, wait, nCommitted, crash1/start1, applier checks) in virtual time.
//! * [`service`]: [`ServiceTester`], servers plus a host of clerks, for any client/server service.
//! * [`kv_tester`]: [`KvTester`], the labs' key/value tester: recording clients and the
//!   linearizability check of every history.
//! * [`membership`]: membership changes and leader transfers on a replica group, made as an
//!   operator makes them (admin requests, retried), and the group's settled membership.
//! * [`shard_tester`]: [`ShardTester`], the labs' sharded KV tester: a controller, three
//!   replica groups and recording clients.
//! * [`safety`]: [`SafetyChecker`], which checks the Raft safety properties after every step.
//! * [`invariants`]: [`CheckSampler`], the depth of the servers' invariant checks that the
//!   testers run after every step (every replica's, and a shard group's state machine's).
//! * [`read_lease`]: [`ReadLeaseWatch`], which checks after every step that no peer holds a
//!   read lease while another leads a newer term.

pub mod broken;
mod completion;
pub mod invariants;
pub mod kv_tester;
pub mod membership;
pub mod raft_server;
pub mod raft_tester;
pub mod read_lease;
mod recorder;
pub mod redis_ops;
pub mod safety;
pub mod seeds;
pub mod service;
pub mod shard_tester;

pub use invariants::CheckSampler;
pub use kv_tester::{KvClient, KvTester};
pub use raft_server::RaftServer;
pub use raft_tester::{as_int, int_cmd, RaftTester};
pub use read_lease::ReadLeaseWatch;
pub use safety::SafetyChecker;
pub use seeds::run_seeds;
pub use service::ServiceTester;
pub use shard_tester::{ShardClient, ShardTester, ShardTesterConfig};
