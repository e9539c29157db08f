//! The bytes on disk: file names, file headers and record frames. Pure functions, no I/O.

use std::ops::Range;

/// Version of the segments this build writes: 2, appends framed in page-aligned batches.
/// Version 1 (a record per append, written right after the previous one) is still read, and
/// rewritten as version 2 by the open that reads it.
pub(crate) const FORMAT_VERSION: u32 = 2;
/// The version before batches; segments of it are read, never written.
pub(crate) const FORMAT_VERSION_1: u32 = 1;
/// Version of snapshot files, whose format did not change.
const SNAPSHOT_VERSION: u32 = 1;

/// Every batch of a version-2 segment starts on a multiple of this: writing it never
/// rewrites a page (or a sector: 512 B and 4 KiB divide it) that holds durable data.
pub(crate) const PAGE: u64 = 4096;
/// Batch header: body length u64, CRC32C of the body u32, CRC32C of (generation, seq,
/// offset, body length, body CRC) u32.
pub(crate) const BATCH_HEADER_LEN: usize = 16;
/// Record header inside a batch body: payload length u32 (the batch checksum covers it).
pub(crate) const BATCH_RECORD_HEADER_LEN: usize = 4;

/// `at` rounded up to a page boundary.
pub(crate) fn page_align(at: u64) -> u64 {
    at.div_ceil(PAGE) * PAGE
}

const SEGMENT_MAGIC: [u8; 8] = *b"FLOTWAL\0";
const SNAPSHOT_MAGIC: [u8; 8] = *b"FLOTSNP\0";

/// Segment header: magic, version u32, generation u64, seq u64, CRC32C of those 28 bytes.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
/// Snapshot header: magic, version u32, generation u64, CRC32C of those 20 bytes.
pub(crate) const SNAPSHOT_HEADER_LEN: usize = 24;
/// Record frame header: payload length u32, CRC32C of the payload u32.
pub(crate) const FRAME_HEADER_LEN: usize = 8;
/// Where a (non-empty) snapshot's payload starts in its file: after the snapshot header and
/// the frame header.
pub(crate) const SNAPSHOT_PAYLOAD_AT: u64 = (SNAPSHOT_HEADER_LEN + FRAME_HEADER_LEN) as u64;

/// Suffix of files being written; never read, deleted at open.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// What a directory entry is, from its name alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    Segment {
        generation: u64,
        seq: u64,
    },
    Snapshot {
        generation: u64,
    },
    /// A file being written when the process stopped (any name ending in `.tmp` that would
    /// otherwise be ours).
    Temp,
}

pub(crate) fn segment_name(generation: u64, seq: u64) -> String {
    format!("wal-{generation:016x}-{seq:016x}.log")
}

pub(crate) fn snapshot_name(generation: u64) -> String {
    format!("snapshot-{generation:016x}.snap")
}

/// A snapshot being written through the storage's spool (arriving from a leader, or being
/// encoded): a temporary file until the storage installs it by renaming it to
/// [`snapshot_name`], so a crash leaves a `.tmp` that the next open removes.
pub(crate) fn spool_name(id: u64) -> String {
    format!("spool-{id:016x}.snap{TEMP_SUFFIX}")
}

/// Classifies a file name; `None` for names this crate never writes (left alone).
pub(crate) fn parse_name(name: &str) -> Option<FileKind> {
    if let Some(base) = name.strip_suffix(TEMP_SUFFIX) {
        let spool = (base.strip_prefix("spool-"))
            .and_then(|r| r.strip_suffix(".snap"))
            .and_then(parse_hex);
        if spool.is_some() {
            return Some(FileKind::Temp);
        }
        return parse_name(base).map(|_| FileKind::Temp);
    }
    if let Some(rest) = name
        .strip_prefix("wal-")
        .and_then(|r| r.strip_suffix(".log"))
    {
        let (generation, seq) = rest.split_once('-')?;
        return Some(FileKind::Segment {
            generation: parse_hex(generation)?,
            seq: parse_hex(seq)?,
        });
    }
    let rest = name.strip_prefix("snapshot-")?.strip_suffix(".snap")?;
    Some(FileKind::Snapshot {
        generation: parse_hex(rest)?,
    })
}

