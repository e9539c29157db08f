//! The simulated cluster: nodes, links, persisters, the event queue and the virtual clock.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use std::hash::Hasher;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rustc_hash::FxHasher;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::network::{Fate, NetConfig, Stats};
use flotilla_node::{Ctx, NodeId, Process, Save, SnapshotData};

/// Stable storage of one node: survives crashes, as the labs' `Persister` does.
#[derive(Clone, Debug, Default)]
pub struct Persister {
    state: Vec<u8>,
    snapshot: SnapshotData,
}

impl Persister {
    pub fn state(&self) -> &[u8] {
        &self.state
    }
    /// The stored snapshot (shared, not copied).
    pub fn snapshot(&self) -> SnapshotData {
        self.snapshot.clone()
    }
    /// Size of the persisted state (the labs' `RaftStateSize`).
    pub fn state_size(&self) -> usize {
        self.state.len()
    }
    pub fn snapshot_size(&self) -> usize {
        self.snapshot.len() as usize
    }
    fn apply(&mut self, save: Save) {
        if save.append {
            self.state.extend_from_slice(&save.state);
        } else {
            self.state = save.state;
        }
        if let Some(s) = save.snapshot {
            self.snapshot = s;
        }
    }
}

/// Builds the process for node `id` at (re)start from its persister, with a fresh seed for the
/// process's own randomness.
pub type Factory<P> = Box<dyn FnMut(NodeId, &Persister, u64) -> P>;

/// A check run on a process after every input it handles (e.g. its invariants).
pub type Checker<P> = Box<dyn Fn(NodeId, &P)>;

enum Event {
    Tick {
        node: NodeId,
        incarnation: u64,
    },
    Deliver {
        from: NodeId,
        to: NodeId,
        incarnation: u64,
        reply: bool,
        bytes: Vec<u8>,
    },
    /// The sync a node started (sync-latency mode) is done.
    Synced {
        node: NodeId,
        incarnation: u64,
    },
}

/// An input that arrived while its node was syncing, fed after the sync with the next batch.
enum Deferred {
    Tick,
    Deliver {
        from: NodeId,
        reply: bool,
        bytes: Vec<u8>,
    },
}

/// A node's sync in flight, in sync-latency mode: the batch's saves, the outputs that wait
/// for them, and the inputs that wait for the node.
struct Syncing<P: Process> {
    saves: Vec<Save>,
    sends: Vec<(NodeId, P::Msg)>,
    events: Vec<P::Event>,
    deferred: Vec<Deferred>,
}

struct Slot<P: Process> {
    process: Option<P>,
    /// Bumped on crash and restart; events for an older incarnation are dropped.
    incarnation: u64,
    persister: Persister,
    syncing: Option<Syncing<P>>,
    /// Service-time mode: µs each delivered message keeps this node busy (0: none), and the
    /// virtual time until which it is busy.
    service: u64,
    busy_until: u64,
}

/// A deterministic simulated cluster of processes of type `P`.
pub struct Sim<P: Process> {
    /// Virtual time in microseconds since the start.
    now: u64,
    /// Tie-breaker that keeps the event order total and independent of anything but the seed.
    seq: u64,
    queue: BTreeMap<(u64, u64), Event>,
    nodes: Vec<Slot<P>>,
    /// `links[a][b]`: a message from a to b can pass.
    links: Vec<Vec<bool>>,
    connected: Vec<bool>,
    reliable: bool,
    long_reordering: bool,
    net: NetConfig,
    tick: Duration,
    rng: ChaCha8Rng,
    factory: Factory<P>,
    events: VecDeque<(NodeId, P::Event)>,
    stats: Stats,
    trace: u64,
    /// Called after every input a process handles, to check its invariants.
    /// Run in order after every input a live process handles.
    checkers: Vec<Checker<P>>,
    /// Sync-latency mode: how long a sync takes (µs, inclusive range); `None` persists at once.
    sync_latency: Option<(u64, u64)>,
}

