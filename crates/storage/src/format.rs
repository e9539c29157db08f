//! The bytes on disk: file names, file headers and record frames. Pure functions, no I/O.

use std::fmt;
use std::ops::Range;

/// Version of every header below; a reader refuses any other.
pub(crate) const FORMAT_VERSION: u32 = 1;

const SEGMENT_MAGIC: [u8; 8] = *b"FLOTWAL\0";
const SNAPSHOT_MAGIC: [u8; 8] = *b"FLOTSNP\0";

/// Segment header: magic, version u32, generation u64, seq u64, CRC32C of those 28 bytes.
pub(crate) const SEGMENT_HEADER_LEN: usize = 32;
/// Snapshot header: magic, version u32, generation u64, CRC32C of those 20 bytes.
pub(crate) const SNAPSHOT_HEADER_LEN: usize = 24;
/// Record frame header: payload length u32, CRC32C of the payload u32.
pub(crate) const FRAME_HEADER_LEN: usize = 8;

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

/// Classifies a file name; `None` for names this crate never writes (left alone).
pub(crate) fn parse_name(name: &str) -> Option<FileKind> {
    if let Some(base) = name.strip_suffix(TEMP_SUFFIX) {
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
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    h[20..28].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    h
}

pub(crate) fn snapshot_header(generation: u64) -> [u8; SNAPSHOT_HEADER_LEN] {
    let mut h = [0u8; SNAPSHOT_HEADER_LEN];
    h[..8].copy_from_slice(&SNAPSHOT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..20].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32c::crc32c(&h[..20]);
    h[20..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header against the generation and seq its file name promises; the
/// error is the reason to report (the offset is always 0).
pub(crate) fn check_segment_header(buf: &[u8], generation: u64, seq: u64) -> Result<(), String> {
    let fields = check_header(buf, &SEGMENT_MAGIC, SEGMENT_HEADER_LEN, "WAL segment")?;
    let found = (u64_at(fields, 12), u64_at(fields, 20));
    if found != (generation, seq) {
        return Err(format!(
            "header says generation {:#x} seq {:#x}, the file name says {generation:#x} {seq:#x}",
            found.0, found.1
        ));
    }
    Ok(())
}

pub(crate) fn check_snapshot_header(buf: &[u8], generation: u64) -> Result<(), String> {
    let fields = check_header(buf, &SNAPSHOT_MAGIC, SNAPSHOT_HEADER_LEN, "snapshot")?;
    let found = u64_at(fields, 12);
    if found != generation {
        return Err(format!(
            "header says generation {found:#x}, the file name says {generation:#x}"
        ));
    }
    Ok(())
}

/// Length, checksum, magic and version of a header; returns the header bytes.
fn check_header<'a>(
    buf: &'a [u8],
    magic: &[u8; 8],
    len: usize,
    what: &str,
) -> Result<&'a [u8], String> {
    let Some(h) = buf.get(..len) else {
        return Err(format!(
            "{} bytes, shorter than the {len}-byte {what} header",
            buf.len()
        ));
    };
    let stored = u32::from_le_bytes(h[len - 4..].try_into().expect("4 bytes"));
    if crc32c::crc32c(&h[..len - 4]) != stored {
        return Err(format!("{what} header checksum mismatch"));
    }
    if &h[..8] != magic {
        return Err(format!("not a {what} (bad magic)"));
    }
    let version = u32::from_le_bytes(h[8..12].try_into().expect("4 bytes"));
    if version != FORMAT_VERSION {
        return Err(format!(
            "{what} format version {version}, this build reads {FORMAT_VERSION}"
        ));
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

/// Why no valid frame starts at some offset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FrameError {
    /// Fewer than [`FRAME_HEADER_LEN`] bytes remain.
    ShortHeader { available: usize },
    /// Length 0: never written (every payload has at least one byte), so this is zero fill
    /// or damage.
    ZeroLength,
    /// The declared payload runs past the end of the file.
    PastEnd { len: u32 },
    /// The payload does not match its checksum.
    Checksum { len: u32 },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::ShortHeader { available } => write!(
                f,
                "only {available} bytes left, too few for a record header"
            ),
            FrameError::ZeroLength => write!(f, "record length is 0"),
            FrameError::PastEnd { len } => {
                write!(f, "record length {len} runs past the end of the file")
            }
            FrameError::Checksum { len } => write!(f, "checksum mismatch in a {len}-byte record"),
        }
    }
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
        for foreign in [
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
        assert_eq!(check_segment_header(&segment_header(2, 5), 2, 5), Ok(()));
        assert!(check_segment_header(&segment_header(2, 5), 2, 6).is_err());
        assert_eq!(check_snapshot_header(&snapshot_header(9), 9), Ok(()));
        assert!(check_snapshot_header(&snapshot_header(9)[..10], 9).is_err());
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
}
