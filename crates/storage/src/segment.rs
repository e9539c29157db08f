//! The WAL segment appends go to, and the zeros preallocated ahead of its records.
//!
//! Why preallocate: a `write` that grows a file makes its `fdatasync` commit metadata too
//! (the size, and the extents delayed allocation assigns), which on ext4 is a journal
//! commit, on top of the data flush. Overwriting bytes that already exist, were written
//! (not merely `fallocate`d: see [`write_zeros_at`]) and are durable changes no metadata
//! `fdatasync` must flush, so it costs the data write and the cache flush only (2 KB append +
//! sync on ext4, `cargo bench -p flotilla-storage`: a median of ~85 µs instead of ~135-180 µs
//! with one writer, ~135 µs instead of ~220-240 µs with three on the same disk). So a
//! segment's file runs ahead of its records with zeros, written and made durable a chunk at
//! a time, and batches are written into them with positioned writes.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{io_err, StorageError};
use crate::format::{segment_header, segment_name, SEGMENT_HEADER_LEN};
use crate::fsutil::{create_atomically, write_zeros_at};

/// How far a segment's file runs ahead of its records (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Preallocation {
    /// Zeros are added this many bytes at a time, up to a multiple of it; 0: never (the file
    /// grows with each batch, as an appending log does).
    pub chunk: u64,
    /// [`crate::StorageOptions::segment_bytes`]: records never go past it (but for a
    /// segment's first record), so neither do the zeros.
    pub limit: u64,
}

impl Preallocation {
    /// The file length to give a segment whose records must reach `needed`: `needed`
    /// rounded up to a multiple of the chunk (so extensions write whole blocks and the
    /// file's length says where a chunk ends), but not past `limit`; never less than
    /// `needed`.
    fn target(&self, needed: u64) -> u64 {
        if self.chunk == 0 {
            return needed;
        }
        let rounded = needed.div_ceil(self.chunk).saturating_mul(self.chunk);
        rounded.min(self.limit).max(needed)
    }
}

/// The open, last segment of the current generation.
///
/// Invariants (as long as no write has failed; the owner stops using it after a failure):
/// - the file holds a valid header and whole valid records up to `len - unwritten.len()`
///   (`written`), then zeros up to `file_len`, its length, with `written <= file_len`;
/// - its first `synced_len` bytes are durable; after a successful `sync`, all `file_len`
///   bytes are, so a batch that fits below `file_len` overwrites durable zeros.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Open for reading and writing; every write is positioned (`write_all_at`), the file
    /// offset is never used.
    file: File,
    /// For error messages and [`crate::WalTail`].
    path: PathBuf,
    /// Its place in the sequence: the next segment is `seq + 1`.
    seq: u64,
    /// Bytes of records staged or written: where the next record starts.
    len: u64,
    /// Bytes covered by an fsync; `sync` is a no-op when it equals `len`.
    synced_len: u64,
    /// Appended records not yet handed to the kernel: a group commit writes the whole batch
    /// with one `write` in `sync`, instead of one system call per record. Counted in `len`.
    unwritten: Vec<u8>,
    /// The file's length: records, then zeros from `len - unwritten.len()` on.
    file_len: u64,
    prealloc: Preallocation,
}

impl Segment {
    /// Creates segment `seq` of `generation` durably (see [`create_atomically`]), holding
    /// the header then `first`, an already framed record, if any, then the zeros of its
    /// first preallocated chunk (made durable by the same fsync).
    pub(crate) fn create(
        dir: &Path,
        generation: u64,
        seq: u64,
        first: &[&[u8]],
        prealloc: Preallocation,
    ) -> Result<Segment, StorageError> {
        let name = segment_name(generation, seq);
        let header = segment_header(generation, seq);
        let parts: Vec<&[u8]> = std::iter::once(&header[..])
            .chain(first.iter().copied())
            .collect();
        let len = (SEGMENT_HEADER_LEN + first.iter().map(|p| p.len()).sum::<usize>()) as u64;
        let file_len = prealloc.target(len);
        let file = create_atomically(dir, &name, &parts, file_len - len)?;
        Ok(Segment {
            file,
            path: dir.join(name),
            seq,
            len,
            synced_len: len,
            unwritten: Vec::new(),
            file_len,
            prealloc,
        })
    }

