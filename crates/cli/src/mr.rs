//! `flotilla mr …`: MapReduce roles as processes, the local runner, the sequential reference,
//! the corpus generator and the benchmark.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Subcommand;
use flotilla_mr::coordinator::{self, Coordinator, JobSpec, Progress};
use flotilla_mr::worker::{run_worker, WorkerConfig, WorkerExit};
use flotilla_mr::{corpus, sequential, Registry};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tokio::net::TcpListener;

use crate::units::{parse_duration, parse_size};

/// How a job runs: shared by `mr run` and `mr coordinator`.
#[derive(clap::Args)]
pub struct JobArgs {
    /// Number of reduce tasks (output files).
    #[arg(long = "reduce", default_value_t = 10)]
    n_reduce: u32,
    /// Re-issue a task not finished within this time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    task_timeout: Duration,
    /// A worker silent this long (no heartbeat) is dead; its work is redone at once.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    worker_timeout: Duration,
    /// Where the mr-out-* files go.
    #[arg(long, default_value = ".")]
    output_dir: PathBuf,
}

impl JobArgs {
    /// Checks the job and describes it for the coordinator.
    fn spec(&self, app: &str, files: &[PathBuf], registry: &Registry) -> Result<JobSpec, String> {
        let mut spec =
            coordinator::prepare_job(app, files, self.n_reduce, self.task_timeout, registry)
                .map_err(|e| e.to_string())?;
        spec.worker_timeout = self.worker_timeout;
        Ok(spec)
    }
}

