//! The labs' sharded key/value tester (`shardkv/config.go`) on the simulator: a controller of
//! 3 replicas, replica groups 100, 101, 102 of `n` servers each named `server-<gid>-<i>`, a
//! second controller (for the rejection test) and one node hosting every client. Clients'
//! operations are recorded and checked for linearizability, as [`crate::KvTester`] does.
//!
//! `FLOTILLA_READ_MODE=log|read-index|lease` sets how the groups serve Gets, as for
//! [`crate::KvTester::kvraft`]; `FLOTILLA_SHARD_PAGE_BYTES=N` the page size of shard pulls
//! where the scenario does not set one (so the lab scenarios can run with shards moving in
//! many pages). Every group and controller replica is checked against its invariants after
//! every input it handles (a group's include its state machine's, [`flotilla_shardkv::ShardKv`]'s),
//! at the depth a [`CheckSampler`] chooses.
//!
//! Node ids: controller `0..3`, second controller `3..6`, group `g`'s server `i` at
//! `6 + g·n + i`, the client host last.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use flotilla_check::{
    CheckResult, KvInput, KvOutput, Operation, RedisInput, RedisOp, RedisOutput, RedisReply,
};
use flotilla_id::alloc;
use flotilla_kv::{KvCommand, KvError, KvReply};
use flotilla_node::{lift_offloaded, Ctx, NodeId, Offloaded, Process};
use flotilla_raft::Config;
use flotilla_rsm::{ClerkConfig, ClerkHost, ClientId, ReplicaConfig};
use flotilla_shardctrler::{CtrlCommand, CtrlReply, Gid, ShardConfig, DEFAULT_SHARDS};
use flotilla_shardkv::{
    key_shard, ClientEvent, CtrlServer, PullStats, Resolver, ShardClerkConfig, ShardClerkHost,
    ShardClientHost, ShardMsg, ShardServer, ShardServerConfig,
};
use flotilla_sim::{block_on, Persister, Runtime, Sim};

use crate::completion::Completions;
use crate::invariants::CheckSampler;
use crate::raft_tester::{TEST_TIME_LIMIT, TICK};
use crate::recorder::Recorder;
use crate::redis_ops::{command_of, reply_of};

/// Replicas of each controller service.
pub const CTRLERS: usize = 3;
/// The groups' ids: group `g` is `FIRST_GID + g`.
pub const FIRST_GID: Gid = 100;
/// Node of the first group's first server.
const FIRST_GROUP_NODE: usize = 2 * CTRLERS;

/// A simulated node of the sharded system.
pub enum ShardNode {
    Ctrl(Box<CtrlServer>),
    /// A group's server, and the tester's sum of every group server's [`PullStats`] (kept
    /// here: a server's own counts are lost when it crashes).
    Group(Box<ShardServer>, Rc<Cell<PullStats>>),
    Host(Box<ShardClientHost>),
}

impl Process for ShardNode {
    type Msg = ShardMsg;
    type Event = ClientEvent;

    /// Servers encode their snapshots as deployed ones do: the simulator runs the job at
    /// once and feeds its continuation next.
    fn allow_offload(&mut self) {
        match self {
            ShardNode::Ctrl(s) => s.allow_offload(),
            ShardNode::Group(s, _) => s.allow_offload(),
            ShardNode::Host(_) => {}
        }
    }

    fn take_offloaded(&mut self) -> Vec<Offloaded<Self>> {
        match self {
            ShardNode::Ctrl(s) => lift(s.take_offloaded(), |node| match node {
                ShardNode::Ctrl(s) => Some(&mut **s),
                _ => None,
            }),
            ShardNode::Group(s, _) => lift(s.take_offloaded(), |node| match node {
                ShardNode::Group(s, _) => Some(&mut **s),
                _ => None,
            }),
            ShardNode::Host(_) => Vec::new(),
        }
    }

