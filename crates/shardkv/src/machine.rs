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
//!   exactly-once records) arrives through the log, in pages ([`ShardCommand::InstallPage`]):
//!   the frozen shard's keys in byte order, then its records in client order, each page
//!   bounded in bytes, so neither a message nor a log entry grows with the shard. The machine
//!   records per pulling shard how far it has installed (a [`PullCursor`]: the last item
//!   received) and applies only the page that starts there, so duplicated, reordered or
//!   stale pages are ignored and a new leader (or a replica restarted from a snapshot taken
//!   mid-pull) resumes from the cursor. Once the last page is applied the shard is served at
//!   once, whatever other shards are still pulling, and [`ShardState::Notify`] until `g` has
//!   been told it may delete its copy ([`ShardCommand::Confirmed`]);
//! * no longer ours: [`ShardState::Handoff`]: frozen (never served again), kept until the new
//!   owner says it has it, then deleted ([`ShardCommand::Delete`]), so storage does not grow
//!   with the number of reconfigurations.
//!
//! What the group promises: a shard is served only in `Serving` or `Notify`, only while the
//! configuration assigns it to this group (`op` refuses the rest); its data there is exactly
//! what the previous owner froze plus what was applied here since.
//!
//! Invariants, kept after every entry applied and every restore (checked by
//! [`StateMachine::check_invariants`] for `ShardKv`, after every simulator step; those marked
//! *full* scan the state and run only at [`CheckDepth::Full`]):
//!
//! 1. `prev` is the configuration right before `config` (numbers `n - 1` and `n`, or both the
//!    initial 0), both of `nshards` shards, and every shard held is one of them.
//! 2. Every shard held fits the two configurations: `Serving` shards are this group's;
//!    `Pulling` and `Notify` shards are this group's and were another group's (not none) in
//!    the previous configuration; `Handoff` shards were this group's and are another's now.
//! 3. Every shard the configuration assigns to this group is held: none is lost between
//!    configurations (the group leaves one only when settled, and a shard leaves it only by
//!    deletion once handed off).
//! 4. A shard has a pull cursor exactly when it is `Pulling`, and its data then is exactly
//!    the frozen shard's items up to the cursor: nothing at `Start`; no record yet at a `Key`
//!    cursor, and (full) no key after it; no record after a `Session` cursor.
//! 5. Only a `Handoff` shard holds frozen data, and its served store is empty; (full) the
//!    frozen data is sorted strictly by key. It never changes, so any replica that has applied
//!    the configuration that froze it can hand out its pages, and a cursor into it names the
//!    same place on all of them.
//! 6. (full) Every key a shard holds is one of that shard's ([`key_shard`]): pages from a
//!    previous owner carry only the shard's keys.
//! 7. Every shard's exactly-once records keep their table's invariants
//!    ([`SessionTable::check_invariants`]).

mod snapshot;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use flotilla_kv::{Kv, KvCommand, KvReply, Slot, Value};
use flotilla_rsm::{
    Applied, ApplyCtx, Check, CheckDepth, ClientId, SessionLimits, SessionTable, SnapshotError,
    SnapshotJob, StateMachine,
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
    /// A frozen (`Handoff`) shard's keys and values in key order, moved out of `kv` (then
    /// empty) when it froze: pages are cut in that order, found by binary search, with no
    /// second copy of the data. Empty for every other shard. Shared: it never changes, so a
    /// snapshot job's view of it is a reference.
    frozen: Arc<Vec<(Vec<u8>, Slot)>>,
}

/// Bytes a client's exactly-once record counts for in a page (its id, sequence number and a
/// write's reply, which is small).
pub const SESSION_RECORD_BYTES: usize = 32;

/// The largest page a group hands out, whatever the asker's setting: far below the
/// transport's frame cap, so a page plus its envelope is always a sendable message.
pub const MAX_PAGE_BYTES: usize = 8 << 20;

/// Where a shard's transfer stands: pages carry the frozen shard's keys in byte order, then
/// its clients' exactly-once records in client order; a cursor names the last item received,
/// and the next page starts right after it. The order of the variants is that of the items.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum PullCursor {
    /// Nothing received yet.
    Start,
    /// Keys up to and including this one.
    Key(#[serde(with = "serde_bytes")] Vec<u8>),
    /// Every key, and the records of clients up to and including this one.
    Session(ClientId),
}

