//! The store's snapshot encoding, streamed: pairs of byte strings in key order, as postcard
//! encodes a `Vec<(ByteBuf, ByteBuf)>` (a varint count, then each key and value as a
//! varint length and its bytes). Written pair by pair into a writer and read pair by pair
//! from a reader, so neither a snapshot nor a restore of a large store holds the encoded
//! bytes beside the store. A shard group's shards use the same encoding.

use std::io::{self, Read, Write};

use flotilla_rsm::stream::{varint_len, write_varint, Decoder};
use flotilla_rsm::SnapshotError;

/// Bytes [`write_sorted`] writes for `pairs` (in any order).
pub fn encoded_len<'a>(pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> u64 {
    let (mut count, mut bytes) = (0u64, 0u64);
    for (k, v) in pairs {
        count += 1;
        for s in [k, v] {
            bytes += varint_len(s.len() as u64) + s.len() as u64;
        }
    }
    varint_len(count) + bytes
}

/// Writes `pairs` sorted by key (the order is what makes every replica's snapshot of the
/// same state the same bytes, whatever its map's order).
pub fn write_sorted<'a>(
    pairs: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut pairs: Vec<(&[u8], &[u8])> = pairs.collect();
    pairs.sort_unstable_by_key(|&(k, _)| k);
    write_in_order(&pairs, out)
}

/// Writes `pairs`, already in key order.
pub fn write_in_order<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    pairs: &[(K, V)],
    out: &mut dyn Write,
) -> io::Result<()> {
    write_varint(out, pairs.len() as u64)?;
    for (k, v) in pairs {
        for s in [k.as_ref(), v.as_ref()] {
            write_varint(out, s.len() as u64)?;
            out.write_all(s)?;
        }
    }
    Ok(())
}

/// Reads pairs written by [`write_sorted`] and gives each to `each`, in order; an empty
/// stream holds none. Bytes after the last pair are not read.
pub fn read_pairs(
    r: &mut dyn Read,
    mut each: impl FnMut(Vec<u8>, Vec<u8>),
) -> Result<(), SnapshotError> {
    let mut d = Decoder::new(r);
    if d.at_end()
        .map_err(|e| SnapshotError(format!("cannot read it: {e}")))?
    {
        return Ok(());
    }
    let count = d.varint()?;
    for _ in 0..count {
        let key = d.byte_string()?;
        let value = d.byte_string()?;
        each(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_bytes::ByteBuf;

    /// The streamed encoding is postcard's, byte for byte, and its length is computed
    /// exactly at every varint boundary; it reads back whole, and every cut of it is an
    /// error.
    #[test]
    fn pairs_are_postcards_encoding_and_read_back() {
        for n in [0usize, 1, 127, 128, 16_383, 16_384, 70_000] {
            let (k, v) = (vec![b'k'; n % 300], vec![b'v'; n]);
            let pairs: Vec<(ByteBuf, ByteBuf)> = (0..n.min(130))
                .map(|i| {
                    let mut k = k.clone();
                    k.extend_from_slice(&(i as u32).to_be_bytes());
                    (ByteBuf::from(k), ByteBuf::from(v.clone()))
                })
                .collect();
            let expected = postcard::to_allocvec(&pairs).unwrap();
            let mut out = Vec::new();
            let refs = pairs.iter().rev().map(|(k, v)| (&k[..], &v[..]));
            write_sorted(refs.clone(), &mut out).unwrap();
            assert_eq!(out, expected, "{n}");
            assert_eq!(encoded_len(refs), expected.len() as u64, "{n}");
            let mut back = Vec::new();
            read_pairs(&mut &out[..], |k, v| {
                back.push((ByteBuf::from(k), ByteBuf::from(v)))
            })
            .unwrap();
            assert_eq!(back, pairs);
        }
    }
}
