//! [`DiskStorage`] as a driver's [`Durable`]: one replica's data directory, locked against a
//! second process, with errors classified for the driver.
//!
//! (Not to be confused with [`crate::durable`], the helpers for small durable files.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use flotilla_node::{Durable, DurableError, Save};
use flotilla_snapshot::SnapshotSpool;
use nix::fcntl::{Flock, FlockArg};

use crate::{DiskStorage, Recovered, StorageError, StorageOptions};

/// The WAL and snapshots of one replica, and the lock that keeps a second process out.
pub struct DiskDurable {
    disk: DiskStorage,
    /// Held for as long as the storage is open: two replicas on one directory would
    /// interleave their logs. Released when dropped (or when the process dies).
    _lock: Flock<File>,
}

/// Why [`DiskDurable::open`] failed.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data directory: {0}")]
    Create(#[source] StorageError),
    #[error("cannot open {}: {source}", path.display())]
    LockFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the data directory {} is in use by another process ({source})", dir.display())]
    InUse {
        dir: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("cannot open the data directory {}: {source}", dir.display())]
    Storage {
        dir: PathBuf,
        #[source]
        source: StorageError,
    },
}

impl DiskDurable {
    /// Opens (or creates) `dir`, takes its lock (`LOCK`, an exclusive `flock`), and recovers
    /// what it holds.
    pub fn open(dir: &Path, opts: StorageOptions) -> Result<(DiskDurable, Recovered), OpenError> {
        crate::durable::create_dir_all(dir).map_err(OpenError::Create)?;
        let path = dir.join("LOCK");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| OpenError::LockFile { path, source })?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, source)| {
            OpenError::InUse {
                dir: dir.to_owned(),
                source,
            }
        })?;
        let (disk, recovered) =
            DiskStorage::open(dir, opts).map_err(|source| OpenError::Storage {
                dir: dir.to_owned(),
                source,
            })?;
        Ok((DiskDurable { disk, _lock: lock }, recovered))
    }

    /// The storage itself (its statistics, its size).
    pub fn storage(&self) -> &DiskStorage {
        &self.disk
    }
}

impl Durable for DiskDurable {
    fn stage(&mut self, save: &Save) -> Result<(), DurableError> {
        match self.disk.stage(save) {
            // A replacement the storage could not write for lack of space stays staged: the
            // next sync writes it first, and reports the lack of space while it lasts.
            Err(e) if e.is_disk_full() => Ok(()),
            r => r.map_err(classify),
        }
    }
    fn sync(&mut self) -> Result<(), DurableError> {
        self.disk.sync().map(|_| ()).map_err(classify)
    }
    fn poll(&mut self) -> Result<(), DurableError> {
        self.disk.poll_background().map_err(classify)
    }
    fn snapshot_spool(&self) -> Arc<dyn SnapshotSpool> {
        self.disk.spool()
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
