//! The exactly-once table and the replicated state it guards, with sessions that expire
//! (Raft thesis §6.3).
//!
//! # Time in the log
//! Every entry a replica proposes for a client (or for itself) carries the leader's wall
//! clock ([`flotilla_node::Ctx::wall_clock`]: milliseconds since the UNIX epoch in
//! deployment, the shared virtual time in the simulator) and the leader's session limits
//! ([`SessionLimits`]); see [`crate::replica`]'s `Entry`. Applying an entry moves the
//! *replicated clock* to `max(replicated clock, entry's stamp)`: it never goes back, even
//! when a leader's clock is behind its predecessor's, and every replica (and every snapshot,
//! which carries it) agrees on "now" at every index. The machine sees it in [`ApplyCtx`].
//! Nothing about safety rests on the clocks being right: they only decide *when* a session
//! is forgotten, and forgetting one is always detected (below). A clock that jumps forward
//! on a leader expires sessions early (their clients get [`crate::RsmError::SessionExpired`],
//! never a second application); one that jumps back delays expiry until the replicated clock
//! passes its old value. The limits travel with the stamp so that replicas configured
//! differently still expire the same sessions at the same index.
//!
//! # Expiry
//! Before applying an entry, the table drops every session whose last activity is more than
//! `idle_ms` before the replicated clock, then (after the entry) the least recently active
//! ones while more than `max_sessions` remain. An index ordered by last activity
//! (`by_activity`) makes each step O(log n) per removed session, not a scan of the table.
//!
//! # Telling a new client from a forgotten one
//! Clerks choose their ids, so a request from a client with no session is either a new
//! client's (apply it) or a forgotten one's retry (it may have been applied already: refuse
//! it). The thesis has clients register first (RegisterClient, a log entry per session).
//! Flotilla instead has each request carry a lower bound of the time it can be applied at,
//! `after_ms`, and remembers one watermark:
//!
//! * a clerk stamps an operation, once, when it starts it, with the highest replicated clock
//!   any replica has told it (every response carries the answering replica's clock); every
//!   copy of the operation carries the same stamp;
//! * a session's last activity is `max(its previous, replicated clock, request's after_ms)`
//!   at every write of its client, so it is never below the stamp of any operation applied
//!   for it;
//! * `expired_through_ms` is the highest last activity of any session ever removed (`None`:
//!   none was).
//!
//! A request with no session is applied iff nothing was ever removed, or its stamp is above
//! the watermark. Soundness: if the operation had been applied before and its session then
//! removed, that session's last activity was at least the stamp, so the watermark is too, and
//! the request is refused ("session expired": the clerk cannot know whether an earlier copy
//! was applied, and says so). A clerk that has heard from the group recently stamps above the
//! watermark (idle expiry removes only sessions idle for `idle_ms`), so a live client is not
//! refused; a client whose session was really forgotten is. A stamp of 0 means "heard no time
//! yet": such a write is never applied ([`Applied::Unstamped`]; the replica answers it before
//! proposing, with its clock, and the clerk restamps it). A clerk that has heard nothing for a
//! while (`ClerkConfig::stamp_fresh_ms`, a minute) starts its next operation unstamped too,
//! so that a client idle past the limit whose session expired with no operation outstanding
//! gets a fresh stamp (one extra round trip) instead of a needless "session expired". Unlike
//! registration this costs no log entry per client, and the same rule works for records
//! kept per shard and moved between groups (a shard carries its own watermark), where a
//! group-local registration index would mean nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::machine::{ApplyCtx, CheckDepth, SnapshotError, SnapshotJob, StateMachine};
use crate::msg::{ClientId, Request};

/// The client id of a replica's own commands ([`crate::Replica::propose_own`], housekeeping).
pub(crate) const OWN_CLIENT: ClientId = 0;
use crate::stream::Decoder;

/// How long a session lives without activity, and how many the table keeps. The leader's
/// values are stamped into each entry, so every replica applies the same ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionLimits {
    /// A session idle (no write of its client applied) for longer than this, by the
    /// replicated clock, is removed. Default one hour: far longer than any clerk retries one
    /// operation (a router gives up on a command after seconds, a clerk retries every
    /// 200 ms), so only clients that went away, or stayed silent that long, lose theirs.
    pub idle_ms: u64,
    /// Most sessions kept; the least recently active go first. Default 100 000: a
    /// session costs its last reply (tens of bytes for most commands), so the table stays
    /// within a few MiB of snapshot, while far above the clients one deployment keeps at
    /// once (each router connection has one clerk).
    pub max_sessions: u64,
}

impl SessionLimits {
    /// Never expire anything (the single-node lab server).
    pub const UNBOUNDED: SessionLimits = SessionLimits {
        idle_ms: u64::MAX,
        max_sessions: u64::MAX,
    };
}

impl Default for SessionLimits {
    fn default() -> Self {
        SessionLimits {
            idle_ms: 60 * 60 * 1000,
            max_sessions: 100_000,
        }
    }
}

/// The last answered operation of one client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Session<R> {
    seq: u64,
    reply: R,
    /// Replicated time of the client's last write (at least its stamp): see the module doc.
    last_active_ms: u64,
}

/// What applying a request did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied<R> {
    /// Applied now (or a read executed now); here is its reply.
    Fresh(R),
    /// Already applied earlier: the remembered reply, and no second effect.
    Duplicate(R),
    /// Older than the client's latest operation: the client no longer waits for it.
    Stale,
    /// The client has no session and sessions were removed since its stamp: it may have been
    /// applied before its session expired. Not applied now.
    Expired,
    /// A write that carries no time (`after_ms` 0) and is not a duplicate: never applied;
    /// the client must stamp it and resend.
    Unstamped,
}

