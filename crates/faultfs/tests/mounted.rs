//! faultfs mounted for real: what survives a power loss, through ordinary file calls.
//! Needs root and /dev/fuse (CI has both), so `#[ignore]`d: `.ci/run` runs them with
//! `--include-ignored` in its power-loss tier. Without /dev/fuse they skip, saying so.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use faultfs::{CrashMode, Mount, Options, Trip, PAGE};

/// A backing directory and a mount of it, in one temporary directory.
struct Fixture {
    _tmp: tempfile::TempDir,
    backing: PathBuf,
    mount: Mount,
}

impl Fixture {
    fn new(strict_names: bool) -> Option<Fixture> {
        if !faultfs::fuse_available() {
            eprintln!("SKIPPED: /dev/fuse is absent, so faultfs cannot be mounted here");
            return None;
        }
        let tmp = tempfile::tempdir().unwrap();
        let backing = tmp.path().join("backing");
        let mnt = tmp.path().join("mnt");
        fs::create_dir(&backing).unwrap();
        fs::create_dir(&mnt).unwrap();
        let mount = Mount::new(&backing, &mnt, Options { strict_names }).expect("mount");
        Some(Fixture {
            _tmp: tmp,
            backing,
            mount,
        })
    }

    fn at(&self, name: &str) -> PathBuf {
        self.mount.mountpoint().join(name)
    }
}

fn read(p: &Path) -> Vec<u8> {
    let mut v = Vec::new();
    File::open(p).unwrap().read_to_end(&mut v).unwrap();
    v
}

/// A file created and fsynced, with its directory fsynced: the baseline a crash returns to.
fn durable_file(fx: &Fixture, name: &str, content: &[u8]) -> File {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(fx.at(name))
        .unwrap();
    f.write_all(content).unwrap();
    f.sync_all().unwrap();
    File::open(fx.mount.mountpoint())
        .unwrap()
        .sync_all()
        .unwrap();
    f
}

#[test]
#[ignore = "mounts a FUSE file system: needs root and /dev/fuse; run by .ci/run's power-loss tier"]
fn unsynced_writes_are_lost_and_synced_ones_kept() {
    let Some(fx) = Fixture::new(false) else {
        return;
    };
    let f = durable_file(&fx, "a", b"synced");
    f.write_all_at(b" and not synced", 6).unwrap();
    assert_eq!(
        read(&fx.at("a")),
        b"synced and not synced",
        "reads see the cache"
    );
    assert_eq!(fs::metadata(fx.at("a")).unwrap().len(), 21);
    assert_eq!(
        fs::read(fx.backing.join("a")).unwrap(),
        b"synced",
        "nothing unsynced reached the backing file"
    );
    drop(f);
    let report = fx.mount.crash(CrashMode::Drop).unwrap();
    assert_eq!(report.files, 1, "{report}");
    assert_eq!(read(&fx.at("a")), b"synced");
    assert_eq!(fs::metadata(fx.at("a")).unwrap().len(), 6);

    // fdatasync counts too, through another handle of the same file.
    let f = OpenOptions::new().write(true).open(fx.at("a")).unwrap();
    f.write_all_at(b"SYNCED, again", 0).unwrap();
    File::open(fx.at("a")).unwrap().sync_data().unwrap();
    drop(f);
    fx.mount.crash(CrashMode::Drop).unwrap();
    assert_eq!(read(&fx.at("a")), b"SYNCED, again");
}