/// One page of a frozen shard: the items right after `from`, at most the asker's page size
/// of them (a single item larger than a page travels alone).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardPage {
    /// Where the page starts (exclusive): the cursor it was asked from.
    pub from: PullCursor,
    kv: Vec<(ByteBuf, ByteBuf)>,
    /// `(client, seq, last_active_ms, reply)`, in client order.
    sessions: Vec<(ClientId, u64, u64, KvReply)>,
    /// The previous owner's watermark for this shard's records ([`SessionTable`]): every
    /// page carries it, so the new owner refuses whatever the old one would have.
    expired_through_ms: Option<u64>,
    /// Nothing follows: once applied, the shard is whole.
    pub last: bool,
}

impl ShardPage {
    /// Bytes it counts for against a page size: keys, values, and
    /// [`SESSION_RECORD_BYTES`] per record.
    pub fn data_len(&self) -> usize {
        let kv: usize = self.kv.iter().map(|(k, v)| k.len() + v.len()).sum();
        kv + self.sessions.len() * SESSION_RECORD_BYTES
    }

    /// Keys and records it carries.
    pub fn items(&self) -> usize {
        self.kv.len() + self.sessions.len()
    }

    /// Where the next page starts; `None` if its items are not strictly in order after
    /// `from` (a page no group of this build cuts; applying it could break the cursor's
    /// meaning, so it is ignored).
    pub fn end(&self) -> Option<PullCursor> {
        let mut at = self.from.clone();
        let items = (self.kv.iter())
            .map(|(k, _)| PullCursor::Key(k.to_vec()))
            .chain(
                self.sessions
                    .iter()
                    .map(|(c, _, _, _)| PullCursor::Session(*c)),
            );
        for item in items {
            if item <= at {
                return None;
            }
            at = item;
        }
        Some(at)
    }
}

impl Shard {
    /// Freezes the shard for hand-over: its data moves into `frozen`, sorted by key.
    fn freeze(&mut self) {
        let mut pairs: Vec<(Vec<u8>, Slot)> = self.kv.drain().collect();
        pairs.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        self.frozen = Arc::new(pairs);
    }

    /// Keys it holds.
    fn len(&self) -> usize {
        self.kv.len() + self.frozen.len()
    }

