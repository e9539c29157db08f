//! Snapshots in chunks with flow control (§7, Figure 13's offset and done), and replication
//! and proposals bounded in bytes. Peers are wired by hand: the leader is peer 1 of 3, peer 2
//! is up to date, peer 3 is behind the leader's snapshot.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;
use crate::{SnapshotData, SnapshotSource, SnapshotSpool, SnapshotWriter};

const CHUNK: usize = 100;
/// Bytes of an InstallSnapshot chunk's message beyond its data, for a 3-voter membership.
const HEADER: usize = 64;

fn chunked(id: NodeId) -> Config {
    Config {
        snapshot_chunk_bytes: CHUNK,
        max_snapshot_inflight_bytes: 4 * CHUNK,
        ..cfg(id, 3)
    }
}

fn snapshot_bytes(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect()
}

/// Peer 1 leads `cfg`'s cluster of 3 with entries 1..=4, peer 2 holds them all, and a
/// snapshot at 3 of `data`; then peer 3 answers with an empty log, which starts its transfer.
fn leader_sending(cfg: Config, data: &[u8]) -> Raft {
    leader_sending_data(cfg, data.to_vec().into())
}

/// [`leader_sending`] with a snapshot held as `data` (in memory or in a source).
fn leader_sending_data(cfg: Config, data: SnapshotData) -> Raft {
    let mut l = leader_with(cfg);
    for i in 0..4 {
        l.propose(vec![i]).unwrap();
    }
    l.step(
        NodeId::new(2),
        Message::AppendEntriesReply {
            term: 1,
            match_index: 4,
            conflict: None,
        },
    );
    l.snapshot(3, data);
    l.ready();
    let hint = ConflictHint {
        term: None,
        first_index: 0,
        log_len: 1,
    };
    l.step(
        NodeId::new(3),
        Message::AppendEntriesReply {
            term: 1,
            match_index: 0,
            conflict: Some(hint),
        },
    );
    l
}

/// The messages in `ready` to peer `to`.
fn to(ready: Ready, peer: NodeId) -> Vec<Message> {
    (ready.messages.into_iter())
        .filter(|m| m.to == peer)
        .map(|m| m.msg)
        .collect()
}

/// `(index, offset, len)` of each InstallSnapshot among `msgs`.
fn chunks_of(msgs: &[Message]) -> Vec<(u64, u64, usize)> {
    msgs.iter()
        .filter_map(|m| match m {
            Message::InstallSnapshot {
                last_included_index,
                offset,
                data,
                ..
            } => Some((*last_included_index, *offset, data.len())),
            _ => None,
        })
        .collect()
}

fn encoded_len(m: &Message) -> usize {
    postcard::to_allocvec(m).unwrap().len()
}

