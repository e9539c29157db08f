//! `flotilla-lab check`: the linearizability checker over history files.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use flotilla_check::CheckResult;

#[derive(clap::Args)]
pub struct CheckArgs {
    /// History files, one operation a line.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Give up on a file after this many seconds (the verdict is then "unknown").
    #[arg(long, default_value_t = 60)]
    timeout: u64,
}

/// Checks each history file; fails if any is not linearizable or cannot be read.
pub fn run(args: CheckArgs) -> Result<(), String> {
    let CheckArgs { files, timeout } = args;
    let mut bad = 0;
    for f in &files {
        let history = flotilla_check::read_jsonl(f)
            .map_err(|e| format!("cannot read {}: {e}", f.display()))?;
        let t0 = Instant::now();
        let verdict = flotilla_check::check_kv(&history, Some(Duration::from_secs(timeout)));
        let took = t0.elapsed().as_secs_f64();
        let ops = history.len();
        match verdict {
            CheckResult::Ok => println!(
                "{}: linearizable ({ops} operations, {took:.3} s)",
                f.display()
            ),
            CheckResult::Unknown => println!(
                "{}: unknown: no verdict within {timeout} s ({ops} operations)",
                f.display()
            ),
            illegal => {
                bad += 1;
                println!(
                    "{}: NOT linearizable ({ops} operations)\n{illegal}",
                    f.display()
                );
            }
        }
    }
    if bad > 0 {
        Err(format!(
            "{bad} of {} histories are not linearizable",
            files.len()
        ))
    } else {
        Ok(())
    }
}
