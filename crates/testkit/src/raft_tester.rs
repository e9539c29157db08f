//! The labs' Raft tester (`raft/config.go`) on the simulator, in virtual time.
//!
//! Timing helpers keep the labs' numbers, since they are part of the contract: the election
//! timeout constant ET is 1 s; `check_one_leader` polls 10 times, each after 450–550 ms;
//! `one` gives each attempt 2 s and the whole call 10 s; `wait` backs off from 10 ms to 1 s
//! over 30 polls. Every applied command is checked as the labs' appliers do: the same index
//! must hold the same command on every peer, and applies arrive in order. A violation fails
//! the test at once with a sentence naming the peer and index.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::time::Duration;

use rand::Rng;

use crate::raft_server::RaftServer;
use flotilla_node::NodeId;
use flotilla_raft::{Apply, Config, MembershipChange, MembershipError, Raft, TransferError};
use flotilla_sim::{block_on, Runtime, Sim};

/// The labs' election-timeout constant (`RaftElectionTimeout`).
pub const ELECTION_TIMEOUT: Duration = Duration::from_secs(1);
/// The labs' snapshot applier snapshots when `(index + 1).is_multiple_of(SNAPSHOT_INTERVAL)`.
pub const SNAPSHOT_INTERVAL: u64 = 10;
/// The labs' per-test time limit, here in virtual time.
pub const TEST_TIME_LIMIT: Duration = Duration::from_secs(120);
/// The simulator's tick, which the Raft timeouts in `flotilla_raft::Config::new` assume.
pub const TICK: Duration = Duration::from_millis(10);
/// The snapshot chunk size of simulated peers (`Config::snapshot_chunk_bytes`, before a
/// scenario's own changes): the labs' snapshots hold every command (hundreds of bytes to a
/// few KiB), so this makes nearly every InstallSnapshot span several chunks, which drops,
/// reordering and crashes then hit mid-transfer.
pub const SIM_SNAPSHOT_CHUNK_BYTES: usize = 128;

/// Encodes an integer command the way the scenarios use them.
pub fn int_cmd(x: u64) -> Vec<u8> {
    x.to_le_bytes().to_vec()
}

/// Decodes an integer command; `None` if the bytes are not one.
pub fn as_int(cmd: &[u8]) -> Option<u64> {
    Some(u64::from_le_bytes(cmd.try_into().ok()?))
}

/// What the testers' appliers have seen.
#[derive(Default)]
struct Applied {
    /// `logs[i][index]`: the command peer i applied at index.
    logs: Vec<BTreeMap<u64, Vec<u8>>>,
    last_applied: Vec<u64>,
    max_index: u64,
}

type StepCheck = Box<dyn FnMut(&Sim<RaftServer>)>;

/// A simulated Raft cluster with the labs' checks. Create with [`RaftTester::new`], then
/// [`RaftTester::run`] a script.
pub struct RaftTester {
    pub sim: Rc<RefCell<Sim<RaftServer>>>,
    pub rt: Runtime,
    n: usize,
    /// Use the snapshotting applier (3D): snapshot every SNAPSHOT_INTERVAL entries.
    snapshots: bool,
    applied: RefCell<Applied>,
    step_check: RefCell<Option<StepCheck>>,
    /// The size of every snapshot a peer installed from its leader, in order.
    installs: RefCell<Vec<usize>>,
}

impl RaftTester {
    /// `n` peers, all up and connected; `unreliable` as labrpc's; `snapshots` selects the 3D applier.
    pub fn new(n: usize, unreliable: bool, snapshots: bool, seed: u64) -> Rc<Self> {
        Self::with_window(n, unreliable, snapshots, seed, 1)
    }

    /// As [`RaftTester::new`], with up to `window` AppendEntries in flight per follower
    /// (`Config::max_inflight_appends`; the labs' scenarios use 1).
    pub fn with_window(
        n: usize,
        unreliable: bool,
        snapshots: bool,
        seed: u64,
        window: u32,
    ) -> Rc<Self> {
        Self::with_config(n, unreliable, snapshots, seed, move |cfg| {
            cfg.max_inflight_appends = window
        })
    }

