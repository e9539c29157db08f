//! Issue 16: the store's snapshot streamed: written pair by pair, read pair by pair, the
//! bytes of the encoding it had when it was built in one buffer.

use std::io::{self, Read};

use flotilla_kv::{Kv, KvCommand};
use flotilla_rsm::{ApplyCtx, Request, SessionLimits, Sessions, Stamp, StateMachine};
use serde_bytes::ByteBuf;

/// Hands out at most 5 bytes a call, so every varint and string straddles reads.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = self.0.len().min(out.len()).min(5);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

// `.into()`: the store's values are becoming shared buffers (`bytes::Bytes`).
#[allow(clippy::useless_conversion)]
fn put(key: &str, len: usize) -> KvCommand {
    KvCommand::Put {
        key: key.as_bytes().to_vec(),
        value: vec![key.len() as u8; len].into(),
    }
}

fn store() -> Kv {
    let mut kv = Kv::default();
    for i in 0..300 {
        kv.apply(
            put(&format!("key-{}", i * 7919 % 300), i * 13),
            &ApplyCtx::zero(),
        );
    }
    kv
}

/// The encoding built in one buffer: the format tag, then postcard of the (key, record)
/// pairs sorted by key.
fn old_encoding(kv: &Kv) -> Vec<u8> {
    let mut pairs: Vec<(ByteBuf, ByteBuf)> = (kv.iter())
        .map(|(k, v)| (ByteBuf::from(k.to_vec()), ByteBuf::from(v.to_record())))
        .collect();
    pairs.sort();
    postcard::to_extend(&pairs, b"\xf0KV2".to_vec()).unwrap()
}

#[test]
fn the_streamed_snapshot_is_the_old_encoding_and_restores_the_same_state() {
    let kv = store();
    let old = old_encoding(&kv);
    let mut streamed = Vec::new();
    kv.snapshot_into(&mut streamed).unwrap();
    assert_eq!(streamed, old);
    assert_eq!(kv.snapshot_size_hint(), old.len() as u64);
    let mut job_bytes = Vec::new();
    kv.snapshot_job()(&mut job_bytes).unwrap();
    assert_eq!(job_bytes, old);
    let mut back = Kv::default();
    back.restore_from(&mut Trickle(&old)).unwrap();
    assert_eq!(back.len(), kv.len());
    assert_eq!(old_encoding(&back), old);
    back.restore_from(&mut io::empty()).unwrap();
    assert!(back.is_empty());
}

/// Every cut of a replica's snapshot of a store is an error (but the one that leaves the
/// header alone: an empty store), every garbled byte an error or a state: never a panic,
/// never an allocation of a length the stream does not hold.
#[test]
fn cut_or_garbled_store_snapshots_are_errors_not_panics() {
    let mut s = Sessions::new(Kv::default());
    let stamp = Stamp {
        time_ms: 5,
        limits: SessionLimits::default(),
        index: 1,
    };
    for i in 0..30u64 {
        let cmd = put(&format!("k{i}"), (i * 37 % 200) as usize);
        let r = Request {
            client: i % 4,
            seq: i + 1,
            after_ms: 1,
            cmd,
        };
        s.apply(r, stamp);
    }
    let snap = s.snapshot();
    let machine = s.machine().snapshot();
    let header = snap.len() - machine.len();
    for cut in 1..snap.len() {
        let mut t = Sessions::new(Kv::default());
        let r = t.restore_from(&mut Trickle(&snap[..cut]));
        assert_eq!(r.is_err(), cut != header, "cut at {cut}");
    }
    for i in 0..snap.len() {
        for flip in [0x01, 0x40, 0x80, 0xff] {
            let mut bad = snap.clone();
            bad[i] ^= flip;
            let _ = Sessions::new(Kv::default()).restore_from(&mut &bad[..]);
        }
    }
    let mut t = Sessions::new(Kv::default());
    t.restore_from(&mut Trickle(&snap)).unwrap();
    assert_eq!(t.snapshot(), snap);
}