/// Exactly 16 lowercase hex digits, as the writers format them.
fn parse_hex(s: &str) -> Option<u64> {
    let canonical = s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    canonical.then(|| u64::from_str_radix(s, 16).ok()).flatten()
}

pub(crate) fn segment_header(generation: u64, seq: u64) -> [u8; SEGMENT_HEADER_LEN] {
    segment_header_version(generation, seq, FORMAT_VERSION)
}

/// A segment header of any version (tests of older formats write them).
pub(crate) fn segment_header_version(
    generation: u64,
    seq: u64,
    version: u32,
) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    h[20..28].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

pub(crate) fn snapshot_header(generation: u64) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    h[..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The segment format versions this build reads.
const SEGMENT_VERSIONS: [u32; 2] = [FORMAT_VERSION_1, FORMAT_VERSION];
/// The snapshot format versions this build reads.
const SNAPSHOT_VERSIONS: [u32; 1] = [SNAPSHOT_VERSION];

/// Why a file header (always at offset 0) fails its check. `what` names the kind of file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The file ends before its header does.
    #[error("{len} bytes, shorter than the {header_len}-byte {what} header")]
    Short {
        what: &'static str,
        len: usize,
        header_len: usize,
    },
    #[error("{what} header checksum mismatch")]
    Checksum { what: &'static str },
    #[error("not a {what} (bad magic)")]
    Magic { what: &'static str },
    /// A version this build does not read (written by a newer one, or damaged).
    #[error("{what} format version {version}, this build reads {readable:?}")]
    Version {
        what: &'static str,
        version: u32,
        readable: &'static [u32],
    },
    /// A segment header naming another segment than its file name does (a file renamed or
    /// copied by hand).
    #[error(
        "header says generation {header_generation:#x} seq {header_seq:#x}, \
         the file name says {generation:#x} {seq:#x}"
    )]
    SegmentMismatch {
        header_generation: u64,
        header_seq: u64,
        generation: u64,
        seq: u64,
    },
    /// A snapshot header naming another generation than its file name does.
    #[error("header says generation {header_generation:#x}, the file name says {generation:#x}")]
    SnapshotMismatch {
        header_generation: u64,
        generation: u64,
    },
}

/// Checks a segment header against the generation and seq its file name promises; returns
/// its format version.
pub(crate) fn check_segment_header(
    buf: &[u8],
    generation: u64,
    seq: u64,
) -> Result<u32, HeaderError> {
    let what = "WAL segment";
    let fields = check_header(
        buf,
        &SEGMENT_MAGIC,
        SEGMENT_HEADER_LEN,
        what,
        &SEGMENT_VERSIONS,
    )?;
    let (header_generation, header_seq) = (u64_at(fields, 12), u64_at(fields, 20));
    if (header_generation, header_seq) != (generation, seq) {
        return Err(HeaderError::SegmentMismatch {
            header_generation,
            header_seq,
            generation,
            seq,
        });
    }
    Ok(u32::from_le_bytes(
        fields[8..12].try_into().expect("4 bytes"),
    ))
}

pub(crate) fn check_snapshot_header(buf: &[u8], generation: u64) -> Result<(), HeaderError> {
    let what = "snapshot";
    let fields = check_header(
        buf,
        &SNAPSHOT_MAGIC,
        SNAPSHOT_HEADER_LEN,
        what,
        &SNAPSHOT_VERSIONS,
    )?;
    let header_generation = u64_at(fields, 12);
    if header_generation != generation {
        return Err(HeaderError::SnapshotMismatch {
            header_generation,
            generation,
        });
    }
    Ok(())
}

