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
//! Appends are single `write`s of whole records to the last segment; a crash can only tear
//! what followed its last fsync (recovery below). `sync` is `fdatasync` on the last segment:
//! enough because fdatasync also flushes the file size that appending grows, and the name
//! was made durable by F. Earlier segments are durable by S.
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
//! 3. read every record in order. In a segment before the last, any bad record is `Corrupt`
//!    (by S). In the last segment, the first bad record (header cut short, zero length,
//!    payload past the end of the file, or checksum mismatch) at offset `o` is a **torn
//!    tail** — the file is truncated to `o` and fsynced, with a `tracing::warn!` — unless
//!    valid data follows it, which makes it `Corrupt`: a valid record where `o`'s length
//!    field (or that field with one bit flipped) says the next starts, or a valid record
//!    ending exactly at the end of the file. Rationale and blind spots: `src/tail.rs`;
//! 4. remove the segments of older generations and the snapshots not referred to.
//!
//! What this cannot detect: damage to the very last record of the last segment after it was
//! synced reads as a torn write, and that record is dropped with the warning (no framing
//! can tell the two apart without a second copy).
//!
//! `Corrupt` names the file and byte offset; it is never repaired silently. Files whose
//! names this crate does not write are left alone. Only one `DiskStorage` may use a
//! directory at a time (not enforced by a lock).

mod bench;
mod error;
mod format;
mod fsutil;
mod recovery;
mod segment;
mod snapshot;
mod storage;
mod tail;

pub use bench::bench_report;
pub use error::StorageError;
pub use storage::{DiskStorage, Recovered, StorageOptions, SyncStats, WalTail};
