//! `flotilla mr bench`: word-count throughput of the sequential reference, of MapReduce with 1
//! and 2 worker processes, and the per-core ceiling of tokenize + count. Figures are printed,
//! never asserted. Shared virtual machines are noisy (the same loop varies 2x run to run), so
//! each figure is the best of `repeat` runs, with every run printed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use flotilla_mr::apps::{count_words, WordCount};
use flotilla_mr::{coordinator, corpus, files::read_input, sequential, Registry};

use super::local::{run_local, Display};

pub fn run(size: u64, files: usize, dir: &Path, repeat: usize) -> Result<(), String> {
    if files == 0 || size == 0 || repeat == 0 {
        return Err("--files, --size and --repeat must be positive".into());
    }
    let inputs = ensure_corpus(dir, files, size)?;
    let total: u64 = inputs
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    let mb = total as f64 / 1e6;
    println!(
        "corpus: {} files, {mb:.0} MB in {}",
        inputs.len(),
        dir.display()
    );

    let texts: Vec<String> = inputs
        .iter()
        .map(|p| read_input(p).map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let ceiling = best(
        "per-core ceiling (tokenize + count, in memory, 1 thread)",
        repeat,
        || ceiling_mbps(&texts),
    )?;
    drop(texts);

    let out = tempfile::tempdir().map_err(|e| e.to_string())?;
    best(
        "mr sequential (read + map + sort + reduce, 1 thread)",
        1,
        || {
            let t0 = Instant::now();
            sequential::run_sequential(&WordCount, &inputs, &out.path().join("seq-out"))
                .map_err(|e| e.to_string())?;
            Ok(mb / t0.elapsed().as_secs_f64())
        },
    )?;

    let mut per_worker = Vec::new();
    for workers in [1usize, 2] {
        let label = format!("mr run, {workers} worker process(es) over TCP");
        let mbps = best(&label, repeat, || {
            let spec = coordinator::prepare_job(
                "wc",
                &inputs,
                10,
                Duration::from_secs(60),
                &Registry::builtin(),
            )
            .map_err(|e| e.to_string())?;
            let t0 = Instant::now();
            run_local(
                spec,
                workers,
                &out.path().join(format!("w{workers}")),
                Display::Quiet,
            )?;
            Ok(mb / t0.elapsed().as_secs_f64())
        })?;
        println!(
            "    = {:.0}% of ceiling x {workers}",
            100.0 * mbps / (ceiling * workers as f64)
        );
        per_worker.push(mbps);
    }
    println!(
        "speed-up 2 workers / 1 worker: {:.2}x (target >= 1.7x); 2 workers at {:.0}% of 2 x ceiling (target >= 60%)",
        per_worker[1] / per_worker[0],
        100.0 * per_worker[1] / (2.0 * ceiling)
    );
    Ok(())
}

/// Runs `measure` `repeat` times, prints every figure and the best, returns the best.
fn best(
    label: &str,
    repeat: usize,
    mut measure: impl FnMut() -> Result<f64, String>,
) -> Result<f64, String> {
    let mut runs = Vec::new();
    for _ in 0..repeat {
        runs.push(measure()?);
    }
    let top = runs.iter().copied().fold(f64::MIN, f64::max);
    let all: Vec<String> = runs.iter().map(|r| format!("{r:.1}")).collect();
    println!("{label:<58} {top:8.1} MB/s  (runs: {})", all.join(", "));
    Ok(top)
}

/// Reuses `dir` if it holds the corpus asked for, else generates it.
fn ensure_corpus(dir: &Path, files: usize, size: u64) -> Result<Vec<PathBuf>, String> {
    let per_file = size / files as u64;
    let expected: Vec<PathBuf> = (0..files)
        .map(|k| dir.join(format!("bench-{k:02}.txt")))
        .collect();
    let fits = expected.iter().all(|p| {
        std::fs::metadata(p).is_ok_and(|m| m.len() >= per_file && m.len() < per_file + 200)
    });
    if fits {
        return Ok(expected);
    }
    let _ = std::fs::remove_dir_all(dir);
    let t0 = Instant::now();
    let paths = corpus::generate(dir, "bench", files, per_file, 2026).map_err(|e| e.to_string())?;
    println!(
        "generated {} MB of corpus in {:.1} s",
        size / 1_000_000,
        t0.elapsed().as_secs_f64()
    );
    Ok(paths)
}

/// Tokenize + count throughput of one core over texts already in memory.
fn ceiling_mbps(texts: &[String]) -> Result<f64, String> {
    let bytes: usize = texts.iter().map(String::len).sum();
    let t0 = Instant::now();
    let distinct: usize = texts.iter().map(|t| count_words(t).len()).sum();
    let secs = t0.elapsed().as_secs_f64();
    std::hint::black_box(distinct);
    Ok(bytes as f64 / 1e6 / secs)
}