/// Length, checksum, magic and version of a header; returns the header bytes.
fn check_header<'a>(
    buf: &'a [u8],
    magic: &[u8; 8],
    header_len: usize,
    what: &'static str,
    readable: &'static [u32],
) -> Result<&'a [u8], HeaderError> {
    let Some(h) = buf.get(..header_len) else {
        return Err(HeaderError::Short {
            what,
            len: buf.len(),
            header_len,
        });
    };
    let stored = u32::from_le_bytes(h[header_len - 4..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&h[..header_len - 4]) != stored {
        return Err(HeaderError::Checksum { what });
    }
    if &h[..8] != magic {
        return Err(HeaderError::Magic { what });
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if !readable.contains(&version) {
        return Err(HeaderError::Version {
            what,
            version,
            readable,
        });
    }
    Ok(h)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The frame header for a payload made of `parts` concatenated (so a large state or
/// snapshot need not be copied to be framed). `None` if the payload exceeds `u32::MAX`.
pub(crate) fn frame_header(parts: &[&[u8]]) -> Option<[u8; FRAME_HEADER_LEN]> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len).ok()?;
    let crc = parts.iter().fold(0, |crc, p| crc32c::crc32c_append(crc, p));
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&crc.to_le_bytes());
    Some(h)
}

/// Why no valid frame (a length-prefixed, checksummed record) starts at some offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Fewer than [`FRAME_HEADER_LEN`] bytes remain.
    #[error("only {available} bytes left, too few for a record header")]
    ShortHeader { available: usize },
    /// Length 0: never written (every payload has at least one byte), so this is zero fill
    /// or damage.
    #[error("record length is 0")]
    ZeroLength,
    /// The declared payload runs past the end of the file.
    #[error("record length {len} runs past the end of the file")]
    PastEnd { len: u32 },
    /// The payload does not match its checksum.
    #[error("checksum mismatch in a {len}-byte record")]
    Checksum { len: u32 },
}

/// Reads the frame starting at `at`; returns its payload's range (the next frame starts
/// at the range's end).
pub(crate) fn read_frame(buf: &[u8], at: usize) -> Result<Range<usize>, FrameError> {
    let available = buf.len().saturating_sub(at);
    if available < FRAME_HEADER_LEN {
        return Err(FrameError::ShortHeader { available });
    }
    let len = u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(buf[at + 4..at + 8].try_into().expect("4 bytes"));
    if len == 0 {
        return Err(FrameError::ZeroLength);
    }
    let start = at + FRAME_HEADER_LEN;
    let end = match start.checked_add(len as usize) {
        Some(end) if end <= buf.len() => end,
        _ => return Err(FrameError::PastEnd { len }),
    };
    if crc32c::crc32c(&buf[start..end]) != crc {
        return Err(FrameError::Checksum { len });
    }
    Ok(start..end)
}

/// The header of a batch whose body is `body` (the records, each `len u32 | payload`),
/// written at `offset` of segment `seq` of `generation`. The header's own checksum covers
/// where it belongs, so a batch header is valid only at its own place.
pub(crate) fn batch_header(
    generation: u64,
    seq: u64,
    offset: u64,
    body: &[u8],
) -> [u8; BATCH_HEADER_LEN] {
    let mut h = [0u8; BATCH_HEADER_LEN];
    h[..8].copy_from_slice(&(body.len() as u64).to_le_bytes());
    h[8..12].copy_from_slice(&crc32c::crc32c(body).to_le_bytes());
    let crc = batch_header_crc(generation, seq, offset, &h[..12]);
    h[12..].copy_from_slice(&crc.to_le_bytes());
    h
}

fn batch_header_crc(generation: u64, seq: u64, offset: u64, fields: &[u8]) -> u32 {
    let mut place = [0u8; 24];
    place[..8].copy_from_slice(&generation.to_le_bytes());
    place[8..16].copy_from_slice(&seq.to_le_bytes());
    place[16..].copy_from_slice(&offset.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&place), fields)
}

/// Why no valid batch (a page-aligned group of records) starts at some offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// The header's checksum does not match (zeros, garbage, or a header torn or damaged).
    #[error("no valid batch header")]
    Header,
    /// The header is valid but the body runs past the end of the file.
    #[error("a {len}-byte batch runs past the end of the file")]
    PastEnd { len: u64 },
    /// The header is valid but the body does not match its checksum.
    #[error("checksum mismatch in a {len}-byte batch")]
    Checksum { len: u64 },
}

