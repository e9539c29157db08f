//! The FUSE side: a pass-through over the backing directory whose file data goes through
//! [`FileCache`]s, and the state a power loss acts on.
//!
//! Every handler locks [`State`] for its whole run, so a crash (from another thread) sees
//! no operation half done. Entry and attribute TTLs are zero and every file is opened with
//! `FOPEN_DIRECT_IO`: the kernel caches nothing, so after a crash no reader can see a page
//! or a size from before it.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileType, Filesystem, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty,
    ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow,
};

use crate::cache::{FileCache, SplitMix64};
use crate::{CrashMode, CrashReport, Trip};

const TTL: Duration = Duration::ZERO;

/// One open file handle.
struct Handle {
    /// The backing file (read and write), valid even after the name is unlinked.
    file: Arc<File>,
    /// Opened with O_APPEND: writes go to the end as this file system sees it (the kernel's
    /// idea of the size can be stale, since attributes are not cached).
    append: bool,
}

/// A trip armed by the test: the hook runs at the first matching write.
pub(crate) struct Armed {
    pub trip: Trip,
    pub hook: Box<dyn FnOnce(&Path) + Send>,
}

/// Everything a crash acts on.
pub(crate) struct State {
    root: PathBuf,
    /// The backing root's inode number: FUSE's root is 1, so these two numbers swap.
    root_ino: u64,
    /// FUSE inode → backing path (the last name it was seen under).
    paths: HashMap<u64, PathBuf>,
    /// Unsynced data, by inode.
    caches: HashMap<u64, FileCache>,
    handles: HashMap<u64, Handle>,
    next_fh: u64,
    /// Names created since their directory's last fsync (only with `strict_names`); a
    /// crash removes them.
    new_names: BTreeSet<PathBuf>,
    strict_names: bool,
    pub(crate) armed: Option<Armed>,
    /// Files the last trip fired on.
    pub(crate) tripped: Vec<PathBuf>,
}

fn errno(e: &io::Error) -> i32 {
    e.raw_os_error().unwrap_or(libc::EIO)
}

fn time(secs: i64, nsecs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nsecs as u32)
    } else {
        UNIX_EPOCH
    }
}

impl State {
    pub(crate) fn new(root: PathBuf, strict_names: bool) -> io::Result<State> {
        let root_ino = fs::metadata(&root)?.ino();
        let mut paths = HashMap::new();
        paths.insert(fuser::FUSE_ROOT_ID, root.clone());
        Ok(State {
            root,
            root_ino,
            paths,
            caches: HashMap::new(),
            handles: HashMap::new(),
            next_fh: 1,
            new_names: BTreeSet::new(),
            strict_names,
            armed: None,
            tripped: Vec::new(),
        })
    }

    /// Backing inode number → FUSE's (a swap of the root's and 1).
    fn fuse_ino(&self, backing: u64) -> u64 {
        if backing == self.root_ino {
            fuser::FUSE_ROOT_ID
        } else if backing == fuser::FUSE_ROOT_ID {
            self.root_ino
        } else {
            backing
        }
    }

    fn path(&self, ino: u64) -> Result<PathBuf, i32> {
        self.paths.get(&ino).cloned().ok_or(libc::ENOENT)
    }

    fn child(&self, parent: u64, name: &OsStr) -> Result<PathBuf, i32> {
        Ok(self.path(parent)?.join(name))
    }

