//! A stream: entries with increasing IDs, each a list of field/value pairs (Redis's XADD,
//! XRANGE …).
//!
//! Invariants:
//! 1. every entry's ID is at most `last_id` (IDs only grow: an ID, once given, is never
//!    given again, even after its entry is deleted), and `entries_added` counts every entry
//!    ever added (XSETID may set both);
//! 2. every entry lies in a node: `nodes` has a key at most the entry's ID, and every node
//!    holds at least one entry (the entries from its key to the next node's key).
//!
//! The nodes are Redis's radix tree nodes (listpacks of at most [`NODE_MAX_ENTRIES`]
//! appended entries), kept as Redis keeps them because its replies show them: approximate
//! trimming (`MAXLEN ~ n`) removes only whole nodes, and XINFO STREAM counts them. They are a
//! function of the commands applied, as the entries are, so every replica agrees.

use std::collections::BTreeMap;
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
        let nodes: Vec<StreamId> = self.nodes.keys().copied().collect();
        for node in nodes {
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
        Self::id_len(self.last_id)
            + varint_len(self.entries_added)
            + Self::id_len(self.max_deleted_id)
            + varint_len(self.entries.len() as u64)
            + entries
            + varint_len(self.nodes.len() as u64)
            + nodes
    }

    /// `[last_id][entries_added][max_deleted_id][count]` then per entry in ID order
    /// `[id][n][n × (len, bytes)]`, then `[node count]` and per node in ID order `[id][put]`;
    /// an ID is two varints.
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