    fn on_tick(&mut self, ctx: &mut Ctx<ShardMsg, ClientEvent>) {
        match self {
            ShardNode::Ctrl(s) => server_step(ctx, |c| s.on_tick(c)),
            ShardNode::Group(s, _) => server_step(ctx, |c| s.on_tick(c)),
            ShardNode::Host(h) => h.on_tick(ctx),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: ShardMsg, ctx: &mut Ctx<ShardMsg, ClientEvent>) {
        match self {
            ShardNode::Ctrl(s) => server_step(ctx, |c| s.on_message(from, msg, c)),
            ShardNode::Group(s, sum) => {
                let before = s.pull_stats();
                server_step(ctx, |c| s.on_message(from, msg, c));
                let (after, mut total) = (s.pull_stats(), sum.get());
                total.later_pages += after.later_pages - before.later_pages;
                total.resumed += after.resumed - before.resumed;
                sum.set(total);
            }
            ShardNode::Host(h) => h.on_message(from, msg, ctx),
        }
    }

    fn is_reply(msg: &ShardMsg) -> bool {
        msg.is_reply()
    }

    fn may_send_before_save(&self, msg: &ShardMsg) -> bool {
        match self {
            ShardNode::Ctrl(s) => s.may_send_before_save(msg),
            ShardNode::Group(s, _) => s.may_send_before_save(msg),
            ShardNode::Host(_) => false,
        }
    }
}

/// A server's offloaded jobs as the node's: each continuation is fed to the server `pick`
/// finds in the node.
fn lift<P: Process<Msg = ShardMsg, Event = ()> + 'static>(
    jobs: Vec<Offloaded<P>>,
    pick: fn(&mut ShardNode) -> Option<&mut P>,
) -> Vec<Offloaded<ShardNode>> {
    lift_offloaded(jobs, move |node: &mut ShardNode, ctx, then| {
        if let Some(s) = pick(node) {
            server_step(ctx, |c| then(s, c));
        }
    })
}

fn server_step(ctx: &mut Ctx<ShardMsg, ClientEvent>, f: impl FnOnce(&mut Ctx<ShardMsg, ()>)) {
    ctx.scoped(
        |m| m,
        |()| unreachable!("servers emit no events"),
        |inner| f(inner),
    );
}

/// The simulator's node for a server name `server-<gid>-<i>` of a tester with `n` servers
/// per group.
fn resolver(n: usize, groups: usize) -> Resolver {
    Arc::new(move |name: &str| {
        let rest = name.strip_prefix("server-")?;
        let (gid, i) = rest.split_once('-')?;
        let (gid, i): (Gid, usize) = (gid.parse().ok()?, i.parse().ok()?);
        let g = gid.checked_sub(FIRST_GID)? as usize;
        (g < groups && i < n).then_some(NodeId::from_index(FIRST_GROUP_NODE + g * n + i))
    })
}

/// `FLOTILLA_SHARD_PAGE_BYTES`, if set.
fn page_bytes_from_env() -> Option<usize> {
    let v = std::env::var("FLOTILLA_SHARD_PAGE_BYTES").ok()?;
    match v.trim().parse() {
        Ok(n) if n > 0 => Some(n),
        _ => panic!("FLOTILLA_SHARD_PAGE_BYTES={v:?}: expected a positive number of bytes"),
    }
}

/// Settings of a [`ShardTester`].
#[derive(Clone, Debug)]
pub struct ShardTesterConfig {
    /// Servers per group.
    pub n: usize,
    pub groups: usize,
    pub unreliable: bool,
    /// The labs' maxraftstate for the groups (`None` for -1).
    pub max_raft_state: Option<usize>,
    pub nshards: usize,
    /// The groups' [`ShardServerConfig::page_bytes`] (`None`: `FLOTILLA_SHARD_PAGE_BYTES`,
    /// else the default).
    pub page_bytes: Option<usize>,
    /// When the groups' per-shard exactly-once records expire. With limits small enough to
    /// expire records of live clients, give every operation a time limit: one refused as
    /// "session expired" then counts as of unknown outcome.
    pub sessions: flotilla_rsm::SessionLimits,
}

impl ShardTesterConfig {
    pub fn lab(n: usize, unreliable: bool, max_raft_state: Option<usize>) -> Self {
        ShardTesterConfig {
            n,
            groups: 3,
            unreliable,
            max_raft_state,
            nshards: DEFAULT_SHARDS,
            page_bytes: None,
            sessions: flotilla_rsm::SessionLimits::default(),
        }
    }
}

