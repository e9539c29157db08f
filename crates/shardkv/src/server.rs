//! The processes of a sharded Flotilla: a shard group's replica ([`ShardServer`]) and a
//! controller replica speaking the same message type ([`CtrlServer`]). Both are sans-I/O
//! [`Process`]es, run by the simulator and by the TCP driver alike.

use std::collections::BTreeMap;
use std::sync::Arc;

use flotilla_id::alloc;
use flotilla_node::{lift_offloaded, Ctx, NodeId, Offloaded, Process, Refusal};
use flotilla_raft::{Raft, SnapshotData, SnapshotSpool};
use flotilla_rsm::{
    CheckDepth, Clerk, ClerkConfig, ClientId, Msg, Replica, ReplicaConfig, RestoreError,
};
use flotilla_shardctrler::{CtrlCommand, CtrlReply, Ctrler, Gid};

use crate::machine::{PullCursor, ShardCommand, ShardKv, ShardPage};
use crate::msg::ShardMsg;

/// Turns a server name from a configuration (`ShardConfig::groups`) into the node to send to:
/// the simulator's node for `server-100-2`, a TCP peer for `10.0.0.7:7001`. `None`: unknown,
/// skipped.
pub type Resolver = Arc<dyn Fn(&str) -> Option<NodeId> + Send + Sync>;

/// Settings of one shard-group replica.
#[derive(Clone, Debug)]
pub struct ShardServerConfig {
    pub gid: Gid,
    pub nshards: usize,
    pub replica: ReplicaConfig,
    /// The controller's replicas.
    pub ctrlers: Vec<NodeId>,
    /// The id of this replica's controller clerk (unique among the controller's clients):
    /// [`alloc::server_ctrl_clerk`].
    pub ctrl_client: ClientId,
    /// Ticks between the leader's rounds: ask the controller for the next configuration, pull
    /// missing shards, tell previous owners what arrived. The labs poll every 100 ms.
    pub poll_ticks: u32,
    /// Ticks before a page this leader proposed may be asked for and proposed again (the
    /// first proposal may have been lost with a leadership change).
    pub install_retry_ticks: u32,
    /// The most bytes of keys and values (plus [`crate::SESSION_RECORD_BYTES`] per
    /// exactly-once record) this group asks for in one page of a shard it pulls: the size of
    /// the pull's messages and of its log entries (a single larger value travels alone). Well
    /// under the transport's 1 MiB batches, so a page never holds up other traffic for long.
    pub page_bytes: usize,
}

/// [`ShardServerConfig::page_bytes`] by default.
pub const DEFAULT_PAGE_BYTES: usize = 256 * 1024;

impl ShardServerConfig {
    pub fn new(gid: Gid, nshards: usize, replica: ReplicaConfig, ctrlers: Vec<NodeId>) -> Self {
        ShardServerConfig {
            gid,
            nshards,
            ctrl_client: alloc::server_ctrl_clerk(gid, replica.raft.id),
            replica,
            ctrlers,
            poll_ticks: 10,
            install_retry_ticks: 50,
            page_bytes: DEFAULT_PAGE_BYTES,
        }
    }
}

/// A leader's pull of one shard: the page it last asked for (or proposed), and since when. A
/// page applied moves the machine's cursor past `from`, which sends the next ask at once.
#[derive(Clone, Debug)]
struct PullTrack {
    from: PullCursor,
    /// The page starting at `from` was proposed (not merely asked for).
    proposed: bool,
    ticks: u32,
}

/// Counts of what a replica's pulls did, for tests and operators.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PullStats {
    /// Pages it proposed that were not their shard's first: non-zero once a shard it pulled
    /// spanned pages.
    pub later_pages: u64,
    /// Of those, pages that went on from where another leader (or this replica before it
    /// restarted) had got to: transfers resumed after a leadership change or a crash.
    pub resumed: u64,
}

