//! [`DiskStorage`]: the writer, and the public types around it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_node::{Save, SnapshotData};
use flotilla_snapshot::SnapshotSpool;

use crate::background::{Background, InFlight, Local, Outcome};
use crate::error::StorageError;
use crate::format::{frame_header, BATCH_RECORD_HEADER_LEN};
use crate::io::{Faults, Files};
use crate::recovery;
use crate::segment::{Preallocation, Segment};
use crate::snapshot::{self, DiskSpool};

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
    /// A hook every write and fsync asks first, so tests can fail them (a full disk, a
    /// failed fsync) or watch them; none by default.
    pub faults: Faults,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            segment_bytes: 64 << 20,
            preallocate_bytes: 1 << 20,
            faults: Faults::default(),
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
    /// The last snapshot stored (empty if none): backed by its file, read on demand, never
    /// loaded into memory (its checksum was verified by streaming through it).
    pub snapshot: SnapshotData,
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
    /// Where its last batch (or its header and base record) ends: all durable. A crash may
    /// lose anything after this, nothing before. The file is longer: padding to the next
    /// page, then preallocated zeros ([`StorageOptions::preallocate_bytes`]).
    pub synced_bytes: u64,
    /// Where the next batch will start: the page boundary at or after `synced_bytes`.
    pub next_batch: u64,
    /// Payload bytes staged and not yet synced (the next `sync` writes them).
    pub staged_bytes: u64,
}

/// Durable storage of one replica's `state` and `snapshot` in a directory of its own (see
/// the crate docs for the format and the crash-safety argument).
///
/// Use: [`stage`](DiskStorage::stage) every save of a batch of inputs, then
/// [`sync`](DiskStorage::sync) once, then send what depends on them. After an error that
/// is not [`StorageError::is_disk_full`] the storage is poisoned and must be reopened.
#[derive(Debug)]
pub struct DiskStorage {
    /// The directory holding every file; nothing else may write to it.
    dir: PathBuf,
    opts: StorageOptions,
    /// Every write and fsync, through the fault hook if there is one.
    files: Files,
    /// The current generation: the one the last replacement (or open) created.
    generation: u64,
    /// The generation whose snapshot file goes with the current state (0: none). Older than
    /// `generation` after a replacement that carried no snapshot.
    snapshot_generation: u64,
    /// The last segment of `generation`, where batches go.
    segment: Segment,
    /// A replacement staged but not written for lack of space: the next `sync` writes it
    /// first. Appends staged after it are in `pending`.
    pending_replace: Option<(Vec<u8>, Option<SnapshotData>)>,
    /// Local snapshots being written on another thread, or waiting to be (see "Local
    /// snapshots" in the crate docs). Idle while `pending_replace` is set.
    background: Background,
    /// Appends staged since the last successful sync, framed as a batch body
    /// (`len u32 | payload` each): what the next `sync` writes.
    pending: Vec<u8>,
    /// Where each record of `pending` ends, to split it between segments.
    pending_ends: Vec<usize>,
    /// Records of `pending` already durable: a sync that failed for lack of space after
    /// closing a segment with some of them. The retry writes the rest.
    flushed: usize,
    /// Appends staged since the last sync, for [`SyncStats`].
    stats: SyncStats,
    /// Bytes of the stored state, durable or staged.
    state_size: u64,
    snapshot_size: u64,
    /// Set by any failed write or fsync but for lack of space: what the files hold is then
    /// unknown (after a failed fsync Linux may drop the dirty pages and report success on
    /// the next one), so every later call fails and the process must reopen the directory.
    poisoned: bool,
}

