//! The replica's durable storage: `flotilla-storage`'s [`DiskDurable`], opened on the
//! directory the arguments name.

use std::path::Path;

use flotilla_server::server::Recovered;
use flotilla_storage::{DiskDurable, StorageOptions};

/// Opens (or creates) `dir`, locked against a second process, and recovers what it holds.
pub fn open(dir: &Path) -> Result<(DiskDurable, Recovered), String> {
    let (disk, rec) =
        DiskDurable::open(dir, StorageOptions::default()).map_err(|e| e.to_string())?;
    Ok((
        disk,
        Recovered {
            state: rec.state,
            snapshot: rec.snapshot,
        },
    ))
}