impl<R> Applied<R> {
    pub fn reply(self) -> Option<R> {
        match self {
            Applied::Fresh(r) | Applied::Duplicate(r) => Some(r),
            Applied::Stale | Applied::Expired | Applied::Unstamped => None,
        }
    }
}

/// What a [`SessionTable`] says of a write before it is applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check<R> {
    /// Apply it, then [`SessionTable::record`] its reply.
    Apply,
    /// Not to be applied: the answer (never `Fresh`).
    Answer(Applied<R>),
}

/// An exactly-once table whose sessions expire: one per service in [`Sessions`], one per
/// shard in a shard group (the records move with the shard). Deterministic: every method is
/// a function of the table and its arguments, and the table encodes the same everywhere.
///
/// Invariants ([`SessionTable::check_invariants`]):
/// 1. `by_activity` holds exactly `(last_active_ms, client)` of every session: expiry and
///    trimming find the least recently active there, so a session missing from it would
///    never expire, and an extra entry would remove a session on behalf of another's
///    activity.
///
/// Also kept, though no single state shows it: `expired_through_ms` is at least the last
/// activity of every session ever removed (it only grows, by `max`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionTable<R> {
    /// BTreeMap, not HashMap: snapshots must encode the same on every replica and every run.
    table: BTreeMap<ClientId, Session<R>>,
    /// The sessions by last activity, oldest first: what expiry removes.
    by_activity: BTreeSet<(u64, ClientId)>,
    /// The watermark (module doc): `None` until a session is removed.
    expired_through_ms: Option<u64>,
}

impl<R> Default for SessionTable<R> {
    fn default() -> Self {
        SessionTable {
            table: BTreeMap::new(),
            by_activity: BTreeSet::new(),
            expired_through_ms: None,
        }
    }
}

/// A [`SessionTable`] as it sits in snapshots and travels with shards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableBlob<R> {
    /// `(client, seq, last_active_ms, reply)`, by client.
    sessions: Vec<(ClientId, u64, u64, R)>,
    expired_through_ms: Option<u64>,
}

impl<R: Clone> SessionTable<R> {
    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// The highest last activity of any session removed (`None`: none was).
    pub fn expired_through_ms(&self) -> Option<u64> {
        self.expired_through_ms
    }

    /// The remembered reply if `(client, seq)` was the client's last write.
    pub fn answered(&self, client: ClientId, seq: u64) -> Option<&R> {
        (self.table.get(&client))
            .filter(|s| s.seq == seq)
            .map(|s| &s.reply)
    }

    /// Decides a write `(client, seq)` stamped `after_ms`, applied at replicated time
    /// `now_ms`: apply it, or answer it from the table (a duplicate, stale, or from a client
    /// whose session may have expired after applying it: the module doc). A duplicate counts
    /// as activity.
    ///
    /// A write stamped 0 is never applied ([`Applied::Unstamped`]), session or not: so a
    /// clerk may always replace a stamp of 0 by a time it heard later.
    pub fn check(&mut self, client: ClientId, seq: u64, after_ms: u64, now_ms: u64) -> Check<R> {
        match self.table.get_mut(&client) {
            Some(s) if seq < s.seq => return Check::Answer(Applied::Stale),
            Some(s) if seq == s.seq => {
                let last = s.last_active_ms.max(now_ms).max(after_ms);
                let reply = s.reply.clone();
                let old = std::mem::replace(&mut s.last_active_ms, last);
                self.by_activity.remove(&(old, client));
                self.by_activity.insert((last, client));
                return Check::Answer(Applied::Duplicate(reply));
            }
            _ if after_ms == 0 => return Check::Answer(Applied::Unstamped),
            Some(_) => return Check::Apply,
            None => {}
        }
        match self.expired_through_ms {
            Some(t) if after_ms <= t => Check::Answer(Applied::Expired),
            _ => Check::Apply,
        }
    }

    /// Records the reply to `(client, seq)`, just applied at `now_ms` with stamp `after_ms`.
    pub fn record(&mut self, client: ClientId, seq: u64, after_ms: u64, now_ms: u64, reply: R) {
        let mut last = now_ms.max(after_ms);
        if let Some(old) = self.table.get(&client) {
            last = last.max(old.last_active_ms);
            self.by_activity.remove(&(old.last_active_ms, client));
        }
        let s = Session {
            seq,
            reply,
            last_active_ms: last,
        };
        self.table.insert(client, s);
        self.by_activity.insert((last, client));
    }

    /// Removes the sessions idle for longer than `limits.idle_ms` at `now_ms`.
    pub fn expire(&mut self, now_ms: u64, limits: SessionLimits) {
        while let Some(&(last, client)) = self.by_activity.first() {
            if last.saturating_add(limits.idle_ms) >= now_ms {
                break;
            }
            self.remove(last, client);
        }
    }

    /// Removes the least recently active sessions while more than `limits.max_sessions`
    /// remain.
    pub fn trim(&mut self, limits: SessionLimits) {
        let max = usize::try_from(limits.max_sessions).unwrap_or(usize::MAX);
        while self.table.len() > max {
            let Some(&(last, client)) = self.by_activity.first() else {
                break;
            };
            self.remove(last, client);
        }
    }

