//! `cargo bench -p flotilla-check`: the checker's wall time on generated 10 000-operation
//! histories and on porcupine's key/value histories. Prints; asserts nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use flotilla_check::{bench_report, check_kv, formats::parse_edn_kv};

fn main() {
    print!("{}", bench_report());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/kv");
    for name in ["c10-ok", "c10-bad", "c50-ok", "c50-bad"] {
        let path = dir.join(format!("{name}.txt"));
        let history = match std::fs::read_to_string(&path).map(|t| parse_edn_kv(&t)) {
            Ok(Ok(history)) => history,
            Ok(Err(e)) => return eprintln!("{}: {e}", path.display()),
            Err(e) => return eprintln!("{}: {e}", path.display()),
        };
        let start = Instant::now();
        let result = check_kv(&history, Some(Duration::from_secs(60)));
        let verdict = if result.is_ok() {
            "ok"
        } else if result.is_illegal() {
            "illegal"
        } else {
            "unknown"
        };
        println!(
            "  porcupine kv/{name:<8} {:>5} ops {:>9.1} ms  {verdict}",
            history.len(),
            start.elapsed().as_secs_f64() * 1e3
        );
    }
}