    /// The page of this frozen shard that starts right after `from`: items in order while
    /// they fit in `max_bytes` (at least one, however large, if any is left).
    fn page(&self, from: &PullCursor, max_bytes: usize) -> ShardPage {
        let fits = |used: usize, more: usize| used == 0 || used + more <= max_bytes;
        let mut page = ShardPage {
            from: from.clone(),
            kv: Vec::new(),
            sessions: Vec::new(),
            expired_through_ms: self.sessions.expired_through_ms(),
            last: false,
        };
        let mut used = 0;
        let first_key = match from {
            PullCursor::Start => 0,
            PullCursor::Key(k) => self.frozen.partition_point(|(x, _)| x <= k),
            PullCursor::Session(_) => self.frozen.len(),
        };
        for (key, slot) in &self.frozen[first_key..] {
            let size = key.len() + slot.record_len() as usize;
            if !fits(used, size) {
                return page;
            }
            used += size;
            page.kv
                .push((ByteBuf::from(key.clone()), ByteBuf::from(slot.to_record())));
        }
        let after = match from {
            PullCursor::Session(c) => Some(*c),
            _ => None,
        };
        for (c, seq, last_active, reply) in self.sessions.records_after(after) {
            if !fits(used, SESSION_RECORD_BYTES) {
                return page;
            }
            used += SESSION_RECORD_BYTES;
            page.sessions.push((c, seq, last_active, reply.clone()));
        }
        page.last = true;
        page
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
    /// The next page of `shard`'s data from its previous owner, for configuration `num`:
    /// applied only if the shard is pulling and the page starts where its installed part
    /// ends.
    InstallPage {
        num: u64,
        shard: usize,
        page: ShardPage,
    },
    /// The new owners of these shards (given away by configuration `num`) have them.
    Delete { num: u64, shards: Vec<usize> },
    /// The previous owner of these shards (received in configuration `num`) deleted its copy.
    Confirmed { num: u64, shards: Vec<usize> },
    /// Removes keys past their expiry from the shards served (a bounded number from each):
    /// the leader's housekeeping ([`flotilla_rsm::StateMachine::housekeeping`]).
    SweepExpired,
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
    /// Per `Pulling` shard: how far its pages have been installed.
    pulled: BTreeMap<usize, PullCursor>,
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
            pulled: BTreeMap::new(),
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
            .map(|(&s, (_, d))| (s, d.len()))
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

    /// Each pulling shard with the group to pull it from and where its next page starts.
    pub fn pull_cursors(&self) -> BTreeMap<usize, (Gid, PullCursor)> {
        (self.pulled.iter())
            .map(|(&s, at)| (s, (self.prev.shards[s], at.clone())))
            .collect()
    }

    /// Shards received whose previous owner has not confirmed deleting its copy, by that owner.
    pub fn notices(&self) -> BTreeMap<Gid, Vec<usize>> {
        self.by_prev_owner(ShardState::Notify)
    }

    /// The page of `shard` starting right after `from`, at most `max_bytes` of items (capped
    /// at [`MAX_PAGE_BYTES`]; one item alone if larger), if this group froze the shard on
    /// reaching configuration `num` and still holds it; `None` before it reaches `num` and
    /// after it deleted the shard.
    pub fn handoff_page(
        &self,
        num: u64,
        shard: usize,
        from: &PullCursor,
        max_bytes: usize,
    ) -> Option<ShardPage> {
        if self.config.num != num {
            return None;
        }
        match self.shards.get(&shard) {
            Some((ShardState::Handoff, d)) => Some(d.page(from, max_bytes.min(MAX_PAGE_BYTES))),
            _ => None,
        }
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
        // A command on many keys runs on one shard's store: the router sends only those whose
        // keys share a shard (Redis Cluster's rule, with its words).
        if (op.keys()).any(|k| key_shard(k, self.nshards()) != s) {
            let crossslot = "CROSSSLOT Keys in request don't hash to the same slot";
            return ShardReply::Kv(KvReply::Redis(flotilla_resp::Value::error(crossslot)));
        }
        let shard = match self.shards.get_mut(&s) {
            Some((st, d)) if st.serves() => d,
            // Ours, but the data is still on its way.
            _ => return ShardReply::NotReady,
        };
        if op.is_read_only() {
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
                    self.pulled.insert(s, PullCursor::Start);
                    ShardState::Pulling
                };
                self.shards.insert(s, (state, Shard::default()));
            } else if was == self.gid && now != self.gid {
                if let Some((st, d)) = self.shards.get_mut(&s) {
                    *st = ShardState::Handoff;
                    d.freeze();
                }
            }
        }
        ShardReply::Done
    }

    /// Installs `page` if it is the next one of pulling `shard`; a page from another
    /// configuration, for a shard not pulling, or starting elsewhere than the installed part
    /// ends (a duplicate, one overtaken by another leader's, or one out of order) is ignored.
    fn install_page(&mut self, num: u64, shard: usize, page: ShardPage) -> ShardReply {
        if num != self.config.num || self.pulled.get(&shard) != Some(&page.from) {
            return ShardReply::Done;
        }
        // Every replica judges the same bytes alike, so a page out of order within itself is
        // ignored by all (the pull stays where it is): no group of this build cuts one.
        let Some(end) = page.end() else {
            return ShardReply::Done;
        };
        let Some((st @ ShardState::Pulling, data)) = self.shards.get_mut(&shard) else {
            return ShardReply::Done;
        };
        // A record that does not decode is skipped by every replica alike (the same bytes):
        // no group of this build sends one.
        for (key, record) in page.kv {
            if let Some(slot) = Slot::from_record(Value::from(record.into_vec())) {
                data.kv.insert_slot(key.into_vec(), slot);
            }
        }
        data.sessions.raise_watermark(page.expired_through_ms);
        for record in page.sessions {
            data.sessions.receive(record, page.expired_through_ms);
        }
        if page.last {
            *st = ShardState::Notify;
            self.pulled.remove(&shard);
        } else {
            self.pulled.insert(shard, end);
        }
        ShardReply::Done
    }

    /// Checks the invariants in the module docs (full ones only at [`CheckDepth::Full`]);
    /// panics with a sentence naming the group and the invariant. Quick: O(shards).
    fn check(&self, depth: CheckDepth) {
        let gid = self.gid;
        let (n, full) = (self.nshards(), depth == CheckDepth::Full);
        assert!(
            self.prev.num == self.config.num.saturating_sub(1) && self.prev.shards.len() == n,
            "group {gid}, invariant 1: configuration {} of {n} shards follows {} of {}",
            self.config.num,
            self.prev.num,
            self.prev.shards.len()
        );
        if let Some((&s, _)) = self.shards.last_key_value() {
            assert!(s < n, "group {gid}, invariant 1: holds shard {s} of {n}");
        }
        for (s, &owner) in self.config.shards.iter().enumerate() {
            assert!(
                owner != gid || self.shards.contains_key(&s),
                "group {gid}, invariant 3: shard {s} is ours in configuration {} but not held",
                self.config.num
            );
        }
        for (&s, (st, d)) in &self.shards {
            let (was, now) = (self.prev.shards[s], self.config.shards[s]);
            let fits = match st {
                ShardState::Serving => now == gid,
                ShardState::Pulling | ShardState::Notify => now == gid && was != gid && was != 0,
                ShardState::Handoff => was == gid && now != gid,
            };
            assert!(
                fits,
                "group {gid}, invariant 2: shard {s} is {st:?} in configuration {} (owner \
                 {now}, was {was})",
                self.config.num
            );
            assert_eq!(
                *st == ShardState::Pulling,
                self.pulled.contains_key(&s),
                "group {gid}, invariant 4: shard {s} is {st:?} with pull cursor {:?}",
                self.pulled.get(&s)
            );
            if let Some(at) = self.pulled.get(&s) {
                let within = match at {
                    PullCursor::Start => d.kv.is_empty() && d.sessions.is_empty(),
                    PullCursor::Key(k) => {
                        d.sessions.is_empty() && (!full || d.kv.iter().all(|(x, _)| x <= &k[..]))
                    }
                    PullCursor::Session(c) => d.sessions.clients().next_back() <= Some(*c),
                };
                assert!(
                    within,
                    "group {gid}, invariant 4: pulling shard {s} holds items past its cursor \
                     {at:?}"
                );
            }
            let frozen = *st == ShardState::Handoff;
            assert!(
                (frozen || d.frozen.is_empty()) && (!frozen || d.kv.is_empty()),
                "group {gid}, invariant 5: {st:?} shard {s} holds {} keys frozen, {} not",
                d.frozen.len(),
                d.kv.len()
            );
            if full {
                assert!(
                    d.frozen.windows(2).all(|w| w[0].0 < w[1].0),
                    "group {gid}, invariant 5: shard {s}'s frozen keys are out of order"
                );
                let keys =
                    (d.kv.iter().map(|(k, _)| k)).chain(d.frozen.iter().map(|(k, _)| &k[..]));
                for k in keys {
                    assert!(
                        key_shard(k, n) == s,
                        "group {gid}, invariant 6: shard {s} holds key {:?} of shard {}",
                        String::from_utf8_lossy(k),
                        key_shard(k, n)
                    );
                }
            }
            d.sessions.check_invariants(depth);
        }
        for s in self.pulled.keys() {
            assert!(
                self.shards.contains_key(s),
                "group {gid}, invariant 4: pull cursor for shard {s}, which it does not hold"
            );
        }
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

    fn expired_through_ms(&self) -> Option<u64> {
        (self.shards.values())
            .filter_map(|(_, d)| d.sessions.expired_through_ms())
            .max()
    }

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
            ShardCommand::InstallPage { num, shard, page } => self.install_page(num, shard, page),
            ShardCommand::Delete { num, shards } => self.delete(num, &shards),
            ShardCommand::Confirmed { num, shards } => self.confirmed(num, &shards),
            ShardCommand::SweepExpired => {
                for (st, d) in self.shards.values_mut() {
                    if st.serves() {
                        d.kv.apply(KvCommand::SweepExpired, at);
                    }
                }
                ShardReply::Done
            }
        }
    }

    /// As the KV store's: a Redis read, or a lab Get while some shard has keys with an
    /// expiry (O(shards)).
    fn read_waits_for_proposals(&self, cmd: &ShardCommand) -> bool {
        match cmd {
            ShardCommand::Op {
                op: KvCommand::Get { .. },
                ..
            } => (self.shards.values()).any(|(_, d)| d.kv.expiring() > 0),
            _ => true,
        }
    }

    /// Expired keys wait in a served shard: sweep them (O(shards)).
    fn housekeeping(&self, now_ms: u64) -> Option<ShardCommand> {
        (self.shards.values())
            .any(|(st, d)| st.serves() && d.kv.has_expired(now_ms))
            .then_some(ShardCommand::SweepExpired)
    }

    fn is_read_only(cmd: &ShardCommand) -> bool {
        matches!(cmd, ShardCommand::Op { op, .. } if op.is_read_only())
    }

    fn validate(cmd: &ShardCommand) -> Result<(), ShardReply> {
        match cmd {
            ShardCommand::Op { op, .. } => {
                op.validate().map_err(|e| ShardReply::Kv(KvReply::Error(e)))
            }
            _ => Ok(()),
        }
    }

    /// Streamed ([`snapshot`]'s layout), through the same view a snapshot job takes.
    fn snapshot(&self) -> Vec<u8> {
        flotilla_rsm::snapshot_to_vec(self)
    }

    fn snapshot_into(&self, out: &mut dyn Write) -> io::Result<()> {
        self.snapshot_job()(out)
    }

    fn snapshot_size_hint(&self) -> u64 {
        snapshot::encoded_len(self)
    }

    /// A view of every shard: each live store's own view (its keys cloned, its values
    /// referenced), each frozen shard's data referenced, the exactly-once records and the
    /// configurations cloned; encoded when the job runs.
    fn snapshot_job(&self) -> SnapshotJob {
        let view = snapshot::View::of(self);
        Box::new(move |out: &mut dyn Write| view.write(out))
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.restore_from(&mut &data[..])
    }

    fn restore_from(&mut self, r: &mut dyn Read) -> Result<(), SnapshotError> {
        snapshot::restore(self, r)
    }

    fn check_invariants(&self, depth: CheckDepth) {
        self.check(depth);
    }
}

