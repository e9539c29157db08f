//! A shard group's replicated state: the configuration it has reached, and every shard it holds
//! with the state of that shard's hand-over.
//!
//! A group moves from configuration `n` to `n + 1` only through its own log (a
//! [`ShardCommand::Config`] entry) and only once every shard is settled, so every replica
//! passes through the same configurations in the same order. Moving on decides, per shard:
//!
//! * still ours: nothing changes, it is served throughout (no stall for shards a change does
//!   not move);
//! * newly ours, from no group (the first configuration): served at once, empty;
//! * newly ours, from group `g`: [`ShardState::Pulling`] until its data (with the clients'
//!   exactly-once records) arrives through the log ([`ShardCommand::Install`]); then served at
//!   once, whatever other shards are still pulling, and [`ShardState::Notify`] until `g` has
//!   been told it may delete its copy ([`ShardCommand::Confirmed`]);
//! * no longer ours: [`ShardState::Handoff`]: frozen (never served again), kept until the new
//!   owner says it has it, then deleted ([`ShardCommand::Delete`]), so storage does not grow
//!   with the number of reconfigurations.
//!
//! Invariants: a shard is served only in `Serving` or `Notify`, only while the configuration
//! assigns it to this group; its data there is exactly what the previous owner froze plus what
//! was applied here since. A frozen shard never changes, so any replica that has applied the
//! configuration that froze it can hand out its data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use flotilla_kv::{Kv, KvCommand, KvReply};
use flotilla_rsm::{
    Applied, ApplyCtx, Check, ClientId, SessionLimits, SessionTable, SnapshotError, StateMachine,
    TableBlob,
};
use flotilla_shardctrler::{Gid, ShardConfig};

/// The shard of `key` among `nshards`: FNV-1a of the key, or of its hash tag, the part between
/// the first `{` and the next `}` when that is not empty (as Redis Cluster does), so keys
/// sharing a tag (`{user:7}.name`, `{user:7}.mail`) always share a shard.
pub fn key_shard(key: &[u8], nshards: usize) -> usize {
    assert!(nshards > 0, "no shards");
    let hashed = hash_tag(key).unwrap_or(key);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in hashed {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % nshards as u64) as usize
}

fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&b| b == b'{')?;
    let len = key[open + 1..].iter().position(|&b| b == b'}')?;
    (len > 0).then(|| &key[open + 1..open + 1 + len])
}

/// Where a shard this group holds stands in its hand-over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardState {
    /// Ours, here, nothing pending: served.
    Serving,
    /// Ours in the current configuration; its data is still with the previous owner.
    Pulling,
    /// Ours and served; the previous owner has not yet confirmed it deleted its copy.
    Notify,
    /// Given away by the current configuration: frozen until the new owner has it.
    Handoff,
}

impl ShardState {
    pub fn serves(self) -> bool {
        matches!(self, ShardState::Serving | ShardState::Notify)
    }
}

/// One shard: its keys and the exactly-once records of the clients that wrote to it. The
/// records travel with the data, so a write retried at the shard's next owner is not applied
/// twice. They expire as the replica's own table does (`flotilla_rsm::SessionTable`: idle
/// longer than the limit by the replicated clock, or least recently active beyond the
/// maximum, per shard), and their watermark travels with them, so a write whose record
/// expired here or at a previous owner is refused, not applied twice.
#[derive(Clone, Debug, Default)]
struct Shard {
    kv: Kv,
    sessions: SessionTable<KvReply>,
}

/// A shard as it travels between groups and sits in snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardBlob {
    #[serde(with = "serde_bytes")]
    kv: Vec<u8>,
    sessions: TableBlob<KvReply>,
}

impl ShardBlob {
    /// Bytes of key/value data it carries.
    pub fn data_len(&self) -> usize {
        self.kv.len()
    }
}

impl Shard {
    fn blob(&self) -> ShardBlob {
        ShardBlob {
            kv: self.kv.snapshot(),
            sessions: self.sessions.blob(),
        }
    }