#[derive(Subcommand)]
pub enum MrCommand {
    /// Run a whole job locally: a coordinator and N worker processes, with progress.
    Run {
        /// The app to run (`flotilla mr apps` lists them).
        #[arg(long, default_value = "wc")]
        app: String,
        /// Number of worker processes.
        #[arg(long, default_value_t = 2)]
        workers: usize,
        #[command(flatten)]
        job: JobArgs,
        /// Inputs; none = the embedded default, a seeded corpus generated into ./mr-corpus.
        #[arg()]
        files: Vec<PathBuf>,
    },
    /// Run the coordinator of a job; workers connect to it.
    Coordinator {
        /// The app to run (`flotilla mr apps` lists them).
        #[arg(long)]
        app: String,
        #[command(flatten)]
        job: JobArgs,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Write the bound address to this file once listening (for scripts).
        #[arg(long)]
        addr_file: Option<PathBuf>,
        /// After the job is done, keep telling workers to exit for this long.
        #[arg(long, default_value = "1s", value_parser = parse_duration)]
        linger: Duration,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a worker: ask the coordinator for tasks until the job is done.
    Worker {
        /// The coordinator's address, host:port.
        #[arg(long)]
        coordinator: String,
        /// Where to serve this worker's map output to reducers.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: String,
        /// Address reducers should use, if not the bound one.
        #[arg(long)]
        advertise: Option<String>,
        /// Where to keep map output (default: a fresh temp directory, removed at exit).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// The single-process reference: map and reduce everything, one output file.
    Sequential {
        #[arg(long)]
        app: String,
        #[arg(short, long, default_value = "mr-out-0")]
        output: PathBuf,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Generate a seeded, English-like text corpus.
    GenCorpus {
        #[arg(long, default_value = "corpus")]
        out: PathBuf,
        #[arg(long, default_value_t = 8)]
        files: usize,
        /// Size of each file.
        #[arg(long, default_value = "512KiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, default_value = "pg")]
        prefix: String,
    },
    /// List the built-in apps.
    Apps,
    /// Benchmark wc: sequential, 1 and 2 workers, and the per-core tokenize+count ceiling.
    Bench {
        /// Total corpus size.
        #[arg(long, default_value = "1GiB", value_parser = parse_size)]
        size: u64,
        #[arg(long, default_value_t = 32)]
        files: usize,
        /// Corpus directory (generated if missing or of another size).
        #[arg(long, default_value = "target/mr-bench-corpus")]
        dir: PathBuf,
        /// Runs per figure; the best is reported (shared machines are noisy).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
    },
}

pub fn run(cmd: MrCommand) -> Result<(), String> {
    let registry = Registry::builtin();
    match cmd {
        MrCommand::Run {
            app,
            workers,
            job,
            files,
        } => {
            if workers == 0 {
                return Err("--workers must be at least 1".into());
            }
            let files = if files.is_empty() {
                default_corpus()?
            } else {
                files
            };
            let spec = job.spec(&app, &files, &registry)?;
            let mode = if std::io::stderr().is_terminal() {
                Display::Bars
            } else {
                Display::Lines
            };
            let report = run_local(spec, workers, &job.output_dir, mode)?;
            println!("{report}");
            Ok(())
        }
        MrCommand::Coordinator {
            app,
            job,
            listen,
            addr_file,
            linger,
            files,
        } => {
            let spec = job.spec(&app, &files, &registry)?;
            let output_dir = job.output_dir;
            runtime()?.block_on(async {
                let listener = TcpListener::bind(&listen)
                    .await
                    .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
                let addr = listener
                    .local_addr()
                    .map_err(|e| e.to_string())?
                    .to_string();
                if let Some(f) = addr_file {
                    flotilla_mr::files::write_atomic(&f, addr.as_bytes())
                        .map_err(|e| e.to_string())?;
                }
                eprintln!(
                    "coordinator: listening on {addr}; {} map tasks, {} reduce tasks",
                    spec.inputs.len(),
                    spec.n_reduce
                );
                let state = Arc::new(Mutex::new(Coordinator::new(spec)));
                coordinator::serve(listener, state, output_dir, linger)
                    .await
                    .map_err(|e| e.to_string())
            })
        }
        MrCommand::Worker {
            coordinator,
            listen,
            advertise,
            data_dir,
        } => {
            let mut cfg = WorkerConfig::new(coordinator);
            cfg.listen = listen;
            cfg.advertise = advertise;
            cfg.data_dir = data_dir;
            match runtime()?
                .block_on(run_worker(cfg, registry))
                .map_err(|e| e.to_string())?
            {
                WorkerExit::JobDone => {}
                WorkerExit::CoordinatorGone => {
                    eprintln!("worker: the coordinator is gone; assuming the job is over")
                }
            }
            Ok(())
        }
        MrCommand::Sequential { app, output, files } => {
            let app = registry.resolve(&app).map_err(|e| e.to_string())?;
            sequential::run_sequential(&*app, &files, &output).map_err(|e| e.to_string())?;
            Ok(())
        }
        MrCommand::GenCorpus {
            out,
            files,
            size,
            seed,
            prefix,
        } => {
            let paths =
                corpus::generate(&out, &prefix, files, size, seed).map_err(|e| e.to_string())?;
            for p in paths {
                println!("{}", p.display());
            }
            Ok(())
        }
        MrCommand::Apps => {
            for name in registry.names() {
                println!("{name}");
            }
            Ok(())
        }
        MrCommand::Bench {
            size,
            files,
            dir,
            repeat,
        } => crate::mr_bench::run(size, files, &dir, repeat),
    }
}

/// The embedded default input: 8 files of 512 KiB, seed 1, in ./mr-corpus (reused if present).
fn default_corpus() -> Result<Vec<PathBuf>, String> {
    let dir = PathBuf::from("mr-corpus");
    let paths: Vec<PathBuf> = (0..8).map(|k| dir.join(format!("pg-{k:02}.txt"))).collect();
    if paths.iter().all(|p| p.is_file()) {
        eprintln!("using the corpus in {}/", dir.display());
        return Ok(paths);
    }
    eprintln!(
        "no input files given: generating the default corpus (8 x 512 KiB, seed 1) in {}/",
        dir.display()
    );
    corpus::generate(&dir, "pg", 8, 512 * 1024, 1).map_err(|e| e.to_string())
}

pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the async runtime: {e}"))
}

/// Runs a job with an in-process coordinator and `workers` worker processes of this binary,
/// restarting any worker that dies before the job is done. Returns a one-line summary.
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