impl<P> Sim<P>
where
    P: Process,
    P::Msg: Serialize + DeserializeOwned,
{
    /// `n` nodes, all started (from empty persisters) and connected, on a reliable network.
    pub fn new(n: usize, seed: u64, tick: Duration, factory: Factory<P>) -> Self {
        let mut sim = Sim {
            now: 0,
            seq: 0,
            queue: BTreeMap::new(),
            nodes: (0..n)
                .map(|_| Slot {
                    process: None,
                    incarnation: 0,
                    persister: Persister::default(),
                    syncing: None,
                    service: 0,
                    busy_until: 0,
                })
                .collect(),
            links: vec![vec![false; n]; n],
            connected: vec![false; n],
            reliable: true,
            long_reordering: false,
            net: NetConfig::default(),
            tick,
            rng: ChaCha8Rng::seed_from_u64(seed),
            factory,
            events: VecDeque::new(),
            stats: Stats {
                rpcs_received: vec![0; n],
                ..Stats::default()
            },
            trace: TRACE_START,
            checkers: Vec::new(),
            sync_latency: None,
        };
        for i in 0..n {
            sim.restart(NodeId::from_index(i));
            sim.connect(NodeId::from_index(i));
        }
        sim
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    pub fn now(&self) -> Duration {
        Duration::from_micros(self.now)
    }
    pub fn stats(&self) -> &Stats {
        &self.stats
    }
    /// A digest of every event processed so far: equal for two runs of the same seed.
    pub fn trace_hash(&self) -> u64 {
        self.trace
    }
    /// The simulation's random generator, for test scripts' own choices, so they replay too.
    pub fn rng(&mut self) -> &mut ChaCha8Rng {
        &mut self.rng
    }
    pub fn set_net_config(&mut self, net: NetConfig) {
        self.net = net;
    }
    pub fn set_reliable(&mut self, reliable: bool) {
        self.reliable = reliable;
    }
    pub fn set_long_reordering(&mut self, on: bool) {
        self.long_reordering = on;
    }
    /// Sync-latency mode (`Some((min, max))`): a node's save takes a random time in the
    /// range to become durable, as a real disk's sync does, and the simulator drives each node
    /// the way the TCP driver does (`flotilla_host::driver`): the first input with a save
    /// starts a sync; messages the process marks [`Process::may_send_before_save`] leave at
    /// once, every other output waits for the sync; inputs that arrive meanwhile wait too and
    /// are then fed as one batch, whose saves share the next sync. A crash during a sync
    /// loses the batch's saves and held outputs, but not the early messages: the case those
    /// messages must survive. `None` (the default) persists each input's save at once.
    pub fn set_sync_latency(&mut self, range: Option<(Duration, Duration)>) {
        self.sync_latency = range.map(|(a, b)| (a.as_micros() as u64, b.as_micros() as u64));
    }

    /// Service-time mode for `nodes`: handling a delivered message keeps a node busy for
    /// `per_message` (`None`: no cost, the default), and messages that arrive meanwhile wait,
    /// in arrival order, until it is free. A model of a server's CPU: a node then handles at
    /// most one message per `per_message`, so throughput has a ceiling per node (ticks cost
    /// nothing). Deterministic: it draws no randomness.
    pub fn set_service_time(&mut self, nodes: &[NodeId], per_message: Option<Duration>) {
        let us = per_message.map_or(0, |d| d.as_micros() as u64);
        for &i in nodes {
            self.nodes[i.index()].service = us;
        }
    }

    /// Adds a check run after every input a live process handles, after those added before
    /// (a tester's invariant checks stay on when a scenario adds a watch of its own).
    pub fn add_checker(&mut self, check: Checker<P>) {
        self.checkers.push(check);
    }

    pub fn process(&self, i: NodeId) -> Option<&P> {
        self.nodes[i.index()].process.as_ref()
    }
    pub fn is_alive(&self, i: NodeId) -> bool {
        self.nodes[i.index()].process.is_some()
    }
    pub fn is_connected(&self, i: NodeId) -> bool {
        self.connected[i.index()]
    }
    pub fn persister(&self, i: NodeId) -> &Persister {
        &self.nodes[i.index()].persister
    }
    /// Whether node `i` has a sync in flight (sync-latency mode): the saves of its latest
    /// inputs are not durable yet, and the outputs that wait for them have not left.
    pub fn is_syncing(&self, i: NodeId) -> bool {
        self.nodes[i.index()].syncing.is_some()
    }

    // ----- faults -----

    /// Lets `i` talk to every other connected node.
    pub fn connect(&mut self, i: NodeId) {
        self.connected[i.index()] = true;
        for j in 0..self.len() {
            if self.connected[j] {
                self.links[i.index()][j] = true;
                self.links[j][i.index()] = true;
            }
        }
    }

    /// Cuts every link of `i`; messages in flight to or from it are lost.
    pub fn disconnect(&mut self, i: NodeId) {
        self.connected[i.index()] = false;
        for j in 0..self.len() {
            self.links[i.index()][j] = false;
            self.links[j][i.index()] = false;
        }
    }

    /// Splits the nodes into groups that can talk only among themselves. Nodes in no group are
    /// disconnected.
    pub fn partition(&mut self, groups: &[Vec<NodeId>]) {
        for i in 0..self.len() {
            self.disconnect(NodeId::from_index(i));
        }
        for g in groups {
            for &a in g {
                self.connected[a.index()] = true;
                for &b in g {
                    self.links[a.index()][b.index()] = true;
                }
            }
        }
    }

    /// Opens or cuts the link between `a` and `b` in both directions, leaving every other link
    /// as it is (e.g. to keep clients in touch with every server while servers are partitioned).
    pub fn set_link(&mut self, a: NodeId, b: NodeId, up: bool) {
        self.links[a.index()][b.index()] = up;
        self.links[b.index()][a.index()] = up;
    }

    /// Kills node `i`: its volatile state is gone, its persister kept. Messages in flight to it
    /// are dropped on arrival; its own earlier messages may still arrive, as on a real network.
    pub fn crash(&mut self, i: NodeId) {
        self.nodes[i.index()].process = None;
        self.nodes[i.index()].incarnation += 1;
        // What the sync in flight would have made durable is lost, with what waited for it.
        self.nodes[i.index()].syncing = None;
        self.nodes[i.index()].busy_until = 0;
    }

    /// (Re)starts node `i` from its persister; crashes it first if it is running.
    pub fn restart(&mut self, i: NodeId) {
        self.crash(i);
        let seed = self.rng.gen();
        let mut process = (self.factory)(i, &self.nodes[i.index()].persister, seed);
        process.allow_offload();
        self.nodes[i.index()].process = Some(process);
        // A random phase, so peers do not tick in lock step.
        let phase = self.rng.gen_range(1..=self.tick.as_micros() as u64);
        let incarnation = self.nodes[i.index()].incarnation;
        self.push(
            self.now + phase,
            Event::Tick {
                node: i,
                incarnation,
            },
        );
    }

    // ----- driving -----

    /// Runs `f` on live process `i` (a direct request such as Raft's `start`), then acts on its
    /// outputs. Returns `None` if `i` is crashed.
    pub fn with_process<R>(
        &mut self,
        i: NodeId,
        f: impl FnOnce(&mut P, &mut Ctx<P::Msg, P::Event>) -> R,
    ) -> Option<R> {
        let mut ctx = Ctx::new(self.now());
        let process = self.nodes[i.index()].process.as_mut()?;
        let r = f(process, &mut ctx);
        self.finish(i, ctx);
        Some(r)
    }

    /// Takes the events processes emitted, oldest first.
    pub fn drain_events(&mut self) -> Vec<(NodeId, P::Event)> {
        self.events.drain(..).collect()
    }

    /// The time of the next queued event.
    pub fn next_event_time(&self) -> Option<Duration> {
        self.queue
            .keys()
            .next()
            .map(|&(t, _)| Duration::from_micros(t))
    }

    /// Moves the clock forward to `t` without processing anything (for test-script timers).
    pub fn advance_to(&mut self, t: Duration) {
        let t = t.as_micros() as u64;
        assert!(t >= self.now, "virtual time cannot go back");
        if let Some(&(next, _)) = self.queue.keys().next() {
            assert!(t <= next, "advance_to would skip queued events");
        }
        self.now = t;
    }

    /// Processes the next event. Returns false if nothing is queued.
    pub fn step(&mut self) -> bool {
        let Some(((t, _), event)) = self.queue.pop_first() else {
            return false;
        };
        self.now = t;
        match event {
            Event::Tick { node, incarnation } => {
                if self.nodes[node.index()].incarnation != incarnation {
                    return true;
                }
                let next = self.now + self.tick.as_micros() as u64;
                self.push(next, Event::Tick { node, incarnation });
                if let Some(sync) = &mut self.nodes[node.index()].syncing {
                    sync.deferred.push(Deferred::Tick);
                    return true;
                }
                self.feed_tick(node);
            }
            Event::Synced { node, incarnation } => {
                if self.nodes[node.index()].incarnation == incarnation {
                    self.complete_sync(node);
                }
            }
            Event::Deliver {
                from,
                to,
                incarnation,
                reply,
                bytes,
            } => {
                let alive = self.nodes[to.index()].incarnation == incarnation
                    && self.nodes[to.index()].process.is_some();
                if !alive || !self.links[from.index()][to.index()] {
                    return true;
                }
                if let Some(sync) = &mut self.nodes[to.index()].syncing {
                    sync.deferred.push(Deferred::Deliver { from, reply, bytes });
                    return true;
                }
                let slot = &mut self.nodes[to.index()];
                if slot.service > 0 {
                    if slot.busy_until > self.now {
                        // Busy: wait behind what arrived earlier (pushed earlier, so it is
                        // taken first at the same time).
                        let at = slot.busy_until;
                        self.push(
                            at,
                            Event::Deliver {
                                from,
                                to,
                                incarnation,
                                reply,
                                bytes,
                            },
                        );
                        return true;
                    }
                    slot.busy_until = self.now + slot.service;
                }
                self.feed_message(from, to, reply, bytes);
            }
        }
        true
    }

    fn feed_tick(&mut self, node: NodeId) {
        self.digest(&[&[0u8][..], &(node.index() as u32).to_le_bytes()].concat());
        let mut ctx = Ctx::new(self.now());
        self.nodes[node.index()]
            .process
            .as_mut()
            .expect("current incarnation is alive")
            .on_tick(&mut ctx);
        self.finish(node, ctx);
    }

    fn feed_message(&mut self, from: NodeId, to: NodeId, reply: bool, bytes: Vec<u8>) {
        self.digest(
            &[
                &[1u8][..],
                &(from.index() as u32).to_le_bytes(),
                &(to.index() as u32).to_le_bytes(),
            ]
            .concat(),
        );
        self.digest(&bytes);
        self.stats.messages_delivered += 1;
        if reply {
            self.stats.bytes += bytes.len() as u64;
        } else {
            self.stats.rpcs_received[to.index()] += 1;
        }
        let msg: P::Msg =
            postcard::from_bytes(&bytes).expect("the simulator decodes what it encoded");
        let mut ctx = Ctx::new(self.now());
        self.nodes[to.index()]
            .process
            .as_mut()
            .expect("checked alive")
            .on_message(from, msg, &mut ctx);
        self.finish(to, ctx);
    }

    /// A node's sync is done: its batch is durable, what waited for it goes out, and the
    /// inputs that arrived meanwhile are fed as the next batch.
    fn complete_sync(&mut self, node: NodeId) {
        let Some(done) = self.nodes[node.index()].syncing.take() else {
            return;
        };
        self.digest(&[&[2u8][..], &(node.index() as u32).to_le_bytes()].concat());
        for save in done.saves {
            self.nodes[node.index()].persister.apply(save);
        }
        for (to, msg) in done.sends {
            self.send(node, to, msg);
        }
        self.events
            .extend(done.events.into_iter().map(|e| (node, e)));
        for input in done.deferred {
            // A crash cannot happen mid-batch (scripts run between events), so the node
            // stays alive throughout.
            match input {
                Deferred::Tick => self.feed_tick(node),
                // It had arrived (a real driver finds it queued): a partition since then
                // does not take it back.
                Deferred::Deliver { from, reply, bytes } => {
                    self.feed_message(from, node, reply, bytes)
                }
            }
        }
    }

    /// Acts on a process's outputs: persist first, then send, then report events.
    fn finish(&mut self, i: NodeId, ctx: Ctx<P::Msg, P::Event>) {
        let (save, sends, events) = ctx.into_parts();
        match self.sync_latency {
            None => {
                if let Some(save) = save {
                    self.nodes[i.index()].persister.apply(save);
                }
                for (to, msg) in sends {
                    self.send(i, to, msg);
                }
                self.events.extend(events.into_iter().map(|e| (i, e)));
            }
            Some(latency) => self.finish_syncing(i, save, sends, events, latency),
        }
        if let Some(p) = &self.nodes[i.index()].process {
            for check in &self.checkers {
                check(i, p);
            }
        }
        // Offloaded work runs at once, and its continuation is the process's next input, at
        // the same instant (a real driver feeds it later, after other inputs; processes must
        // accept both).
        let jobs =
            (self.nodes[i.index()].process.as_mut()).map_or_else(Vec::new, P::take_offloaded);
        for job in jobs {
            let continuation = job();
            let mut ctx = Ctx::new(self.now());
            let Some(process) = self.nodes[i.index()].process.as_mut() else {
                return;
            };
            continuation(process, &mut ctx);
            self.finish(i, ctx);
        }
    }

    /// [`Sim::finish`] in sync-latency mode. An input fed while a sync is in flight (a
    /// deferred input of the batch being fed, or a script's direct request) joins that sync.
    fn finish_syncing(
        &mut self,
        i: NodeId,
        save: Option<Save>,
        sends: Vec<(NodeId, P::Msg)>,
        events: Vec<P::Event>,
        (min, max): (u64, u64),
    ) {
        let process = self.nodes[i.index()]
            .process
            .as_ref()
            .expect("finish runs on a live process");
        let (early, held): (Vec<_>, Vec<_>) = sends
            .into_iter()
            .partition(|(_, m)| process.may_send_before_save(m));
        for (to, msg) in early {
            self.send(i, to, msg);
        }
        if self.nodes[i.index()].syncing.is_none() && save.is_some() {
            let incarnation = self.nodes[i.index()].incarnation;
            let at = self.now + self.rng.gen_range(min..=max);
            self.push(
                at,
                Event::Synced {
                    node: i,
                    incarnation,
                },
            );
            self.nodes[i.index()].syncing = Some(Syncing {
                saves: Vec::new(),
                sends: Vec::new(),
                events: Vec::new(),
                deferred: Vec::new(),
            });
        }
        match &mut self.nodes[i.index()].syncing {
            Some(sync) => {
                sync.saves.extend(save);
                sync.sends.extend(held);
                sync.events.extend(events);
            }
            None => {
                for (to, msg) in held {
                    self.send(i, to, msg);
                }
                self.events.extend(events.into_iter().map(|e| (i, e)));
            }
        }
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: P::Msg) {
        let reply = P::is_reply(&msg);
        let bytes = postcard::to_allocvec(&msg).expect("messages encode");
        self.stats.messages_sent += 1;
        if !reply {
            self.stats.rpcs_sent += 1;
            self.stats.bytes += bytes.len() as u64;
        }
        if to >= NodeId::from_index(self.len()) || !self.links[from.index()][to.index()] {
            return;
        }
        match self
            .net
            .fate(&mut self.rng, self.reliable, self.long_reordering, reply)
        {
            Fate::Drop => {}
            Fate::DeliverAfter(d) => {
                let incarnation = self.nodes[to.index()].incarnation;
                let at = self.now + d.as_micros() as u64;
                self.push(
                    at,
                    Event::Deliver {
                        from,
                        to,
                        incarnation,
                        reply,
                        bytes,
                    },
                );
            }
        }
    }

    fn push(&mut self, at: u64, event: Event) {
        self.seq += 1;
        self.queue.insert((at, self.seq), event);
    }

    /// Folds the current time and `bytes` into the trace hash. FxHash takes 8 bytes a step;
    /// hashing byte by byte (FNV) was a fifth of the simulator's time with large snapshots.
    fn digest(&mut self, bytes: &[u8]) {
        let mut h = FxHasher::default();
        h.write_u64(self.trace);
        h.write_u64(self.now);
        h.write(bytes);
        self.trace = h.finish();
    }
}

/// The trace hash before any event.
const TRACE_START: u64 = 0xcbf2_9ce4_8422_2325;