/// The sharded system on a simulated network, with recording clients.
pub struct ShardTester {
    pub sim: Rc<RefCell<Sim<ShardNode>>>,
    pub rt: Runtime,
    cfg: ShardTesterConfig,
    host: NodeId,
    kv_pending: Completions<ClientId, KvReply>,
    ctrl_pending: Completions<ClientId, CtrlReply>,
    /// The test's controller clerks: of the main controller, of the second.
    admin: ClientId,
    admin2: ClientId,
    rec: Recorder,
    pull_stats: Rc<Cell<PullStats>>,
}

impl ShardTester {
    pub fn new(name: &str, seed: u64, cfg: ShardTesterConfig) -> Rc<Self> {
        let (n, groups) = (cfg.n, cfg.groups);
        let host = FIRST_GROUP_NODE + groups * n;
        let resolve = resolver(n, groups);
        let (nshards, mrs, sessions) = (cfg.nshards, cfg.max_raft_state, cfg.sessions);
        let read_mode = crate::kv_tester::read_mode_from_env();
        let page_bytes = cfg.page_bytes.or_else(page_bytes_from_env);
        let pull_stats = Rc::new(Cell::new(PullStats::default()));
        let count = pull_stats.clone();
        let factory = Box::new(move |node: NodeId, p: &Persister, s: u64| {
            let id = node.index();
            if id < 2 * CTRLERS {
                let first = id / CTRLERS * CTRLERS;
                let voters = (first..first + CTRLERS).map(NodeId::from_index).collect();
                let cfg = ReplicaConfig {
                    raft: Config::for_service(node, voters, s),
                    max_raft_state: None,
                    sessions: flotilla_rsm::SessionLimits::default(),
                    snapshot_scales_with_state: false,
                };
                let c = CtrlServer::restore(cfg, nshards, p.state(), p.snapshot())
                    .unwrap_or_else(|e| panic!("controller {id}: cannot restart: {e}"));
                ShardNode::Ctrl(Box::new(c))
            } else if id < host {
                let g = (id - FIRST_GROUP_NODE) / n;
                let first = FIRST_GROUP_NODE + g * n;
                let voters = (first..first + n).map(NodeId::from_index).collect();
                let mut raft = Config::for_service(node, voters, s);
                if let Some(m) = read_mode {
                    raft.read_mode = m;
                }
                let replica = ReplicaConfig {
                    raft,
                    max_raft_state: mrs,
                    sessions,
                    snapshot_scales_with_state: false,
                };
                let ctrlers = (0..CTRLERS).map(NodeId::from_index).collect();
                let mut cfg =
                    ShardServerConfig::new(FIRST_GID + g as Gid, nshards, replica, ctrlers);
                if let Some(b) = page_bytes {
                    cfg.page_bytes = b;
                }
                let srv = ShardServer::restore(cfg, resolve.clone(), p.state(), p.snapshot())
                    .unwrap_or_else(|e| panic!("server {id} of group {g}: cannot restart: {e}"));
                ShardNode::Group(Box::new(srv), count.clone())
            } else {
                // Client ids from the seed: replayable, distinct across runs.
                let base = alloc::sim_clerk_base(s);
                let shard = ShardClerkHost::new(
                    base,
                    (0..CTRLERS).map(NodeId::from_index).collect(),
                    resolve.clone(),
                    nshards,
                    ShardClerkConfig::default(),
                );
                let ctrl = ClerkHost::new(alloc::sim_ctrl_clerk_base(s), ClerkConfig::default());
                ShardNode::Host(Box::new(ShardClientHost::new(
                    shard,
                    ctrl,
                    (0..CTRLERS).map(NodeId::from_index).collect(),
                )))
            }
        });
        let mut sim = Sim::new(host + 1, seed, TICK, factory);
        sim.set_reliable(!cfg.unreliable);
        let sampler = CheckSampler::default();
        sim.add_checker(Box::new(move |_, node: &ShardNode| match node {
            ShardNode::Group(s, _) => s.check_invariants(sampler.next()),
            ShardNode::Ctrl(c) => c.check_invariants(sampler.next()),
            ShardNode::Host(_) => {}
        }));
        let sim = Rc::new(RefCell::new(sim));
        let mut ids = (0, 0);
        sim.borrow_mut()
            .with_process(NodeId::from_index(host), |node, _| {
                let ShardNode::Host(h) = node else {
                    unreachable!()
                };
                ids = (
                    h.ctrl
                        .add_clerk((0..CTRLERS).map(NodeId::from_index).collect()),
                    h.ctrl
                        .add_clerk((CTRLERS..2 * CTRLERS).map(NodeId::from_index).collect()),
                );
            });
        Rc::new(ShardTester {
            sim,
            rt: Runtime::new(),
            cfg,
            host: NodeId::from_index(host),
            kv_pending: Completions::default(),
            ctrl_pending: Completions::default(),
            admin: ids.0,
            admin2: ids.1,
            rec: Recorder::new(name, seed),
            pull_stats,
        })
    }