    fn from_blob(blob: &ShardBlob) -> Result<Shard, SnapshotError> {
        let mut kv = Kv::default();
        kv.restore(&blob.kv)?;
        let sessions = SessionTable::from_blob(&blob.sessions);
        Ok(Shard { kv, sessions })
    }
}

/// What a shard group's log holds: clients' operations, and the group's own steps through
/// reconfigurations (proposed by its leader with [`flotilla_rsm::Replica::propose_own`]; each
/// is ignored when it no longer fits the state, so repeats are harmless).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardCommand {
    /// A client's operation, with the client's exactly-once tag (kept per shard) and its
    /// stamp: a replicated time it cannot be applied before, the same in every copy, 0 if the
    /// clerk had heard no time (`flotilla_rsm::Request::after_ms`).
    Op {
        client: ClientId,
        seq: u64,
        after_ms: u64,
        op: KvCommand,
    },
    /// Move to this configuration: applied only if it is the next one and every shard is
    /// settled.
    Config(ShardConfig),
    /// Shards' data from their previous owner, for configuration `num`.
    Install {
        num: u64,
        shards: BTreeMap<usize, ShardBlob>,
    },
    /// The new owners of these shards (given away by configuration `num`) have them.
    Delete { num: u64, shards: Vec<usize> },
    /// The previous owner of these shards (received in configuration `num`) deleted its copy.
    Confirmed { num: u64, shards: Vec<usize> },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardReply {
    /// The operation's result.
    Kv(KvReply),
    /// The key's shard is not this group's in the configuration it has reached: ask the
    /// controller for a newer one.
    WrongGroup,
    /// The shard is this group's but its data has not arrived yet: retry soon.
    NotReady,
    /// An operation older than the client's latest on this shard (a delayed duplicate).
    Stale,
    /// One of the group's own commands was applied (or found already done).
    Done,
    /// The client's record in this shard expired and the write may have been applied before
    /// it did: not applied now (`flotilla_rsm::RsmError::SessionExpired`).
    Expired,
    /// The write carries no time and the shard forgets records: stamp it and resend.
    Unstamped,
}

/// A shard group's state machine.
#[derive(Clone, Debug)]
pub struct ShardKv {
    gid: Gid,
    /// The configuration reached, and the one before it (whose owners shards come from).
    config: ShardConfig,
    prev: ShardConfig,
    shards: BTreeMap<usize, (ShardState, Shard)>,
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    config: ShardConfig,
    prev: ShardConfig,
    shards: Vec<(usize, ShardState, ShardBlob)>,
}

impl ShardKv {
    /// Group `gid`'s initial state: configuration 0 of `nshards` shards, holding nothing.
    pub fn new(gid: Gid, nshards: usize) -> Self {
        assert_ne!(gid, 0, "gid 0 means \"no group\"");
        ShardKv {
            gid,
            config: ShardConfig::initial(nshards),
            prev: ShardConfig::initial(nshards),
            shards: BTreeMap::new(),
        }
    }

    pub fn gid(&self) -> Gid {
        self.gid
    }

    /// The configuration this group has reached.
    pub fn config(&self) -> &ShardConfig {
        &self.config
    }

    /// The configuration before it: where pulled shards come from.
    pub fn prev(&self) -> &ShardConfig {
        &self.prev
    }

    pub fn nshards(&self) -> usize {
        self.config.shards.len()
    }

    /// Every shard this group holds, with its state.
    pub fn shard_states(&self) -> BTreeMap<usize, ShardState> {
        self.shards.iter().map(|(&s, (st, _))| (s, *st)).collect()
    }

    /// Keys stored per shard held.
    pub fn shard_keys(&self) -> BTreeMap<usize, usize> {
        self.shards
            .iter()
            .map(|(&s, (_, d))| (s, d.kv.len()))
            .collect()
    }

    /// No hand-over pending: the group may move to the next configuration.
    pub fn settled(&self) -> bool {
        self.shards
            .values()
            .all(|(st, _)| *st == ShardState::Serving)
    }

