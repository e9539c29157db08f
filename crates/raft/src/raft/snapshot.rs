//! Snapshots (§7) sent in chunks with flow control (the paper's Figure 13, offset and done).
//!
//! The rules, on a leader, for each follower behind its snapshot (invariant 10):
//! * **One transfer at a time**, of the leader's current snapshot, tracked by `sent` (the
//!   next byte to send) and `acked` (the bytes the follower said it holds contiguously).
//!   A newer snapshot taken meanwhile restarts the transfer from byte 0 at the next chunk
//!   sent (on a reply or a heartbeat); the follower drops its partial copy of the old one.
//! * **Window**: chunks of at most `snapshot_chunk_bytes` go while the bytes sent and not
//!   acknowledged stay within `max_snapshot_inflight_bytes` (one chunk always may). Replies
//!   that acknowledge bytes open the window again; proposals send nothing to such a follower.
//! * **Heartbeats resend nothing**: a heartbeat sends new chunks if the window has room, else
//!   an empty chunk at `acked`, which restarts the follower's election timer and asks for its
//!   progress. Only a transfer that has made no progress for `election_timeout_min_ticks`
//!   resumes: from `acked`, not from 0.
//! * **Gaps**: a reply with `received` below the chunk's `offset` says the follower missed
//!   bytes before it (a lost chunk; or, with `received` below `acked`, a follower that
//!   restarted). The leader then resumes from `received`, once per loss: further gap replies
//!   to chunks sent before that resumption change nothing until the follower acknowledges
//!   new bytes (a second loss in a row waits for the stall timeout).
//! * **Done**: a reply with `done` counts as a match at the snapshot's index (the follower
//!   installed it or already had it) and ends the transfer; replication continues with
//!   AppendEntries.
//!
//! On a follower (invariant 11):
//! * Chunks of one snapshot (its index, term and length, from the leader of the current
//!   term) are written, in order, to a [`crate::SnapshotWriter`] from the driver's spool
//!   ([`Raft::set_snapshot_spool`]: memory by default, a temporary file for a deployed node,
//!   so a replica never holds a received snapshot in memory beside the state it restores
//!   from it): a chunk that starts at or before the bytes written adds what it has beyond
//!   them; one after a gap is not taken (the reply says so).
//! * A chunk of another (newer) snapshot replaces the partial copy; a late chunk of an older
//!   one is answered and dropped. A term change or a restart forgets the partial copy: another
//!   leader's snapshot at the same index may hold other bytes.
//! * Only once every byte has arrived is the snapshot installed, at once and as a whole,
//!   exactly as a single-message InstallSnapshot was: log compacted, `Apply::Snapshot`,
//!   `Ready::snapshot` (the writer finished, so a file is durable before it is installed). A snapshot at or below the follower's commit index is answered `done`
//!   without being taken.
//! * Malformed chunks (past their stated length) are dropped without an answer.
//!
//! Storage errors: a chunk the leader cannot read from its snapshot is not sent (the stall
//! timeout resumes the transfer); a chunk or a snapshot the follower cannot write or finish
//! drops its partial copy and answers that it holds nothing, so the leader starts again.

use std::fmt;

use bytes::Bytes;

use super::{Progress, Raft};
use crate::message::Message;
use crate::ready::{Apply, Snapshot};
use crate::{Membership, NodeId, Role, SnapshotData, SnapshotWriter};

/// A leader's snapshot transfer to one follower (invariant 10).
#[derive(Clone, Debug)]
pub(super) struct SnapshotSend {
    /// The index of the snapshot being sent.
    pub(super) index: u64,
    /// Its length in bytes.
    total: u64,
    /// The next byte to send.
    sent: u64,
    /// Bytes the follower acknowledged holding, from the start.
    acked: u64,
    /// The transfer was resumed from `acked` after a gap, and no new byte was acknowledged
    /// since: further gap replies are answers to chunks sent before that.
    rewound: bool,
    /// The leader tick at which the transfer started or last made progress (or resumed).
    last_progress: u64,
}

/// A follower's partial snapshot (invariant 11).
pub(super) struct Incoming {
    /// The term of the leader sending it.
    term: u64,
    index: u64,
    snap_term: u64,
    total: u64,
    /// Holds bytes `0..received` of the snapshot.
    writer: Box<dyn SnapshotWriter>,
    received: u64,
}

impl fmt::Debug for Incoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Incoming")
            .field("term", &self.term)
            .field("index", &self.index)
            .field("snap_term", &self.snap_term)
            .field("total", &self.total)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl Incoming {
    pub(super) fn index(&self) -> u64 {
        self.index
    }
}