/// Each invariant of [`ShardKv`] broken on purpose, in a state that kept them all: group 1
/// served shards 0..4 (with a key and a client's record in each) until configuration 2 gave
/// shard 2 to group 2, which is pulling it.
#[cfg(test)]
mod invariant_tests {
    use super::*;

    const N: usize = 4;

    fn config(num: u64, shards: [Gid; N]) -> ShardConfig {
        let groups = (shards.iter().filter(|&&g| g != 0))
            .map(|&g| (g, vec![format!("server-{g}-0")]))
            .collect();
        ShardConfig {
            num,
            shards: shards.to_vec(),
            groups,
        }
    }

    /// A key of shard `s`.
    fn key_of(s: usize, nth: usize) -> Vec<u8> {
        (0..)
            .map(|i| format!("k{i}").into_bytes())
            .filter(|k| key_shard(k, N) == s)
            .nth(nth)
            .unwrap()
    }

    /// Groups 1 (shard 2 in hand-off) and 2 (pulling it, nothing received).
    fn groups() -> (ShardKv, ShardKv) {
        let at = ApplyCtx::zero();
        let (mut a, mut b) = (ShardKv::new(1, N), ShardKv::new(2, N));
        a.apply(ShardCommand::Config(config(1, [1; N])), &at);
        b.apply(ShardCommand::Config(config(1, [1; N])), &at);
        for s in 0..N {
            let op = KvCommand::Put {
                key: key_of(s, 0),
                value: Value::from_static(b"v"),
            };
            let seq = s as u64 + 1;
            a.apply(
                ShardCommand::Op {
                    client: 7,
                    seq,
                    after_ms: 1,
                    op,
                },
                &at,
            );
        }
        a.apply(ShardCommand::Config(config(2, [1, 1, 2, 1])), &at);
        b.apply(ShardCommand::Config(config(2, [1, 1, 2, 1])), &at);
        assert_eq!(a.shards[&2].0, ShardState::Handoff);
        assert_eq!(b.shards[&2].0, ShardState::Pulling);
        for m in [&a, &b] {
            m.check_invariants(CheckDepth::Full);
        }
        (a, b)
    }

