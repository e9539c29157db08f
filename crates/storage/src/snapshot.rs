//! Snapshot files: `snapshot-<generation>.snap`, a header then the snapshot as one record;
//! and the spool that writes snapshots straight into the directory, as temporary files the
//! storage later installs by renaming them.
//!
//! A snapshot may be gigabytes, so nothing here holds one in memory: a snapshot is written
//! from a [`SnapshotData`] in chunks (its CRC computed along the way, the frame header
//! written last, into space reserved for it), verified at recovery by streaming through the
//! file, and handed back as a [`SnapshotFile`]: the open file, read with positioned reads.
//! An open file stays readable after it is renamed or unlinked, so a snapshot being sent to
//! a follower survives a newer one superseding it.
//!
//! A snapshot written through the spool ([`DiskSpool`]) is laid out as a snapshot file from
//! the start (payload at [`SNAPSHOT_PAYLOAD_AT`], its frame header written by `finish`), under
//! a temporary name; only the snapshot header, which names the generation, is missing. To
//! store it, the storage writes that header, fsyncs, and renames the file into place: no
//! copy of the payload ([`store_unless`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flotilla_node::SnapshotData;
use flotilla_snapshot::{SnapshotSource, SnapshotSpool, SnapshotWriter};

use crate::error::{io_err, Corruption, StorageError};
use crate::format::{
    check_snapshot_header, snapshot_header, snapshot_name, spool_name, FrameError,
    FRAME_HEADER_LEN, SNAPSHOT_HEADER_LEN, SNAPSHOT_PAYLOAD_AT, TEMP_SUFFIX,
};
use crate::fsutil::{create_atomically_unless, sync_dir, Filling, BACKGROUND_FLUSH};
use crate::io::Files;

/// Bytes read at a time when a snapshot is copied or verified: enough for large sequential
/// I/O, small next to any state worth streaming.
const COPY_CHUNK: usize = 1 << 20;

/// Stores `data` as the snapshot of `generation` durably, unless `cancel` is set meanwhile
/// (then nothing is left behind: `None`). Returns the generation of the snapshot file that
/// now holds it: `generation`, or `current` (the storage's current snapshot) when `data` is
/// that very file already, which the new generation then names instead.
///
/// A snapshot the storage's spool wrote is installed by renaming (see the module docs);
/// anything else is written to a temp file in chunks (fsynced, renamed, directory fsynced:
/// invariant F).
pub(crate) fn store_unless(
    files: &Files,
    dir: &Path,
    generation: u64,
    data: &SnapshotData,
    current: Option<u64>,
    cancel: &AtomicBool,
) -> Result<Option<u64>, StorageError> {
    if let Some(file) = own_file(dir, data) {
        match file.install(files, generation, current, cancel)? {
            Install::Done(g) => return Ok(Some(g)),
            Install::Cancelled => return Ok(None),
            Install::Copy => {}
        }
    }
    let written = write_unless(files, dir, generation, data, cancel)?;
    Ok(written.then_some(generation))
}

/// As [`store_unless`], never cancelled.
pub(crate) fn store(
    files: &Files,
    dir: &Path,
    generation: u64,
    data: &SnapshotData,
    current: Option<u64>,
) -> Result<u64, StorageError> {
    let never = AtomicBool::new(false);
    let stored = store_unless(files, dir, generation, data, current, &never)?;
    Ok(stored.expect("not cancelled"))
}

/// Undoes [`store_unless`] of `data` as `generation`, which no generation refers to (a
/// replacement that failed before its commit point, a background write cancelled): a spool
/// file installed by renaming is renamed back to its temporary name (its process may store
/// it again, and it must not be left under a name a later snapshot will take); anything else
/// is removed, best effort (the next open removes a snapshot no generation refers to).
pub(crate) fn discard(dir: &Path, generation: u64, data: &SnapshotData) {
    if own_file(dir, data).is_some_and(|f| f.uninstall(generation)) {
        return;
    }
    let name = snapshot_name(generation);
    let _ = fs::remove_file(dir.join(&name));
    let _ = fs::remove_file(dir.join(format!("{name}{TEMP_SUFFIX}")));
}

