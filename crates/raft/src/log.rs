//! The in-memory Raft log: a snapshot point followed by the entries after it.
//!
//! Invariants (checked by [`RaftLog::check`]):
//! 1. Entry `i` (1-based, global index) lives at `entries[i - snapshot_index - 1]`.
//! 2. Terms never decrease along the log, and none is below `snapshot_term`.
//! 3. Index 0 with term 0 is the empty prefix every log shares.
//! 4. `membership_indices` lists exactly the held entries of kind `Membership`, in order.

use serde::{Deserialize, Serialize};

use crate::error::LogError;
use crate::message::EntryKind;
use crate::{Entry, Membership};

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftLog {
    /// The last index covered by the snapshot (0 = no snapshot).
    snapshot_index: u64,
    /// The term of the entry at `snapshot_index` (0 = no snapshot).
    snapshot_term: u64,
    /// The membership as of `snapshot_index`: the latest one at or below it. `None` until a
    /// snapshot is taken with one known (then the peer's boot configuration applies).
    snapshot_membership: Option<Membership>,
    /// Entries `snapshot_index + 1 ..= last_index()`.
    entries: Vec<Entry>,
    /// The indices of the held membership entries, in order (derived from `entries`: rebuilt
    /// after decoding by [`RaftLog::reindex`]).
    #[serde(skip)]
    membership_indices: Vec<u64>,
}

impl RaftLog {
    pub fn snapshot_index(&self) -> u64 {
        self.snapshot_index
    }

    pub fn snapshot_term(&self) -> u64 {
        self.snapshot_term
    }

    /// The first index still held as an entry (may be `last_index() + 1` when empty).
    pub fn first_index(&self) -> u64 {
        self.snapshot_index + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index + self.entries.len() as u64
    }

    pub fn last_term(&self) -> u64 {
        self.entries.last().map_or(self.snapshot_term, |e| e.term)
    }

    /// The term at `index`, if this log still knows it (the snapshot point counts).
    pub fn term_at(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index {
            Some(self.snapshot_term)
        } else {
            self.entry(index).map(|e| e.term)
        }
    }

    /// The membership as of the snapshot point (`None`: the boot configuration).
    pub fn snapshot_membership(&self) -> Option<&Membership> {
        self.snapshot_membership.as_ref()
    }

    /// The indices of the membership entries held, oldest first.
    pub fn membership_indices(&self) -> &[u64] {
        &self.membership_indices
    }

    /// Rebuilds the derived index of membership entries (after deserialising).
    pub(crate) fn reindex(&mut self) {
        let base = self.snapshot_index;
        self.membership_indices = (self.entries.iter().enumerate())
            .filter(|(_, e)| e.kind == EntryKind::Membership)
            .map(|(i, _)| base + 1 + i as u64)
            .collect();
    }

    /// The entry at `index`, if held (not compacted and not beyond the end).
    pub fn entry(&self, index: u64) -> Option<&Entry> {
        if index <= self.snapshot_index {
            return None;
        }
        self.entries.get((index - self.snapshot_index - 1) as usize)
    }

    /// Entries from `from` onwards (clamped to what is held), at most `max_bytes` of data but
    /// always at least one entry if any is available, so a huge entry still makes progress.
    /// The entries share their bytes with the log: building an AppendEntries copies no payload.
    pub fn entries_from(&self, from: u64, max_bytes: usize) -> Vec<Entry> {
        let start = from.max(self.first_index());
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut i = start;
        while let Some(e) = self.entry(i) {
            if !out.is_empty() && bytes + e.data.len() > max_bytes {
                break;
            }
            bytes += e.data.len();
            out.push(e.clone());
            i += 1;
        }
        out
    }

    /// All held entries from `from` (clamped), for persistence: cloned entries that share their
    /// bytes with the log.
    pub fn tail_from(&self, from: u64) -> Vec<Entry> {
        let start = from.max(self.first_index());
        if start > self.last_index() {
            return Vec::new();
        }
        self.entries[(start - self.snapshot_index - 1) as usize..].to_vec()
    }

    /// The first index of the run of entries with `term` that contains `index`.
    pub fn first_index_of_term_at(&self, index: u64) -> u64 {
        let term = self.term_at(index);
        let mut i = index;
        while i > self.first_index() && self.term_at(i - 1) == term {
            i -= 1;
        }
        i
    }

    /// The last index holding `term`, if any entry in the log has it.
    pub fn last_index_of_term(&self, term: u64) -> Option<u64> {
        // Terms are non-decreasing, so scan back from the end and stop once below `term`.
        let mut i = self.last_index();
        while i >= self.first_index() {
            let t = self.term_at(i).expect("index within log");
            if t == term {
                return Some(i);
            }
            if t < term {
                return None;
            }
            i -= 1;
        }
        None
    }

    pub fn append(&mut self, entry: Entry) -> u64 {
        let kind = entry.kind;
        self.entries.push(entry);
        if kind == EntryKind::Membership {
            self.membership_indices.push(self.last_index());
        }
        self.last_index()
    }

