//! A throughput report of append + sync (group commit), and the latency of one ~2 KB append
//! + sync with preallocation on and off, for `benches/storage.rs` and the CLI.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_node::Save;

use crate::io::{FaultHook, Faults, FileOp};
use crate::{DiskStorage, StorageError, StorageOptions};

/// Bytes of each record, about a small Raft entry with its framing.
const RECORD_BYTES: usize = 100;
/// Syncs per batch size: enough for a stable mean, few enough for a quick run on a disk.
const SYNCS: usize = 250;

/// Payload of each append in the latency figures: about a Raft entry of a small write batch.
const LATENCY_RECORD_BYTES: usize = 2048;
/// Syncs per writer in the latency figures: a few preallocation chunk extensions each.
const LATENCY_SYNCS: usize = 3000;

/// Bytes of WAL the open-time figure recovers and rewrites.
const OPEN_WAL_BYTES: usize = 100 << 20;

/// Counts the bytes handed to `write` (a [`FaultHook`] that never fails).
#[derive(Default)]
struct CountWrites(AtomicU64);

impl FaultHook for CountWrites {
    fn check(&self, op: FileOp<'_>) -> std::io::Result<()> {
        if let FileOp::Write { len, .. } = op {
            self.0.fetch_add(len, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Measures staging 100-byte appends and syncing every 1, 16 and 256 of them, then the
/// latency of one 2 KB append + sync with preallocation off and on, by one writer and by
/// three at once (the replicas of a group sharing a disk), in fresh subdirectories of `dir`
/// (removed afterwards); returns one line per figure. Put `dir` on the disk to measure: on
/// tmpfs an fsync costs nothing.
pub fn bench_report(dir: &Path) -> String {
    let mut out = format!(
        "append + sync, {RECORD_BYTES}-byte records, {SYNCS} syncs per batch size, in {}\n",
        dir.display()
    );
    for batch in [1, 16, 256] {
        let sub = dir.join(format!("flotilla-storage-bench-{batch}"));
        let line = match measure(&sub, batch) {
            Ok(m) => m.describe(batch),
            Err(e) => format!("failed: {e}"),
        };
        let _ = fs::remove_dir_all(&sub); // best effort: a report, not a test
        let _ = writeln!(out, "batch {batch:>3}: {line}");
    }
    for chunk in [1 << 20, 0] {
        let sub = dir.join("flotilla-storage-bytes");
        let line = match bytes_per_batch(&sub, chunk) {
            Ok((written, used)) => {
                format!("{written:.0} B written, {used:.0} B of log file used per batch")
            }
            Err(e) => format!("failed: {e}"),
        };
        let _ = fs::remove_dir_all(&sub);
        let _ = writeln!(
            out,
            "one {RECORD_BYTES}-byte append per sync, prealloc {chunk:>7}: {line}"
        );
    }
    let sub = dir.join("flotilla-storage-open");
    let line = match open_time(&sub) {
        Ok((read, open)) => format!(
            "recovery read {:.0} ms (an open before the rewrite), open with rewrite {:.0} ms",
            read.as_secs_f64() * 1e3,
            open.as_secs_f64() * 1e3
        ),
        Err(e) => format!("failed: {e}"),
    };
    let _ = fs::remove_dir_all(&sub);
    let _ = writeln!(out, "open of {} MiB of WAL: {line}", OPEN_WAL_BYTES >> 20);
    let _ = writeln!(
        out,
        "append {LATENCY_RECORD_BYTES} B + sync, {LATENCY_SYNCS} syncs per writer \
         (extension: a sync that added a preallocation chunk)"
    );
    for writers in [1, 3] {
        for chunk in [0, 1 << 20, 4 << 20] {
            let opts = StorageOptions {
                preallocate_bytes: chunk,
                ..StorageOptions::default()
            };
            let sub = dir.join(format!("flotilla-storage-latency-{writers}-{chunk}"));
            let line = match latency(&sub, &opts, writers) {
                Ok(l) => l.describe(),
                Err(e) => format!("failed: {e}"),
            };
            let _ = fs::remove_dir_all(&sub);
            let prealloc = match chunk {
                0 => "off".to_string(),
                c => format!("{} MiB", c >> 20),
            };
            let _ = writeln!(out, "{writers} writer(s), prealloc {prealloc:>5}: {line}");
        }
    }
    out
}

/// Bytes handed to `write` per sync of one small append, and bytes of log file each one
/// takes (a batch a page, in format 2), over 1000 syncs.
fn bytes_per_batch(dir: &Path, chunk: u64) -> Result<(f64, f64), StorageError> {
    let _ = fs::remove_dir_all(dir);
    let counter = Arc::new(CountWrites::default());
    let opts = StorageOptions {
        preallocate_bytes: chunk,
        faults: Faults::new(counter.clone()),
        ..StorageOptions::default()
    };
    let (mut storage, _) = DiskStorage::open(dir, opts)?;
    let save = Save {
        state: vec![0x5a; RECORD_BYTES],
        snapshot: None,
        append: true,
        local_tail: None,
    };
    const N: u64 = 1000;
    let (start_bytes, start_end) = (
        counter.0.load(Ordering::Relaxed),
        storage.wal_tail().next_batch,
    );
    for _ in 0..N {
        storage.stage(&save)?;
        storage.sync()?;
    }
    let written = counter.0.load(Ordering::Relaxed) - start_bytes;
    let used = storage.wal_tail().next_batch - start_end;
    Ok((written as f64 / N as f64, used as f64 / N as f64))
}

/// Writes [`OPEN_WAL_BYTES`] of appends (1 MiB batches of 4 KiB records), then times the
/// recovery read alone (all an open did before it rewrote the state) and a whole open.
fn open_time(dir: &Path) -> Result<(Duration, Duration), StorageError> {
    let _ = fs::remove_dir_all(dir);
    let (mut storage, _) = DiskStorage::open(dir, StorageOptions::default())?;
    let save = Save {
        state: vec![0x5a; 4096],
        snapshot: None,
        append: true,
        local_tail: None,
    };
    for i in 0..OPEN_WAL_BYTES / 4096 {
        storage.stage(&save)?;
        if i % 256 == 255 {
            storage.sync()?;
        }
    }
    storage.sync()?;
    drop(storage);
    let start = Instant::now();
    let loaded = crate::recovery::load(dir)?;
    let read = start.elapsed();
    drop(loaded);
    let start = Instant::now();
    let (storage, recovered) = DiskStorage::open(dir, StorageOptions::default())?;
    let open = start.elapsed();
    assert_eq!(
        recovered.state.len(),
        OPEN_WAL_BYTES,
        "the benchmark's state"
    );
    drop(storage);
    Ok((read, open))
}

/// Every sync of a latency run: (time spent in `sync`, whether it grew the file).
struct Latency(Vec<(Duration, bool)>);

impl Latency {
    fn describe(&self) -> String {
        let us = |d: Duration| d.as_secs_f64() * 1e6;
        let mean = |v: &[Duration]| v.iter().sum::<Duration>() / v.len().max(1) as u32;
        let pick = |grew: bool| {
            let mut v: Vec<Duration> = self.0.iter().filter(|s| s.1 == grew).map(|s| s.0).collect();
            v.sort();
            v
        };
        let all: Vec<Duration> = self.0.iter().map(|s| s.0).collect();
        let grew = pick(true);
        // Without preallocation every sync grows the file: then "others" are all of them.
        let extensions = grew.len() < self.0.len() / 2;
        let mut others = if extensions { pick(false) } else { all.clone() };
        others.sort();
        let mut line = format!(
            "mean {:>5.0} us, p50 {:>5.0} us, p99 {:>5.0} us (other syncs)",
            us(mean(&all)),
            us(others[others.len() / 2]),
            us(others[others.len() * 99 / 100]),
        );
        if extensions && !grew.is_empty() {
            let _ = write!(
                line,
                "; {} extensions mean {:>5.0} us max {:>5.0} us",
                grew.len(),
                us(mean(&grew)),
                us(grew[grew.len() - 1]),
            );
        }
        line
    }
}

/// `writers` storages in subdirectories of `dir`, each appending and syncing one record at
/// a time, all at once.
fn latency(dir: &Path, opts: &StorageOptions, writers: usize) -> Result<Latency, StorageError> {
    let _ = fs::remove_dir_all(dir);
    let mut storages = Vec::new();
    for w in 0..writers {
        storages.push(DiskStorage::open(&dir.join(w.to_string()), opts.clone())?.0);
    }
    let save = Save {
        state: vec![0x5a; LATENCY_RECORD_BYTES],
        snapshot: None,
        append: true,
        local_tail: None,
    };
    let runs = std::thread::scope(|scope| {
        let handles: Vec<_> = storages
            .iter_mut()
            .map(|storage| scope.spawn(|| one_writer(storage, &save, opts.preallocate_bytes)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a benchmark writer panicked"))
            .collect::<Vec<_>>()
    });
    let mut syncs = Vec::new();
    for run in runs {
        syncs.extend(run?);
    }
    Ok(Latency(syncs))
}

/// Appends and syncs one record at a time. Which syncs grow the file is worked out from
/// the record count and the chunk, not asked of the file system: a `stat` per sync was
/// measured to add ~20 us to the next fsync.
fn one_writer(
    storage: &mut DiskStorage,
    save: &Save,
    chunk: u64,
) -> Result<Vec<(Duration, bool)>, StorageError> {
    let path = storage.wal_tail().path;
    let file_len = || fs::metadata(&path).map_or(0, |m| m.len());
    let mut end = file_len();
    let mut syncs = Vec::with_capacity(LATENCY_SYNCS);
    for _ in 0..LATENCY_SYNCS {
        let at = storage.wal_tail().next_batch;
        storage.stage(save)?;
        // Batch header, record length, payload; the file then runs to a page boundary.
        let written = (at + 16 + 4 + save.state.len() as u64).div_ceil(4096) * 4096;
        let grows = written > end;
        if grows {
            end = if chunk == 0 {
                written
            } else {
                (written.div_ceil(chunk) * chunk).div_ceil(4096) * 4096
            };
        }
        let start = Instant::now();
        storage.sync()?;
        syncs.push((start.elapsed(), grows));
    }
    assert_eq!(file_len(), end, "the benchmark's model of preallocation");
    Ok(syncs)
}

/// One batch size's figures.
struct Measurement {
    records: usize,
    elapsed: Duration,
    /// One entry per sync, sorted.
    fsyncs: Vec<Duration>,
}

impl Measurement {
    fn describe(&self, batch: usize) -> String {
        let secs = self.elapsed.as_secs_f64();
        let mean = self.fsyncs.iter().sum::<Duration>() / self.fsyncs.len() as u32;
        let p99 = self.fsyncs[self.fsyncs.len() * 99 / 100];
        format!(
            "{:>9.0} records/s {:>7.2} MB/s {:>7.0} syncs/s, fsync mean {:>6.0} us p99 {:>6.0} us",
            self.records as f64 / secs,
            (self.records * RECORD_BYTES) as f64 / secs / 1e6,
            (self.records / batch) as f64 / secs,
            mean.as_secs_f64() * 1e6,
            p99.as_secs_f64() * 1e6,
        )
    }
}

fn measure(dir: &Path, batch: usize) -> Result<Measurement, StorageError> {
    let _ = fs::remove_dir_all(dir); // a left-over of an interrupted run
    let (mut storage, _) = DiskStorage::open(dir, StorageOptions::default())?;
    let save = Save {
        state: vec![0x5a; RECORD_BYTES],
        snapshot: None,
        append: true,
        local_tail: None,
    };
    let mut fsyncs = Vec::with_capacity(SYNCS);
    let start = Instant::now();
    for _ in 0..SYNCS {
        for _ in 0..batch {
            storage.stage(&save)?;
        }
        fsyncs.push(storage.sync()?.fsync);
    }
    let elapsed = start.elapsed();
    fsyncs.sort();
    Ok(Measurement {
        records: SYNCS * batch,
        elapsed,
        fsyncs,
    })
}
