//! What the store keeps per key: the value, its expiry time and its version, and the record
//! encoding a key travels in (snapshots and shard pages).
//!
//! # Record encoding
//! `[kind: u8][expire_at: varint][version: varint][payload]`. Kind 0, a string: the payload
//! is its bytes. Kind 1, a hash: a varint count, then each field and value (in the hash's order)
//! as a varint length and its bytes. Kind 2, a list, and kind 3, a set: a varint count, then
//! each element (in list order; in byte order) as a varint length and its bytes. Kind 4, a
//! sorted set ([`ZSet`]), and kind 5, a stream ([`Stream`]): as their own modules say. Written as one length-prefixed byte string, so a
//! snapshot stays "pairs of byte strings" and a shard page carries a record as it carries a
//! value.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Write};
use std::sync::Arc;

use flotilla_rsm::stream::{varint_len, write_varint};

use crate::store::Value;
use crate::stream::Stream;
use crate::zset::ZSet;

/// Kind byte of a string record.
const STRING: u8 = 0;
/// Kind byte of a hash record.
const HASH: u8 = 1;
/// Kind byte of a list record.
const LIST: u8 = 2;
/// Kind byte of a set record.
const SET: u8 = 3;
/// Kind byte of a sorted set record.
const ZSET: u8 = 4;
/// Kind byte of a stream record.
const STREAM: u8 = 5;

/// A hash's fields and values, in the order the fields were added, as Redis keeps a small
/// hash (HGETALL answers in that order). Every replica applies the same writes in the same
/// order, so every replica's order, and encoding, is the same.
pub type Hash = indexmap::IndexMap<Vec<u8>, Vec<u8>, rustc_hash::FxBuildHasher>;

/// A list's elements, head first.
pub type List = VecDeque<Vec<u8>>;

/// A set's members, in byte order (so that it encodes, and SPOP draws, the same on every
/// replica).
pub type Set = BTreeSet<Vec<u8>>;

/// A key's value, of one of Redis's types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data {
    /// A string: a shared buffer, often a view of the log entry that wrote it.
    Str(Value),
    /// A hash, shared by snapshot views; a write copies it first if a view holds it
    /// (`Arc::make_mut`), so a view keeps what it saw.
    Hash(Arc<Hash>),
    /// A list; shared and copied on write as a hash is.
    List(Arc<List>),
    /// A set; shared and copied on write as a hash is.
    Set(Arc<Set>),
    /// A sorted set; shared and copied on write as a hash is.
    ZSet(Arc<ZSet>),
    /// A stream; shared and copied on write as a hash is.
    Stream(Arc<Stream>),
}

impl Data {
    /// Redis's name of the type (`TYPE`).
    pub fn type_name(&self) -> &'static str {
        match self {
            Data::Str(_) => "string",
            Data::Hash(_) => "hash",
            Data::List(_) => "list",
            Data::Set(_) => "set",
            Data::ZSet(_) => "zset",
            Data::Stream(_) => "stream",
        }
    }

    /// The record's kind byte.
    fn kind(&self) -> u8 {
        match self {
            Data::Str(_) => STRING,
            Data::Hash(_) => HASH,
            Data::List(_) => LIST,
            Data::Set(_) => SET,
            Data::ZSet(_) => ZSET,
            Data::Stream(_) => STREAM,
        }
    }

    fn payload_len(&self) -> u64 {
        match self {
            Data::Str(v) => v.len() as u64,
            Data::Hash(h) => {
                let items: u64 = (h.iter())
                    .map(|(f, v)| {
                        varint_len(f.len() as u64)
                            + f.len() as u64
                            + varint_len(v.len() as u64)
                            + v.len() as u64
                    })
                    .sum();
                varint_len(h.len() as u64) + items
            }
            Data::List(l) => elements_len(l.len(), l.iter()),
            Data::Set(m) => elements_len(m.len(), m.iter()),
            Data::ZSet(z) => z.payload_len(),
            Data::Stream(s) => s.payload_len(),
        }
    }
}

/// One key's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub value: Data,
    /// When the key expires, in ms since the UNIX epoch by the replicated clock; 0: never.
    /// A key is gone from the moment `now >= expire_at`, whether or not it was removed yet.
    pub expire_at: u64,
    /// Changes at every write of the key (strictly increases): what WATCH compares. Set to
    /// `max(index of the entry that wrote it, previous + 1)`, so a write always changes it,
    /// also for a key that came from another group with a version from that group's log.
    pub version: u64,
}

impl Slot {
    /// Whether the key is gone at `now_ms`.
    pub fn expired(&self, now_ms: u64) -> bool {
        self.expire_at != 0 && now_ms >= self.expire_at
    }

    fn header_len(&self) -> u64 {
        1 + varint_len(self.expire_at) + varint_len(self.version)
    }

    /// A string's slot.
    pub fn string(value: Value, expire_at: u64, version: u64) -> Slot {
        Slot {
            value: Data::Str(value),
            expire_at,
            version,
        }
    }

    /// Bytes of the record (without its length prefix).
    pub fn record_len(&self) -> u64 {
        self.header_len() + self.value.payload_len()
    }

