//! Prints append + sync throughput (not asserted): `cargo bench -p flotilla-storage`.
//! Runs in `target/tmp` (on the build's disk, not a tmpfs `/tmp`) unless
//! `FLOTILLA_BENCH_DIR` names another directory.

use std::path::PathBuf;

fn main() {
    let base = std::env::var_os("FLOTILLA_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    std::fs::create_dir_all(&base).expect("create the benchmark directory");
    let dir = tempfile::tempdir_in(&base).expect("create a temporary directory");
    print!("{}", flotilla_storage::bench_report(dir.path()));
}