/// Writes `data` as `snapshot-<generation>.snap` through a temp file, in chunks, giving up
/// (nothing left behind, `false`) once `cancel` is set.
fn write_unless(
    files: &Files,
    dir: &Path,
    generation: u64,
    data: &SnapshotData,
    cancel: &AtomicBool,
) -> Result<bool, StorageError> {
    let len = data.len();
    let len32 = u32::try_from(len).map_err(|_| StorageError::TooLarge {
        what: "snapshot",
        len: usize::try_from(len).unwrap_or(usize::MAX),
    })?;
    let fill = |f: &mut Filling<'_>| -> Result<bool, StorageError> {
        if !f.append(&snapshot_header(generation))? {
            return Ok(false);
        }
        if len == 0 {
            return Ok(true); // frames carry at least one byte; see `read_verified`
        }
        // The frame header needs the payload's CRC: reserved now, written last.
        if !f.append(&[0; FRAME_HEADER_LEN])? {
            return Ok(false);
        }
        let mut crc = 0;
        match (data.in_memory(), data.source()) {
            (Some(bytes), _) => {
                for chunk in bytes.chunks(COPY_CHUNK) {
                    crc = crc32c::crc32c_append(crc, chunk);
                    if !f.append(chunk)? {
                        return Ok(false);
                    }
                }
            }
            (None, source) => {
                let source = source.expect("a snapshot not in memory has a source");
                let mut buf = vec![0; COPY_CHUNK.min(len as usize)];
                let mut at = 0;
                while at < len {
                    let n = (len - at).min(buf.len() as u64) as usize;
                    source
                        .read_exact_at(&mut buf[..n], at)
                        .map_err(|source| StorageError::Io {
                            op: "read the snapshot to store in",
                            path: dir.to_path_buf(),
                            source,
                        })?;
                    crc = crc32c::crc32c_append(crc, &buf[..n]);
                    if !f.append(&buf[..n])? {
                        return Ok(false);
                    }
                    at += n as u64;
                }
            }
        }
        f.patch(&frame_header(len32, crc), SNAPSHOT_HEADER_LEN as u64)?;
        Ok(true)
    };
    let file = create_atomically_unless(files, dir, &snapshot_name(generation), fill, cancel)?;
    Ok(file.is_some())
}

fn frame_header(len: u32, crc: u32) -> [u8; FRAME_HEADER_LEN] {
    let mut h = [0u8; FRAME_HEADER_LEN];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Opens and verifies the snapshot of `generation`, streaming its payload through the CRC
/// (never all of it in memory), and returns it backed by the open file. The file was
/// complete before any generation could refer to it, so every defect, a missing file
/// included, is corruption.
pub(crate) fn read_verified(dir: &Path, generation: u64) -> Result<SnapshotData, StorageError> {
    let path = dir.join(snapshot_name(generation));
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let reason = Corruption::SnapshotMissing;
            return Err(StorageError::corrupt(&path, 0, reason));
        }
        Err(e) => return Err(io_err("open", &path)(e)),
    };
    let size = file.metadata().map_err(io_err("stat", &path))?.len();
    let read_at = |buf: &mut [u8], offset: u64| {
        file.read_exact_at(buf, offset)
            .map_err(io_err("read", &path))
    };
    let mut header = [0u8; SNAPSHOT_HEADER_LEN];
    let have = size.min(SNAPSHOT_HEADER_LEN as u64) as usize;
    read_at(&mut header[..have], 0)?;
    check_snapshot_header(&header[..have], generation)
        .map_err(|r| StorageError::corrupt(&path, 0, r))?;
    // An empty snapshot is stored as a header only (frames carry at least one byte).
    if size == SNAPSHOT_HEADER_LEN as u64 {
        return Ok(SnapshotData::default());
    }
    let at = SNAPSHOT_HEADER_LEN as u64;
    let corrupt = |e| StorageError::corrupt(&path, at, Corruption::SnapshotFrame(e));
    if size < SNAPSHOT_PAYLOAD_AT {
        let available = (size - at) as usize;
        return Err(corrupt(FrameError::ShortHeader { available }));
    }
    let mut frame = [0u8; FRAME_HEADER_LEN];
    read_at(&mut frame, at)?;
    let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
    if len == 0 {
        return Err(corrupt(FrameError::ZeroLength));
    }
    let end = SNAPSHOT_PAYLOAD_AT + u64::from(len);
    if end > size {
        return Err(corrupt(FrameError::PastEnd { len }));
    }
    let mut buf = vec![0; COPY_CHUNK.min(len as usize)];
    let mut sum = 0;
    let mut pos = SNAPSHOT_PAYLOAD_AT;
    while pos < end {
        let n = (end - pos).min(buf.len() as u64) as usize;
        read_at(&mut buf[..n], pos)?;
        sum = crc32c::crc32c_append(sum, &buf[..n]);
        pos += n as u64;
    }
    if sum != crc {
        return Err(corrupt(FrameError::Checksum { len }));
    }
    if end != size {
        let reason = Corruption::SnapshotTrailingBytes { count: size - end };
        return Err(StorageError::corrupt(&path, end, reason));
    }
    Ok(SnapshotData::from_source(Arc::new(SnapshotFile {
        file,
        dir: dir.to_path_buf(),
        len: u64::from(len),
        temp: None,
        place: Mutex::new(Place::Installed(generation)),
    })))
}