    /// Writes the record's bytes (without a length prefix).
    pub fn write_record(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&[self.value.kind()])?;
        write_varint(out, self.expire_at)?;
        write_varint(out, self.version)?;
        match &self.value {
            Data::Str(v) => out.write_all(v),
            Data::Hash(h) => {
                write_varint(out, h.len() as u64)?;
                for (f, v) in h.iter() {
                    for s in [f, v] {
                        write_varint(out, s.len() as u64)?;
                        out.write_all(s)?;
                    }
                }
                Ok(())
            }
            Data::List(l) => write_elements(out, l.len(), l.iter()),
            Data::Set(m) => write_elements(out, m.len(), m.iter()),
            Data::ZSet(z) => z.write_payload(out),
            Data::Stream(s) => s.write_payload(out),
        }
    }

    /// The record as one buffer (a shard page's item).
    pub fn to_record(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.record_len() as usize);
        self.write_record(&mut out)
            .expect("writing to a Vec cannot fail");
        out
    }

    /// A record's slot; `None` if the bytes are not one. The payload becomes the value
    /// without a copy when `record` is the only holder of its buffer's tail.
    pub fn from_record(record: bytes::Bytes) -> Option<Slot> {
        let (&kind, mut rest) = record.split_first()?;
        let expire_at = read_varint(&mut rest)?;
        let version = read_varint(&mut rest)?;
        let value = match kind {
            STRING => {
                let v = record.slice(record.len() - rest.len()..);
                rest = &[];
                Data::Str(v)
            }
            HASH => {
                let count = read_varint(&mut rest)?;
                let mut h = Hash::default();
                for _ in 0..count {
                    let f = read_bytes(&mut rest)?;
                    let v = read_bytes(&mut rest)?;
                    h.insert(f, v);
                }
                Data::Hash(Arc::new(h))
            }
            LIST => Data::List(Arc::new(read_elements(&mut rest)?)),
            SET => Data::Set(Arc::new(read_elements(&mut rest)?)),
            ZSET => Data::ZSet(Arc::new(ZSet::read_payload(&mut rest)?)),
            STREAM => Data::Stream(Arc::new(Stream::read_payload(&mut rest)?)),
            _ => return None,
        };
        if !rest.is_empty() {
            return None;
        }
        Some(Slot {
            value,
            expire_at,
            version,
        })
    }
}

fn elements_len<'a>(count: usize, items: impl Iterator<Item = &'a Vec<u8>>) -> u64 {
    varint_len(count as u64)
        + items
            .map(|e| varint_len(e.len() as u64) + e.len() as u64)
            .sum::<u64>()
}

fn write_elements<'a>(
    out: &mut dyn Write,
    count: usize,
    items: impl Iterator<Item = &'a Vec<u8>>,
) -> io::Result<()> {
    write_varint(out, count as u64)?;
    for e in items {
        write_varint(out, e.len() as u64)?;
        out.write_all(e)?;
    }
    Ok(())
}

/// A count, then that many elements; `None` if the input ends early. A count beyond the
/// input's bytes (each element takes at least one) is refused before it sizes anything.
fn read_elements<C: FromIterator<Vec<u8>>>(input: &mut &[u8]) -> Option<C> {
    let count = read_varint(input)?;
    if count > input.len() as u64 {
        return None;
    }
    (0..count).map(|_| read_bytes(input)).collect()
}

/// A varint length and that many bytes; `None` if the input is shorter.
pub(crate) fn read_bytes(input: &mut &[u8]) -> Option<Vec<u8>> {
    let len = usize::try_from(read_varint(input)?).ok()?;
    if len > input.len() {
        return None;
    }
    let (b, rest) = input.split_at(len);
    *input = rest;
    Some(b.to_vec())
}

pub(crate) fn read_varint(input: &mut &[u8]) -> Option<u64> {
    let mut n: u64 = 0;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = input.split_first()?;
        *input = rest;
        n |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_refused() {
        for (expire_at, version, value) in [
            (0, 0, &b""[..]),
            (1_700_000_000_123, 99, b"hello"),
            (u64::MAX, u64::MAX, &[0xff; 300][..]),
        ] {
            let slot = Slot::string(Value::copy_from_slice(value), expire_at, version);
            let record = slot.to_record();
            assert_eq!(record.len() as u64, slot.record_len());
            assert_eq!(Slot::from_record(record.into()), Some(slot));
            let hash: Hash = (0..value.len().min(40))
                .map(|i| (vec![i as u8; i], value[..i].to_vec()))
                .collect();
            let slot = Slot {
                value: Data::Hash(Arc::new(hash)),
                expire_at,
                version,
            };
            let record = slot.to_record();
            assert_eq!(record.len() as u64, slot.record_len());
            assert_eq!(Slot::from_record(record.clone().into()), Some(slot));
            let cut = &record[..record.len() - 1];
            if value.len() > 1 {
                assert_eq!(Slot::from_record(bytes::Bytes::copy_from_slice(cut)), None);
            }
        }
        assert_eq!(Slot::from_record(bytes::Bytes::new()), None);
        assert_eq!(
            Slot::from_record(bytes::Bytes::from_static(&[7, 0, 0])),
            None
        );
        assert_eq!(
            Slot::from_record(bytes::Bytes::from_static(&[0, 0x80])),
            None
        );
    }
}
