//! The WAL segment appends go to, one page-aligned batch per sync, and the zeros
//! preallocated ahead of its batches.
//!
//! Why preallocate: a `write` that grows a file makes its `fdatasync` commit metadata too
//! (the size, and the extents delayed allocation assigns), which on ext4 is a journal
//! commit, on top of the data flush. Overwriting bytes that already exist, were written
//! (not merely `fallocate`d: see [`write_zeros_at`]) and are durable changes no metadata
//! `fdatasync` must flush, so it costs the data write and the cache flush only (2 KB append +
//! sync on ext4, `cargo bench -p flotilla-storage`: a median of ~85 µs instead of ~135-180 µs
//! with one writer, ~135 µs instead of ~220-240 µs with three on the same disk). So a
//! segment's file runs ahead of its batches with zeros, written and made durable a chunk at
//! a time, and batches are written into them with positioned writes.
//!
//! Format 2 keeps this: each batch still overwrites preallocated zeros (it starts on the
//! next page boundary instead of right after the previous batch, so it never rewrites the
//! page holding synced data). The price is space: a batch takes at least a page of the file,
//! so a 100-byte append synced alone uses 4 KiB of log (format 1: 108 bytes), and the zeros
//! written to preallocate cost as much per batch; the page written back per fdatasync is the
//! same one 4 KiB page either way (format 1's batch shared it with synced records).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::error::{io_err, StorageError};
use crate::format::{batch_header, page_align, segment_header, segment_name, BATCH_HEADER_LEN};
use crate::fsutil::{create_atomically, write_zeros_at};
use crate::io::Files;

/// How far a segment's file runs ahead of its batches (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Preallocation {
    /// Zeros are added this many bytes at a time, up to a multiple of it (then of a page);
    /// 0: only up to the end of the page a batch ends in.
    pub chunk: u64,
    /// [`crate::StorageOptions::segment_bytes`]: batches never go past it (but for a
    /// segment's first one), so neither do the zeros.
    pub limit: u64,
}

impl Preallocation {
    /// The file length to give a segment whose batches must reach `needed`, a page
    /// boundary: `needed` rounded up to a multiple of the chunk and of a page (so extensions
    /// write whole blocks and every file ends on a page), but not past `limit`; never less
    /// than `needed`.
    fn target(&self, needed: u64) -> u64 {
        if self.chunk == 0 {
            return needed;
        }
        let rounded = page_align(needed.div_ceil(self.chunk).saturating_mul(self.chunk));
        rounded.min(self.limit).max(needed)
    }
}

/// The open, last segment of the current generation.
///
/// Invariants (as long as no write or fsync has failed other than for lack of space; the
/// owner stops using it after such a failure):
/// - the file holds a valid header (and base record, in segment 0), then valid batches,
///   each starting at a page boundary, the last ending at `end`; then zeros up to
///   `file_len`, a page boundary; all of it durable;
/// - the next batch goes at `page_align(end)`: no write ever touches a page holding a byte
///   below `end`, so a torn write cannot damage what is durable.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Open for reading and writing; every write is positioned, the file offset is unused.
    file: File,
    /// For error messages and [`crate::WalTail`].
    path: PathBuf,
    /// The batch headers' checksums cover the generation, seq and offset.
    generation: u64,
    /// Its place in the sequence: the next segment is `seq + 1`.
    seq: u64,
    /// End of the last durable batch (or of the header and base record).
    end: u64,
    /// Whether it holds a base record or a batch: a segment takes at least one batch
    /// however large, but a segment with data is closed rather than overfilled.
    has_data: bool,
    /// The file's length, a page boundary, zeros from `end` on.
    file_len: u64,
    /// Set by [`Segment::close`]: trimmed and final; the next batch needs a new segment.
    closed: bool,
    prealloc: Preallocation,
    files: Files,
}

impl Segment {
    /// Creates segment `seq` of `generation` durably (see [`create_atomically`]), holding
    /// the header then `first`, an already framed base record, if any, then zeros to the
    /// next page boundary and the first preallocated chunk (made durable by the same fsync).
    pub(crate) fn create(
        files: &Files,
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
        let end = parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let file_len = prealloc.target(page_align(end));
        let file = create_atomically(files, dir, &name, &parts, file_len - end)?;
        Ok(Segment {
            file,
            path: dir.join(name),
            generation,
            seq,
            end,
            has_data: !first.is_empty(),
            file_len,
            closed: false,
            prealloc,
            files: files.clone(),
        })
    }

