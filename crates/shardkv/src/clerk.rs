//! The client of a sharded Flotilla: maps each key to its shard and the shard to its group by
//! the latest configuration it knows, asks the controller for a newer one when a group says
//! "wrong group" or cannot be reached, and retries until the operation is done, exactly once.

use std::collections::{BTreeMap, BTreeSet};

use flotilla_kv::{KvCommand, KvError, KvReply};
use flotilla_node::{Ctx, NodeId, Process};
use flotilla_rsm::{Clerk, ClerkConfig, ClientId, Msg, RsmError};
use flotilla_shardctrler::{CtrlCommand, CtrlReply, Gid, ShardConfig};

use crate::machine::{key_shard, ShardCommand, ShardReply};
use crate::msg::ShardMsg;
use crate::server::Resolver;

/// Clerk timing, in driver ticks (10 ms).
#[derive(Clone, Debug)]
pub struct ShardClerkConfig {
    /// Within one group: as the replicated KV's clerk (retry another server on silence).
    pub group: ClerkConfig,
    /// Every this long without an answer from a group, ask the controller whether the shard
    /// moved (a group that left may be gone for good); the group is tried meanwhile.
    pub group_patience_ticks: u32,
    /// Wait this long before retrying a group that has the shard but not its data yet, or
    /// before asking the controller again when no group serves the shard.
    pub backoff_ticks: u32,
}

impl Default for ShardClerkConfig {
    fn default() -> Self {
        ShardClerkConfig {
            group: ClerkConfig::default(),
            group_patience_ticks: 30,
            backoff_ticks: 5,
        }
    }
}

#[derive(Clone, Debug)]
enum Phase {
    /// Asking the controller for the latest configuration.
    Config,
    /// Sent to the group the configuration names; ticks since.
    Group { ticks: u32 },
    /// Backing off; ticks left, then `then_config` says whether to ask the controller first.
    Wait { ticks: u32, then_config: bool },
}

#[derive(Clone, Debug)]
struct Op {
    seq: u64,
    /// The stamp every copy carries (`ShardCommand::Op::after_ms`): fixed once non-zero; a
    /// copy stamped 0 is never applied, so 0 may be replaced by the first time heard.
    after_ms: u64,
    op: KvCommand,
    phase: Phase,
}

/// One sequential client of a sharded Flotilla.
///
/// Invariant: every copy of an operation, to whichever group, carries the same `(id, seq)`;
/// each shard keeps its clients' last `(seq, reply)` and hands them over with the shard, so
/// the operation takes effect once wherever it lands.
pub struct ShardClerk {
    id: ClientId,
    seq: u64,
    config: ShardConfig,
    ctrl: Clerk<CtrlCommand>,
    /// Talks to one group at a time; its servers are switched when the shard's group changes.
    group: Clerk<ShardCommand>,
    /// The group `group` talks to now.
    group_id: u64,
    /// The presumed leader of each group `group` talked to before, so that a clerk whose
    /// keys alternate between groups does not start each switch at the group's first
    /// server (a timeout per switch if that one is down). Bounded: only groups of the
    /// latest configuration are kept.
    leaders: BTreeMap<Gid, NodeId>,
    op: Option<Op>,
    resolve: Resolver,
    cfg: ShardClerkConfig,
}

impl ShardClerk {
    pub fn new(
        id: ClientId,
        ctrlers: Vec<NodeId>,
        resolve: Resolver,
        nshards: usize,
        cfg: ShardClerkConfig,
    ) -> Self {
        ShardClerk {
            id,
            seq: 0,
            config: ShardConfig::initial(nshards),
            ctrl: Clerk::new(id, ctrlers.clone(), cfg.group.clone()),
            // Placeholder servers until the first configuration names a group.
            group: Clerk::new(id, ctrlers, cfg.group.clone()),
            group_id: 0,
            leaders: BTreeMap::new(),
            op: None,
            resolve,
            cfg,
        }
    }

    pub fn id(&self) -> ClientId {
        self.id
    }

    pub fn is_busy(&self) -> bool {
        self.op.is_some()
    }

