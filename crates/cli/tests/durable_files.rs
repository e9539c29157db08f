//! Every file a restart relies on is written with `flotilla_storage::durable` (temp file,
//! fsync, rename, directory fsync) or by the storage engine itself. A plain `fs::write` of
//! such a file left `cluster.json` and `secret` empty after a power loss and `flotilla up`
//! refusing to start; this scan keeps that from coming back unnoticed.
//!
//! It reads the production sources of the workspace (each file up to its `#[cfg(test)]`
//! module) and fails on any file-creating call outside the places listed below, each with
//! the reason it needs no durability.

use std::path::{Path, PathBuf};

/// Calls that create or replace a file or directory's contents without the durability
/// steps.
const FORBIDDEN: &[&str] = &[
    "fs::write(",
    "File::create(",
    "fs::create_dir_all(",
    "fs::create_dir(",
    "fs::rename(",
    ".create(true)",
    ".create_new(true)",
    "fs::copy(",
];

/// Where those calls are allowed, and why.
const ALLOWED: &[(&str, &str)] = &[
    // The durable helpers themselves, and the storage engine's own crash-safe steps (its
    // crash safety is argued in its crate docs and tested by its crash tests).
    (
        "crates/storage/src/",
        "the storage engine and its durable helpers",
    ),
    // Lab harness, benchmarks and the linearizability checker write test output and
    // reports, which nothing reads back after a crash.
    ("crates/scenarios/", "test scenarios"),
    ("crates/testkit/", "test harness"),
    ("crates/bench/", "benchmark reports"),
    ("crates/check/", "histories written for inspection"),
    // The power-loss test file system: it passes the calls of the processes under test to
    // its backing directory, whose own durability is beside the point.
    (
        "crates/faultfs/",
        "the simulated disk of the power-loss tier",
    ),
    // MapReduce keeps no state across a coordinator restart: a job is re-run whole; its
    // outputs are renamed into place only when complete (crates/mapreduce/src/files.rs).
    (
        "crates/mapreduce/",
        "job inputs and outputs, not restart state",
    ),
    // Supervisor logs are opened for appending; losing their tail loses no state.
    ("crates/cli/src/up.rs:self.log", "process logs"),
    // The data directory's lock file: its contents are never read, only its flock.
    ("crates/cli/src/storage.rs:lock_path", "the lock file"),
    // `mr gen-corpus` writes a benchmark corpus that is regenerated from its seed.
    ("crates/cli/src/mr", "generated corpora and job outputs"),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cli sits two levels below the workspace root")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `(file:line, text)` of every forbidden call in production code under `root/crates/*/src`.
fn forbidden_calls(root: &Path) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for krate in std::fs::read_dir(root.join("crates")).unwrap() {
        let src = krate.unwrap().path().join("src");
        if src.is_dir() {
            rust_files(&src, &mut files);
        }
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let rel = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        // A call is judged with the six lines either side of it: an `OpenOptions` chain
        // spans lines, and the path it opens may come after its `.create(true)`.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                break;
            }
            if line.trim_start().starts_with("//") {
                continue;
            }
            if FORBIDDEN.iter().any(|f| line.contains(f)) {
                let from = i.saturating_sub(6);
                let to = (i + 6).min(lines.len() - 1);
                let context = lines[from..=to].join("\n");
                found.push((format!("{rel}:{}", i + 1), context));
            }
        }
    }
    found
}

fn allowed(at: &str, context: &str) -> bool {
    ALLOWED
        .iter()
        .any(|(place, _why)| match place.split_once(':') {
            // `file:word`: allowed in that file when the call's context names `word`.
            Some((file, word)) => at.starts_with(file) && context.contains(word),
            None => at.starts_with(place),
        })
}

#[test]
fn files_a_restart_relies_on_are_written_durably() {
    let root = workspace_root();
    let found = forbidden_calls(&root);
    // The scan must see something, or it proves nothing: the storage engine's own
    // `OpenOptions::create(true)` calls are always there.
    assert!(
        found
            .iter()
            .any(|(at, _)| at.starts_with("crates/storage/")),
        "the scan found no file-creating call at all; is it reading the sources?"
    );
    let bad: Vec<_> = found
        .iter()
        .filter(|(at, context)| !allowed(at, context))
        .map(|(at, context)| format!("{at}:\n{context}"))
        .collect();
    assert!(
        bad.is_empty(),
        "files written without flotilla_storage::durable (temp file, fsync, rename, directory \
         fsync); use it, or add the place to ALLOWED with the reason it needs no durability:\n\n{}",
        bad.join("\n\n")
    );
}

#[test]
fn the_scan_catches_a_plain_write() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("crates").join("demo").join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(
        src.join("lib.rs"),
        "fn save(p: &Path) { std::fs::write(p, b\"{}\").unwrap(); }\n\
         #[cfg(test)]\nmod tests { fn t() { std::fs::write(\"x\", \"y\").unwrap(); } }\n",
    )
    .unwrap();
    let found = forbidden_calls(dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "crates/demo/src/lib.rs:1");
    assert!(!allowed(&found[0].0, &found[0].1));
}
