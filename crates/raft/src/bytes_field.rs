//! Serde for a [`Bytes`] field, encoded as one byte string (postcard: a varint length, then
//! the bytes; the encoding of a `serde_bytes` `Vec<u8>`). What a decoded field holds is the
//! caller's choice (`from_slice`): a copy of exactly its bytes (the Raft log's entries), or
//! a view of the buffer being decoded (`flotilla_rsm`'s shared values).

use bytes::Bytes;
use serde::{Deserializer, Serializer};

pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_bytes(v)
}

/// Decodes asking the format for an owned buffer (a slice it lends goes to `from_slice`).
pub fn deserialize_owned<'de, D: Deserializer<'de>>(
    d: D,
    from_slice: fn(&[u8]) -> Bytes,
) -> Result<Bytes, D::Error> {
    d.deserialize_byte_buf(Visitor(from_slice))
}

/// Decodes asking the format for a slice of its input where it can, handed to `from_slice`.
pub fn deserialize_borrowed<'de, D: Deserializer<'de>>(
    d: D,
    from_slice: fn(&[u8]) -> Bytes,
) -> Result<Bytes, D::Error> {
    d.deserialize_bytes(Visitor(from_slice))
}

struct Visitor(fn(&[u8]) -> Bytes);

impl<'de> serde::de::Visitor<'de> for Visitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok((self.0)(v))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    /// Formats without byte strings send a sequence; its length hint is the peer's word, so
    /// it sizes at most a small first allocation.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut a: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(a.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = a.next_element()? {
            out.push(b);
        }
        Ok(Bytes::from(out))
    }
}