    fn remove(&mut self, last: u64, client: ClientId) {
        self.by_activity.remove(&(last, client));
        self.table.remove(&client);
        self.expired_through_ms = Some(self.expired_through_ms.map_or(last, |t| t.max(last)));
    }

    /// The sessions of clients after `after` (all if `None`), in client order, as
    /// `(client, seq, last_active_ms, reply)`: a shard's records travel in pages cut in this
    /// order.
    pub fn records_after(
        &self,
        after: Option<ClientId>,
    ) -> impl Iterator<Item = (ClientId, u64, u64, &R)> + '_ {
        let from = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        (self.table.range((from, std::ops::Bound::Unbounded)))
            .map(|(&c, s)| (c, s.seq, s.last_active_ms, &s.reply))
    }

    /// Adds a record received with a shard (from [`SessionTable::records_after`] at its
    /// previous owner), replacing any record of that client, and raises the watermark to the
    /// previous owner's, `expired_through_ms`: a retry its table refused must be refused here
    /// too.
    pub fn receive(
        &mut self,
        (client, seq, last_active_ms, reply): (ClientId, u64, u64, R),
        expired_through_ms: Option<u64>,
    ) {
        if let Some(old) = self.table.remove(&client) {
            self.by_activity.remove(&(old.last_active_ms, client));
        }
        self.table.insert(
            client,
            Session {
                seq,
                reply,
                last_active_ms,
            },
        );
        self.by_activity.insert((last_active_ms, client));
        self.raise_watermark(expired_through_ms);
    }

    /// Raises the watermark to `expired_through_ms` (a shard's previous owner's).
    pub fn raise_watermark(&mut self, expired_through_ms: Option<u64>) {
        self.expired_through_ms = self.expired_through_ms.max(expired_through_ms);
    }

    /// The client ids of every session, in order.
    pub fn clients(&self) -> impl DoubleEndedIterator<Item = ClientId> + '_ {
        self.table.keys().copied()
    }

    /// Checks the invariants in the type's doc; panics with a sentence naming the broken
    /// one. Quick: the two indexes' sizes; full: their entries.
    pub fn check_invariants(&self, depth: CheckDepth) {
        assert_eq!(
            self.by_activity.len(),
            self.table.len(),
            "session table, invariant 1: {} sessions but {} in the activity index",
            self.table.len(),
            self.by_activity.len()
        );
        if depth == CheckDepth::Full {
            for (&client, s) in &self.table {
                assert!(
                    self.by_activity.contains(&(s.last_active_ms, client)),
                    "session table, invariant 1: client {client}'s session (last active {}) \
                     is not in the activity index",
                    s.last_active_ms
                );
            }
        }
    }

    /// Test-only: sets the last activity of `client`'s session without updating the
    /// activity index (breaking invariant 1).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn corrupt_activity(&mut self, client: ClientId, last_active_ms: u64) {
        if let Some(s) = self.table.get_mut(&client) {
            s.last_active_ms = last_active_ms;
        }
    }

    /// Test-only: drops `client`'s entry from the activity index (breaking invariant 1).
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn forget_activity(&mut self, client: ClientId) {
        self.by_activity.retain(|&(_, c)| c != client);
    }

    /// The table, for a snapshot or a shard's transfer.
    pub fn blob(&self) -> TableBlob<R> {
        TableBlob {
            sessions: (self.table.iter())
                .map(|(&c, s)| (c, s.seq, s.last_active_ms, s.reply.clone()))
                .collect(),
            expired_through_ms: self.expired_through_ms,
        }
    }

    /// The table a [`SessionTable::blob`] encoded.
    pub fn from_blob(blob: &TableBlob<R>) -> Self {
        let mut t = SessionTable {
            expired_through_ms: blob.expired_through_ms,
            ..SessionTable::default()
        };
        for (c, seq, last, reply) in &blob.sessions {
            t.by_activity.insert((*last, *c));
            let s = Session {
                seq: *seq,
                reply: reply.clone(),
                last_active_ms: *last,
            };
            // A blob naming a client twice (damaged or foreign: `blob` never writes one):
            // the last record wins, in both indexes (invariant 1).
            if let Some(old) = t.table.insert(*c, s) {
                if old.last_active_ms != *last {
                    t.by_activity.remove(&(old.last_active_ms, *c));
                }
            }
        }
        t
    }
}

/// A [`StateMachine`] together with its exactly-once table and the replicated clock. All
/// three are replicated state: they change only by [`Sessions::apply`] in log order, and all
/// go into the snapshot.
///
/// Invariants ([`Sessions::check_invariants`]):
/// 1. A machine that keeps its own exactly-once records ([`StateMachine::REPLICA_SESSIONS`]
///    false) leaves this table empty; otherwise the table holds at most the `max_sessions`
///    of the last write recorded since this state was created or restored (every record is
///    followed by a trim, so the table, and the snapshot, stay bounded).
/// 2. The table keeps its own invariants ([`SessionTable`]), and the machine its own
///    ([`StateMachine::check_invariants`]).
///
/// Also kept, though no single state shows them: for every client with a session, the table
/// holds the highest `seq` applied for it and the reply to exactly that operation (a clerk
/// has one outstanding operation at a time and its `seq` only grows, so that one reply is all
/// a retry can ever ask for); `clock_ms` never decreases (it moves by `max`).
#[derive(Debug)]
pub struct Sessions<S: StateMachine> {
    machine: S,
    table: SessionTable<S::Reply>,
    /// The replicated clock: the highest stamp applied, in ms.
    clock_ms: u64,
    /// The `max_sessions` the table was last trimmed to (invariant 1); `None` before the
    /// first write recorded since this state was created or restored. Not replicated state:
    /// only what this process has seen, for the check.
    trimmed_to: Option<u64>,
}

