//! [`DiskStorage`]: the writer, and the public types around it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla_node::Save;

use crate::error::StorageError;
use crate::format::{frame_header, segment_name, FRAME_HEADER_LEN, SEGMENT_HEADER_LEN};
use crate::recovery::{self, Loaded};
use crate::segment::{Preallocation, Segment};
use crate::snapshot;

/// Tuning of a [`DiskStorage`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageOptions {
    /// A segment that would grow past this many bytes is closed (fsynced) and a new one
    /// started, so no file grows without bound between replacements. A segment always takes
    /// at least one record, however large. Default 64 MiB.
    pub segment_bytes: u64,
    /// The last segment's file is kept ahead of its records with zeros, written and fsynced
    /// this many bytes at a time, so that a sync overwrites space that already exists instead
    /// of growing the file (which makes each fdatasync commit metadata too: on ext4, a
    /// journal commit). Never past `segment_bytes`; 0 disables it (each sync grows the file).
    ///
    /// Default 1 MiB: the sync that extends the file (writing the chunk of zeros, and
    /// committing the new length) took 1.2-1.7 ms on the benchmark disk, once per ~500 syncs
    /// of 2 KB, a few µs per sync on average; a new segment or generation costs the same
    /// once. Larger chunks gain nothing measurable (the zeros cost the same bytes per byte of
    /// log whatever the chunk; 4 MiB gave the same mean) and make that one sync slower
    /// (4 MiB: 4-8 ms).
    pub preallocate_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_bytes: 64 << 20,
            preallocate_bytes: 1 << 20,
        }
    }
}

impl StorageOptions {
    fn preallocation(&self) -> Preallocation {
        Preallocation {
            chunk: self.preallocate_bytes,
            limit: self.segment_bytes,
        }
    }
}

/// What [`DiskStorage::open`] found: both empty for a new directory.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The last replacement followed by every durable append after it.
    pub state: Vec<u8>,
    /// The last snapshot stored (empty if none).
    pub snapshot: Vec<u8>,
}

/// What one [`DiskStorage::sync`] covered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Append records staged since the previous sync (a segment rotation may have made some
    /// of them durable already).
    pub records: u64,
    /// Their payload bytes.
    pub bytes: u64,
    /// Time spent in fsync by this call (zero when nothing was staged).
    pub fsync: Duration,
}

/// Where appends are going, for diagnostics and crash tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalTail {
    /// The last segment of the current generation.
    pub path: PathBuf,
    /// Bytes written to it: the next record starts here. The file may be longer, its records
    /// followed by preallocated zeros ([`StorageOptions::preallocate_bytes`]).
    pub written_bytes: u64,
    /// Bytes of it known durable. A crash may lose anything after this, nothing before.
    pub synced_bytes: u64,
}

/// Durable storage of one replica's `state` and `snapshot` in a directory of its own (see
/// the crate docs for the format and the crash-safety argument).
///
/// Use: [`stage`](DiskStorage::stage) every save of a batch of inputs, then
/// [`sync`](DiskStorage::sync) once, then send what depends on them. After any error the
/// storage is poisoned and must be reopened.
#[derive(Debug)]
pub struct DiskStorage {
    /// The directory holding every file; nothing else may write to it.
    dir: PathBuf,
    opts: StorageOptions,
    /// The current generation: the one the last replacement created (1 for a new directory).
    generation: u64,
    /// The generation whose snapshot file goes with the current state (0: none). Older than
    /// `generation` after a replacement that carried no snapshot.
    snapshot_generation: u64,
    /// The last segment of `generation`, where appends go.
    segment: Segment,
    /// Appends staged since the last sync, for [`SyncStats`].
    pending: SyncStats,
    /// Bytes of the stored state, durable or staged.
    state_size: u64,
    snapshot_size: u64,
    /// Set by any failed write or fsync: what the files hold is then unknown, so every later
    /// call fails instead of appending after a hole or trusting a failed fsync.
    poisoned: bool,
    /// Reused for each append's frame, so staging does not allocate.
    frame: Vec<u8>,
}

