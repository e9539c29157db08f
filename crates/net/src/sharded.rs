//! A sharded Flotilla on TCP: controller replicas and shard-group replicas as processes, and
//! the clients that routers and operators' tools use.
//!
//! **Node ids.** The sharded system's processes learn of each other by name: a controller
//! configuration lists each group's servers (`ShardConfig::groups`), and in deployment those
//! names are the servers' advertised addresses (`10.0.0.7:7104`). A shard server must reach
//! servers of groups it learns of only from a configuration, and a dialer checks that the node
//! answering at an address has the id it expects, so every process must derive the same id
//! from the same address with no table to share: [`server_node_id`] hashes the address into
//! `[2^62, 2^63)`. Clients' ids (routers, tools) are random in `[2^32, 2^62)`
//! ([`flotilla_id::alloc`] has the table of every id range), so a server's id never equals a
//! client's. A group's
//! (and the controller's) Raft ids are its servers' node ids, so Raft messages go straight to
//! the node of that id. Two addresses hashing to one id would be refused at start-up
//! ([`ShardServerSettings`] checks its group and controller); across groups the chance is
//! about n²/2⁶³ for n servers.
//!
//! **Dialing.** The [`Resolver`] handed to shard servers and clerks turns a name into its id
//! and adds the address to the transport's address book on first use
//! ([`Transport::add_peer`]), so a server dials another group's servers when it first pulls
//! from or notifies them, and a router a group's servers when a key first maps there.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use flotilla_id::alloc::{self, server_node_id};
use flotilla_kv::{KvCommand, KvReply};
use flotilla_node::NodeId;
use flotilla_raft::ReadMode;
use flotilla_rsm::{ClerkConfig, ClerkHost, ClientId, ReplicaConfig, RsmError};
use flotilla_shardctrler::{CtrlCommand, CtrlReply, Gid, ShardConfig};
use flotilla_shardkv::{
    ClientEvent, CtrlServer, Resolver, ShardClerkConfig, ShardClerkHost, ShardClientHost, ShardMsg,
    ShardServer, ShardServerConfig,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::clients::{random_node_id, Waiters};
use crate::server::{
    host_process, raft_config, serve_metrics, status_of, RaftWatch, Recovered, StatusOf, Timers,
    TICK,
};
use crate::NetError;
use flotilla_host::driver::{self, BatchStats, Durable, MemoryDurable, Outputs, ProcessHandle};
use flotilla_transport::frame::ShardView;
use flotilla_transport::tls::PeerTls;
use flotilla_transport::transport::{Deliver, Transport, TransportConfig};
use flotilla_transport::Secret;

/// Node ids of `addrs` ([`alloc::server_node_ids`]), refusing duplicates (the same address
/// twice, or a hash collision).
pub fn node_ids(addrs: &[String]) -> Result<Vec<NodeId>, NetError> {
    alloc::server_node_ids(addrs).map_err(|e| NetError::Config(e.to_string()))
}

/// A [`Resolver`] that names nodes by address and dials each one `transport` does not yet
/// know on first use (module docs). Called from the process's own driver task, inside the
/// runtime, after the transport's `dial_peers`.
pub fn dialing_resolver(transport: &Arc<Transport<ShardMsg>>) -> Resolver {
    let t = Arc::downgrade(transport);
    Arc::new(move |name: &str| {
        let id = server_node_id(name).get();
        if let Some(t) = t.upgrade() {
            t.add_peer(NodeId::new(id), name);
        }
        Some(NodeId::new(id))
    })
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

/// Clerks of a sharded Flotilla with an async API: what the router and `flotilla ctl` use.
pub struct ShardClients {
    host: ProcessHandle<ShardClientHost>,
    /// Calls waiting on shard clerks, and on the controller clerk, matched by (client, seq).
    kv: Arc<Waiters<KvReply>>,
    ctrl: Arc<Waiters<Result<CtrlReply, RsmError>>>,
    /// The controller clerk, created on first use; one controller call at a time.
    ctrl_clerk: tokio::sync::Mutex<Option<ClientId>>,
    transport: Arc<Transport<ShardMsg>>,
    nshards: usize,
}

impl ShardClients {
    /// Clients of the sharded system whose controller replicas listen at `ctrlers`, with
    /// `nshards` shards. Must run inside a tokio runtime. Node and clerk ids are random (see
    /// [`crate::clients::Clients::connect`]).
    pub fn connect(
        ctrlers: &[String],
        nshards: usize,
        secret: Secret,
        tls: Option<Arc<PeerTls>>,
    ) -> Result<Arc<Self>, NetError> {
        if nshards == 0 {
            return Err(NetError::Config(
                "the number of shards must be at least 1".into(),
            ));
        }
        let ids = node_ids(ctrlers)?;
        let transport = Transport::new(TransportConfig {
            me: random_node_id(),
            secret,
            peers: ids.iter().copied().zip(ctrlers.iter().cloned()).collect(),
            tls,
        });
        let kv: Arc<Waiters<KvReply>> = Arc::default();
        let ctrl: Arc<Waiters<Result<CtrlReply, RsmError>>> = Arc::default();
        let (t, k, c) = (transport.clone(), kv.clone(), ctrl.clone());
        let outputs = Outputs {
            send: Box::new(move |to, m| t.send(to, m)),
            event: Box::new(move |e: ClientEvent| match e {
                ClientEvent::Kv(e) => k.answer(e.client, e.seq, e.reply),
                ClientEvent::Ctrl(e) => c.answer(e.client, e.seq, e.reply),
            }),
        };
        let mut rng = rand::thread_rng();
        let ctrl_nodes: Vec<NodeId> = ids.clone();
        let resolve = dialing_resolver(&transport);
        let host = ShardClientHost::new(
            ShardClerkHost::new(
                alloc::shard_clerk_base(&mut rng),
                ctrl_nodes.clone(),
                resolve,
                nshards,
                ShardClerkConfig::default(),
            ),
            ClerkHost::new(alloc::ctrl_clerk_base(&mut rng), ClerkConfig::default()),
            ctrl_nodes,
        );
        let (handle, _join) = driver::spawn(
            "shard-clerks",
            host,
            MemoryDurable::default(),
            TICK,
            outputs,
        );
        let h = handle.clone();
        let deliver: Deliver<ShardMsg> = Arc::new(move |from, m| h.deliver(from, m));
        transport.dial_peers(deliver);
        Ok(Arc::new(ShardClients {
            host: handle,
            kv,
            ctrl,
            ctrl_clerk: tokio::sync::Mutex::new(None),
            transport,
            nshards,
        }))
    }

    pub fn nshards(&self) -> usize {
        self.nshards
    }

    /// The transport, e.g. to see which servers it dials.
    pub fn transport(&self) -> &Arc<Transport<ShardMsg>> {
        &self.transport
    }

    /// A new shard clerk (one sequential client).
    pub async fn new_clerk(&self) -> ClientId {
        let (tx, rx) = oneshot::channel();
        self.host.call(move |h, _| {
            let _ = tx.send(h.shard.add_clerk());
        });
        rx.await.expect("the clerk host runs as long as its handle")
    }

    /// Runs `cmd` on shard clerk `client` until a group answers it, exactly once. `None` if
    /// there is no such clerk or it has an operation outstanding.
    pub async fn call(&self, client: ClientId, cmd: KvCommand) -> Option<KvReply> {
        let (token, rx) = self.kv.wait(client);
        let waiting = self.kv.clone();
        self.host.call(move |h, ctx| {
            if h.shard.clerk(client).is_some_and(|c| !c.is_busy()) {
                let seq = ctx.scoped(
                    |m| m,
                    ClientEvent::Kv,
                    |inner| h.shard.start(client, cmd, inner),
                );
                waiting.started(client, token, seq);
            } else {
                waiting.cancel_token(client, token);
            }
        });
        rx.await.ok()
    }

    /// Gives up on shard clerk `client`'s outstanding operation (its outcome stays unknown).
    pub fn abandon(&self, client: ClientId) {
        self.kv.cancel(client);
        self.host.call(move |h, _| h.shard.abandon(client));
    }

    /// The latest configuration shard clerk `client` knows (configuration 0 before its first
    /// operation).
    pub async fn config_of(&self, client: ClientId) -> Option<ShardConfig> {
        let (tx, rx) = oneshot::channel();
        self.host.call(move |h, _| {
            let _ = tx.send(h.shard.clerk(client).map(|c| c.config().clone()));
        });
        rx.await.ok().flatten()
    }

    /// Runs `cmd` on the controller, waiting at most `limit`. An error says the controller did
    /// not answer in time (a Join, Leave or Move may then still take effect).
    pub async fn ctrl(&self, cmd: CtrlCommand, limit: Duration) -> Result<CtrlReply, String> {
        let mut slot = self.ctrl_clerk.lock().await;
        let client = match *slot {
            Some(c) => c,
            None => {
                let (tx, rx) = oneshot::channel();
                self.host.call(move |h, _| {
                    let _ = tx.send(h.add_ctrl_clerk());
                });
                let c = rx.await.map_err(|_| "the clerk host stopped".to_owned())?;
                *slot = Some(c);
                c
            }
        };
        let (token, rx) = self.ctrl.wait(client);
        let waiting = self.ctrl.clone();
        self.host.call(move |h, ctx| {
            let seq = ctx.scoped(ShardMsg::Ctrl, ClientEvent::Ctrl, |inner| {
                h.ctrl.start(client, cmd, inner)
            });
            waiting.started(client, token, seq);
        });
        match tokio::time::timeout(limit, rx).await {
            Ok(Ok(Ok(r))) => Ok(r),
            Ok(Ok(Err(e))) => Err(format!("the controller cannot answer: {e}")),
            Ok(Err(_)) => Err("the clerk host stopped".into()),
            Err(_) => {
                self.ctrl.cancel(client);
                self.host.call(move |h, _| h.ctrl.abandon(client));
                Err(format!(
                    "no answer from the controller within {limit:?} (is a majority of its \
                     replicas up?)"
                ))
            }
        }
    }

    /// The controller's latest configuration.
    pub async fn query(&self, num: Option<u64>, limit: Duration) -> Result<ShardConfig, String> {
        match self.ctrl(CtrlCommand::Query(num), limit).await? {
            CtrlReply::Config(c) => Ok(c),
            CtrlReply::Err(e) => Err(e.to_string()),
            other => Err(format!("unexpected answer from the controller: {other:?}")),
        }
    }
}

impl Drop for ShardClients {
    fn drop(&mut self) {
        self.host.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_rsm::Msg;

    #[test]
    fn duplicate_servers_are_refused() {
        let addrs = vec!["a:1".to_owned(), "b:1".to_owned(), "a:1".to_owned()];
        let e = node_ids(&addrs).unwrap_err().to_string();
        assert!(e.contains("a:1 and a:1"), "{e}");
    }

    /// Polls `f` once: `Some` if it finished.
    async fn poll_once<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        std::future::poll_fn(|cx| match std::pin::Pin::new(&mut *f).poll(cx) {
            std::task::Poll::Ready(v) => std::task::Poll::Ready(Some(v)),
            std::task::Poll::Pending => std::task::Poll::Ready(None),
        })
        .await
    }

    /// Waits until the clerk host has handled every input queued before this call.
    async fn settle(c: &ShardClients) {
        let (tx, rx) = oneshot::channel();
        c.host.call(move |_, _| {
            let _ = tx.send(());
        });
        rx.await.expect("the clerk host runs");
    }

    fn value(v: &str) -> KvReply {
        KvReply::Value(Some(v.as_bytes().to_vec()))
    }

    /// Issue 15, item 5, for the sharded clients: reply n is queued in the driver, the caller
    /// gives up on n, the clerk's next call registers before the driver hands reply n out;
    /// reply n must not answer call n+1. Exact on a current-thread runtime (nothing runs until
    /// the test awaits); the test plays the controller and the group.
    #[tokio::test(flavor = "current_thread")]
    async fn a_reply_to_an_abandoned_call_does_not_answer_the_next() {
        use flotilla_rsm::Response;
        use flotilla_shardkv::ShardReply;
        let (ctrler, group) = ("127.0.0.1:1".to_owned(), "127.0.0.1:2".to_owned());
        let secret = Secret::new("a test secret, 16+ chars").expect("secret");
        let clients =
            ShardClients::connect(std::slice::from_ref(&ctrler), 2, secret, None).expect("clients");
        let ck = clients.new_clerk().await;
        let get = || KvCommand::Get { key: b"k".to_vec() };
        let from_group = |seq: u64, reply: KvReply| {
            let m = ShardMsg::Group(Msg::Response(Response {
                client: ck,
                seq,
                now_ms: 0,
                result: Ok(ShardReply::Kv(reply)),
            }));
            (server_node_id(&group), m)
        };
        let mut first = std::pin::pin!(clients.call(ck, get()));
        assert!(poll_once(&mut first).await.is_none());
        settle(&clients).await; // the clerk asked the controller
        let config = ShardConfig {
            num: 1,
            shards: vec![1, 1],
            groups: BTreeMap::from([(1, vec![group.clone()])]),
        };
        let m = ShardMsg::Ctrl(Msg::Response(Response {
            client: ck,
            seq: 1,
            now_ms: 0,
            result: Ok(CtrlReply::Config(config)),
        }));
        clients.host.deliver(server_node_id(&ctrler), m);
        settle(&clients).await; // operation 1 went to group 1
        let (from, m) = from_group(1, value("first"));
        clients.host.deliver(from, m);
        clients.abandon(ck); // the command timed out just as its reply came in
        let mut second = std::pin::pin!(clients.call(ck, get()));
        assert!(poll_once(&mut second).await.is_none());
        settle(&clients).await; // reply 1 handled, operation 2 sent
        assert_eq!(
            poll_once(&mut second).await,
            None,
            "the second call must not receive the first's reply"
        );
        let (from, m) = from_group(2, value("second"));
        clients.host.deliver(from, m);
        assert_eq!(second.await, Some(value("second")));
    }
}
