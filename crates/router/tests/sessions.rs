//! Sessions that expire, end to end on loopback sockets (issue 16): a one-replica KV group
//! that keeps one session, a router in front of it, two Redis connections (one clerk each).

use std::time::Duration;

use flotilla_host::driver::MemoryDurable;
use flotilla_kv::Kv;
use flotilla_raft::NodeId;
use flotilla_resp::{decode_value, Limits, Value};
use flotilla_router::{run_router, RouterConfig};
use flotilla_rsm::SessionLimits;
use flotilla_server::server::{run_replica, Recovered, ServerConfig, Timers};
use flotilla_transport::Secret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How long a test waits for a reply before it fails (it fails only by running out of it).
const PATIENCE: Duration = Duration::from_secs(60);

/// Starts a one-replica KV group keeping at most `max_sessions`, and a router; returns the
/// router's port. Both run until the test's runtime ends.
async fn start(max_sessions: u64) -> u16 {
    let secret = Secret::new("sessions-test-secret-16+").unwrap();
    let replica = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peers = vec![replica.local_addr().unwrap().to_string()];
    let cfg = ServerConfig {
        id: NodeId::new(0),
        peers: peers.clone(),
        join: false,
        secret: secret.clone(),
        max_raft_state: None,
        sessions: SessionLimits {
            idle_ms: 3_600_000,
            max_sessions,
        },
        metrics: None,
        tls: None,
        timers: Timers::default(),
        read_mode: flotilla_raft::ReadMode::ReadIndex,
    };
    let recovered = Recovered {
        state: Vec::new(),
        snapshot: Default::default(),
    };
    let disk = MemoryDurable::default();
    let never = std::future::pending::<()>();
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
        password: None,
        max_clients: 100,
        command_timeout: PATIENCE,
        metrics: None,
        tls: None,
        client_tls: None,
        sharded: None,
        max_buffered_bytes: flotilla_router::DEFAULT_MAX_BUFFERED_BYTES,
        idle_timeout: None,
    };
    tokio::spawn(run_router(cfg, router, std::future::pending::<()>()));
    port
}

struct Client {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Client {
    async fn connect(port: u16) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    async fn call(&mut self, args: &[&[u8]]) -> Value {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend(format!("${}\r\n", a.len()).bytes());
            out.extend_from_slice(a);
            out.extend(b"\r\n");
        }
        self.stream.write_all(&out).await.unwrap();
        loop {
            if let Some((v, n)) = decode_value(&self.buf, &Limits::default()).unwrap() {
                self.buf.drain(..n);
                return v;
            }
            let read = tokio::time::timeout(PATIENCE, self.stream.read_buf(&mut self.buf));
            match read.await {
                Ok(Ok(0)) => panic!("the router closed the connection instead of replying"),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("no reply: {e}"),
                Err(_) => panic!("no reply within {PATIENCE:?}"),
            }
        }
    }
}

/// A connection whose session the group forgot (evicted: the group keeps one and another
/// connection wrote since) gets a clear `-ERR session expired …` for its next write, which is
/// not applied; its write after that starts a new session and is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_session_gets_a_clear_error_and_then_a_new_session() {
    let port = start(1).await;
    let (mut a, mut b) = (Client::connect(port).await, Client::connect(port).await);
    assert_eq!(a.call(&[b"SET", b"k", b"1"]).await, Value::ok());
    assert_eq!(b.call(&[b"SET", b"other", b"2"]).await, Value::ok());
    let refused = a.call(&[b"SET", b"k", b"3"]).await;
    assert_eq!(
        refused,
        Value::error("ERR session expired: the command may or may not have been applied")
    );
    assert_eq!(a.call(&[b"GET", b"k"]).await, Value::bulk("1"));
    assert_eq!(a.call(&[b"SET", b"k", b"4"]).await, Value::ok());
    assert_eq!(b.call(&[b"GET", b"k"]).await, Value::bulk("4"));
}