    fn attr(&self, meta: &fs::Metadata) -> FileAttr {
        let ino = self.fuse_ino(meta.ino());
        let kind = match meta.file_type() {
            t if t.is_dir() => FileType::Directory,
            t if t.is_symlink() => FileType::Symlink,
            _ => FileType::RegularFile,
        };
        let size = self.caches.get(&ino).map_or(meta.len(), |c| c.size());
        FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: time(meta.atime(), meta.atime_nsec()),
            mtime: time(meta.mtime(), meta.mtime_nsec()),
            ctime: time(meta.ctime(), meta.ctime_nsec()),
            crtime: UNIX_EPOCH,
            kind,
            perm: (meta.mode() & 0o7777) as u16,
            nlink: meta.nlink() as u32,
            uid: meta.uid(),
            gid: meta.gid(),
            rdev: meta.rdev() as u32,
            blksize: 4096,
            flags: 0,
        }
    }

    /// Stats `path` and remembers it as its inode's name.
    fn remember(&mut self, path: PathBuf) -> Result<FileAttr, i32> {
        let meta = fs::symlink_metadata(&path).map_err(|e| errno(&e))?;
        let attr = self.attr(&meta);
        self.paths.insert(attr.ino, path);
        Ok(attr)
    }

    fn created(&mut self, path: &Path) {
        if self.strict_names {
            self.new_names.insert(path.to_path_buf());
        }
    }

    /// The inode's cache, made over `file` (or the backing file by name) if it has none.
    fn cache(&mut self, ino: u64, file: Option<&File>) -> Result<&mut FileCache, i32> {
        if !self.caches.contains_key(&ino) {
            let f = match file {
                Some(f) => f.try_clone().map_err(|e| errno(&e))?,
                None => open_rw(&self.path(ino)?).map_err(|e| errno(&e))?,
            };
            let c = FileCache::new(f).map_err(|e| errno(&e))?;
            self.caches.insert(ino, c);
        }
        Ok(self.caches.get_mut(&ino).expect("inserted above"))
    }

    fn open_handle(&mut self, file: File, flags: i32) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        let append = flags & libc::O_APPEND != 0;
        let file = Arc::new(file);
        self.handles.insert(fh, Handle { file, append });
        fh
    }

    fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>, i32> {
        if let Some(c) = self.caches.get(&ino) {
            return c.read(offset, u64::from(size)).map_err(|e| errno(&e));
        }
        let h = self.handles.get(&fh).ok_or(libc::EBADF)?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match h.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(errno(&e)),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// A write; `Ok(None)` if it tripped the armed trip (the write is in the cache, and the
    /// hook has run).
    fn write(&mut self, ino: u64, fh: u64, offset: u64, data: &[u8]) -> Result<Option<u32>, i32> {
        let (file, append) = {
            let h = self.handles.get(&fh).ok_or(libc::EBADF)?;
            (h.file.clone(), h.append)
        };
        let cache = self.cache(ino, Some(&file))?;
        let at = if append { cache.size() } else { offset };
        cache.write(at, data).map_err(|e| errno(&e))?;
        if self.trips(ino, false, at, data.len()) {
            return Ok(None);
        }
        Ok(Some(data.len() as u32))
    }

    /// Whether a write of `len` bytes at `offset` to `ino` (or, `at_fsync`, an fsync of
    /// `ino` with `len` unsynced bytes) fires the armed trip; if so, fires it.
    fn trips(&mut self, ino: u64, at_fsync: bool, offset: u64, len: usize) -> bool {
        let Some(armed) = &self.armed else {
            return false;
        };
        let Some(path) = self.paths.get(&ino) else {
            return false;
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let t = &armed.trip;
        if t.at_fsync != at_fsync
            || offset < t.min_offset
            || len < t.min_len
            || !name.starts_with(&t.name_prefix)
            || !name.ends_with(&t.name_suffix)
        {
            return false;
        }
        let path = path.clone();
        let armed = self.armed.take().expect("checked above");
        (armed.hook)(&path);
        self.tripped.push(path);
        true
    }

    fn fsync(&mut self, ino: u64) -> Result<(), i32> {
        let dirty = self.caches.get(&ino).map_or(0, |c| c.dirty_pages());
        if self.trips(ino, true, 0, dirty * crate::PAGE as usize) {
            return Err(libc::EIO);
        }
        if let Some(c) = self.caches.get_mut(&ino) {
            c.sync().map_err(|e| errno(&e))?;
            self.caches.remove(&ino);
        }
        Ok(())
    }

    fn fsyncdir(&mut self, ino: u64) -> Result<(), i32> {
        let dir = self.path(ino)?;
        self.new_names.retain(|p| p.parent() != Some(dir.as_path()));
        Ok(())
    }

    fn set_len(&mut self, ino: u64, fh: Option<u64>, len: u64) -> Result<(), i32> {
        let file = fh
            .and_then(|fh| self.handles.get(&fh))
            .map(|h| h.file.clone());
        self.cache(ino, file.as_deref())?.set_len(len);
        Ok(())
    }

    /// A rename, keeping `new_names` honest: a new name moved to a name that did not exist
    /// is still new; moved over an existing name, the result is kept (the old file could
    /// not come back anyway: the model keeps renames).
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        let target_existed = fs::symlink_metadata(to).is_ok();
        fs::rename(from, to)?;
        let moved: Vec<PathBuf> = self
            .new_names
            .iter()
            .filter(|p| p.starts_with(from))
            .cloned()
            .collect();
        for p in moved {
            self.new_names.remove(&p);
            if p != from || !target_existed {
                let rest = p.strip_prefix(from).expect("filtered on the prefix");
                self.new_names.insert(to.join(rest));
            }
        }
        for p in self.paths.values_mut() {
            if p.starts_with(from) {
                let rest = p.strip_prefix(from).expect("checked").to_path_buf();
                *p = if rest.as_os_str().is_empty() {
                    to.to_path_buf()
                } else {
                    to.join(rest)
                };
            }
        }
        Ok(())
    }

    /// The power loss: every cache forgotten (or torn), every unsynced new name removed.
    pub(crate) fn crash(&mut self, mode: CrashMode) -> io::Result<CrashReport> {
        let mut report = CrashReport::default();
        let mut rng = match mode {
            CrashMode::Drop => None,
            CrashMode::Torn { seed } => Some(SplitMix64::new(seed)),
        };
        // Sorted so a seed gives the same outcome whatever the hash order.
        let mut caches: Vec<(u64, FileCache)> = self.caches.drain().collect();
        caches.sort_by_key(|(ino, _)| *ino);
        for (_, cache) in caches {
            report.files += 1;
            match &mut rng {
                None => report.pages_lost += cache.dirty_pages() as u64,
                Some(rng) => {
                    let torn = cache.tear(rng)?;
                    report.pages_kept += torn.kept;
                    report.pages_lost += torn.lost;
                }
            }
        }
        // Deepest first is not needed: removing a directory removes what is under it.
        for p in std::mem::take(&mut self.new_names) {
            let removed = match fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&p),
                Ok(_) => fs::remove_file(&p),
                Err(_) => continue,
            };
            match removed {
                Ok(()) => report
                    .names_lost
                    .push(p.strip_prefix(&self.root).unwrap_or(&p).into()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).open(path)
}

/// The file system handed to fuser; its state is shared with the [`crate::Mount`].
pub(crate) struct FaultFs(pub Arc<Mutex<State>>);

impl FaultFs {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one handler must not wedge the mount for the crash command.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Filesystem for FaultFs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.lock();
        match s.child(parent, name).and_then(|p| s.remember(p)) {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, fh: Option<u64>, reply: ReplyAttr) {
        let s = self.lock();
        let meta = match fh.and_then(|fh| s.handles.get(&fh)) {
            Some(h) => h.file.metadata(),
            None => match s.path(ino) {
                Ok(p) => fs::symlink_metadata(p),
                Err(e) => return reply.error(e),
            },
        };
        match meta {
            Ok(m) => reply.attr(&TTL, &s.attr(&m)),
            Err(e) => reply.error(errno(&e)),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut s = self.lock();
        let result = (|| -> Result<FileAttr, i32> {
            let path = s.path(ino)?;
            if let Some(mode) = mode {
                fs::set_permissions(&path, fs::Permissions::from_mode(mode & 0o7777))
                    .map_err(|e| errno(&e))?;
            }
            if uid.is_some() || gid.is_some() {
                std::os::unix::fs::lchown(&path, uid, gid).map_err(|e| errno(&e))?;
            }
            if let Some(size) = size {
                s.set_len(ino, fh, size)?;
            }
            if let Some(t) = mtime {
                let t = match t {
                    TimeOrNow::SpecificTime(t) => t,
                    TimeOrNow::Now => SystemTime::now(),
                };
                let f = File::open(&path).map_err(|e| errno(&e))?;
                f.set_modified(t).map_err(|e| errno(&e))?;
            }
            let meta = match fh.and_then(|fh| s.handles.get(&fh)) {
                Some(h) => h.file.metadata(),
                None => fs::symlink_metadata(&path),
            };
            Ok(s.attr(&meta.map_err(|e| errno(&e))?))
        })();
        match result {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        let s = self.lock();
        match s
            .path(ino)
            .and_then(|p| fs::read_link(p).map_err(|e| errno(&e)))
        {
            Ok(t) => reply.data(t.as_os_str().as_encoded_bytes()),
            Err(e) => reply.error(e),
        }
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let result = s.child(parent, name).and_then(|p| {
            fs::create_dir(&p).map_err(|e| errno(&e))?;
            let perm = fs::Permissions::from_mode(mode & !umask & 0o7777);
            fs::set_permissions(&p, perm).map_err(|e| errno(&e))?;
            s.created(&p);
            s.remember(p)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn symlink(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        link_name: &OsStr,
        target: &Path,
        reply: ReplyEntry,
    ) {
        let mut s = self.lock();
        let result = s.child(parent, link_name).and_then(|p| {
            std::os::unix::fs::symlink(target, &p).map_err(|e| errno(&e))?;
            s.created(&p);
            s.remember(p)
        });
        match result {
            Ok(attr) => reply.entry(&TTL, &attr, 0),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let result = s.child(parent, name).and_then(|p| {
            fs::remove_file(&p).map_err(|e| errno(&e))?;
            s.new_names.remove(&p);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        let mut s = self.lock();
        let result = s.child(parent, name).and_then(|p| {
            fs::remove_dir(&p).map_err(|e| errno(&e))?;
            s.new_names.remove(&p);
            Ok(())
        });
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        if flags != 0 {
            return reply.error(libc::EINVAL); // RENAME_NOREPLACE/EXCHANGE: unused here
        }
        let mut s = self.lock();
        let result = (|| {
            let from = s.child(parent, name)?;
            let to = s.child(newparent, newname)?;
            s.rename(&from, &to).map_err(|e| errno(&e))
        })();
        match result {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, flags: i32, reply: ReplyOpen) {
        let mut s = self.lock();
        let result = s.path(ino).and_then(|p| {
            // Always read-write underneath: the cache may have to write this file back
            // whatever the handle's mode (the process runs as root, or owns its files).
            let f = open_rw(&p)
                .or_else(|_| File::open(&p))
                .map_err(|e| errno(&e))?;
            if flags & libc::O_TRUNC != 0 {
                s.cache(ino, Some(&f))?.set_len(0);
            }
            Ok(s.open_handle(f, flags))
        });
        match result {
            Ok(fh) => reply.opened(fh, fuser::consts::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.lock();
        let result = s.child(parent, name).and_then(|p| {
            let existed = fs::symlink_metadata(&p).is_ok();
            let f = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .mode(mode & !umask & 0o7777)
                .open(&p)
                .map_err(|e| errno(&e))?;
            if !existed {
                s.created(&p);
            }
            let attr = s.remember(p)?;
            if flags & libc::O_TRUNC != 0 {
                s.cache(attr.ino, Some(&f))?.set_len(0);
            }
            Ok((attr, s.open_handle(f, flags)))
        });
        match result {
            Ok((attr, fh)) => reply.created(&TTL, &attr, 0, fh, fuser::consts::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let s = self.lock();
        match s.read(ino, fh, offset.max(0) as u64, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(e),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        let mut s = self.lock();
        match s.write(ino, fh, offset.max(0) as u64, data) {
            Ok(Some(n)) => reply.written(n),
            Ok(None) => reply.error(libc::EIO), // tripped: the writer is being killed
            Err(e) => reply.error(e),
        }
    }

    fn flush(&mut self, _req: &Request<'_>, _ino: u64, _fh: u64, _owner: u64, reply: ReplyEmpty) {
        reply.ok(); // close(2) promises no durability
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.lock().handles.remove(&fh);
        reply.ok();
    }

    fn fsync(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        match self.lock().fsync(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = self.lock();
        let dir = match s.path(ino) {
            Ok(d) => d,
            Err(e) => return reply.error(e),
        };
        let entries = match fs::read_dir(&dir) {
            Ok(rd) => rd.filter_map(Result::ok).collect::<Vec<_>>(),
            Err(e) => return reply.error(errno(&e)),
        };
        let mut all = vec![
            (ino, FileType::Directory, OsStr::new(".").to_os_string()),
            (ino, FileType::Directory, OsStr::new("..").to_os_string()),
        ];
        for e in entries {
            let Ok(meta) = e.metadata() else { continue };
            let attr = s.attr(&meta);
            s.paths.insert(attr.ino, e.path());
            all.push((attr.ino, attr.kind, e.file_name()));
        }
        for (i, (ino, kind, name)) in all.iter().enumerate().skip(offset.max(0) as usize) {
            if reply.add(*ino, (i + 1) as i64, *kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _ds: bool, reply: ReplyEmpty) {
        match self.lock().fsyncdir(ino) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: ReplyStatfs) {
        let root = self.lock().root.clone();
        match nix::sys::statvfs::statvfs(&root) {
            Ok(v) => reply.statfs(
                v.blocks(),
                v.blocks_free(),
                v.blocks_available(),
                v.files(),
                v.files_free(),
                v.block_size() as u32,
                v.name_max() as u32,
                v.fragment_size() as u32,
            ),
            Err(e) => reply.error(e as i32),
        }
    }

    fn access(&mut self, _req: &Request<'_>, _ino: u64, _mask: i32, reply: ReplyEmpty) {
        reply.ok();
    }

    /// Mode 0 only (allocate, growing the size): as an unsynced size change, in the cache.
    fn fallocate(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        fh: u64,
        offset: i64,
        length: i64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        if mode != 0 {
            return reply.error(libc::EOPNOTSUPP);
        }
        let mut s = self.lock();
        let file = s.handles.get(&fh).map(|h| h.file.clone());
        let end = (offset + length).max(0) as u64;
        match s.cache(ino, file.as_deref()) {
            Ok(c) if c.size() < end => {
                c.set_len(end);
                reply.ok()
            }
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}