    /// The highest replicated clock (ms) a group or the controller told this clerk: the
    /// stamp of its next operation. Groups' clocks differ by their leaders' skew; a shard's
    /// records stay sound whichever it is (`flotilla_rsm::SessionTable` keeps a record's
    /// activity at least its stamp).
    fn seen_ms(&self) -> u64 {
        self.group.seen_ms().max(self.ctrl.seen_ms())
    }

    /// The stamp for an operation started (or first sent) at `now`: the time heard, if
    /// heard recently, else 0 (see `flotilla_rsm::ClerkConfig::stamp_fresh_ms`).
    fn fresh_stamp(&self, now: std::time::Duration) -> u64 {
        self.group.fresh_stamp(now).max(self.ctrl.fresh_stamp(now))
    }

    /// The latest configuration this clerk knows.
    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// Starts an operation; returns its sequence number. Panics if one is outstanding.
    pub fn start<E>(&mut self, op: KvCommand, ctx: &mut Ctx<ShardMsg, E>) -> u64 {
        assert!(self.op.is_none(), "shard clerk {}: busy", self.id);
        self.seq += 1;
        self.op = Some(Op {
            seq: self.seq,
            after_ms: self.fresh_stamp(ctx.now()),
            op,
            phase: Phase::Config,
        });
        if self.config.num == 0 {
            self.ask_controller(ctx);
        } else {
            self.send_to_group(ctx);
        }
        self.seq
    }

    /// Gives up on the outstanding operation (its outcome stays unknown).
    pub fn abandon(&mut self) {
        self.op = None;
        self.ctrl.abandon();
        self.group.abandon();
    }

    fn ask_controller<E>(&mut self, ctx: &mut Ctx<ShardMsg, E>) {
        let Some(op) = self.op.as_mut() else { return };
        op.phase = Phase::Config;
        self.query_controller(ctx);
    }

    /// Asks the controller for the latest configuration, unless a query is out already.
    fn query_controller<E>(&mut self, ctx: &mut Ctx<ShardMsg, E>) {
        if self.ctrl.is_busy() {
            return;
        }
        ctx.scoped(
            ShardMsg::Ctrl,
            |()| unreachable!(),
            |inner| self.ctrl.start(CtrlCommand::Query(None), inner),
        );
    }

    fn send_to_group<E>(&mut self, ctx: &mut Ctx<ShardMsg, E>) {
        let id = self.id;
        let fresh = self.fresh_stamp(ctx.now());
        let Some(op) = self.op.as_mut() else { return };
        if op.after_ms == 0 {
            op.after_ms = fresh;
        }
        let shard = key_shard(op.op.key(), self.config.shards.len());
        let gid = self.config.shards[shard];
        let servers: Vec<NodeId> = (self.config.groups.get(&gid).into_iter().flatten())
            .filter_map(|name| (self.resolve)(name))
            .collect();
        if servers.is_empty() {
            // No group serves the shard yet (or none we can reach): ask again shortly.
            op.phase = Phase::Wait {
                ticks: self.cfg.backoff_ticks,
                then_config: true,
            };
            return;
        }
        if gid != self.group_id {
            if self.config.groups.contains_key(&self.group_id) {
                self.leaders.insert(self.group_id, self.group.leader());
            }
            let hint = self.leaders.get(&gid).copied();
            self.group.set_servers_led_by(servers, hint);
            self.group_id = gid;
        }
        op.phase = Phase::Group { ticks: 0 };
        let cmd = ShardCommand::Op {
            client: id,
            seq: op.seq,
            after_ms: op.after_ms,
            op: op.op.clone(),
        };
        self.group.abandon();
        ctx.scoped(
            ShardMsg::Group,
            |()| unreachable!(),
            |inner| self.group.start(cmd, inner),
        );
    }

