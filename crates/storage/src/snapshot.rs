//! Snapshot files: `snapshot-<generation>.snap`, a header then the snapshot as one record.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use flotilla_node::SnapshotData;

use crate::error::StorageError;
use crate::format::{
    check_snapshot_header, frame_header, read_frame, snapshot_header, snapshot_name,
    SNAPSHOT_HEADER_LEN,
};
use crate::fsutil::{create_atomically_unless, read};
use crate::io::Files;

/// Writes the snapshot of `generation` durably (temp file, fsync, rename, directory fsync).
pub(crate) fn write(
    files: &Files,
    dir: &Path,
    generation: u64,
    data: &SnapshotData,
) -> Result<(), StorageError> {
    let never = AtomicBool::new(false);
    write_unless(files, dir, generation, data, &never).map(|_| ())
}

/// As [`write`], giving up (nothing left behind, `false`) once `cancel` is set: see
/// [`create_atomically_unless`].
pub(crate) fn write_unless(
    files: &Files,
    dir: &Path,
    generation: u64,
    data: &SnapshotData,
    cancel: &AtomicBool,
) -> Result<bool, StorageError> {
    let data = data.to_bytes().map_err(|source| StorageError::Io {
        op: "read the snapshot to store in",
        path: dir.to_path_buf(),
        source,
    })?;
    let data = &data[..];
    let frame = frame_header(&[data]).ok_or(StorageError::TooLarge {
        what: "snapshot",
        len: data.len(),
    })?;
    let header = snapshot_header(generation);
    let parts: &[&[u8]] = if data.is_empty() {
        &[&header] // frames carry at least one byte; see `read_verified`
    } else {
        &[&header, &frame, data]
    };
    let file = create_atomically_unless(files, dir, &snapshot_name(generation), parts, cancel)?;
    Ok(file.is_some())
}

/// Reads and verifies the snapshot of `generation`. The file was complete before any
/// generation could refer to it, so every defect, a missing file included, is corruption.
pub(crate) fn read_verified(dir: &Path, generation: u64) -> Result<Vec<u8>, StorageError> {
    let path = dir.join(snapshot_name(generation));
    if !path.exists() {
        let reason = "missing, yet the newest WAL generation refers to it";
        return Err(StorageError::corrupt(&path, 0, reason));
    }
    let mut buf = read(&path)?;
    check_snapshot_header(&buf, generation).map_err(|r| StorageError::corrupt(&path, 0, r))?;
    let at = SNAPSHOT_HEADER_LEN;
    // An empty snapshot is stored as a header only (frames carry at least one byte).
    if buf.len() == at {
        return Ok(Vec::new());
    }
    let payload =
        read_frame(&buf, at).map_err(|e| StorageError::corrupt(&path, at as u64, e.to_string()))?;
    if payload.end != buf.len() {
        let reason = format!(
            "{} unexpected bytes after the snapshot",
            buf.len() - payload.end
        );
        return Err(StorageError::corrupt(&path, payload.end as u64, reason));
    }
    buf.truncate(payload.end);
    buf.drain(..payload.start);
    Ok(buf)
}
