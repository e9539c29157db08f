//! A shard group's snapshot, streamed: taken from a cheap consistent view and written piece
//! by piece, read back shard by shard and key by key, so a replica never holds its
//! snapshot's bytes beside its state.
//!
//! The bytes are postcard's encoding of
//! `(config, prev, Vec<(shard, state, (kv bytes, records))>, Vec<(shard, cursor)>)`, where a
//! shard's kv bytes are a byte string in the store's encoding ([`flotilla_kv::snapshot`]:
//! pairs in key order) and its records a [`TableBlob`]: the layout the group wrote when it
//! encoded its snapshot in one buffer, so either build restores the other's.

use std::io::{self, Read, Write};
use std::sync::Arc;

use flotilla_kv::{snapshot as pairs, Kv, KvReply, Slot};
use flotilla_rsm::stream::{varint_len, write_value, write_varint, Decoder};
use flotilla_rsm::{SessionTable, SnapshotError, SnapshotJob, StateMachine, TableBlob};
use flotilla_shardctrler::ShardConfig;

use super::{PullCursor, Shard, ShardKv, ShardState};

/// One shard's data as a snapshot job holds it.
enum Data {
    /// A served (or pulling) shard: the store's own job, and the length it will write.
    Live { len: u64, job: SnapshotJob },
    /// A frozen shard's sorted pairs, shared with the machine (they never change).
    Frozen(Arc<Vec<(Vec<u8>, Slot)>>),
}

impl Data {
    fn of(shard: &Shard) -> Data {
        if shard.frozen.is_empty() {
            Data::Live {
                len: shard.kv.snapshot_size_hint(),
                job: shard.kv.snapshot_job(),
            }
        } else {
            Data::Frozen(Arc::clone(&shard.frozen))
        }
    }
}

/// A consistent view of a [`ShardKv`], taken on the event loop, written later.
pub(super) struct View {
    config: ShardConfig,
    prev: ShardConfig,
    shards: Vec<(usize, ShardState, Data, TableBlob<KvReply>)>,
    pulled: Vec<(usize, PullCursor)>,
}

impl View {
    pub(super) fn of(m: &ShardKv) -> View {
        View {
            config: m.config.clone(),
            prev: m.prev.clone(),
            shards: (m.shards.iter())
                .map(|(&s, (st, d))| (s, *st, Data::of(d), d.sessions.blob()))
                .collect(),
            pulled: (m.pulled.iter()).map(|(&s, at)| (s, at.clone())).collect(),
        }
    }

    pub(super) fn write(self, out: &mut dyn Write) -> io::Result<()> {
        write_value(out, &self.config)?;
        write_value(out, &self.prev)?;
        write_varint(out, self.shards.len() as u64)?;
        for (s, st, data, sessions) in self.shards {
            write_value(out, &(s, st))?;
            match data {
                Data::Live { len, job } => {
                    write_varint(out, len)?;
                    job(out)?;
                }
                Data::Frozen(frozen) => {
                    write_varint(out, frozen_len(&frozen))?;
                    pairs::write_in_order(&frozen, out)?;
                }
            }
            write_value(out, &sessions)?;
        }
        write_value(out, &self.pulled)
    }
}

fn frozen_len(frozen: &[(Vec<u8>, Slot)]) -> u64 {
    pairs::encoded_len(frozen.iter().map(|(k, v)| (&k[..], v)))
}

fn size<T: serde::Serialize + ?Sized>(value: &T) -> u64 {
    postcard::experimental::serialized_size(value).map_or(0, |n| n as u64)
}

/// The exact length of `m`'s snapshot, computed without encoding the stores.
pub(super) fn encoded_len(m: &ShardKv) -> u64 {
    let mut n = size(&m.config) + size(&m.prev) + varint_len(m.shards.len() as u64);
    for (&s, (st, d)) in &m.shards {
        let kv = if d.frozen.is_empty() {
            d.kv.snapshot_size_hint()
        } else {
            frozen_len(&d.frozen)
        };
        n += size(&(s, *st)) + varint_len(kv) + kv + size(&d.sessions.blob());
    }
    let pulled: Vec<(usize, &PullCursor)> = m.pulled.iter().map(|(&s, at)| (s, at)).collect();
    n + size(&pulled)
}