    pub fn on_tick<E>(&mut self, ctx: &mut Ctx<ShardMsg, E>) {
        let Some(op) = self.op.as_mut() else { return };
        match &mut op.phase {
            Phase::Config => {}
            Phase::Group { ticks } => {
                *ticks += 1;
                // A group silent this long may have left (and be gone for good): ask the
                // controller on the side, and keep trying the group meanwhile.
                if *ticks % self.cfg.group_patience_ticks == 0 {
                    self.query_controller(ctx);
                }
                ctx.scoped(
                    ShardMsg::Group,
                    |()| unreachable!(),
                    |inner| self.group.on_tick(inner),
                );
            }
            Phase::Wait { ticks, then_config } => {
                *ticks = ticks.saturating_sub(1);
                if *ticks == 0 {
                    if *then_config {
                        self.ask_controller(ctx);
                    } else {
                        self.send_to_group(ctx);
                    }
                }
            }
        }
        ctx.scoped(
            ShardMsg::Ctrl,
            |()| unreachable!(),
            |inner| self.ctrl.on_tick(inner),
        );
    }

    /// Handles a message for this clerk; returns the reply if it completes the operation.
    pub fn on_message<E>(
        &mut self,
        from: NodeId,
        msg: ShardMsg,
        ctx: &mut Ctx<ShardMsg, E>,
    ) -> Option<(u64, KvReply)> {
        match msg {
            ShardMsg::Ctrl(Msg::Response(resp)) => {
                let reply = ctx.scoped(
                    ShardMsg::Ctrl,
                    |()| unreachable!(),
                    |inner| self.ctrl.on_response(from, resp, inner),
                );
                if let Some(Err(_)) = reply {
                    // The controller cannot write (disk full): no configuration to follow.
                    if !matches!(self.op.as_ref()?.phase, Phase::Config) {
                        return None;
                    }
                    let op = self.op.take().expect("outstanding");
                    return Some((op.seq, KvReply::Error(KvError::DiskFull)));
                }
                if let Some(Ok(CtrlReply::Config(c))) = reply {
                    let newer = c.num > self.config.num;
                    if newer {
                        self.config = c;
                        let groups = &self.config.groups;
                        self.leaders.retain(|g, _| groups.contains_key(g));
                    }
                    let op = self.op.as_mut()?;
                    let shard = key_shard(op.op.key(), self.config.shards.len());
                    let moved = self.config.shards[shard] != self.group_id;
                    if matches!(op.phase, Phase::Group { .. }) && newer && moved {
                        // The shard's group changed while its old group was silent.
                        self.send_to_group(ctx);
                    } else if matches!(op.phase, Phase::Config) {
                        if newer {
                            self.send_to_group(ctx);
                        } else {
                            // Nothing newer: the group that refused has not reached this
                            // configuration yet. Give it a moment rather than spin.
                            op.phase = Phase::Wait {
                                ticks: self.cfg.backoff_ticks,
                                then_config: false,
                            };
                        }
                    }
                }
                None
            }
            ShardMsg::Group(Msg::Response(resp)) => {
                if !matches!(self.op.as_ref()?.phase, Phase::Group { .. }) {
                    return None;
                }
                let reply = ctx.scoped(
                    ShardMsg::Group,
                    |()| unreachable!(),
                    |inner| self.group.on_response(from, resp, inner),
                );
                match reply? {
                    Err(e) => {
                        // A majority of the group cannot write (disk full).
                        let op = self.op.take().expect("outstanding");
                        let e = match e {
                            RsmError::SessionExpired => KvError::SessionExpired,
                            _ => KvError::DiskFull,
                        };
                        Some((op.seq, KvReply::Error(e)))
                    }
                    Ok(ShardReply::Expired) => {
                        // The next operation, stamped with the time this answer brought,
                        // starts a new session.
                        let op = self.op.take().expect("outstanding");
                        Some((op.seq, KvReply::Error(KvError::SessionExpired)))
                    }
                    Ok(ShardReply::Unstamped) => {
                        // No copy stamped 0 is ever applied: stamp it now and resend.
                        let seen = self.seen_ms().max(1);
                        let op = self.op.as_mut().expect("outstanding");
                        op.after_ms = op.after_ms.max(seen);
                        self.send_to_group(ctx);
                        None
                    }
                    Ok(ShardReply::Kv(r)) => {
                        let op = self.op.take().expect("outstanding");
                        Some((op.seq, r))
                    }
                    Ok(ShardReply::WrongGroup) => {
                        self.ask_controller(ctx);
                        None
                    }
                    Ok(ShardReply::NotReady) => {
                        let op = self.op.as_mut().expect("outstanding");
                        op.phase = Phase::Wait {
                            ticks: self.cfg.backoff_ticks,
                            then_config: false,
                        };
                        None
                    }
                    // Neither answers a client's current operation.
                    Ok(ShardReply::Stale | ShardReply::Done) => None,
                }
            }
            _ => None,
        }
    }
}

