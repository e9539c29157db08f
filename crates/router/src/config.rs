//! The router's settings, as the `flotilla router` command (or a test) gives them.

use std::sync::Arc;
use std::time::Duration;

use flotilla_kv::MAX_VALUE_BYTES;
use flotilla_resp::Limits;
use flotilla_transport::Secret;

/// The router's settings.
#[derive(Clone)]
pub struct RouterConfig {
    /// Replicas of the (one) KV group to start from (taken to be in id order until one
    /// answers); the router then follows the group's membership.
    pub servers: Vec<String>,
    /// Talk only to `servers`, never to other members it learns of (see
    /// `GroupClient::connect_pinned`).
    pub pin_servers: bool,
    pub secret: Secret,
    /// Clients must `AUTH` with this password first, if set.
    pub password: Option<String>,
    /// Connections beyond this many are refused with an error.
    pub max_clients: usize,
    /// A command the service has not answered within this long gets an error (its outcome is
    /// then unknown: it may still be applied), rather than leaving the client hanging while,
    /// say, no majority of replicas is reachable.
    pub command_timeout: Duration,
    /// Where to count requests, errors and latency by command.
    pub metrics: Option<Arc<flotilla_host::metrics::Metrics>>,
    /// Mutual TLS towards the replicas, if configured.
    pub tls: Option<Arc<flotilla_transport::tls::PeerTls>>,
    /// TLS towards Redis clients, if configured.
    pub client_tls: Option<tokio_rustls::TlsAcceptor>,
    /// Front a sharded Flotilla instead of one group (`servers` is then unused).
    pub sharded: Option<ShardedRouting>,
    /// The bytes all connections together may hold of requests not yet answered (beyond a
    /// small allowance each), past which they stop reading until some are answered; also the
    /// largest request accepted. See [`DEFAULT_MAX_BUFFERED_BYTES`] and `input.rs`.
    pub max_buffered_bytes: usize,
    /// Close a connection whose client has sent nothing for this long (in the middle of a
    /// request too), or taken none of its replies, as Redis's `timeout`; `None` (Redis's
    /// `timeout 0`, the default): never. Time spent waiting for the cluster's answer, or for
    /// the buffer budget, is not idle.
    pub idle_timeout: Option<Duration>,
}

/// The default [`RouterConfig::max_buffered_bytes`]: 256 MiB, room for eight of the largest
/// values (32 MiB) arriving at once at full speed, or one `MSET` of seven.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 << 20;

/// Where a router finds a sharded Flotilla.
#[derive(Clone, Debug)]
pub struct ShardedRouting {
    /// The controller replicas' addresses.
    pub ctrlers: Vec<String>,
    /// Shards in the system (as the servers were started with).
    pub nshards: usize,
}

/// Requests a router accepts: values up to the service's limit plus room for the command.
pub fn limits() -> Limits {
    Limits {
        max_bulk_len: MAX_VALUE_BYTES + 1024,
        ..Limits::default()
    }
}
