//! # flotilla-mr: MapReduce over TCP
//!
//! A coordinator splits a job into one map task per input file and R reduce tasks and hands
//! them to workers that ask for work; a task not finished within the timeout (10 s by default)
//! is handed out again. Map workers partition their output into R buckets by `ihash(key) % R`
//! and keep them on their own disk; reduce workers fetch their bucket from every map worker
//! over TCP, as in the MapReduce paper, so no shared file system is needed. If a map worker
//! cannot be reached before all reducers have its output, its map tasks run again. Reduce
//! output goes back to the coordinator, which writes `mr-out-<r>` atomically (temp file, fsync,
//! rename), so a crash never leaves a partial output file.
//!
//! * [`App`] / [`Registry`]: implement your own job, or use the built-ins (`wc`, `indexer` and
//!   the lab's test apps).
//! * [`coordinator::serve`] and [`worker::run_worker`]: the two roles, over tokio.
//! * [`sequential::run_sequential`]: the single-process reference.
//! * [`corpus::generate`]: a seeded text generator for tests, demos and benchmarks.

pub mod apps;
pub mod compute;
pub mod coordinator;
pub mod corpus;
mod error;
pub mod files;
pub mod protocol;
pub mod sequential;
pub mod store;
pub mod worker;

pub use apps::{App, Registry};
pub use error::MrError;
