//! Local snapshots written on a thread of their own, while the caller's thread keeps
//! staging and syncing appends to the current generation (see "Local snapshots" in the
//! crate docs for the protocol and its crash analysis).
//!
//! This module holds the bookkeeping: which snapshot is being written, which waits for its
//! turn, and what the switch to each needs (the compacted state and the appends since).
//! The switch itself, and everything else that touches the current generation, stays with
//! [`crate::DiskStorage`] on the caller's thread.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use flotilla_node::SnapshotData;

use crate::error::StorageError;
use crate::fsutil::remove;
use crate::io::Files;
use crate::snapshot;

/// A snapshot the replica took of its own state, and the state that goes with it.
#[derive(Debug)]
pub(crate) struct Local {
    /// Shared with the process (and the writer thread): never copied here.
    pub data: SnapshotData,
    /// The compacted state the snapshot goes with.
    pub state: Vec<u8>,
    /// The payloads appended since (to the current generation): the new generation's base
    /// record is `state` followed by these.
    pub tail: Vec<u8>,
}

impl Local {
    /// The new generation's stored state: the compacted state, then every append since.
    pub fn base(&self) -> Vec<u8> {
        [&self.state[..], &self.tail].concat()
    }
}

/// Where a snapshot of [`InFlight`] is.
#[derive(Debug)]
enum Job {
    /// Being written by `thread`, which returns `Ok(false)` if it saw `cancel`.
    Running {
        thread: JoinHandle<Result<bool, StorageError>>,
        cancel: Arc<AtomicBool>,
    },
    /// Durable under its final name; the switch to its generation is still to be made.
    Written,
}

/// The one snapshot being written (or written and waiting for the switch).
#[derive(Debug)]
pub(crate) struct InFlight {
    /// The generation it is for: the current one + 1 when it started. The snapshot file
    /// carries this number, and so will the generation the switch creates.
    pub generation: u64,
    pub local: Local,
    job: Job,
}

/// What a finished write came to.
pub(crate) enum Outcome {
    /// Still running.
    Running,
    /// Durable: the switch may be made.
    Written,
    /// Failed; the error says whether for lack of space.
    Failed(StorageError),
}

impl InFlight {
    /// Starts writing `local`'s snapshot as `snapshot-<generation>.snap` on a new thread.
    pub fn start(
        files: &Files,
        dir: &Path,
        generation: u64,
        local: Local,
    ) -> Result<InFlight, StorageError> {
        let cancel = Arc::new(AtomicBool::new(false));
        let (files, dir_buf, data, stop) = (
            files.clone(),
            dir.to_path_buf(),
            local.data.clone(),
            cancel.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("flotilla-snapshot".into())
            .spawn(move || {
                let stored =
                    snapshot::store_unless(&files, &dir_buf, generation, &data, None, &stop);
                stored.map(|g| g.is_some())
            })
            .map_err(|source| StorageError::Io {
                op: "start a thread to write a snapshot in",
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(InFlight {
            generation,
            local,
            job: Job::Running { thread, cancel },
        })
    }

    /// Where the write is; with `wait`, waits for it to end first. After `Failed` the
    /// caller drops this (or starts it again).
    pub fn outcome(&mut self, dir: &Path, wait: bool) -> Outcome {
        match &self.job {
            Job::Written => return Outcome::Written,
            Job::Running { thread, .. } if !wait && !thread.is_finished() => {
                return Outcome::Running
            }
            Job::Running { .. } => {}
        }
        let Job::Running { thread, .. } = std::mem::replace(&mut self.job, Job::Written) else {
            unreachable!("matched above")
        };
        match join(thread, dir) {
            Ok(true) => Outcome::Written,
            Ok(false) => unreachable!("only `cancel` cancels, and it consumes the write"),
            Err(e) => Outcome::Failed(e),
        }
    }

    /// Stops the write (waiting for the thread: at most one chunk write or the fsync it is
    /// in) and removes what it wrote (a spool file it installed is renamed back to its
    /// temporary name instead, for a replacement to install it again), best effort: the
    /// next open removes a snapshot no
    /// generation refers to anyway. Returns an error the writer met before it saw the
    /// cancellation.
    pub fn cancel(self, dir: &Path) -> Result<(), StorageError> {
        let result = match self.job {
            Job::Written => Ok(()),
            Job::Running { thread, cancel } => {
                cancel.store(true, Ordering::Relaxed);
                join(thread, dir).map(|_| ())
            }
        };
        snapshot::discard(dir, self.generation, &self.local.data);
        result
    }
}

fn join(thread: JoinHandle<Result<bool, StorageError>>, dir: &Path) -> Result<bool, StorageError> {
    thread.join().unwrap_or_else(|_| {
        Err(StorageError::Io {
            op: "write a snapshot (the writer thread panicked) in",
            path: PathBuf::from(dir),
            source: std::io::Error::other("snapshot writer panicked"),
        })
    })
}

/// The background snapshots of one storage: at most one written at a time, and the newest
/// one taken meanwhile, waiting its turn.
#[derive(Debug, Default)]
pub(crate) struct Background {
    pub in_flight: Option<InFlight>,
    /// Taken while another was being written. A newer one replaces it: only the newest
    /// matters, and the one being written is never cancelled for it, so one completes at
    /// least every write time however often snapshots are taken.
    pub queued: Option<Local>,
    /// After a failure for lack of space: no new attempt before this.
    pub retry_at: Option<Instant>,
    /// Removing the files a switch superseded.
    remover: Option<JoinHandle<()>>,
}

impl Background {
    /// Records appended payload `bytes` in the tails of the snapshots not yet switched to.
    pub fn appended(&mut self, bytes: &[u8]) {
        if let Some(f) = &mut self.in_flight {
            f.local.tail.extend_from_slice(bytes);
        }
        if let Some(q) = &mut self.queued {
            q.tail.extend_from_slice(bytes);
        }
    }

    /// The newest local snapshot not yet switched to, if any.
    pub fn newest(&self) -> Option<&SnapshotData> {
        self.queued
            .as_ref()
            .or(self.in_flight.as_ref().map(|f| &f.local))
            .map(|l| &l.data)
    }

    /// Removes `paths` on another thread (after the previous removal ended). A removal lost
    /// in a crash is done again by the next open.
    pub fn remove_later(&mut self, paths: Vec<PathBuf>) {
        self.wait_removals();
        let spawned = std::thread::Builder::new()
            .name("flotilla-remove".into())
            .spawn(move || {
                for path in paths {
                    if let Err(e) = remove(&path) {
                        tracing::warn!("cannot remove a superseded storage file: {e}");
                    }
                }
            });
        match spawned {
            Ok(thread) => self.remover = Some(thread),
            Err(e) => tracing::warn!("cannot start a thread to remove superseded files: {e}"),
        }
    }

    /// Waits for the removal started last, if any (before the directory is reopened).
    pub fn wait_removals(&mut self) {
        if let Some(thread) = self.remover.take() {
            let _ = thread.join();
        }
    }

    pub fn is_idle(&self) -> bool {
        self.in_flight.is_none() && self.queued.is_none()
    }

    /// Drops every background snapshot (a replacement supersedes them), stopping the one
    /// being written.
    pub fn cancel(&mut self, dir: &Path) -> Result<(), StorageError> {
        self.queued = None;
        self.retry_at = None;
        match self.in_flight.take() {
            Some(f) => f.cancel(dir),
            None => Ok(()),
        }
    }
}
