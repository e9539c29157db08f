//! File-system steps with the durability each needs, named so the crash-safety argument in
//! the crate docs can point at them.

use std::fs::{self, File, OpenOptions};
use std::path::Path;

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
    let temp = dir.join(format!("{name}{TEMP_SUFFIX}"));
    let path = dir.join(name);
    let written = write_temp(files, &temp, parts, zero_tail).and_then(|file| {
        fs::rename(&temp, &path).map_err(io_err("rename into place", &temp))?;
        Ok(file)
    });
    let file = match written {
        Ok(file) => file,
        Err(e) => {
            let _ = fs::remove_file(&temp);
            return Err(e);
        }
    };
    sync_dir(dir)?;
    Ok(file)
}

/// Creates `temp` holding `parts` then `zero_tail` zeros, fsynced.
fn write_temp(
    files: &Files,
    temp: &Path,
    parts: &[&[u8]],
    zero_tail: u64,
) -> Result<File, StorageError> {
    files.check_create(temp)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(temp)
        .map_err(io_err("create", temp))?;
    let mut at = 0;
    for part in parts {
        files.write_at(&file, temp, part, at)?;
        at += part.len() as u64;
    }
    write_zeros_at(files, &file, temp, at, zero_tail)?;
    files.sync_all(&file, temp)?;
    Ok(file)
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
