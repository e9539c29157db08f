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
//! (a vote or an acknowledgement promises that what it depends on is on disk). Staging
//! costs a `write`; the sync is one fsync for the whole batch (group commit). A replacement
//! is durable when `stage` returns. After any error, stop using the storage (it refuses
//! everything: [`StorageError::Poisoned`]) and reopen it, which recovers what is durable.
//!
//! # On-disk format
//!
//! All integers little-endian, all checksums CRC32C (Castagnoli).
//!
//! ```text
//! wal-<generation:016x>-<seq:016x>.log   WAL segment
//!     header  "FLOTWAL\0" | version u32 = 1 | generation u64 | seq u64 | crc of those 28 bytes
//!     record* length u32 | crc32c(payload) u32 | payload (length >= 1)
//!     zero*   free space, in the last segment only (see below)
//! snapshot-<generation:016x>.snap        snapshot
//!     header  "FLOTSNP\0" | version u32 = 1 | generation u64 | crc of those 20 bytes
//!     record  the snapshot (absent when the snapshot is empty)
//! <either name>.tmp                      being written; never read, removed at open
//! ```
//!
//! A *generation* is what one replacement wrote. Its segment 0 starts with the *base
//! record*: the generation of the snapshot that goes with it (u64, 0 for none; older than
//! the generation itself when the replacement carried no snapshot), then the full state.
//! Every later record of the generation, in segment order, is one append. The stored state
//! is the base state followed by the appends' payloads. A segment that would grow past
//! [`StorageOptions::segment_bytes`] is fsynced and closed, and the next one (`seq + 1`)
//! started. Records are at most `u32::MAX` bytes ([`StorageError::TooLarge`]).
//!
//! The *zero tail*: the last segment's file runs ahead of its records with zero bytes,
//! preallocated [`StorageOptions::preallocate_bytes`] at a time, so that syncing a batch
//! overwrites existing, durable bytes instead of growing the file (see `src/segment.rs`). No
//! record has length 0, so the records end at the first zero length field; when only zeros
//! follow it, they are free space and the next record starts there. The file's length is the
//! end of the preallocated space. A segment is trimmed to its records before the next one is
//! created, so only the last one has a zero tail. This changes no version: files written
//! before it (ending at their last record) read the same, and a reader without it takes a
//! zero tail for a torn one and truncates it.
//!
//! # Crash safety, step by step
//!
//! Invariant F: *a file under its final name is complete and durable.* New files are written
//! as `name.tmp`, fsynced (`sync_all`), renamed, and the directory fsynced.
//!
//! Invariant S: *every segment but the last of the generation is complete and durable*: a
//! segment is fsynced before its successor is created (rotation).
//!
//! A replacement from generation `g` to `n = g + 1`:
//!
//! 1. with a snapshot: `snapshot-n.snap` is written as in F. A crash before the rename leaves
//!    a `.tmp` (removed at open); after it, a snapshot no generation refers to (removed at
//!    open). Either way `g` is recovered;
//! 2. `wal-n-0.log` (header and base record) is written as in F. The rename is the commit
//!    point: before it is durable, recovery sees `g`; after, `n`, whose snapshot was made
//!    durable (with its directory entry) in step 1, before the rename;
//! 3. `g`'s segments and any snapshot `n` does not refer to are removed (not fsynced). A
//!    crash midway leaves files of `g`, which the next open removes again.
//!
//! Appends are written a batch at a time, whole records in one positioned `write` just after
//! the last segment's records: into its zero tail, or past the end of the file. A crash can
//! only tear what followed its last fsync (recovery below). `sync` is `fdatasync` on the last
//! segment: enough because fdatasync also flushes the length and allocation a batch that
//! grows the file changes, and the name was made durable by F. A batch that would pass the
//! end of the zero tail first gets the next chunk of zeros written after it, made durable by
//! that same fdatasync: the file grows, and its metadata is committed, once per chunk.
//! Earlier segments are durable by S (and end at their last record: rotation trims the zero
//! tail, fsyncs, and only then creates the next segment).
//!
//! # Recovery
//!
//! 1. remove `.tmp` files; take the highest generation that has any segment. Its segments
//!    must be exactly 0..=n: a gap is [`StorageError::Corrupt`]. There is no fallback to an
//!    older generation: by F and step 2 the newest one is complete, so damage to it is not
//!    a crash, and the older one may already be partly removed;
//! 2. verify every header (checksum, magic, version, and generation and seq equal to the file
//!    name's), the base record and the snapshot it names (which must exist): any failure is
//!    `Corrupt`, by F;
//! 3. read every record in order. In a segment before the last, anything else before the end
//!    of the file, zeros included, is `Corrupt` (by S). In the last segment, take the first
//!    bad record (header cut short, zero length, payload past the end of the file, or
//!    checksum mismatch) at offset `o`. If only zeros follow `o`, they are **free space**:
//!    kept, no warning, and the next record goes at `o`. Otherwise it is a **torn tail** —
//!    the file is truncated to `o` and fsynced, with a `tracing::warn!` — unless valid data
//!    follows it, which makes it `Corrupt`: a valid record where `o`'s length field (or that
//!    field with one bit flipped) says the next starts, or a valid record at the *end of the
//!    data* (one past the last non-zero byte; the record may end after it, in its payload's
//!    own zeros) that only zeros follow. Rationale and blind spots: `src/tail.rs`;
//! 4. remove the segments of older generations and the snapshots not referred to;
//! 5. fdatasync the last segment before appending to it: a crashed process may have written
//!    records it never synced, which recovery read from the page cache.
//!
//! What this cannot detect: damage to the very last record of the last segment after it was
//! synced reads as a torn write, and that record is dropped with the warning; damage that
//! zeroes the last records, to the end of the data, reads as free space (no framing can tell
//! those apart without a second copy). And the reverse, on the safe side: a power failure
//! that kept a later part of the last batch but lost an earlier one (possible for writes into
//! the zero tail, which the file system may persist in any order) reads as `Corrupt` if a
//! whole record survived after the hole: see `src/tail.rs`.
//!
//! `Corrupt` names the file and byte offset; it is never repaired silently. Files whose
//! names this crate does not write are left alone. Only one `DiskStorage` may use a
//! directory at a time (not enforced by a lock).

mod bench;
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
pub use error::StorageError;
pub use io::{FaultHook, Faults, FileOp};
pub use storage::{DiskStorage, Recovered, StorageOptions, SyncStats, WalTail};
