//! A stream: entries with increasing IDs, each a list of field/value pairs (Redis's XADD,
//! XRANGE …).
//!
//! Invariants:
//! 1. every entry's ID is at most `last_id` (IDs only grow: an ID, once given, is never
//!    given again, even after its entry is deleted), and `entries_added` counts every entry
//!    ever added (XSETID may set both);
//! 2. every entry lies in a node: `nodes` has a key at most the entry's ID, and every node
//!    holds at least one entry (the entries from its key to the next node's key);
//! 3. in each consumer group, an ID is in a consumer's `pel` exactly when the group's `pel`
//!    has it with that consumer's name (Redis shares one record between the two lists).
//!
//! The nodes are Redis's radix tree nodes (listpacks of at most [`NODE_MAX_ENTRIES`]
//! appended entries), kept as Redis keeps them because its replies show them: approximate
//! trimming (`MAXLEN ~ n`) removes only whole nodes, and XINFO STREAM counts them. They are a
//! function of the commands applied, as the entries are, so every replica agrees.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use flotilla_rsm::stream::{varint_len, write_varint};

use crate::slot::{read_bytes, read_varint};

/// How many entries Redis puts in one node (its `stream-node-max-entries` default) before it
/// starts another. (Redis also starts one when a node passes `stream-node-max-bytes`, 4096
/// bytes of its own encoding, which Flotilla does not reproduce: only streams of large
/// entries differ.)
pub const NODE_MAX_ENTRIES: u64 = 100;

/// An entry's ID: milliseconds, then a sequence number within the millisecond.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    pub const MIN: StreamId = StreamId { ms: 0, seq: 0 };
    pub const MAX: StreamId = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };

    /// The next ID, `None` after the last one.
    pub fn next(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (u64::MAX, u64::MAX) => None,
            (ms, u64::MAX) => Some(StreamId { ms: ms + 1, seq: 0 }),
            (ms, seq) => Some(StreamId { ms, seq: seq + 1 }),
        }
    }

    /// The previous ID, `None` before 0-0.
    pub fn prev(self) -> Option<StreamId> {
        match (self.ms, self.seq) {
            (0, 0) => None,
            (ms, 0) => Some(StreamId {
                ms: ms - 1,
                seq: u64::MAX,
            }),
            (ms, seq) => Some(StreamId { ms, seq: seq - 1 }),
        }
    }
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

/// How a trim decides what goes (XADD's and XTRIM's MAXLEN and MINID).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    /// Keep at most this many entries.
    MaxLen(u64),
    /// Keep no entry below this ID.
    MinId(StreamId),
}

/// A message delivered to a consumer of a group and not yet acknowledged (Redis's NACK).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// The consumer it was delivered to.
    pub consumer: Vec<u8>,
    /// When it was last delivered (ms, by the replicated clock).
    pub delivery_time: u64,
    /// How many times it was delivered.
    pub delivery_count: u64,
}

/// A consumer of a group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consumer {
    /// When it last read or claimed (ms, by the replicated clock).
    pub seen_time: u64,
    /// The IDs pending with it (each also in the group's `pel`).
    pub pel: BTreeSet<StreamId>,
}

/// A consumer group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Group {
    /// The last ID delivered to the group.
    pub last_id: StreamId,
    /// How many entries the group read (its logical position), `None` when unknown (Redis's
    /// `-1`, after an arbitrary XGROUP SETID).
    pub entries_read: Option<u64>,
    /// Messages delivered and not acknowledged, by ID.
    pub pel: BTreeMap<StreamId, Pending>,
    /// Consumers by name.
    pub consumers: BTreeMap<Vec<u8>, Consumer>,
}

impl Group {
    /// Creates the consumer if absent; whether it did. Either way, it was seen `now`.
    pub fn touch_consumer(&mut self, name: &[u8], now: u64) -> bool {
        match self.consumers.get_mut(name) {
            Some(c) => {
                c.seen_time = now;
                false
            }
            None => {
                self.consumers.insert(
                    name.to_vec(),
                    Consumer {
                        seen_time: now,
                        pel: BTreeSet::new(),
                    },
                );
                true
            }
        }
    }