    fn shard(m: &mut ShardKv, s: usize) -> &mut (ShardState, Shard) {
        m.shards.get_mut(&s).unwrap()
    }

    #[test]
    #[should_panic(expected = "group 1, invariant 1")]
    fn invariant_1_prev_is_the_configuration_before() {
        let (mut a, _) = groups();
        a.prev = a.config.clone();
        a.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "group 1, invariant 2")]
    fn invariant_2_states_fit_the_configurations() {
        let (mut a, _) = groups();
        // Shard 0 came from no group in configuration 1: nobody to notify.
        a.prev = config(1, [0, 1, 1, 1]);
        shard(&mut a, 0).0 = ShardState::Notify;
        a.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "group 1, invariant 3")]
    fn invariant_3_no_shard_of_ours_is_lost() {
        let (mut a, _) = groups();
        a.shards.remove(&3);
        a.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "group 2, invariant 4: shard 2 is Pulling with pull cursor None")]
    fn invariant_4_a_pulling_shard_has_a_cursor() {
        let (_, mut b) = groups();
        b.pulled.clear();
        b.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "group 2, invariant 4: pulling shard 2 holds items past")]
    fn invariant_4_a_pulling_shard_holds_nothing_past_its_cursor() {
        let (_, mut b) = groups();
        let (k0, k1) = (key_of(2, 0), key_of(2, 1));
        let (low, high) = if k0 < k1 { (k0, k1) } else { (k1, k0) };
        b.pulled.insert(2, PullCursor::Key(low));
        let put = KvCommand::Put {
            key: high,
            value: Value::from_static(b"v"),
        };
        shard(&mut b, 2).1.kv.apply(put, &ApplyCtx::zero());
        // A key past the cursor takes a scan to see.
        b.check_invariants(CheckDepth::Quick);
        b.check_invariants(CheckDepth::Full);
    }

    #[test]
    #[should_panic(expected = "group 1, invariant 5: Handoff shard 2 holds 1 keys frozen, 1 not")]
    fn invariant_5_a_frozen_shard_serves_nothing() {
        let (mut a, _) = groups();
        let put = KvCommand::Put {
            key: key_of(2, 1),
            value: Value::from_static(b"w"),
        };
        shard(&mut a, 2).1.kv.apply(put, &ApplyCtx::zero());
        a.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "group 1, invariant 5: shard 2's frozen keys are out of order")]
    fn invariant_5_frozen_keys_are_sorted() {
        let (mut a, _) = groups();
        let (k0, k1) = (key_of(2, 0), key_of(2, 1));
        let (low, high) = if k0 < k1 { (k0, k1) } else { (k1, k0) };
        let v = Slot::string(Value::from_static(b"v"), 0, 1);
        shard(&mut a, 2).1.frozen = Arc::new(vec![(high, v.clone()), (low, v)]);
        a.check_invariants(CheckDepth::Quick);
        a.check_invariants(CheckDepth::Full);
    }

    #[test]
    #[should_panic(expected = "group 1, invariant 6: shard 0 holds key")]
    fn invariant_6_keys_are_in_their_shard() {
        let (mut a, _) = groups();
        let put = KvCommand::Put {
            key: key_of(1, 1),
            value: Value::from_static(b"v"),
        };
        shard(&mut a, 0).1.kv.apply(put, &ApplyCtx::zero());
        a.check_invariants(CheckDepth::Quick);
        a.check_invariants(CheckDepth::Full);
    }

    #[test]
    #[should_panic(expected = "session table, invariant 1")]
    fn invariant_7_each_shards_records_are_checked() {
        let (mut a, _) = groups();
        shard(&mut a, 1).1.sessions.forget_activity(7);
        a.check_invariants(CheckDepth::Quick);
    }
}
