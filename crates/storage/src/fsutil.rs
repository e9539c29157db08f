//! File-system steps with the durability each needs, named so the crash-safety argument in
//! the crate docs can point at them.

use std::fs::{self, File, OpenOptions};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{io_err, StorageError};
use crate::format::TEMP_SUFFIX;
use crate::io::Files;

/// Makes `dir`'s entries (creations, renames, removals so far) durable: on Linux, fsync on a
/// directory is what persists a rename or a new name.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync directory", dir))
}

/// Creates `dir/name` holding `parts` concatenated, then `zero_tail` zero bytes, all or
/// nothing: written to `name.tmp`, fsynced (`sync_all`: data, size and allocation), renamed,
/// then the directory fsynced. Invariant it gives: a file under a final name is always
/// complete and durable, so readers may treat any damage in it as corruption, never as a
/// crash. The zero tail is a WAL segment's preallocated space (see [`crate::segment`]),
/// durable with the rest at the cost of the one fsync the file needs anyway.
///
/// Returns the file, open for reading and writing (the handle follows the rename). On a
/// failure up to the rename the `.tmp` is removed (best effort; the next open removes it
/// otherwise), so a disk that filled up is not kept full by a half-written file.
pub(crate) fn create_atomically(
    files: &Files,
    dir: &Path,
    name: &str,
    parts: &[&[u8]],
    zero_tail: u64,
) -> Result<File, StorageError> {
    let never = AtomicBool::new(false);
    let fill = |f: &mut Filling<'_>| {
        for part in parts {
            f.append(part)?;
        }
        f.zeros(zero_tail)?;
        Ok(true)
    };
    let file = write_atomically(files, dir, name, fill, &never, None)?;
    Ok(file.expect("not cancelled"))
}

/// As [`create_atomically`] (without a zero tail), for a large file written in the
/// background, whose bytes `fill` writes through a [`Filling`]: gives up (removing the
/// `.tmp`, returning `None`) once `cancel` is set, which is looked at between writes of at
/// most [`WRITE_CHUNK`] bytes (a newer state may make the file useless), or when `fill`
/// returns `false`; and fdatasyncs every [`BACKGROUND_FLUSH`] bytes, so that dirty pages never
/// pile up: a gigabyte of them, flushed at the end, made the WAL's own fdatasyncs (on the
/// same disk, and on ext4 through the same journal) wait behind them for hundreds of
/// milliseconds.
pub(crate) fn create_atomically_unless(
    files: &Files,
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut Filling<'_>) -> Result<bool, StorageError>,
    cancel: &AtomicBool,
) -> Result<Option<File>, StorageError> {
    write_atomically(files, dir, name, fill, cancel, Some(BACKGROUND_FLUSH))
}

/// Bytes a background write leaves dirty at most before it fdatasyncs them.
pub(crate) const BACKGROUND_FLUSH: u64 = 16 << 20;

