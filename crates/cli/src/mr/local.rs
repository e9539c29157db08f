//! A whole MapReduce job on this machine: an in-process coordinator and worker processes of
//! this binary, with progress shown as bars or lines (`mr run`, `mr bench`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flotilla_mr::coordinator::{self, Coordinator, JobSpec, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::net::TcpListener;

/// The MapReduce roles' runtime: multi-threaded, unlike the cluster processes' one-thread
/// runtime (see `process.rs`).
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// How `run_local` shows progress.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Display {
    /// Progress bars (a terminal).
    Bars,
    /// A log line whenever a task completes.
    Lines,
    /// Nothing (benchmarks).
    Quiet,
}

/// Runs a job with an in-process coordinator and `workers` worker processes of this binary,
/// restarting any worker that dies before the job is done. Returns a one-line summary.
pub fn run_local(
    spec: JobSpec,
    workers: usize,
    output_dir: &Path,
    mode: Display,
) -> Result<String, String> {
    let rt = runtime()?;
    let started = Instant::now();
    let total_bytes: u64 = spec.inputs.iter().map(|i| i.size).sum();
    let state = Arc::new(Mutex::new(Coordinator::new(spec)));
    let listener = rt
        .block_on(TcpListener::bind("127.0.0.1:0"))
        .map_err(|e| format!("cannot listen: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| e.to_string())?
        .to_string();
    let server = rt.spawn(coordinator::serve(
        listener,
        state.clone(),
        output_dir.to_path_buf(),
        Duration::from_millis(500),
    ));
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let spawn = || -> Result<Child, String> {
        Command::new(&exe)
            .args(["mr", "worker", "--coordinator", &addr])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start a worker process: {e}"))
    };
    let mut children: Vec<Child> = (0..workers).map(|_| spawn()).collect::<Result<_, _>>()?;
    let mut display = ProgressDisplay::new(mode);
    let mut restarts = 0;
    // When the last output file was written (the coordinator then lingers briefly).
    let mut finished: Option<Duration> = None;
    while !server.is_finished() {
        std::thread::sleep(Duration::from_millis(20));
        let progress = state.lock().expect("coordinator lock").progress();
        display.update(&progress, started.elapsed());
        if progress.reduces_done == progress.reduces_total {
            finished.get_or_insert(started.elapsed());
            continue;
        }
        for child in children.iter_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                restarts += 1;
                display.note(&format!(
                    "worker {} exited ({status}) before the job was done; starting another",
                    child.id()
                ));
                *child = spawn()?;
            }
        }
    }
    rt.block_on(server)
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    display.finish();
    for mut c in children {
        let _ = c.wait();
    }
    let p = state.lock().expect("coordinator lock").progress();
    let secs = finished.unwrap_or(started.elapsed()).as_secs_f64();
    Ok(format!(
        "done in {secs:.2} s: {} map and {} reduce tasks ({} map runs, {} reduce runs, {restarts} worker restarts), {:.1} MB/s; output in {}/mr-out-*",
        p.maps_total,
        p.reduces_total,
        p.map_assignments,
        p.reduce_assignments,
        total_bytes as f64 / 1e6 / secs,
        output_dir.display()
    ))
}

/// Progress bars on a terminal, plain log lines otherwise.
struct ProgressDisplay {
    bars: Option<(MultiProgress, ProgressBar, ProgressBar)>,
    quiet: bool,
    last: Progress,
}

impl ProgressDisplay {
    fn new(mode: Display) -> Self {
        let bars = (mode == Display::Bars).then(|| {
            let multi = MultiProgress::new();
            let style = ProgressStyle::with_template("{prefix:>6} [{bar:40}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> ");
            let map = multi.add(
                ProgressBar::new(0)
                    .with_style(style.clone())
                    .with_prefix("map"),
            );
            let reduce = multi.add(ProgressBar::new(0).with_style(style).with_prefix("reduce"));
            (multi, map, reduce)
        });
        ProgressDisplay {
            bars,
            quiet: mode == Display::Quiet,
            last: Progress::default(),
        }
    }

    fn update(&mut self, p: &Progress, elapsed: Duration) {
        let mbps = p.input_bytes_done as f64 / 1e6 / elapsed.as_secs_f64().max(1e-3);
        match &self.bars {
            Some((_, map, reduce)) => {
                map.set_length(p.maps_total as u64);
                map.set_position(p.maps_done as u64);
                map.set_message(format!("{mbps:.1} MB/s"));
                reduce.set_length(p.reduces_total as u64);
                reduce.set_position(p.reduces_done as u64);
            }
            None => {
                if !self.quiet
                    && (p.maps_done, p.reduces_done)
                        != (self.last.maps_done, self.last.reduces_done)
                {
                    eprintln!(
                        "[{:6.1}s] map {}/{}  reduce {}/{}  {mbps:.1} MB/s",
                        elapsed.as_secs_f64(),
                        p.maps_done,
                        p.maps_total,
                        p.reduces_done,
                        p.reduces_total
                    );
                }
            }
        }
        self.last = *p;
    }

    fn note(&self, line: &str) {
        match &self.bars {
            Some((multi, _, _)) => {
                let _ = multi.println(line);
            }
            None => eprintln!("{line}"),
        }
    }

    fn finish(&self) {
        if let Some((_, map, reduce)) = &self.bars {
            map.finish();
            reduce.finish();
        }
    }
}
