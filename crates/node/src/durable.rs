//! Stable storage as a driver uses it: the [`Durable`] trait, its errors, and an in-memory
//! implementation.
//!
//! It lives here, below both the drivers (`flotilla-host`'s event loop) and the storages
//! (`flotilla-storage`'s `DiskDurable`), so that neither depends on the other. Every
//! implementation must pass the conformance suite in `flotilla-storage`'s
//! `tests/durable_conformance.rs`.

use std::sync::Arc;

use flotilla_snapshot::{MemorySpool, SnapshotSpool};

use crate::Save;

/// Why a [`Durable`] call failed.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    /// No space left on the device. The call had no effect (what was durable still is, what
    /// was staged still is); the same call may be made again later and succeeds once there
    /// is space. The driver waits and retries.
    #[error("disk full: {0}")]
    DiskFull(String),
    /// Anything else: the storage is unusable and the process must stop (a restart recovers
    /// what is durable).
    #[error("{0}")]
    Fatal(String),
}

/// Stable storage as the driver uses it.
///
/// # Correctness
/// After `sync` returns, everything staged before it must survive a crash: as staged, or,
/// for a local snapshot ([`Save::local_tail`]) whose snapshot is still being written, as the
/// stored state extended by the save's tail with the previous snapshot, which the process
/// recovers from as well. A call that fails
/// with [`DurableError::DiskFull`] changes nothing: a `stage` that failed staged nothing (the
/// driver stages the same save again before the next `sync`), and a `sync` that failed
/// leaves everything staged since the last successful one staged.
pub trait Durable: Send {
    /// Records one input's save (appended or replacing; see [`Save`]). May buffer.
    fn stage(&mut self, save: &Save) -> Result<(), DurableError>;
    /// Makes everything staged durable.
    fn sync(&mut self) -> Result<(), DurableError>;
    /// Moves on work the storage does in the background (a local snapshot being written:
    /// [`Save::local_tail`]) without blocking. The loop calls it after each batch that had
    /// nothing to sync (a sync does the same). Durability does not depend on it: what it
    /// finishes is a compaction.
    fn poll(&mut self) -> Result<(), DurableError> {
        Ok(())
    }
    /// Where the process should build snapshots (one arriving from a leader): the storage's
    /// temporary files, which [`Durable::stage`] then installs without a copy, so a replica
    /// never holds a large snapshot in memory. Memory by default.
    fn snapshot_spool(&self) -> Arc<dyn SnapshotSpool> {
        Arc::new(MemorySpool)
    }
}

/// Storage in memory, for processes that persist nothing that matters (a router's clerks) and
/// for tests.
#[derive(Debug, Default)]
pub struct MemoryDurable {
    pub state: Vec<u8>,
    pub snapshot: Vec<u8>,
}

impl Durable for MemoryDurable {
    fn stage(&mut self, save: &Save) -> Result<(), DurableError> {
        if save.append {
            self.state.extend_from_slice(&save.state);
        } else {
            self.state.clone_from(&save.state);
            if let Some(s) = &save.snapshot {
                let bytes = s
                    .to_bytes()
                    .map_err(|e| DurableError::Fatal(e.to_string()))?;
                self.snapshot = bytes.to_vec();
            }
        }
        Ok(())
    }
    fn sync(&mut self) -> Result<(), DurableError> {
        Ok(())
    }
}