impl DiskStorage {
    /// Opens (creating if missing) the directory, recovers what it holds, and rewrites it:
    /// the recovered state becomes the base record of a new generation, written and fsynced
    /// before this returns; then the old generation's files are removed.
    ///
    /// Why rewrite: recovery reads the files through the page cache. After a failed fsync
    /// (the previous process exited on it) pages whose writeback failed stay cached, clean
    /// and readable, though not on disk, and a new fsync of that file reports success
    /// ("fsyncgate"). Writing what was read into a new file and fsyncing that makes it
    /// durable for real before the node votes or acknowledges anything on it. The snapshot
    /// is not rewritten: it got its name only after its fsync succeeded. Cost: one
    /// sequential write of the state (the log since the last snapshot) per open, e.g. ~0.2 s
    /// for 100 MB (see the crate docs). It also converts a directory of an older format.
    ///
    /// Fails with [`StorageError::Corrupt`] when the files hold damage no crash explains.
    /// The rewrite needs room for one more copy of the state: on a full disk it fails with
    /// an error for which [`StorageError::is_disk_full`] holds, having removed what it
    /// wrote and changed nothing; the caller may retry the open once space returns.
    pub fn open(
        dir: &Path,
        opts: StorageOptions,
    ) -> Result<(DiskStorage, Recovered), StorageError> {
        create_dir_durably(dir)?;
        let files = Files::new(opts.faults.clone());
        let prealloc = opts.preallocation();
        let (old, snapshot_generation, state, snapshot) = match recovery::load(dir)? {
            Some(l) => (l.generation, l.snapshot_generation, l.state, l.snapshot),
            None => (0, 0, Vec::new(), SnapshotData::default()),
        };
        let generation = old + 1;
        let segment = create_generation(
            &files,
            dir,
            generation,
            snapshot_generation,
            &state,
            prealloc,
        )?;
        recovery::remove_superseded(dir, generation, snapshot_generation)?;
        let storage = DiskStorage {
            dir: dir.to_path_buf(),
            opts,
            files,
            generation,
            snapshot_generation,
            segment,
            pending_replace: None,
            background: Background::default(),
            pending: Vec::new(),
            pending_ends: Vec::new(),
            flushed: 0,
            stats: SyncStats::default(),
            state_size: state.len() as u64,
            snapshot_size: snapshot.len(),
            poisoned: false,
        };
        Ok((storage, Recovered { state, snapshot }))
    }

    /// Records one save. An append is kept in memory: durable once
    /// [`sync`](DiskStorage::sync) returns. A replacement is written now, durable when this
    /// returns, and supersedes every earlier append, synced or not. If it fails for lack of
    /// space ([`StorageError::is_disk_full`]), nothing durable changed and the next `sync`
    /// tries it again.
    ///
    /// A local snapshot (a replacement with [`Save::local_tail`]) is neither: its tail is
    /// staged as an append, and its snapshot is written on another thread; once that is
    /// durable, a later `sync` (or [`poll_background`](DiskStorage::poll_background))
    /// switches to a generation based on it. Until then recovery returns the previous
    /// snapshot and the whole log, which holds everything the new one does. A replacement
    /// written now cancels any such write; if it has no snapshot of its own, it takes the
    /// newest local one (the one `None` keeps, as far as the caller knows), written now too.
    pub fn stage(&mut self, save: &Save) -> Result<(), StorageError> {
        self.check_usable()?;
        if save.append {
            assert!(
                save.snapshot.is_none(),
                "a Save with append set carries a snapshot (flotilla_node::Save forbids it)"
            );
            return self.append(&save.state);
        }
        check_fits("state", save.state.len() + 8)?;
        check_fits(
            "snapshot",
            save.snapshot.as_ref().map_or(0, |d| d.len() as usize),
        )?;
        if let (Some(data), Some(tail), None) =
            (&save.snapshot, &save.local_tail, &self.pending_replace)
        {
            self.append(tail)?;
            self.state_size = save.state.len() as u64;
            self.snapshot_size = data.len();
            // Appends from here on belong to this snapshot's tail (`Background::appended`).
            self.background.queued = Some(Local {
                data: data.clone(),
                state: save.state.clone(),
                tail: Vec::new(),
            });
            let result = self.advance_background(false);
            return self.poison_on(result);
        }
        let snapshot = save
            .snapshot
            .clone()
            .or_else(|| self.background.newest().cloned());
        let cancelled = self.background.cancel(&self.dir);
        self.poison_on(cancelled)?;
        // Earlier appends are superseded, whether the replacement is written now or later.
        self.pending.clear();
        self.pending_ends.clear();
        self.flushed = 0;
        self.stats = SyncStats::default();
        self.state_size = save.state.len() as u64;
        if let Some(s) = &snapshot {
            self.snapshot_size = s.len();
        }
        self.pending_replace = None;
        let result = self.replace(&save.state, snapshot.as_ref());
        if matches!(&result, Err(e) if e.is_disk_full()) {
            self.pending_replace = Some((save.state.clone(), snapshot));
        }
        self.poison_on(result)
    }