/// Snapshot layout: clock, table, then the machine's own bytes.
#[derive(Serialize, Deserialize)]
struct SnapshotHeader<R> {
    clock_ms: u64,
    table: TableBlob<R>,
}

/// 2: sessions carry their last activity, and the snapshot the clock and watermark.
/// 3: the machine's bytes follow the header to the end, unframed, so they are encoded
/// straight into the snapshot's buffer ([`StateMachine::snapshot_into`]), not copied in.
const SNAPSHOT_VERSION: u8 = 3;

/// The stamp of one entry: the leader's clock and limits, and the entry's index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub time_ms: u64,
    pub limits: SessionLimits,
    pub index: u64,
}

impl<S: StateMachine> Sessions<S> {
    pub fn new(machine: S) -> Self {
        Sessions {
            machine,
            table: SessionTable::default(),
            clock_ms: 0,
            trimmed_to: None,
        }
    }

    /// Checks the invariants in the type's doc, the table's and the machine's; panics with a
    /// sentence naming the broken one.
    pub fn check_invariants(&self, depth: CheckDepth) {
        if !S::REPLICA_SESSIONS {
            assert!(
                self.table.is_empty(),
                "sessions, invariant 1: {} sessions in the replica's table of a machine that \
                 keeps its own records",
                self.table.len()
            );
        } else if let Some(max) = self.trimmed_to {
            assert!(
                self.table.len() as u64 <= max,
                "sessions, invariant 1: {} sessions, more than the {max} the last write \
                 trimmed to",
                self.table.len()
            );
        }
        self.table.check_invariants(depth);
        self.machine.check_invariants(depth);
    }

    /// Test-only: the table, to break its invariants on purpose.
    #[cfg(test)]
    pub(crate) fn table_mut(&mut self) -> &mut SessionTable<S::Reply> {
        &mut self.table
    }

    pub fn machine(&self) -> &S {
        &self.machine
    }

    /// Number of clients with a remembered reply.
    pub fn clients(&self) -> usize {
        self.table.len()
    }

    /// The replicated clock (ms): the highest stamp applied.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// The time replicas tell clerks in every answer, which a clerk stamps its next
    /// operations with: the replicated clock, raised above every watermark (this table's and
    /// the machine's own tables'). A stamp equal to a watermark would be refused as possibly
    /// expired, so a new client restamped with the bare clock, in the same millisecond as an
    /// eviction, would be told "session expired" for a command never applied. Any stamp is
    /// sound (the module doc's argument needs only that every copy of an operation carries the
    /// same one); a stamp just above the clock only delays its session's expiry by as much.
    pub fn stamp_hint_ms(&self) -> u64 {
        let watermark = (self.table.expired_through_ms()).max(self.machine.expired_through_ms());
        watermark.map_or(self.clock_ms, |w| self.clock_ms.max(w.saturating_add(1)))
    }

    /// The highest last activity of any session removed (`None`: none was).
    pub fn expired_through_ms(&self) -> Option<u64> {
        self.table.expired_through_ms()
    }

    /// The remembered reply if `(client, seq)` was already applied, for answering a retry
    /// without a second trip through the log.
    pub fn answered(&self, client: ClientId, seq: u64) -> Option<&S::Reply> {
        self.table.answered(client, seq)
    }

    /// Applies `req`, stamped as `stamp`, at most once: moves the clock (never back),
    /// removes the sessions idle for too long, applies, then trims the table to its maximum.
    pub fn apply(&mut self, req: Request<S::Command>, stamp: Stamp) -> Applied<S::Reply> {
        self.clock_ms = self.clock_ms.max(stamp.time_ms);
        let now = self.clock_ms;
        self.table.expire(now, stamp.limits);
        let at = ApplyCtx {
            now_ms: now,
            index: stamp.index,
            limits: stamp.limits,
        };
        // The replica's own commands (client 0, which no clerk is: clients draw ids from
        // 2^32 up) are not a client's, so the table does not filter them.
        if S::is_read_only(&req.cmd) || !S::REPLICA_SESSIONS || req.client == OWN_CLIENT {
            return Applied::Fresh(self.machine.apply(req.cmd, &at));
        }
        let (client, seq, after) = (req.client, req.seq, req.after_ms);
        if let Check::Answer(a) = self.table.check(client, seq, after, now) {
            return a;
        }
        let reply = self.machine.apply(req.cmd, &at);
        self.table.record(client, seq, after, now, reply.clone());
        self.table.trim(stamp.limits);
        self.trimmed_to = Some(stamp.limits.max_sessions);
        Applied::Fresh(reply)
    }

    /// Executes a read-only command ([`StateMachine::is_read_only`]) on the current state,
    /// outside the log (a read confirmed by ReadIndex or a lease): as for reads applied from
    /// the log, nothing is recorded in the table and nothing changes. It sees the replicated
    /// clock as of the last entry applied, `index`.
    ///
    /// The read sees time as `max(replicated clock, wall_ms)`, `wall_ms` the serving leader's
    /// clock when the read arrived (the replica makes it wait for every entry proposed
    /// before then): a key that expired by the leader's clock is gone at once, though no
    /// entry has moved the replicated clock past its expiry yet. The clock assumption is the lease's
    /// (`flotilla_raft`'s `ReadMode::Lease`): leaders' clocks agree within the bound the
    /// deployment assumes; a new leader whose clock is behind its predecessor's could show a
    /// key the old one had hidden, for at most that skew. The max keeps a leader's reads from
    /// going back before what its log already applied.
    pub fn read(&mut self, cmd: S::Command, index: u64, wall_ms: u64) -> S::Reply {
        debug_assert!(
            S::is_read_only(&cmd),
            "a command that writes, read outside the log"
        );
        let at = ApplyCtx {
            now_ms: self.clock_ms.max(wall_ms),
            index,
            limits: SessionLimits::default(),
        };
        self.machine.apply(cmd, &at)
    }

