//! A sharded Flotilla on TCP: controller replicas and shard-group replicas as processes.
//!
//! **Node ids.** The sharded system's processes learn of each other by name: a controller
//! configuration lists each group's servers (`ShardConfig::groups`), and in deployment those
//! names are the servers' advertised addresses (`10.0.0.7:7104`). Every process derives a
//! server's node id from its address ([`alloc::server_node_id`]; [`flotilla_id::alloc`] has
//! the table of every id range). A group's (and the controller's) Raft ids are its servers'
//! node ids, so Raft messages go straight to the node of that id. Two addresses hashing to
//! one id are refused at start-up ([`ShardServerSettings`] checks its group and controller).
//!
//! **Dialing.** The [`Resolver`] handed to shard servers turns a name into its id and adds
//! the address to the transport's address book on first use ([`Transport::add_peer`]), so a
//! server dials another group's servers when it first pulls from or notifies them.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use flotilla_id::alloc;
use flotilla_node::NodeId;
use flotilla_raft::ReadMode;
use flotilla_rsm::ReplicaConfig;
use flotilla_shardctrler::Gid;
use flotilla_shardkv::{CtrlServer, Resolver, ShardMsg, ShardServer, ShardServerConfig};
use tokio::net::TcpListener;

use crate::server::{
    host_process, raft_config, serve_metrics, status_of, RaftWatch, Recovered, StatusOf, Timers,
};
use crate::NetError;
use flotilla_host::driver::{self, BatchStats, Durable};
use flotilla_transport::frame::ShardView;
use flotilla_transport::ids::dialing;
use flotilla_transport::tls::PeerTls;
use flotilla_transport::transport::{Transport, TransportConfig};
use flotilla_transport::Secret;

/// Node ids of `addrs` ([`alloc::server_node_ids`]), refusing duplicates (the same address
/// twice, or a hash collision).
fn node_ids(addrs: &[String]) -> Result<Vec<NodeId>, NetError> {
    alloc::server_node_ids(addrs).map_err(|e| NetError::Config(e.to_string()))
}

/// The [`Resolver`] a shard server uses: names nodes by address and dials each on first use
/// ([`dialing`]).
fn dialing_resolver(transport: &Arc<Transport<ShardMsg>>) -> Resolver {
    let dial = dialing(transport);
    Arc::new(move |name: &str| Some(dial(name)))
}

/// What a server of the sharded system is.
#[derive(Clone, Debug)]
pub enum ShardRole {
    /// A replica of the shard controller.
    Ctrler,
    /// A replica of shard group `gid`, which follows the controller at `ctrlers`.
    Group { gid: Gid, ctrlers: Vec<String> },
}

/// What one server of the sharded system needs to know.
#[derive(Clone)]
pub struct ShardServerSettings {
    pub role: ShardRole,
    /// The replicas of this server's group (the controller's, for a controller replica),
    /// by advertised address, this one's included. Fixed: sharded groups do not change
    /// membership (a group is replaced by joining a new one and removing the old).
    pub peers: Vec<String>,
    /// This server's position in `peers`.
    pub index: usize,
    /// Shards in the system; every process of one deployment must agree.
    pub nshards: usize,
    pub secret: Secret,
    pub max_raft_state: Option<usize>,
    /// When clients' exactly-once records expire (the controller's table, and each shard's).
    pub sessions: flotilla_rsm::SessionLimits,
    pub metrics: Option<String>,
    pub tls: Option<Arc<PeerTls>>,
    pub timers: Timers,
    pub read_mode: ReadMode,
}

