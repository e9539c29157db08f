//! Durable on-disk storage of one Raft replica's persisted state.
//!
//! A replica persists two byte strings, `state` and `snapshot`, through
//! [`flotilla_node::Save`]s: an append adds bytes to `state` (change records from
//! `flotilla_raft::encode_changes`); a replacement sets `state`, and `snapshot` too if it
//! carries one. [`DiskStorage`] keeps them in a directory of its own, as a write-ahead log
//! of checksummed records, and gives them back on [`DiskStorage::open`] after a crash.
//!
//! # What the driver must do
//!
//! For each batch of inputs: [`stage`](DiskStorage::stage) the save of every input, in order;
//! then [`sync`](DiskStorage::sync) once; only then send the batch's messages and replies
//! (a vote or an acknowledgement promises that what it depends on is on disk). Staging an
//! append costs a copy into memory; the sync writes them as one batch and fsyncs once
//! (group commit). A replacement is durable when `stage` returns, but for a *local
//! snapshot* (a replacement with [`flotilla_node::Save::local_tail`]), whose snapshot is
//! written on another thread (see "Local snapshots" below): call
//! [`poll_background`](DiskStorage::poll_background) after batches that had nothing to sync,
//! so that a finished write is switched to without waiting for the next append.
//!
//! Errors: when [`StorageError::is_disk_full`] (ENOSPC, EDQUOT) nothing durable changed and
//! the storage stays usable: wait, then `sync` again, which retries everything staged since
//! the last successful sync (a replacement included). After any other error, stop using the
//! storage (it refuses everything: [`StorageError::Poisoned`]) and reopen it, which
//! recovers what is durable.
//!
//! [`DiskDurable`] does all this for a driver: it is [`DiskStorage`] as a
//! [`flotilla_node::Durable`], opened under the directory's lock (one process per directory),
//! with disk-full errors told apart from fatal ones ([`flotilla_node::DurableError`]).
//!
//! # On-disk format (version 2)
//!
//! All integers little-endian, all checksums CRC32C (Castagnoli). A *page* is 4096 bytes.
//!
//! ```text
//! wal-<generation:016x>-<seq:016x>.log   WAL segment
//!     header  "FLOTWAL\0" | version u32 = 2 | generation u64 | seq u64 | crc of those 28 bytes
//!     base    (segment 0 only) length u32 | crc32c(payload) u32 | payload (length >= 1)
//!     zeros   to the next page boundary
//!     batch*  each at a page boundary:
//!             body_len u64 | crc32c(body) u32 | crc32c(generation, seq, offset, body_len, body crc) u32
//!             body: record+, each  length u32 (>= 1) | payload
//!             zeros to the next page boundary (preallocated, or written with the batch)
//!     zero*   free space, in the last segment only (see below)
//! snapshot-<generation:016x>.snap        snapshot
//!     header  "FLOTSNP\0" | version u32 = 1 | generation u64 | crc of those 20 bytes
//!     record  length u32 | crc32c u32 | the snapshot (absent when the snapshot is empty)
//! <either name>.tmp                      being written; never read, removed at open
//! spool-<id:016x>.snap.tmp               a snapshot being built through the spool: laid out
//!                                        as a snapshot file, header not yet written; never
//!                                        read at open, removed there
//! ```
//!
//! A *generation* is what one replacement (or one open: see Recovery) wrote. Its segment 0
//! starts with the *base record*: the generation of the snapshot that goes with it (u64, 0
//! for none; older than the generation itself when the replacement carried no snapshot),
//! then the full state. Every batch of the generation, in segment order, holds appends. The
//! stored state is the base state followed by the appends' payloads. A *batch* is what one
//! sync wrote to one segment: a sync writes one batch, or, when the records do not all fit
//! the segment, a batch in each segment it fills (the segment is then closed and the next
//! one started). A batch that would pass [`StorageOptions::segment_bytes`] goes to a new
//! segment, but a segment's first batch may hold one record of any size. Records are at
//! most `u32::MAX` bytes ([`StorageError::TooLarge`]).
//!
//! The *zero tail*: the last segment's file runs ahead of its batches with zero bytes,
//! preallocated [`StorageOptions::preallocate_bytes`] at a time (then to a page boundary),
//! so that syncing a batch overwrites existing, durable bytes instead of growing the file
//! (see `src/segment.rs`). A segment is trimmed to the page after its last batch before the
//! next one is created, so only the last one has free space.
//!
//! Version 1 (before batches) framed each append as `length u32 | crc32c u32 | payload`,
//! written right after the previous record. Its segments are still read (with the rules of
//! `src/tail.rs`), and the open that reads them rewrites the state as a version-2
//! generation; version 1 is never written. Snapshot files did not change (still version 1).
//!
//! # Crash safety, step by step
//!
//! Invariant F: *a file under its final name is complete and durable.* New files are written
//! as `name.tmp`, fsynced (`sync_all`), renamed, and the directory fsynced. A `.tmp` whose
//! writing failed (a full disk) is removed at once.
//!
//! Invariant S: *every segment but the last of the generation is complete and durable*: a
//! segment is trimmed and fsynced before its successor is created (rotation).
//!
//! Invariant P: *no write touches a page that holds a byte a sync has covered.* A batch
//! starts at the page boundary after the previous batch's end (or the base record's), the
//! zeros written with it are after it, and a segment is trimmed on a page boundary. So a
//! torn write (a drive without atomic sector writes losing power mid-write) can only damage
//! pages of the batch being written, never synced data. (Pages and sectors: 4 KiB pages
//! hold whole 512 B or 4 KiB sectors, and are the page cache's unit of writeback.)
//!
//! Invariant B: *only the last batch of the last segment can be incomplete*, and only if
//! its sync did not return: a sync writes a batch and fdatasyncs it before writing anything
//! after it; a later batch is written only after the earlier one's sync returned.
//!
//! A replacement from generation `g` to `n = g + 1`:
//!
//! 1. with a snapshot: `snapshot-n.snap` is written as in F (streamed from the
//!    [`flotilla_node::SnapshotData`] in chunks, the frame header, which holds the payload's
//!    CRC, written last into space reserved for it, all before the fsync), or, for a
//!    snapshot built in this directory's spool (below), installed as in F without a copy. A
//!    crash before the rename leaves a `.tmp` (removed at open); after it, a snapshot no
//!    generation refers to (removed at open). Either way `g` is recovered;
//! 2. `wal-n-0.log` (header, base record, zeros to a page) is written as in F. The rename is
//!    the commit point: before it is durable, recovery sees `g`; after, `n`, whose snapshot
//!    was made durable (with its directory entry) in step 1, before the rename;
//! 3. `g`'s segments and any snapshot `n` does not refer to are removed (not fsynced). A
//!    crash midway leaves files of `g`, which the next open removes again.
//!
//! A failure in step 1 or 2 for lack of space removes what the step wrote and keeps the
//! replacement in memory; the next `sync` tries it again.
//!
//! # Local snapshots
//!
//! A snapshot the replica took of its own state (log compaction) need not be durable before
//! anything else happens: the stored log still holds every entry it covers, so the previous
//! snapshot with the whole log is as good a recovery point as the new snapshot with the
//! compacted state ([`flotilla_node::Save::local_tail`] states the contract). Writing a
//! snapshot of a gigabyte synchronously blocked the caller's thread, the replica's event
//! loop, for 3.5 s (2.9 s of writes, 0.5 s of fsync, on the benchmark disk): far past a
//! 300 ms election timeout. So such a save, from generation `g`:
//!
//! 1. **stage**: the tail is staged as an append to `g`; the snapshot (shared, not copied) is
//!    handed to a thread that writes `snapshot-n.snap`, `n = g + 1`, as in step 1 of a
//!    replacement (temp file in chunks of 4 MiB with an fdatasync every 16 MiB, fsync,
//!    rename, directory fsync). `stage` returns at once. Appends staged from here on go to `g` as usual, and are also kept in
//!    memory (the *tail since*: small, what arrives during one write);
//! 2. **switch**: the first `sync` (or `poll_background`) after the thread finished, once
//!    every staged append is synced, writes `wal-n-0.log` whose base record is the compacted
//!    state followed by the tail since, naming snapshot `n` (step 2 of a replacement: the
//!    rename is the commit point), then removes `g` and the previous snapshot (step 3) on
//!    another thread, having listed them first (so nothing newer is touched). The rest runs
//!    on the caller's thread: one small file (18 ms measured, mostly its fsyncs).
//!
//! Why the fdatasyncs along the way: with a gigabyte dirty until the final fsync, the WAL's
//! own fdatasyncs on the same disk waited behind its writeback (4 KiB syncs peaked at
//! 0.17-0.58 s during the write; with them, 32-47 ms: `snapshot_stall` in flotilla-server).
//! Why unlink elsewhere: removing a 1 GiB snapshot file took 0.3 s.
//!
//! Crash analysis: before the switch's rename, recovery finds `g` (its snapshot, its whole
//! log, every synced append included) and removes the `.tmp` or the unreferenced
//! `snapshot-n.snap`; after it, `n`, complete by F, whose snapshot was durable before it. A
//! failed write or fsync of the thread (or of the switch) poisons the storage, reported by
//! the next call (fsyncgate: the new snapshot is never named or referred to unless its fsync
//! succeeded, and the reopen rewrites `g` as for any failure). Lack of space removes what the
//! step wrote and does not poison: the log keeps everything meanwhile, and the write (or the
//! switch) is tried again after [`BACKGROUND_RETRY`].
//!
//! One write at a time: a local snapshot staged while another is written waits for it, and
//! a newer one replaces a waiting one (never the one being written, so one completes every
//! write time however often snapshots are taken; memory holds at most two snapshots, each
//! shared with its producer). Any other replacement (a snapshot installed from a leader,
//! whose log may have been discarded: it stays synchronous) cancels the write in flight
//! (waiting at most for one chunk or the fsync it is in) and drops the waiting one; if it
//! carries no snapshot of its own it takes the newest local one, written with it. Dropping
//! the storage cancels the write too, which is as a crash before the switch.
//!
//! Appends are written a batch at a time, in one positioned `write` at the next page
//! boundary of the last segment: into its zero tail, or past the end of the file (then with
//! the zeros to the next chunk or page after it). `sync` is `fdatasync` on that segment:
//! enough because fdatasync also flushes the length and allocation a batch that grows the
//! file changes, and the name was made durable by F. If the write or the fdatasync fails for
//! lack of space, nothing is recorded as written: the next `sync` writes the batch (and the
//! zeros) again, from memory, at the same place; meanwhile what the failed write left there
//! is an incomplete last batch, which recovery drops (B). Any other failure poisons.
//!
//! # Snapshots never held in memory
//!
//! A snapshot may be gigabytes; the storage streams it. [`DiskStorage::spool`] hands out
//! writers (`flotilla_snapshot::SnapshotSpool`, which the Raft core uses for a snapshot
//! arriving from a leader, and a process for one it encodes) that write a
//! `spool-<id>.snap.tmp` in the directory: the payload at its place in a snapshot file,
//! fdatasynced every 16 MiB as a background write is, then the frame header and an
//! fdatasync at `finish`. Staging a save whose snapshot is such a file installs it: the
//! snapshot header (which names the generation) is written, the file fsynced, renamed to
//! `snapshot-n.snap`, the directory fsynced: invariant F, at the cost of a rename. An
//! open file stays readable whatever happens to its names, so a snapshot being sent to a
//! follower survives being superseded.
//!
//! The same snapshot may be staged twice (a replacement retried after a full disk, a local
//! snapshot taken over by a replacement, a recovered snapshot handed back). A file
//! installed for a generation that never committed (the failure before the commit point, a
//! cancelled background write) is renamed back to its temporary name, so a retry installs
//! it again and no later snapshot can take its name from under it; a file that is the
//! current generation's snapshot is named by the new generation too (its base record
//! names the older snapshot generation) rather than renamed; any other case is copied. A
//! spool file never installed is removed when its writer or its last `SnapshotData` is
//! dropped, and by the next open after a crash.
//!
//! At open, the snapshot is verified by streaming its payload through the CRC, 1 MiB at a
//! time, and returned ([`Recovered::snapshot`]) backed by the open file.
//!
//! # Recovery
//!
//! (The same after a local snapshot: its files are a replacement's, only written at other
//! times.)
//!
//! 1. remove `.tmp` files; take the highest generation that has any segment. Its segments
//!    must be exactly 0..=n: a gap is [`StorageError::Corrupt`]. There is no fallback to an
//!    older generation: by F and step 2 the newest one is complete, so damage to it is not
//!    a crash, and the older one may already be partly removed;
//! 2. verify every header (checksum, magic, version 1 or 2 and the same in every segment,
//!    and generation and seq equal to the file name's), the base record and the snapshot it
//!    names (which must exist): any failure is `Corrupt`, by F;
//! 3. read every batch in order, each at the page boundary after the previous one. In a
//!    segment before the last, anything else before the end of the file, zeros included, is
//!    `Corrupt` (by S). In the last segment, take the first bad batch (header checksum,
//!    body past the end of the file, or body checksum) at offset `o`. If only zeros follow
//!    `o`, they are **free space**. If a valid batch starts at a later page boundary, `o`'s
//!    batch was synced before that one was written (B), so it is `Corrupt`. Otherwise it is
//!    the **torn last batch**, dropped whole with a `tracing::warn!`: whichever of its pages
//!    reached the disk, its checksum covers them all, so it is all or nothing. A body whose
//!    checksum matches but whose records do not add up to it is `Corrupt` (written wrong,
//!    not torn). Format 1 segments follow the rules in `src/tail.rs` instead;
//! 4. **rewrite**: the recovered state becomes the base record of a new generation
//!    (`highest + 1`, step 2 of a replacement, naming the same snapshot), fsynced before
//!    [`DiskStorage::open`] returns; then the older generation is removed (step 3). Appends
//!    go to the new generation. Why: after a failed fsync (the process exits on it and is
//!    restarted) the pages whose writeback failed may still be in the page cache, clean and
//!    readable though not on disk, and an fsync of the old file now reports success
//!    ("fsyncgate"). Recovery read them; writing them to a new file and fsyncing it makes
//!    what the node is about to vote and acknowledge on really durable (or fails). The
//!    snapshot is trusted as it is: it got its name only after its fsync succeeded (F).
//!    Reading with O_DIRECT instead would avoid the write, but needs aligned buffers, is
//!    refused by some file systems (tmpfs), and would still have to drop a failed batch
//!    that is durable in part. Cost: one sequential write and fsync of the state, which
//!    snapshots keep bounded: 100 MiB of WAL opened in ~0.5 s before (the read) and ~1.5 s
//!    with the rewrite, on the benchmark disk under load (`cargo bench -p
//!    flotilla-storage`). It also cuts off any torn tail (the old files are removed whole)
//!    and converts a version-1 directory.
//!
//! What this cannot detect: damage to the last batch of the last segment after it was
//! synced reads as a torn batch, and that batch is dropped with the warning (no framing can
//! tell those apart without a second copy); and a torn last batch whose records happen to
//! contain, at a page boundary, a complete valid batch for that very place (the CRC covers
//! generation, seq and offset: in practice, only a copy of this segment stored as a value)
//! reads as `Corrupt`, on the safe side.
//!
//! `Corrupt` names the file and byte offset; it is never repaired silently. Files whose
//! names this crate does not write are left alone. Only one `DiskStorage` may use a
//! directory at a time (not enforced by a lock).
//!
//! # Testing hooks
//!
//! [`StorageOptions::faults`] takes a [`FaultHook`] that every create, write and fsync asks
//! first: tests use it to fail the n-th write or fsync (a full disk, a failed writeback) and
//! to watch where writes land. Absent by default; one `Option` check per system call.

mod background;
mod bench;
mod disk_durable;
pub mod durable;
mod error;
mod format;
mod fsutil;
mod io;
mod recovery;
mod segment;
mod snapshot;
mod storage;
mod tail;

pub use bench::bench_report;
pub use disk_durable::{DiskDurable, OpenError};
pub use error::{Corruption, StorageError};
pub use format::{BatchError, FrameError, HeaderError, RecordsError};
pub use io::{FaultHook, Faults, FileOp};
pub use storage::{DiskStorage, Recovered, StorageOptions, SyncStats, WalTail, BACKGROUND_RETRY};
