//! The key/value state machine.

use std::io::{self, Read, Write};

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use flotilla_rsm::{ApplyCtx, CheckDepth, SnapshotError, SnapshotJob, StateMachine};

use crate::command::{KvCommand, KvError, KvReply};
use crate::engine;
use crate::slot::{Data, Slot};
use crate::snapshot;

/// A stored value: a shared, immutable buffer (a clone is a reference count).
pub type Value = bytes::Bytes;

/// What an Append answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendReply {
    /// The value's new length (the replicated service, and Redis's APPEND).
    NewLength,
    /// The value it replaced (the 6.5840 kvsrv lab's Append).
    OldValue,
}

/// Keys and their [`Slot`]s (value, expiry, version). A hash map for speed (ordered-map
/// inserts were 6% of a replica's CPU under load, in key comparisons); snapshots sort the keys,
/// so they still encode identically on every replica and every run (the hasher is unseeded,
/// so nothing else varies either).
///
/// Values are shared, immutable buffers ([`Value`]): a snapshot job holds a view of every
/// value as of when it was taken, for the cost of a reference each, and encodes it off the
/// replica's event loop. A value put by a log entry is a view of the entry's own buffer
/// ([`flotilla_rsm::shared_bytes`]), so the Raft log and the store hold one copy of it
/// between them, not one each. A write replaces a value; an append extends it in place when
/// nothing else holds it (`append_to`), else builds a new one.
///
/// # Expiry
/// Time is the replicated clock of [`ApplyCtx::now_ms`]: every replica applies an entry at
/// the same "now" (the proposing leader's clock, never going back), so every replica expires
/// the same keys at the same index. A key past its expiry is gone to every command at once
/// (reads outside the log read at the serving leader's clock, see [`flotilla_rsm`]'s
/// `session` module); it is removed from the map by the next write that touches it, and by
/// the sweep every write entry runs ([`Kv::sweep`]), oldest expiry first, a bounded number
/// per entry, as Redis's active expiry does. Invariant: `expiring` holds exactly the keys
/// whose slot has an expiry, with that expiry.
#[derive(Clone, Debug)]
pub struct Kv {
    data: FxHashMap<Vec<u8>, Slot>,
    expiring: BTreeSet<(u64, Vec<u8>)>,
    append_reply: AppendReply,
    /// Reads served that drew at random (the engine's `Run::draw`): local to this replica,
    /// not state (not in snapshots; replicas differ in it).
    read_draws: u64,
}

impl Default for Kv {
    fn default() -> Self {
        Kv::new(AppendReply::NewLength)
    }
}

/// Most expired keys one write entry removes besides those it touches (Redis's active expiry
/// removes up to 20 per round, then more while a quarter of its sample was expired).
const SWEEP_PER_ENTRY: usize = 32;

/// Most expired keys one leader-proposed sweep ([`KvCommand::SweepExpired`]) removes: a
/// bounded pause for the replicas that apply it; the leader proposes the next while more are
/// due.
pub const SWEEP_PER_HOUSEKEEPING: usize = 1000;

impl Kv {
    pub fn new(append_reply: AppendReply) -> Self {
        Kv {
            data: FxHashMap::default(),
            expiring: BTreeSet::new(),
            append_reply,
            read_draws: 0,
        }
    }

    /// A number that differs at every call: what a read's random draws mix in.
    pub(crate) fn next_read_nonce(&mut self) -> u64 {
        self.read_draws += 1;
        self.read_draws
    }