    /// The snapshot's header: version, clock and table (small next to a large machine).
    fn snapshot_head(&self) -> Vec<u8> {
        let header = SnapshotHeader {
            clock_ms: self.clock_ms,
            table: self.table.blob(),
        };
        postcard::to_extend(&header, vec![SNAPSHOT_VERSION])
            .expect("encoding into a Vec cannot fail")
    }

    /// The machine, the table and the clock, encoded ([`Sessions::snapshot_into`] into
    /// memory).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.snapshot_into(&mut out)
            .expect("writing into a Vec cannot fail");
        out
    }

    /// The machine, the table and the clock, written to `out`: the header, then the
    /// machine's bytes as it streams them ([`StateMachine::snapshot_into`]).
    pub fn snapshot_into(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&self.snapshot_head())?;
        self.machine.snapshot_into(out)
    }

    /// The length of the snapshot now if the machine knows its own cheaply
    /// ([`StateMachine::snapshot_size_hint`]), else 0.
    pub fn snapshot_size_hint(&self) -> u64 {
        match self.machine.snapshot_size_hint() {
            0 => 0,
            n => n + self.snapshot_head().len() as u64,
        }
    }

    /// [`Sessions::snapshot_into`] of the state as it is now, written when the job runs (on
    /// another thread, say): the clock and table are encoded now (small), the machine's bytes
    /// by its [`StateMachine::snapshot_job`].
    pub fn snapshot_job(&self) -> SnapshotJob {
        let head = self.snapshot_head();
        let machine = self.machine.snapshot_job();
        Box::new(move |out: &mut dyn Write| {
            out.write_all(&head)?;
            machine(out)
        })
    }

    /// Replaces machine, table and clock with a snapshot's. An empty snapshot is the initial
    /// state.
    pub fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.restore_from(&mut &data[..])
    }

    /// [`Sessions::restore`] from a stream: the header is decoded as it is read, then the
    /// machine reads the rest ([`StateMachine::restore_from`]). On an error the state is
    /// unspecified (the caller discards the replica).
    pub fn restore_from(&mut self, r: &mut dyn Read) -> Result<(), SnapshotError> {
        let mut d = Decoder::new(r);
        self.trimmed_to = None;
        if d.at_end()
            .map_err(|e| SnapshotError(format!("cannot read it: {e}")))?
        {
            self.table = SessionTable::default();
            self.clock_ms = 0;
            return self.machine.restore_from(&mut io::empty());
        }
        let version: u8 = d.decode()?;
        if version != SNAPSHOT_VERSION {
            return Err(SnapshotError(format!("unknown snapshot version {version}")));
        }
        let header: SnapshotHeader<S::Reply> = d.decode()?;
        self.machine.restore_from(&mut d)?;
        self.table = SessionTable::from_blob(&header.table);
        self.clock_ms = header.clock_ms;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter: `Some(n)` adds n and returns the new total; `None` reads it. It remembers
    /// the clock of every command it applied (not in its snapshot).
    #[derive(Debug, Default)]
    struct Counter(u64, Vec<u64>);

    impl StateMachine for Counter {
        type Command = Option<u64>;
        type Reply = u64;
        fn apply(&mut self, cmd: Option<u64>, at: &ApplyCtx) -> u64 {
            self.1.push(at.now_ms);
            self.0 += cmd.unwrap_or(0);
            self.0
        }
        fn is_read_only(cmd: &Option<u64>) -> bool {
            cmd.is_none()
        }
        fn snapshot(&self) -> Vec<u8> {
            self.0.to_le_bytes().to_vec()
        }
        fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
            self.0 = match data {
                [] => 0,
                b => u64::from_le_bytes(b.try_into().map_err(|_| SnapshotError("len".into()))?),
            };
            Ok(())
        }
    }

    fn req(client: ClientId, seq: u64, cmd: Option<u64>) -> Request<Option<u64>> {
        stamped(client, seq, 1, cmd)
    }

    fn stamped(
        client: ClientId,
        seq: u64,
        after_ms: u64,
        cmd: Option<u64>,
    ) -> Request<Option<u64>> {
        Request {
            client,
            seq,
            after_ms,
            cmd,
        }
    }

    /// An entry stamped at `time_ms` with default limits.
    fn at(time_ms: u64) -> Stamp {
        Stamp {
            time_ms,
            limits: SessionLimits::default(),
            index: 0,
        }
    }

    const IDLE: u64 = 1000;

    /// An entry at index `index`, stamped at `time_ms`, with an idle limit of 1 s and at most
    /// `max` sessions.
    fn small(index: u64, time_ms: u64, max: u64) -> Stamp {
        Stamp {
            time_ms,
            limits: SessionLimits {
                idle_ms: IDLE,
                max_sessions: max,
            },
            index,
        }
    }

    #[test]
    fn a_retry_is_answered_from_the_table_without_a_second_effect() {
        let mut s = Sessions::new(Counter::default());
        assert_eq!(s.apply(req(7, 1, Some(5)), at(0)), Applied::Fresh(5));
        assert_eq!(s.apply(req(7, 1, Some(5)), at(0)), Applied::Duplicate(5));
        assert_eq!(s.apply(req(8, 1, Some(5)), at(0)), Applied::Fresh(10));
        assert_eq!(s.apply(req(7, 2, Some(1)), at(0)), Applied::Fresh(11));
        assert_eq!(s.apply(req(7, 1, Some(5)), at(0)), Applied::Stale);
        assert_eq!(s.machine().0, 11);
        assert_eq!(s.answered(7, 2), Some(&11));
        assert_eq!(s.answered(7, 1), None);
    }

    #[test]
    fn reads_are_not_remembered() {
        let mut s = Sessions::new(Counter::default());
        for client in 0..100 {
            assert_eq!(s.apply(req(client, 1, None), at(0)), Applied::Fresh(0));
        }
        assert_eq!(s.clients(), 0);
    }

    #[test]
    fn snapshot_carries_the_table() {
        let mut s = Sessions::new(Counter::default());
        s.apply(req(1, 4, Some(3)), at(5));
        s.apply(req(2, 9, Some(4)), at(6));
        let snap = s.snapshot();
        let mut t = Sessions::new(Counter::default());
        t.restore(&snap).unwrap();
        assert_eq!((t.machine().0, t.clock_ms()), (7, 6));
        assert_eq!(t.apply(req(1, 4, Some(3)), at(7)), Applied::Duplicate(3));
        assert_eq!(t.apply(req(2, 10, Some(1)), at(7)), Applied::Fresh(8));
        assert!(t.restore(&[9, 9]).is_err());
        t.restore(&[]).unwrap();
        assert_eq!((t.machine().0, t.clients(), t.clock_ms()), (0, 0, 0));
    }

    /// Issue 16: a snapshot streamed into a spool's writer restores, from the snapshot's
    /// reader, to an equal state: machine, sessions and clock; it is the bytes
    /// [`Sessions::snapshot`] gives.
    #[test]
    fn a_snapshot_through_a_spool_restores_an_equal_state() {
        use flotilla_raft::{MemorySpool, SnapshotSpool};
        let mut s = Sessions::new(Counter::default());
        for c in 1..50 {
            s.apply(req(c, 3, Some(c)), at(10 * c));
        }
        let mut w = MemorySpool.create(0).unwrap();
        s.snapshot_into(&mut w).unwrap();
        let data = w.finish().unwrap();
        assert_eq!(&data.to_bytes().unwrap()[..], &s.snapshot()[..]);
        let mut t = Sessions::new(Counter::default());
        t.restore_from(&mut data.reader()).unwrap();
        assert_eq!(t.snapshot(), s.snapshot());
        assert_eq!((t.machine().0, t.clock_ms(), t.clients()), (1225, 490, 49));
        assert_eq!(t.apply(req(7, 3, Some(7)), at(500)), Applied::Duplicate(28));
    }

    /// Issue 16: every cut of a snapshot and every byte garbled is an error or a state,
    /// never a panic; a cut inside the header or the machine's bytes is an error.
    #[test]
    fn cut_or_garbled_snapshots_are_errors_not_panics() {
        let mut s = Sessions::new(Counter::default());
        for c in 1..20 {
            s.apply(req(c, 1, Some(1)), at(c));
        }
        let snap = s.snapshot();
        for cut in 1..snap.len() {
            let mut t = Sessions::new(Counter::default());
            // The last 8 bytes are the counter: a cut leaves 1 to 7 of them, or none (then
            // the machine's bytes are empty, which is its initial state).
            let machine_cut = cut == snap.len() - 8;
            assert_eq!(
                t.restore_from(&mut &snap[..cut]).is_err(),
                !machine_cut,
                "cut at {cut}"
            );
        }
        for i in 0..snap.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut bad = snap.clone();
                bad[i] ^= flip;
                let _ = Sessions::new(Counter::default()).restore_from(&mut &bad[..]);
            }
        }
    }

    /// A new client stamped with the time replicas tell it is applied even when a session
    /// was evicted in the same millisecond: the hint is above the watermark. (Told the bare
    /// clock, 5 000 here, it would be refused as "session expired" for a command never
    /// applied: `net/tests/sessions.rs` failed 5 times in 6 that way.)
    #[test]
    fn a_new_client_stamped_with_the_hint_is_applied_after_an_eviction() {
        let mut s = Sessions::new(Counter::default());
        s.apply(stamped(1, 1, 5_000, Some(1)), small(1, 5_000, 1));
        s.apply(stamped(2, 1, 5_000, Some(1)), small(2, 5_000, 1));
        assert_eq!((s.clock_ms(), s.expired_through_ms()), (5_000, Some(5_000)));
        let bare = stamped(3, 1, s.clock_ms(), Some(1));
        assert_eq!(s.apply(bare, small(3, 5_000, 1)), Applied::Expired);
        let hinted = stamped(3, 1, s.stamp_hint_ms(), Some(1));
        assert_eq!(s.apply(hinted, small(4, 5_000, 1)), Applied::Fresh(3));
    }

    /// Issue 16 (thesis §6.3): the replicated clock is the highest stamp applied, so a leader
    /// whose clock is behind its predecessor's cannot move time back, and the machine sees
    /// the same monotonic time on every replica.
    #[test]
    fn the_replicated_clock_never_goes_back() {
        let mut s = Sessions::new(Counter::default());
        s.apply(req(1, 1, Some(1)), at(5_000));
        // The next leader's clock is 4 s behind.
        s.apply(req(1, 2, Some(1)), at(1_000));
        s.apply(req(2, 1, None), at(1_500));
        assert_eq!(s.clock_ms(), 5_000);
        s.apply(req(2, 2, Some(1)), at(6_000));
        assert_eq!(s.machine().1, [5_000, 5_000, 5_000, 6_000]);
        // Expiry follows the replicated clock, not the late leader's: client 1 was active at
        // 5 000 (stamped 1 000) and is not idle at a stamp of 5 000 + IDLE.
        s.apply(req(3, 1, Some(1)), small(0, 5_000 + IDLE, 100));
        assert_eq!(s.answered(1, 2), Some(&2));
    }

    /// Issue 16: sessions idle past the limit are removed when the replicated clock passes
    /// their last activity plus the limit, at the same entry on every replica, whether it
    /// applied the whole log or restored a snapshot halfway: their snapshots are equal, byte
    /// for byte, at every index.
    #[test]
    fn idle_sessions_expire_at_the_same_index_on_every_replica() {
        // Clients 0..20 each write once, 100 ms apart; then client 99 writes every 100 ms.
        // Each is stamped with the clock of the entry before (what its clerk last heard).
        let mut log = Vec::new();
        for c in 0..20u64 {
            log.push((stamped(c, 1, (100 * c).max(1), Some(1)), 100 * c));
        }
        for i in 0..40u64 {
            let t = 2_000 + 100 * i;
            log.push((stamped(99, i + 1, t - 100, Some(0)), t));
        }
        let mut a = Sessions::new(Counter::default());
        let mut b = Sessions::new(Counter::default());
        let mut removed_at = Vec::new();
        for (index, (r, t)) in log.into_iter().enumerate() {
            let index = index as u64 + 1;
            let before = a.clients();
            a.apply(r.clone(), small(index, t, 100));
            if index == 25 {
                b.restore(&a.snapshot()).unwrap();
            } else if index > 25 {
                b.apply(r, small(index, t, 100));
                assert_eq!(
                    a.snapshot(),
                    b.snapshot(),
                    "replicas differ at index {index}"
                );
            }
            if a.clients() < before + usize::from(index == 21) {
                removed_at.push((index, t, a.clients()));
            }
        }
        // Client c (active at 100c) goes at the first stamp above 100c + IDLE.
        assert_eq!(a.clients(), 1, "only client 99 is active");
        assert_eq!(a.answered(99, 40), Some(&20));
        assert_eq!(a.expired_through_ms(), Some(1_900));
        assert_eq!(removed_at.first().map(|r| (r.0, r.1)), Some((21, 2_000)));
    }

    /// Issue 16: beyond the maximum, the least recently active sessions go first, whatever
    /// their ids; a retry refreshes a session's activity.
    #[test]
    fn the_max_count_evicts_the_least_recently_active() {
        let mut s = Sessions::new(Counter::default());
        for (i, c) in [5u64, 3, 9].into_iter().enumerate() {
            let t = 10 * (i as u64 + 1);
            s.apply(stamped(c, 1, t, Some(1)), small(0, t, 3));
        }
        // Client 5 (the oldest) retries: it is now the most recently active.
        assert_eq!(
            s.apply(req(5, 1, Some(1)), small(0, 40, 3)),
            Applied::Duplicate(1)
        );
        s.apply(stamped(7, 1, 50, Some(1)), small(0, 50, 3));
        assert_eq!(s.clients(), 3);
        assert_eq!(
            s.answered(3, 1),
            None,
            "client 3, least recently active, is gone"
        );
        assert!(s.answered(5, 1).is_some() && s.answered(9, 1).is_some());
        s.apply(stamped(8, 1, 60, Some(1)), small(0, 60, 3));
        assert_eq!(s.answered(9, 1), None);
        assert_eq!(s.expired_through_ms(), Some(30));
    }

    /// Issue 16: a retry from a client whose session expired is refused with "expired" and
    /// not applied a second time, and so is an operation it stamped before the expiry; a
    /// fresh stamp starts a new session, after which old copies are stale.
    #[test]
    fn a_request_from_an_expired_session_is_refused_and_not_applied() {
        let mut s = Sessions::new(Counter::default());
        assert_eq!(
            s.apply(stamped(1, 1, 10, Some(5)), small(1, 10, 100)),
            Applied::Fresh(5)
        );
        // Client 2 keeps the clock moving; client 1's reply was lost and it went quiet.
        s.apply(stamped(2, 1, 1_000, Some(1)), small(2, 10 + IDLE + 1, 100));
        assert_eq!(s.clients(), 1);
        // Client 1's retry, stamped as the first copy was.
        assert_eq!(
            s.apply(stamped(1, 1, 10, Some(5)), small(3, 2_000, 100)),
            Applied::Expired
        );
        assert_eq!(
            s.apply(stamped(1, 2, 10, Some(5)), small(4, 2_000, 100)),
            Applied::Expired
        );
        // A copy carrying no time is never applied once something expired.
        assert_eq!(
            s.apply(stamped(1, 2, 0, Some(5)), small(5, 2_000, 100)),
            Applied::Unstamped
        );
        assert_eq!(s.machine().0, 6, "nothing was applied twice");
        // Nor is an unstamped write of a client that has a session (the clerk may restamp
        // it later, so it must not have been applied).
        let unstamped = s.apply(stamped(2, 2, 0, Some(5)), small(5, 2_000, 100));
        assert_eq!(unstamped, Applied::Unstamped);
        // The clerk's next operation carries the time it heard since: a new session.
        assert_eq!(
            s.apply(stamped(1, 3, 2_000, Some(1)), small(6, 2_000, 100)),
            Applied::Fresh(7)
        );
        assert_eq!(
            s.apply(stamped(1, 2, 10, Some(5)), small(7, 2_000, 100)),
            Applied::Stale
        );
        // A client never seen, stamped after the watermark, is new.
        assert_eq!(
            s.apply(stamped(3, 1, 1_500, Some(1)), small(8, 2_000, 100)),
            Applied::Fresh(8)
        );
    }

    /// The invariants hold through writes, duplicates, expiry, trimming and a restore.
    #[test]
    fn the_invariants_hold_as_sessions_come_and_go() {
        let mut s = Sessions::new(Counter::default());
        for i in 0..50u64 {
            s.apply(
                stamped(i % 7, i, 10 * i + 1, Some(1)),
                small(i, 10 * i + 1, 4),
            );
            s.apply(
                stamped(i % 7, i, 10 * i + 1, Some(1)),
                small(i, 10 * i + 2, 4),
            );
            s.check_invariants(CheckDepth::Full);
        }
        let mut t = Sessions::new(Counter::default());
        t.restore(&s.snapshot()).unwrap();
        t.check_invariants(CheckDepth::Full);
    }

    #[test]
    #[should_panic(expected = "session table, invariant 1: 2 sessions but 1")]
    fn table_invariant_1_every_session_is_indexed() {
        let mut s = Sessions::new(Counter::default());
        s.apply(req(1, 1, Some(1)), at(5));
        s.apply(req(2, 1, Some(1)), at(6));
        s.table_mut().forget_activity(2);
        s.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "session table, invariant 1: client 2's session")]
    fn table_invariant_1_the_index_has_each_sessions_activity() {
        let mut s = Sessions::new(Counter::default());
        s.apply(req(1, 1, Some(1)), at(5));
        s.apply(req(2, 1, Some(1)), at(6));
        s.table_mut().corrupt_activity(2, 99);
        // The sizes still agree: only the full check sees it.
        s.check_invariants(CheckDepth::Quick);
        s.check_invariants(CheckDepth::Full);
    }

    #[test]
    #[should_panic(expected = "sessions, invariant 1: 4 sessions, more than the 3")]
    fn sessions_invariant_1_the_table_stays_within_its_limit() {
        let mut s = Sessions::new(Counter::default());
        for c in 1..=5 {
            s.apply(stamped(c, 1, c, Some(1)), small(c, c, 3));
        }
        s.check_invariants(CheckDepth::Full);
        // A record without its trim.
        s.table_mut().record(9, 1, 9, 9, 0);
        s.check_invariants(CheckDepth::Quick);
    }

    /// A machine that keeps its own records (`REPLICA_SESSIONS` false), and whose invariant
    /// is a total below 100.
    #[derive(Debug, Default)]
    struct OwnRecords(u64);

    impl StateMachine for OwnRecords {
        type Command = Option<u64>;
        type Reply = u64;
        const REPLICA_SESSIONS: bool = false;
        fn apply(&mut self, cmd: Option<u64>, _at: &ApplyCtx) -> u64 {
            self.0 += cmd.unwrap_or(0);
            self.0
        }
        fn snapshot(&self) -> Vec<u8> {
            Vec::new()
        }
        fn restore(&mut self, _data: &[u8]) -> Result<(), SnapshotError> {
            Ok(())
        }
        fn check_invariants(&self, _depth: CheckDepth) {
            assert!(self.0 < 100, "own records, invariant 1: total {}", self.0);
        }
    }

    #[test]
    #[should_panic(expected = "sessions, invariant 1: 1 sessions in the replica's table")]
    fn sessions_invariant_1_a_machine_with_its_own_records_leaves_the_table_empty() {
        let mut s = Sessions::new(OwnRecords::default());
        s.apply(stamped(1, 1, 1, Some(5)), at(1));
        s.check_invariants(CheckDepth::Full);
        s.table_mut().record(1, 1, 1, 1, 5);
        s.check_invariants(CheckDepth::Quick);
    }

    #[test]
    #[should_panic(expected = "own records, invariant 1: total 100")]
    fn sessions_invariant_2_the_machine_is_checked() {
        let mut s = Sessions::new(OwnRecords::default());
        s.apply(stamped(1, 1, 1, Some(60)), at(1));
        s.check_invariants(CheckDepth::Quick);
        s.apply(stamped(1, 2, 1, Some(40)), at(1));
        s.check_invariants(CheckDepth::Quick);
    }

    /// A table decoded from a blob that names a client twice (no table encodes one: only a
    /// damaged or foreign snapshot) keeps invariant 1: the last record wins in both indexes.
    /// (Before, the activity index kept the first record's entry too, so expiry could later
    /// act on a session's stale activity.)
    #[test]
    fn a_blob_naming_a_client_twice_decodes_to_a_table_that_keeps_its_invariants() {
        let blob = TableBlob {
            sessions: vec![(1, 1, 5, 10u64), (2, 1, 6, 20), (1, 2, 9, 30)],
            expired_through_ms: None,
        };
        let t = SessionTable::from_blob(&blob);
        t.check_invariants(CheckDepth::Full);
        assert_eq!((t.len(), t.answered(1, 2)), (2, Some(&30)));
    }
}