fn write_atomically(
    files: &Files,
    dir: &Path,
    name: &str,
    fill: impl FnOnce(&mut Filling<'_>) -> Result<bool, StorageError>,
    cancel: &AtomicBool,
    flush_every: Option<u64>,
) -> Result<Option<File>, StorageError> {
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let path = dir.join(name);
    let written = write_temp(files, &temp, fill, cancel, flush_every).and_then(|file| {
        let Some(file) = file else { return Ok(None) };
        fs::rename(&temp, &path).map_err(io_err("rename into place", &temp))?;
        Ok(Some(file))
    });
    let file = match written {
        Ok(Some(file)) => file,
        Ok(None) => {
            let _ = fs::remove_file(&temp);
            return Ok(None);
        }
        Err(e) => {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
    };
    sync_dir(dir)?;
    Ok(Some(file))
}

/// Largest single write: a file of gigabytes is written in pieces, so that a cancellation
/// is noticed soon and a failing disk is found before all of it was handed to the kernel.
pub(crate) const WRITE_CHUNK: usize = 4 << 20;

/// A new file being written front to back (by [`create_atomically_unless`]'s `fill`).
pub(crate) struct Filling<'a> {
    files: &'a Files,
    file: &'a File,
    path: &'a Path,
    /// Where the next appended byte goes.
    at: u64,
    /// Bytes before this were fdatasynced.
    flushed: u64,
    cancel: &'a AtomicBool,
    flush_every: Option<u64>,
}

impl Filling<'_> {
    /// Appends `buf` in writes of at most [`WRITE_CHUNK`]; `false` (nothing more to write)
    /// once the write was cancelled.
    pub(crate) fn append(&mut self, buf: &[u8]) -> Result<bool, StorageError> {
        for chunk in buf.chunks(WRITE_CHUNK) {
            if self.cancel.load(Ordering::Relaxed) {
                return Ok(false);
            }
            self.files.write_at(self.file, self.path, chunk, self.at)?;
            self.at += chunk.len() as u64;
            if self
                .flush_every
                .is_some_and(|n| self.at - self.flushed >= n)
            {
                self.files.sync_data(self.file, self.path)?;
                self.flushed = self.at;
            }
        }
        Ok(true)
    }

    /// Overwrites bytes already appended (a header reserved before the bytes it describes
    /// were known). Made durable with the rest by the file's final fsync.
    pub(crate) fn patch(&mut self, buf: &[u8], offset: u64) -> Result<(), StorageError> {
        debug_assert!(
            offset + buf.len() as u64 <= self.at,
            "patching unwritten bytes"
        );
        self.files.write_at(self.file, self.path, buf, offset)
    }

    /// Appends `len` zero bytes.
    fn zeros(&mut self, len: u64) -> Result<(), StorageError> {
        write_zeros_at(self.files, self.file, self.path, self.at, len)?;
        self.at += len;
        Ok(())
    }
}

/// Creates `temp`, has `fill` write it, and fsyncs it; `None` if `fill` gave up or `cancel`
/// was set meanwhile. With `flush_every`, fdatasyncs each time that many bytes were appended
/// since the last time.
fn write_temp(
    files: &Files,
    temp: &Path,
    fill: impl FnOnce(&mut Filling<'_>) -> Result<bool, StorageError>,
    cancel: &AtomicBool,
    flush_every: Option<u64>,
) -> Result<Option<File>, StorageError> {
    files.check_create(temp)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(io_err("create", temp))?;
    let mut filling = Filling {
        files,
        file: &file,
        path: temp,
        at: 0,
        flushed: 0,
        cancel,
        flush_every,
    };
    if !fill(&mut filling)? || cancel.load(Ordering::Relaxed) {
        return Ok(None);
    }
    files.sync_all(&file, temp)?;
    Ok(Some(file))
}

/// Writes `len` zero bytes at `offset` (positioned writes: the file offset is not used).
/// Real zeros, not `fallocate`: a preallocated extent is "unwritten", and converting it on
/// the first write to it is a metadata change the journal must commit, which is what
/// preallocating is meant to take out of the per-batch fsync.
pub(crate) fn write_zeros_at(
    files: &Files,
    file: &File,
    path: &Path,
    mut offset: u64,
    len: u64,
) -> Result<(), StorageError> {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let end = offset + len;
    while offset < end {
        let n = (end - offset).min(ZEROS.len() as u64);
        files.write_at(file, path, &ZEROS[..n as usize], offset)?;
        offset += n;
    }
    Ok(())
}

pub(crate) fn read(path: &Path) -> Result<Vec<u8>, StorageError> {
    fs::read(path).map_err(io_err("read", path))
}

/// Removes a file that is no longer needed. Not fsynced: a removal lost in a crash leaves a
/// superseded file that the next open removes again.
pub(crate) fn remove(path: &Path) -> Result<(), StorageError> {
    fs::remove_file(path).map_err(io_err("remove", path))
}