/// One replica of a shard group: the replicated [`ShardKv`] plus, while it leads, the loop
/// that walks the group through configurations: poll the controller for the next one and
/// propose it; pull each incoming shard from its previous owner page by page, proposing each
/// page as it comes and asking for the next as soon as the last one is applied; tell
/// previous owners what arrived so they delete it, and record their answer. Every step goes
/// through the group's log, so a new leader picks up where the old one stopped; every step is
/// idempotent, so repeating one is harmless.
///
/// It answers other groups from its applied state (any replica can: a frozen shard never
/// changes): `Pull` with a page of a shard it froze, `Delete` by proposing the deletion and,
/// once applied, saying so.
pub struct ShardServer {
    replica: Replica<ShardKv>,
    ctrl: Clerk<CtrlCommand>,
    resolve: Resolver,
    poll_ticks: u32,
    since_poll: u32,
    install_retry_ticks: u32,
    page_bytes: usize,
    /// While leading: where this replica stands in pulling each shard, by (configuration,
    /// shard).
    pulls: BTreeMap<(u64, usize), PullTrack>,
    /// Where the last page this replica proposed of each shard ends, by (configuration,
    /// shard): a page proposed from elsewhere resumes another leader's transfer.
    proposed_ends: BTreeMap<(u64, usize), PullCursor>,
    stats: PullStats,
    /// The next server to try in each group, so retries go round a group whose leader is down.
    cursor: BTreeMap<Gid, usize>,
}

impl ShardServer {
    /// Restarts (or starts, from empty bytes) a replica from what it persisted.
    pub fn restore(
        cfg: ShardServerConfig,
        resolve: Resolver,
        raft_state: &[u8],
        snapshot: SnapshotData,
    ) -> Result<Self, RestoreError> {
        let machine = ShardKv::new(cfg.gid, cfg.nshards);
        let replica = Replica::restore(cfg.replica, machine, raft_state, snapshot)?;
        let clerk_cfg = ClerkConfig::default();
        Ok(ShardServer {
            replica,
            ctrl: Clerk::new(cfg.ctrl_client, cfg.ctrlers, clerk_cfg),
            resolve,
            poll_ticks: cfg.poll_ticks.max(1),
            since_poll: 0,
            install_retry_ticks: cfg.install_retry_ticks,
            page_bytes: cfg.page_bytes.max(1),
            pulls: BTreeMap::new(),
            proposed_ends: BTreeMap::new(),
            stats: PullStats::default(),
            cursor: BTreeMap::new(),
        })
    }

    pub fn replica(&self) -> &Replica<ShardKv> {
        &self.replica
    }

    pub fn machine(&self) -> &ShardKv {
        self.replica.state().machine()
    }

    /// Checks the replica's invariants, and through it the group's state machine's
    /// ([`Replica::check_invariants`]); panics with a sentence naming the broken one.
    pub fn check_invariants(&self, depth: CheckDepth) {
        self.replica.check_invariants(depth);
    }

    /// Where snapshots arriving from a leader are written ([`Replica::set_snapshot_spool`]).
    pub fn set_snapshot_spool(&mut self, spool: Arc<dyn SnapshotSpool>) {
        self.replica.set_snapshot_spool(spool);
    }

    pub fn raft(&self) -> &Raft {
        self.replica.raft()
    }

    /// What this replica's pulls did since it started.
    pub fn pull_stats(&self) -> PullStats {
        self.stats
    }

    fn replica_do(
        &mut self,
        ctx: &mut Ctx<ShardMsg, ()>,
        f: impl FnOnce(&mut Replica<ShardKv>, &mut Ctx<crate::GroupMsg, ()>),
    ) {
        ctx.scoped(
            ShardMsg::Group,
            |()| (),
            |inner| f(&mut self.replica, inner),
        );
    }

    /// A tick's work besides the replica's: the controller clerk, install retries, polls.
    fn tick_rest(&mut self, ctx: &mut Ctx<ShardMsg, ()>) {
        ctx.scoped(ShardMsg::Ctrl, |()| (), |inner| self.ctrl.on_tick(inner));
        for track in self.pulls.values_mut() {
            track.ticks += 1;
        }
        self.since_poll += 1;
        if self.since_poll >= self.poll_ticks {
            self.since_poll = 0;
            if self.raft().is_leader() {
                self.poll(ctx);
            }
        }
        self.pump_pulls(ctx);
    }

    /// Proposes `cmd` if leading; whether it was accepted. Not leading (or pushed back):
    /// the next leader, or this one later, proposes it again.
    fn propose(&mut self, cmd: ShardCommand, ctx: &mut Ctx<ShardMsg, ()>) -> bool {
        let mut ok = false;
        self.replica_do(ctx, |r, inner| {
            ok = r.propose_own(cmd, inner).is_ok();
        });
        ok
    }

