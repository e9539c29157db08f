//! Opening a directory: choosing the generation, reading and verifying it, cutting off a
//! torn tail and removing what an interrupted replacement left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::error::{io_err, StorageError};
use crate::format::{
    check_segment_header, parse_name, read_frame, segment_name, snapshot_name, FileKind,
    SEGMENT_HEADER_LEN,
};
use crate::fsutil::{read, remove};
use crate::snapshot;
use crate::tail::{self, Tail};

/// A verified generation, ready to append to.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub generation: u64,
    /// The snapshot the generation's base record names (0: none).
    pub snapshot_generation: u64,
    pub state: Vec<u8>,
    pub snapshot: Vec<u8>,
    /// The last segment's seq and the length of its valid records once any torn tail is
    /// cut off: where the next record goes. The file may be longer, with zeros only.
    pub last_seq: u64,
    pub last_len: u64,
}

/// The directory's files this crate recognises, by kind.
#[derive(Debug, Default)]
struct Listing {
    /// Generation to the seqs of its segments.
    segments: BTreeMap<u64, BTreeSet<u64>>,
    snapshots: BTreeSet<u64>,
    temps: Vec<PathBuf>,
}

fn list(dir: &Path) -> Result<Listing, StorageError> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let entry = entry.map_err(io_err("list", dir))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue; // not UTF-8, so not ours
        };
        match parse_name(&name) {
            Some(FileKind::Segment { generation, seq }) => {
                listing.segments.entry(generation).or_default().insert(seq);
            }
            Some(FileKind::Snapshot { generation }) => {
                listing.snapshots.insert(generation);
            }
            Some(FileKind::Temp) => listing.temps.push(entry.path()),
            None => {}
        }
    }
    Ok(listing)
}

/// Recovers the newest generation, or `None` for a directory that holds none.
///
/// The newest generation is the highest one with any segment. Its segment 0 exists under its
/// final name only once it is complete and its snapshot durable, and segments after 0 are
/// created only after it, so whatever is missing or damaged in it is corruption: recovery
/// never falls back to an older generation, whose files may already be partly removed.
pub(crate) fn load(dir: &Path) -> Result<Option<Loaded>, StorageError> {
    let listing = list(dir)?;
    for temp in &listing.temps {
        remove(temp)?; // a write that never reached its final name
    }
    let Some((&generation, seqs)) = listing.segments.last_key_value() else {
        if let Some(&g) = listing.snapshots.last() {
            let reason = "a snapshot exists but no WAL segment does";
            return Err(StorageError::corrupt(
                &dir.join(snapshot_name(g)),
                0,
                reason,
            ));
        }
        return Ok(None);
    };
    check_sequence(dir, generation, seqs)?;
    let loaded = read_generation(dir, generation, seqs.len() as u64)?;
    remove_superseded(dir, generation, loaded.snapshot_generation)?;
    Ok(Some(loaded))
}

/// The segments of a generation must be exactly 0, 1, ..., n.
fn check_sequence(dir: &Path, generation: u64, seqs: &BTreeSet<u64>) -> Result<(), StorageError> {
    let last = *seqs.last().expect("a listed generation has a segment");
    match (0..).zip(seqs).find(|&(expected, &seq)| expected != seq) {
        None => Ok(()),
        Some((missing, _)) => {
            let path = dir.join(segment_name(generation, missing));
            let reason = format!("segment is missing while segment {last:#x} exists");
            Err(StorageError::corrupt(&path, 0, reason))
        }
    }
}

/// Reads segments `0..count` of `generation`: the base record, then every append.
fn read_generation(dir: &Path, generation: u64, count: u64) -> Result<Loaded, StorageError> {
    let mut state = Vec::new();
    let mut snapshot_generation = 0;
    let mut last_len = 0;
    for seq in 0..count {
        let path = dir.join(segment_name(generation, seq));
        let buf = read(&path)?;
        check_segment_header(&buf, generation, seq)
            .map_err(|r| StorageError::corrupt(&path, 0, r))?;
        let is_last = seq + 1 == count;
        let Scan {
            records,
            valid_len,
            torn,
        } = scan_records(&path, &buf, is_last, seq == 0)?;
        let mut records = records.into_iter();
        if seq == 0 {
            let base = records.next().ok_or_else(|| {
                let reason = "the generation's first segment has no base record";
                StorageError::corrupt(&path, SEGMENT_HEADER_LEN as u64, reason)
            })?;
            (snapshot_generation, state) = parse_base(&path, &buf, base, generation)?;
        }
        records.for_each(|r| state.extend_from_slice(&buf[r]));
        if torn {
            truncate(&path, valid_len as u64)?;
        }
        last_len = valid_len as u64;
    }
    let snapshot = match snapshot_generation {
        0 => Vec::new(),
        g => snapshot::read_verified(dir, g)?,
    };
    Ok(Loaded {
        generation,
        snapshot_generation,
        state,
        snapshot,
        last_seq: count - 1,
        last_len,
    })
}

