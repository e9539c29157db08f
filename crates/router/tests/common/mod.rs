//! What the router's end-to-end tests share: a one-replica KV group on loopback with a router
//! in front of it, as the test's settings ask.

use std::time::Duration;

use flotilla_host::driver::MemoryDurable;
use flotilla_kv::Kv;
use flotilla_raft::NodeId;
use flotilla_router::{run_router, RouterConfig};
use flotilla_rsm::SessionLimits;
use flotilla_server::server::{run_replica, Recovered, ServerConfig, Timers};
use flotilla_transport::Secret;
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for anything before it fails: generous, since a test fails only by
/// running out of it (a deadlock, a connection never closed), never by being slow.
pub const PATIENCE: Duration = Duration::from_secs(60);

/// The settings a test varies.
pub struct Settings {
    pub max_buffered_bytes: usize,
    /// The password clients must AUTH with, if any.
    pub password: Option<&'static str>,
    pub idle_timeout: Option<Duration>,
    /// The group's session limits.
    pub sessions: SessionLimits,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_buffered_bytes: flotilla_router::DEFAULT_MAX_BUFFERED_BYTES,
            password: None,
            idle_timeout: None,
            sessions: SessionLimits::default(),
        }
    }
}

/// Starts a one-replica KV group and a router in front of it; returns the router's port.
/// Both run until the test's runtime ends.
pub async fn start(settings: Settings) -> u16 {
    let secret = Secret::new("router-end-to-end-test-secret").unwrap();
    let replica = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peers = vec![replica.local_addr().unwrap().to_string()];
    let cfg = ServerConfig {
        id: NodeId::new(0),
        peers: peers.clone(),
        join: false,
        secret: secret.clone(),
        max_raft_state: None,
        sessions: settings.sessions,
        metrics: None,
        tls: None,
        timers: Timers::default(),
        read_mode: flotilla_raft::ReadMode::ReadIndex,
    };
    let recovered = Recovered {
        state: Vec::new(),
        snapshot: Default::default(),
    };
    let never = std::future::pending::<()>();
    let disk = MemoryDurable::default();
    tokio::spawn(run_replica(
        cfg,
        Kv::default(),
        disk,
        recovered,
        replica,
        never,
    ));
    let router = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = router.local_addr().unwrap().port();
    let cfg = RouterConfig {
        servers: peers,
        pin_servers: false,
        secret,
        password: settings.password.map(str::to_owned),
        max_clients: 100,
        command_timeout: PATIENCE,
        metrics: None,
        tls: None,
        client_tls: None,
        sharded: None,
        max_buffered_bytes: settings.max_buffered_bytes,
        idle_timeout: settings.idle_timeout,
    };
    tokio::spawn(run_router(cfg, router, std::future::pending::<()>()));
    port
}

/// A Redis client on raw bytes, so a test can send anything (half a request); each test
/// file adds the calls it needs.
pub struct Client {
    pub stream: TcpStream,
    /// Received bytes not yet taken as a reply.
    pub buf: Vec<u8>,
}

impl Client {
    pub async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }
}