    /// While leading, asks for the next page of every pulling shard whose cursor moved (its
    /// last page applied: at once), whose ask went unanswered for a poll round (of another
    /// server of the old owner, in turn), or whose proposed page did not apply within
    /// `install_retry_ticks` (lost with a leadership change).
    fn pump_pulls(&mut self, ctx: &mut Ctx<ShardMsg, ()>) {
        if !self.raft().is_leader() {
            self.pulls.clear();
            return;
        }
        let cursors = self.machine().pull_cursors();
        if self.pulls.is_empty() && cursors.is_empty() {
            return;
        }
        let num = self.machine().config().num;
        self.pulls
            .retain(|&(n, s), t| n == num && cursors.get(&s).is_some_and(|(_, at)| *at == t.from));
        for (shard, (gid, from)) in cursors {
            if let Some(t) = self.pulls.get(&(num, shard)) {
                let wait = if t.proposed {
                    self.install_retry_ticks
                } else {
                    self.poll_ticks
                };
                if t.ticks < wait {
                    continue;
                }
            }
            let Some(to) = self.next_server_of(gid) else {
                continue;
            };
            let max_bytes = self.page_bytes as u64;
            let track = PullTrack {
                from: from.clone(),
                proposed: false,
                ticks: 0,
            };
            self.pulls.insert((num, shard), track);
            let pull = ShardMsg::Pull {
                num,
                shard,
                from,
                max_bytes,
            };
            ctx.send(to, pull);
        }
    }

    /// A server of group `gid` as the previous configuration lists it, the next in turn.
    fn next_server_of(&mut self, gid: Gid) -> Option<NodeId> {
        let servers = self.replica.state().machine().prev().groups.get(&gid)?;
        if servers.is_empty() {
            return None;
        }
        let cursor = self.cursor.entry(gid).or_default();
        let name = &servers[*cursor % servers.len()];
        *cursor = cursor.wrapping_add(1);
        (self.resolve)(name)
    }

    /// One round of the leader's reconfiguration loop.
    fn poll(&mut self, ctx: &mut Ctx<ShardMsg, ()>) {
        let m = self.machine();
        let num = m.config().num;
        let (settled, notices) = (m.settled(), m.notices());
        if settled && !self.ctrl.is_busy() {
            ctx.scoped(
                ShardMsg::Ctrl,
                |()| (),
                |inner| self.ctrl.start(CtrlCommand::Query(Some(num + 1)), inner),
            );
        }
        for (gid, shards) in notices {
            if let Some(to) = self.next_server_of(gid) {
                ctx.send(to, ShardMsg::Delete { num, shards });
            }
        }
    }

    fn on_ctrl_reply(&mut self, reply: CtrlReply, ctx: &mut Ctx<ShardMsg, ()>) {
        let CtrlReply::Config(next) = reply else {
            return;
        };
        let m = self.machine();
        if next.num == m.config().num + 1 && m.settled() && self.raft().is_leader() {
            self.propose(ShardCommand::Config(next), ctx);
        }
    }

    /// Proposes a page that starts where the shard's installed part ends, unless this
    /// leader already proposed that one.
    fn on_pull_reply(
        &mut self,
        num: u64,
        shard: usize,
        page: ShardPage,
        ctx: &mut Ctx<ShardMsg, ()>,
    ) {
        if !self.raft().is_leader() || num != self.machine().config().num {
            return;
        }
        let cursors = self.machine().pull_cursors();
        if cursors.get(&shard).map(|(_, at)| at) != Some(&page.from) {
            return;
        }
        let key = (num, shard);
        if self
            .pulls
            .get(&key)
            .is_some_and(|t| t.proposed && t.from == page.from)
        {
            return;
        }
        let track = PullTrack {
            from: page.from.clone(),
            proposed: true,
            ticks: 0,
        };
        let later = page.from != PullCursor::Start;
        let resumed = later && self.proposed_ends.get(&key) != Some(&page.from);
        let Some(end) = page.end() else {
            return;
        };
        if self.propose(ShardCommand::InstallPage { num, shard, page }, ctx) {
            self.pulls.insert(key, track);
            self.proposed_ends.retain(|&(n, _), _| n == num);
            self.proposed_ends.insert(key, end);
            self.stats.later_pages += u64::from(later);
            self.stats.resumed += u64::from(resumed);
        }
    }