impl Raft {
    /// The bytes the follower holds of the snapshot a transfer to `peer` is sending, if one
    /// is under way (for tests and status).
    pub fn snapshot_transfer(&self, peer: NodeId) -> Option<(u64, u64)> {
        let s = self.progress.get(&peer)?.snapshot.as_ref()?;
        Some((s.index, s.acked))
    }

    /// Sends `peer` the chunks of the current snapshot its window allows, starting (or
    /// restarting, for a newer snapshot) its transfer if needed. With `keepalive`, an empty
    /// chunk at `acked` goes if no chunk does, so the follower hears from its leader.
    pub(super) fn send_snapshot(&mut self, peer: NodeId, keepalive: bool) {
        let (index, snap_term) = (self.log.snapshot_index(), self.log.snapshot_term());
        let total = self.snapshot_data.len();
        let chunk = self.cfg.snapshot_chunk_bytes.max(1) as u64;
        let window = self.cfg.max_snapshot_inflight_bytes as u64;
        let now = self.ticks;
        let p = self
            .progress
            .get_mut(&peer)
            .expect("leader tracks every peer");
        let mut keepalive = keepalive;
        if p.snapshot.as_ref().is_none_or(|s| s.index != index) {
            p.snapshot = Some(SnapshotSend {
                index,
                total,
                sent: 0,
                acked: 0,
                rewound: false,
                last_progress: now,
            });
            p.probing = true;
            p.inflight = 0;
            p.sent_appends.clear();
            p.inflight_bytes = 0;
            keepalive = true;
        }
        let s = p.snapshot.as_mut().expect("just ensured");
        let mut ranges = Vec::new();
        let mut sent = s.sent;
        while sent < s.total {
            let len = chunk.min(s.total - sent);
            let in_flight = sent - s.acked;
            if in_flight > 0 && in_flight + len > window {
                break;
            }
            ranges.push((sent, len));
            sent += len;
        }
        if ranges.is_empty() && keepalive {
            ranges.push((s.acked, 0));
        }
        if ranges.is_empty() {
            return;
        }
        let membership = self.membership_at(index);
        for (offset, len) in ranges {
            // A chunk that cannot be read is not sent, nor the ones after it: the transfer
            // stalls and resumes from what the follower acknowledged (a storage error is
            // treated as a lost message).
            let Ok(data) = self.snapshot_data.chunk(offset, len as usize) else {
                break;
            };
            if let Some(s) = (self.progress.get_mut(&peer)).and_then(|p| p.snapshot.as_mut()) {
                s.sent = s.sent.max(offset + len);
            }
            let msg = Message::InstallSnapshot {
                term: self.hard.term,
                last_included_index: index,
                last_included_term: snap_term,
                membership: membership.clone(),
                total_len: total,
                offset,
                data,
            };
            self.send(peer, msg);
        }
    }

    /// A heartbeat to a follower behind the snapshot: resumes a stalled transfer from what
    /// the follower acknowledged, then sends what the window allows or an empty chunk.
    pub(super) fn heartbeat_snapshot(&mut self, peer: NodeId) {
        let stall = u64::from(self.cfg.election_timeout_min_ticks);
        let (index, now) = (self.log.snapshot_index(), self.ticks);
        let p = self
            .progress
            .get_mut(&peer)
            .expect("leader tracks every peer");
        if let Some(s) = p.snapshot.as_mut() {
            if s.index == index && s.sent > s.acked && now - s.last_progress >= stall {
                s.sent = s.acked;
                s.rewound = false;
                s.last_progress = now;
            }
        }
        self.send_snapshot(peer, true);
    }