    /// Shards in `state`, by the group that owned them in the previous configuration.
    fn by_prev_owner(&self, state: ShardState) -> BTreeMap<Gid, Vec<usize>> {
        let mut out: BTreeMap<Gid, Vec<usize>> = BTreeMap::new();
        for (&s, (st, _)) in &self.shards {
            if *st == state {
                out.entry(self.prev.shards[s]).or_default().push(s);
            }
        }
        out
    }

    /// Shards waiting for their data, by the group to pull them from.
    pub fn pulls(&self) -> BTreeMap<Gid, Vec<usize>> {
        self.by_prev_owner(ShardState::Pulling)
    }

    /// Shards received whose previous owner has not confirmed deleting its copy, by that owner.
    pub fn notices(&self) -> BTreeMap<Gid, Vec<usize>> {
        self.by_prev_owner(ShardState::Notify)
    }

    /// The data of those of `shards` this group froze on reaching configuration `num` and
    /// still holds; nothing before it reaches `num`.
    pub fn handoff(&self, num: u64, shards: &[usize]) -> BTreeMap<usize, ShardBlob> {
        if self.config.num != num {
            return BTreeMap::new();
        }
        (shards.iter())
            .filter_map(|s| match self.shards.get(s) {
                Some((ShardState::Handoff, d)) => Some((*s, d.blob())),
                _ => None,
            })
            .collect()
    }

    /// Whether none of `shards`, given away by configuration `num`, is still held. A group
    /// leaves configuration `num` only once every shard it gave away is deleted.
    pub fn deleted(&self, num: u64, shards: &[usize]) -> bool {
        match self.config.num.cmp(&num) {
            std::cmp::Ordering::Greater => true,
            std::cmp::Ordering::Less => false,
            std::cmp::Ordering::Equal => shards
                .iter()
                .all(|s| !matches!(self.shards.get(s), Some((ShardState::Handoff, _)))),
        }
    }

    fn op(
        &mut self,
        client: ClientId,
        seq: u64,
        after: u64,
        op: KvCommand,
        at: &ApplyCtx,
    ) -> ShardReply {
        let s = key_shard(op.key(), self.nshards());
        if self.config.shards[s] != self.gid {
            return ShardReply::WrongGroup;
        }
        let shard = match self.shards.get_mut(&s) {
            Some((st, d)) if st.serves() => d,
            // Ours, but the data is still on its way.
            _ => return ShardReply::NotReady,
        };
        if matches!(op, KvCommand::Get { .. }) {
            return ShardReply::Kv(shard.kv.apply(op, at));
        }
        match shard.sessions.check(client, seq, after, at.now_ms) {
            Check::Apply => {}
            Check::Answer(Applied::Fresh(r) | Applied::Duplicate(r)) => return ShardReply::Kv(r),
            Check::Answer(Applied::Stale) => return ShardReply::Stale,
            Check::Answer(Applied::Expired) => return ShardReply::Expired,
            Check::Answer(Applied::Unstamped) => return ShardReply::Unstamped,
        }
        let reply = shard.kv.apply(op, at);
        (shard.sessions).record(client, seq, after, at.now_ms, reply.clone());
        shard.sessions.trim(at.limits);
        ShardReply::Kv(reply)
    }

    /// Removes the records idle too long from every shard served. A shard handed off is
    /// frozen (its new owner may be pulling it) and one still pulling holds nothing.
    fn expire_sessions(&mut self, now_ms: u64, limits: SessionLimits) {
        for (st, shard) in self.shards.values_mut() {
            if st.serves() {
                shard.sessions.expire(now_ms, limits);
            }
        }
    }

    /// Sessions kept in each shard held.
    pub fn shard_sessions(&self) -> BTreeMap<usize, usize> {
        (self.shards.iter())
            .map(|(&s, (_, d))| (s, d.sessions.len()))
            .collect()
    }