    /// The key's string value, whether or not it has expired (tests and tools; commands read
    /// through [`Kv::live`]).
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        match self.data.get(key).map(|s| &s.value) {
            Some(Data::Str(v)) => Some(v),
            _ => None,
        }
    }

    /// The key's string value if it exists at `now_ms` and is a string (the lab commands,
    /// which know only strings, see other types as absent).
    fn live_string(&self, key: &[u8], now_ms: u64) -> Option<&Value> {
        match self.live(key, now_ms).map(|s| &s.value) {
            Some(Data::Str(v)) => Some(v),
            _ => None,
        }
    }

    /// The key's slot if it exists at `now_ms`.
    pub fn live(&self, key: &[u8], now_ms: u64) -> Option<&Slot> {
        self.data.get(key).filter(|s| !s.expired(now_ms))
    }

    /// Removes the key if it expired by `now_ms`: what a write does before it looks at a key,
    /// so that it sees what readers see. Returns whether it removed one.
    pub fn remove_if_expired(&mut self, key: &[u8], now_ms: u64) -> bool {
        if self.data.get(key).is_some_and(|s| s.expired(now_ms)) {
            self.remove(key);
            true
        } else {
            false
        }
    }

    /// Sets the key's string value and expiry (0: none), bumping its version past `index`.
    pub fn put(&mut self, key: Vec<u8>, value: Value, expire_at: u64, index: u64) {
        self.put_data(key, Data::Str(value), expire_at, index)
    }

    /// Sets the key's value (of any type) and expiry (0: none), bumping its version.
    pub fn put_data(&mut self, key: Vec<u8>, value: Data, expire_at: u64, index: u64) {
        let old = self.data.get(&key).map(|s| (s.version, s.expire_at));
        let version = next_version(old.map(|(v, _)| v), index);
        if let Some((_, old_expiry)) = old {
            if old_expiry != 0 && old_expiry != expire_at {
                self.expiring.remove(&(old_expiry, key.clone()));
            }
        }
        if expire_at != 0 && old.map(|(_, e)| e) != Some(expire_at) {
            self.expiring.insert((expire_at, key.clone()));
        }
        self.data.insert(
            key,
            Slot {
                value,
                expire_at,
                version,
            },
        );
    }

    /// Changes the expiry of a key that exists (0: none); its version changes too.
    pub fn set_expiry(&mut self, key: &[u8], expire_at: u64, index: u64) -> bool {
        let Some(slot) = self.data.get_mut(key) else {
            return false;
        };
        slot.version = next_version(Some(slot.version), index);
        let old = std::mem::replace(&mut slot.expire_at, expire_at);
        if old != expire_at {
            if old != 0 {
                self.expiring.remove(&(old, key.to_vec()));
            }
            if expire_at != 0 {
                self.expiring.insert((expire_at, key.to_vec()));
            }
        }
        true
    }

    /// Removes the key (expired or not) and returns its slot.
    pub fn remove(&mut self, key: &[u8]) -> Option<Slot> {
        let slot = self.data.remove(key)?;
        if slot.expire_at != 0 {
            self.expiring.remove(&(slot.expire_at, key.to_vec()));
        }
        Some(slot)
    }

    /// Removes up to `max` keys that expired by `now_ms`, earliest expiry first; returns how
    /// many it removed.
    pub fn sweep(&mut self, now_ms: u64, max: usize) -> usize {
        let mut removed = 0;
        while removed < max {
            match self.expiring.first() {
                Some((at, _)) if *at <= now_ms => {}
                _ => break,
            }
            let (_, key) = self.expiring.pop_first().expect("checked above");
            self.data.remove(&key);
            removed += 1;
        }
        removed
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.data = FxHashMap::default();
        self.expiring.clear();
    }

    /// Keys with an expiry (expired or not).
    pub fn expiring(&self) -> usize {
        self.expiring.len()
    }

    /// Whether some key expired by `now_ms` is still in the map (O(1)).
    pub fn has_expired(&self, now_ms: u64) -> bool {
        self.expiring.first().is_some_and(|(at, _)| *at <= now_ms)
    }

    /// Keys expired by `now_ms` but not removed yet.
    pub fn expired_count(&self, now_ms: u64) -> usize {
        self.expiring
            .range(..(now_ms.saturating_add(1), Vec::new()))
            .count()
    }

    fn incr(&mut self, key: Vec<u8>, by: i64, at: &ApplyCtx) -> KvReply {
        self.remove_if_expired(&key, at.now_ms);
        let (old, expire_at) = match self.data.get(&key) {
            None => (0, 0),
            // Redis's rule, not Rust's `parse` (which takes "+5", "0123", "-0"): a replica applies
            // this, so it must be one exact, deterministic rule, the same on every replica.
            Some(s) => match &s.value {
                Data::Str(v) => match flotilla_resp::parse_i64(v) {
                    Some(n) => (n, s.expire_at),
                    None => return KvReply::Error(KvError::NotAnInteger),
                },
                _ => return KvReply::Error(KvError::NotAnInteger),
            },
        };
        match old.checked_add(by) {
            Some(n) => {
                let value = Value::from(n.to_string().into_bytes());
                self.put(key, value, expire_at, at.index);
                KvReply::Int(n)
            }
            None => KvReply::Error(KvError::Overflow),
        }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Every key with its slot, in no particular order (callers that need an order, such as
    /// a shard sent in pages, sort the keys).
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Slot)> {
        self.data.iter().map(|(k, v)| (k.as_slice(), v))
    }

    /// Takes every key with its slot out, in no particular order, leaving the store empty
    /// (a shard frozen for hand-over is kept sorted instead, without a second copy).
    pub fn drain(&mut self) -> impl Iterator<Item = (Vec<u8>, Slot)> + '_ {
        self.expiring.clear();
        self.data.drain()
    }

    /// Inserts a slot received whole (a shard page's record), replacing any.
    pub fn insert_slot(&mut self, key: Vec<u8>, slot: Slot) {
        self.remove(&key);
        if slot.expire_at != 0 {
            self.expiring.insert((slot.expire_at, key.clone()));
        }
        self.data.insert(key, slot);
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Checks that `expiring` indexes exactly the slots with an expiry (O(n)).
    pub fn check_expiry_index(&self) {
        let with_expiry = self.data.values().filter(|s| s.expire_at != 0).count();
        assert_eq!(with_expiry, self.expiring.len(), "expiry index size");
        for (at, key) in &self.expiring {
            assert_eq!(
                self.data.get(key).map(|s| s.expire_at),
                Some(*at),
                "expiry index entry for {key:?}"
            );
        }
    }
}

