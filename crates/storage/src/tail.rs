//! Format 1 only: what follows the last valid record of the last WAL segment of a version-1
//! generation: free preallocated space, a torn tail (a crash cut the last, unsynced writes
//! short), or corruption (damage to bytes that were already durable). Kept to open
//! directories written before format 2; the open rewrites them in format 2 at once.
//!
//! Format 2 states the invariant these rules could not: **any subset of the pages of the
//! unsynced last batch reads as a torn tail (the batch dropped whole), and only damage to
//! what an earlier sync covered is corruption.** Each batch starts on a fresh page with a
//! header giving its length and the checksum of all of it, and no write touches a page that
//! holds synced data (crate docs, invariants P and B, and `recovery::scan_batches`). The
//! text below describes format 1, including the hole it left, which format 2 closes.
//!
//! What a crash leaves: records are only written after the last valid one, into zeros the
//! segment was preallocated with (see `crate::segment`) or past the end of the file, and
//! everything up to the last fsync is durable. After it, the file holds part of the last
//! batch, then zeros (preallocated space, or space whose new length reached the disk before
//! its data), or on some file systems garbage, up to its end. So after the last valid
//! record:
//!
//! - nothing but zeros is **free space**: the normal end of a preallocated segment (or of a
//!   batch lost whole). Not an error, no warning; the next record goes where it starts;
//! - damage running to the end of the data is a **torn tail**;
//! - damage with an intact record after it is **corruption**.
//!
//! The *end of the data* is one past the last non-zero byte: what the end of the file was
//! before segments had a zero tail. A valid record may end after it, if its payload ends in
//! zero bytes; whatever follows such a record is zeros.
//!
//! Ordering assumption and its limit: ext4 (`data=ordered`) and XFS persist an appending
//! file's data before its new length, so a torn append is a prefix of the batch. Overwrites
//! of preallocated space have no such order: after a power failure or kernel crash (not a
//! process crash, after which the page cache still holds the whole write) the disk may keep
//! a later part of the last batch and lose an earlier one, leaving a hole of zeros inside it.
//! If a whole record survived after the hole, this reads as corruption: it cannot be told
//! from a zeroed block of durable data followed by records, which must be corruption. The
//! error is on the safe side (the node does not start; nothing acknowledged is dropped), and
//! names the offset where an operator who knows the machine lost power can cut the file.
//! (Format 2 has no such hole: see above.) Format 1 also rewrote, with each batch, the
//! page holding the last synced record, which a torn write could damage.

use crate::format::{read_frame, FRAME_HEADER_LEN};

/// What follows the first bad frame, at `bad`, of the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Only zeros from `bad` to the end of the file.
    Free,
    /// Damage and no valid record after it, the last non-zero byte just before `data_end`.
    Torn { data_end: usize },
    /// A valid record starts at `next`, after the damage.
    Corrupt { next: usize },
}

/// Classifies what follows the bad frame at `bad` (see the module docs).
///
/// A valid record after `bad` is looked for in two places:
///
/// 1. where the bad frame's declared length says the next frame starts, and where it would
///    start were one bit of that length flipped (the damage is in a payload or checksum, or
///    one bit of the length);
/// 2. any frame starting after `bad` whose end is at or after the end of the data, within
///    the file: the last record written is intact, whatever happened to the length before
///    it; only zeros follow it.
///
/// Cost: 33 frame reads, then one comparison per byte after `bad`, and a checksum only where
/// a length field points into the zeros after the data. Those checksums share one pass over
/// the data (candidates are tried from the back, extending a checksum of the data's suffix
/// with `crc32c_combine`), plus the zeros each candidate covers: at most the zero tail, a
/// preallocation chunk.
///
/// Blind spots, needing damage plus a coincidence (besides the holes above): multi-bit damage
/// to a length field while the file's last record is torn too reads as a torn tail (the
/// records in between are dropped with a warning); a torn record whose payload happens to
/// contain, ending where the tear starts, bytes that form a valid frame (say, a stored copy
/// of a WAL segment) reads as corruption; and damage that zeroes the last records of the last
/// segment, to the end of the data, reads as free space (like damage to the very last record,
/// which reads as a torn write: no framing tells those apart without a second copy).
pub(crate) fn classify(buf: &[u8], bad: usize) -> Tail {
    let data_end = data_end(buf, bad);
    if data_end == bad {
        return Tail::Free;
    }
    match next_frame_guesses(buf, bad).or_else(|| frame_ending_in_zeros(buf, bad, data_end)) {
        Some(next) => Tail::Corrupt { next },
        None => Tail::Torn { data_end },
    }
}

