//! The WAL segment appends go to.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{io_err, StorageError};
use crate::format::{segment_header, segment_name, SEGMENT_HEADER_LEN};
use crate::fsutil::create_atomically;

/// The open, last segment of the current generation.
///
/// Invariant: the file holds exactly `len` bytes, a valid header and whole valid records
/// (as long as no write has failed; the owner stops using it after a failure), and its first
/// `synced_len` bytes are durable.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Open for writing at the end of the file.
    file: File,
    /// For error messages and [`crate::WalTail`].
    path: PathBuf,
    /// Its place in the sequence: the next segment is `seq + 1`.
    seq: u64,
    /// Bytes written: where the next record starts.
    len: u64,
    /// Bytes covered by an fsync; `sync` is a no-op when it equals `len`.
    synced_len: u64,
    /// Appended records not yet handed to the kernel: a group commit writes the whole batch
    /// with one `write` in `sync`, instead of one system call per record. Counted in `len`.
    unwritten: Vec<u8>,
}

impl Segment {
    /// Creates segment `seq` of `generation` durably (see [`create_atomically`]), holding
    /// the header then `first`, an already framed record, if any.
    pub(crate) fn create(
        dir: &Path,
        generation: u64,
        seq: u64,
        first: &[&[u8]],
    ) -> Result<Segment, StorageError> {
        let name = segment_name(generation, seq);
        let header = segment_header(generation, seq);
        let parts: Vec<&[u8]> = std::iter::once(&header[..])
            .chain(first.iter().copied())
            .collect();
        let file = create_atomically(dir, &name, &parts)?;
        let len = (SEGMENT_HEADER_LEN + first.iter().map(|p| p.len()).sum::<usize>()) as u64;
        Ok(Segment {
            file,
            path: dir.join(name),
            seq,
            len,
            synced_len: len,
            unwritten: Vec::new(),
        })
    }

    /// Opens a recovered segment whose first `len` bytes are valid and durable (recovery
    /// truncated and fsynced anything after them).
    pub(crate) fn reopen(path: PathBuf, seq: u64, len: u64) -> Result<Segment, StorageError> {
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("open for appending", &path))?;
        Ok(Segment {
            file,
            path,
            seq,
            len,
            synced_len: len,
            unwritten: Vec::new(),
        })
    }

    /// Appends one framed record to the batch `sync` writes. Records of a batch reach the
    /// file in order, in one `write`: a crash tears at most the tail of the last batch, which
    /// recovery cuts off (nothing in it was acknowledged: acknowledgements follow `sync`).
    pub(crate) fn append(&mut self, frame: &[u8]) -> Result<(), StorageError> {
        self.unwritten.extend_from_slice(frame);
        self.len += frame.len() as u64;
        Ok(())
    }

    /// Hands the batch to the kernel (no fsync).
    fn write_out(&mut self) -> Result<(), StorageError> {
        if !self.unwritten.is_empty() {
            self.file
                .write_all(&self.unwritten)
                .map_err(io_err("append to", &self.path))?;
            self.unwritten.clear();
        }
        Ok(())
    }

    /// Makes every appended byte durable with `fdatasync`, which is enough here: it flushes
    /// the data and the metadata needed to read it back, the file size included (Linux
    /// fdatasync(2): "a change to the file size ... would require a metadata flush"); the
    /// name was made durable when the segment was created. Skipped when nothing is new.
    pub(crate) fn sync(&mut self) -> Result<(), StorageError> {
        self.write_out()?;
        if self.synced_len < self.len {
            self.file.sync_data().map_err(io_err("fsync", &self.path))?;
            self.synced_len = self.len;
        }
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
