//! Issue 16, a measurement (ignored; run by hand with `--ignored --nocapture`, Linux only):
//! a replica's peak memory while it restores a large store from a snapshot kept in a file
//! (as the deployed storage keeps it), read pair by pair from `SnapshotData::reader`, against
//! reading the whole snapshot into memory first and decoding that (what `Replica::restore`
//! did, through `SnapshotData::to_bytes`). Each restore runs in a fresh process of this test
//! binary, so one's freed memory does not hide the other's. `FLOTILLA_RESTORE_MIB` sets the
//! state's size (default 256).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use flotilla_kv::{Kv, KvCommand};
use flotilla_raft::{SnapshotData, SnapshotSource};
use flotilla_rsm::{ApplyCtx, StateMachine};

const VALUE_BYTES: usize = 100_000;

/// A snapshot kept in a file, read with positioned reads.
#[derive(Debug)]
struct FileSource(File, u64);

impl SnapshotSource for FileSource {
    fn len(&self) -> u64 {
        self.1
    }
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Peak RSS of this process, in MiB.
fn peak_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib >> 10
}

#[test]
#[ignore = "a measurement: run by hand with --ignored --nocapture"]
// `.into()`: the store's values are becoming shared buffers (`bytes::Bytes`).
#[allow(clippy::useless_conversion)]
fn restore_memory() {
    let mib: usize = std::env::var("FLOTILLA_RESTORE_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let path = std::env::temp_dir().join(format!("flotilla-restore-{}.snap", std::process::id()));
    {
        let mut kv = Kv::default();
        for i in 0..(mib << 20) / VALUE_BYTES {
            let cmd = KvCommand::Put {
                key: format!("key-{i:08}").into_bytes(),
                value: vec![(i % 251) as u8; VALUE_BYTES].into(),
            };
            kv.apply(cmd, &ApplyCtx::zero());
        }
        let mut out = BufWriter::new(File::create(&path).unwrap());
        kv.snapshot_into(&mut out).unwrap();
        out.flush().unwrap();
    }
    let size = std::fs::metadata(&path).unwrap().len();
    println!("state: {} MiB, snapshot in a file", size >> 20);
    for mode in ["streamed", "whole"] {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "restore_memory_child",
                "--nocapture",
            ])
            .env("FLOTILLA_RESTORE_CHILD", mode)
            .env("FLOTILLA_RESTORE_FILE", &path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().find(|l| l.starts_with("restore"));
        println!("{}", line.unwrap_or("the child printed nothing"));
        assert!(out.status.success());
    }
    std::fs::remove_file(&path).unwrap();
}

/// One restore, in a process of its own (run by [`restore_memory`]).
#[test]
#[ignore = "run by restore_memory"]
fn restore_memory_child() {
    let (Ok(mode), Ok(path)) = (
        std::env::var("FLOTILLA_RESTORE_CHILD"),
        std::env::var("FLOTILLA_RESTORE_FILE"),
    ) else {
        return;
    };
    let file = File::open(path).unwrap();
    let len = file.metadata().unwrap().len();
    let data = SnapshotData::from_source(Arc::new(FileSource(file, len)));
    let before = peak_mib();
    let mut kv = Kv::default();
    if mode == "streamed" {
        kv.restore_from(&mut data.reader()).unwrap();
    } else {
        kv.restore(&data.to_bytes().unwrap()).unwrap();
    }
    println!(
        "restore {mode}: {} keys, peak RSS {} MiB (before: {before} MiB)",
        kv.len(),
        peak_mib()
    );
}