/// The base record: the generation of the snapshot it goes with (u64 LE, 0 for none), then
/// the full state.
fn parse_base(
    path: &Path,
    buf: &[u8],
    payload: Range<usize>,
    generation: u64,
) -> Result<(u64, Vec<u8>), StorageError> {
    let at = (payload.start - crate::format::FRAME_HEADER_LEN) as u64;
    let bytes = &buf[payload];
    let Some((snap, state)) = bytes.split_first_chunk::<8>() else {
        let reason = "base record shorter than its 8-byte snapshot generation";
        return Err(StorageError::corrupt(path, at, reason));
    };
    let snap = u64::from_le_bytes(*snap);
    if snap > generation {
        let reason = format!("base record names snapshot {snap:#x}, newer than its generation");
        return Err(StorageError::corrupt(path, at, reason));
    }
    Ok((snap, state.to_vec()))
}

/// What a segment holds.
struct Scan {
    /// The payload ranges of its records.
    records: Vec<Range<usize>>,
    /// The length they span, header included: where the next record would start.
    valid_len: usize,
    /// Whether a torn tail follows them, to cut off (anything after them is zeros if not).
    torn: bool,
}

/// Reads a segment's records.
///
/// Only the last segment may end in anything but a record: zeros (free preallocated space,
/// kept) or a torn tail (cut off by the caller), and only after its base record (which, like
/// every segment but the last, was durable before anything could depend on it): see
/// [`tail::classify`] for how they are told from corruption. A segment before the last was
/// trimmed to its records before its successor was created (`Segment::close`), so even
/// zeros there are damage: the records they replaced would be silently missing from the
/// middle of the state.
fn scan_records(
    path: &Path,
    buf: &[u8],
    is_last: bool,
    has_base: bool,
) -> Result<Scan, StorageError> {
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at < buf.len() {
        let error = match read_frame(buf, at) {
            Ok(payload) => {
                at = payload.end;
                records.push(payload);
                continue;
            }
            Err(e) => e,
        };
        let corrupt = |reason: String| StorageError::corrupt(path, at as u64, reason);
        if !is_last {
            return Err(corrupt(format!(
                "{error} in a segment that is not the last"
            )));
        }
        if has_base && records.is_empty() {
            return Err(corrupt(format!("{error} in the base record")));
        }
        let torn = match tail::classify(buf, at) {
            Tail::Free => false,
            Tail::Torn { data_end } => {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    dropped_bytes = data_end - at,
                    "torn tail in the last WAL segment ({error}): truncating; these writes were never synced"
                );
                true
            }
            Tail::Corrupt { next } => {
                let reason = format!("{error}, yet a valid record follows at offset {next}");
                return Err(corrupt(reason));
            }
        };
        return Ok(Scan {
            records,
            valid_len: at,
            torn,
        });
    }
    Ok(Scan {
        records,
        valid_len: at,
        torn: false,
    })
}

/// Cuts a torn tail off so that new records follow valid data, durably (`sync_all`: the
/// size is metadata). Truncating rather than zeroing it back takes the rest of the zero tail
/// along, which the next sync preallocates again: simpler, and as rare as a crash.
fn truncate(path: &Path, len: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io_err("open for truncating", path))?;
    file.set_len(len).map_err(io_err("truncate", path))?;
    file.sync_all().map_err(io_err("fsync", path))
}

/// Removes every segment of another generation and every snapshot but `snapshot_generation`:
/// what a replacement that completed (its segment 0 exists) no longer needs.
pub(crate) fn remove_superseded(
    dir: &Path,
    generation: u64,
    snapshot_generation: u64,
) -> Result<(), StorageError> {
    let listing = list(dir)?;
    let old_segments = listing
        .segments
        .iter()
        .filter(|(&g, _)| g != generation)
        .flat_map(|(&g, seqs)| seqs.iter().map(move |&s| segment_name(g, s)));
    let old_snapshots = listing
        .snapshots
        .iter()
        .filter(|&&g| g != snapshot_generation)
        .map(|&g| snapshot_name(g));
    for name in old_segments.chain(old_snapshots) {
        remove(&dir.join(name))?;
    }
    Ok(())
}
