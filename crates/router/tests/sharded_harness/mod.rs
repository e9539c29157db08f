//! A sharded Flotilla in process on loopback sockets, for the router's tests that need one:
//! a one-replica controller and two one-replica groups sharing [`NSHARDS`] shards, joined,
//! with a router in front.

use std::collections::BTreeMap;
use std::time::Duration;

use flotilla_host::driver::MemoryDurable;
use flotilla_router::{run_router, RouterConfig, ShardedRouting};
use flotilla_server::server::{Recovered, Timers};
use flotilla_server::sharded::{run_shard_server, ShardRole, ShardServerSettings};
use flotilla_shardctrler::{CtrlCommand, CtrlReply};
use flotilla_transport::Secret;
use tokio::net::TcpListener;

/// How long the harness waits for the groups to join before it fails.
const PATIENCE: Duration = Duration::from_secs(60);
pub const NSHARDS: usize = 10;

/// Starts the controller and two groups, joins the groups, and starts a router; returns the
/// router's port. Everything runs until the test's runtime ends.
pub async fn start() -> u16 {
    let secret = Secret::new("router-sharded-end-to-end-test-secret").unwrap();
    let bind = || TcpListener::bind("127.0.0.1:0");
    let (ctrl, g1, g2) = (
        bind().await.unwrap(),
        bind().await.unwrap(),
        bind().await.unwrap(),
    );
    let addr = |l: &TcpListener| l.local_addr().unwrap().to_string();
    let ctrlers = vec![addr(&ctrl)];
    let groups = BTreeMap::from([(1, vec![addr(&g1)]), (2, vec![addr(&g2)])]);
    let servers = [
        (ShardRole::Ctrler, ctrlers.clone(), ctrl),
        (
            ShardRole::Group {
                gid: 1,
                ctrlers: ctrlers.clone(),
            },
            groups[&1].clone(),
            g1,
        ),
        (
            ShardRole::Group {
                gid: 2,
                ctrlers: ctrlers.clone(),
            },
            groups[&2].clone(),
            g2,
        ),
    ];
    for (role, peers, listener) in servers {
        let cfg = ShardServerSettings {
            role,
            peers,
            index: 0,
            nshards: NSHARDS,
            secret: secret.clone(),
            max_raft_state: None,
            sessions: Default::default(),
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
        tokio::spawn(run_shard_server(cfg, disk, recovered, listener, never));
    }
    let admin =
        flotilla_client::ShardClient::connect(&ctrlers, NSHARDS, secret.clone(), None).unwrap();
    let joined = admin
        .ctrl(CtrlCommand::Join(groups), PATIENCE)
        .await
        .unwrap();
    assert!(matches!(joined, CtrlReply::Done { .. }), "{joined:?}");

    let router = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = router.local_addr().unwrap().port();
    let cfg = RouterConfig {
        servers: Vec::new(),
        pin_servers: false,
        secret,
        password: None,
        max_clients: 100,
        command_timeout: PATIENCE,
        metrics: None,
        tls: None,
        client_tls: None,
        sharded: Some(ShardedRouting {
            ctrlers,
            nshards: NSHARDS,
        }),
        max_buffered_bytes: flotilla_router::DEFAULT_MAX_BUFFERED_BYTES,
        idle_timeout: None,
    };
    tokio::spawn(run_router(cfg, router, std::future::pending::<()>()));
    port
}

/// The first key `prefix0`, `prefix1` … in `shard`.
pub fn key_in(shard: usize, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| flotilla_shardkv::key_shard(k.as_bytes(), NSHARDS) == shard)
        .unwrap()
}