    /// Opens a recovered segment whose first `len` bytes are valid records and whose rest,
    /// if any, is zeros (recovery cut off anything else). The zeros are kept as preallocated
    /// space: the file's length is where it ends.
    ///
    /// The file is fdatasynced once: recovery may have read records that a crashed process
    /// wrote but never synced (they are still in the page cache), and the caller is about
    /// to rely on them being durable. Cheap when they already are.
    pub(crate) fn reopen(
        path: PathBuf,
        seq: u64,
        len: u64,
        prealloc: Preallocation,
    ) -> Result<Segment, StorageError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err("open for writing", &path))?;
        let file_len = file.metadata().map_err(io_err("stat", &path))?.len();
        debug_assert!(
            file_len >= len,
            "recovery read {len} bytes of {}",
            path.display()
        );
        file.sync_data().map_err(io_err("fsync", &path))?;
        Ok(Segment {
            file,
            path,
            seq,
            len,
            synced_len: len,
            unwritten: Vec::new(),
            file_len,
            prealloc,
        })
    }

    /// Appends one framed record to the batch `sync` writes. Records of a batch reach the
    /// file in order, in one `write`: a crash tears at most the last batch, which recovery
    /// cuts off (nothing in it was acknowledged: acknowledgements follow `sync`).
    pub(crate) fn append(&mut self, frame: &[u8]) -> Result<(), StorageError> {
        self.unwritten.extend_from_slice(frame);
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Hands the batch to the kernel (no fsync), at the end of the records. With `extend`,
    /// a batch that would pass the end of the file first gets zeros written after it up to
    /// the next chunk boundary: the fsync that follows makes them durable together with the
    /// batch and the new length, so the file grows (and its metadata is committed) once per
    /// chunk instead of once per batch. Writing them here rather than fsyncing them on their
    /// own saves an fsync, and is as safe: until that fsync, a crash leaves the new region
    /// holding a prefix of the batch and zeros (or, if the length did not reach the disk,
    /// nothing), which recovery reads as a torn tail or free space.
    fn write_out(&mut self, extend: bool) -> Result<(), StorageError> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        let start = self.len - self.unwritten.len() as u64;
        if extend && self.len > self.file_len {
            let end = self.prealloc.target(self.len);
            // The batch itself covers [file_len, len): zeros only after it.
            write_zeros_at(&self.file, &self.path, self.len, end - self.len)?;
            self.file_len = end;
        }
        self.file
            .write_all_at(&self.unwritten, start)
            .map_err(io_err("append to", &self.path))?;
        self.file_len = self.file_len.max(self.len);
        self.unwritten.clear();
        Ok(())
    }

    /// Makes every appended byte durable with `fdatasync`, which is enough here: it flushes
    /// the data and the metadata needed to read it back, the file size included (Linux
    /// fdatasync(2): "a change to the file size ... would require a metadata flush"); the
    /// name was made durable when the segment was created. When the batch fits in the
    /// preallocated zeros there is no such metadata, which is the point of them. Skipped
    /// when nothing is new.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.write_out(true)?;
        if self.synced_len < self.len {
            self.file.sync_data().map_err(io_err("fsync", &self.path))?;
            self.synced_len = self.len;
        }
        Ok(())
    }

    /// Makes the segment final before its successor is created: writes the batch, cuts off
    /// the zeros after the records and fsyncs (`sync_all`: the length is metadata). So a
    /// segment that is not the last ends exactly at its last record, as recovery requires
    /// (zeros there could only be damage: see `recovery::scan_records`). A crash before this
    /// returns leaves the segment the last one, where zeros are free space.
    pub(crate) fn close(&mut self) -> Result<(), StorageError> {
        self.write_out(false)?;
        if self.file_len > self.len {
            self.file
                .set_len(self.len)
                .map_err(io_err("truncate", &self.path))?;
            self.file_len = self.len;
            self.file.sync_all().map_err(io_err("fsync", &self.path))?;
        } else if self.synced_len < self.len {
            self.file.sync_data().map_err(io_err("fsync", &self.path))?;
        }
        self.synced_len = self.len;
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn synced_len(&self) -> u64 {
        self.synced_len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_up_to_a_chunk_within_the_segment_limit() {
        let p = Preallocation {
            chunk: 100,
            limit: 1000,
        };
        assert_eq!(p.target(1), 100);
        assert_eq!(p.target(100), 100, "a chunk boundary needs no more");
        assert_eq!(p.target(101), 200);
        assert_eq!(p.target(950), 1000, "capped at the limit");
        assert_eq!(p.target(1500), 1500, "an oversized first record: no zeros");
        let off = Preallocation { chunk: 0, ..p };
        assert_eq!(off.target(123), 123);
    }
}
