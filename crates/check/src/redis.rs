//! A model of Redis strings with absolute expiry, conditional SET, transactions (MULTI/EXEC
//! with WATCH by key versions) and the labs' get / put / append / delete, for histories in
//! which time matters: an operation's result depends on *when* it took effect, not only on
//! the order.
//!
//! # Time
//!
//! Each operation carries the window, in milliseconds of the clock expiry is measured by
//! (the replicated clock; the simulator's virtual time), in which it took effect:
//! [`RedisInput::call_ms`] and [`RedisOutput::ret_ms`]. The service promises that every
//! operation takes effect at one instant `t` in that window, and that the instants follow
//! the linearization order (a later operation never sees an earlier time). A key is present
//! at `t` iff it was set and `t < expire_at` (Redis: gone from the moment `now >=
//! expire_at`).
//!
//! The state therefore holds the time of the last linearized operation, `t`, beside the keys.
//! Which `t` to choose for the next operation? Only absolute expiry times enter the state
//! (`SET … PXAT`, `PEXPIREAT`; relative `EX`/`PX` would make the stored expiry depend on `t`
//! and are left to the engine's unit tests), so an operation's effect and reply depend on
//! `t` only through which of the keys it touches have expired by `t`, and (in a
//! transaction, where a later command sees what an earlier one set) which of the times its
//! commands name have passed. Those times cut the window `[max(previous t, call), ret]` into
//! intervals in which the operation behaves the same; within one interval the earliest instant dominates every later one (it leaves
//! the same keys and allows every later operation at least the instants the later one would).
//! So the step tries the earliest instant of each interval: the window's start, and each
//! such time inside the window — at most a few instants, each leading to a state.
//!
//! The model is thus nondeterministic, and [`RedisState`] is the set of states the
//! linearization so far can be in (porcupine's powerset construction for nondeterministic
//! models), with states of equal keys kept only at their earliest `t` (the rest are
//! dominated, as above). Keys that expired by a state's `t` are dropped from it, so that two
//! states that behave alike compare equal (the memo depends on it); `t` never goes back, so a
//! key expired by `t` stays gone.
//!
//! # WATCH
//!
//! A key's version changes at every write of it, 0 standing for an absent key; a transaction
//! whose watched key's version differs from the one given applies nothing (EXEC's null
//! array). The model does not know the numbers the service chooses, only which ones it
//! reported: each live key holds `seen`, the version a `Versions` read reported since the
//! key's last write (`None` if none did). A later read must report the same number; a write
//! forgets it. A watched `(key, version)` then passes iff the key is absent and `version` is
//! 0, or the key is present and `seen == Some(version)`: the client read `version` before
//! (the read returned before the transaction was sent, so it is linearized earlier), and if
//! the key was written since, its version is a new one, different from every version it had
//! before (versions only grow while a key lives, and a new key takes the entry's index). A
//! key deleted and created again between the read and the transaction has a new version;
//! one absent at both instants has version 0 at both, so that transaction applies (as the
//! engine does; Redis would abort it).
//!
//! # Partitions
//!
//! Keys are independent except through transactions and multi-key reads, so the history is
//! split by the connected components of "named in one operation together"; the random
//! suites keep transactions to a few hash-tagged keys, so the labs' keys stay one partition
//! each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::rc::Rc;
use std::time::Duration;

use crate::checker::{check_operations, CheckResult};
use crate::kv::{KvOp, KvOperation, KvOutput};
use crate::model::{quote, Lookahead, Model, Operation};

/// The condition of a SET.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SetCond {
    /// Plain SET (and the labs' put).
    Always,
    /// `NX`: only if the key is absent.
    IfAbsent,
    /// `XX`: only if the key is present.
    IfPresent,
}