/// A finished operation, reported by a [`ShardClerkHost`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShardClerkEvent {
    pub client: ClientId,
    pub seq: u64,
    pub reply: KvReply,
}

/// A process running many shard clerks (a test's clients, a router's connections).
pub struct ShardClerkHost {
    clerks: BTreeMap<ClientId, ShardClerk>,
    busy: BTreeSet<ClientId>,
    next_id: ClientId,
    ctrlers: Vec<NodeId>,
    resolve: Resolver,
    nshards: usize,
    cfg: ShardClerkConfig,
}

impl ShardClerkHost {
    /// A host whose clerks get ids `first_id`, `first_id + 1`, …
    pub fn new(
        first_id: ClientId,
        ctrlers: Vec<NodeId>,
        resolve: Resolver,
        nshards: usize,
        cfg: ShardClerkConfig,
    ) -> Self {
        ShardClerkHost {
            clerks: BTreeMap::new(),
            busy: BTreeSet::new(),
            next_id: first_id,
            ctrlers,
            resolve,
            nshards,
            cfg,
        }
    }

    pub fn add_clerk(&mut self) -> ClientId {
        self.add_clerk_with(self.ctrlers.clone())
    }

    /// A clerk that follows the configurations of the controller at `ctrlers`.
    pub fn add_clerk_with(&mut self, ctrlers: Vec<NodeId>) -> ClientId {
        let id = self.next_id;
        self.next_id += 1;
        let clerk = ShardClerk::new(
            id,
            ctrlers,
            self.resolve.clone(),
            self.nshards,
            self.cfg.clone(),
        );
        self.clerks.insert(id, clerk);
        id
    }

    pub fn clerk(&self, id: ClientId) -> Option<&ShardClerk> {
        self.clerks.get(&id)
    }

    pub fn remove_clerk(&mut self, id: ClientId) {
        self.clerks.remove(&id);
        self.busy.remove(&id);
    }

    pub fn start<E>(&mut self, id: ClientId, op: KvCommand, ctx: &mut Ctx<ShardMsg, E>) -> u64 {
        let clerk = (self.clerks.get_mut(&id)).unwrap_or_else(|| panic!("no clerk {id}"));
        self.busy.insert(id);
        clerk.start(op, ctx)
    }

    pub fn abandon(&mut self, id: ClientId) {
        if let Some(c) = self.clerks.get_mut(&id) {
            c.abandon();
        }
        self.busy.remove(&id);
    }
}

impl Process for ShardClerkHost {
    type Msg = ShardMsg;
    type Event = ShardClerkEvent;

    fn on_tick(&mut self, ctx: &mut Ctx<ShardMsg, ShardClerkEvent>) {
        for id in &self.busy {
            if let Some(c) = self.clerks.get_mut(id) {
                c.on_tick(ctx);
            }
        }
    }

    fn on_message(
        &mut self,
        from: NodeId,
        msg: ShardMsg,
        ctx: &mut Ctx<ShardMsg, ShardClerkEvent>,
    ) {
        let client = match &msg {
            ShardMsg::Ctrl(Msg::Response(r)) => r.client,
            ShardMsg::Group(Msg::Response(r)) => r.client,
            _ => return,
        };
        let Some(clerk) = self.clerks.get_mut(&client) else {
            return;
        };
        if let Some((seq, reply)) = clerk.on_message(from, msg, ctx) {
            self.busy.remove(&client);
            ctx.emit(ShardClerkEvent { client, seq, reply });
        }
    }

