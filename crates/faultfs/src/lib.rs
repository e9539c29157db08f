//! faultfs: a FUSE file system that loses what was not fsynced when told "power loss".
//!
//! The same idea as LazyFS (which Jepsen uses), written in Rust so that CI, which can
//! reach crates.io and Debian packages but not GitHub, can build it: a pass-through over a
//! backing directory in which
//!
//! - every write lands in an in-memory cache of 4 KiB page images ([`cache::FileCache`]);
//!   reads see it;
//! - `fsync`/`fdatasync` of a file writes that file's cache into the backing file and
//!   fsyncs it: the backing directory always holds exactly what a disk would keep;
//! - [`Mount::crash`] is the power loss: [`CrashMode::Drop`] forgets every cache (each file
//!   reverts to its last fsynced contents and size); [`CrashMode::Torn`] first writes a
//!   seeded random subset of each file's unsynced pages (and maybe its new size), which is
//!   what a real disk may do, so that a torn last WAL batch can be tested.
//!
//! Limits (what is *not* modelled):
//! - Metadata passes through at once: create, mkdir, rename, unlink, chmod and truncation's
//!   *name* effects are durable immediately, except that with
//!   [`Options::strict_names`] a name *created* since its directory's last fsync is removed
//!   at a crash (a rename onto a name that did not exist carries that along; a rename over
//!   an existing name is kept, as is every unlink).
//! - Locks are the kernel's local emulation (fuser does not ask for FUSE lock requests),
//!   which is all one host needs. `fallocate` supports mode 0 only. No mmap (files are
//!   opened with direct I/O so the kernel caches no pages that a crash should have lost).
//! - The caller must stop every process using the mount before a crash (a write racing
//!   the crash could land on either side of it). Open handles may remain.
//!
//! [`Mount::arm_trip`] runs a callback at the first write matching a name pattern, an
//! offset and a length, and fails that write: a test uses it to kill every process in the middle of
//! writing a particular file (a snapshot, say).

pub mod cache;
mod fs;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use cache::PAGE;

/// What [`Mount::new`] can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the backing directory {path}: {source}")]
    Backing {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot mount on {path} ({source}); needs /dev/fuse and fusermount3 (Debian: fuse3)")]
    Mount {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the power loss failed to rewrite the backing files: {0}")]
    Crash(#[source] std::io::Error),
}

/// How a power loss treats unsynced data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// Every unsynced write is lost.
    Drop,
    /// Each unsynced page survives or not, chosen by a generator seeded with `seed`.
    Torn { seed: u64 },
}

/// What a power loss did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CrashReport {
    /// Files that held unsynced data.
    pub files: u64,
    /// Unsynced pages that reached the "disk" (torn mode only).
    pub pages_kept: u64,
    /// Unsynced pages lost.
    pub pages_lost: u64,
    /// Names removed because their directory was not fsynced since they were created
    /// (relative to the mount's root).
    pub names_lost: Vec<PathBuf>,
}

impl std::fmt::Display for CrashReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files had unsynced data: {} pages lost, {} kept; {} unsynced names lost",
            self.files,
            self.pages_lost,
            self.pages_kept,
            self.names_lost.len()
        )?;
        for n in &self.names_lost {
            write!(f, "\n  lost name: {}", n.display())?;
        }
        Ok(())
    }
}

/// Mount options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Remove, at a crash, names created since their directory's last fsync.
    pub strict_names: bool,
}

/// Which write fires an armed trip: the first to a file whose name starts with
/// `name_prefix` and ends with `name_suffix`, at `min_offset` or beyond, of `min_len` bytes
/// or more (the kernel splits a large write(2) into FUSE writes of up to 128 KiB). With
/// `at_fsync`, the first fsync of such a file holding at least `min_len` bytes of unsynced
/// pages fires it instead (before syncing anything; the fsync fails with EIO).
#[derive(Debug, Clone, Default)]
pub struct Trip {
    pub name_prefix: String,
    pub name_suffix: String,
    pub min_offset: u64,
    pub min_len: usize,
    pub at_fsync: bool,
}

/// A mounted faultfs; unmounted when dropped.
pub struct Mount {
    state: Arc<Mutex<fs::State>>,
    mountpoint: PathBuf,
    /// Kept for its Drop, which unmounts (after the fields above, in declaration order).
    _session: fuser::BackgroundSession,
}

impl Mount {
    /// Mounts a faultfs of `backing` on `mountpoint` (both existing directories), served by
    /// a background thread.
    pub fn new(backing: &Path, mountpoint: &Path, options: Options) -> Result<Mount, Error> {
        let backing = backing.canonicalize().map_err(|source| Error::Backing {
            path: backing.to_owned(),
            source,
        })?;
        let state = fs::State::new(backing.clone(), options.strict_names).map_err(|source| {
            Error::Backing {
                path: backing.clone(),
                source,
            }
        })?;
        let state = Arc::new(Mutex::new(state));
        let opts = [
            fuser::MountOption::FSName("faultfs".into()),
            fuser::MountOption::Subtype("faultfs".into()),
        ];
        let session = fuser::spawn_mount2(fs::FaultFs(state.clone()), mountpoint, &opts).map_err(
            |source| Error::Mount {
                path: mountpoint.to_owned(),
                source,
            },
        )?;
        Ok(Mount {
            state,
            mountpoint: mountpoint.to_owned(),
            _session: session,
        })
    }

    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, fs::State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The power loss (see [`CrashMode`]). The mount stays usable: afterwards it shows
    /// what the disk kept.
    pub fn crash(&self, mode: CrashMode) -> Result<CrashReport, Error> {
        self.lock().crash(mode).map_err(Error::Crash)
    }

    /// Arms `trip`: the first write matching it reaches the cache (unsynced, like every
    /// write), then runs `hook` (with the file's backing path) on the file system's thread,
    /// then fails with EIO. Replaces any trip armed before. A hook that kills the writer
    /// leaves that write's pages unsynced, for a torn crash to keep or lose.
    pub fn arm_trip(&self, trip: Trip, hook: impl FnOnce(&Path) + Send + 'static) {
        self.lock().armed = Some(fs::Armed {
            trip,
            hook: Box::new(hook),
        });
    }

    /// Disarms the trip, if it has not fired; returns the files trips fired on so far.
    pub fn disarm(&self) -> Vec<PathBuf> {
        let mut s = self.lock();
        s.armed = None;
        s.tripped.clone()
    }
}

/// Whether this machine can mount FUSE file systems at all (tests skip, saying so, if not).
pub fn fuse_available() -> bool {
    Path::new("/dev/fuse").exists()
}
