//! The one error type of the crate. Every variant names the file it is about.

use std::io;
use std::path::{Path, PathBuf};

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
        reason: String,
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
    pub(crate) fn corrupt(file: &Path, offset: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            file: file.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
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