/// One command on one key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RedisCmd {
    /// GET (reply [`RedisReply::Bulk`]) or the labs' get ([`RedisReply::Text`], "" for absent).
    Get { key: String },
    /// `SET key value [NX|XX] [PXAT at]` (reply OK or nil); the labs' put is a plain SET
    /// without expiry. A SET without KEEPTTL drops the key's old expiry; one at a time already
    /// past deletes the key.
    Set {
        key: String,
        value: String,
        cond: SetCond,
        px_at: Option<u64>,
    },
    /// APPEND (reply the new length) or the labs' append (reply nothing, or the old value as
    /// [`RedisReply::Text`]); keeps the key's expiry.
    Append { key: String, value: String },
    /// DEL of one key (reply 0 or 1) or the labs' delete.
    Del { key: String },
    /// PERSIST (reply 1 if it removed an expiry, else 0).
    Persist { key: String },
    /// `PEXPIREAT key at` (reply 1 if the key exists, else 0); a time already past deletes it.
    PExpireAt { key: String, at: u64 },
}

impl RedisCmd {
    /// The key the command names.
    pub fn key(&self) -> &str {
        match self {
            RedisCmd::Get { key }
            | RedisCmd::Set { key, .. }
            | RedisCmd::Append { key, .. }
            | RedisCmd::Del { key }
            | RedisCmd::Persist { key }
            | RedisCmd::PExpireAt { key, .. } => key,
        }
    }
}

/// What a client asked: one command, a transaction, or the versions of keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RedisOp {
    Cmd(RedisCmd),
    /// MULTI … EXEC, with the `(key, version)` pairs WATCH checks.
    Multi {
        watch: Vec<(String, u64)>,
        cmds: Vec<RedisCmd>,
    },
    /// The keys' versions (0 for an absent key), as WATCH reads them.
    Versions {
        keys: Vec<String>,
    },
}

impl RedisOp {
    /// Every key the operation names, repeats kept.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            RedisOp::Cmd(c) => vec![c.key()],
            RedisOp::Multi { watch, cmds } => (watch.iter().map(|(k, _)| k.as_str()))
                .chain(cmds.iter().map(RedisCmd::key))
                .collect(),
            RedisOp::Versions { keys } => keys.iter().map(String::as_str).collect(),
        }
    }

    fn reads_only(&self) -> bool {
        match self {
            RedisOp::Cmd(RedisCmd::Get { .. }) | RedisOp::Versions { .. } => true,
            RedisOp::Cmd(_) => false,
            RedisOp::Multi { cmds, .. } => cmds.iter().all(|c| matches!(c, RedisCmd::Get { .. })),
        }
    }
}

/// An operation with the earliest instant it may have taken effect at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisInput {
    /// The clock's millisecond when the client sent it (rounded down).
    pub call_ms: u64,
    pub op: RedisOp,
}

/// A reply, as the model compares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RedisReply {
    /// The outcome is unknown: accepted from every state.
    Unknown,
    /// Completed, nothing to check (the labs' put, append and delete).
    Done,
    /// The labs' get ("" for an absent key), or the old value a kvsrv append returned.
    Text(String),
    /// GET's bulk string or nil.
    Bulk(Option<String>),
    /// SET's OK.
    Ok,
    /// SET's nil (its condition failed).
    Nil,
    /// An integer reply (APPEND, DEL, PERSIST, PEXPIREAT).
    Int(i64),
    /// EXEC's replies, one per command.
    Array(Vec<RedisReply>),
    /// EXEC's null array: a watched key changed, nothing was applied.
    Aborted,
    /// The keys' versions.
    Versions(Vec<u64>),
}

/// A reply with the latest instant the operation may have taken effect at.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisOutput {
    /// The clock's millisecond when the reply arrived (rounded down); `u64::MAX` when the
    /// outcome is unknown.
    pub ret_ms: u64,
    pub reply: RedisReply,
}

impl RedisOutput {
    /// An unknown outcome.
    pub fn unknown() -> Self {
        RedisOutput {
            ret_ms: u64::MAX,
            reply: RedisReply::Unknown,
        }
    }
}

/// An operation of a history the [`RedisModel`] checks.
pub type RedisOperation = Operation<RedisInput, RedisOutput>;