    fn on_delete(
        &mut self,
        from: NodeId,
        num: u64,
        shards: Vec<usize>,
        ctx: &mut Ctx<ShardMsg, ()>,
    ) {
        if self.machine().deleted(num, &shards) {
            ctx.send(from, ShardMsg::Deleted { num, shards });
        } else if self.raft().is_leader() && self.machine().config().num == num {
            // Answered when the requester asks again after the deletion applied.
            self.propose(ShardCommand::Delete { num, shards }, ctx);
        }
    }

    fn on_deleted(&mut self, num: u64, shards: Vec<usize>, ctx: &mut Ctx<ShardMsg, ()>) {
        let m = self.machine();
        if !self.raft().is_leader() || num != m.config().num {
            return;
        }
        let states = m.shard_states();
        let shards: Vec<usize> = (shards.into_iter())
            .filter(|s| states.get(s) == Some(&crate::ShardState::Notify))
            .collect();
        if !shards.is_empty() {
            self.propose(ShardCommand::Confirmed { num, shards }, ctx);
        }
    }
}

impl Process for ShardServer {
    type Msg = ShardMsg;
    type Event = ();

    /// The replica encodes its snapshots off the event loop, as a key/value group's does: a
    /// group holding a large shard must not stall its leader for the encoding.
    fn allow_offload(&mut self) {
        self.replica.allow_offload();
    }

    /// The replica's jobs, their continuations fed back to it; an entry its continuation
    /// applies may be a page, so the pulls move on as after any of the group's messages.
    fn take_offloaded(&mut self) -> Vec<Offloaded<Self>> {
        let jobs = self.replica.take_offloaded();
        lift_offloaded(jobs, |s: &mut Self, ctx: &mut Ctx<ShardMsg, ()>, then| {
            s.replica_do(ctx, then);
            s.pump_pulls(ctx);
        })
    }

    fn on_tick(&mut self, ctx: &mut Ctx<ShardMsg, ()>) {
        self.replica_do(ctx, |r, inner| r.on_tick(inner));
        self.tick_rest(ctx);
    }

    /// The replica's clocks advance with its timers held (`Replica::on_missed_tick`); the
    /// rest ticks as usual: its timers (configuration polls, retries) only send.
    fn on_missed_tick(&mut self, ctx: &mut Ctx<ShardMsg, ()>) {
        self.replica_do(ctx, |r, inner| r.on_missed_tick(inner));
        self.tick_rest(ctx);
    }

    fn on_message(&mut self, from: NodeId, msg: ShardMsg, ctx: &mut Ctx<ShardMsg, ()>) {
        match msg {
            ShardMsg::Group(m) => {
                self.replica_do(ctx, |r, inner| r.on_message(from, m, inner));
                // A page may have applied: ask for the next one now rather than at the tick.
                self.pump_pulls(ctx);
            }
            ShardMsg::Ctrl(Msg::Response(resp)) => {
                let reply = ctx.scoped(
                    ShardMsg::Ctrl,
                    |()| (),
                    |inner| self.ctrl.on_response(from, resp, inner),
                );
                // A controller out of disk space is asked again at the next poll.
                if let Some(Ok(reply)) = reply {
                    self.on_ctrl_reply(reply, ctx);
                }
            }
            // A shard server serves no controller requests.
            ShardMsg::Ctrl(_) => {}
            ShardMsg::Pull {
                num,
                shard,
                from: at,
                max_bytes,
            } => {
                let max_bytes = usize::try_from(max_bytes).unwrap_or(usize::MAX);
                let page = self.machine().handoff_page(num, shard, &at, max_bytes);
                ctx.send(from, ShardMsg::PullReply { num, shard, page });
            }
            ShardMsg::PullReply {
                num,
                shard,
                page: Some(page),
            } => self.on_pull_reply(num, shard, page, ctx),
            ShardMsg::PullReply { page: None, .. } => {}
            ShardMsg::Delete { num, shards } => self.on_delete(from, num, shards, ctx),
            ShardMsg::Deleted { num, shards } => self.on_deleted(num, shards, ctx),
        }
    }

    fn is_reply(msg: &ShardMsg) -> bool {
        msg.is_reply()
    }

