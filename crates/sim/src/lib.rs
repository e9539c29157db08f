//! # flotilla-sim: a deterministic simulated cluster
//!
//! The equivalent of the MIT labs' `labrpc` network and `config` harness, in virtual time and
//! driven by one seed. N [`Process`]es, each with a [`Persister`] (bytes that survive a
//! crash), exchange messages over a network that can connect and disconnect each node,
//! partition them, drop and delay messages at random (unreliable mode), and reorder replies
//! by seconds (long reordering). Nodes crash (volatile state lost, persister kept) and restart.
//!
//! Determinism: all randomness comes from one ChaCha8 generator seeded by the caller, events
//! are ordered by (virtual time, sequence number), and no hash-map iteration or wall-clock
//! read influences anything. [`Sim::trace_hash`] digests every event processed, so two runs
//! of the same seed can be compared bit for bit.
//!
//! Test scripts run on [`Runtime`], a single-threaded executor whose `sleep` advances virtual
//! time, so a scenario is written like the labs' Go tests (`sleep`, concurrent clients) and
//! still replays exactly.

mod network;
mod runtime;
mod sim;

pub use network::{NetConfig, Stats};
pub use runtime::{block_on, JoinHandle, Runtime, Sleep};
pub use sim::{Checker, Factory, Persister, Sim};

pub use flotilla_node::{Ctx, NodeId, Process, Save};