    pub fn config(&self) -> &ShardTesterConfig {
        &self.cfg
    }

    /// The sum of every group server's pull counts: how often a shard's transfer went on
    /// past one page, and how often one was resumed by another leader or after a crash.
    pub fn pull_stats(&self) -> PullStats {
        self.pull_stats.get()
    }

    pub fn gid(&self, g: usize) -> Gid {
        FIRST_GID + g as Gid
    }

    /// Group `g`'s servers' names.
    pub fn names(&self, g: usize) -> Vec<String> {
        (0..self.cfg.n)
            .map(|i| format!("server-{}-{i}", self.gid(g)))
            .collect()
    }

    /// The node of group `g`'s server `i`.
    pub fn node(&self, g: usize, i: usize) -> NodeId {
        NodeId::from_index(FIRST_GROUP_NODE + g * self.cfg.n + i)
    }

    /// Runs `script` in virtual time; panics past the labs' 120 s limit.
    pub fn run<T: 'static>(self: &Rc<Self>, script: impl Future<Output = T> + 'static) -> T {
        self.run_for(TEST_TIME_LIMIT, script)
    }

    pub fn run_for<T: 'static>(
        self: &Rc<Self>,
        limit: Duration,
        script: impl Future<Output = T> + 'static,
    ) -> T {
        let me = self.clone();
        block_on(&self.sim, &self.rt, limit, move || me.after_input(), script)
    }

    fn after_input(&self) {
        let events = self.sim.borrow_mut().drain_events();
        for (_, e) in events {
            match e {
                ClientEvent::Kv(ev) => self.kv_pending.answer(ev.client, ev.reply),
                ClientEvent::Ctrl(ev) => {
                    let reply = ev.reply.expect("simulated disks never fill");
                    self.ctrl_pending.answer(ev.client, reply)
                }
            }
        }
    }

    pub async fn sleep(&self, d: Duration) {
        self.rt.sleep(d).await
    }

    pub fn now(&self) -> Duration {
        self.rt.now()
    }

    /// A random number in `0..n` from the simulation's seeded generator.
    pub fn rand(&self, n: u64) -> u64 {
        self.sim.borrow_mut().rng().gen_range(0..n)
    }

    /// A random string of `len` letters and digits (the labs' `randstring`).
    pub fn randstring(&self, len: usize) -> String {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
        let mut sim = self.sim.borrow_mut();
        (0..len)
            .map(|_| CHARS[sim.rng().gen_range(0..CHARS.len())] as char)
            .collect()
    }

    pub fn trace_hash(&self) -> u64 {
        self.sim.borrow().trace_hash()
    }

    fn with_host<T>(
        &self,
        f: impl FnOnce(&mut ShardClientHost, &mut Ctx<ShardMsg, ClientEvent>) -> T,
    ) -> T {
        let host = self.host;
        let mut sim = self.sim.borrow_mut();
        sim.with_process(host, |node, ctx| {
            let ShardNode::Host(h) = node else {
                unreachable!("node {host} is the client host")
            };
            f(h, ctx)
        })
        .expect("the client host never crashes")
    }

    // ----- the controller -----

    /// Runs a controller command through the main controller (or the second one) until
    /// answered; panics if refused.
    pub async fn ctrl(self: &Rc<Self>, second: bool, cmd: CtrlCommand) -> CtrlReply {
        let id = if second { self.admin2 } else { self.admin };
        self.ctrl_pending.expect(id);
        let c = cmd.clone();
        self.with_host(|h, ctx| {
            ctx.scoped(ShardMsg::Ctrl, ClientEvent::Ctrl, |inner| {
                h.ctrl.start(id, c, inner)
            });
        });
        let reply = (self.ctrl_pending.wait(id, NO_LIMIT).await).expect("no time limit");
        if let CtrlReply::Err(e) = &reply {
            panic!("{cmd:?} refused: {e}");
        }
        reply
    }

    /// Groups `gs` join (the labs' `joinm`).
    pub async fn joinm(self: &Rc<Self>, gs: &[usize]) {
        let groups = gs.iter().map(|&g| (self.gid(g), self.names(g))).collect();
        self.ctrl(false, CtrlCommand::Join(groups)).await;
    }

    pub async fn join(self: &Rc<Self>, g: usize) {
        self.joinm(&[g]).await
    }

    pub async fn leavem(self: &Rc<Self>, gs: &[usize]) {
        let gids = gs.iter().map(|&g| self.gid(g)).collect();
        self.ctrl(false, CtrlCommand::Leave(gids)).await;
    }

    pub async fn leave(self: &Rc<Self>, g: usize) {
        self.leavem(&[g]).await
    }

    /// Shard `shard` moves to group `g`.
    pub async fn move_shard(self: &Rc<Self>, shard: usize, g: usize) {
        let gid = self.gid(g);
        self.ctrl(false, CtrlCommand::Move { shard, gid }).await;
    }

    /// The main controller's latest configuration.
    pub async fn query(self: &Rc<Self>) -> ShardConfig {
        match self.ctrl(false, CtrlCommand::Query(None)).await {
            CtrlReply::Config(c) => c,
            other => panic!("query answered {other:?}"),
        }
    }

    // ----- faults -----

    pub fn shutdown_server(&self, g: usize, i: usize) {
        self.sim.borrow_mut().crash(self.node(g, i));
    }

    pub fn start_server(&self, g: usize, i: usize) {
        self.sim.borrow_mut().restart(self.node(g, i));
    }

    pub fn shutdown_group(&self, g: usize) {
        for i in 0..self.cfg.n {
            self.shutdown_server(g, i);
        }
    }

    pub fn start_group(&self, g: usize) {
        for i in 0..self.cfg.n {
            self.start_server(g, i);
        }
    }

    pub fn set_unreliable(&self, unreliable: bool) {
        self.sim.borrow_mut().set_reliable(!unreliable);
    }

    /// Server-to-server links only within each of `parts` (nodes in none are cut off from
    /// servers); the client host keeps every link, as the labs' clerks do.
    pub fn partition(&self, parts: &[Vec<NodeId>]) {
        let mut sim = self.sim.borrow_mut();
        sim.partition(parts);
        for s in 0..self.host.index() {
            sim.set_link(self.host, NodeId::from_index(s), true);
        }
    }

    /// Every node reaches every other again.
    pub fn heal(&self) {
        self.partition(&[(0..=self.host.index()).map(NodeId::from_index).collect()]);
    }

    /// Every group server's node.
    pub fn group_nodes(&self) -> Vec<NodeId> {
        (FIRST_GROUP_NODE..self.host.index())
            .map(NodeId::from_index)
            .collect()
    }

    /// Size of node `i`'s persisted Raft state and snapshot.
    pub fn persisted_sizes(&self, i: NodeId) -> (usize, usize) {
        let sim = self.sim.borrow();
        let p = sim.persister(i);
        (p.state_size(), p.snapshot_size())
    }

    /// The labs' `checklogs`: each group server's Raft state is at most 8 × maxraftstate, and
    /// with no limit it has never snapshotted.
    pub fn check_logs(&self) {
        for node in self.group_nodes() {
            let (state, snap) = self.persisted_sizes(node);
            match self.cfg.max_raft_state {
                Some(max) => assert!(
                    state <= 8 * max,
                    "node {node}: raft state of {state} bytes > 8 × maxraftstate ({max})"
                ),
                None => assert_eq!(snap, 0, "node {node} snapshotted with no maxraftstate"),
            }
        }
    }

    /// Runs `f` on live group server node `i`.
    pub fn with_server<T>(&self, i: NodeId, f: impl FnOnce(&ShardServer) -> T) -> Option<T> {
        let sim = self.sim.borrow();
        match sim.process(i)? {
            ShardNode::Group(s, _) => Some(f(s)),
            _ => None,
        }
    }

    /// One key per shard, key `s` in shard `s` (the labs use "0".."9", which their `key2shard`,
    /// the first byte mod 10, spreads one per shard; Flotilla hashes whole keys).
    pub fn shard_keys(&self) -> Vec<String> {
        (0..self.cfg.nshards)
            .map(|s| {
                (0..)
                    .map(|j| format!("{s}-{j}"))
                    .find(|k| key_shard(k.as_bytes(), self.cfg.nshards) == s)
                    .expect("some key lands in every shard")
            })
            .collect()
    }

    pub fn shard_of(&self, key: &str) -> usize {
        key_shard(key.as_bytes(), self.cfg.nshards)
    }

    // ----- clients -----

    /// A client of the main controller's configurations.
    pub fn make_client(self: &Rc<Self>) -> ShardClient {
        let id = self.with_host(|h, _| h.shard.add_clerk());
        ShardClient {
            id,
            t: self.clone(),
        }
    }

    /// A client that follows the second controller's configurations.
    pub fn make_client_of_second(self: &Rc<Self>) -> ShardClient {
        let ctrlers = (CTRLERS..2 * CTRLERS).map(NodeId::from_index).collect();
        let id = self.with_host(|h, _| h.shard.add_clerk_with(ctrlers));
        ShardClient {
            id,
            t: self.clone(),
        }
    }

    /// The second controller, for the rejection test.
    pub async fn join_second(self: &Rc<Self>, g: usize) {
        let groups = [(self.gid(g), self.names(g))].into_iter().collect();
        self.ctrl(true, CtrlCommand::Join(groups)).await;
    }

    fn stamp(&self) -> u64 {
        self.rec.stamp(self.now())
    }

    /// Sets the model a history with Redis-model operations is checked by (by default the
    /// strict one; see [`flotilla_check::RedisModel::reads_run_ahead`]).
    pub fn set_redis_model(&self, model: flotilla_check::RedisModel) {
        self.rec.set_redis_model(model);
    }

    pub fn history_len(&self) -> usize {
        self.rec.len()
    }

    pub fn verdict(&self) -> CheckResult {
        self.rec.verdict()
    }

    /// Writes the history if `FLOTILLA_HISTORY_DIR` is set and panics if it is not
    /// linearizable ("unknown" after the time limit passes with a note, as in the labs).
    pub fn check_linearizable(&self) {
        self.rec.check_linearizable(self.now());
    }

    /// [`ShardTester::check_linearizable`], then the trace hash.
    pub fn finish(&self) -> u64 {
        self.check_linearizable();
        self.trace_hash()
    }
}

