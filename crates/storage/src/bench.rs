//! A throughput report of append + sync (group commit), for `benches/storage.rs` and the CLI.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_node::Save;

use crate::{DiskStorage, StorageError, StorageOptions};

/// Bytes of each record, about a small Raft entry with its framing.
const RECORD_BYTES: usize = 100;
/// Syncs per batch size: enough for a stable mean, few enough for a quick run on a disk.
const SYNCS: usize = 250;

/// Measures staging 100-byte appends and syncing every 1, 16 and 256 of them, in fresh
/// subdirectories of `dir` (removed afterwards), and returns one line per batch size. Put
/// `dir` on the disk to measure: on tmpfs an fsync costs nothing.
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
    out
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