    pub(super) fn on_install_snapshot(
        &mut self,
        from: NodeId,
        term: u64,
        (index, snap_term): (u64, u64),
        membership: Membership,
        (total, offset): (u64, u64),
        data: Bytes,
    ) {
        let reply = |term: u64, received: u64, done: bool| Message::InstallSnapshotReply {
            term,
            last_included_index: index,
            offset,
            received,
            done,
        };
        if !self.follow_leader(from, term, reply(self.hard.term, 0, false)) {
            return;
        }
        let term = self.hard.term;
        // A snapshot at or below our commit point adds nothing; entries up to it match anyway.
        if index <= self.commit {
            self.send(from, reply(term, 0, true));
            return;
        }
        let end = offset.checked_add(data.len() as u64);
        let Some(end) = end.filter(|&e| e <= total) else {
            return;
        };
        let same = (self.incoming.as_ref())
            .is_some_and(|i| (i.index, i.snap_term, i.total) == (index, snap_term, total));
        if !same {
            if self.incoming.as_ref().is_some_and(|i| i.index > index) {
                // A late chunk of an older snapshot: this leader has moved on.
                self.send(from, reply(term, 0, false));
                return;
            }
            // An absurd length (or a full disk) gets no answer: the leader retries.
            let Ok(writer) = self.spool.create(total) else {
                return;
            };
            self.incoming = Some(Incoming {
                term,
                index,
                snap_term,
                total,
                writer,
                received: 0,
            });
        }
        let inc = self.incoming.as_mut().expect("just ensured");
        let have = inc.received;
        if offset <= have && end > have {
            if inc
                .writer
                .write_all(&data[(have - offset) as usize..])
                .is_err()
            {
                self.incoming = None;
                self.send(from, reply(term, 0, false));
                return;
            }
            inc.received = end;
        }
        let received = inc.received;
        if received < total {
            self.send(from, reply(term, received, false));
            return;
        }
        let inc = self.incoming.take().expect("just ensured");
        let Ok(data) = inc.writer.finish() else {
            self.send(from, reply(term, 0, false));
            return;
        };
        self.install_snapshot(index, snap_term, membership, data);
        self.send(from, reply(term, received, true));
    }

    /// Installs a complete snapshot from the leader: the log up to `index` is replaced, the
    /// service gets it in `Apply::Snapshot`, the driver stores it (`Ready::snapshot`).
    fn install_snapshot(
        &mut self,
        index: u64,
        term: u64,
        membership: Membership,
        data: SnapshotData,
    ) {
        let kept_suffix = self.log.compact_to(index, term, membership);
        if !kept_suffix {
            self.mark_unstable(index + 1);
        }
        self.refresh_membership();
        self.snapshot_data = data.clone();
        self.snapshot_dirty = true;
        self.commit = index;
        self.applied = index;
        self.applies
            .push(Apply::Snapshot(Snapshot { index, term, data }));
    }

    pub(super) fn on_install_snapshot_reply(
        &mut self,
        from: NodeId,
        term: u64,
        index: u64,
        (offset, received): (u64, u64),
        done: bool,
    ) {
        if self.role != Role::Leader || term != self.hard.term {
            return;
        }
        if done {
            if self
                .record_match(from, index)
                .is_some_and(|next| next <= self.log.last_index())
            {
                self.send_append(from);
            }
            return;
        }
        let now = self.ticks;
        let Some(s) = (self.progress.get_mut(&from)).and_then(|p| p.snapshot.as_mut()) else {
            return;
        };
        if s.index != index || received > s.total {
            return;
        }
        if received > s.acked {
            s.acked = received;
            s.sent = s.sent.max(received);
            s.rewound = false;
            s.last_progress = now;
        } else if received < offset && (received < s.acked || !s.rewound) {
            // A gap before the answered chunk: resume from what the follower holds.
            s.acked = received;
            s.sent = received;
            s.rewound = true;
            s.last_progress = now;
        }
        self.send_snapshot(from, false);
    }

    /// Invariant 10 for the transfer to `peer`, if any.
    pub(super) fn check_snapshot_send(&self, peer: NodeId, pr: &Progress) {
        let Some(s) = &pr.snapshot else { return };
        let id = self.cfg.id;
        let current = self.log.snapshot_index();
        assert!(
            s.acked <= s.sent
                && s.sent <= s.total
                && s.index <= current
                && pr.matched < s.index
                && pr.next <= s.index
                && pr.sent_appends.is_empty(),
            "raft {id}: transfer to {peer} of snapshot {} (current {current}) at acked {} sent \
             {} of {}, with matched {} next {} and {} appends in flight",
            s.index,
            s.acked,
            s.sent,
            s.total,
            pr.matched,
            pr.next,
            pr.sent_appends.len()
        );
        if s.index == current {
            assert_eq!(
                s.total,
                self.snapshot_data.len(),
                "raft {id}: transfer to {peer} has the wrong length"
            );
        }
    }

    /// Invariant 11.
    pub(super) fn check_incoming(&self) {
        let Some(inc) = &self.incoming else { return };
        assert!(
            self.role == Role::Follower
                && inc.term == self.hard.term
                && inc.received < inc.total
                && inc.index > self.commit,
            "raft {}: a {:?} of term {} with commit {} holds {} of {} bytes of snapshot {} \
             from term {}",
            self.cfg.id,
            self.role,
            self.hard.term,
            self.commit,
            inc.received,
            inc.total,
            inc.index,
            inc.term
        );
    }
}
