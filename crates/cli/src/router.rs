//! `flotilla router`: the Redis-protocol front of the replicated KV service.

use clap::Args;
use flotilla_host::metrics::Metrics;
use flotilla_router::{run_router, RouterConfig, ShardedRouting, DEFAULT_MAX_BUFFERED_BYTES};
use tokio::net::TcpListener;

use crate::auth::{SecretArgs, TlsArgs};
use crate::process::{runtime, shutdown_signal};

#[derive(Args)]
pub struct RouterArgs {
    /// Replicas' addresses, comma-separated: the founding ones in id order, or any current
    /// members. The router asks them for the group's membership and follows it: it reaches
    /// members added later and stops using removed ones.
    #[arg(
        long,
        value_delimiter = ',',
        required_unless_present = "ctrlers",
        conflicts_with = "ctrlers"
    )]
    servers: Vec<String>,
    /// Front a sharded deployment instead: the shard controller's replicas, comma-separated.
    /// Each key goes to the group the controller's configuration gives its shard.
    #[arg(long, value_delimiter = ',')]
    ctrlers: Vec<String>,
    /// Shards of the sharded deployment (as its servers were started with).
    #[arg(long, default_value_t = flotilla_shardctrler::DEFAULT_SHARDS, requires = "ctrlers")]
    shards: usize,
    /// Talk only to the --servers replicas, never to other members it learns of (a router
    /// that must see only part of the group, as partition tests need).
    #[arg(long)]
    pin_servers: bool,
    /// Address to serve the Redis protocol on.
    #[arg(long, default_value = "127.0.0.1:6380")]
    listen: String,
    /// Require clients to AUTH with this password (default: FLOTILLA_PASSWORD, else none).
    #[arg(long, env = "FLOTILLA_PASSWORD")]
    password: Option<String>,
    /// Serve Prometheus metrics on this address (GET /metrics).
    #[arg(long)]
    metrics: Option<String>,
    /// Answer a command with an error if the cluster has not answered it within this long.
    #[arg(long, default_value = "10s", value_parser = crate::units::parse_duration)]
    command_timeout: std::time::Duration,
    /// Refuse connections beyond this many.
    #[arg(long, default_value_t = 10_000)]
    max_clients: usize,
    /// The bytes all connections together may hold of requests not yet answered (beyond 16 KiB
    /// each); past it the router stops reading until some are answered: clients wait, none is
    /// dropped. Also the largest request accepted. At most about twice this is held in all.
    /// (256 MiB by default; accepts units: 64MiB, 1GiB.)
    #[arg(long, default_value_t = DEFAULT_MAX_BUFFERED_BYTES, value_parser = parse_bytes)]
    max_buffered_bytes: usize,
    /// Close a connection after its client has sent nothing for this long (Redis's `timeout`:
    /// seconds, or e.g. 500ms); 0, the default, never does.
    #[arg(long, default_value = "0", value_parser = crate::units::parse_duration)]
    timeout: std::time::Duration,
    /// Serve clients over TLS with this certificate (PEM; e.g. `redis-cli --tls`).
    #[arg(long, requires = "client_tls_key")]
    client_tls_cert: Option<std::path::PathBuf>,
    /// The client-facing certificate's private key (PEM).
    #[arg(long, requires = "client_tls_cert")]
    client_tls_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    secret: SecretArgs,
    #[command(flatten)]
    tls: TlsArgs,
}

pub fn router(args: RouterArgs) -> Result<(), String> {
    let metrics = args.metrics.as_ref().map(|_| Metrics::router());
    let cfg = RouterConfig {
        servers: args.servers,
        pin_servers: args.pin_servers,
        secret: args.secret.load()?,
        password: args.password,
        max_clients: args.max_clients,
        command_timeout: args.command_timeout,
        metrics: metrics.clone(),
        tls: args.tls.load()?,
        client_tls: match (&args.client_tls_cert, &args.client_tls_key) {
            (Some(c), Some(k)) => {
                Some(flotilla_transport::tls::client_acceptor(c, k).map_err(|e| e.to_string())?)
            }
            _ => None,
        },
        sharded: (!args.ctrlers.is_empty()).then(|| ShardedRouting {
            ctrlers: args.ctrlers.clone(),
            nshards: args.shards,
        }),
        max_buffered_bytes: args.max_buffered_bytes,
        idle_timeout: (!args.timeout.is_zero()).then_some(args.timeout),
    };
    let listen = args.listen;
    let metrics_addr = args.metrics;
    runtime()?.block_on(async move {
        if let (Some(addr), Some(m)) = (metrics_addr, metrics) {
            let l = TcpListener::bind(&addr)
                .await
                .map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
            tokio::spawn(flotilla_host::metrics::serve(l, m));
        }
        let listener = TcpListener::bind(&listen)
            .await
            .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
        tracing::info!(%listen, "router serving the Redis protocol");
        run_router(cfg, listener, shutdown_signal())
            .await
            .map_err(|e| format!("router: {e}"))
    })
}

/// A size ("256MiB", "1048576") in bytes.
fn parse_bytes(s: &str) -> Result<usize, String> {
    let n = crate::units::parse_size(s)?;
    usize::try_from(n).map_err(|_| format!("{s:?} is too large"))
}
