//! Durable small files and directories, for every file outside the WAL that a restart relies
//! on (a cluster's layout, its secret, configuration written by `up` or `ctl`).
//!
//! The rule these helpers keep: after a crash at any instant (a process killed, or the power
//! lost, which drops every write not yet fsynced), a file written with [`write_file`] holds
//! either its previous contents or its new contents, never a prefix, nothing, or garbage; and
//! a directory made with [`create_dir_all`] still exists once the call has returned. A plain
//! `std::fs::write` gives neither: after a power loss the file can be empty (its new length
//! reached the disk before its data), and a new file or directory whose parent was never
//! fsynced can vanish.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{io_err, StorageError};
use crate::format::TEMP_SUFFIX;
use crate::fsutil::sync_dir;

/// Replaces `path` with `contents`, all or nothing and durably: written to `path.tmp`
/// (created with permission bits `mode`, e.g. `0o600` for a secret), fsynced, renamed over
/// `path`, and the directory fsynced. A `path.tmp` left by an earlier crash is overwritten.
///
/// The parent directory must exist (see [`create_dir_all`]).
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), StorageError> {
    let dir = parent_of(path);
    let mut temp = path.as_os_str().to_owned();
    temp.push(TEMP_SUFFIX);
    let temp = PathBuf::from(temp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .map_err(io_err("create", &temp))?;
    // `mode` applies only to a new file: a temp file left behind by a crash keeps its own.
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(io_err("set permissions of", &temp))?;
    file.write_all(contents).map_err(io_err("write", &temp))?;
    file.sync_all().map_err(io_err("fsync", &temp))?;
    drop(file);
    fs::rename(&temp, path).map_err(io_err("rename into place", &temp))?;
    sync_dir(&dir)
}

/// Creates `dir` and every missing ancestor, fsyncing each new directory's parent so that
/// its name survives a power loss. Directories that already exist are left alone: their
/// names were made durable by whoever created them (or by this function).
pub fn create_dir_all(dir: &Path) -> Result<(), StorageError> {
    if dir.is_dir() {
        return Ok(());
    }
    // Missing directories, outermost first.
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d.to_path_buf());
        at = d.parent();
    }
    for d in missing.iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            // Made by someone else meanwhile: as good as ours.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(io_err("create directory", d)(e)),
        }
        sync_dir(&parent_of(d))?;
    }
    Ok(())
}

/// The directory holding `path` ("." for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ if path.components().next() == Some(Component::RootDir) => PathBuf::from("/"),
        _ => PathBuf::from("."),
    }
}

/// Opens `path` for reading, for callers that want one error type for the pair.
pub fn read_file(path: &Path) -> Result<Vec<u8>, StorageError> {
    let mut buf = Vec::new();
    use std::io::Read;
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(io_err("read", path))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn write_file_replaces_the_contents_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        write_file(&path, b"first", 0o644).unwrap();
        write_file(&path, b"second, longer", 0o644).unwrap();
        assert_eq!(read_file(&path).unwrap(), b"second, longer");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("cluster.json")]);
    }

    #[test]
    fn write_file_sets_the_mode_even_over_a_stale_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let stale = dir.path().join(format!("secret{TEMP_SUFFIX}"));
        fs::write(&stale, "half a secr").unwrap();
        fs::set_permissions(&stale, fs::Permissions::from_mode(0o666)).unwrap();
        write_file(&path, b"s3cret\n", 0o600).unwrap();
        assert_eq!(read_file(&path).unwrap(), b"s3cret\n");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!stale.exists());
    }

    #[test]
    fn create_dir_all_makes_every_missing_level() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a").join("b").join("c");
        create_dir_all(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_all(&deep).unwrap();
        // A file in the way is an error naming it, not a panic.
        let blocked = dir.path().join("file");
        fs::write(&blocked, "x").unwrap();
        let err = create_dir_all(&blocked.join("sub")).unwrap_err();
        assert!(err.to_string().contains("file"), "{err}");
    }

    #[test]
    fn a_bare_file_name_lives_in_the_current_directory() {
        assert_eq!(parent_of(Path::new("x")), PathBuf::from("."));
        assert_eq!(parent_of(Path::new("/x")), PathBuf::from("/"));
        assert_eq!(parent_of(Path::new("d/x")), PathBuf::from("d"));
    }
}