/// A written key's new version: above its previous one and at least the entry's index.
fn next_version(previous: Option<u64>, index: u64) -> u64 {
    match previous {
        Some(v) => index.max(v.saturating_add(1)),
        None => index,
    }
}

impl StateMachine for Kv {
    type Command = KvCommand;
    type Reply = KvReply;

    fn apply(&mut self, cmd: KvCommand, at: &ApplyCtx) -> KvReply {
        let writes = !Self::is_read_only(&cmd);
        let reply = match cmd {
            KvCommand::Get { key } => {
                KvReply::Value(self.live_string(&key, at.now_ms).map(|v| v.to_vec()))
            }
            KvCommand::Put { key, value } => {
                self.put(key, value, 0, at.index);
                KvReply::Done
            }
            KvCommand::Append { key, value } => {
                self.remove_if_expired(&key, at.now_ms);
                let (old, expire_at) = match self.remove(&key) {
                    Some(Slot {
                        value: Data::Str(v),
                        expire_at,
                        ..
                    }) => (v, expire_at),
                    // The lab's Append knows only strings: another type is replaced.
                    _ => (Value::new(), 0),
                };
                let reply = match self.append_reply {
                    AppendReply::NewLength => KvReply::Len((old.len() + value.len()) as u64),
                    AppendReply::OldValue => KvReply::Value(Some(old.to_vec())),
                };
                self.put(key, append_to(old, &value), expire_at, at.index);
                reply
            }
            KvCommand::Delete { key } => {
                self.remove_if_expired(&key, at.now_ms);
                KvReply::Deleted(self.remove(&key).is_some())
            }
            KvCommand::Incr { key, by } => self.incr(key, by, at),
            KvCommand::Redis { args, .. } => KvReply::Redis(engine::run(self, &args, at)),
            KvCommand::Multi { watch, cmds } => {
                KvReply::Redis(engine::multi(self, &watch, &cmds, at))
            }
            KvCommand::SweepExpired => {
                KvReply::Int(self.sweep(at.now_ms, SWEEP_PER_HOUSEKEEPING) as i64)
            }
            KvCommand::Versions { keys } => KvReply::Versions(
                keys.iter()
                    .map(|k| self.live(k.as_slice(), at.now_ms).map_or(0, |s| s.version))
                    .collect(),
            ),
        };
        if writes {
            self.sweep(at.now_ms, SWEEP_PER_ENTRY);
        }
        reply
    }

