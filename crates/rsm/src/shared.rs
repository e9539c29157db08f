//! Decoding a command out of its log entry without copying its large byte strings.
//!
//! A committed entry reaches the replica as a [`Bytes`] (the buffer the log, storage and
//! followers share). [`decode_shared`] decodes a command from such a buffer with postcard;
//! while it runs, the buffer is this thread's *source*, and a field marked
//! `#[serde(with = "flotilla_rsm::shared_bytes")]` of type [`Bytes`] comes out as a view of
//! the source ([`Bytes::slice_ref`]: a reference count, no copy) instead of a fresh copy. A
//! service that keeps the field (the KV store keeps a Put's value) then holds the value in
//! the entry's own memory: the log and the state share one copy until the log lets the entry
//! go, after which the state holds it alone.
//!
//! # Invariants
//! 1. A field is a view of the source only if the bytes postcard handed over lie inside the
//!    source (checked by address), so a view never refers to any other memory; anything else
//!    (no source set: a command decoded off the wire, or a format that copies) is copied.
//! 2. A view is taken only for a field of at least half the source's length. The view keeps
//!    the whole source alive, so this bounds what a kept field pins to twice its size: a
//!    large value (the case that matters) is shared, a small one is copied (cheap), and
//!    many fields out of one large entry (a shard's pairs in one install) are each copied
//!    rather than each pinning all of it.
//! 3. The source is set only for the duration of one [`decode_shared`] call on this thread,
//!    and the previous one is restored after it, even if decoding panics; a decode that
//!    runs inside another (a `Deserialize` impl calling `decode_shared`) sees its own.
//!
//! The log entry a source comes from owns its buffer alone (`flotilla_raft::Entry`'s
//! invariant), so a value kept from it pins only its own entry.

use std::cell::RefCell;

use bytes::Bytes;
use serde::de::DeserializeOwned;

thread_local! {
    /// The buffer [`decode_shared`] is decoding on this thread, if any.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Decodes `T` (postcard) from the whole of `source`, taking its
/// [`shared_bytes`](crate::shared_bytes) fields as views of `source` (see the module doc).
pub fn decode_shared<T: DeserializeOwned>(source: &Bytes) -> Result<T, postcard::Error> {
    /// Puts back the previous source when the decode ends, by return or by unwinding.
    struct Restore(Option<Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with(|s| *s.borrow_mut() = previous);
        }
    }
    let previous = SOURCE.with(|s| s.borrow_mut().replace(source.clone()));
    let _restore = Restore(previous);
    postcard::from_bytes(source)
}

/// `bytes` as a view of the current source when invariants 1 and 2 allow, else a copy.
fn share_or_copy(bytes: &[u8]) -> Bytes {
    if bytes.is_empty() {
        return Bytes::new();
    }
    SOURCE.with(|s| match s.borrow().as_ref() {
        Some(src) if within(src, bytes) && bytes.len() * 2 >= src.len() => src.slice_ref(bytes),
        _ => Bytes::copy_from_slice(bytes),
    })
}

/// True if `part` lies inside `whole`'s memory.
fn within(whole: &[u8], part: &[u8]) -> bool {
    let (w, p) = (whole.as_ptr_range(), part.as_ptr_range());
    w.start <= p.start && p.end <= w.end
}

/// A serde `with` module for a [`Bytes`] field: encoded as one byte string (postcard: a
/// varint length, then the bytes; the encoding of a `serde_bytes` `Vec<u8>`), decoded as a
/// view of the buffer [`decode_shared`] is decoding when it may be (the module doc), a copy
/// otherwise.
pub mod shared_bytes {
    use bytes::Bytes;
    use serde::Deserializer;

    pub use flotilla_raft::bytes_field::serialize;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        // Borrowed where the format can (postcard's `from_bytes` hands over a slice of its
        // input), so the address check of invariant 1 can find the source.
        flotilla_raft::bytes_field::deserialize_borrowed(d, super::share_or_copy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Cmd {
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        #[serde(with = "crate::shared_bytes")]
        value: Bytes,
    }

    fn cmd(value_len: usize) -> Cmd {
        Cmd {
            key: b"key".to_vec(),
            value: Bytes::from(vec![5u8; value_len]),
        }
    }

    /// A large value decoded from a buffer is a view of that buffer: no copy.
    #[test]
    fn a_large_value_is_a_view_of_the_source() {
        let source = Bytes::from(postcard::to_allocvec(&cmd(1000)).unwrap());
        let decoded: Cmd = decode_shared(&source).unwrap();
        assert_eq!(decoded, cmd(1000));
        assert!(within(&source, &decoded.value), "a view, not a copy");
        drop(source);
        assert_eq!(
            decoded.value,
            vec![5u8; 1000],
            "the view keeps its bytes alive"
        );
    }

    /// Invariant 2: a value under half the source is copied, so it does not pin the rest.
    #[test]
    fn a_small_value_is_copied() {
        let mut c = cmd(10);
        c.key = vec![1; 100];
        let source = Bytes::from(postcard::to_allocvec(&c).unwrap());
        let decoded: Cmd = decode_shared(&source).unwrap();
        assert_eq!(decoded, c);
        assert!(!within(&source, &decoded.value));
    }

    /// Invariants 1 and 3: outside `decode_shared` (a command off the wire), and after it,
    /// a decode copies; the encoding is that of a `serde_bytes` `Vec<u8>`.
    #[test]
    fn without_a_source_the_value_is_copied_and_the_encoding_is_a_byte_string() {
        let encoded = postcard::to_allocvec(&cmd(3)).unwrap();
        assert_eq!(encoded, [3, b'k', b'e', b'y', 3, 5, 5, 5]);
        let source = Bytes::from(encoded.clone());
        let _: Cmd = decode_shared(&source).unwrap();
        let decoded: Cmd = postcard::from_bytes(&source).unwrap();
        assert_eq!(decoded, cmd(3));
        assert!(!within(&source, &decoded.value));
        assert!(
            SOURCE.with(|s| s.borrow().is_none()),
            "the source was unset"
        );
    }

    /// Invariant 3 under failure: a decode that fails still unsets its source.
    #[test]
    fn a_failed_decode_unsets_the_source() {
        let source = Bytes::from_static(&[200]);
        assert!(decode_shared::<Cmd>(&source).is_err());
        assert!(SOURCE.with(|s| s.borrow().is_none()));
    }
}
