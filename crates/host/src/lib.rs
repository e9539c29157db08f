//! # flotilla-host: one process, run for real
//!
//! The layer between the connections (`flotilla-transport`) and the services
//! (`flotilla-server`, `flotilla-client`): it runs any [`flotilla_node::Process`] on a tokio
//! runtime and knows neither what the process is nor how its messages travel.
//!
//! * [`driver`]: the event loop that owns one process: it feeds inputs and 10 ms ticks,
//!   stages every save with a [`flotilla_node::Durable`] (memory, or `flotilla-storage`'s
//!   disk), syncs once per batch (group commit), and only then hands the batch's messages to
//!   whatever sends them.
//! * [`metrics`]: the Prometheus metrics a replica or router exports, and their HTTP endpoint.

pub mod driver;
pub mod metrics;

pub use driver::{Input, ProcessHandle, TICK};
pub use flotilla_node::{Durable, DurableError, MemoryDurable};

/// Why a driver loop stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The storage failed ([`DurableError::Fatal`]); a restart recovers what is durable.
    #[error("storage failed: {0}")]
    Storage(String),
}
