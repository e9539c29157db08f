//! The replica's durable storage: `flotilla-storage`'s write-ahead log, as the driver's
//! [`Durable`].

use std::path::Path;

use flotilla_net::driver::{Durable, DurableError};
use flotilla_net::server::Recovered;
use flotilla_node::Save;
use flotilla_storage::{DiskStorage, StorageError, StorageOptions};
use nix::fcntl::{Flock, FlockArg};

/// The WAL and snapshots of one replica, and the lock that keeps a second process out.
pub struct Disk(DiskStorage, #[allow(dead_code)] Flock<std::fs::File>);

impl Durable for Disk {
    fn stage(&mut self, save: &Save) -> Result<(), DurableError> {
        self.0.stage(save).map_err(classify)
    }
    fn sync(&mut self) -> Result<(), DurableError> {
        self.0.sync().map(|_| ()).map_err(classify)
    }
}

/// Disk full is an error the driver waits out; anything else stops the replica.
///
/// MERGE (storage contract, issue 15 item 4): once `flotilla_storage` has
/// `StorageError::is_disk_full` (after which a failed stage or sync leaves the storage usable
/// and retryable rather than poisoned), use it here instead of `is_disk_full` below. Until
/// then the storage poisons itself on every I/O error, so the retry that follows a disk-full
/// error fails as `Poisoned`, which is fatal: the replica exits as before, only later.
fn classify(e: StorageError) -> DurableError {
    if is_disk_full(&e) {
        DurableError::DiskFull(e.to_string())
    } else {
        DurableError::Fatal(e.to_string())
    }
}

/// ENOSPC ("no space left on device") or EDQUOT (a quota reached): space may come back.
fn is_disk_full(e: &StorageError) -> bool {
    let StorageError::Io { source, .. } = e else {
        return false;
    };
    source.kind() == std::io::ErrorKind::StorageFull
        || source.kind() == std::io::ErrorKind::QuotaExceeded
}

/// Opens (or creates) `dir` and recovers what it holds.
pub fn open(dir: &Path) -> Result<(Disk, Recovered), String> {
    flotilla_storage::durable::create_dir_all(dir)
        .map_err(|e| format!("cannot create the data directory: {e}"))?;
    let lock_path = dir.join("LOCK");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    // Two replicas on one directory would interleave their logs: refuse the second.
    let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        format!(
            "the data directory {} is in use by another process ({e})",
            dir.display()
        )
    })?;
    let (disk, rec) = DiskStorage::open(dir, StorageOptions::default())
        .map_err(|e| format!("cannot open the data directory {}: {e}", dir.display()))?;
    Ok((
        Disk(disk, lock),
        Recovered {
            state: rec.state,
            snapshot: rec.snapshot,
        },
    ))
}