    /// Makes everything staged durable: a replacement that could not be written yet, then
    /// the appends, as one batch per segment, each written and fdatasynced (none if nothing
    /// was staged).
    ///
    /// On an error for lack of space ([`StorageError::is_disk_full`]) what is durable is as
    /// before, but for whole batches written to segments this call closed (a durable prefix
    /// of the appends, never part of a batch): a later `sync` writes the rest again, from
    /// memory, to the same place, and the partly written batch left meanwhile is a torn
    /// tail to recovery. Any other error poisons the storage.
    pub fn sync(&mut self) -> Result<SyncStats, StorageError> {
        let stats = self.sync_staged()?;
        let result = self.advance_background(false);
        self.poison_on(result)?;
        Ok(stats)
    }

    /// `sync` without moving background snapshots on.
    fn sync_staged(&mut self) -> Result<SyncStats, StorageError> {
        self.check_usable()?;
        let start = Instant::now();
        let result = self.flush();
        self.poison_on(result)?;
        let stats = SyncStats {
            fsync: if self.stats.records > 0 {
                start.elapsed()
            } else {
                Duration::ZERO
            },
            ..self.stats
        };
        self.stats = SyncStats::default();
        Ok(stats)
    }

    /// Moves background snapshots on without waiting: if the one being written is durable,
    /// switches to it (writing the new generation's segment 0: the compacted state and the
    /// appends since, small next to the snapshot), then starts the one queued. `sync` does
    /// this too; call it when there was nothing to sync. Does nothing while appends are
    /// staged (the switch must come after them). A failure for lack of space is not
    /// reported: the log keeps everything meanwhile, and the write is tried again (after
    /// [`BACKGROUND_RETRY`]). Any other failure, of the writer thread's included, poisons.
    pub fn poll_background(&mut self) -> Result<(), StorageError> {
        self.check_usable()?;
        let result = self.advance_background(false);
        self.poison_on(result)
    }

    /// Makes everything staged durable, waits for the background snapshots (the one being
    /// written and the one queued) and switches to the newest, as if each had been written
    /// when staged, and for the removal of the files that superseded. Blocks for the whole write: for tests and for a clean stop. A failure
    /// for lack of space is returned (nothing is poisoned; a later call tries again).
    pub fn finish_background(&mut self) -> Result<(), StorageError> {
        // Not `sync`: its poll does not wait, and would swallow (and at once retry) a
        // failure for lack of space that ended the write just now, which this call reports.
        self.sync_staged()?;
        let result = self.advance_background(true);
        self.background.wait_removals();
        self.poison_on(result)
    }

    /// Whether a local snapshot is being written or waits to be (switched to or not).
    pub fn has_background_snapshot(&self) -> bool {
        !self.background.is_idle()
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

    /// Where the process should write snapshots it builds (one arriving from a leader:
    /// `flotilla_raft::Raft::set_snapshot_spool`; one it encodes): temporary files in this
    /// directory, which [`stage`](DiskStorage::stage) then installs by renaming instead of
    /// copying. A writer dropped unfinished removes its file, and a crash leaves a `.tmp`
    /// the next open removes; a finished one is read from its file, so the snapshot is
    /// never held in memory.
    pub fn spool(&self) -> Arc<dyn SnapshotSpool> {
        Arc::new(DiskSpool {
            dir: self.dir.clone(),
            files: self.files.clone(),
        })
    }

    pub fn wal_tail(&self) -> WalTail {
        WalTail {
            path: self.segment.path().to_path_buf(),
            synced_bytes: self.segment.end(),
            next_batch: self.segment.next_batch(),
            staged_bytes: self.stats.bytes,
        }
    }

    /// Whether a failed write or fsync left the storage unusable (until reopened).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    fn check_usable(&self) -> Result<(), StorageError> {
        if self.poisoned {
            let dir = self.dir.clone();
            return Err(StorageError::Poisoned { dir });
        }
        Ok(())
    }

    /// Poisons the storage on an I/O error other than lack of space (a refused save, say
    /// `TooLarge`, wrote nothing).
    fn poison_on<T>(&mut self, result: Result<T, StorageError>) -> Result<T, StorageError> {
        if let Err(e @ StorageError::Io { .. }) = &result {
            if !e.is_disk_full() {
                self.poisoned = true;
            }
        }
        result
    }