    fn is_read_only(cmd: &KvCommand) -> bool {
        cmd.is_read_only()
    }

    /// Redis commands read expiry; a lab Get only when some key has an expiry at all.
    fn read_waits_for_proposals(&self, cmd: &KvCommand) -> bool {
        !matches!(cmd, KvCommand::Get { .. }) || !self.expiring.is_empty()
    }

    fn housekeeping(&self, now_ms: u64) -> Option<KvCommand> {
        self.has_expired(now_ms).then_some(KvCommand::SweepExpired)
    }

    fn validate(cmd: &KvCommand) -> Result<(), KvReply> {
        cmd.validate().map_err(KvReply::Error)
    }

    /// Pairs of key and record in key order ([`crate::snapshot`]). Encoded as byte strings
    /// (not sequences of numbers), since the replica snapshots often: with a 1000-byte
    /// `max_raft_state` and 20 clients, every few dozen operations.
    fn snapshot(&self) -> Vec<u8> {
        flotilla_rsm::snapshot_to_vec(self)
    }

    /// Streamed slot by slot ([`crate::snapshot`]), into exactly the space the size hint
    /// reserves (no second copy of a gigabyte state, no reallocation).
    fn snapshot_into(&self, out: &mut dyn Write) -> io::Result<()> {
        snapshot::write_sorted(self.iter(), out)
    }

    /// Exact: the sum of the keys' and records' lengths and their varints.
    fn snapshot_size_hint(&self) -> u64 {
        snapshot::encoded_len(self.iter())
    }

    /// A view of every key and slot (a clone of each key, a reference to each value: no
    /// value is copied), sorted and encoded when the job runs.
    fn snapshot_job(&self) -> SnapshotJob {
        let view: Vec<(Vec<u8>, Slot)> = (self.data.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Box::new(move |out: &mut dyn Write| {
            snapshot::write_sorted(view.iter().map(|(k, v)| (&k[..], v)), out)
        })
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), SnapshotError> {
        self.restore_from(&mut &data[..])
    }

    /// Slot by slot: the old state goes first (a restore replaces it whole, and holding both
    /// would double a large replica's memory); on an error the store is left empty.
    fn restore_from(&mut self, r: &mut dyn Read) -> Result<(), SnapshotError> {
        self.clear();
        let read = snapshot::read_slots(r, |k, slot| self.insert_slot(k, slot));
        if read.is_err() {
            self.clear();
        }
        read
    }

    fn check_invariants(&self, depth: CheckDepth) {
        if depth == CheckDepth::Full {
            self.check_expiry_index();
        }
    }
}

/// `old` followed by `part`. In place when `old` is the only reference to its buffer (no
/// snapshot view or log entry shares it), growing by doubling while the parts are smaller
/// than the value, so a stream of small appends costs amortised O(1) a byte; into a new,
/// exactly sized buffer otherwise (a part at least as large as the value, or a shared
/// value), so a large value does not carry up to its size again in spare capacity.
pub(crate) fn append_to(old: Value, part: &[u8]) -> Value {
    let old = if part.len() < old.len() {
        match old.try_into_mut() {
            Ok(mut value) => {
                value.extend_from_slice(part);
                return value.freeze();
            }
            Err(shared) => shared,
        }
    } else {
        old
    };
    let mut value = Vec::with_capacity(old.len() + part.len());
    value.extend_from_slice(&old);
    value.extend_from_slice(part);
    Value::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: &str) -> KvCommand {
        KvCommand::Put {
            key: k.into(),
            value: Value::copy_from_slice(v.as_bytes()),
        }
    }
    fn append(k: &str, v: &str) -> KvCommand {
        KvCommand::Append {
            key: k.into(),
            value: Value::copy_from_slice(v.as_bytes()),
        }
    }
    fn get(k: &str) -> KvCommand {
        KvCommand::Get { key: k.into() }
    }

