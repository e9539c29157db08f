//! A stream: entries with increasing IDs, each a list of field/value pairs (Redis's XADD,
//! XRANGE …).
//!
//! Invariant: every entry's ID is at most `last_id` (IDs only grow: an ID, once given, is
//! never given again, even after its entry is deleted), and `entries_added` counts every
//! entry ever added.

use std::collections::BTreeMap;
use std::io::{self, Write};

use flotilla_rsm::stream::{varint_len, write_varint};

use crate::slot::{read_bytes, read_varint};

/// An entry's ID: milliseconds, then a sequence number within the millisecond.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl std::fmt::Display for StreamId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
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
        Self::id_len(self.last_id)
            + varint_len(self.entries_added)
            + Self::id_len(self.max_deleted_id)
            + varint_len(self.entries.len() as u64)
            + entries
    }

    /// `[last_id][entries_added][max_deleted_id][count]` then per entry in ID order
    /// `[id][n][n × (len, bytes)]`; an ID is two varints.
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
        Ok(())
    }

    pub(crate) fn read_payload(input: &mut &[u8]) -> Option<Stream> {
        let mut s = Stream {
            last_id: Self::read_id(input)?,
            entries_added: read_varint(input)?,
            max_deleted_id: Self::read_id(input)?,
            entries: BTreeMap::new(),
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
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trips() {
        let mut s = Stream::new();
        for i in 1..4u64 {
            let id = StreamId {
                ms: 1000 * i,
                seq: i,
            };
            s.entries
                .insert(id, vec![b"f".to_vec(), vec![b'v'; i as usize]]);
            s.last_id = id;
            s.entries_added += 1;
        }
        s.max_deleted_id = StreamId { ms: 5, seq: 0 };
        let mut out = Vec::new();
        s.write_payload(&mut out).unwrap();
        assert_eq!(out.len() as u64, s.payload_len());
        assert_eq!(Stream::read_payload(&mut &out[..]), Some(s));
        assert_eq!(Stream::read_payload(&mut &out[..out.len() - 1]), None);
    }
}