/// No time limit for [`Completions::wait`].
const NO_LIMIT: Option<std::future::Pending<()>> = None;

/// A sharded-KV client whose operations are recorded in its tester's history.
pub struct ShardClient {
    pub id: ClientId,
    t: Rc<ShardTester>,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

impl ShardClient {
    async fn run(
        &self,
        input: KvInput,
        cmd: KvCommand,
        limit: Option<Duration>,
    ) -> Option<KvReply> {
        let t = &self.t;
        let call = t.stamp();
        t.kv_pending.expect(self.id);
        let id = self.id;
        t.with_host(|h, ctx| {
            h.shard.start(id, cmd, ctx);
        });
        let reply = t.kv_pending.wait(id, limit.map(|d| t.rt.sleep(d))).await;
        if reply.is_none() {
            t.with_host(|h, _| h.shard.abandon(id));
        }
        let (output, ret) = match &reply {
            None => (KvOutput::Unknown, None),
            // As the error says: it may or may not have been applied.
            Some(KvReply::Error(KvError::SessionExpired)) if limit.is_some() => {
                (KvOutput::Unknown, None)
            }
            Some(KvReply::Error(e)) => panic!("{:?}({}) was refused: {e}", input.op, input.key),
            Some(KvReply::Value(v)) => (
                KvOutput::value(text(v.as_deref().unwrap_or_default())),
                Some(t.stamp()),
            ),
            Some(_) => (KvOutput::Done, Some(t.stamp())),
        };
        let unknown = output == KvOutput::Unknown;
        t.rec.record(Operation {
            client: self.id,
            input,
            call,
            output,
            ret,
        });
        reply.filter(|_| !unknown)
    }

