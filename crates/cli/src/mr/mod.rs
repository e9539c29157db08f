//! `flotilla mr …`: MapReduce roles as processes, the local runner, the sequential reference,
//! the corpus generator and the benchmark.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Subcommand;
use flotilla_mr::coordinator::{self, Coordinator, JobSpec};
use flotilla_mr::worker::{run_worker, WorkerConfig, WorkerExit};
use flotilla_mr::{corpus, sequential, Registry};
use tokio::net::TcpListener;

use crate::units::{parse_duration, parse_size};

mod bench;
mod local;

use local::{run_local, runtime, Display};

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
        } => bench::run(size, files, &dir, repeat),
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