    fn reconfigure(&mut self, next: ShardConfig) -> ShardReply {
        if next.num != self.config.num + 1 || next.shards.len() != self.nshards() || !self.settled()
        {
            return ShardReply::NotReady;
        }
        // A configuration that hands a shard we hold to no group (every group left) would
        // leave its data nowhere; the group stays where it is, still serving, rather than
        // lose it. Operators' tools refuse to remove the last group.
        let orphaned = (self.shards.keys()).any(|&s| next.shards[s] == 0);
        if orphaned {
            return ShardReply::NotReady;
        }
        self.prev = std::mem::replace(&mut self.config, next);
        for s in 0..self.nshards() {
            let (was, now) = (self.prev.shards[s], self.config.shards[s]);
            if now == self.gid && was != self.gid {
                let state = if was == 0 {
                    ShardState::Serving
                } else {
                    ShardState::Pulling
                };
                self.shards.insert(s, (state, Shard::default()));
            } else if was == self.gid && now != self.gid {
                if let Some((st, _)) = self.shards.get_mut(&s) {
                    *st = ShardState::Handoff;
                }
            }
        }
        ShardReply::Done
    }

    fn install(&mut self, num: u64, shards: BTreeMap<usize, ShardBlob>) -> ShardReply {
        if num != self.config.num {
            return ShardReply::Done;
        }
        for (s, blob) in shards {
            let Some((st @ ShardState::Pulling, data)) = self.shards.get_mut(&s) else {
                continue;
            };
            // Every replica decodes the same bytes alike, so a blob it cannot read is skipped
            // by all (the shard stays pulling): it can only come from a peer of another build.
            if let Ok(shard) = Shard::from_blob(&blob) {
                *data = shard;
                *st = ShardState::Notify;
            }
        }
        ShardReply::Done
    }

    fn delete(&mut self, num: u64, shards: &[usize]) -> ShardReply {
        if num == self.config.num {
            for s in shards {
                if matches!(self.shards.get(s), Some((ShardState::Handoff, _))) {
                    self.shards.remove(s);
                }
            }
        }
        ShardReply::Done
    }

    fn confirmed(&mut self, num: u64, shards: &[usize]) -> ShardReply {
        if num == self.config.num {
            for s in shards {
                if let Some((st @ ShardState::Notify, _)) = self.shards.get_mut(s) {
                    *st = ShardState::Serving;
                }
            }
        }
        ShardReply::Done
    }
}

impl StateMachine for ShardKv {
    type Command = ShardCommand;
    type Reply = ShardReply;

    /// Exactly-once records live in each shard and move with it.
    const REPLICA_SESSIONS: bool = false;

    fn apply(&mut self, cmd: ShardCommand, at: &ApplyCtx) -> ShardReply {
        self.expire_sessions(at.now_ms, at.limits);
        match cmd {
            ShardCommand::Op {
                client,
                seq,
                after_ms,
                op,
            } => self.op(client, seq, after_ms, op, at),
            ShardCommand::Config(next) => self.reconfigure(next),
            ShardCommand::Install { num, shards } => self.install(num, shards),
            ShardCommand::Delete { num, shards } => self.delete(num, &shards),
            ShardCommand::Confirmed { num, shards } => self.confirmed(num, &shards),
        }
    }

    fn is_read_only(cmd: &ShardCommand) -> bool {
        matches!(
            cmd,
            ShardCommand::Op {
                op: KvCommand::Get { .. },
                ..
            }
        )
    }

    fn validate(cmd: &ShardCommand) -> Result<(), ShardReply> {
        match cmd {
            ShardCommand::Op { op, .. } => {
                op.validate().map_err(|e| ShardReply::Kv(KvReply::Error(e)))
            }
            _ => Ok(()),
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        let snap = Snapshot {
            config: self.config.clone(),
            prev: self.prev.clone(),
            shards: (self.shards.iter())
                .map(|(&s, (st, d))| (s, *st, d.blob()))
                .collect(),
        };
        postcard::to_allocvec(&snap).expect("encoding into a Vec cannot fail")
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        if data.is_empty() {
            *self = ShardKv::new(self.gid, self.nshards());
            return Ok(());
        }
        let snap: Snapshot =
            postcard::from_bytes(data).map_err(|e| SnapshotError(e.to_string()))?;
        let mut shards = BTreeMap::new();
        for (s, st, blob) in snap.shards {
            shards.insert(s, (st, Shard::from_blob(&blob)?));
        }
        self.config = snap.config;
        self.prev = snap.prev;
        self.shards = shards;
        Ok(())
    }
}