    /// Runs a Redis-model operation with an optional time limit, recording it: its reply as
    /// the model compares it, `None` if it gave up or its session expired (outcome unknown).
    /// Every key it names must be in one shard. See [`crate::KvClient::try_redis`].
    pub async fn try_redis(&self, op: RedisOp, limit: Option<Duration>) -> Option<RedisReply> {
        let t = &self.t;
        let call = t.stamp();
        let call_ms = Recorder::ms(t.now());
        t.kv_pending.expect(self.id);
        let id = self.id;
        let cmd = command_of(&op);
        t.with_host(|h, ctx| {
            h.shard.start(id, cmd, ctx);
        });
        let reply = t.kv_pending.wait(id, limit.map(|d| t.rt.sleep(d))).await;
        if reply.is_none() {
            t.with_host(|h, _| h.shard.abandon(id));
        }
        let (output, ret) = match &reply {
            None => (RedisOutput::unknown(), None),
            // As the error says: it may or may not have been applied.
            Some(KvReply::Error(KvError::SessionExpired)) if limit.is_some() => {
                (RedisOutput::unknown(), None)
            }
            Some(r) => {
                let output = RedisOutput {
                    ret_ms: Recorder::ms(t.now()),
                    reply: reply_of(&op, r),
                };
                (output, Some(t.stamp()))
            }
        };
        let known = ret.map(|_| output.reply.clone());
        t.rec.record_redis(Operation {
            client: self.id,
            input: RedisInput { call_ms, op },
            call,
            output,
            ret,
        });
        known
    }