/// Delivers `msgs` from 1 to `f`, then `f`'s replies to `l`; returns what `l` sends to 3
/// next, and every snapshot `f` applied.
fn exchange(l: &mut Raft, f: &mut Raft, msgs: Vec<Message>) -> (Vec<Message>, Vec<Snapshot>) {
    for m in msgs {
        f.step(NodeId::new(1), m);
    }
    let ready = f.ready();
    let snaps = (ready.applies.iter())
        .filter_map(|a| match a {
            Apply::Snapshot(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    for m in ready.messages {
        l.step(NodeId::new(3), m.msg);
    }
    (to(l.ready(), NodeId::new(3)), snaps)
}

/// §7 in chunks: a snapshot of 10 chunks reaches the follower as 10 messages of at most a
/// chunk plus a small header, never more than the window's 4 chunks unacknowledged, and is
/// installed once, whole, when the last arrives.
#[test]
fn a_snapshot_travels_in_chunks_within_the_window() {
    let data = snapshot_bytes(10 * CHUNK, 1);
    let mut l = leader_sending(chunked(NodeId::new(1)), &data);
    let mut f = Raft::new(chunked(NodeId::new(3)));
    let mut msgs = to(l.ready(), NodeId::new(3));
    let (mut sent, mut installed) = (Vec::new(), Vec::new());
    while !msgs.is_empty() {
        let chunks = chunks_of(&msgs);
        assert!(
            chunks.len() <= 4,
            "more than the window at once: {chunks:?}"
        );
        for m in &msgs {
            assert!(encoded_len(m) <= CHUNK + HEADER, "{} bytes", encoded_len(m));
        }
        sent.extend(chunks);
        let (next, snaps) = exchange(&mut l, &mut f, msgs);
        installed.extend(snaps);
        msgs = next;
    }
    let offsets: Vec<u64> = sent.iter().map(|c| c.1).collect();
    assert_eq!(
        offsets,
        (0..10).map(|i| i * CHUNK as u64).collect::<Vec<_>>()
    );
    assert_eq!(installed.len(), 1, "installed once");
    assert_eq!(
        (
            installed[0].index,
            &installed[0].data.to_bytes().unwrap()[..]
        ),
        (3, &data[..])
    );
    assert_eq!(f.snapshot_data().to_bytes().unwrap(), &data[..]);
    // Then entry 4 follows by AppendEntries.
    assert_eq!((f.log().snapshot_index(), f.commit_index()), (3, 4));
    assert_eq!(
        l.snapshot_transfer(NodeId::new(3)),
        None,
        "the transfer is over"
    );
}

/// Flow control: while a follower's transfer is under way, a heartbeat resends no snapshot
/// data (the old code sent the whole snapshot again at every heartbeat): it sends an empty
/// chunk, which keeps the follower's election timer. Only after an election timeout without
/// progress does the leader resume. Written against the old API (default chunk size) so it
/// ran, and failed, on the old code.
#[test]
fn heartbeats_do_not_resend_the_snapshot() {
    let cfg = Config {
        election_timeout_min_ticks: 100,
        election_timeout_max_ticks: 200,
        ..cfg(NodeId::new(1), 3)
    };
    let data = vec![7u8; 10_000];
    let mut l = leader_sending(cfg, &data);
    let first: usize = to(l.ready(), NodeId::new(3)).iter().map(encoded_len).sum();
    assert!(first >= data.len(), "the snapshot went out");
    // Nine heartbeats, no answer: less than an election timeout.
    let mut resent = 0;
    for _ in 0..90 {
        l.tick();
        resent += to(l.ready(), NodeId::new(3))
            .iter()
            .map(encoded_len)
            .sum::<usize>();
    }
    assert!(
        resent < 1_000,
        "{resent} bytes resent to a follower in a snapshot transfer over 9 heartbeats"
    );
}

/// The follower's election timer keeps being reset by the heartbeats' empty chunks, and a
/// stalled transfer resumes from the follower's acknowledged offset after an election
/// timeout, not from 0.
#[test]
fn a_stalled_transfer_resumes_from_the_acknowledged_offset() {
    let data = snapshot_bytes(10 * CHUNK, 2);
    let mut l = leader_sending(chunked(NodeId::new(1)), &data);
    let mut f = Raft::new(chunked(NodeId::new(3)));
    let msgs = to(l.ready(), NodeId::new(3));
    // Only the first two chunks arrive; the leader learns of them. The other two are lost.
    let (next, _) = exchange(&mut l, &mut f, msgs[..2].to_vec());
    assert_eq!(chunks_of(&next), vec![(3, 400, CHUNK), (3, 500, CHUNK)]);
    assert_eq!(l.snapshot_transfer(NodeId::new(3)), Some((3, 200)));
    // Those are lost too. Heartbeats: empty chunks at the acknowledged offset, which the
    // follower takes as its leader's.
    let stall = chunked(NodeId::new(1)).election_timeout_min_ticks;
    let mut heartbeats = Vec::new();
    for _ in 1..stall {
        l.tick();
        heartbeats.extend(chunks_of(&to(l.ready(), NodeId::new(3))));
    }
    assert!(!heartbeats.is_empty() && heartbeats.iter().all(|&c| c == (3, 200, 0)));
    for _ in 0..stall + 5 {
        f.tick();
        f.step(
            NodeId::new(1),
            Message::InstallSnapshot {
                term: 1,
                last_included_index: 3,
                last_included_term: 1,
                membership: l.membership().clone(),
                total_len: data.len() as u64,
                offset: 200,
                data: Bytes::new(),
            },
        );
    }
    assert_eq!(
        (f.role(), f.leader()),
        (Role::Follower, Some(NodeId::new(1)))
    );
    f.ready();
    // The next heartbeat is an election timeout after the last progress: resume at 200.
    let mut resumed = Vec::new();
    for _ in 0..10 {
        l.tick();
        resumed.extend(chunks_of(&to(l.ready(), NodeId::new(3))));
    }
    assert_eq!(
        resumed,
        vec![
            (3, 200, CHUNK),
            (3, 300, CHUNK),
            (3, 400, CHUNK),
            (3, 500, CHUNK)
        ]
    );
    // And the transfer completes.
    assert_eq!(l.snapshot_transfer(NodeId::new(3)), Some((3, 200)));
    let resent = resumed_msgs(&resumed, &data, l.membership());
    let (mut msgs, _) = exchange(&mut l, &mut f, resent);
    let mut installed = Vec::new();
    while !msgs.is_empty() {
        let (next, snaps) = exchange(&mut l, &mut f, std::mem::take(&mut msgs));
        installed.extend(snaps);
        msgs = next;
    }
    assert_eq!(installed.len(), 1);
    assert_eq!(&installed[0].data.to_bytes().unwrap()[..], &data[..]);
}

/// The chunks `(index 3, offset, len)` of `data`, as the leader sent them.
fn resumed_msgs(chunks: &[(u64, u64, usize)], data: &[u8], m: &Membership) -> Vec<Message> {
    chunks
        .iter()
        .map(|&(index, offset, len)| chunk(index, m, data, offset, len))
        .collect()
}

fn chunk(index: u64, m: &Membership, data: &[u8], offset: u64, len: usize) -> Message {
    let o = offset as usize;
    Message::InstallSnapshot {
        term: 1,
        last_included_index: index,
        last_included_term: 1,
        membership: m.clone(),
        total_len: data.len() as u64,
        offset,
        data: Bytes::copy_from_slice(&data[o..o + len]),
    }
}

/// A lost chunk: the chunks after it reach the follower after a gap, which its replies
/// report; the leader resends from the follower's offset (once: the other gap replies answer
/// chunks sent before it resumed), never from 0.
#[test]
fn a_lost_chunk_is_resent_from_the_follower_offset() {
    let data = snapshot_bytes(10 * CHUNK, 3);
    let mut l = leader_sending(chunked(NodeId::new(1)), &data);
    let mut f = Raft::new(chunked(NodeId::new(3)));
    let mut msgs = to(l.ready(), NodeId::new(3));
    msgs.remove(1); // the chunk at 100 is lost
    let (next, _) = exchange(&mut l, &mut f, msgs);
    let offsets: Vec<u64> = chunks_of(&next).iter().map(|c| c.1).collect();
    assert_eq!(offsets, vec![400, 100, 200, 300, 400]);
    let mut msgs = next;
    let mut installed = Vec::new();
    while !msgs.is_empty() {
        for (_, offset, _) in chunks_of(&msgs) {
            assert!(offset >= 100, "resent from {offset}");
        }
        let (next, snaps) = exchange(&mut l, &mut f, msgs);
        installed.extend(snaps);
        msgs = next;
    }
    assert_eq!(installed.len(), 1);
    assert_eq!(&installed[0].data.to_bytes().unwrap()[..], &data[..]);
}

/// Reordered and duplicated chunks are harmless: the follower takes bytes in order only,
/// answers each chunk with what it holds, installs once, and answers a late duplicate after
/// installing with `done`.
#[test]
fn reordered_and_duplicated_chunks_are_harmless() {
    let data = snapshot_bytes(4 * CHUNK + 30, 4);
    let m = Membership::with_voters([1, 2, 3].map(NodeId::new));
    let mut f = Raft::new(chunked(NodeId::new(3)));
    let order = [
        (300, CHUNK),
        (0, CHUNK),
        (0, CHUNK),
        (200, CHUNK),
        (100, CHUNK),
    ];
    let mut received = Vec::new();
    for (offset, len) in order {
        f.step(NodeId::new(1), chunk(3, &m, &data, offset, len));
        for msg in to(f.ready(), NodeId::new(1)) {
            if let Message::InstallSnapshotReply { received: r, .. } = msg {
                received.push(r);
            }
        }
    }
    assert_eq!(received, vec![0, 100, 100, 100, 200]);
    // An overlapping chunk (150..250) adds only what is new; the last one completes it.
    f.step(NodeId::new(1), chunk(3, &m, &data, 150, CHUNK));
    f.step(NodeId::new(1), chunk(3, &m, &data, 200, CHUNK));
    f.step(NodeId::new(1), chunk(3, &m, &data, 300, CHUNK));
    assert!(f.ready().applies.is_empty());
    f.step(NodeId::new(1), chunk(3, &m, &data, 400, 30));
    let ready = f.ready();
    assert_eq!(
        ready.applies,
        vec![Apply::Snapshot(Snapshot {
            index: 3,
            term: 1,
            data: data.clone().into()
        })]
    );
    assert_eq!(ready.snapshot.map(|s| s.index), Some(3));
    f.step(NodeId::new(1), chunk(3, &m, &data, 100, CHUNK));
    let ready = f.ready();
    assert!(ready.applies.is_empty(), "installed only once");
    assert!(matches!(
        ready.messages[0].msg,
        Message::InstallSnapshotReply {
            last_included_index: 3,
            done: true,
            ..
        }
    ));
    // A malformed chunk (past its stated length) is dropped without an answer or a panic.
    let mut bad = chunk(5, &m, &data, 0, CHUNK);
    if let Message::InstallSnapshot { total_len, .. } = &mut bad {
        *total_len = 10;
    }
    f.step(NodeId::new(1), bad);
    assert!(f.ready().messages.is_empty());
}

/// A leader that takes a newer snapshot mid-transfer restarts the transfer with it from byte
/// 0; the follower drops its partial copy of the old one, ignores the old one's late chunks,
/// and installs the new one only.
#[test]
fn a_newer_snapshot_restarts_the_transfer() {
    let old = snapshot_bytes(10 * CHUNK, 5);
    let new = snapshot_bytes(6 * CHUNK + 1, 6);
    let mut l = leader_sending(chunked(NodeId::new(1)), &old);
    let mut f = Raft::new(chunked(NodeId::new(3)));
    let msgs = to(l.ready(), NodeId::new(3));
    let late = msgs[3].clone();
    let (next, _) = exchange(&mut l, &mut f, msgs[..3].to_vec());
    // The leader commits 4 (peer 2 holds it) and snapshots there.
    l.propose(vec![9]).unwrap();
    l.step(
        NodeId::new(2),
        Message::AppendEntriesReply {
            term: 1,
            match_index: 5,
            conflict: None,
        },
    );
    l.snapshot(5, new.clone());
    l.ready();
    // The next reply restarts the transfer with the snapshot at 5, from 0.
    let (restarted, _) = exchange(&mut l, &mut f, next[..1].to_vec());
    assert_eq!(
        chunks_of(&restarted),
        vec![
            (5, 0, CHUNK),
            (5, 100, CHUNK),
            (5, 200, CHUNK),
            (5, 300, CHUNK)
        ]
    );
    let mut msgs = restarted;
    msgs.insert(2, late); // the old snapshot's chunk arrives late, in the middle
    let mut installed = Vec::new();
    while !msgs.is_empty() {
        let (next, snaps) = exchange(&mut l, &mut f, msgs);
        installed.extend(snaps);
        msgs = next;
    }
    assert_eq!(installed.len(), 1);
    assert_eq!(
        (
            installed[0].index,
            &installed[0].data.to_bytes().unwrap()[..]
        ),
        (5, &new[..])
    );
    assert_eq!(f.log().snapshot_index(), 5);
}

/// A new leader's chunks are never mixed with the old leader's: a term change forgets the
/// partial copy (another leader's snapshot at the same index may hold other bytes), and the
/// new leader's chunk after the gap makes it restart from 0.
#[test]
fn a_leader_change_forgets_the_partial_snapshot() {
    let m = Membership::with_voters([1, 2, 3].map(NodeId::new));
    let first = snapshot_bytes(3 * CHUNK, 7);
    let second = snapshot_bytes(3 * CHUNK, 8);
    let mut f = Raft::new(chunked(NodeId::new(3)));
    f.step(NodeId::new(1), chunk(3, &m, &first, 0, CHUNK));
    f.step(NodeId::new(1), chunk(3, &m, &first, 100, CHUNK));
    f.ready();
    let term2 = |msg: Message| match msg {
        Message::InstallSnapshot {
            last_included_index,
            last_included_term,
            membership,
            total_len,
            offset,
            data,
            ..
        } => Message::InstallSnapshot {
            term: 2,
            last_included_index,
            last_included_term,
            membership,
            total_len,
            offset,
            data,
        },
        other => other,
    };
    // Peer 2 leads term 2 and resumes at 200, where peer 1 left off.
    f.step(NodeId::new(2), term2(chunk(3, &m, &second, 200, CHUNK)));
    let reply = to(f.ready(), NodeId::new(2)).remove(0);
    assert_eq!(
        reply,
        Message::InstallSnapshotReply {
            term: 2,
            last_included_index: 3,
            offset: 200,
            received: 0,
            done: false
        },
        "the bytes of term 1's leader are forgotten"
    );
    for offset in [0, 100, 200] {
        f.step(NodeId::new(2), term2(chunk(3, &m, &second, offset, CHUNK)));
    }
    let ready = f.ready();
    match &ready.applies[..] {
        [Apply::Snapshot(s)] => assert_eq!(&s.data.to_bytes().unwrap()[..], &second[..]),
        other => panic!("expected one snapshot, got {other:?}"),
    }
}

/// A follower restarted mid-transfer has forgotten its partial copy: the leader's next chunk
/// comes after a gap, the follower says it holds nothing, and the leader resumes from 0.
#[test]
fn a_follower_restart_restarts_the_transfer_from_zero() {
    let data = snapshot_bytes(10 * CHUNK, 9);
    let mut l = leader_sending(chunked(NodeId::new(1)), &data);
    let mut f = Raft::new(chunked(NodeId::new(3)));
    let msgs = to(l.ready(), NodeId::new(3));
    let (next, _) = exchange(&mut l, &mut f, msgs);
    assert_eq!(l.snapshot_transfer(NodeId::new(3)), Some((3, 400)));
    f = Raft::restore(
        chunked(NodeId::new(3)),
        f.persistent_state(),
        f.snapshot_data().clone(),
    );
    let (next, _) = exchange(&mut l, &mut f, next);
    assert_eq!(chunks_of(&next)[0], (3, 0, CHUNK), "resumed from 0");
    assert_eq!(l.snapshot_transfer(NodeId::new(3)), Some((3, 0)));
    let mut msgs = next;
    let mut installed = Vec::new();
    while !msgs.is_empty() {
        let (next, snaps) = exchange(&mut l, &mut f, msgs);
        installed.extend(snaps);
        msgs = next;
    }
    assert_eq!(installed.len(), 1);
    assert_eq!(&installed[0].data.to_bytes().unwrap()[..], &data[..]);
}

/// A source that fails every read while `failing` is set, as a file on a failing disk would.
#[derive(Debug)]
struct FlakySource {
    bytes: Vec<u8>,
    failing: Arc<AtomicBool>,
}

impl SnapshotSource for FlakySource {
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::other("injected read error"));
        }
        let o = offset as usize;
        buf.copy_from_slice(&self.bytes[o..o + buf.len()]);
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// A spool whose writers fail the first write that would take a snapshot past `fail_at`
/// bytes, once; then it behaves like memory.
#[derive(Debug)]
struct FlakySpool {
    fail_at: u64,
    failed: Arc<AtomicBool>,
}

struct FlakyWriter {
    buf: Vec<u8>,
    fail_at: u64,
    failed: Arc<AtomicBool>,
}

impl SnapshotSpool for FlakySpool {
    fn create(&self, _size_hint: u64) -> io::Result<Box<dyn SnapshotWriter>> {
        Ok(Box::new(FlakyWriter {
            buf: Vec::new(),
            fail_at: self.fail_at,
            failed: self.failed.clone(),
        }))
    }
}

impl io::Write for FlakyWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let past = (self.buf.len() + data.len()) as u64 > self.fail_at;
        if past && !self.failed.swap(true, Ordering::SeqCst) {
            return Err(io::Error::other("injected write error"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SnapshotWriter for FlakyWriter {
    fn finish(self: Box<Self>) -> io::Result<SnapshotData> {
        Ok(self.buf.into())
    }
}

/// A leader that cannot read its snapshot (a disk error) sends no chunk, and does not count
/// one as sent; once reads work again, the next heartbeat sends the transfer from where it
/// was, and the follower installs the whole snapshot. Without the check a failed read would
/// panic the leader (or send garbage).
#[test]
fn a_snapshot_the_leader_cannot_read_is_sent_once_it_can() {
    let data = snapshot_bytes(10 * CHUNK, 11);
    let failing = Arc::new(AtomicBool::new(true));
    let source = FlakySource {
        bytes: data.clone(),
        failing: failing.clone(),
    };
    let mut l = leader_sending_data(
        chunked(NodeId::new(1)),
        SnapshotData::from_source(Arc::new(source)),
    );
    let msgs = to(l.ready(), NodeId::new(3));
    assert!(
        chunks_of(&msgs).iter().all(|&(_, _, len)| len == 0),
        "no data chunk can be read: {:?}",
        chunks_of(&msgs)
    );
    assert_eq!(l.snapshot_transfer(NodeId::new(3)), Some((3, 0)));
    failing.store(false, Ordering::SeqCst);
    let mut msgs = Vec::new();
    for _ in 0..=l.config().heartbeat_ticks {
        l.tick();
        msgs.extend(to(l.ready(), NodeId::new(3)));
    }
    assert_eq!(chunks_of(&msgs)[0], (3, 0, CHUNK), "sent from the start");
    let mut f = Raft::new(chunked(NodeId::new(3)));
    let mut installed = Vec::new();
    while !msgs.is_empty() {
        let (next, snaps) = exchange(&mut l, &mut f, msgs);
        installed.extend(snaps);
        msgs = next;
    }
    assert_eq!(installed.len(), 1);
    assert_eq!(&installed[0].data.to_bytes().unwrap()[..], &data[..]);
}

/// A follower that cannot write a chunk to its spool (a full disk) drops its partial copy and
/// says it holds nothing; the leader starts again from 0 and the second attempt installs the
/// snapshot whole. Without the check the follower would ack bytes it never stored.
#[test]
fn a_follower_that_cannot_store_a_chunk_gets_the_snapshot_again_from_zero() {
    let data = snapshot_bytes(10 * CHUNK, 12);
    let mut l = leader_sending(chunked(NodeId::new(1)), &data);
    let mut f = Raft::new(chunked(NodeId::new(3)));
    let failed = Arc::new(AtomicBool::new(false));
    f.set_snapshot_spool(Arc::new(FlakySpool {
        fail_at: 5 * CHUNK as u64,
        failed: failed.clone(),
    }));
    let mut msgs = to(l.ready(), NodeId::new(3));
    let (mut offsets, mut installed) = (Vec::new(), Vec::new());
    while !msgs.is_empty() {
        offsets.extend(chunks_of(&msgs).iter().map(|c| c.1));
        let (next, snaps) = exchange(&mut l, &mut f, msgs);
        installed.extend(snaps);
        msgs = next;
    }
    assert!(
        failed.load(Ordering::SeqCst),
        "the write failure was injected"
    );
    assert_eq!(
        offsets.iter().filter(|&&o| o == 0).count(),
        2,
        "the transfer started again from 0: {offsets:?}"
    );
    assert_eq!(installed.len(), 1);
    assert_eq!(&installed[0].data.to_bytes().unwrap()[..], &data[..]);
    assert_eq!(
        l.snapshot_transfer(NodeId::new(3)),
        None,
        "the transfer ended"
    );
}

/// Replication flow control in bytes: with room for 1000 AppendEntries in flight, a leader
/// still sends a silent follower at most `max_inflight_bytes` of entries (8 MiB by default),
/// plus one entry, and more only as the follower acknowledges. (The old code sent all 10 MB.)
/// Written against the old API so it ran, and failed, on the old code.
#[test]
fn appends_in_flight_are_bounded_in_bytes() {
    let budget = 8 << 20;
    let entry = 100_000;
    let mut l = leader_with(Config {
        max_inflight_appends: 1000,
        ..cfg(NodeId::new(1), 3)
    });
    let ack = |m: u64| Message::AppendEntriesReply {
        term: 1,
        match_index: m,
        conflict: None,
    };
    l.step(NodeId::new(2), ack(0));
    l.ready();
    let bytes_to_2 = |ready: Ready| -> usize {
        (ready.messages.iter())
            .filter(|m| m.to == NodeId::new(2))
            .map(|m| match &m.msg {
                Message::AppendEntries { entries, .. } => {
                    entries.iter().map(|e| e.data.len()).sum()
                }
                _ => 0,
            })
            .sum()
    };
    let mut sent = 0;
    for _ in 0..100 {
        l.propose(vec![1; entry]).unwrap();
        sent += bytes_to_2(l.ready());
    }
    assert!(
        sent <= budget + entry,
        "{sent} bytes in flight to a silent follower"
    );
    assert!(sent >= budget - entry, "only {sent} bytes sent");
    // An acknowledgement of 10 entries frees their bytes, and at most that much more goes.
    l.step(NodeId::new(2), ack(10));
    let more = bytes_to_2(l.ready());
    assert!(
        more > 0 && sent + more <= budget + 11 * entry,
        "{more} more bytes"
    );
}

/// Proposals are pushed back while the uncommitted tail holds more than
/// `max_uncommitted_bytes`, admitted again once entries commit, and a large entry is always
/// admitted when the tail holds no data.
#[test]
fn proposals_are_refused_while_the_uncommitted_tail_is_full() {
    let mut l = leader_with(Config {
        max_uncommitted_bytes: 1000,
        ..cfg(NodeId::new(1), 3)
    });
    for _ in 0..10 {
        l.propose(vec![0; 100]).unwrap();
    }
    assert_eq!(
        l.propose(vec![0; 1]),
        Err(ProposeError::Busy {
            uncommitted: 1000,
            limit: 1000
        })
    );
    l.step(
        NodeId::new(2),
        Message::AppendEntriesReply {
            term: 1,
            match_index: 10,
            conflict: None,
        },
    );
    assert_eq!(l.commit_index(), 10);
    let (index, _) = l
        .propose(vec![0; 5000])
        .expect("an empty tail admits any entry");
    assert_eq!(index, 11);
    assert!(matches!(
        l.propose(vec![0; 1]),
        Err(ProposeError::Busy { .. })
    ));
}
