//! The accept loop, a connection's admission, and `Router`: the state all connections share.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use flotilla_rsm::ClientId;
use flotilla_transport::tls::BoxIo;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

use crate::backend::Backend;
use crate::conn::Conn;
use crate::input::Budget;
use crate::{RouterConfig, RouterError};

/// A running router's shared state.
pub(crate) struct Router {
    pub(crate) cfg: RouterConfig,
    pub(crate) kv: Backend,
    /// Connections open now (INFO's `connected_clients`; admission against `max_clients`).
    pub(crate) connections: AtomicUsize,
    /// The next connection's id (`CLIENT ID`; names it to the budget).
    next_id: AtomicU64,
    /// Clerks of closed connections, reused by new ones: every clerk that ever wrote keeps an
    /// entry in the service's exactly-once table, so reuse bounds the table by the most
    /// connections open at once instead of every connection ever made.
    pub(crate) idle_clerks: Mutex<Vec<ClientId>>,
    /// A key routed to each shard, for keyless commands (`Router::route_key`).
    pub(crate) route_keys: Mutex<Vec<Vec<u8>>>,
    /// What CONFIG SET set of the encoding settings (`cmd/server.rs`).
    pub(crate) encoding_settings: Mutex<std::collections::BTreeMap<&'static str, String>>,
    /// CONFIG SET `maxmemory` and `min-replicas-to-write` (`cmd/limits.rs`); 0: none.
    pub(crate) maxmemory: AtomicU64,
    pub(crate) min_replicas_to_write: AtomicU64,
    /// Clients blocked on keys (BLPOP …), woken by writes to them.
    pub(crate) wakeups: crate::wakeups::Wakeups,
    /// The bytes of requests not yet answered that all connections share.
    pub(crate) budget: Budget,
    /// When the router started (INFO's `uptime_in_seconds`).
    pub(crate) started: std::time::Instant,
    /// Connections admitted since the start (INFO's `total_connections_received`).
    pub(crate) connections_received: AtomicU64,
    /// Commands run since the start, past parsing and authentication, as Redis counts them
    /// (INFO's `total_commands_processed`).
    pub(crate) commands_processed: AtomicU64,
    /// Pipelined runs of commands sent as one entry, and the commands in them (INFO's
    /// `flotilla_pipelined_batches`, `flotilla_pipelined_commands`; `cmd/pipeline.rs`).
    pub(crate) pipelined_batches: AtomicU64,
    pub(crate) pipelined_commands: AtomicU64,
    /// INFO's commandstats, errorstats, latencystats.
    pub(crate) stats: Mutex<crate::stats::Stats>,
    /// INFO's `run_id`: random per router start, so that a tool can tell a restart.
    pub(crate) run_id: String,
}

/// Serves clients on `listener` until `shutdown` completes.
pub async fn run_router(
    cfg: RouterConfig,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), RouterError> {
    let kv = Backend::connect(&cfg)?;
    let router = Arc::new(Router {
        budget: Budget::new(cfg.max_buffered_bytes),
        cfg,
        kv,
        connections: AtomicUsize::new(0),
        next_id: AtomicU64::new(1),
        idle_clerks: Mutex::new(Vec::new()),
        route_keys: Mutex::new(Vec::new()),
        encoding_settings: Mutex::new(Default::default()),
        maxmemory: AtomicU64::new(0),
        min_replicas_to_write: AtomicU64::new(0),
        wakeups: Default::default(),
        started: std::time::Instant::now(),
        connections_received: AtomicU64::new(0),
        commands_processed: AtomicU64::new(0),
        pipelined_batches: AtomicU64::new(0),
        pipelined_commands: AtomicU64::new(0),
        stats: Mutex::new(Default::default()),
        run_id: (0..40)
            .map(|_| char::from_digit(rand::random::<u32>() % 16, 16).expect("a hex digit"))
            .collect(),
    });
    let accept = async {
        loop {
            match listener.accept().await {
                Ok((stream, addr)) => {
                    let r = router.clone();
                    tokio::spawn(async move { r.serve(stream, addr.to_string()).await });
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }
    };
    tokio::select! {
        () = accept => {}
        () = shutdown => {}
    }
    Ok(())
}

impl Router {
    /// One connection, from its TLS handshake to its close: admitted if under `max_clients`,
    /// served by its session, its clerks then kept for the next connections.
    async fn serve(self: Arc<Self>, tcp: TcpStream, addr: String) {
        let _ = tcp.set_nodelay(true);
        let mut stream: BoxIo = match &self.cfg.client_tls {
            Some(acceptor) => match acceptor.accept(tcp).await {
                Ok(s) => Box::new(s),
                Err(e) => {
                    tracing::info!(%addr, "TLS handshake failed: {e}");
                    return;
                }
            },
            None => Box::new(tcp),
        };
        let open = self.connections.fetch_add(1, Ordering::SeqCst) + 1;
        if open > self.cfg.max_clients {
            let _ = stream
                .write_all(b"-ERR max number of clients reached\r\n")
                .await;
            self.connections.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        self.connections_received.fetch_add(1, Ordering::Relaxed);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut conn = Conn::new(id, addr, self.cfg.password.is_none());
        if let Err(e) = self.session(&mut stream, &mut conn).await {
            tracing::debug!(addr = %conn.addr, "connection ended: {e}");
        }
        // The session loop only ends between commands, so the clerks have nothing outstanding.
        let mut idle = self.idle_clerks.lock().expect("idle clerks lock");
        idle.extend(conn.clerk.take());
        idle.append(&mut conn.extra);
        drop(idle);
        self.connections.fetch_sub(1, Ordering::SeqCst);
    }
}