    /// Removes `id` from the pending lists; whether it was pending.
    pub fn ack(&mut self, id: StreamId) -> bool {
        match self.pel.remove(&id) {
            Some(p) => {
                if let Some(c) = self.consumers.get_mut(&p.consumer) {
                    c.pel.remove(&id);
                }
                true
            }
            None => false,
        }
    }

    /// Makes `id` pending with `consumer` (which must exist), moving it from another
    /// consumer if needed; returns its record to update.
    pub fn assign(&mut self, id: StreamId, consumer: &[u8], now: u64) -> &mut Pending {
        if let Some(old) = self.pel.get(&id).map(|p| p.consumer.clone()) {
            if old != consumer {
                if let Some(c) = self.consumers.get_mut(&old) {
                    c.pel.remove(&id);
                }
            }
        }
        if let Some(c) = self.consumers.get_mut(consumer) {
            c.pel.insert(id);
        }
        let p = self.pel.entry(id).or_insert_with(|| Pending {
            consumer: consumer.to_vec(),
            delivery_time: now,
            delivery_count: 0,
        });
        p.consumer = consumer.to_vec();
        p
    }

    /// Removes a consumer and its pending messages; how many it had.
    pub fn remove_consumer(&mut self, name: &[u8]) -> Option<usize> {
        let c = self.consumers.remove(name)?;
        for id in &c.pel {
            self.pel.remove(id);
        }
        Some(c.pel.len())
    }
}

/// A stream's entries and its ID bookkeeping.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stream {
    /// Entries by ID: each a flat list `field, value, field, value …`.
    pub entries: BTreeMap<StreamId, Vec<Vec<u8>>>,
    /// The greatest ID ever given (0-0 for a new stream).
    pub last_id: StreamId,
    /// Entries ever added.
    pub entries_added: u64,
    /// The greatest ID of an entry deleted (XDEL, XTRIM), 0-0 if none.
    pub max_deleted_id: StreamId,
    /// Redis's nodes, by the ID of the first entry put in each: how many entries were put in
    /// it (deleted ones included, as Redis counts them when it decides to start a new node).
    pub nodes: BTreeMap<StreamId, u64>,
    /// Consumer groups by name.
    pub groups: BTreeMap<Vec<u8>, Group>,
}

impl Stream {
    pub fn new() -> Stream {
        Stream::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first entry's ID, 0-0 if none (Redis's `recorded-first-entry-id`).
    pub fn first_id(&self) -> StreamId {
        self.entries.keys().next().copied().unwrap_or_default()
    }

    /// Whether an entry between `start` and `end` may have been deleted (Redis's
    /// `streamRangeHasTombstones`: it knows only the greatest deleted ID).
    pub fn range_has_tombstones(&self, start: StreamId, end: StreamId) -> bool {
        if self.is_empty() || self.max_deleted_id == StreamId::MIN {
            return false;
        }
        if self.first_id() > self.max_deleted_id {
            return false;
        }
        start <= self.max_deleted_id && self.max_deleted_id <= end
    }

