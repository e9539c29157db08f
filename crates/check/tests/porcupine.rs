//! Cross-validation with porcupine: every history of its test suite (copied into tests/data,
//! see tests/data/README.md) must get the verdict porcupine's tests assert (expected.tsv).

use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_check::formats::{parse_edn_kv, parse_jepsen_etcd};
use flotilla_check::{check_kv, check_operations, CheckResult, RegisterModel};

/// Generous: the whole data set takes well under a second in release mode.
const TIMEOUT: Duration = Duration::from_secs(60);

fn data_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data"))
}

/// Checks one data file; `Err` if it cannot be read or parsed.
fn check_file(file: &str) -> Result<(CheckResult, usize), String> {
    let text =
        std::fs::read_to_string(data_dir().join(file)).map_err(|e| format!("{file}: {e}"))?;
    if file.starts_with("jepsen/") {
        let history = parse_jepsen_etcd(&text).map_err(|e| format!("{file}: {e}"))?;
        Ok((
            check_operations(&RegisterModel, &history, Some(TIMEOUT)),
            history.len(),
        ))
    } else {
        let history = parse_edn_kv(&text).map_err(|e| format!("{file}: {e}"))?;
        Ok((check_kv(&history, Some(TIMEOUT)), history.len()))
    }
}

fn verdict(result: &CheckResult) -> &'static str {
    match result {
        CheckResult::Ok => "linearizable",
        CheckResult::Illegal(_) => "NOT linearizable",
        CheckResult::Unknown => "unknown (timed out)",
    }
}

#[test]
fn every_porcupine_history_gets_porcupine_verdict() {
    let expected = std::fs::read_to_string(data_dir().join("expected.tsv")).expect("expected.tsv");
    let start = Instant::now();
    let (mut checked, mut ops, mut mismatches) = (0, 0, Vec::new());
    for line in expected.lines().filter(|l| !l.trim().is_empty()) {
        let (file, want) = line
            .split_once('\t')
            .expect("expected.tsv: file<TAB>verdict");
        let file_start = Instant::now();
        match check_file(file) {
            Ok((result, n)) => {
                ops += n;
                if verdict(&result) != want {
                    mismatches.push(format!("{file:<22} {want:<18} {:<20}", verdict(&result)));
                }
                if file == "kv/c50-bad.txt" {
                    println!("explanation for {file}:\n{result}");
                }
            }
            Err(e) => mismatches.push(format!("{file:<22} {want:<18} error: {e}")),
        }
        println!(
            "{file:<22} {want:<18} {:>8.2} ms",
            file_start.elapsed().as_secs_f64() * 1e3
        );
        checked += 1;
    }
    println!(
        "checked {checked} histories ({ops} operations) in {:.3} s",
        start.elapsed().as_secs_f64()
    );
    assert_eq!(
        checked, 108,
        "expected.tsv lists 102 Jepsen logs and 6 kv histories"
    );
    assert!(
        mismatches.is_empty(),
        "{} verdicts differ from porcupine's:\n{:<22} {:<18} got\n{}",
        mismatches.len(),
        "file",
        "expected",
        mismatches.join("\n")
    );
}
