//! The one error type of the crate. Every variant names the file it is about.

use std::io;
use std::path::{Path, PathBuf};

use crate::format::{BatchError, FrameError, HeaderError, RecordsError};

/// Why a storage operation failed.
///
/// `Io` and `Poisoned` are operating errors of a live node. An `Io` error for lack of space
/// ([`StorageError::is_disk_full`]) leaves the storage usable: nothing durable changed, and a
/// later `sync` retries. After any other, the storage is poisoned: the driver should stop
/// the node and restart it, which recovers from what is on disk. `Corrupt` comes from
/// [`crate::DiskStorage::open`] only: the directory holds data that no crash of this code can
/// produce (bit rot, a missing file, another program's files); the node must not start from
/// it, and an operator has to decide what to do.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done, as a verb phrase ("fsync", "rename ... to").
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },

    /// Stored data fails verification where a crash cannot explain it.
    #[error("corrupt storage file {} at byte offset {offset}: {reason}", file.display())]
    Corrupt {
        file: PathBuf,
        offset: u64,
        reason: Corruption,
    },

    /// A record longer than the format's 32-bit length field.
    #[error(
        "a {what} of {len} bytes does not fit one record (at most {} bytes)",
        u32::MAX
    )]
    TooLarge { what: &'static str, len: usize },

    /// An earlier write or fsync failed (other than for lack of space), so what the files
    /// hold is unknown (after a failed fsync Linux may drop the dirty pages and report
    /// success on the next one): nothing more is accepted. Reopen the directory to continue
    /// from what is durable; the open rewrites it rather than trust the page cache.
    #[error("storage in {} is unusable after an earlier I/O error; reopen it", dir.display())]
    Poisoned { dir: PathBuf },
}

impl StorageError {
    /// Whether this is a write or fsync that failed for lack of space (`ENOSPC`, or a quota:
    /// `EDQUOT`). Such a failure does not poison the storage: what is durable is unchanged,
    /// and [`crate::DiskStorage::sync`] retries everything staged since the last successful
    /// sync, so the caller can wait for space and try again.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Io { source, .. } => is_disk_full(source),
            _ => false,
        }
    }

    /// A `Corrupt` error, for brevity at the many call sites.
    pub(crate) fn corrupt(file: &Path, offset: u64, reason: impl Into<Corruption>) -> Self {
        StorageError::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

/// What [`StorageError::Corrupt`] found wrong: the rule of the format (see the crate docs'
/// recovery rules) that no crash of this code can break.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Corruption {
    /// A snapshot file with no WAL segment at all (segments are created first).
    #[error("a snapshot exists but no WAL segment does")]
    SnapshotWithoutWal,
    /// A gap in the newest generation's segment numbers.
    #[error("segment is missing while segment {last_seq:#x} exists")]
    MissingSegment { last_seq: u64 },
    /// A segment or snapshot header that fails its check.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// Segments of one generation in different format versions (one rewrite writes them all).
    #[error("format version {version} in a generation of another version")]
    MixedVersions { version: u32 },
    /// Segment 0 of the generation holds no base record.
    #[error("the generation's first segment has no base record")]
    NoBaseRecord,
    /// The base record's frame is damaged (it was durable before anything depended on it).
    #[error("{0} in the base record")]
    BaseRecord(FrameError),
    /// The base record is too short to hold the snapshot generation it starts with.
    #[error("base record shorter than its 8-byte snapshot generation")]
    ShortBaseRecord,
    /// The base record names a snapshot newer than its own generation.
    #[error("base record names snapshot {snapshot_generation:#x}, newer than its generation")]
    BaseNamesNewerSnapshot { snapshot_generation: u64 },
    /// A batch whose checksum matches yet whose records do not add up to it.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// A bad batch in a segment before the last (those were complete and synced).
    #[error("{0} in a segment that is not the last")]
    BatchBeforeLastSegment(BatchError),
    /// A bad record in a (version 1) segment before the last.
    #[error("{0} in a segment that is not the last")]
    RecordBeforeLastSegment(FrameError),
    /// A bad batch in the last segment followed by a valid one at `next`: not a torn write.
    #[error("{error}, yet a valid batch follows at offset {next}")]
    BatchBeforeValidBatch { error: BatchError, next: usize },
    /// A bad record in the last (version 1) segment followed by a valid one at `next`.
    #[error("{error}, yet a valid record follows at offset {next}")]
    RecordBeforeValidRecord { error: FrameError, next: usize },
    /// The snapshot the newest generation names does not exist.
    #[error("missing, yet the newest WAL generation refers to it")]
    SnapshotMissing,
    /// The snapshot file's one frame is damaged.
    #[error(transparent)]
    SnapshotFrame(FrameError),
    /// Bytes after the snapshot's frame.
    #[error("{count} unexpected bytes after the snapshot")]
    SnapshotTrailingBytes { count: u64 },
}

/// `ENOSPC` or `EDQUOT`, by kind or by number (the numbers are Linux's, in case an error
/// was built from a raw code the standard library did not classify).
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// Adapts an `io::Error` into [`StorageError::Io`] for `map_err`.
pub(crate) fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
    let path = path.to_path_buf();
    move |source| StorageError::Io { op, path, source }
}