    /// Stages one record. An empty append changes nothing (records are never empty).
    fn append(&mut self, bytes: &[u8]) -> Result<(), StorageError> {
        if bytes.is_empty() {
            return Ok(());
        }
        check_fits("state append", bytes.len())?;
        self.background.appended(bytes);
        self.pending.reserve(BATCH_RECORD_HEADER_LEN + bytes.len());
        self.pending
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.pending.extend_from_slice(bytes);
        self.pending_ends.push(self.pending.len());
        self.stats.records += 1;
        self.stats.bytes += bytes.len() as u64;
        self.state_size += bytes.len() as u64;
        Ok(())
    }

    /// Writes what is staged (see [`DiskStorage::sync`]). A segment that cannot take the
    /// next record is closed (trimmed and fsynced: every segment but the last is complete
    /// and durable, which lets recovery treat any damage in it as corruption) and the next
    /// one created, possibly on a later call if creating it failed for lack of space.
    fn flush(&mut self) -> Result<(), StorageError> {
        if let Some((state, snapshot)) = self.pending_replace.take() {
            if let Err(e) = self.replace(&state, snapshot.as_ref()) {
                self.pending_replace = Some((state, snapshot));
                return Err(e);
            }
        }
        while self.flushed < self.pending_ends.len() {
            if self.segment.is_closed() {
                let seq = self.segment.seq() + 1;
                let prealloc = self.opts.preallocation();
                self.segment =
                    Segment::create(&self.files, &self.dir, self.generation, seq, &[], prealloc)?;
            }
            let start = self.start_of(self.flushed);
            let fitting = self.pending_ends[self.flushed..]
                .iter()
                .enumerate()
                .take_while(|&(i, &end)| self.segment.fits((end - start) as u64, i == 0))
                .count();
            if fitting == 0 {
                self.segment.close()?;
                continue;
            }
            let end = self.pending_ends[self.flushed + fitting - 1];
            self.segment.write_batch(&self.pending[start..end])?;
            self.flushed += fitting;
        }
        self.pending.clear();
        self.pending_ends.clear();
        self.flushed = 0;
        Ok(())
    }

    /// Where staged record `i` starts in `pending`.
    fn start_of(&self, i: usize) -> usize {
        match i {
            0 => 0,
            i => self.pending_ends[i - 1],
        }
    }

    /// Starts generation `generation + 1` with `state` as its base record, storing
    /// `snapshot` first if given. Steps, each durable before the next (see the crate docs):
    /// snapshot file, then segment 0 (the commit point), then removal of what it supersedes.
    /// A failure before the commit point leaves the current generation as it was (and
    /// removes the snapshot it wrote, best effort; the next open would).
    fn replace(
        &mut self,
        state: &[u8],
        snapshot: Option<&SnapshotData>,
    ) -> Result<(), StorageError> {
        let generation = self.generation + 1;
        // The current snapshot may come back (as the recovered one, say): then the new
        // generation names it rather than store a copy.
        let current = Some(self.snapshot_generation).filter(|&g| g != 0);
        let snapshot_generation = match snapshot {
            Some(data) => snapshot::store(&self.files, &self.dir, generation, data, current)?,
            None => self.snapshot_generation,
        };
        let created = create_generation(
            &self.files,
            &self.dir,
            generation,
            snapshot_generation,
            state,
            self.opts.preallocation(),
        );
        self.segment = match created {
            Ok(segment) => segment,
            Err(e) => {
                if let Some(data) = snapshot.filter(|_| snapshot_generation == generation) {
                    snapshot::discard(&self.dir, generation, data);
                }
                return Err(e);
            }
        };
        // Committed: from here on a crash recovers the new generation.
        self.generation = generation;
        self.snapshot_generation = snapshot_generation;
        if let Err(e) = recovery::remove_superseded(&self.dir, generation, snapshot_generation) {
            // Harmless: the next open removes them again.
            tracing::warn!("cannot remove superseded storage files: {e}");
        }
        Ok(())
    }
}