/// Replaces `m`'s state with the snapshot `r` holds (empty: the initial state). The old
/// shards go first, so a large group does not hold two states at once; on an error the
/// state is unspecified (the replica is discarded).
pub(super) fn restore(m: &mut ShardKv, r: &mut dyn Read) -> Result<(), SnapshotError> {
    let mut d = Decoder::new(r);
    let empty = d.at_end().map_err(read_error)?;
    *m = ShardKv::new(m.gid, m.nshards());
    if empty {
        return Ok(());
    }
    let config: ShardConfig = d.decode()?;
    let prev: ShardConfig = d.decode()?;
    for _ in 0..d.varint()? {
        let (s, st): (usize, ShardState) = d.decode()?;
        let len = d.varint()?;
        let mut kv = Kv::default();
        let mut part = (&mut d).take(len);
        kv.restore_from(&mut part)?;
        // The store stops after its last pair: skip whatever else the byte string holds.
        io::copy(&mut part, &mut io::sink()).map_err(read_error)?;
        if part.limit() > 0 {
            return Err(SnapshotError(format!("shard {s}'s data ends early")));
        }
        let sessions: TableBlob<KvReply> = d.decode()?;
        let mut shard = Shard {
            kv,
            sessions: SessionTable::from_blob(&sessions),
            frozen: Arc::default(),
        };
        if st == ShardState::Handoff {
            shard.freeze();
        }
        m.shards.insert(s, (st, shard));
    }
    let pulled: Vec<(usize, PullCursor)> = d.decode()?;
    m.config = config;
    m.prev = prev;
    m.pulled = pulled.into_iter().collect();
    Ok(())
}

fn read_error(e: io::Error) -> SnapshotError {
    SnapshotError(format!("cannot read it: {e}"))
}

#[cfg(test)]
mod tests {
    use std::io::{self, Read};

    use serde::Serialize;

    use super::*;
    use crate::tests::{big_shard, transfer, two_groups_after_move};

    /// The layout a group wrote when it built its snapshot in one buffer.
    #[derive(Serialize)]
    struct OldSnapshot {
        config: ShardConfig,
        prev: ShardConfig,
        shards: Vec<(usize, ShardState, OldShard)>,
        pulled: Vec<(usize, PullCursor)>,
    }

    #[derive(Serialize)]
    struct OldShard {
        #[serde(with = "serde_bytes")]
        kv: Vec<u8>,
        sessions: TableBlob<KvReply>,
    }

    fn old_encoding(m: &ShardKv) -> Vec<u8> {
        let shard = |d: &Shard| {
            let mut slots: Vec<(Vec<u8>, Slot)> = (d.kv.iter())
                .map(|(k, v)| (k.to_vec(), v.clone()))
                .chain(d.frozen.iter().cloned())
                .collect();
            slots.sort_by(|a, b| a.0.cmp(&b.0));
            let mut kv = Vec::new();
            pairs::write_in_order(&slots, &mut kv).unwrap();
            OldShard {
                kv,
                sessions: d.sessions.blob(),
            }
        };
        let snap = OldSnapshot {
            config: m.config.clone(),
            prev: m.prev.clone(),
            shards: (m.shards.iter())
                .map(|(&s, (st, d))| (s, *st, shard(d)))
                .collect(),
            pulled: (m.pulled.iter()).map(|(&s, at)| (s, at.clone())).collect(),
        };
        postcard::to_allocvec(&snap).unwrap()
    }

    /// Hands out at most 7 bytes a call.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(7);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Issue 16: the streamed snapshot (from a job's view, with shards served, frozen and
    /// half pulled) is the old layout byte for byte, its length is known before it is
    /// written, and it restores from a reader into the state the old bytes restore.
    #[test]
    fn the_streamed_snapshot_is_the_old_layout_and_restores_the_same_state() {
        let (a, mut b) = big_shard(40, 30, 500);
        let num = b.config().num;
        for _ in 0..3 {
            let at = b.pull_cursors()[&2].1.clone();
            let page = a.handoff_page(num, 2, &at, 200).unwrap();
            let install = crate::ShardCommand::InstallPage {
                num,
                shard: 2,
                page,
            };
            b.apply(install, &flotilla_rsm::ApplyCtx::zero());
        }
        let (c, mut d) = two_groups_after_move();
        transfer(&c, &mut d, 2, 1000);
        for m in [&a, &b, &c, &d] {
            let old = old_encoding(m);
            let mut streamed = Vec::new();
            m.snapshot_job()(&mut streamed).unwrap();
            assert_eq!(streamed, old, "group {}", m.gid());
            assert_eq!(m.snapshot_size_hint(), old.len() as u64);
            let mut r = ShardKv::new(m.gid(), 4);
            r.restore_from(&mut Trickle(&old)).unwrap();
            r.check_invariants(flotilla_rsm::CheckDepth::Full);
            assert_eq!(r.snapshot(), old);
            assert_eq!(r.pull_cursors(), m.pull_cursors());
            assert_eq!(r.shard_keys(), m.shard_keys());
            for cut in [1, old.len() / 3, old.len() / 2, old.len() - 1] {
                let mut r = ShardKv::new(m.gid(), 4);
                assert!(r.restore_from(&mut &old[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    /// A job's view is the state when it was taken, whatever is applied after.
    #[test]
    fn a_snapshot_job_sees_the_state_when_it_was_taken() {
        let (mut a, _) = big_shard(10, 30, 100);
        let before = a.snapshot();
        let job = a.snapshot_job();
        let delete = crate::ShardCommand::Delete {
            num: a.config().num,
            shards: vec![2, 3],
        };
        a.apply(delete, &flotilla_rsm::ApplyCtx::zero());
        assert_ne!(a.snapshot(), before);
        let mut out = Vec::new();
        job(&mut out).unwrap();
        assert_eq!(out, before);
    }
}
