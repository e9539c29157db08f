//! A generic tester for client/server services on the simulator: servers 0..n and one
//! [`ClerkHost`] node that runs every test client, as the labs' `config.go` harnesses do.
//!
//! Clients reach every server whatever the partition (the labs connect clerks to all
//! servers; only server-to-server links are partitioned). A test script awaits
//! [`ServiceTester::call`], which completes when the clerk has an answer, however many
//! retries that took. The clerk host is also where operators' admin requests
//! ([`ServiceTester::admin`]: membership changes, leader transfers) come from.

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use rand::Rng;
use serde::de::DeserializeOwned;
use serde::Serialize;

use flotilla_id::alloc;
use flotilla_node::{Ctx, NodeId, Process};
use flotilla_rsm::{
    AdminError, AdminOp, AdminReply, AdminRequest, AdminResponse, ClerkConfig, ClerkEvent,
    ClerkHost, ClientId, Msg, Replica, RsmError, StateMachine,
};
use flotilla_sim::{block_on, Persister, Runtime, Sim};

use crate::completion::Completions;
use crate::invariants::CheckSampler;
use crate::raft_tester::{TEST_TIME_LIMIT, TICK};

/// A simulated node: a server, or the host of the test's clerks.
pub enum SimNode<Srv, C, R> {
    Server(Srv),
    Clients(ClerkHost<C, R>),
}

/// What a node reports to the tester.
#[derive(Debug)]
pub enum NodeEvent<E, R> {
    Server(E),
    Clerk(ClerkEvent<R>),
    /// An answer to an operator's admin request, received by the clerk host.
    Admin(AdminResponse),
}

/// Replays an inner process's outputs into the outer context, mapping its events.
fn forward<M, E, F>(inner: Ctx<M, E>, outer: &mut Ctx<M, F>, map: impl Fn(E) -> F) {
    inner.forward_into(outer, |m| m, map);
}