/// One past the last non-zero byte at or after `from`; `from` if there is none.
fn data_end(buf: &[u8], from: usize) -> usize {
    let rest = &buf[from.min(buf.len())..];
    rest.iter()
        .rposition(|&b| b != 0)
        .map_or(from, |last| from + last + 1)
}

fn u32_at(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

/// Place 1: the declared length, and each one-bit change of it.
fn next_frame_guesses(buf: &[u8], bad: usize) -> Option<usize> {
    let len = u32_at(buf, bad)?;
    std::iter::once(len)
        .chain((0..32).map(|bit| len ^ (1 << bit)))
        .filter(|&l| l > 0)
        .filter_map(|l| (bad + FRAME_HEADER_LEN).checked_add(l as usize))
        .find(|&at| at < buf.len() && read_frame(buf, at).is_ok())
}

/// Place 2: a valid frame that starts after `bad`, covers the end of the data `data_end`
/// and ends within the file (so only zeros follow it). Without a zero tail, and with a last
/// payload not ending in zeros, that is a frame ending exactly at the end of the file.
///
/// Tried from the back, so an intact last record is found after scanning its own bytes
/// only. Each candidate's payload checksum is that of `buf[payload..data_end]`, kept as a
/// running suffix checksum extended to the front (`crc32c_combine`: the bytes in between
/// are read once in all), continued over the zeros the candidate covers.
fn frame_ending_in_zeros(buf: &[u8], bad: usize, data_end: usize) -> Option<usize> {
    // crc32c(buf[suffix..data_end]); the empty suffix's checksum is 0.
    let (mut suffix, mut suffix_crc) = (data_end, 0u32);
    for at in (bad + 1..data_end).rev() {
        let Some(len) = u32_at(buf, at).filter(|&l| l > 0) else {
            continue;
        };
        let payload = at + FRAME_HEADER_LEN;
        let end = payload.saturating_add(len as usize);
        if end < data_end || end > buf.len() {
            continue;
        }
        let crc = if payload >= data_end {
            crc32c::crc32c(&buf[payload..end]) // zeros only
        } else {
            if payload < suffix {
                let piece = crc32c::crc32c(&buf[payload..suffix]);
                suffix_crc = crc32c::crc32c_combine(piece, suffix_crc, data_end - suffix);
                suffix = payload;
            }
            crc32c::crc32c_append(suffix_crc, &buf[data_end..end])
        };
        if u32_at(buf, at + 4) == Some(crc) {
            return Some(at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::frame_header;

    fn frames(payloads: &[&[u8]]) -> (Vec<u8>, Vec<usize>) {
        let (mut buf, mut starts) = (Vec::new(), Vec::new());
        for p in payloads {
            starts.push(buf.len());
            buf.extend_from_slice(&frame_header(&[p]).unwrap());
            buf.extend_from_slice(p);
        }
        (buf, starts)
    }

    fn valid_data_after(buf: &[u8], bad: usize) -> Option<usize> {
        match classify(buf, bad) {
            Tail::Corrupt { next } => Some(next),
            Tail::Free | Tail::Torn { .. } => None,
        }
    }

    /// `buf` followed by `zeros` zero bytes: a preallocated segment.
    fn with_zeros(buf: &[u8], zeros: usize) -> Vec<u8> {
        [buf, &vec![0; zeros]].concat()
    }

    #[test]
    fn zeros_after_the_last_record_are_free_space() {
        let (buf, starts) = frames(&[b"first", b"second"]);
        let end = buf.len();
        assert_eq!(classify(&with_zeros(&buf, 4096), end), Tail::Free);
        assert_eq!(classify(&with_zeros(&buf, 3), end), Tail::Free);
        assert_eq!(classify(&buf, end), Tail::Free, "the empty remainder");
        // Zeros where a record was: what recovery sees is the same (a blind spot).
        let mut zeroed = with_zeros(&buf, 100);
        zeroed[starts[1]..end].fill(0);
        assert_eq!(classify(&zeroed, starts[1]), Tail::Free);
    }

    #[test]
    fn a_cut_or_zero_fill_is_torn() {
        let (buf, starts) = frames(&[b"first", b"second", b"third record"]);
        for cut in starts[2] + 1..buf.len() {
            assert_eq!(valid_data_after(&buf[..cut], starts[2]), None, "cut {cut}");
            // The same cut inside preallocated space: the rest stays zero.
            let mut zeroed = with_zeros(&buf, 4096);
            zeroed[cut..].fill(0);
            let tail = classify(&zeroed, starts[2]);
            assert!(
                matches!(tail, Tail::Torn { data_end } if data_end <= cut),
                "zeroed from {cut}: {tail:?}"
            );
        }
        let mut garbage = buf[..starts[2]].to_vec();
        garbage.resize(buf.len() + 4096, 0xa5);
        assert_eq!(valid_data_after(&garbage, starts[2]), None);
    }

    #[test]
    fn damage_with_a_valid_record_after_it_is_found() {
        let (buf, starts) = frames(&[b"first", b"second", b"third record"]);
        for zeros in [0, 1, 4096] {
            let buf = with_zeros(&buf, zeros);
            for byte in starts[1]..starts[2] {
                for bit in 0..8 {
                    let mut b = buf.clone();
                    b[byte] ^= 1 << bit;
                    assert!(valid_data_after(&b, starts[1]).is_some(), "{byte}.{bit}");
                }
            }
            // Two bits of a length at once: only the record ending the data shows.
            let mut b = buf.clone();
            b[starts[0]] ^= 0x30;
            assert_eq!(valid_data_after(&b, starts[0]), Some(starts[2]), "{zeros}");
        }
        // With the tail torn too, the record after the damaged one is still found.
        let torn = &buf[..buf.len() - 1];
        for byte in starts[0]..starts[1] {
            let mut b = with_zeros(torn, 4096);
            b[byte] ^= 0x04;
            assert_eq!(valid_data_after(&b, starts[0]), Some(starts[1]), "{byte}");
        }
    }

    #[test]
    fn a_last_record_ending_in_zeros_is_found_past_the_end_of_the_data() {
        // Its payload's zeros run into the zero tail: the end of the data is inside it.
        let (buf, starts) = frames(&[b"first", b"second", b"third\0\0\0\0\0\0\0\0"]);
        for zeros in [0, 7, 4096] {
            let mut b = with_zeros(&buf, zeros);
            b[starts[0]..starts[1]].fill(0); // a zeroed block: no length to follow
            assert_eq!(data_end(&b, starts[0]), buf.len() - 8);
            assert_eq!(valid_data_after(&b, starts[0]), Some(starts[2]), "{zeros}");
        }
        // A payload of zeros only, after its header.
        let (buf, starts) = frames(&[b"first", &[0; 300]]);
        let mut b = with_zeros(&buf, 50);
        b[starts[0]..starts[0] + 8].fill(0);
        assert_eq!(valid_data_after(&b, starts[0]), Some(starts[1]));
    }

    /// Place 2 computed directly, one checksum per candidate.
    fn place_2_directly(buf: &[u8], bad: usize) -> Option<usize> {
        let data_end = data_end(buf, bad);
        (bad + 1..data_end).rev().find(|&at| {
            let end = u32_at(buf, at).map(|l| at + FRAME_HEADER_LEN + l as usize);
            end.is_some_and(|e| e >= data_end) && read_frame(buf, at).is_ok()
        })
    }

    #[test]
    fn the_running_suffix_checksum_agrees_with_direct_ones() {
        // The last payload holds decoy headers whose lengths point into the zero tail, each
        // extending the running checksum before the real record is tried; the one at `k` may
        // carry a right checksum, making it a valid frame itself.
        let tail = 64;
        for valid_decoy in [None, Some(8), Some(24)] {
            let mut payload: Vec<u8> = (0..80u8).map(|i| i.wrapping_mul(37) | 1).collect();
            for k in [48, 40, 24, 8] {
                let covers = payload.len() - k - FRAME_HEADER_LEN + k % tail;
                payload[k..k + 4].copy_from_slice(&(covers as u32).to_le_bytes());
                let crc = if valid_decoy == Some(k) {
                    let body = with_zeros(&payload[k + FRAME_HEADER_LEN..], k % tail);
                    crc32c::crc32c(&body[..covers])
                } else {
                    0xdead_beef
                };
                payload[k + 4..k + 8].copy_from_slice(&crc.to_le_bytes());
            }
            let (buf, starts) = frames(&[b"first", b"second", &payload]);
            let mut b = with_zeros(&buf, tail);
            b[starts[1]..starts[1] + 4].fill(0);
            let expected = valid_decoy.map_or(starts[2], |k| starts[2] + FRAME_HEADER_LEN + k);
            assert_eq!(valid_data_after(&b, starts[1]), Some(expected));
            assert_eq!(place_2_directly(&b, starts[1]), Some(expected));
            for bad in starts[1]..b.len() {
                let found = frame_ending_in_zeros(&b, bad, data_end(&b, bad));
                assert_eq!(found, place_2_directly(&b, bad), "{valid_decoy:?} {bad}");
            }
        }
    }
}
