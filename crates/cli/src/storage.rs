//! The replica's durable storage: `flotilla-storage`'s write-ahead log, as the driver's
//! [`Durable`].

use std::path::Path;

use flotilla_net::driver::Durable;
use flotilla_net::server::Recovered;
use flotilla_node::Save;
use flotilla_storage::{DiskStorage, StorageOptions};
use nix::fcntl::{Flock, FlockArg};

/// The WAL and snapshots of one replica, and the lock that keeps a second process out.
pub struct Disk(DiskStorage, #[allow(dead_code)] Flock<std::fs::File>);

impl Durable for Disk {
    fn stage(&mut self, save: &Save) -> Result<(), String> {
        self.0.stage(save).map_err(|e| e.to_string())
    }
    fn sync(&mut self) -> Result<(), String> {
        self.0.sync().map(|_| ()).map_err(|e| e.to_string())
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