    /// How many entries were added up to `id`, when that can be known (Redis's
    /// `streamEstimateDistanceFromFirstEverEntry`).
    pub fn entries_read_at(&self, id: StreamId) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if self.is_empty() && id <= self.last_id {
            return Some(self.entries_added);
        }
        if id == self.last_id {
            return Some(self.entries_added);
        } else if id > self.last_id {
            return None;
        }
        let first = self.first_id();
        if self.max_deleted_id == StreamId::MIN || self.max_deleted_id < first {
            if id < first {
                return Some(self.entries_added.saturating_sub(self.len() as u64));
            } else if id == first {
                return Some(self.entries_added.saturating_sub(self.len() as u64) + 1);
            }
        }
        None
    }

    /// A group's lag: entries added it has not read, when that can be known (Redis's
    /// `streamReplyWithCGLag`).
    pub fn lag(&self, g: &Group) -> Option<u64> {
        if self.entries_added == 0 {
            return Some(0);
        }
        if let Some(read) = g.entries_read {
            if !self.range_has_tombstones(g.last_id, StreamId::MAX) {
                return Some(self.entries_added.saturating_sub(read));
            }
        }
        (self.entries_read_at(g.last_id)).map(|read| self.entries_added.saturating_sub(read))
    }

    /// Adds an entry with `id`, which must be above `last_id`.
    pub fn append(&mut self, id: StreamId, fields: Vec<Vec<u8>>) {
        debug_assert!(
            id > self.last_id,
            "stream IDs only grow: {id} after {}",
            self.last_id
        );
        match self.nodes.iter_mut().next_back() {
            Some((_, put)) if *put < NODE_MAX_ENTRIES => *put += 1,
            _ => {
                self.nodes.insert(id, 1);
            }
        }
        self.entries.insert(id, fields);
        self.last_id = id;
        self.entries_added += 1;
    }

    /// The key of the node holding `id`'s place.
    fn node_of(&self, id: StreamId) -> Option<StreamId> {
        self.nodes.range(..=id).next_back().map(|(k, _)| *k)
    }

    /// The IDs of the entries in the node keyed `node`.
    fn node_entries(&self, node: StreamId) -> impl Iterator<Item = StreamId> + '_ {
        let end = (self.nodes.range(node..).nth(1)).map(|(k, _)| *k);
        (self.entries.range(node..))
            .map(|(id, _)| *id)
            .take_while(move |id| end.is_none_or(|end| *id < end))
    }

    /// Removes the entry `id` (not touching `max_deleted_id`, which XDEL raises and a trim
    /// does not); a node left empty goes, as in Redis. Whether there was one.
    pub fn delete(&mut self, id: StreamId) -> bool {
        if self.entries.remove(&id).is_none() {
            return false;
        }
        if let Some(node) = self.node_of(id) {
            if self.node_entries(node).next().is_none() {
                self.nodes.remove(&node);
            }
        }
        true
    }

    /// Trims from the oldest entry as Redis's `streamTrim` does: whole nodes while the rule
    /// allows; then, unless `approx`, entries of the next node one by one. No more than
    /// `limit` entries go (0: no limit); with `approx`, a node that would pass it stops the
    /// trim. Returns how many entries went.
    pub fn trim(&mut self, rule: Trim, approx: bool, limit: u64) -> u64 {
        let mut deleted = 0u64;
        // Node by node from the oldest, looked up as the trim goes (most trims stop at the
        // first node: collecting every node's key would cost each XADD the stream's size).
        let mut next_node = self.nodes.keys().next().copied();
        while let Some(node) = next_node {
            next_node = (self.nodes.range(node..).nth(1)).map(|(k, _)| *k);
            if let Trim::MaxLen(max) = rule {
                if self.len() as u64 <= max {
                    break;
                }
            }
            let ids: Vec<StreamId> = self.node_entries(node).collect();
            let live = ids.len() as u64;
            if limit != 0 && deleted + live > limit {
                break;
            }
            let whole = match rule {
                Trim::MaxLen(max) => self.len() as u64 - live >= max,
                Trim::MinId(min) => ids.last().is_none_or(|last| *last < min),
            };
            if whole {
                for id in &ids {
                    self.entries.remove(id);
                }
                self.nodes.remove(&node);
                deleted += live;
                continue;
            }
            if approx {
                break;
            }
            for id in ids {
                let stop = match rule {
                    Trim::MaxLen(max) => self.len() as u64 <= max,
                    Trim::MinId(min) => id >= min,
                };
                if stop {
                    break;
                }
                // The node keeps at least one entry (else it would have gone whole).
                self.entries.remove(&id);
                deleted += 1;
            }
            break;
        }
        deleted
    }

    fn id_len(id: StreamId) -> u64 {
        varint_len(id.ms) + varint_len(id.seq)
    }

    fn write_id(out: &mut dyn Write, id: StreamId) -> io::Result<()> {
        write_varint(out, id.ms)?;
        write_varint(out, id.seq)
    }

    fn read_id(input: &mut &[u8]) -> Option<StreamId> {
        Some(StreamId {
            ms: read_varint(input)?,
            seq: read_varint(input)?,
        })
    }

    pub(crate) fn payload_len(&self) -> u64 {
        let entries: u64 = (self.entries.iter())
            .map(|(id, fields)| {
                Self::id_len(*id)
                    + varint_len(fields.len() as u64)
                    + fields
                        .iter()
                        .map(|f| varint_len(f.len() as u64) + f.len() as u64)
                        .sum::<u64>()
            })
            .sum();
        let nodes: u64 = (self.nodes.iter())
            .map(|(id, put)| Self::id_len(*id) + varint_len(*put))
            .sum();
        let bytes = |b: &[u8]| varint_len(b.len() as u64) + b.len() as u64;
        let groups: u64 = (self.groups.iter())
            .map(|(name, g)| {
                bytes(name)
                    + Self::id_len(g.last_id)
                    + varint_len(g.entries_read.map_or(0, |n| n.wrapping_add(1)))
                    + varint_len(g.consumers.len() as u64)
                    + (g.consumers.iter())
                        .map(|(n, c)| bytes(n) + varint_len(c.seen_time))
                        .sum::<u64>()
                    + varint_len(g.pel.len() as u64)
                    + (g.pel.iter())
                        .map(|(id, p)| {
                            Self::id_len(*id)
                                + bytes(&p.consumer)
                                + varint_len(p.delivery_time)
                                + varint_len(p.delivery_count)
                        })
                        .sum::<u64>()
            })
            .sum();
        Self::id_len(self.last_id)
            + varint_len(self.entries_added)
            + Self::id_len(self.max_deleted_id)
            + varint_len(self.entries.len() as u64)
            + entries
            + varint_len(self.nodes.len() as u64)
            + nodes
            + varint_len(self.groups.len() as u64)
            + groups
    }

    /// `[last_id][entries_added][max_deleted_id][count]` then per entry in ID order
    /// `[id][n][n × (len, bytes)]`, then `[node count]` and per node in ID order `[id][put]`,
    /// then `[group count]` and per group in name order `[name][last_id][entries_read + 1, 0
    /// if unknown][consumer count]` and per consumer in name order `[name][seen_time]`, then
    /// `[pending count]` and per pending message in ID order `[id][consumer name]
    /// [delivery_time][delivery_count]` (a consumer's own list is rebuilt from these). An ID
    /// is two varints, a name a varint length and its bytes.
    pub(crate) fn write_payload(&self, out: &mut dyn Write) -> io::Result<()> {
        Self::write_id(out, self.last_id)?;
        write_varint(out, self.entries_added)?;
        Self::write_id(out, self.max_deleted_id)?;
        write_varint(out, self.entries.len() as u64)?;
        for (id, fields) in &self.entries {
            Self::write_id(out, *id)?;
            write_varint(out, fields.len() as u64)?;
            for f in fields {
                write_varint(out, f.len() as u64)?;
                out.write_all(f)?;
            }
        }
        write_varint(out, self.nodes.len() as u64)?;
        for (id, put) in &self.nodes {
            Self::write_id(out, *id)?;
            write_varint(out, *put)?;
        }
        write_varint(out, self.groups.len() as u64)?;
        for (name, g) in &self.groups {
            write_varint(out, name.len() as u64)?;
            out.write_all(name)?;
            Self::write_id(out, g.last_id)?;
            write_varint(out, g.entries_read.map_or(0, |n| n.wrapping_add(1)))?;
            write_varint(out, g.consumers.len() as u64)?;
            for (n, c) in &g.consumers {
                write_varint(out, n.len() as u64)?;
                out.write_all(n)?;
                write_varint(out, c.seen_time)?;
            }
            write_varint(out, g.pel.len() as u64)?;
            for (id, p) in &g.pel {
                Self::write_id(out, *id)?;
                write_varint(out, p.consumer.len() as u64)?;
                out.write_all(&p.consumer)?;
                write_varint(out, p.delivery_time)?;
                write_varint(out, p.delivery_count)?;
            }
        }
        Ok(())
    }

    /// Reads what [`Stream::write_payload`] wrote; `None` for garbage, including a stream
    /// that breaks the invariants (an entry above `last_id` or outside every node, an empty
    /// node).
    pub(crate) fn read_payload(input: &mut &[u8]) -> Option<Stream> {
        let mut s = Stream {
            last_id: Self::read_id(input)?,
            entries_added: read_varint(input)?,
            max_deleted_id: Self::read_id(input)?,
            entries: BTreeMap::new(),
            nodes: BTreeMap::new(),
            groups: BTreeMap::new(),
        };
        let count = read_varint(input)?;
        for _ in 0..count {
            let id = Self::read_id(input)?;
            let n = read_varint(input)?;
            // Each field takes at least a byte: a count beyond the input is garbage, refused
            // before it sizes anything.
            if n > input.len() as u64 {
                return None;
            }
            let fields = (0..n)
                .map(|_| read_bytes(input))
                .collect::<Option<Vec<_>>>()?;
            s.entries.insert(id, fields);
        }
        let nodes = read_varint(input)?;
        for _ in 0..nodes {
            let id = Self::read_id(input)?;
            let put = read_varint(input)?;
            s.nodes.insert(id, put);
        }
        // Every count below is of items of at least a byte each: loops bounded by the input,
        // and nothing is sized by a count.
        let ngroups = read_varint(input)?;
        for _ in 0..ngroups {
            let name = read_bytes(input)?;
            let mut g = Group {
                last_id: Self::read_id(input)?,
                entries_read: read_varint(input)?.checked_sub(1),
                ..Group::default()
            };
            let nconsumers = read_varint(input)?;
            for _ in 0..nconsumers {
                let n = read_bytes(input)?;
                let c = Consumer {
                    seen_time: read_varint(input)?,
                    pel: BTreeSet::new(),
                };
                g.consumers.insert(n, c);
            }
            let npending = read_varint(input)?;
            for _ in 0..npending {
                let id = Self::read_id(input)?;
                let consumer = read_bytes(input)?;
                let p = Pending {
                    delivery_time: read_varint(input)?,
                    delivery_count: read_varint(input)?,
                    consumer,
                };
                // A message pending with a consumer the group does not have is garbage.
                g.consumers.get_mut(&p.consumer)?.pel.insert(id);
                g.pel.insert(id, p);
            }
            s.groups.insert(name, g);
        }
        let ordered = (s.entries.keys().next_back()).is_none_or(|last| *last <= s.last_id);
        let placed = (s.entries.keys().next()).is_none_or(|first| s.node_of(*first).is_some());
        let full = (s.nodes.keys()).all(|n| s.node_entries(*n).next().is_some());
        (count == s.entries.len() as u64 && ordered && placed && full).then_some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ms: u64, seq: u64) -> StreamId {
        StreamId { ms, seq }
    }

    #[test]
    fn payload_round_trips() {
        let mut s = Stream::new();
        for i in 1..250u64 {
            s.append(
                id(1000 * i, i),
                vec![b"f".to_vec(), vec![b'v'; i as usize % 7]],
            );
        }
        s.delete(id(2000, 2));
        s.max_deleted_id = id(2000, 2);
        let mut g = Group {
            last_id: id(3000, 3),
            entries_read: Some(3),
            ..Group::default()
        };
        g.touch_consumer(b"alice", 7);
        g.touch_consumer(b"bob", 8);
        g.assign(id(1000, 1), b"alice", 9).delivery_count = 2;
        g.assign(id(3000, 3), b"alice", 9);
        g.assign(id(3000, 3), b"bob", 10);
        assert_eq!(g.consumers[&b"alice"[..]].pel.len(), 1);
        s.groups.insert(b"g".to_vec(), g);
        s.groups.insert(b"unknown".to_vec(), Group::default());
        assert_eq!(s.nodes.len(), 3);
        let mut out = Vec::new();
        s.write_payload(&mut out).unwrap();
        assert_eq!(out.len() as u64, s.payload_len());
        assert_eq!(Stream::read_payload(&mut &out[..]), Some(s.clone()));
        assert_eq!(Stream::read_payload(&mut &out[..out.len() - 1]), None);
        let empty = Stream::new();
        let mut out = Vec::new();
        empty.write_payload(&mut out).unwrap();
        assert_eq!(Stream::read_payload(&mut &out[..]), Some(empty));
    }

    /// Garbage (truncations, huge counts, broken invariants) is refused, never a panic or an
    /// allocation by the count it claims.
    #[test]
    fn garbage_is_refused() {
        let mut s = Stream::new();
        s.append(id(5, 0), vec![b"f".to_vec(), b"v".to_vec()]);
        let mut out = Vec::new();
        s.write_payload(&mut out).unwrap();
        for cut in 0..out.len() {
            assert_eq!(Stream::read_payload(&mut &out[..cut]), None, "cut at {cut}");
        }
        // A field count of u64::MAX.
        let mut huge = Vec::new();
        for v in [0u64, 0, 0, 0, 0, 0, 1, 1, 1, u64::MAX] {
            write_varint(&mut huge, v).unwrap();
        }
        assert_eq!(Stream::read_payload(&mut &huge[..]), None);
        // An entry above last_id.
        let mut bad = s.clone();
        bad.last_id = id(1, 0);
        let mut out = Vec::new();
        bad.write_payload(&mut out).unwrap();
        assert_eq!(Stream::read_payload(&mut &out[..]), None);
        // An entry in no node.
        let mut bad = s.clone();
        bad.nodes = BTreeMap::from([(id(9, 0), 1)]);
        let mut out = Vec::new();
        bad.write_payload(&mut out).unwrap();
        assert_eq!(Stream::read_payload(&mut &out[..]), None);
    }

    #[test]
    fn nodes_fill_then_empty_ones_go() {
        let mut s = Stream::new();
        for i in 1..=NODE_MAX_ENTRIES + 1 {
            s.append(id(i, 0), Vec::new());
        }
        assert_eq!(s.nodes.len(), 2);
        assert!(s.delete(id(NODE_MAX_ENTRIES + 1, 0)));
        assert_eq!(s.nodes.len(), 1, "the emptied node goes");
        // The first node is full (deleted entries count): the next entry starts a new one.
        assert!(s.delete(id(1, 0)));
        s.append(id(500, 0), Vec::new());
        assert_eq!(s.nodes.len(), 2);
    }

    /// Redis's own figures (unit/type/stream "XTRIM with MAXLEN option basic test").
    #[test]
    fn approximate_trims_remove_whole_nodes() {
        let mut s = Stream::new();
        for i in 1..=1000 {
            s.append(id(i, 0), Vec::new());
        }
        assert_eq!(s.trim(Trim::MaxLen(666), false, 0), 334);
        assert_eq!(s.trim(Trim::MaxLen(555), false, 0), 111);
        s.trim(Trim::MaxLen(444), true, 10_000);
        assert_eq!(s.len(), 500);
        s.trim(Trim::MaxLen(400), true, 10_000);
        assert_eq!(s.len(), 400);
        assert_eq!(s.trim(Trim::MinId(id(650, 0)), false, 0), 49);
        assert_eq!(s.first_id(), id(650, 0));
        // A limit below a node's entries stops an approximate trim.
        assert_eq!(s.trim(Trim::MaxLen(0), true, 10), 0);
    }
}
