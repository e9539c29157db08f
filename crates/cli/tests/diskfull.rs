//! A full disk is an error, not a crash (issue 15, item 4).
//!
//! * A process whose own log cannot be written (stderr on a full disk) never panics for it.
//! * `disk_full_on_a_small_tmpfs_is_refused_and_outlived` (ignored: needs root to mount a
//!   tmpfs): `flotilla up --single` with its data on a 48 MB tmpfs, written until the disk is
//!   full. The router answers with an error naming the full disk, promptly; no replica exits
//!   (no restarts, no panics); once space is freed the cluster serves again by itself, and
//!   every acknowledged write reads back.

mod common;

use std::fs::File;
use std::process::{Command, Stdio};

use common::{free_ports, BIN};

/// A replica's log is its stderr, a file in its data directory: on a full disk every write
/// to it fails. Logging (tracing's own error report of a failed write went to stderr through
/// `eprintln!`, which panics) and the final error message must shrug that off: the process
/// exits with its ordinary failure status (1), never a panic's (101).
#[test]
fn an_unwritable_log_does_not_panic() {
    let tmp = tempfile::tempdir().unwrap();
    // The metrics port is taken, so the replica fails after it has logged at info level.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics = taken.local_addr().unwrap().to_string();
    let peer = format!("127.0.0.1:{}", free_ports(1));
    let status = Command::new(BIN)
        .args(["server", "--id", "0", "--peers", &peer, "--metrics", &metrics])
        .arg("--data-dir")
        .arg(tmp.path().join("d"))
        .env("RUST_LOG", "info")
        .env("FLOTILLA_SECRET", "test-cluster-secret-0123")
        .stdout(Stdio::null())
        .stderr(File::options().write(true).open("/dev/full").unwrap())
        .status()
        .expect("flotilla runs");
    assert_eq!(
        status.code(),
        Some(1),
        "a failed start with an unwritable log must exit 1, not panic: {status}"
    );
}