/// A live key. (Ordered only so that states can be sorted; any total order does.)
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Slot {
    value: Rc<str>,
    /// 0: never.
    expire_at: u64,
    /// The version a read reported since the key's last write.
    seen: Option<u64>,
}

/// One state the linearization may be in: the instant of its last operation and the keys
/// live then, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Moment {
    keys: Vec<(Rc<str>, Slot)>,
    t: u64,
}

/// The states a linearization can be in (see the module docs): never empty, sorted, no two
/// with the same keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedisState(Vec<Moment>);

impl Moment {
    fn get(&self, key: &str) -> Option<Slot> {
        (self.keys.iter())
            .find(|(k, _)| &**k == key)
            .map(|(_, s)| s.clone())
    }

    fn put(&mut self, key: &str, slot: Option<Slot>) {
        let pos = self.keys.binary_search_by(|(k, _)| (**k).cmp(key));
        match (pos, slot) {
            (Ok(i), Some(s)) => self.keys[i].1 = s,
            (Ok(i), None) => {
                self.keys.remove(i);
            }
            (Err(i), Some(s)) => self.keys.insert(i, (Rc::from(key), s)),
            (Err(_), None) => {}
        }
    }

    /// The same keys at `t` (not before `self.t`), those expired by then dropped.
    fn at(&self, t: u64) -> Moment {
        let mut m = self.clone();
        m.t = t;
        m.keys.retain(|(_, s)| s.expire_at == 0 || t < s.expire_at);
        m
    }
}

/// What a command did, to compare with its reply.
enum Outcome {
    Read(Option<Rc<str>>),
    /// SET: whether its condition held (it wrote).
    Wrote(bool),
    /// APPEND: the old value ("" if absent) and the new length.
    Appended(Rc<str>, usize),
    Int(i64),
}

fn matches(outcome: &Outcome, reply: &RedisReply) -> bool {
    match (outcome, reply) {
        (_, RedisReply::Unknown | RedisReply::Done) => true,
        (Outcome::Read(v), RedisReply::Text(s)) => v.as_deref().unwrap_or("") == s,
        (Outcome::Read(v), RedisReply::Bulk(b)) => v.as_deref() == b.as_deref(),
        (Outcome::Wrote(true), RedisReply::Ok) | (Outcome::Wrote(false), RedisReply::Nil) => true,
        (Outcome::Appended(old, _), RedisReply::Text(s)) => **old == **s,
        (Outcome::Appended(_, len), RedisReply::Int(n)) => *len as i64 == *n,
        (Outcome::Int(a), RedisReply::Int(b)) => a == b,
        _ => false,
    }
}

/// Runs `cmd` on `m` at `m.t`.
fn exec(m: &mut Moment, cmd: &RedisCmd) -> Outcome {
    let now = m.t;
    let key = cmd.key();
    let old = m.get(key);
    let written = |value: Rc<str>, expire_at: u64| {
        (expire_at == 0 || now < expire_at).then_some(Slot {
            value,
            expire_at,
            seen: None,
        })
    };
    match cmd {
        RedisCmd::Get { .. } => Outcome::Read(old.map(|s| s.value)),
        RedisCmd::Set {
            value, cond, px_at, ..
        } => {
            let go = match cond {
                SetCond::Always => true,
                SetCond::IfAbsent => old.is_none(),
                SetCond::IfPresent => old.is_some(),
            };
            if go {
                m.put(key, written(Rc::from(value.as_str()), px_at.unwrap_or(0)));
            }
            Outcome::Wrote(go)
        }
        RedisCmd::Append { value, .. } => {
            let (before, expire_at) = old.map_or((Rc::from(""), 0), |s| (s.value, s.expire_at));
            let new: Rc<str> = Rc::from(format!("{before}{value}"));
            let len = new.len();
            m.put(key, written(new, expire_at));
            Outcome::Appended(before, len)
        }
        RedisCmd::Del { .. } => {
            m.put(key, None);
            Outcome::Int(i64::from(old.is_some()))
        }
        RedisCmd::Persist { .. } => match old {
            Some(s) if s.expire_at != 0 => {
                m.put(key, written(s.value, 0));
                Outcome::Int(1)
            }
            _ => Outcome::Int(0),
        },
        RedisCmd::PExpireAt { at, .. } => match old {
            Some(s) => {
                m.put(key, written(s.value, *at));
                Outcome::Int(1)
            }
            None => Outcome::Int(0),
        },
    }
}