#[test]
#[ignore = "mounts a FUSE file system: needs root and /dev/fuse; run by .ci/run's power-loss tier"]
fn appends_truncation_and_rename_behave_like_a_file_system() {
    let Some(fx) = Fixture::new(false) else {
        return;
    };
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(fx.at("log"))
        .unwrap();
    for i in 0..100 {
        writeln!(log, "line {i}").unwrap();
    }
    let text = String::from_utf8(read(&fx.at("log"))).unwrap();
    assert_eq!(text.lines().count(), 100);
    assert!(text.ends_with("line 99\n"));
    log.sync_all().unwrap();

    // Truncate (unsynced), crash: the length comes back.
    let f = OpenOptions::new().write(true).open(fx.at("log")).unwrap();
    f.set_len(3).unwrap();
    assert_eq!(read(&fx.at("log")), b"lin");
    drop((f, log));
    fx.mount.crash(CrashMode::Drop).unwrap();
    assert_eq!(String::from_utf8(read(&fx.at("log"))).unwrap(), text);

    // Write a temp file, fsync, rename, fsync the directory: kept, under the new name.
    fs::create_dir(fx.at("d")).unwrap();
    let mut t = File::create(fx.at("d/x.tmp")).unwrap();
    t.write_all(b"complete").unwrap();
    t.sync_all().unwrap();
    fs::rename(fx.at("d/x.tmp"), fx.at("d/x")).unwrap();
    File::open(fx.at("d")).unwrap().sync_all().unwrap();
    let names: Vec<_> = fs::read_dir(fx.at("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["x"]);
    fx.mount.crash(CrashMode::Drop).unwrap();
    assert_eq!(read(&fx.at("d/x")), b"complete");
    fs::remove_file(fx.at("d/x")).unwrap();
    fs::remove_dir(fx.at("d")).unwrap();
    assert!(!fx.backing.join("d").exists());
}

#[test]
#[ignore = "mounts a FUSE file system: needs root and /dev/fuse; run by .ci/run's power-loss tier"]
fn strict_names_lose_what_the_directory_fsync_did_not_cover() {
    let Some(fx) = Fixture::new(true) else {
        return;
    };
    durable_file(&fx, "kept", b"1");
    let mut f = File::create(fx.at("unlisted")).unwrap();
    f.write_all(b"2").unwrap();
    f.sync_all().unwrap(); // the data, but not the name
    fs::create_dir(fx.at("newdir")).unwrap();
    fs::write(fx.at("newdir/inner"), b"3").unwrap();
    let report = fx.mount.crash(CrashMode::Drop).unwrap();
    let mut lost = report.names_lost.clone();
    lost.sort();
    assert_eq!(lost, [PathBuf::from("newdir"), PathBuf::from("unlisted")]);
    assert!(fx.at("kept").exists());
    assert!(!fx.at("unlisted").exists());
    assert!(!fx.at("newdir").exists());
}

#[test]
#[ignore = "mounts a FUSE file system: needs root and /dev/fuse; run by .ci/run's power-loss tier"]
fn torn_crash_keeps_some_unsynced_pages_whole_and_loses_the_others() {
    let Some(fx) = Fixture::new(false) else {
        return;
    };
    let pages = 64usize;
    let f = durable_file(&fx, "wal", &vec![b'o'; pages * PAGE as usize]);
    f.write_all_at(&vec![b'n'; pages * PAGE as usize], 0)
        .unwrap();
    drop(f);
    let report = fx.mount.crash(CrashMode::Torn { seed: 7 }).unwrap();
    assert_eq!(report.pages_kept + report.pages_lost, pages as u64);
    // With 64 fair coins, all-or-nothing would be a 2^-63 fluke: it is a bug.
    assert!(report.pages_kept > 0 && report.pages_lost > 0, "{report}");
    let after = read(&fx.at("wal"));
    assert_eq!(after.len(), pages * PAGE as usize);
    let mut kept = 0;
    for (i, page) in after.chunks(PAGE as usize).enumerate() {
        let (old, new) = (
            page.iter().all(|&b| b == b'o'),
            page.iter().all(|&b| b == b'n'),
        );
        assert!(
            old || new,
            "page {i} is neither the old one nor the new one"
        );
        kept += u64::from(new);
    }
    assert_eq!(kept, report.pages_kept);
}

#[test]
#[ignore = "mounts a FUSE file system: needs root and /dev/fuse; run by .ci/run's power-loss tier"]
fn a_trip_fires_at_the_matching_write_and_fails_it() {
    let Some(fx) = Fixture::new(false) else {
        return;
    };
    let (tx, rx) = std::sync::mpsc::channel();
    fx.mount.arm_trip(
        Trip {
            name_prefix: "snap".into(),
            name_suffix: ".tmp".into(),
            min_offset: 8192,
            min_len: 100,
            at_fsync: false,
        },
        move |p| tx.send(p.to_path_buf()).unwrap(),
    );
    let f = File::create(fx.at("snap-1.tmp")).unwrap();
    f.write_all_at(&[1; 8192], 0).unwrap();
    assert!(rx.try_recv().is_err(), "fired before the offset");
    f.write_all_at(&[1; 99], 8192).unwrap();
    assert!(
        rx.try_recv().is_err(),
        "fired for a write shorter than min_len"
    );
    let err = f.write_all_at(&[2; 100], 8192).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO));
    assert_eq!(rx.try_recv().unwrap(), fx.backing.join("snap-1.tmp"));
    assert_eq!(fx.mount.disarm(), [fx.backing.join("snap-1.tmp")]);
    // The tripping write is in the cache, unsynced: a crash takes it away.
    assert_eq!(read(&fx.at("snap-1.tmp"))[8192..], [2; 100]);
    fx.mount.crash(CrashMode::Drop).unwrap();
    assert_eq!(fs::metadata(fx.at("snap-1.tmp")).unwrap().len(), 0);
    // Once fired, a trip stays disarmed.
    f.write_all_at(&[3; 200], 0).unwrap();

    // At fsync: fires with the data unsynced, and the fsync fails.
    let (tx, rx) = std::sync::mpsc::channel();
    fx.mount.arm_trip(
        Trip {
            name_prefix: "wal".into(),
            min_len: 2 * PAGE as usize,
            at_fsync: true,
            ..Trip::default()
        },
        move |p| tx.send(p.to_path_buf()).unwrap(),
    );
    let w = File::create(fx.at("wal")).unwrap();
    w.write_all_at(b"one page", 0).unwrap();
    w.sync_data().unwrap();
    assert!(
        rx.try_recv().is_err(),
        "fired with less than min_len unsynced"
    );
    w.write_all_at(&[4; 2 * PAGE as usize], 100).unwrap();
    assert_eq!(w.sync_data().unwrap_err().raw_os_error(), Some(libc::EIO));
    assert_eq!(rx.try_recv().unwrap(), fx.backing.join("wal"));
    fx.mount.crash(CrashMode::Drop).unwrap();
    assert_eq!(read(&fx.at("wal")), b"one page");
}