    #[test]
    fn operations_and_replies() {
        let mut kv = Kv::default();
        assert_eq!(kv.apply(get("a"), &ApplyCtx::zero()), KvReply::Value(None));
        assert_eq!(kv.apply(put("a", "x"), &ApplyCtx::zero()), KvReply::Done);
        assert_eq!(
            kv.apply(append("a", "yz"), &ApplyCtx::zero()),
            KvReply::Len(3)
        );
        assert_eq!(
            kv.apply(append("b", "q"), &ApplyCtx::zero()),
            KvReply::Len(1)
        );
        assert_eq!(
            kv.apply(get("a"), &ApplyCtx::zero()),
            KvReply::Value(Some(b"xyz".to_vec()))
        );
        assert_eq!(
            kv.apply(KvCommand::Delete { key: "a".into() }, &ApplyCtx::zero()),
            KvReply::Deleted(true)
        );
        assert_eq!(
            kv.apply(KvCommand::Delete { key: "a".into() }, &ApplyCtx::zero()),
            KvReply::Deleted(false)
        );
        assert_eq!(kv.apply(get("a"), &ApplyCtx::zero()), KvReply::Value(None));
    }

    #[test]
    fn incr_counts_and_refuses_non_integers() {
        let mut kv = Kv::default();
        let incr = |by| KvCommand::Incr {
            key: "n".into(),
            by,
        };
        assert_eq!(kv.apply(incr(1), &ApplyCtx::zero()), KvReply::Int(1));
        assert_eq!(kv.apply(incr(-5), &ApplyCtx::zero()), KvReply::Int(-4));
        assert_eq!(kv.get(b"n"), Some(&b"-4"[..]));
        kv.apply(put("n", "x"), &ApplyCtx::zero());
        assert_eq!(
            kv.apply(incr(1), &ApplyCtx::zero()),
            KvReply::Error(KvError::NotAnInteger)
        );
        // Not integers as Redis reads them, though Rust's `parse` takes them; left unchanged.
        for stored in ["0123", "+5", "-0", " 1", "1 ", ""] {
            kv.apply(put("n", stored), &ApplyCtx::zero());
            assert_eq!(
                kv.apply(incr(1), &ApplyCtx::zero()),
                KvReply::Error(KvError::NotAnInteger),
                "{stored:?}"
            );
            assert_eq!(kv.get(b"n"), Some(stored.as_bytes()));
        }
        kv.apply(put("n", &i64::MAX.to_string()), &ApplyCtx::zero());
        assert_eq!(
            kv.apply(incr(1), &ApplyCtx::zero()),
            KvReply::Error(KvError::Overflow)
        );
        assert_eq!(kv.get(b"n"), Some(i64::MAX.to_string().as_bytes()));
    }

    #[test]
    fn old_value_appends_return_what_they_replaced() {
        let mut kv = Kv::new(AppendReply::OldValue);
        assert_eq!(
            kv.apply(append("k", "1"), &ApplyCtx::zero()),
            KvReply::Value(Some(vec![]))
        );
        assert_eq!(
            kv.apply(append("k", "2"), &ApplyCtx::zero()),
            KvReply::Value(Some(b"1".to_vec()))
        );
        assert_eq!(kv.get(b"k"), Some(&b"12"[..]));
    }

    #[test]
    fn snapshots_do_not_depend_on_insertion_order() {
        let (mut a, mut b) = (Kv::default(), Kv::default());
        for i in 0..100 {
            a.apply(put(&format!("k{i}"), "v"), &ApplyCtx::zero());
            b.apply(put(&format!("k{}", 99 - i), "v"), &ApplyCtx::zero());
        }
        assert_eq!(a.snapshot(), b.snapshot());
    }

