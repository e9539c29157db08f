//! A worker's store of map output on local disk, which outlives the worker *process*.
//!
//! In the MapReduce paper a worker failure is a machine failure, and its local disk goes with
//! it. A crashed worker process is different: its disk is fine. So, as Hadoop's shuffle service
//! does, finished map output survives the process: workers on a host claim numbered slots under
//! a common root, each guarded by an OS file lock that the kernel releases when the process
//! dies, and a new worker that claims a dead worker's slot re-announces the map output it finds
//! there.
//!
//! Invariants:
//! 1. At most one live process uses a slot (the lock).
//! 2. A map task's output counts only once its `map-<m>.done` marker exists; the marker is
//!    written, atomically, after every bucket file. A crash mid-map leaves no marker.
//! 3. A slot belongs to one job (its `job` file); output of another job is wiped on adoption.

use std::fs::{self, File, TryLockError};
use std::path::{Path, PathBuf};

use crate::compute::{encode_bucket, KeyValue};
use crate::files::write_atomic;
use crate::MrError;

const LOCK: &str = ".lock";

pub struct MapStore {
    dir: PathBuf,
    /// Held for the process's lifetime; the OS drops the lock when the process dies.
    _lock: File,
}

impl MapStore {
    /// Claims the first free slot `slot-<k>` under `root`.
    pub fn claim(root: &Path) -> Result<Self, MrError> {
        for k in 0.. {
            if let Some(store) = Self::try_lock(&root.join(format!("slot-{k}")))? {
                return Ok(store);
            }
        }
        unreachable!("some slot is always free")
    }

    /// Uses exactly `dir`, failing if another worker holds it.
    pub fn at(dir: &Path) -> Result<Self, MrError> {
        Self::try_lock(dir)?.ok_or_else(|| {
            MrError::BadJob(format!("{} is in use by another worker", dir.display()))
        })
    }

    fn try_lock(dir: &Path) -> Result<Option<Self>, MrError> {
        fs::create_dir_all(dir)
            .map_err(|e| MrError::io(format!("cannot create {}", dir.display()), e))?;
        let path = dir.join(LOCK);
        let lock = File::create(&path)
            .map_err(|e| MrError::io(format!("cannot create {}", path.display()), e))?;
        match lock.try_lock() {
            Ok(()) => Ok(Some(MapStore {
                dir: dir.to_path_buf(),
                _lock: lock,
            })),
            Err(TryLockError::WouldBlock) => Ok(None),
            Err(TryLockError::Error(e)) => {
                Err(MrError::io(format!("cannot lock {}", path.display()), e))
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes this store belong to `job`: returns the map tasks whose output it already holds
    /// for that job, and wipes anything left from another job.
    pub fn adopt(&self, job: u64) -> Result<Vec<u32>, MrError> {
        let job_file = self.dir.join("job");
        if fs::read_to_string(&job_file)
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            == Some(job)
        {
            let mut maps: Vec<u32> = self
                .entries()?
                .filter_map(|name| {
                    name.strip_prefix("map-")?
                        .strip_suffix(".done")?
                        .parse()
                        .ok()
                })
                .collect();
            maps.sort_unstable();
            return Ok(maps);
        }
        self.clear()?;
        write_atomic(&job_file, job.to_string().as_bytes())?;
        Ok(Vec::new())
    }

    /// Stores one map task's buckets, then its completion marker.
    pub fn write_map(&self, map: u32, buckets: Vec<Vec<KeyValue>>) -> Result<(), MrError> {
        for (r, pairs) in buckets.into_iter().enumerate() {
            write_atomic(&self.bucket_path(map, r as u32), &encode_bucket(pairs))?;
        }
        write_atomic(&self.dir.join(format!("map-{map}.done")), b"")
    }

    pub fn bucket_path(&self, map: u32, reduce: u32) -> PathBuf {
        self.dir.join(format!("map-{map}-{reduce}"))
    }

    /// The job is over: removes the slot, and its parent if no other slot is left.
    pub fn remove(self) {
        let _ = fs::remove_dir_all(&self.dir);
        if let Some(root) = self.dir.parent() {
            let _ = fs::remove_dir(root); // fails, harmlessly, while other slots exist
        }
    }

    /// Removes everything but the lock.
    pub fn clear(&self) -> Result<(), MrError> {
        for name in self.entries()?.filter(|n| n != LOCK) {
            let p = self.dir.join(&name);
            let _ = if p.is_dir() {
                fs::remove_dir_all(&p)
            } else {
                fs::remove_file(&p)
            };
        }
        Ok(())
    }

    fn entries(&self) -> Result<impl Iterator<Item = String>, MrError> {
        let rd = fs::read_dir(&self.dir)
            .map_err(|e| MrError::io(format!("cannot list {}", self.dir.display()), e))?;
        Ok(rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_exclusive_and_reclaimed_after_release() {
        let root = tempfile::tempdir().unwrap();
        let a = MapStore::claim(root.path()).unwrap();
        let b = MapStore::claim(root.path()).unwrap();
        assert_ne!(a.dir(), b.dir());
        assert!(
            MapStore::at(a.dir()).is_err(),
            "a held slot cannot be taken"
        );
        let a_dir = a.dir().to_path_buf();
        drop(a); // as when the process dies
        assert_eq!(MapStore::claim(root.path()).unwrap().dir(), a_dir);
    }

    #[test]
    fn adoption_recovers_only_complete_maps_of_the_same_job() {
        let root = tempfile::tempdir().unwrap();
        let s = MapStore::claim(root.path()).unwrap();
        assert_eq!(s.adopt(7).unwrap(), Vec::<u32>::new());
        s.write_map(3, vec![vec![("a".into(), "1".into())], vec![]])
            .unwrap();
        s.write_map(1, vec![vec![], vec![]]).unwrap();
        // A map that crashed after one bucket: no marker.
        write_atomic(&s.bucket_path(5, 0), b"partial").unwrap();
        assert_eq!(s.adopt(7).unwrap(), vec![1, 3]);
        assert!(s.bucket_path(3, 0).exists());
        assert_eq!(
            s.adopt(8).unwrap(),
            Vec::<u32>::new(),
            "another job's output is not reused"
        );
        assert!(!s.bucket_path(3, 0).exists(), "and it is wiped");
        let dir = s.dir().to_path_buf();
        s.remove();
        assert!(
            !dir.exists() && !root.path().exists(),
            "a finished worker leaves nothing behind"
        );
    }
}
