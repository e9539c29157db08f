//! Opening a directory: choosing the generation, reading and verifying it (a torn last
//! batch dropped) and removing what an interrupted replacement left behind. What it read
//! is then rewritten as a new generation by `DiskStorage::open`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use flotilla_node::SnapshotData;

use crate::error::{io_err, Corruption, StorageError};
use crate::format::{
    batch_records, check_segment_header, page_align, parse_name, read_batch, read_frame,
    segment_name, snapshot_name, FileKind, FORMAT_VERSION_1, PAGE, SEGMENT_HEADER_LEN,
};
use crate::fsutil::{read, remove};
use crate::snapshot;
use crate::tail::{self, Tail};

/// A verified generation, to be rewritten as the next one (see `DiskStorage::open`).
#[derive(Debug)]
pub(crate) struct Loaded {
    pub generation: u64,
    /// The snapshot the generation's base record names (0: none).
    pub snapshot_generation: u64,
    pub state: Vec<u8>,
    pub snapshot: SnapshotData,
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
            let reason = Corruption::SnapshotWithoutWal;
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
            let reason = Corruption::MissingSegment { last_seq: last };
            Err(StorageError::corrupt(&path, 0, reason))
        }
    }
}

/// Reads segments `0..count` of `generation`: the base record, then every append.
fn read_generation(dir: &Path, generation: u64, count: u64) -> Result<Loaded, StorageError> {
    let mut state = Vec::new();
    let mut snapshot_generation = 0;
    let mut generation_version = None;
    for seq in 0..count {
        let path = dir.join(segment_name(generation, seq));
        let buf = read(&path)?;
        let version = check_segment_header(&buf, generation, seq)
            .map_err(|r| StorageError::corrupt(&path, 0, r))?;
        if *generation_version.get_or_insert(version) != version {
            let reason = Corruption::MixedVersions { version };
            return Err(StorageError::corrupt(&path, 0, reason));
        }
        let is_last = seq + 1 == count;
        let place = Place {
            path: &path,
            generation,
            seq,
            is_last,
        };
        let records = if version == FORMAT_VERSION_1 {
            scan_records(&path, &buf, is_last, seq == 0)?
        } else {
            scan_batches(&place, &buf)?
        };
        let mut records = records.into_iter();
        if seq == 0 {
            let base = records.next().ok_or_else(|| {
                let reason = Corruption::NoBaseRecord;
                StorageError::corrupt(&path, SEGMENT_HEADER_LEN as u64, reason)
            })?;
            (snapshot_generation, state) = parse_base(&path, &buf, base, generation)?;
        }
        records.for_each(|r| state.extend_from_slice(&buf[r]));
    }
    let snapshot = match snapshot_generation {
        0 => SnapshotData::default(),
        g => snapshot::read_verified(dir, g)?,
    };
    Ok(Loaded {
        generation,
        snapshot_generation,
        state,
        snapshot,
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
        let reason = Corruption::ShortBaseRecord;
        return Err(StorageError::corrupt(path, at, reason));
    };
    let snap = u64::from_le_bytes(*snap);
    if snap > generation {
        let reason = Corruption::BaseNamesNewerSnapshot {
            snapshot_generation: snap,
        };
        return Err(StorageError::corrupt(path, at, reason));
    }
    Ok((snap, state.to_vec()))
}

/// Which segment is being read: what a batch header's checksum covers, and whether a torn
/// tail may end it.
struct Place<'a> {
    path: &'a Path,
    generation: u64,
    seq: u64,
    is_last: bool,
}

/// Reads the records of a version-2 segment: the base record (segment 0), then batches,
/// each at a page boundary after the previous one's end (see `src/tail.rs` for why a
/// torn last batch can be told from damage).
///
/// Before the last segment, the batches run to the end of the file (trimmed on a page
/// boundary when it was closed): any bad batch is corruption, zeros included (records
/// replaced by zeros would vanish from the middle of the state). In the last segment, the
/// first bad batch at `o` is followed by zeros only (free space: the normal end), by a valid
/// batch at a later page boundary (corruption: that batch was written after the one at `o`
/// was synced), or by neither: the torn last batch, dropped whole with a warning.
fn scan_batches(place: &Place<'_>, buf: &[u8]) -> Result<Vec<Range<usize>>, StorageError> {
    let path = place.path;
    let mut records = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    if place.seq == 0 {
        let base = read_frame(buf, at)
            .map_err(|e| StorageError::corrupt(path, at as u64, Corruption::BaseRecord(e)))?;
        at = base.end;
        records.push(base);
    }
    let mut at = page_align(at as u64) as usize;
    while at < buf.len() {
        let error = match read_batch(buf, place.generation, place.seq, at) {
            Ok(body) => {
                let batch = batch_records(buf, body.clone())
                    .map_err(|r| StorageError::corrupt(path, at as u64, r))?;
                records.extend(batch);
                at = page_align(body.end as u64) as usize;
                continue;
            }
            Err(e) => e,
        };
        let corrupt = |reason| StorageError::corrupt(path, at as u64, reason);
        if !place.is_last {
            return Err(corrupt(Corruption::BatchBeforeLastSegment(error)));
        }
        if buf[at..].iter().all(|&b| b == 0) {
            break; // free space
        }
        let later = (at + PAGE as usize..buf.len())
            .step_by(PAGE as usize)
            .find(|&p| read_batch(buf, place.generation, place.seq, p).is_ok());
        if let Some(next) = later {
            return Err(corrupt(Corruption::BatchBeforeValidBatch { error, next }));
        }
        tracing::warn!(
            file = %path.display(),
            offset = at,
            "torn last batch in the WAL ({error}): dropped whole; it was never synced"
        );
        break;
    }
    Ok(records)
}

/// Reads a version-1 segment's records.
///
/// Only the last segment may end in anything but a record: zeros (free preallocated space,
/// ignored) or a torn tail (dropped), and only after its base record (which, like
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
) -> Result<Vec<Range<usize>>, StorageError> {
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
        let corrupt = |reason| StorageError::corrupt(path, at as u64, reason);
        if !is_last {
            return Err(corrupt(Corruption::RecordBeforeLastSegment(error)));
        }
        if has_base && records.is_empty() {
            return Err(corrupt(Corruption::BaseRecord(error)));
        }
        match tail::classify(buf, at) {
            Tail::Free => {}
            Tail::Torn { data_end } => {
                tracing::warn!(
                    file = %path.display(),
                    offset = at,
                    dropped_bytes = data_end - at,
                    "torn tail in the last WAL segment ({error}): dropped; these writes were never synced"
                );
            }
            Tail::Corrupt { next } => {
                return Err(corrupt(Corruption::RecordBeforeValidRecord { error, next }));
            }
        }
        return Ok(records);
    }
    Ok(records)
}

/// Removes every segment of another generation and every snapshot but `snapshot_generation`:
/// what a replacement that completed (its segment 0 exists) no longer needs.
pub(crate) fn remove_superseded(
    dir: &Path,
    generation: u64,
    snapshot_generation: u64,
) -> Result<(), StorageError> {
    for path in superseded(dir, generation, snapshot_generation)? {
        remove(&path)?;
    }
    Ok(())
}

/// The files [`remove_superseded`] removes, listed now: a list that can be removed later (on
/// another thread) without touching files made meanwhile.
pub(crate) fn superseded(
    dir: &Path,
    generation: u64,
    snapshot_generation: u64,
) -> Result<Vec<PathBuf>, StorageError> {
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
    Ok(old_segments
        .chain(old_snapshots)
        .map(|name| dir.join(name))
        .collect())
}