impl<Srv, C, R> Process for SimNode<Srv, C, R>
where
    Srv: Process<Msg = Msg<C, R>>,
    C: Clone + Debug,
{
    type Msg = Msg<C, R>;
    type Event = NodeEvent<Srv::Event, R>;

    fn on_tick(&mut self, ctx: &mut Ctx<Self::Msg, Self::Event>) {
        match self {
            SimNode::Server(s) => {
                let mut inner = Ctx::new(ctx.now());
                s.on_tick(&mut inner);
                forward(inner, ctx, NodeEvent::Server);
            }
            SimNode::Clients(h) => {
                let mut inner = Ctx::new(ctx.now());
                h.on_tick(&mut inner);
                forward(inner, ctx, NodeEvent::Clerk);
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg<C, R>, ctx: &mut Ctx<Self::Msg, Self::Event>) {
        match self {
            SimNode::Server(s) => {
                let mut inner = Ctx::new(ctx.now());
                s.on_message(from, msg, &mut inner);
                forward(inner, ctx, NodeEvent::Server);
            }
            // Clerks ignore admin answers: the host hands them to the tester's operator.
            SimNode::Clients(_) if matches!(msg, Msg::AdminResponse(_)) => {
                if let Msg::AdminResponse(r) = msg {
                    ctx.emit(NodeEvent::Admin(r));
                }
            }
            SimNode::Clients(h) => {
                let mut inner = Ctx::new(ctx.now());
                h.on_message(from, msg, &mut inner);
                forward(inner, ctx, NodeEvent::Clerk);
            }
        }
    }

    fn is_reply(msg: &Msg<C, R>) -> bool {
        msg.is_reply()
    }

    fn may_send_before_save(&self, msg: &Msg<C, R>) -> bool {
        match self {
            SimNode::Server(s) => s.may_send_before_save(msg),
            // Clerks persist nothing.
            SimNode::Clients(_) => false,
        }
    }
}

/// Told the id of a server the tester crashed or restarted.
type CrashHook = Box<dyn Fn(NodeId)>;

/// Builds server `id` at (re)start from its persister and a fresh seed.
pub type ServerFactory<Srv> = Box<dyn FnMut(NodeId, &Persister, u64) -> Srv>;

type Node<Srv, C, R> = SimNode<Srv, C, R>;

/// Servers `0..n` plus the clerk host (node `n`) on a simulated network.
pub struct ServiceTester<Srv, C, R>
where
    Srv: Process<Msg = Msg<C, R>>,
    C: Clone + Debug,
{
    pub sim: Rc<RefCell<Sim<Node<Srv, C, R>>>>,
    pub rt: Runtime,
    n: usize,
    /// Clerks' outstanding operations, with their outcome once known.
    pending: Completions<ClientId, Result<R, RsmError>>,
    /// Called with a server's id when the tester crashes (or restarts) it, for watchers that
    /// keep a view of live servers.
    crash_hooks: RefCell<Vec<CrashHook>>,
    /// Admin requests in flight, by request id: the answer once it arrives.
    admin: Completions<u64, Result<AdminReply, AdminError>>,
    /// The id of the next admin request (unique within the run, so late answers to requests
    /// given up on are told apart).
    next_admin: Cell<u64>,
}

impl<S> ServiceTester<Replica<S>, S::Command, S::Reply>
where
    S: StateMachine,
    S::Command: 'static,
    S::Reply: 'static,
{
    /// `n` replicas made by `factory`, as [`ServiceTester::new`], each checked against its
    /// invariants ([`Replica::check_invariants`], the machine's included) after every input it
    /// handles, at the depth a [`CheckSampler`] chooses.
    pub fn replicas(
        n: usize,
        unreliable: bool,
        seed: u64,
        factory: ServerFactory<Replica<S>>,
    ) -> Rc<Self> {
        let t = Self::new(n, unreliable, seed, factory);
        let sampler = CheckSampler::default();
        t.sim.borrow_mut().add_checker(Box::new(move |_, node| {
            if let SimNode::Server(r) = node {
                r.check_invariants(sampler.next());
            }
        }));
        t
    }
}

impl<Srv, C, R> ServiceTester<Srv, C, R>
where
    Srv: Process<Msg = Msg<C, R>> + 'static,
    C: Clone + Debug + Serialize + DeserializeOwned + 'static,
    R: Clone + Debug + Serialize + DeserializeOwned + 'static,
{
    /// `n` servers made by `factory`, all up and connected, and a clerk host.
    pub fn new(n: usize, unreliable: bool, seed: u64, mut factory: ServerFactory<Srv>) -> Rc<Self> {
        let mut first_client: Option<ClientId> = None;
        let node_factory = Box::new(move |id: NodeId, p: &Persister, s: u64| {
            if id < NodeId::from_index(n) {
                SimNode::Server(factory(id, p, s))
            } else {
                // Client ids from the seed: distinct across hosts and runs, replayable.
                let base = *first_client.get_or_insert(alloc::sim_clerk_base(s));
                SimNode::Clients(ClerkHost::new(base, ClerkConfig::default()))
            }
        });
        let mut sim = Sim::new(n + 1, seed, TICK, node_factory);
        sim.set_reliable(!unreliable);
        Rc::new(ServiceTester {
            sim: Rc::new(RefCell::new(sim)),
            rt: Runtime::new(),
            n,
            pending: Completions::default(),
            crash_hooks: RefCell::new(Vec::new()),
            admin: Completions::default(),
            next_admin: Cell::new(1),
        })
    }

    /// Number of servers.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The node that hosts the clerks.
    pub fn host(&self) -> NodeId {
        NodeId::from_index(self.n)
    }

    pub fn servers(&self) -> Vec<NodeId> {
        (0..self.n).map(NodeId::from_index).collect()
    }

    /// Runs `script` to completion in virtual time; panics past the labs' 120 s limit.
    pub fn run<T: 'static>(self: &Rc<Self>, script: impl Future<Output = T> + 'static) -> T {
        self.run_for(TEST_TIME_LIMIT, script)
    }

    /// As [`ServiceTester::run`] with another virtual time limit.
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
                NodeEvent::Clerk(ev) => self.pending.answer(ev.client, ev.reply),
                NodeEvent::Admin(r) => self.admin.answer(r.id, r.result),
                NodeEvent::Server(_) => {}
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

    pub fn trace_hash(&self) -> u64 {
        self.sim.borrow().trace_hash()
    }

    fn with_host<T>(
        &self,
        f: impl FnOnce(&mut ClerkHost<C, R>, &mut Ctx<Msg<C, R>, ClerkEvent<R>>) -> T,
    ) -> T {
        let host = self.host();
        let mut sim = self.sim.borrow_mut();
        sim.with_process(host, |node, ctx| {
            let SimNode::Clients(h) = node else {
                unreachable!("node {host} is the clerk host")
            };
            let mut inner = Ctx::new(ctx.now());
            let out = f(h, &mut inner);
            forward(inner, ctx, NodeEvent::Clerk);
            out
        })
        .expect("the clerk host never crashes")
    }

    /// A new clerk that talks to `servers`.
    pub fn make_clerk(&self, servers: Vec<NodeId>) -> ClientId {
        self.with_host(|h, _| h.add_clerk(servers))
    }

    /// Lets clerk `client` talk to `servers` only (the labs' `ConnectClient`).
    pub fn connect_clerk(&self, client: ClientId, servers: Vec<NodeId>) {
        self.with_host(|h, _| h.set_servers(client, servers));
    }

    /// Runs one operation on clerk `client` until it is answered.
    /// Panics if the service refuses it (simulated disks never fill; a test whose sessions
    /// may expire uses [`ServiceTester::call_timeout`]).
    pub async fn call(self: &Rc<Self>, client: ClientId, cmd: C) -> R {
        self.start(client, cmd);
        let r = self.pending.wait(client, NO_LIMIT).await;
        r.expect("no time limit")
            .unwrap_or_else(|e| panic!("clerk {client}'s operation was refused: {e}"))
    }

    /// As [`ServiceTester::call`], but gives up after `limit`: `None` means the outcome is
    /// unknown (it may still take effect), as after [`RsmError::SessionExpired`].
    pub async fn call_timeout(
        self: &Rc<Self>,
        client: ClientId,
        cmd: C,
        limit: Duration,
    ) -> Option<R> {
        self.start(client, cmd);
        let got = self.pending.wait(client, Some(self.rt.sleep(limit))).await;
        if got.is_none() {
            self.with_host(|h, _| h.abandon(client));
        }
        match got? {
            Ok(r) => Some(r),
            Err(RsmError::SessionExpired) => None,
            Err(e) => panic!("clerk {client}'s operation was refused: {e}"),
        }
    }

    fn start(&self, client: ClientId, cmd: C) {
        self.pending.expect(client);
        self.with_host(|h, ctx| h.start(client, cmd, ctx));
    }

    /// Sends an operator's admin request from the clerk host to server `to`, over the
    /// network like a client's, and waits up to `limit` for its answer: `None` if none came
    /// (the request or the answer was lost, or the change has not committed yet; a change may
    /// still take effect).
    pub async fn admin(
        self: &Rc<Self>,
        to: NodeId,
        op: AdminOp,
        limit: Duration,
    ) -> Option<Result<AdminReply, AdminError>> {
        let id = self.next_admin.get();
        self.next_admin.set(id + 1);
        self.admin.expect(id);
        let host = self.host();
        self.sim.borrow_mut().with_process(host, |_, ctx| {
            ctx.send(to, Msg::Admin(AdminRequest { id, op }));
        });
        self.admin.wait(id, Some(self.rt.sleep(limit))).await
    }

    // ----- faults -----

    /// Server-to-server links: only within each group. Clients keep every link.
    pub fn partition(&self, groups: &[Vec<NodeId>]) {
        let mut sim = self.sim.borrow_mut();
        sim.partition(groups);
        for s in 0..self.n {
            sim.set_link(self.host(), NodeId::from_index(s), true);
        }
    }

    /// Reconnects every server to every other.
    pub fn heal(&self) {
        self.partition(&[self.servers()]);
    }

    pub fn set_unreliable(&self, unreliable: bool) {
        self.sim.borrow_mut().set_reliable(!unreliable);
    }

    /// Kills server `i` (its persister is kept).
    pub fn crash(&self, i: NodeId) {
        self.sim.borrow_mut().crash(i);
        self.crashed(i);
    }

    /// Restarts server `i` from its persister (crashing it first if it runs).
    pub fn restart(&self, i: NodeId) {
        self.sim.borrow_mut().restart(i);
        self.crashed(i);
    }

    /// Calls `hook` with a server's id whenever the tester crashes or restarts it.
    pub fn on_crash(&self, hook: impl Fn(NodeId) + 'static) {
        self.crash_hooks.borrow_mut().push(Box::new(hook));
    }

    fn crashed(&self, i: NodeId) {
        for hook in self.crash_hooks.borrow().iter() {
            hook(i);
        }
    }

    pub fn is_alive(&self, i: NodeId) -> bool {
        self.sim.borrow().is_alive(i)
    }

    /// Size of server `i`'s persisted Raft state and snapshot.
    pub fn persisted_sizes(&self, i: NodeId) -> (usize, usize) {
        let sim = self.sim.borrow();
        let p = sim.persister(i);
        (p.state_size(), p.snapshot_size())
    }

    /// Runs `f` on live server `i`.
    pub fn with_server<T>(&self, i: NodeId, f: impl FnOnce(&Srv) -> T) -> Option<T> {
        let sim = self.sim.borrow();
        match sim.process(i)? {
            SimNode::Server(s) => Some(f(s)),
            SimNode::Clients(_) => None,
        }
    }
}

/// No time limit for [`Completions::wait`].
const NO_LIMIT: Option<std::future::Pending<()>> = None;
