//! The replica's durable storage: `flotilla-storage`'s write-ahead log, as the driver's
//! [`Durable`].

use std::path::Path;
use std::sync::Arc;

use flotilla_net::driver::{Durable, DurableError};
use flotilla_net::server::Recovered;
use flotilla_node::Save;
use flotilla_raft::SnapshotSpool;
use flotilla_storage::{DiskStorage, StorageError, StorageOptions};
use nix::fcntl::{Flock, FlockArg};

/// The WAL and snapshots of one replica, and the lock that keeps a second process out.
pub struct Disk(DiskStorage, #[allow(dead_code)] Flock<std::fs::File>);

impl Durable for Disk {
    fn stage(&mut self, save: &Save) -> Result<(), DurableError> {
        match self.0.stage(save) {
            // A replacement the storage could not write for lack of space stays staged: the
            // next sync writes it first, and reports the lack of space while it lasts.
            Err(e) if e.is_disk_full() => Ok(()),
            r => r.map_err(classify),
        }
    }
    fn sync(&mut self) -> Result<(), DurableError> {
        self.0.sync().map(|_| ()).map_err(classify)
    }
    fn poll(&mut self) -> Result<(), DurableError> {
        self.0.poll_background().map_err(classify)
    }
    fn snapshot_spool(&self) -> Arc<dyn SnapshotSpool> {
        self.0.spool()
    }
}

/// Disk full is an error the driver waits out (the storage stays usable and its next sync
/// retries everything staged since the last successful one); anything else poisons the
/// storage and stops the replica (`flotilla up` restarts it, which recovers what is durable).
fn classify(e: StorageError) -> DurableError {
    if e.is_disk_full() {
        DurableError::DiskFull(e.to_string())
    } else {
        DurableError::Fatal(e.to_string())
    }
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