/// A snapshot in a file of a storage directory, laid out as a snapshot file (payload at
/// [`SNAPSHOT_PAYLOAD_AT`]), read with positioned reads: one the storage recovered or
/// installed, or one its spool wrote, not yet installed.
#[derive(Debug)]
pub(crate) struct SnapshotFile {
    /// Open for reading (and for writing the header at install, for a spool file): the
    /// bytes stay readable through it whatever happens to the file's names.
    file: File,
    dir: PathBuf,
    /// The payload's length.
    len: u64,
    /// The temporary name the spool gave it (none for a snapshot recovered at open).
    temp: Option<PathBuf>,
    place: Mutex<Place>,
}

/// Under which name a [`SnapshotFile`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// Its temporary name: written by the spool, not installed.
    Temp,
    /// `snapshot-<generation>.snap`, holding that generation in its header.
    Installed(u64),
    /// Neither (an uninstall that could not rename it back removed it): readable through
    /// the open file only.
    Gone,
}

/// What [`SnapshotFile::install`] did.
enum Install {
    /// The file is `snapshot-<g>.snap`, durably.
    Done(u64),
    Cancelled,
    /// It cannot be installed by renaming: copy it.
    Copy,
}

impl SnapshotSource for SnapshotFile {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64);
        if end.is_none_or(|e| e > self.len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "read past the end of the snapshot",
            ));
        }
        self.file.read_exact_at(buf, SNAPSHOT_PAYLOAD_AT + offset)
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// `data`'s file, if it is a [`SnapshotFile`] of `dir`.
fn own_file<'a>(dir: &Path, data: &'a SnapshotData) -> Option<&'a SnapshotFile> {
    let source = data.source()?;
    let file = source.as_any().downcast_ref::<SnapshotFile>()?;
    (file.dir == dir).then_some(file)
}

impl SnapshotFile {
    /// Whether `path` is this file (its name was not removed or taken by another file).
    fn is_at(&self, path: &Path) -> bool {
        let (Ok(named), Ok(open)) = (fs::metadata(path), self.file.metadata()) else {
            return false;
        };
        (named.dev(), named.ino()) == (open.dev(), open.ino())
    }

    fn place(&self) -> std::sync::MutexGuard<'_, Place> {
        // Nothing panics while holding it; a poisoned lock still holds a valid place.
        self.place.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes this file `snapshot-<generation>.snap`: from its temporary name, by writing the
    /// header, fsyncing and renaming (then fsyncing the directory); or, if it is installed
    /// already as `generation` or as `current`, by leaving it there. A file staged twice
    /// (a replacement retried after a full disk, a snapshot the process hands back) is thus
    /// never renamed out from under the generation that names it; installed as another
    /// generation, it is copied instead (`Copy`).
    fn install(
        &self,
        files: &Files,
        generation: u64,
        current: Option<u64>,
        cancel: &AtomicBool,
    ) -> Result<Install, StorageError> {
        let mut place = self.place();
        match *place {
            Place::Installed(g) if g == generation || Some(g) == current => {
                if self.is_at(&self.dir.join(snapshot_name(g))) {
                    return Ok(Install::Done(g));
                }
                Ok(Install::Copy)
            }
            Place::Temp => {
                let Some(temp) = self.temp.as_deref().filter(|t| self.is_at(t)) else {
                    return Ok(Install::Copy);
                };
                files.write_at(&self.file, temp, &snapshot_header(generation), 0)?;
                files.sync_all(&self.file, temp)?;
                if cancel.load(Ordering::Relaxed) {
                    return Ok(Install::Cancelled); // still a temp file, as if never stored
                }
                let path = self.dir.join(snapshot_name(generation));
                fs::rename(temp, &path).map_err(io_err("rename into place", temp))?;
                *place = Place::Installed(generation);
                drop(place);
                sync_dir(&self.dir)?;
                Ok(Install::Done(generation))
            }
            Place::Installed(_) | Place::Gone => Ok(Install::Copy),
        }
    }

