//! The store's snapshot encoding, streamed: a format tag, then pairs of byte strings in key
//! order, each a key and its record ([`Slot`]'s encoding: kind, expiry, version, value), as
//! postcard encodes a `Vec<(ByteBuf, ByteBuf)>` (a varint count, then each key and record as
//! a varint length and its bytes). Written pair by pair into a writer and read pair by pair
//! from a reader, so neither a snapshot nor a restore of a large store holds the encoded
//! bytes beside the store. A shard group's shards use the same encoding.

use std::borrow::Borrow;
use std::io::{self, Read, Write};

use flotilla_rsm::stream::{varint_len, write_varint, Decoder};
use flotilla_rsm::SnapshotError;

use crate::slot::Slot;

/// The first bytes of a store's snapshot: which layout follows. The layout before records
/// (plain key/value pairs, no tag) is not read: its first byte is a count, never this tag's.
const FORMAT: &[u8; 4] = b"\xf0KV2";

/// Bytes [`write_sorted`] writes for `slots` (in any order).
pub fn encoded_len<'a>(slots: impl Iterator<Item = (&'a [u8], &'a Slot)>) -> u64 {
    let (mut count, mut bytes) = (0u64, 0u64);
    for (k, slot) in slots {
        count += 1;
        let r = slot.record_len();
        bytes += varint_len(k.len() as u64) + k.len() as u64 + varint_len(r) + r;
    }
    FORMAT.len() as u64 + varint_len(count) + bytes
}

/// Writes `slots` sorted by key (the order is what makes every replica's snapshot of the
/// same state the same bytes, whatever its map's order).
pub fn write_sorted<'a>(
    slots: impl Iterator<Item = (&'a [u8], &'a Slot)>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut slots: Vec<(&[u8], &Slot)> = slots.collect();
    slots.sort_unstable_by_key(|&(k, _)| k);
    write_in_order(&slots, out)
}

/// Writes `slots`, already in key order.
pub fn write_in_order<K: AsRef<[u8]>, S: Borrow<Slot>>(
    slots: &[(K, S)],
    out: &mut dyn Write,
) -> io::Result<()> {
    out.write_all(FORMAT)?;
    write_varint(out, slots.len() as u64)?;
    for (k, slot) in slots {
        let (k, slot) = (k.as_ref(), slot.borrow());
        write_varint(out, k.len() as u64)?;
        out.write_all(k)?;
        write_varint(out, slot.record_len())?;
        slot.write_record(out)?;
    }
    Ok(())
}

/// Reads slots written by [`write_sorted`] and gives each to `each`, in order; an empty
/// stream holds none. Bytes after the last pair are not read.
pub fn read_slots(
    r: &mut dyn Read,
    mut each: impl FnMut(Vec<u8>, Slot),
) -> Result<(), SnapshotError> {
    let mut d = Decoder::new(r);
    if d.at_end()
        .map_err(|e| SnapshotError(format!("cannot read it: {e}")))?
    {
        return Ok(());
    }
    let mut format = [0u8; FORMAT.len()];
    d.read_exact(&mut format)
        .map_err(|e| SnapshotError(format!("cannot read it: {e}")))?;
    if &format != FORMAT {
        return Err(SnapshotError(
            "not a store snapshot of this version (written by an older build?)".into(),
        ));
    }
    let count = d.varint()?;
    for _ in 0..count {
        let key = d.byte_string()?;
        let record = d.byte_string()?;
        let slot = Slot::from_record(record.into())
            .ok_or_else(|| SnapshotError("a key's record is damaged".into()))?;
        each(key, slot);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Value;

    /// The streamed encoding's length is computed exactly at every varint boundary; it reads
    /// back whole, and every cut of it is an error.
    #[test]
    fn slots_read_back_and_lengths_are_exact() {
        for n in [0usize, 1, 127, 128, 16_383, 16_384, 70_000] {
            let slots: Vec<(Vec<u8>, Slot)> = (0..n.min(130))
                .map(|i| {
                    let mut k = vec![b'k'; n % 300];
                    k.extend_from_slice(&(i as u32).to_be_bytes());
                    let slot = Slot {
                        value: crate::Data::Str(Value::from(vec![b'v'; n])),
                        expire_at: (i as u64) * 1000,
                        version: n as u64,
                    };
                    (k, slot)
                })
                .collect();
            let mut out = Vec::new();
            let refs = slots.iter().rev().map(|(k, v)| (&k[..], v));
            write_sorted(refs.clone(), &mut out).unwrap();
            assert_eq!(encoded_len(refs), out.len() as u64, "{n}");
            let mut back = Vec::new();
            read_slots(&mut &out[..], |k, v| back.push((k, v))).unwrap();
            assert_eq!(back, slots);
            if n > 0 {
                for cut in [out.len() - 1, out.len() / 2, 5] {
                    assert!(
                        read_slots(&mut &out[..cut], |_, _| {}).is_err(),
                        "{n} {cut}"
                    );
                }
            }
        }
    }

    /// A snapshot of the layout before records (a count, then bare pairs) is refused, not
    /// misread.
    #[test]
    fn the_old_layout_is_refused() {
        let old = [1u8, 1, b'k', 1, b'v'];
        assert!(read_slots(&mut &old[..], |_, _| {}).is_err());
    }
}