/// Reads the batch at `offset`, verifying both checksums; returns its body's range.
pub(crate) fn read_batch(
    buf: &[u8],
    generation: u64,
    seq: u64,
    offset: usize,
) -> Result<Range<usize>, BatchError> {
    let Some(h) = buf.get(offset..offset + BATCH_HEADER_LEN) else {
        return Err(BatchError::Header);
    };
    let stored = u32::from_le_bytes(h[12..].try_into().expect("4 bytes"));
    if batch_header_crc(generation, seq, offset as u64, &h[..12]) != stored {
        return Err(BatchError::Header);
    }
    let len = u64_at(h, 0);
    let start = offset + BATCH_HEADER_LEN;
    let end = match usize::try_from(len).ok().and_then(|l| start.checked_add(l)) {
        Some(end) if end <= buf.len() => end,
        _ => return Err(BatchError::PastEnd { len }),
    };
    let crc = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if crc32c::crc32c(&buf[start..end]) != crc {
        return Err(BatchError::Checksum { len });
    }
    Ok(start..end)
}

/// Why a batch body whose checksum matched does not split into records: it was written
/// wrong, not torn. Offsets are the file's.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordsError {
    #[error("a record header is cut short by the batch's end at {batch_end}")]
    HeaderCut { batch_end: usize },
    /// A record of length 0 (never written) or running past the batch's end.
    #[error("record length {len} at offset {offset} does not fit its batch")]
    BadLength { len: usize, offset: usize },
    /// A batch with no record (every batch the writer makes holds at least one).
    #[error("an empty batch")]
    Empty,
}