    /// Renames the file back to its temporary name if it is installed as `generation`;
    /// `false` if it is not.
    fn uninstall(&self, generation: u64) -> bool {
        let mut place = self.place();
        let path = self.dir.join(snapshot_name(generation));
        if *place != Place::Installed(generation) || !self.is_at(&path) {
            return false;
        }
        *place = match &self.temp {
            Some(temp) if fs::rename(&path, temp).is_ok() => Place::Temp,
            _ => {
                let _ = fs::remove_file(&path);
                Place::Gone
            }
        };
        true
    }
}

impl Drop for SnapshotFile {
    /// A spool file never installed is garbage once nothing refers to it.
    fn drop(&mut self) {
        if *self.place() == Place::Temp {
            if let Some(temp) = self.temp.as_deref().filter(|t| self.is_at(t)) {
                let _ = fs::remove_file(temp);
            }
        }
    }
}

/// Temporary snapshot files in a storage directory ([`crate::DiskStorage::spool`]).
#[derive(Debug)]
pub(crate) struct DiskSpool {
    pub dir: PathBuf,
    pub files: Files,
}

/// Makes spool file names unique within the process (`create_new` catches the rest: a file
/// left by an earlier process that no open removed yet).
static SPOOL_IDS: AtomicU64 = AtomicU64::new(0);

impl SnapshotSpool for DiskSpool {
    fn create(&self, size_hint: u64) -> io::Result<Box<dyn SnapshotWriter>> {
        if size_hint > u64::from(u32::MAX) {
            return Err(too_large(size_hint));
        }
        loop {
            let path = self
                .dir
                .join(spool_name(SPOOL_IDS.fetch_add(1, Ordering::Relaxed)));
            self.files.check_create(&path).map_err(into_io)?;
            let created = OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path);
            match created {
                Ok(file) => {
                    return Ok(Box::new(SpoolWriter {
                        file: Some(file),
                        path,
                        dir: self.dir.clone(),
                        files: self.files.clone(),
                        len: 0,
                        crc: 0,
                        flushed: 0,
                    }))
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

fn too_large(len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!(
            "a snapshot of {len} bytes does not fit the storage's format (at most {} bytes)",
            u32::MAX
        ),
    )
}

/// The error as the `io::Error` a writer returns, keeping its kind (a full disk stays one).
fn into_io(e: StorageError) -> io::Error {
    let kind = match &e {
        StorageError::Io { source, .. } => source.kind(),
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, e.to_string())
}

/// A snapshot being written to a spool file: its payload at [`SNAPSHOT_PAYLOAD_AT`], its
/// CRC computed as it goes.
struct SpoolWriter {
    /// `None` once finished (then the file belongs to the [`SnapshotFile`]).
    file: Option<File>,
    path: PathBuf,
    dir: PathBuf,
    files: Files,
    len: u64,
    crc: u32,
    /// Payload bytes before this were fdatasynced.
    flushed: u64,
}

impl Write for SpoolWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let file = self.file.as_ref().expect("not finished");
        let len = self.len + buf.len() as u64;
        if len > u64::from(u32::MAX) {
            return Err(too_large(len));
        }
        let at = SNAPSHOT_PAYLOAD_AT + self.len;
        self.files
            .write_at(file, &self.path, buf, at)
            .map_err(into_io)?;
        self.crc = crc32c::crc32c_append(self.crc, buf);
        self.len = len;
        // As for a background write (`BACKGROUND_FLUSH`): a gigabyte of dirty pages flushed
        // at the end would hold up the WAL's fdatasyncs on the same disk.
        if self.len - self.flushed >= BACKGROUND_FLUSH {
            self.files.sync_data(file, &self.path).map_err(into_io)?;
            self.flushed = self.len;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SnapshotWriter for SpoolWriter {
    /// Writes the frame header and fdatasyncs: the file is a complete snapshot file but for
    /// its header, which the storage writes when it installs it.
    fn finish(mut self: Box<Self>) -> io::Result<SnapshotData> {
        let file = self.file.as_ref().expect("not finished");
        if self.len > 0 {
            let header = frame_header(self.len as u32, self.crc);
            let at = SNAPSHOT_HEADER_LEN as u64;
            self.files
                .write_at(file, &self.path, &header, at)
                .map_err(into_io)?;
        }
        self.files.sync_data(file, &self.path).map_err(into_io)?;
        let file = self.file.take().expect("not finished");
        Ok(SnapshotData::from_source(Arc::new(SnapshotFile {
            file,
            dir: self.dir.clone(),
            len: self.len,
            temp: Some(self.path.clone()),
            place: Mutex::new(Place::Temp),
        })))
    }
}

impl Drop for SpoolWriter {
    /// An unfinished snapshot is discarded.
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.path);
        }
    }
}