    /// The snapshot reserves exactly what it encodes (no reallocation of a large state).
    #[test]
    fn the_snapshot_size_is_computed_exactly() {
        let mut kv = Kv::default();
        for i in 0..200 {
            kv.apply(
                put(&format!("k{i}"), &"x".repeat(i * 10)),
                &ApplyCtx::zero(),
            );
        }
        let snap = kv.snapshot();
        assert_eq!(snap.capacity(), snap.len(), "reserved exactly");
        assert_eq!(kv.snapshot_size_hint(), snap.len() as u64);
    }

    /// A snapshot job encodes the state as it was when the job was taken, whatever is
    /// written after (values are copied on write, not shared with the job's view).
    #[test]
    fn a_snapshot_job_sees_the_state_when_it_was_taken() {
        let mut kv = Kv::default();
        let at = ApplyCtx::zero();
        kv.apply(put("a", "1"), &at);
        kv.apply(put("b", "22"), &at);
        let expected = kv.snapshot();
        let job = kv.snapshot_job();
        kv.apply(put("a", "changed"), &at);
        kv.apply(
            KvCommand::Append {
                key: b"b".to_vec(),
                value: Value::from_static(b"333"),
            },
            &at,
        );
        kv.apply(put("c", "new"), &at);
        kv.apply(KvCommand::Delete { key: b"a".to_vec() }, &at);
        let mut out = Vec::new();
        job(&mut out).unwrap();
        assert_eq!(out, expected);
        assert_eq!(kv.get(b"b"), Some(&b"22333"[..]));
        let mut back = Kv::default();
        back.restore(&out).unwrap();
        assert_eq!(
            (back.get(b"a"), back.get(b"b"), back.len()),
            (Some(&b"1"[..]), Some(&b"22"[..]), 2)
        );
    }

    /// Small appends extend an unshared value in place (see `append_to`); a value a snapshot
    /// view holds is copied first, so the view keeps what it saw.
    #[test]
    fn a_stream_of_appends_builds_the_value_and_spares_views() {
        let mut kv = Kv::default();
        let at = ApplyCtx::zero();
        let mut expected = Vec::new();
        for i in 0..1000u32 {
            let part = [b'a' + (i % 26) as u8];
            expected.extend_from_slice(&part);
            kv.apply(
                KvCommand::Append {
                    key: b"k".to_vec(),
                    value: Value::copy_from_slice(&part),
                },
                &at,
            );
            if i == 500 {
                let seen = kv.snapshot();
                let job = kv.snapshot_job();
                kv.apply(append("k", "!"), &at);
                expected.push(b'!');
                let mut out = Vec::new();
                job(&mut out).expect("writing to a Vec cannot fail");
                assert_eq!(out, seen, "the view is unchanged by later appends");
            }
        }
        assert_eq!(kv.get(b"k"), Some(&expected[..]));
    }

    #[test]
    fn snapshot_round_trips_and_rejects_garbage() {
        let mut kv = Kv::default();
        kv.apply(put("a", "1"), &ApplyCtx::zero());
        kv.apply(put("b", "2"), &ApplyCtx::zero());
        let mut other = Kv::default();
        other.restore(&kv.snapshot()).unwrap();
        assert_eq!(other.get(b"b"), Some(&b"2"[..]));
        assert_eq!(other.len(), 2);
        assert!(other.restore(&[0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn oversized_commands_are_refused_before_the_log() {
        let big = KvCommand::Put {
            key: vec![0; crate::MAX_KEY_BYTES + 1],
            value: Value::new(),
        };
        assert!(matches!(
            Kv::validate(&big),
            Err(KvReply::Error(crate::KvError::KeyTooLarge { .. }))
        ));
        assert!(Kv::validate(&put("k", "v")).is_ok());
    }
}
