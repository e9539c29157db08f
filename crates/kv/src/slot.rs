//! What the store keeps per key: the value, its expiry time and its version, and the record
//! encoding a key travels in (snapshots and shard pages).
//!
//! # Record encoding
//! `[kind: u8][expire_at: varint][version: varint][payload]`, where `kind` 0 is a string and
//! the payload is its bytes. Written as one length-prefixed byte string, so a snapshot stays
//! "pairs of byte strings" and a shard page carries a record as it carries a value.

use std::io::{self, Write};

use flotilla_rsm::stream::{varint_len, write_varint};

use crate::store::Value;

/// Kind byte of a string record.
const STRING: u8 = 0;

/// One key's entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slot {
    pub value: Value,
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

    /// Bytes of the record (without its length prefix).
    pub fn record_len(&self) -> u64 {
        self.header_len() + self.value.len() as u64
    }

    /// Writes the record's bytes (without a length prefix).
    pub fn write_record(&self, out: &mut dyn Write) -> io::Result<()> {
        out.write_all(&[STRING])?;
        write_varint(out, self.expire_at)?;
        write_varint(out, self.version)?;
        out.write_all(&self.value)
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
        if kind != STRING {
            return None;
        }
        let expire_at = read_varint(&mut rest)?;
        let version = read_varint(&mut rest)?;
        let start = record.len() - rest.len();
        Some(Slot {
            value: record.slice(start..),
            expire_at,
            version,
        })
    }
}

fn read_varint(input: &mut &[u8]) -> Option<u64> {
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
            let slot = Slot {
                value: Value::copy_from_slice(value),
                expire_at,
                version,
            };
            let record = slot.to_record();
            assert_eq!(record.len() as u64, slot.record_len());
            assert_eq!(Slot::from_record(record.into()), Some(slot));
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