/// Whether every watched key still has the version given (see the module docs).
fn watch_holds(m: &Moment, watch: &[(String, u64)]) -> bool {
    watch.iter().all(|(k, v)| match m.get(k) {
        None => *v == 0,
        Some(s) => s.seen == Some(*v),
    })
}

/// Applies the operation to `m` (already at its instant); `None` if the reply cannot come
/// from it.
fn apply(mut m: Moment, op: &RedisOp, reply: &RedisReply) -> Option<Moment> {
    match op {
        RedisOp::Cmd(cmd) => matches(&exec(&mut m, cmd), reply).then_some(m),
        RedisOp::Multi { watch, cmds } => {
            if !watch_holds(&m, watch) {
                return matches!(reply, RedisReply::Unknown | RedisReply::Aborted).then_some(m);
            }
            let outcomes: Vec<Outcome> = cmds.iter().map(|c| exec(&mut m, c)).collect();
            let ok = match reply {
                RedisReply::Unknown => true,
                RedisReply::Array(replies) => {
                    replies.len() == outcomes.len()
                        && outcomes.iter().zip(replies).all(|(o, r)| matches(o, r))
                }
                _ => false,
            };
            ok.then_some(m)
        }
        RedisOp::Versions { keys } => {
            let versions = match reply {
                RedisReply::Unknown => return Some(m),
                RedisReply::Versions(v) if v.len() == keys.len() => v,
                _ => return None,
            };
            for (k, &v) in keys.iter().zip(versions) {
                match m.get(k) {
                    None if v == 0 => {}
                    Some(s) if v != 0 && s.seen.is_none_or(|seen| seen == v) => {
                        m.put(k, Some(Slot { seen: Some(v), ..s }));
                    }
                    _ => return None,
                }
            }
            Some(m)
        }
    }
}

/// The absolute times an operation's commands name (their `PXAT`, `PEXPIREAT`): inside a
/// transaction, whether a key a command set is already gone for the next one depends on them.
fn named_times(op: &RedisOp) -> Vec<u64> {
    let of = |c: &RedisCmd| match c {
        RedisCmd::Set { px_at: Some(t), .. } | RedisCmd::PExpireAt { at: t, .. } => Some(*t),
        _ => None,
    };
    match op {
        RedisOp::Cmd(c) => of(c).into_iter().collect(),
        RedisOp::Multi { cmds, .. } => cmds.iter().filter_map(of).collect(),
        RedisOp::Versions { .. } => Vec::new(),
    }
}

/// The instants worth trying for an operation in `[max(m.t, call), ret]`: the window's start,
/// every touched key's expiry inside it and every time the operation names inside it. The
/// operation's effect and reply are the same at every instant between two of these (see the
/// module docs).
fn instants(m: &Moment, keys: &[&str], named: &[u64], call: u64, ret: u64) -> Vec<u64> {
    let lo = m.t.max(call);
    if lo > ret {
        return Vec::new();
    }
    let expiries = keys.iter().filter_map(|k| m.get(k)).map(|s| s.expire_at);
    let mut ts: Vec<u64> = std::iter::once(lo)
        .chain(
            expiries
                .chain(named.iter().copied())
                .filter(|&e| e > lo && e <= ret),
        )
        .collect();
    ts.sort_unstable();
    ts.dedup();
    ts
}