    /// The group's own traffic as the replica decides; what reports applied state to other
    /// groups (frozen shards, deletions) like the replica's answers to clients; requests to the
    /// controller and to other groups at once (they carry nothing this replica must persist).
    fn may_send_before_save(&self, msg: &ShardMsg) -> bool {
        match msg {
            ShardMsg::Group(m) => self.replica.may_send_before_save(m),
            ShardMsg::PullReply { .. } | ShardMsg::Deleted { .. } => {
                self.raft().commit_needs_peer_ack()
            }
            ShardMsg::Ctrl(_) | ShardMsg::Pull { .. } | ShardMsg::Delete { .. } => true,
        }
    }

    /// Clients' operations as the replica refuses them; other groups' pulls and deletions are
    /// dropped (they are resent).
    fn refuse(&self, msg: &ShardMsg, why: Refusal) -> Option<ShardMsg> {
        match msg {
            ShardMsg::Group(m) => self.replica.refuse(m, why).map(ShardMsg::Group),
            _ => None,
        }
    }
}

/// A controller replica on the sharded system's message type: `Replica<Ctrler>` answering
/// [`ShardMsg::Ctrl`] and ignoring the rest.
pub struct CtrlServer {
    replica: Replica<Ctrler>,
}

impl CtrlServer {
    pub fn restore(
        cfg: ReplicaConfig,
        nshards: usize,
        raft_state: &[u8],
        snapshot: SnapshotData,
    ) -> Result<Self, RestoreError> {
        let replica = Replica::restore(cfg, Ctrler::new(nshards), raft_state, snapshot)?;
        Ok(CtrlServer { replica })
    }

    pub fn replica(&self) -> &Replica<Ctrler> {
        &self.replica
    }

    /// Checks the replica's invariants ([`Replica::check_invariants`]); panics with a
    /// sentence naming the broken one.
    pub fn check_invariants(&self, depth: CheckDepth) {
        self.replica.check_invariants(depth);
    }

    /// Where snapshots arriving from a leader are written ([`Replica::set_snapshot_spool`]).
    pub fn set_snapshot_spool(&mut self, spool: Arc<dyn SnapshotSpool>) {
        self.replica.set_snapshot_spool(spool);
    }

    pub fn raft(&self) -> &Raft {
        self.replica.raft()
    }
}

impl Process for CtrlServer {
    type Msg = ShardMsg;
    type Event = ();

    fn allow_offload(&mut self) {
        self.replica.allow_offload();
    }

    fn take_offloaded(&mut self) -> Vec<Offloaded<Self>> {
        let jobs = self.replica.take_offloaded();
        lift_offloaded(jobs, |s: &mut Self, ctx: &mut Ctx<ShardMsg, ()>, then| {
            ctx.scoped(ShardMsg::Ctrl, |()| (), |inner| then(&mut s.replica, inner));
        })
    }

    fn on_tick(&mut self, ctx: &mut Ctx<ShardMsg, ()>) {
        ctx.scoped(ShardMsg::Ctrl, |()| (), |inner| self.replica.on_tick(inner));
    }

    fn on_missed_tick(&mut self, ctx: &mut Ctx<ShardMsg, ()>) {
        ctx.scoped(
            ShardMsg::Ctrl,
            |()| (),
            |inner| self.replica.on_missed_tick(inner),
        );
    }

    fn on_message(&mut self, from: NodeId, msg: ShardMsg, ctx: &mut Ctx<ShardMsg, ()>) {
        let ShardMsg::Ctrl(m) = msg else { return };
        ctx.scoped(
            ShardMsg::Ctrl,
            |()| (),
            |inner| self.replica.on_message(from, m, inner),
        );
    }

    fn is_reply(msg: &ShardMsg) -> bool {
        msg.is_reply()
    }

    fn may_send_before_save(&self, msg: &ShardMsg) -> bool {
        match msg {
            ShardMsg::Ctrl(m) => self.replica.may_send_before_save(m),
            _ => false,
        }
    }

    fn refuse(&self, msg: &ShardMsg, why: Refusal) -> Option<ShardMsg> {
        match msg {
            ShardMsg::Ctrl(m) => self.replica.refuse(m, why).map(ShardMsg::Ctrl),
            _ => None,
        }
    }
}