    /// The key's value ("" if none).
    pub async fn get(&self, key: &str) -> String {
        self.try_get(key, None)
            .await
            .expect("an operation without a time limit completes")
    }

    pub async fn try_get(&self, key: &str, limit: Option<Duration>) -> Option<String> {
        let cmd = KvCommand::Get { key: key.into() };
        let r = self.run(KvInput::get(key), cmd, limit).await?;
        Some(text(
            r.value_or_empty()
                .unwrap_or_else(|| panic!("get({key}) answered {r:?}")),
        ))
    }

    pub async fn put(&self, key: &str, value: &str) {
        self.try_put(key, value, None)
            .await
            .expect("an operation without a time limit completes")
    }

    pub async fn try_put(&self, key: &str, value: &str, limit: Option<Duration>) -> Option<()> {
        let cmd = KvCommand::Put {
            key: key.into(),
            value: value.as_bytes().to_vec().into(),
        };
        let r = self.run(KvInput::put(key, value), cmd, limit).await?;
        assert_eq!(r, KvReply::Done, "put({key}) answered {r:?}");
        Some(())
    }

    pub async fn append(&self, key: &str, value: &str) {
        self.try_append(key, value, None)
            .await
            .expect("an operation without a time limit completes")
    }

    pub async fn try_append(&self, key: &str, value: &str, limit: Option<Duration>) -> Option<()> {
        let cmd = KvCommand::Append {
            key: key.into(),
            value: value.as_bytes().to_vec().into(),
        };
        let r = self.run(KvInput::append(key, value), cmd, limit).await?;
        assert!(matches!(r, KvReply::Len(_)), "append({key}) answered {r:?}");
        Some(())
    }

    /// The labs' `check`: the key's value must be `want`.
    pub async fn check(&self, key: &str, want: &str) {
        let got = self.get(key).await;
        assert_eq!(
            got,
            want,
            "Get({key}): expected {want:?}, received {got:?} (seed {})",
            self.t.rec.seed()
        );
    }
}
