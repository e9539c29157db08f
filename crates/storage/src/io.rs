//! Every write and fsync of the crate goes through [`Files`], which asks an optional
//! [`FaultHook`] first: the seam that lets tests fail a chosen write or fsync (a full disk,
//! a failed writeback) or watch where writes land. Not compiled out: a hook costs one
//! `Option` check per system call, nothing when absent.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use crate::error::{io_err, StorageError};

/// A file operation about to be performed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOp<'a> {
    /// Creating a new file (a segment's or snapshot's `.tmp`).
    Create { path: &'a Path },
    /// A positioned write of `len` bytes at `offset`.
    Write {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
    /// `fdatasync` (`all: false`) or `fsync` (`all: true`) of a file.
    Sync { path: &'a Path, all: bool },
}

/// Decides whether a file operation fails, for tests. `Err` fails it with that error: a
/// `Create` or `Sync` is then not performed (a failed fsync whose error the kernel already
/// consumed: the pages may be lost); a `Write` writes the first half of its bytes before
/// failing, as a disk filling up mid-write does.
pub trait FaultHook: Send + Sync {
    fn check(&self, op: FileOp<'_>) -> io::Result<()>;
}

/// An optional [`FaultHook`], in [`crate::StorageOptions`]. Equal when both are absent or
/// are the same hook.
#[derive(Clone, Default)]
pub struct Faults(pub Option<Arc<dyn FaultHook>>);

impl Faults {
    pub fn new(hook: Arc<dyn FaultHook>) -> Self {
        Faults(Some(hook))
    }
}

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Faults(hook)"
        } else {
            "Faults(none)"
        })
    }
}

impl PartialEq for Faults {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Faults {}

/// The file operations that can fail by injection, each mapped to [`StorageError::Io`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Files {
    faults: Faults,
}

impl Files {
    pub(crate) fn new(faults: Faults) -> Self {
        Files { faults }
    }

    fn check(&self, op: FileOp<'_>) -> io::Result<()> {
        match &self.faults.0 {
            Some(hook) => hook.check(op),
            None => Ok(()),
        }
    }

    pub(crate) fn check_create(&self, path: &Path) -> Result<(), StorageError> {
        self.check(FileOp::Create { path })
            .map_err(io_err("create", path))
    }

    pub(crate) fn write_at(
        &self,
        file: &File,
        path: &Path,
        buf: &[u8],
        offset: u64,
    ) -> Result<(), StorageError> {
        let len = buf.len() as u64;
        if let Err(e) = self.check(FileOp::Write { path, offset, len }) {
            let half = &buf[..buf.len() / 2];
            let _ = file.write_all_at(half, offset); // the part a full disk still took
            return Err(io_err("write", path)(e));
        }
        file.write_all_at(buf, offset)
            .map_err(io_err("write", path))
    }

    pub(crate) fn sync_data(&self, file: &File, path: &Path) -> Result<(), StorageError> {
        self.check(FileOp::Sync { path, all: false })
            .and_then(|()| file.sync_data())
            .map_err(io_err("fsync", path))
    }

    pub(crate) fn sync_all(&self, file: &File, path: &Path) -> Result<(), StorageError> {
        self.check(FileOp::Sync { path, all: true })
            .and_then(|()| file.sync_all())
            .map_err(io_err("fsync", path))
    }
}
