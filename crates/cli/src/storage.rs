//! The replica's durable storage: `flotilla-storage`'s write-ahead log, as the driver's
//! [`Durable`].

use std::path::Path;

use flotilla_net::driver::Durable;
use flotilla_net::server::Recovered;
use flotilla_node::Save;
use flotilla_storage::{DiskStorage, StorageOptions};

/// The WAL and snapshots of one replica.
pub struct Disk(DiskStorage);

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
    let (disk, rec) = DiskStorage::open(dir, StorageOptions::default())
        .map_err(|e| format!("cannot open the data directory {}: {e}", dir.display()))?;
    Ok((
        Disk(disk),
        Recovered {
            state: rec.state,
            snapshot: rec.snapshot,
        },
    ))
}
