//! Flotilla's comparative key/value benchmark: the Redis-protocol router against single-node
//! Redis (`appendfsync always`) and a 3-member etcd, at several client counts, with
//! throughput, p50/p99 latency and the servers' CPU time per operation.
//!
//! Redis-protocol systems are driven by `redis-benchmark`; etcd by a generator on the
//! `etcd-client` crate (the `etcd` feature, which needs `protoc` to build). `all` runs the
//! systems one after the other (Flotilla as one replicated group, then sharded with 1, 2 and 3
//! groups, plus the time a 1 MB shard takes to move) and writes a Markdown/JSON report and an
//! SVG chart.

pub mod bigstate;
pub mod cpu;
pub mod error;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod orchestrate;
pub mod redisbench;
pub mod report;
pub mod service;
pub mod sharded;
pub mod stats;
pub mod svg;
pub mod sweep;

pub use error::BenchError;