    fn is_reply(msg: &ShardMsg) -> bool {
        msg.is_reply()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use flotilla_rsm::{Request, Response};

    use super::*;

    const CTRLER: NodeId = NodeId::new(1);
    /// Group g's servers are nodes 10g, 10g+1, 10g+2, named "g-0", "g-1", "g-2".
    fn node(name: &str) -> NodeId {
        let (g, i) = name.split_once('-').expect("g-i");
        NodeId::from_index(10 * g.parse::<usize>().unwrap() + i.parse::<usize>().unwrap())
    }

    /// A key of each shard `0..nshards`.
    fn key_of(shard: usize, nshards: usize) -> Vec<u8> {
        (0u32..)
            .map(|i| format!("k{i}").into_bytes())
            .find(|k| key_shard(k, nshards) == shard)
            .expect("some key")
    }

    /// Plays the controller and two groups, whose first servers (10 and 20) are down and
    /// whose second servers lead; runs `op` to completion. Returns the ticks it took.
    fn run(
        clerk: &mut ShardClerk,
        op: KvCommand,
        config: &ShardConfig,
        to_down: &mut usize,
    ) -> u32 {
        let mut ctx: Ctx<ShardMsg, ()> = Ctx::new(Duration::ZERO);
        clerk.start(op, &mut ctx);
        let mut ticks = 0;
        loop {
            let (_, sends, _) = ctx.into_parts();
            ctx = Ctx::new(Duration::ZERO);
            let mut done = false;
            for (to, m) in sends {
                let answer = match m {
                    ShardMsg::Ctrl(Msg::Request(Request { client, seq, .. })) => {
                        assert_eq!(to, CTRLER);
                        ShardMsg::Ctrl(Msg::Response(Response {
                            client,
                            seq,
                            now_ms: 0,
                            result: Ok(CtrlReply::Config(config.clone())),
                        }))
                    }
                    ShardMsg::Group(Msg::Request(Request { client, seq, .. })) => {
                        if to.get() % 10 == 0 {
                            *to_down += 1;
                            continue; // down
                        }
                        ShardMsg::Group(Msg::Response(Response {
                            client,
                            seq,
                            now_ms: 0,
                            result: Ok(ShardReply::Kv(KvReply::Value(None))),
                        }))
                    }
                    other => panic!("unexpected {other:?}"),
                };
                done |= clerk.on_message(to, answer, &mut ctx).is_some();
            }
            if done {
                return ticks;
            }
            assert!(ticks < 1000, "the operation never finished");
            clerk.on_tick(&mut ctx);
            ticks += 1;
        }
    }

    /// Issue 15, item 8: a clerk alternating between the keys of two groups keeps each
    /// group's leader; with each group's first server down, only the first operation on
    /// each group waits for a retry, not every switch.
    #[test]
    fn alternating_groups_keep_each_groups_leader() {
        let nshards = 2;
        let resolve: Resolver = Arc::new(|name: &str| Some(node(name)));
        let cfg = ShardClerkConfig::default();
        let mut clerk = ShardClerk::new(7, vec![CTRLER], resolve, nshards, cfg.clone());
        let names = |g: u64| (0..3).map(|i| format!("{g}-{i}")).collect::<Vec<_>>();
        let config = ShardConfig {
            num: 1,
            shards: vec![1, 2],
            groups: BTreeMap::from([(1, names(1)), (2, names(2))]),
        };
        let keys = [key_of(0, nshards), key_of(1, nshards)];
        let mut to_down = 0;
        let mut waits = Vec::new();
        for i in 0..10 {
            let key = keys[i % 2].clone();
            waits.push(run(
                &mut clerk,
                KvCommand::Get { key },
                &config,
                &mut to_down,
            ));
        }
        // Each group's first operation tries the down server first and retries after
        // `retry_ticks`; every later one goes straight to the leader it found.
        assert_eq!(to_down, 2, "requests sent to a down server: {waits:?}");
        let retry = cfg.group.retry_ticks;
        assert_eq!(waits[..2], [retry, retry]);
        assert!(
            waits[2..].iter().all(|&t| t == 0),
            "ticks per operation: {waits:?}"
        );
    }
}

#[cfg(test)]
mod disk_full_tests {
    use std::sync::Arc;