    /// As [`RaftTester::new`], with every peer's configuration (the labs' `Config::new`)
    /// changed by `modify`, at every start and restart; e.g. to turn on pre-vote. `modify`
    /// must leave `id`, `voters` and `seed` alone.
    pub fn with_config(
        n: usize,
        unreliable: bool,
        snapshots: bool,
        seed: u64,
        modify: impl Fn(&mut Config) + 'static,
    ) -> Rc<Self> {
        Self::build(n, n, unreliable, snapshots, seed, Rc::new(modify), false)
    }

    /// `slots` peers of which only `0..voters` found the cluster (their boot configuration,
    /// [`Config::voters`]); the others boot joining (no voters), never campaign, and wait for
    /// a leader to add them ([`RaftTester::propose_membership`]): the simulator's fixed slots
    /// model machines that a membership change brings in later. `modify` as in
    /// [`RaftTester::with_config`].
    pub fn with_members(
        slots: usize,
        voters: usize,
        unreliable: bool,
        snapshots: bool,
        seed: u64,
        modify: impl Fn(&mut Config) + 'static,
    ) -> Rc<Self> {
        assert!(
            (1..=slots).contains(&voters),
            "{voters} founding voters in {slots} slots"
        );
        Self::build(
            slots,
            voters,
            unreliable,
            snapshots,
            seed,
            Rc::new(modify),
            false,
        )
    }

    /// As [`RaftTester::with_config`], with peers broken on purpose: they send votes and
    /// acknowledgements before their saves are durable
    /// ([`RaftServer::send_everything_before_save`]).
    pub fn with_early_acks(
        n: usize,
        unreliable: bool,
        snapshots: bool,
        seed: u64,
        modify: impl Fn(&mut Config) + 'static,
    ) -> Rc<Self> {
        Self::build(n, n, unreliable, snapshots, seed, Rc::new(modify), true)
    }

    /// `n` slots, of which `0..voters` boot as the founding voters and the rest join later.
    fn build(
        n: usize,
        voters: usize,
        unreliable: bool,
        snapshots: bool,
        seed: u64,
        modify: Rc<dyn Fn(&mut Config)>,
        early_acks: bool,
    ) -> Rc<Self> {
        let modify = move |cfg: &mut Config| {
            cfg.snapshot_chunk_bytes = SIM_SNAPSHOT_CHUNK_BYTES;
            cfg.max_snapshot_inflight_bytes = 4 * SIM_SNAPSHOT_CHUNK_BYTES;
            modify(cfg);
        };
        let factory = Box::new(move |id: NodeId, p: &flotilla_sim::Persister, s| {
            let boot = if id < NodeId::from_index(voters) {
                (0..voters).map(NodeId::from_index).collect()
            } else {
                Vec::new()
            };
            let server = RaftServer::with_voters(id, boot, p, s, &modify);
            if early_acks {
                server.send_everything_before_save()
            } else {
                server
            }
        });
        let mut sim = Sim::new(n, seed, TICK, factory);
        sim.set_reliable(!unreliable);
        sim.add_checker(Box::new(|_, p: &RaftServer| p.raft().check_invariants()));
        Rc::new(RaftTester {
            sim: Rc::new(RefCell::new(sim)),
            rt: Runtime::new(),
            n,
            snapshots,
            applied: RefCell::new(Applied {
                logs: vec![BTreeMap::new(); n],
                last_applied: vec![0; n],
                max_index: 0,
            }),
            step_check: RefCell::new(None),
            installs: RefCell::new(Vec::new()),
        })
    }

    /// Runs a check on the whole cluster after every simulator event (see `SafetyChecker`).
    pub fn set_step_check(&self, check: StepCheck) {
        *self.step_check.borrow_mut() = Some(check);
    }