    /// Drops every entry at `index` and after.
    pub fn truncate_from(&mut self, index: u64) {
        assert!(
            index > self.snapshot_index,
            "truncate_from({index}) would cut into the snapshot at {}",
            self.snapshot_index
        );
        self.entries
            .truncate((index - self.snapshot_index - 1) as usize);
        self.membership_indices.retain(|&i| i < index);
    }

    /// Discards entries up to and including `index`, which becomes the new snapshot point,
    /// with `membership` the membership as of it. If the log holds `index` with `term`, the
    /// entries after it are kept; otherwise the whole log is discarded (§7: a snapshot that
    /// does not match the log replaces it). Returns true if the suffix was kept.
    pub fn compact_to(&mut self, index: u64, term: u64, membership: Membership) -> bool {
        let keep = self.term_at(index) == Some(term) && index <= self.last_index();
        if keep {
            self.entries.drain(..(index - self.snapshot_index) as usize);
        } else {
            self.entries.clear();
        }
        self.snapshot_index = index;
        self.snapshot_term = term;
        self.snapshot_membership = Some(membership);
        self.reindex();
        keep
    }

    /// A log from the parts of an older format (no membership: the boot configuration).
    pub(crate) fn from_parts(snapshot_index: u64, snapshot_term: u64, entries: Vec<Entry>) -> Self {
        let mut log = RaftLog {
            snapshot_index,
            snapshot_term,
            snapshot_membership: None,
            entries,
            membership_indices: Vec::new(),
        };
        log.reindex();
        log
    }

    /// Checks the invariants in the module docs; panics with a sentence if one is broken.
    pub fn check(&self) {
        if let Err(e) = self.validate() {
            panic!("{e}");
        }
    }

    /// As [`RaftLog::check`], returning the broken invariant instead (for decoded logs).
    pub fn validate(&self) -> Result<(), LogError> {
        let mut prev = self.snapshot_term;
        for (i, e) in self.entries.iter().enumerate() {
            let index = self.snapshot_index + 1 + i as u64;
            if e.term < prev {
                return Err(LogError::TermDecreases {
                    index,
                    term: e.term,
                    previous_term: prev,
                });
            }
            prev = e.term;
            if e.kind == EntryKind::Membership && Membership::decode(&e.data).is_none() {
                return Err(LogError::BadMembership { index });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log_with_terms(terms: &[u64]) -> RaftLog {
        let mut log = RaftLog::default();
        for &t in terms {
            log.append(Entry::command(t, vec![t as u8]));
        }
        log
    }

    /// A decoded log that breaks invariant 2, or holds a membership entry that is no
    /// membership, is refused with the index at fault.
    #[test]
    fn validate_names_the_broken_entry() {
        assert_eq!(log_with_terms(&[1, 2, 2]).validate(), Ok(()));
        let backwards = RaftLog::from_parts(
            4,
            3,
            vec![Entry::command(3, vec![]), Entry::command(2, vec![])],
        );
        assert_eq!(
            backwards.validate(),
            Err(LogError::TermDecreases {
                index: 6,
                term: 2,
                previous_term: 3
            })
        );
        let below_snapshot = RaftLog::from_parts(4, 3, vec![Entry::command(2, vec![])]);
        assert_eq!(
            below_snapshot.validate(),
            Err(LogError::TermDecreases {
                index: 5,
                term: 2,
                previous_term: 3
            })
        );
        let garbage = Entry {
            term: 1,
            kind: EntryKind::Membership,
            data: vec![0xff; 3].into(),
        };
        let bad_membership = RaftLog::from_parts(0, 0, vec![Entry::command(1, vec![]), garbage]);
        assert_eq!(
            bad_membership.validate(),
            Err(LogError::BadMembership { index: 2 })
        );
    }

    #[test]
    fn term_lookup_and_runs() {
        let log = log_with_terms(&[1, 1, 2, 2, 2, 4]);
        assert_eq!(log.last_index(), 6);
        assert_eq!(log.term_at(0), Some(0));
        assert_eq!(log.term_at(4), Some(2));
        assert_eq!(log.term_at(7), None);
        assert_eq!(log.first_index_of_term_at(5), 3);
        assert_eq!(log.last_index_of_term(2), Some(5));
        assert_eq!(log.last_index_of_term(3), None);
    }

    #[test]
    fn compaction_keeps_matching_suffix_and_drops_mismatch() {
        let mut log = log_with_terms(&[1, 1, 2, 2]);
        assert!(log.compact_to(2, 1, Membership::default()));
        assert_eq!((log.first_index(), log.last_index()), (3, 4));
        assert_eq!(log.term_at(2), Some(1));
        assert!(!log.compact_to(6, 3, Membership::default()));
        assert_eq!((log.snapshot_index(), log.last_index()), (6, 6));
    }

    #[test]
    fn entries_from_respects_byte_cap_but_sends_at_least_one() {
        let mut log = RaftLog::default();
        for _ in 0..4 {
            log.append(Entry::command(1, vec![0; 100]));
        }
        assert_eq!(log.entries_from(1, 250).len(), 2);
        assert_eq!(log.entries_from(1, 10).len(), 1);
        assert_eq!(log.entries_from(5, 10).len(), 0);
    }
}