    /// Where the next batch starts.
    pub(crate) fn next_batch(&self) -> u64 {
        page_align(self.end)
    }

    /// Whether a batch of a `body_len`-byte body may go in this segment: within the
    /// segment size or, for a batch of one record, as the segment's first whatever its size
    /// (so a record larger than a segment still gets one).
    pub(crate) fn fits(&self, body_len: u64, one_record: bool) -> bool {
        let end = self.next_batch() + BATCH_HEADER_LEN as u64 + body_len;
        end <= self.prealloc.limit || (one_record && !self.has_data)
    }

    /// Writes one batch (header and `body`, its records) at the next page boundary and
    /// fdatasyncs it: durable when this returns. A batch that passes the end of the file
    /// first gets the zeros after it up to the next chunk (at least the end of its page)
    /// written, made durable by the same fdatasync, so the file grows once per chunk.
    ///
    /// `fdatasync` is enough: it flushes the data and the metadata needed to read it back,
    /// the file size included (Linux fdatasync(2)); the name was made durable when the
    /// segment was created. On an error nothing here changes: the next call writes the
    /// same place again, zeros included (after a failed fsync the kernel may have dropped
    /// those dirty pages, so everything is written anew from memory).
    pub(crate) fn write_batch(&mut self, body: &[u8]) -> Result<(), StorageError> {
        debug_assert!(
            !self.closed,
            "a batch written to closed {}",
            self.path.display()
        );
        let at = self.next_batch();
        let header = batch_header(self.generation, self.seq, at, body);
        let batch_end = at + (BATCH_HEADER_LEN + body.len()) as u64;
        let mut file_len = self.file_len;
        if page_align(batch_end) > self.file_len {
            file_len = self.prealloc.target(page_align(batch_end));
            let from = batch_end.max(self.file_len);
            write_zeros_at(&self.files, &self.file, &self.path, from, file_len - from)?;
        }
        let mut batch = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
        batch.extend_from_slice(&header);
        batch.extend_from_slice(body);
        self.files.write_at(&self.file, &self.path, &batch, at)?;
        self.files.sync_data(&self.file, &self.path)?;
        self.end = batch_end;
        self.file_len = file_len;
        self.has_data = true;
        Ok(())
    }

    /// Makes the segment final before its successor is created: cuts off the zeros after
    /// the end of its last batch's page and fsyncs (`sync_all`: the length is metadata). So
    /// a segment that is not the last ends where its batches do, but for the rest of the
    /// last page: the file is cut on a page boundary, so the cut writes no page holding
    /// data (a truncation inside a block zeroes the rest of that block, a rewrite).
    pub(crate) fn close(&mut self) -> Result<(), StorageError> {
        if self.closed {
            return Ok(());
        }
        let len = self.next_batch();
        if self.file_len > len {
            self.file
                .set_len(len)
                .map_err(io_err("truncate", &self.path))?;
            self.file_len = len;
        }
        self.files.sync_all(&self.file, &self.path)?;
        self.closed = true;
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn end(&self) -> u64 {
        self.end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_round_up_to_a_chunk_and_a_page_within_the_segment_limit() {
        let p = Preallocation {
            chunk: 100,
            limit: 1000,
        };
        assert_eq!(
            p.target(4096),
            4096,
            "capped at the limit, but not below what is needed"
        );
        let p = Preallocation {
            chunk: 6000,
            limit: 1 << 20,
        };
        assert_eq!(p.target(4096), 8192, "a chunk, then a page boundary");
        assert_eq!(p.target(8192), 12288);
        let p = Preallocation {
            chunk: 1 << 20,
            limit: 1 << 30,
        };
        assert_eq!(p.target(4096), 1 << 20);
        assert_eq!(p.target((1 << 20) + 4096), 2 << 20);
        let off = Preallocation { chunk: 0, ..p };
        assert_eq!(off.target(8192), 8192);
    }
}