/// The model of strings with absolute expiry and transactions (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RedisModel {
    /// Reads (GET, the labs' get, version reads) may take effect at an instant later than
    /// the writes linearized after them: their instant does not carry forward. Off (the
    /// default), every operation's instant follows the previous one's.
    ///
    /// A service that answers reads outside its log (ReadIndex, leases) at its leader's
    /// clock, while a write proposed earlier, stamped with an earlier time, is still on its
    /// way to being applied, behaves so: the read may see a key expired that the write
    /// then finds present (and may keep alive, e.g. by PERSIST or SET XX). Flotilla's
    /// replicas do this (`flotilla_rsm`'s `session::read`); the strict model rejects such
    /// histories, this one accepts them.
    pub reads_run_ahead: bool,
}

impl RedisModel {
    /// Every instant follows the previous one (see [`RedisModel::reads_run_ahead`]).
    pub fn strict() -> Self {
        RedisModel {
            reads_run_ahead: false,
        }
    }

    /// Reads' instants do not carry forward (see [`RedisModel::reads_run_ahead`]).
    pub fn reads_run_ahead() -> Self {
        RedisModel {
            reads_run_ahead: true,
        }
    }
}

impl Model for RedisModel {
    type State = RedisState;
    type Input = RedisInput;
    type Output = RedisOutput;

    fn init(&self) -> RedisState {
        RedisState(vec![Moment {
            keys: Vec::new(),
            t: 0,
        }])
    }

    fn state_bytes(&self, state: &RedisState) -> usize {
        let per_key = std::mem::size_of::<(Rc<str>, Slot)>() + 2 * std::mem::size_of::<usize>();
        (state.0.iter())
            .map(|m| {
                std::mem::size_of::<Moment>()
                    + (m.keys.iter())
                        .map(|(k, s)| per_key + k.len() + s.value.len())
                        .sum::<usize>()
            })
            .sum::<usize>()
            + std::mem::size_of::<RedisState>()
    }

    fn step(
        &self,
        state: &RedisState,
        input: &RedisInput,
        output: &RedisOutput,
    ) -> Option<RedisState> {
        let keys = input.op.keys();
        let named = named_times(&input.op);
        let ret = if output.reply == RedisReply::Unknown {
            u64::MAX
        } else {
            output.ret_ms
        };
        let mut next: Vec<Moment> = Vec::new();
        let keep_time = self.reads_run_ahead
            && matches!(
                input.op,
                RedisOp::Cmd(RedisCmd::Get { .. }) | RedisOp::Versions { .. }
            );
        for m in &state.0 {
            for t in instants(m, &keys, &named, input.call_ms, ret) {
                if let Some(mut after) = apply(m.at(t), &input.op, &output.reply) {
                    if keep_time {
                        // The keys the read looked at are as at `t`, the others unchanged:
                        // a read changes nothing but `seen`, so undo only the clock and the
                        // expiry of the keys it did not touch.
                        let mut back = m.clone();
                        for (k, s) in after.keys.drain(..) {
                            back.put(&k, Some(s));
                        }
                        after = back;
                    }
                    next.push(after);
                }
            }
        }
        if next.is_empty() {
            return None;
        }
        // Sorted by keys then time: of the states with the same keys, the first is the
        // earliest, which dominates the others.
        next.sort();
        next.dedup_by(|later, first| later.keys == first.keys);
        Some(RedisState(next))
    }

