//! Telling a torn tail (a crash cut the last, unsynced writes short) from corruption (damage
//! to bytes that were already durable) in the last WAL segment.
//!
//! What a crash leaves: the segment is only ever appended to, and everything up to the last
//! fsync is durable. After it, the file holds a prefix of the later writes, possibly followed
//! by zeros or garbage up to its end (the size may reach the disk before the data). So a
//! torn tail is damage that runs to the end of the file; damage with an intact record after
//! it is corruption. The file system is assumed to persist an appending file's data in order,
//! as ext4 (`data=ordered`) and XFS do: one that could keep a later page and drop an earlier
//! one would make a crash look like corruption here (never the reverse).

use crate::format::{read_frame, FRAME_HEADER_LEN};

/// The offset of a valid record found after the bad frame at `bad`, if any: evidence that
/// the damage at `bad` is not a torn tail. Looks in two places:
///
/// 1. where the bad frame's declared length says the next frame starts, and where it would
///    start were one bit of that length flipped (the damage is in a payload or checksum, or
///    one bit of the length);
/// 2. any frame starting after `bad` and ending exactly at the end of the file (the last
///    record written is intact, whatever happened to the length before it).
///
/// Cost: 33 frame reads, then one comparison per byte after `bad`, computing a checksum only
/// where a length field points exactly at the end of the file.
///
/// Blind spots, both needing damage plus a coincidence: multi-bit damage to a length field
/// while the file's last record is torn too reads as a torn tail (the records in between are
/// dropped with a warning); and a torn record whose payload happens to contain, ending
/// exactly at the cut, bytes that form a valid frame (say, a stored copy of a WAL segment)
/// reads as corruption.
pub(crate) fn valid_data_after(buf: &[u8], bad: usize) -> Option<usize> {
    next_frame_guesses(buf, bad).or_else(|| frame_ending_at_eof(buf, bad))
}

fn declared_len(buf: &[u8], at: usize) -> Option<u32> {
    let bytes = buf.get(at..at + 4)?;
    Some(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

/// Place 1: the declared length, and each one-bit change of it.
fn next_frame_guesses(buf: &[u8], bad: usize) -> Option<usize> {
    let len = declared_len(buf, bad)?;
    std::iter::once(len)
        .chain((0..32).map(|bit| len ^ (1 << bit)))
        .filter(|&l| l > 0)
        .filter_map(|l| (bad + FRAME_HEADER_LEN).checked_add(l as usize))
        .find(|&at| at < buf.len() && read_frame(buf, at).is_ok())
}

/// Place 2: a valid frame that starts after `bad` and ends at the end of the file.
fn frame_ending_at_eof(buf: &[u8], bad: usize) -> Option<usize> {
    let end = buf.len();
    // A frame carries at least one payload byte.
    let last_start = end.checked_sub(FRAME_HEADER_LEN + 1)?;
    (bad + 1..=last_start).rev().find(|&at| {
        let fits = declared_len(buf, at) == Some((end - at - FRAME_HEADER_LEN) as u32);
        fits && read_frame(buf, at).is_ok()
    })
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

    #[test]
    fn a_cut_or_zero_fill_is_torn() {
        let (buf, starts) = frames(&[b"first", b"second", b"third record"]);
        for cut in starts[2]..buf.len() {
            assert_eq!(valid_data_after(&buf[..cut], starts[2]), None, "cut {cut}");
        }
        let mut zeros = buf[..starts[2]].to_vec();
        zeros.resize(buf.len() + 4096, 0);
        assert_eq!(valid_data_after(&zeros, starts[2]), None);
    }

    #[test]
    fn damage_with_a_valid_record_after_it_is_found() {
        let (buf, starts) = frames(&[b"first", b"second", b"third record"]);
        for byte in starts[1]..starts[2] {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                assert!(valid_data_after(&b, starts[1]).is_some(), "{byte}.{bit}");
            }
        }
        // With the tail torn too, the record after the damaged one is still found.
        let torn = &buf[..buf.len() - 1];
        for byte in starts[0]..starts[1] {
            let mut b = torn.to_vec();
            b[byte] ^= 0x04;
            assert_eq!(valid_data_after(&b, starts[0]), Some(starts[1]), "{byte}");
        }
        // Two bits of a length at once: only the record ending at the end of the file shows.
        let mut b = buf.clone();
        b[starts[0]] ^= 0x30;
        assert_eq!(valid_data_after(&b, starts[0]), Some(starts[2]));
    }
}