    /// Runs `script` to completion in virtual time; panics past the labs' 120 s limit.
    pub fn run<T: 'static>(self: &Rc<Self>, script: impl Future<Output = T> + 'static) -> T {
        let me = self.clone();
        let out = block_on(
            &self.sim,
            &self.rt,
            TEST_TIME_LIMIT,
            move || me.after_input(),
            script,
        );
        if std::env::var_os("FLOTILLA_VERBOSE").is_some() {
            // The labs' closing line: virtual seconds, peers, RPCs sent, highest index applied.
            let (rpcs, index) = (self.rpc_total(), self.applied.borrow().max_index);
            eprintln!(
                "  ... Passed --  {:5.1}  {}  {rpcs:5}  {index:4}",
                self.rt.now().as_secs_f64(),
                self.n
            );
        }
        out
    }

    pub fn n(&self) -> usize {
        self.n
    }

    pub async fn sleep(&self, d: Duration) {
        self.rt.sleep(d).await
    }

    /// A random number in `0..n` from the simulation's seeded generator.
    pub fn rand(&self, n: u64) -> u64 {
        self.sim.borrow_mut().rng().gen_range(0..n)
    }

    /// A random command value, as the labs' `rand.Int()`.
    pub fn rand_cmd(&self) -> Vec<u8> {
        int_cmd(self.sim.borrow_mut().rng().gen_range(0..1u64 << 62))
    }

    /// How many snapshots peers installed from their leaders that were larger than `chunk`
    /// bytes, hence sent in several chunks (every `Apply::Snapshot` is such an install).
    pub fn chunked_installs(&self, chunk: usize) -> usize {
        self.installs
            .borrow()
            .iter()
            .filter(|&&len| len > chunk)
            .count()
    }

    pub fn trace_hash(&self) -> u64 {
        self.sim.borrow().trace_hash()
    }

    // ----- the applier -----

    fn after_input(&self) {
        // Check the state the input produced before the applier reacts (its snapshots compact
        // the log, which would hide newly committed entries from the check).
        if let Some(check) = self.step_check.borrow_mut().as_mut() {
            check(&self.sim.borrow());
        }
        let events = self.sim.borrow_mut().drain_events();
        for (i, apply) in events {
            match apply {
                Apply::Command { index, data, .. } => self.apply_command(i, index, data.to_vec()),
                Apply::Snapshot(s) => {
                    self.installs.borrow_mut().push(s.data.len() as usize);
                    self.ingest_snapshot(i, &s.data.to_bytes().expect("in memory"), Some(s.index))
                }
                // Recorded like a command, so that index continuity and agreement between
                // peers cover membership entries too.
                Apply::Membership {
                    index, membership, ..
                } => self.apply_command(i, index, membership_marker(&membership)),
            }
        }
    }

    fn apply_command(&self, i: NodeId, index: u64, cmd: Vec<u8>) {
        let snapshot_due = {
            let mut a = self.applied.borrow_mut();
            if self.snapshots {
                let expected = a.last_applied[i.index()] + 1;
                assert_eq!(
                    index, expected,
                    "server {i} apply out of order, expected index {expected}, got {index}"
                );
            } else if index > 1 && !a.logs[i.index()].contains_key(&(index - 1)) {
                panic!("server {i} apply out of order {index}");
            }
            for (j, log) in a.logs.iter().enumerate() {
                if let Some(old) = log.get(&index) {
                    assert_eq!(
                        old, &cmd,
                        "commit index={index} server={i} {cmd:?} != server={j} {old:?}"
                    );
                }
            }
            a.logs[i.index()].insert(index, cmd);
            a.last_applied[i.index()] = index;
            a.max_index = a.max_index.max(index);
            self.snapshots && (index + 1).is_multiple_of(SNAPSHOT_INTERVAL)
        };
        if snapshot_due {
            let data = self.encode_snapshot(i, index);
            self.sim
                .borrow_mut()
                .with_process(i, |p, ctx| p.snapshot(index, data, ctx));
        }
    }

    /// The 3D applier's snapshot: the index and every command up to it.
    fn encode_snapshot(&self, i: NodeId, index: u64) -> Vec<u8> {
        let a = self.applied.borrow();
        let xlog: Vec<&Vec<u8>> = (0..=index)
            .filter_map(|j| a.logs[i.index()].get(&j))
            .collect();
        postcard::to_allocvec(&(index, xlog)).expect("encode snapshot")
    }

    fn ingest_snapshot(&self, i: NodeId, snapshot: &[u8], index: Option<u64>) {
        let (last_included, xlog): (u64, Vec<Vec<u8>>) = postcard::from_bytes(snapshot)
            .unwrap_or_else(|e| panic!("server {i}: snapshot decode error: {e}"));
        if let Some(index) = index {
            assert_eq!(
                index, last_included,
                "server {i} snapshot doesn't match SnapshotIndex"
            );
        }
        let mut a = self.applied.borrow_mut();
        let first = last_included + 1 - xlog.len() as u64;
        a.logs[i.index()] = xlog
            .into_iter()
            .enumerate()
            .map(|(k, c)| (first + k as u64, c))
            .collect();
        a.last_applied[i.index()] = last_included;
        a.max_index = a.max_index.max(last_included);
    }

    // ----- cluster control (crash1, start1, connect, …) -----

    /// Crashes peer i: disconnected, volatile state gone, persister kept.
    pub fn crash1(&self, i: NodeId) {
        let mut sim = self.sim.borrow_mut();
        sim.disconnect(i);
        sim.crash(i);
    }

    /// (Re)starts peer i from its persister, disconnected (as the labs' start1). The applier
    /// state restarts from the persisted snapshot, if any.
    pub fn start1(&self, i: NodeId) {
        self.crash1(i);
        self.applied.borrow_mut().last_applied[i.index()] = 0;
        let snapshot = self
            .sim
            .borrow()
            .persister(i)
            .snapshot()
            .to_bytes()
            .expect("in memory")
            .to_vec();
        if !snapshot.is_empty() {
            self.ingest_snapshot(i, &snapshot, None);
        }
        self.sim.borrow_mut().restart(i);
    }

    /// Restarts peer i if it is crashed, and connects it.
    pub fn revive(&self, i: NodeId) {
        if !self.is_alive(i) {
            self.start1(i);
        }
        self.connect(i);
    }

    /// Crashes every peer, then restarts and reconnects them all (the 3D tests' "crash all").
    pub fn crash_and_restart_all(&self) {
        for i in 0..self.n {
            self.crash1(NodeId::from_index(i));
        }
        for i in 0..self.n {
            self.start1(NodeId::from_index(i));
            self.connect(NodeId::from_index(i));
        }
    }

    /// Restarts every crashed peer and connects every peer.
    pub fn heal_all(&self) {
        for i in 0..self.n {
            self.revive(NodeId::from_index(i));
        }
    }

    pub fn connect(&self, i: NodeId) {
        self.sim.borrow_mut().connect(i);
    }
    pub fn disconnect(&self, i: NodeId) {
        self.sim.borrow_mut().disconnect(i);
    }
    /// Splits the peers into groups that talk only among themselves (see `Sim::partition`).
    pub fn partition(&self, groups: &[Vec<NodeId>]) {
        self.sim.borrow_mut().partition(groups);
    }
    /// Opens or cuts the link between peers a and b only (a partial partition).
    pub fn set_link(&self, a: NodeId, b: NodeId, up: bool) {
        self.sim.borrow_mut().set_link(a, b, up);
    }
    pub fn is_connected(&self, i: NodeId) -> bool {
        self.sim.borrow().is_connected(i)
    }
    pub fn is_alive(&self, i: NodeId) -> bool {
        self.sim.borrow().is_alive(i)
    }
    pub fn set_unreliable(&self, unreliable: bool) {
        self.sim.borrow_mut().set_reliable(!unreliable);
    }
    pub fn set_long_reordering(&self, on: bool) {
        self.sim.borrow_mut().set_long_reordering(on);
    }

    /// Requests delivered to peer i (labrpc's `GetCount`).
    pub fn rpc_count(&self, i: NodeId) -> u64 {
        self.sim.borrow().stats().rpcs_received[i.index()]
    }
    pub fn rpc_total(&self) -> u64 {
        self.sim.borrow().stats().rpcs_sent
    }
    pub fn bytes_total(&self) -> u64 {
        self.sim.borrow().stats().bytes
    }
    /// The largest persisted Raft state of any peer (the labs' `LogSize`).
    pub fn log_size(&self) -> usize {
        let sim = self.sim.borrow();
        (0..self.n)
            .map(|i| sim.persister(NodeId::from_index(i)).state_size())
            .max()
            .unwrap_or(0)
    }

    // ----- the labs' client calls and checks -----

    /// `rf.Start(cmd)` on peer i: `Some((index, term, is_leader))`, or `None` if i is crashed.
    pub fn start(&self, i: NodeId, cmd: Vec<u8>) -> Option<(u64, u64, bool)> {
        self.sim
            .borrow_mut()
            .with_process(i, |p, ctx| match p.start(cmd, ctx) {
                Ok((index, term)) => (index, term, true),
                Err(_) => (0, p.raft().term(), false),
            })
    }

    /// Asks peer i to hand its leadership to peer `to` ([`Raft::transfer_leadership`]), or
    /// returns `None` if i is crashed.
    pub fn transfer_leadership(&self, i: NodeId, to: NodeId) -> Option<Result<(), TransferError>> {
        self.sim
            .borrow_mut()
            .with_process(i, |p, ctx| p.transfer_leadership(to, ctx))
    }

    /// Asks peer i to propose a membership change ([`Raft::propose_membership`]): its entry's
    /// `(index, term)`, or why it was refused; `None` if i is crashed.
    pub fn propose_membership(
        &self,
        i: NodeId,
        change: MembershipChange,
    ) -> Option<Result<(u64, u64), MembershipError>> {
        self.sim
            .borrow_mut()
            .with_process(i, |p, ctx| p.propose_membership(change, ctx))
    }

    /// Runs `f` on peer i's Raft core (read-only), or returns `None` if i is crashed.
    pub fn with_raft<R>(&self, i: NodeId, f: impl FnOnce(&Raft) -> R) -> Option<R> {
        self.sim.borrow().process(i).map(|p| f(p.raft()))
    }

    /// The connected live peer that leads in the highest term, if any, without waiting (see
    /// [`RaftTester::check_one_leader`] for the labs' check).
    pub fn leader_now(&self) -> Option<NodeId> {
        (0..self.n)
            .map(NodeId::from_index)
            .filter(|&i| self.is_connected(i))
            .filter_map(|i| match self.get_state(i) {
                Some((term, true)) => Some((term, i)),
                _ => None,
            })
            .max()
            .map(|(_, i)| i)
    }

    /// `rf.GetState()` on peer i, or `None` if crashed.
    pub fn get_state(&self, i: NodeId) -> Option<(u64, bool)> {
        self.sim
            .borrow()
            .process(i)
            .map(|p| (p.raft().term(), p.raft().is_leader()))
    }

    /// Waits for exactly one leader among the connected peers; returns the one of the highest
    /// term. Fails if a term has two leaders, or if none appears within 10 polls.
    pub async fn check_one_leader(&self) -> NodeId {
        for _ in 0..10 {
            let ms = 450 + self.rand(100);
            self.sleep(Duration::from_millis(ms)).await;
            let mut leaders: BTreeMap<u64, Vec<NodeId>> = BTreeMap::new();
            for i in (0..self.n).filter(|&i| self.is_connected(NodeId::from_index(i))) {
                if let Some((term, true)) = self.get_state(NodeId::from_index(i)) {
                    leaders.entry(term).or_default().push(NodeId::from_index(i));
                }
            }
            for (term, ls) in &leaders {
                assert!(ls.len() <= 1, "term {term} has {} (>1) leaders", ls.len());
            }
            if let Some((_, ls)) = leaders.last_key_value() {
                return ls[0];
            }
        }
        panic!("expected one leader, got none");
    }

    /// All connected peers agree on the term; returns it.
    pub fn check_terms(&self) -> u64 {
        let mut term = None;
        for i in (0..self.n).filter(|&i| self.is_connected(NodeId::from_index(i))) {
            if let Some((t, _)) = self.get_state(NodeId::from_index(i)) {
                match term {
                    None => term = Some(t),
                    Some(x) => assert_eq!(x, t, "servers disagree on term"),
                }
            }
        }
        term.expect("no connected live server")
    }

    /// No connected peer claims to be leader.
    pub fn check_no_leader(&self) {
        for i in (0..self.n).filter(|&i| self.is_connected(NodeId::from_index(i))) {
            if let Some((_, true)) = self.get_state(NodeId::from_index(i)) {
                panic!("expected no leader among connected servers, but {i} claims to be leader");
            }
        }
    }

    /// How many peers have applied `index`, and the command they agree on.
    pub fn n_committed(&self, index: u64) -> (usize, Option<Vec<u8>>) {
        let a = self.applied.borrow();
        let mut count = 0;
        let mut cmd: Option<&Vec<u8>> = None;
        for log in &a.logs {
            if let Some(c) = log.get(&index) {
                if let Some(prev) = cmd {
                    assert_eq!(prev, c, "committed values do not match: index {index}");
                }
                count += 1;
                cmd = Some(c);
            }
        }
        (count, cmd.cloned())
    }

    /// The labs' `one(cmd, expectedServers, retry)`: submits `cmd` to whichever connected peer
    /// accepts it and waits until at least `expected` peers applied it. Returns its index.
    pub async fn one(&self, cmd: Vec<u8>, expected: usize, retry: bool) -> u64 {
        let t0 = self.rt.now();
        let mut starts = 0;
        while self.rt.now() - t0 < Duration::from_secs(10) {
            let mut index = None;
            for _ in 0..self.n {
                starts = (starts + 1) % self.n;
                if self.is_connected(NodeId::from_index(starts)) {
                    if let Some((i, _, true)) = self.start(NodeId::from_index(starts), cmd.clone())
                    {
                        index = Some(i);
                        break;
                    }
                }
            }
            match index {
                Some(index) => {
                    let t1 = self.rt.now();
                    while self.rt.now() - t1 < Duration::from_secs(2) {
                        let (nd, cmd1) = self.n_committed(index);
                        if nd > 0 && nd >= expected && cmd1.as_ref() == Some(&cmd) {
                            return index;
                        }
                        self.sleep(Duration::from_millis(20)).await;
                    }
                    assert!(retry, "one({:?}) failed to reach agreement", as_int(&cmd));
                }
                None => self.sleep(Duration::from_millis(50)).await,
            }
        }
        panic!("one({:?}) failed to reach agreement", as_int(&cmd));
    }

    /// The labs' `wait(index, n, startTerm)`: waits for `n` peers to apply `index`. Returns
    /// `None` (the labs' -1) if some peer moved past `start_term` meanwhile.
    pub async fn wait(&self, index: u64, n: usize, start_term: Option<u64>) -> Option<Vec<u8>> {
        let mut to = Duration::from_millis(10);
        for _ in 0..30 {
            if self.n_committed(index).0 >= n {
                break;
            }
            self.sleep(to).await;
            if to < Duration::from_secs(1) {
                to *= 2;
            }
            if let Some(st) = start_term {
                for i in 0..self.n {
                    if let Some((t, _)) = self.get_state(NodeId::from_index(i)) {
                        if t > st {
                            return None;
                        }
                    }
                }
            }
        }
        let (nd, cmd) = self.n_committed(index);
        assert!(nd >= n, "only {nd} decided for index {index}; wanted {n}");
        cmd
    }
}

/// What the tester records for a committed membership entry: its text, which no command
/// generated by the tester can equal (commands are integers or the labs' strings).
pub fn membership_marker(m: &flotilla_raft::Membership) -> Vec<u8> {
    format!("membership voters {:?} learners {:?}", m.voters, m.learners).into_bytes()
}