    use flotilla_rsm::{Response, RsmError};

    use super::*;

    type Sent = Vec<(NodeId, ShardMsg)>;

    fn sends(f: impl FnOnce(&mut Ctx<ShardMsg, ()>)) -> Sent {
        let mut ctx = Ctx::new(std::time::Duration::ZERO);
        f(&mut ctx);
        ctx.into_parts().1
    }

    /// A clerk of client 7, controller replicas 0..3, group 1's servers "a", "b", "c" at
    /// nodes 10, 11, 12.
    fn clerk() -> ShardClerk {
        let resolve: Resolver = Arc::new(|name: &str| match name {
            "a" => Some(NodeId::new(10)),
            "b" => Some(NodeId::new(11)),
            "c" => Some(NodeId::new(12)),
            _ => None,
        });
        ShardClerk::new(
            7,
            vec![NodeId::new(0), NodeId::new(1), NodeId::new(2)],
            resolve,
            4,
            ShardClerkConfig::default(),
        )
    }

    fn full_group(seq: u64) -> ShardMsg {
        ShardMsg::Group(Msg::Response(Response {
            client: 7,
            seq,
            now_ms: 0,
            result: Err(RsmError::DiskFull),
        }))
    }

    fn full_ctrl(seq: u64) -> ShardMsg {
        ShardMsg::Ctrl(Msg::Response(Response {
            client: 7,
            seq,
            now_ms: 0,
            result: Err(RsmError::DiskFull),
        }))
    }

    /// A group whose majority's disks are full, or a controller's, ends the operation with
    /// `KvError::DiskFull` at once rather than retrying until the caller gives up.
    #[test]
    fn a_group_or_controller_out_of_disk_space_ends_the_operation() {
        let get = || KvCommand::Get { key: b"k".to_vec() };
        let mut c = clerk();
        let sent = sends(|ctx| {
            c.start(get(), ctx);
        });
        assert!(
            matches!(sent[..], [(to, ShardMsg::Ctrl(_))] if to == NodeId::new(0)),
            "{sent:?}"
        );
        let config = ShardConfig {
            num: 1,
            shards: vec![1; 4],
            groups: [(1, vec!["a".into(), "b".into(), "c".into()])].into(),
        };
        let answer = ShardMsg::Ctrl(Msg::Response(Response {
            client: 7,
            seq: 1,
            now_ms: 0,
            result: Ok(CtrlReply::Config(config)),
        }));
        let sent = sends(|ctx| assert_eq!(c.on_message(NodeId::new(0), answer, ctx), None));
        assert!(
            matches!(sent[..], [(to, ShardMsg::Group(_))] if to == NodeId::new(10)),
            "{sent:?}"
        );
        let sent = sends(|ctx| assert_eq!(c.on_message(NodeId::new(10), full_group(1), ctx), None));
        assert!(
            matches!(sent[..], [(to, ShardMsg::Group(_))] if to == NodeId::new(11)),
            "{sent:?}"
        );
        let mut ctx = Ctx::<ShardMsg, ()>::new(std::time::Duration::ZERO);
        let done = c.on_message(NodeId::new(11), full_group(1), &mut ctx);
        assert_eq!(done, Some((1, KvReply::Error(KvError::DiskFull))));
        assert!(!c.is_busy());

        // The controller cannot write: no configuration to follow.
        let mut c = clerk();
        let _ = sends(|ctx| {
            c.start(get(), ctx);
        });
        let sent = sends(|ctx| assert_eq!(c.on_message(NodeId::new(0), full_ctrl(1), ctx), None));
        assert!(
            matches!(sent[..], [(to, ShardMsg::Ctrl(_))] if to == NodeId::new(1)),
            "{sent:?}"
        );
        let done = c.on_message(NodeId::new(1), full_ctrl(1), &mut ctx);
        assert_eq!(done, Some((1, KvReply::Error(KvError::DiskFull))));
    }
}