/// Runs one server of the sharded system until `shutdown` completes or its storage fails.
pub async fn run_shard_server<D: Durable + 'static>(
    cfg: ShardServerSettings,
    durable: D,
    recovered: Recovered,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NetError> {
    let ids = node_ids(&cfg.peers)?;
    let Some(&me) = ids.get(cfg.index) else {
        return Err(NetError::Config(format!(
            "server index {} is not a position in the {} peers",
            cfg.index,
            ids.len()
        )));
    };
    if cfg.nshards == 0 {
        return Err(NetError::Config(
            "the number of shards must be at least 1".into(),
        ));
    }
    let raft = raft_config(me, ids.clone(), &cfg.timers, cfg.read_mode)?;
    let rcfg = ReplicaConfig {
        raft,
        max_raft_state: cfg.max_raft_state,
        sessions: cfg.sessions,
        snapshot_scales_with_state: true,
    };
    let addrs: BTreeMap<NodeId, String> = ids.iter().copied().zip(cfg.peers.clone()).collect();
    let mut peers = addrs.clone();
    peers.remove(&me);
    let metrics = serve_metrics(cfg.metrics.as_deref()).await?;
    let stored = |e: flotilla_rsm::RestoreError| {
        NetError::Storage(format!("cannot restart from the stored state: {e}"))
    };
    let mut watch = RaftWatch::new(metrics);
    let metrics_addr = cfg.metrics.clone();
    match cfg.role.clone() {
        ShardRole::Ctrler => {
            let transport = shard_transport(me, &cfg, peers);
            let mut server =
                CtrlServer::restore(rcfg, cfg.nshards, &recovered.state, recovered.snapshot)
                    .map_err(stored)?;
            server.set_snapshot_spool(durable.snapshot_spool());
            let observe: driver::Observer<CtrlServer> =
                Box::new(move |s: &CtrlServer, b: &BatchStats| {
                    watch.observe(s.raft(), s.replica().applied(), b)
                });
            let status: StatusOf<CtrlServer> = Arc::new(move |s: &CtrlServer| {
                let mut st = status_of(s.replica(), &[]);
                st.addrs = addrs.clone();
                st.metrics = metrics_addr.clone();
                st.shard = Some(Box::new(ShardView {
                    kind: "ctrler".into(),
                    gid: 0,
                    config_num: s.replica().state().machine().latest().num,
                    ..ShardView::default()
                }));
                st
            });
            let name = format!("ctrler-{}", cfg.index);
            host_process(
                &name, server, durable, transport, observe, status, listener, shutdown,
            )
            .await
        }
        ShardRole::Group { gid, ctrlers } => {
            if gid == 0 {
                return Err(NetError::Config("group id 0 is reserved (no group)".into()));
            }
            let ctrl_ids = node_ids(&ctrlers)?;
            if let Some(a) = ctrlers.iter().find(|a| cfg.peers.contains(a)) {
                return Err(NetError::Config(format!(
                    "{a} is listed both as a controller and as a server of group {gid}"
                )));
            }
            // The controller is dialed from the start; other groups as configurations name them.
            peers.extend(ctrl_ids.iter().copied().zip(ctrlers.iter().cloned()));
            let transport = shard_transport(me, &cfg, peers);
            let ctrl_nodes = ctrl_ids.clone();
            // Its controller clerk's id is `me` (alloc::server_ctrl_clerk).
            let scfg = ShardServerConfig::new(gid, cfg.nshards, rcfg, ctrl_nodes);
            let resolve = dialing_resolver(&transport);
            let mut server =
                ShardServer::restore(scfg, resolve, &recovered.state, recovered.snapshot)
                    .map_err(stored)?;
            server.set_snapshot_spool(durable.snapshot_spool());
            let observe: driver::Observer<ShardServer> =
                Box::new(move |s: &ShardServer, b: &BatchStats| {
                    watch.observe(s.raft(), s.replica().applied(), b)
                });
            let status: StatusOf<ShardServer> = Arc::new(move |s: &ShardServer| {
                let mut st = status_of(s.replica(), &[]);
                st.addrs = addrs.clone();
                st.metrics = metrics_addr.clone();
                st.shard = Some(Box::new(group_view(s)));
                st
            });
            let name = format!("group-{gid}-{}", cfg.index);
            host_process(
                &name, server, durable, transport, observe, status, listener, shutdown,
            )
            .await
        }
    }
}

fn shard_transport(
    me: NodeId,
    cfg: &ShardServerSettings,
    peers: BTreeMap<NodeId, String>,
) -> Arc<Transport<ShardMsg>> {
    Transport::new(TransportConfig {
        me,
        secret: cfg.secret.clone(),
        peers,
        tls: cfg.tls.clone(),
    })
}

/// A shard group replica's view of its shards.
fn group_view(s: &ShardServer) -> ShardView {
    let m = s.machine();
    ShardView {
        kind: "group".into(),
        gid: m.gid(),
        config_num: m.config().num,
        states: (m.shard_states().into_iter())
            .map(|(shard, st)| (shard, format!("{st:?}")))
            .collect(),
        keys: m.shard_keys(),
    }
}