impl DiskStorage {
    /// Opens (creating if missing) the directory and recovers what it holds. Fails with
    /// [`StorageError::Corrupt`] when the files hold damage no crash explains.
    pub fn open(
        dir: &Path,
        opts: StorageOptions,
    ) -> Result<(DiskStorage, Recovered), StorageError> {
        create_dir_durably(dir)?;
        let prealloc = opts.preallocation();
        let loaded = match recovery::load(dir)? {
            Some(loaded) => loaded,
            None => create_first_generation(dir, prealloc)?,
        };
        let path = dir.join(segment_name(loaded.generation, loaded.last_seq));
        let segment = Segment::reopen(path, loaded.last_seq, loaded.last_len, prealloc)?;
        let storage = DiskStorage {
            dir: dir.to_path_buf(),
            opts,
            generation: loaded.generation,
            snapshot_generation: loaded.snapshot_generation,
            segment,
            pending: SyncStats::default(),
            state_size: loaded.state.len() as u64,
            snapshot_size: loaded.snapshot.len() as u64,
            poisoned: false,
            frame: Vec::new(),
        };
        let recovered = Recovered {
            state: loaded.state,
            snapshot: loaded.snapshot,
        };
        Ok((storage, recovered))
    }

    /// Records one save. An append is written to the current segment but not fsynced: it is
    /// durable once [`sync`](DiskStorage::sync) returns. A replacement is durable when this
    /// returns, and supersedes every earlier append, synced or not.
    pub fn stage(&mut self, save: &Save) -> Result<(), StorageError> {
        self.check_usable()?;
        let result = if save.append {
            assert!(
                save.snapshot.is_none(),
                "a Save with append set carries a snapshot (flotilla_node::Save forbids it)"
            );
            self.append(&save.state)
        } else {
            self.replace(&save.state, save.snapshot.as_deref())
        };
        // Only an I/O error leaves the files in doubt; a refused save wrote nothing.
        self.poisoned = matches!(result, Err(StorageError::Io { .. }));
        result
    }

    /// Makes every staged append durable with one fsync (none if nothing was staged).
    pub fn sync(&mut self) -> Result<SyncStats, StorageError> {
        self.check_usable()?;
        let start = Instant::now();
        if let Err(e) = self.segment.sync() {
            self.poisoned = true;
            return Err(e);
        }
        let stats = SyncStats {
            fsync: if self.pending.records > 0 {
                start.elapsed()
            } else {
                Duration::ZERO
            },
            ..self.pending
        };
        self.pending = SyncStats::default();
        Ok(stats)
    }

    /// Bytes of the stored state, staged appends included (the labs' `RaftStateSize`).
    pub fn state_size(&self) -> u64 {
        self.state_size
    }

    pub fn snapshot_size(&self) -> u64 {
        self.snapshot_size
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn wal_tail(&self) -> WalTail {
        WalTail {
            path: self.segment.path().to_path_buf(),
            written_bytes: self.segment.len(),
            synced_bytes: self.segment.synced_len(),
        }
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if self.poisoned {
            let dir = self.dir.clone();
            return Err(StorageError::Poisoned { dir });
        }
        Ok(())
    }

    /// One record in the current segment, after rotating if it would overflow. An empty
    /// append changes nothing and writes nothing (frames are never empty).
    fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if bytes.is_empty() {
            return Ok(());
        }
        check_fits("state append", bytes.len())?;
        let header = frame_header(&[bytes]).expect("checked to fit");
        let frame_len = (FRAME_HEADER_LEN + bytes.len()) as u64;
        let has_records = self.segment.len() > SEGMENT_HEADER_LEN as u64;
        if has_records && self.segment.len() + frame_len > self.opts.segment_bytes {
            self.rotate()?;
        }
        // One write per record: a crash tears at most the tail, never interleaves.
        self.frame.clear();
        self.frame.extend_from_slice(&header);
        self.frame.extend_from_slice(bytes);
        self.segment.append(&self.frame)?;
        self.pending.records += 1;
        self.pending.bytes += bytes.len() as u64;
        self.state_size += bytes.len() as u64;
        Ok(())
    }