    /// Connected components of keys named together, in the order of their first key
    /// (a `BTreeMap`: explanations are reproducible). Reads of unknown outcome are left out:
    /// they constrain nothing.
    fn partition(&self, history: &[RedisOperation]) -> Vec<Vec<usize>> {
        let mut ids: BTreeMap<&str, usize> = BTreeMap::new();
        let mut parent: Vec<usize> = Vec::new();
        fn root(parent: &mut [usize], mut i: usize) -> usize {
            while parent[i] != i {
                parent[i] = parent[parent[i]];
                i = parent[i];
            }
            i
        }
        let kept: Vec<usize> = (0..history.len())
            .filter(|&i| {
                let op = &history[i];
                !(op.input.op.reads_only() && op.output.reply == RedisReply::Unknown)
            })
            .collect();
        for &i in &kept {
            let mut first = None;
            for k in history[i].input.op.keys() {
                let id = *ids.entry(k).or_insert_with(|| {
                    parent.push(parent.len());
                    parent.len() - 1
                });
                match first {
                    None => first = Some(id),
                    Some(f) => {
                        let (a, b) = (root(&mut parent, f), root(&mut parent, id));
                        parent[b] = a;
                    }
                }
            }
        }
        let mut parts: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for &i in &kept {
            let Some(k) = history[i].input.op.keys().first().copied() else {
                continue;
            };
            let r = root(&mut parent, ids[k]);
            parts.entry(r).or_default().push(i);
        }
        parts.into_values().collect()
    }

    fn output_is_unknown(&self, output: &RedisOutput) -> bool {
        output.reply == RedisReply::Unknown
    }

    /// As the labs' model: appends extend a value, reads of a known value observe it; what
    /// can set a value outright or make a key expire resets. PERSIST only takes an expiry
    /// away and a version read changes nothing a read looks at, so both are neutral.
    fn lookahead(&self, input: &RedisInput, output: &RedisOutput) -> Lookahead {
        match (&input.op, &output.reply) {
            (RedisOp::Cmd(RedisCmd::Get { .. }), RedisReply::Text(_) | RedisReply::Bulk(_)) => {
                Lookahead::Observe
            }
            (RedisOp::Cmd(RedisCmd::Get { .. }), _) => Lookahead::Neutral,
            (RedisOp::Cmd(RedisCmd::Append { .. } | RedisCmd::Persist { .. }), _) => {
                Lookahead::Neutral
            }
            (RedisOp::Versions { .. }, _) => Lookahead::Neutral,
            _ => Lookahead::Reset,
        }
    }

    /// With appends alone, a key that has no expiry only grows; one with an expiry may vanish
    /// and start again from nothing, so anything is reachable.
    fn may_reach(&self, state: &RedisState, input: &RedisInput, output: &RedisOutput) -> bool {
        let RedisOp::Cmd(RedisCmd::Get { key }) = &input.op else {
            return true;
        };
        state.0.iter().any(|m| match (m.get(key), &output.reply) {
            (Some(s), _) if s.expire_at != 0 => true,
            (None, _) => true,
            (Some(s), RedisReply::Text(v) | RedisReply::Bulk(Some(v))) => v.starts_with(&*s.value),
            (Some(_), RedisReply::Bulk(None)) => false,
            _ => true,
        })
    }

    fn describe_operation(&self, input: &RedisInput, output: &RedisOutput) -> String {
        let ret = match output.reply {
            RedisReply::Unknown => "?".to_owned(),
            _ => format!("{} ms", output.ret_ms),
        };
        format!(
            "[{} ms, {ret}] {} -> {}",
            input.call_ms,
            describe_op(&input.op),
            describe_reply(&output.reply)
        )
    }

    fn describe_state(&self, state: &RedisState) -> String {
        let moments: Vec<String> = (state.0.iter())
            .map(|m| {
                let keys: Vec<String> = (m.keys.iter())
                    .map(|(k, s)| {
                        let mut d = format!("{}: {}", quote(k), quote(&s.value));
                        if s.expire_at != 0 {
                            let _ = write!(d, " expires at {} ms", s.expire_at);
                        }
                        if let Some(v) = s.seen {
                            let _ = write!(d, " version {v}");
                        }
                        d
                    })
                    .collect();
                format!("at {} ms {{{}}}", m.t, keys.join(", "))
            })
            .collect();
        moments.join(" or ")
    }
}