impl DiskStorage {
    /// One step of the background protocol at a time, as far as each can go now (or, with
    /// `wait`, by waiting): the write in flight ended (a failure for lack of space puts its
    /// snapshot back in the queue, unless a newer one is there, for a retry after
    /// [`BACKGROUND_RETRY`]); a written snapshot is switched to, once no append is staged;
    /// the queued snapshot is started when nothing is in flight.
    fn advance_background(&mut self, wait: bool) -> Result<(), StorageError> {
        let backing_off =
            |bg: &Background| !wait && bg.retry_at.is_some_and(|t| Instant::now() < t);
        loop {
            if let Some(f) = &mut self.background.in_flight {
                match f.outcome(&self.dir, wait) {
                    Outcome::Running => return Ok(()),
                    Outcome::Failed(e) => {
                        let f = self.background.in_flight.take().expect("in flight");
                        if !e.is_disk_full() {
                            return Err(e);
                        }
                        self.background_full(&e);
                        self.background.queued.get_or_insert(f.local);
                        return if wait { Err(e) } else { Ok(()) };
                    }
                    Outcome::Written => {
                        let staged =
                            !self.pending_ends.is_empty() || self.pending_replace.is_some();
                        if staged || backing_off(&self.background) {
                            return Ok(());
                        }
                        match self.switch() {
                            Ok(()) => self.background.retry_at = None,
                            Err(e) if e.is_disk_full() => {
                                self.background_full(&e);
                                return if wait { Err(e) } else { Ok(()) };
                            }
                            Err(e) => return Err(e),
                        }
                        continue;
                    }
                }
            }
            if self.background.queued.is_none() || backing_off(&self.background) {
                return Ok(());
            }
            let local = self.background.queued.take().expect("queued");
            let generation = self.generation + 1;
            let started = InFlight::start(&self.files, &self.dir, generation, local)?;
            self.background.in_flight = Some(started);
            if !wait {
                return Ok(());
            }
        }
    }

    fn background_full(&mut self, e: &StorageError) {
        tracing::warn!(
            retry_ms = BACKGROUND_RETRY.as_millis() as u64,
            "cannot write a local snapshot for lack of space (the log keeps everything \
             meanwhile): {e}"
        );
        self.background.retry_at = Some(Instant::now() + BACKGROUND_RETRY);
    }

    /// Step 2 and 3 of a replacement for the snapshot written in the background: segment 0
    /// of its generation (the commit point), based on the compacted state and every append
    /// since, then removal of the old generation. Only with no append staged: all of them
    /// are durable in the old generation, and in the new one from its base.
    fn switch(&mut self) -> Result<(), StorageError> {
        let f = self
            .background
            .in_flight
            .as_ref()
            .expect("a written snapshot");
        let generation = f.generation;
        debug_assert_eq!(generation, self.generation + 1);
        let base = f.local.base();
        self.segment = create_generation(
            &self.files,
            &self.dir,
            generation,
            generation,
            &base,
            self.opts.preallocation(),
        )?;
        // Committed: from here on a crash recovers the new generation.
        self.generation = generation;
        self.snapshot_generation = generation;
        self.background.in_flight = None;
        // Removed on another thread: unlinking the previous snapshot, a gigabyte say, took
        // 0.3 s. Only files listed now, all superseded, so nothing made later is touched.
        match recovery::superseded(&self.dir, generation, generation) {
            Ok(paths) => self.background.remove_later(paths),
            Err(e) => tracing::warn!("cannot list superseded storage files: {e}"),
        }
        Ok(())
    }
}

impl Drop for DiskStorage {
    /// Stops a snapshot being written in the background (a crash would too): nothing refers
    /// to it yet, and the next open recovers the previous snapshot and the whole log.
    fn drop(&mut self) {
        let _ = self.background.cancel(&self.dir);
        self.background.wait_removals();
    }
}

/// How long after a background snapshot write or switch failed for lack of space it is
/// tried again.
pub const BACKGROUND_RETRY: Duration = Duration::from_secs(1);

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
    files: &Files,
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
    Segment::create(
        files,
        dir,
        generation,
        0,
        &[&header, &snap, state],
        prealloc,
    )
}

/// Creates `dir` if missing, and makes its name (and any missing parent's) durable.
fn create_dir_durably(dir: &Path) -> Result<(), StorageError> {
    crate::durable::create_dir_all(dir)
}