    /// Closes the current segment and starts the next one. The closed segment is trimmed
    /// to its records and fsynced first: invariant, every segment but the last is complete
    /// and durable, which is what lets recovery treat any damage in it as corruption (and
    /// lets `sync` fsync one file).
    fn rotate(&mut self) -> Result<(), StorageError> {
        self.segment.close()?;
        let seq = self.segment.seq() + 1;
        let prealloc = self.opts.preallocation();
        self.segment = Segment::create(&self.dir, self.generation, seq, &[], prealloc)?;
        Ok(())
    }

    /// Starts generation `generation + 1` with `state` as its base record, storing
    /// `snapshot` first if given. Steps, each durable before the next (see the crate docs):
    /// snapshot file, then segment 0 (the commit point), then removal of what it supersedes.
    fn replace(&mut self, state: &[u8], snapshot: Option<&[u8]>) -> Result<(), StorageError> {
        check_fits("state", state.len() + 8)?;
        check_fits("snapshot", snapshot.map_or(0, <[u8]>::len))?;
        let generation = self.generation + 1;
        let snapshot_generation = match snapshot {
            Some(data) => {
                snapshot::write(&self.dir, generation, data)?;
                generation
            }
            None => self.snapshot_generation,
        };
        self.segment = create_generation(
            &self.dir,
            generation,
            snapshot_generation,
            state,
            self.opts.preallocation(),
        )?;
        // Committed: from here on a crash recovers the new generation.
        self.generation = generation;
        self.snapshot_generation = snapshot_generation;
        self.state_size = state.len() as u64;
        if let Some(data) = snapshot {
            self.snapshot_size = data.len() as u64;
        }
        self.pending = SyncStats::default();
        if let Err(e) = recovery::remove_superseded(&self.dir, generation, snapshot_generation) {
            // Harmless: the next open removes them again.
            tracing::warn!("cannot remove superseded storage files: {e}");
        }
        Ok(())
    }
}

/// Refuses a payload the 32-bit length field cannot describe.
fn check_fits(what: &'static str, len: usize) -> Result<(), StorageError> {
    match u32::try_from(len) {
        Ok(_) => Ok(()),
        Err(_) => Err(StorageError::TooLarge { what, len }),
    }
}

/// Writes segment 0 of `generation`: header, then the base record (the snapshot generation
/// it goes with, then the full state).
fn create_generation(
    dir: &Path,
    generation: u64,
    snapshot_generation: u64,
    state: &[u8],
    prealloc: Preallocation,
) -> Result<Segment, StorageError> {
    let snap = snapshot_generation.to_le_bytes();
    let header = frame_header(&[&snap, state]).ok_or(StorageError::TooLarge {
        what: "state",
        len: state.len(),
    })?;
    Segment::create(dir, generation, 0, &[&header, &snap, state], prealloc)
}

/// Generation 1 of a new directory: an empty state, no snapshot.
fn create_first_generation(dir: &Path, prealloc: Preallocation) -> Result<Loaded, StorageError> {
    let segment = create_generation(dir, 1, 0, &[], prealloc)?;
    Ok(Loaded {
        generation: 1,
        snapshot_generation: 0,
        state: Vec::new(),
        snapshot: Vec::new(),
        last_seq: segment.seq(),
        last_len: segment.len(),
    })
}

/// Creates `dir` if missing, and makes its name (and any missing parent's) durable.
fn create_dir_durably(dir: &Path) -> Result<(), StorageError> {
    crate::durable::create_dir_all(dir)
}