fn describe_cmd(c: &RedisCmd) -> String {
    match c {
        RedisCmd::Get { key } => format!("GET {}", quote(key)),
        RedisCmd::Set {
            key,
            value,
            cond,
            px_at,
        } => {
            let mut d = format!("SET {} {}", quote(key), quote(value));
            match cond {
                SetCond::Always => {}
                SetCond::IfAbsent => d.push_str(" NX"),
                SetCond::IfPresent => d.push_str(" XX"),
            }
            if let Some(at) = px_at {
                let _ = write!(d, " PXAT {at}");
            }
            d
        }
        RedisCmd::Append { key, value } => format!("APPEND {} {}", quote(key), quote(value)),
        RedisCmd::Del { key } => format!("DEL {}", quote(key)),
        RedisCmd::Persist { key } => format!("PERSIST {}", quote(key)),
        RedisCmd::PExpireAt { key, at } => format!("PEXPIREAT {} {at}", quote(key)),
    }
}

fn describe_op(op: &RedisOp) -> String {
    match op {
        RedisOp::Cmd(c) => describe_cmd(c),
        RedisOp::Multi { watch, cmds } => {
            let mut d = String::new();
            if !watch.is_empty() {
                let w: Vec<String> = (watch.iter())
                    .map(|(k, v)| format!("{}@{v}", quote(k)))
                    .collect();
                let _ = write!(d, "WATCH {}; ", w.join(" "));
            }
            let c: Vec<String> = cmds.iter().map(describe_cmd).collect();
            let _ = write!(d, "MULTI {}; EXEC", c.join("; "));
            d
        }
        RedisOp::Versions { keys } => {
            let k: Vec<String> = keys.iter().map(|k| quote(k)).collect();
            format!("VERSIONS {}", k.join(" "))
        }
    }
}

fn describe_reply(r: &RedisReply) -> String {
    match r {
        RedisReply::Unknown => "? (outcome unknown)".to_owned(),
        RedisReply::Done => "done".to_owned(),
        RedisReply::Text(s) => quote(s),
        RedisReply::Bulk(Some(s)) => quote(s),
        RedisReply::Bulk(None) | RedisReply::Nil => "nil".to_owned(),
        RedisReply::Ok => "OK".to_owned(),
        RedisReply::Int(n) => n.to_string(),
        RedisReply::Array(items) => {
            let i: Vec<String> = items.iter().map(describe_reply).collect();
            format!("[{}]", i.join(", "))
        }
        RedisReply::Aborted => "(aborted)".to_owned(),
        RedisReply::Versions(v) => format!("{v:?}"),
    }
}

/// Checks a history of [`RedisModel`] operations (see [`check_operations`]).
pub fn check_redis(
    model: RedisModel,
    history: &[RedisOperation],
    timeout: Option<Duration>,
) -> CheckResult {
    check_operations(&model, history, timeout)
}

/// A labs' key/value operation as one of this model's, its window `[call_ms, ret_ms]` given
/// (the caller knows how its nanosecond stamps relate to the clock expiry is measured by).
pub fn redis_op_of_kv(op: &KvOperation, call_ms: u64, ret_ms: Option<u64>) -> RedisOperation {
    let key = op.input.key.clone();
    let value = op.input.value.clone();
    let cmd = match op.input.op {
        KvOp::Get => RedisCmd::Get { key },
        KvOp::Put => RedisCmd::Set {
            key,
            value,
            cond: SetCond::Always,
            px_at: None,
        },
        KvOp::Append => RedisCmd::Append { key, value },
        KvOp::Delete => RedisCmd::Del { key },
    };
    let output = match (&op.output, ret_ms) {
        (KvOutput::Unknown, _) | (_, None) => RedisOutput::unknown(),
        (KvOutput::Done, Some(ret_ms)) => RedisOutput {
            ret_ms,
            reply: RedisReply::Done,
        },
        (KvOutput::Value(v), Some(ret_ms)) => RedisOutput {
            ret_ms,
            reply: RedisReply::Text(v.clone()),
        },
    };
    Operation {
        client: op.client,
        input: RedisInput {
            call_ms,
            op: RedisOp::Cmd(cmd),
        },
        call: op.call,
        output,
        ret: op.ret,
    }
}