/// Splits a verified batch body into its records' payload ranges.
pub(crate) fn batch_records(
    buf: &[u8],
    body: Range<usize>,
) -> Result<Vec<Range<usize>>, RecordsError> {
    let mut records = Vec::new();
    let mut at = body.start;
    while at < body.end {
        let Some(h) = buf
            .get(at..at + BATCH_RECORD_HEADER_LEN)
            .filter(|_| at + 4 <= body.end)
        else {
            return Err(RecordsError::HeaderCut {
                batch_end: body.end,
            });
        };
        let len = u32::from_le_bytes(h.try_into().expect("4 bytes")) as usize;
        let start = at + BATCH_RECORD_HEADER_LEN;
        if len == 0 || start + len > body.end {
            return Err(RecordsError::BadLength { len, offset: at });
        }
        records.push(start..start + len);
        at = start + len;
    }
    if records.is_empty() {
        return Err(RecordsError::Empty);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_names_are_ignored() {
        let seg = segment_name(3, 0x1f);
        assert_eq!(seg, "wal-0000000000000003-000000000000001f.log");
        let kind = FileKind::Segment {
            generation: 3,
            seq: 0x1f,
        };
        assert_eq!(parse_name(&seg), Some(kind));
        let snap = FileKind::Snapshot { generation: 7 };
        assert_eq!(parse_name(&snapshot_name(7)), Some(snap));
        assert_eq!(parse_name(&format!("{seg}.tmp")), Some(FileKind::Temp));
        assert_eq!(parse_name(&spool_name(9)), Some(FileKind::Temp));
        for foreign in [
            "spool-9.snap.tmp",
            "spool-0000000000000009.snap",
            "wal-3-1.log",
            "notes.txt",
            "x.tmp",
            "snapshot-0000000000000007.SNAP",
        ] {
            assert_eq!(parse_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn headers_check_and_reject_a_mismatched_name() {
        assert_eq!(check_segment_header(&segment_header(2, 5), 2, 5), Ok(2));
        let v1 = segment_header_version(2, 5, 1);
        assert_eq!(check_segment_header(&v1, 2, 5), Ok(1));
        assert_eq!(
            check_segment_header(&segment_header_version(2, 5, 3), 2, 5),
            Err(HeaderError::Version {
                what: "WAL segment",
                version: 3,
                readable: &[1, 2]
            })
        );
        assert_eq!(
            check_segment_header(&segment_header(2, 5), 2, 6),
            Err(HeaderError::SegmentMismatch {
                header_generation: 2,
                header_seq: 5,
                generation: 2,
                seq: 6
            })
        );
        let mut flipped = segment_header(2, 5);
        flipped[13] ^= 1;
        assert_eq!(
            check_segment_header(&flipped, 2, 5),
            Err(HeaderError::Checksum {
                what: "WAL segment"
            })
        );
        assert_eq!(
            check_segment_header(&snapshot_header(2), 2, 5),
            Err(HeaderError::Short {
                what: "WAL segment",
                len: SNAPSHOT_HEADER_LEN,
                header_len: SEGMENT_HEADER_LEN
            })
        );
        assert_eq!(check_snapshot_header(&snapshot_header(9), 9), Ok(()));
        assert_eq!(
            check_snapshot_header(&snapshot_header(9)[..10], 9),
            Err(HeaderError::Short {
                what: "snapshot",
                len: 10,
                header_len: SNAPSHOT_HEADER_LEN
            })
        );
        assert_eq!(
            check_snapshot_header(&snapshot_header(9), 8),
            Err(HeaderError::SnapshotMismatch {
                header_generation: 9,
                generation: 8
            })
        );
        // A segment header's first 24 bytes, checksummed, with another magic.
        let mut alien = segment_header(2, 5)[..SNAPSHOT_HEADER_LEN].to_vec();
        alien[..8].copy_from_slice(b"NOTOURS\0");
        let crc = crc32c::crc32c(&alien[..20]);
        alien[20..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            check_snapshot_header(&alien, 2),
            Err(HeaderError::Magic { what: "snapshot" })
        );
    }

    #[test]
    fn frames_read_back_and_report_each_failure() {
        let mut buf = frame_header(&[b"ab", b"c"]).unwrap().to_vec();
        buf.extend_from_slice(b"abc");
        assert_eq!(read_frame(&buf, 0), Ok(8..11));
        let short = FrameError::ShortHeader { available: 3 };
        assert_eq!(read_frame(&buf, 8), Err(short));
        assert_eq!(
            read_frame(&buf[..10], 0),
            Err(FrameError::PastEnd { len: 3 })
        );
        buf[10] ^= 1;
        assert_eq!(read_frame(&buf, 0), Err(FrameError::Checksum { len: 3 }));
        assert_eq!(read_frame(&[0; 12], 0), Err(FrameError::ZeroLength));
    }

    #[test]
    fn batches_read_back_only_at_their_own_place() {
        let body = [&3u32.to_le_bytes()[..], b"abc", &1u32.to_le_bytes(), b"d"].concat();
        let mut buf = vec![0u8; 8192];
        let h = batch_header(4, 1, 4096, &body);
        buf[4096..4112].copy_from_slice(&h);
        buf[4112..4112 + body.len()].copy_from_slice(&body);
        let range = read_batch(&buf, 4, 1, 4096).unwrap();
        assert_eq!(range, 4112..4112 + body.len());
        assert_eq!(
            batch_records(&buf, range).unwrap(),
            vec![4116..4119, 4123..4124]
        );
        assert_eq!(
            read_batch(&buf, 4, 2, 4096),
            Err(BatchError::Header),
            "another segment"
        );
        assert_eq!(
            read_batch(&buf, 5, 1, 4096),
            Err(BatchError::Header),
            "another generation"
        );
        let mut moved = vec![0u8; 4096];
        moved.extend_from_slice(&buf);
        assert_eq!(
            read_batch(&moved, 4, 1, 8192),
            Err(BatchError::Header),
            "another offset"
        );
        assert_eq!(read_batch(&buf, 4, 1, 0), Err(BatchError::Header), "zeros");
        assert_eq!(
            read_batch(&buf[..4120], 4, 1, 4096),
            Err(BatchError::PastEnd { len: 12 })
        );
        buf[4118] ^= 1;
        assert_eq!(
            read_batch(&buf, 4, 1, 4096),
            Err(BatchError::Checksum { len: 12 })
        );
        assert_eq!(
            batch_records(&body, 0..body.len() - 1),
            Err(RecordsError::BadLength { len: 1, offset: 7 })
        );
        assert_eq!(
            batch_records(&body, 0..9),
            Err(RecordsError::HeaderCut { batch_end: 9 })
        );
        assert_eq!(batch_records(&body, 3..3), Err(RecordsError::Empty));
        let zero = [0u8; 4];
        assert_eq!(
            batch_records(&zero, 0..4),
            Err(RecordsError::BadLength { len: 0, offset: 0 })
        );
    }
}
