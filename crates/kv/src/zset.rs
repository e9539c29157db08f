//! A sorted set: members with scores, ordered by (score, member) as Redis orders them.
//!
//! Two indexes of the same pairs: `scores` (member → score) answers ZSCORE and finds a member's
//! place; `order` holds `(score, member)` in Redis's order (score, then member bytes) for the
//! range commands. Invariant: both hold exactly the same pairs. Scores are never NaN (the
//! commands refuse a NaN, as Redis does), so [`Score`]'s total order is the numeric one, with
//! -0.0 and 0.0 kept equal (normalised to 0.0 on the way in).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use flotilla_rsm::stream::{varint_len, write_varint};

/// A score: an `f64` that is never NaN, so it can be ordered and compared.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(f64);

impl Score {
    /// The score, or `None` for a NaN (which Redis refuses).
    pub fn new(v: f64) -> Option<Score> {
        if v.is_nan() {
            None
        } else if v == 0.0 {
            Some(Score(0.0))
        } else {
            Some(Score(v))
        }
    }

    pub fn get(self) -> f64 {
        self.0
    }
}

impl Eq for Score {}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Score {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0)
    }
}

/// A sorted set's members and scores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ZSet {
    scores: BTreeMap<Vec<u8>, Score>,
    order: BTreeSet<(Score, Vec<u8>)>,
}

impl ZSet {
    pub fn new() -> ZSet {
        ZSet::default()
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }

    pub fn score(&self, member: &[u8]) -> Option<Score> {
        self.scores.get(member).copied()
    }

    /// Sets a member's score; the old score if it had one.
    pub fn insert(&mut self, member: Vec<u8>, score: Score) -> Option<Score> {
        let old = self.scores.insert(member.clone(), score);
        if let Some(old) = old {
            self.order.remove(&(old, member.clone()));
        }
        self.order.insert((score, member));
        old
    }

    /// Removes a member; its score if it was there.
    pub fn remove(&mut self, member: &[u8]) -> Option<Score> {
        let (member, score) = self.scores.remove_entry(member)?;
        self.order.remove(&(score, member));
        Some(score)
    }

    /// Removes and returns the lowest (score, member) pair.
    pub fn pop_min(&mut self) -> Option<(Vec<u8>, Score)> {
        let (score, member) = self.order.pop_first()?;
        self.scores.remove(&member);
        Some((member, score))
    }

    /// Removes and returns the highest (score, member) pair.
    pub fn pop_max(&mut self) -> Option<(Vec<u8>, Score)> {
        let (score, member) = self.order.pop_last()?;
        self.scores.remove(&member);
        Some((member, score))
    }

    /// Members and scores in Redis's order: ascending score, then member bytes.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&[u8], Score)> + '_ {
        self.order.iter().map(|(s, m)| (m.as_slice(), *s))
    }

    /// Members and scores in member order (what the record encodes, and lexicographic ranges).
    pub fn by_member(&self) -> impl DoubleEndedIterator<Item = (&[u8], Score)> + '_ {
        self.scores.iter().map(|(m, s)| (m.as_slice(), *s))
    }

    /// The pairs with `from <= (score, member)`, in order (a range's start without a scan).
    pub fn range_from(&self, score: Score) -> impl DoubleEndedIterator<Item = (&[u8], Score)> + '_ {
        self.order
            .range((score, Vec::new())..)
            .map(|(s, m)| (m.as_slice(), *s))
    }

    /// The member's 0-based rank in ascending order.
    pub fn rank(&self, member: &[u8]) -> Option<usize> {
        let score = self.score(member)?;
        Some(self.order.range(..(score, member.to_vec())).count())
    }

    pub(crate) fn payload_len(&self) -> u64 {
        let items: u64 = (self.by_member())
            .map(|(m, _)| varint_len(m.len() as u64) + m.len() as u64 + 8)
            .sum();
        varint_len(self.len() as u64) + items
    }

    /// `[count: varint]` then per member in member order `[len: varint][bytes][score: f64 LE]`.
    pub(crate) fn write_payload(&self, out: &mut dyn Write) -> io::Result<()> {
        write_varint(out, self.len() as u64)?;
        for (m, s) in self.by_member() {
            write_varint(out, m.len() as u64)?;
            out.write_all(m)?;
            out.write_all(&s.get().to_le_bytes())?;
        }
        Ok(())
    }

    pub(crate) fn read_payload(input: &mut &[u8]) -> Option<ZSet> {
        let count = crate::slot::read_varint(input)?;
        let mut z = ZSet::new();
        for _ in 0..count {
            let m = crate::slot::read_bytes(input)?;
            let (bits, rest) = input.split_first_chunk::<8>()?;
            *input = rest;
            let score = Score::new(f64::from_le_bytes(*bits))?;
            z.insert(m, score);
        }
        Some(z)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_is_score_then_member_and_indexes_agree() {
        let mut z = ZSet::new();
        let s = |v| Score::new(v).unwrap();
        z.insert(b"b".to_vec(), s(1.0));
        z.insert(b"a".to_vec(), s(1.0));
        z.insert(b"c".to_vec(), s(-0.0));
        assert_eq!(z.insert(b"b".to_vec(), s(-5.0)), Some(s(1.0)));
        let order: Vec<_> = z.iter().map(|(m, _)| m.to_vec()).collect();
        assert_eq!(order, [b"b".to_vec(), b"c".to_vec(), b"a".to_vec()]);
        assert_eq!(z.rank(b"a"), Some(2));
        assert_eq!(z.remove(b"c"), Some(s(0.0)));
        assert_eq!(z.iter().count(), z.len());
        assert!(Score::new(f64::NAN).is_none());
        let mut out = Vec::new();
        z.write_payload(&mut out).unwrap();
        assert_eq!(out.len() as u64, z.payload_len());
        assert_eq!(ZSet::read_payload(&mut &out[..]), Some(z));
    }
}
