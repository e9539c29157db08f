//! The coordinator: [`state::Coordinator`] decides, [`serve`] does the networking and writes
//! the final output files.

pub mod state;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use crate::apps::Registry;
use crate::files::write_atomic;
use crate::protocol::{serve_one, Request, Response};
use crate::MrError;
pub use state::{Assignment, Coordinator, InputFile, JobSpec, Progress};

/// Checks a job before anything starts: the app exists, every input is a readable file, and
/// the reduce count is sane. Input paths are made absolute so workers elsewhere can name them.
pub fn prepare_job(
    app: &str,
    inputs: &[PathBuf],
    n_reduce: u32,
    task_timeout: Duration,
    registry: &Registry,
) -> Result<JobSpec, MrError> {
    registry.resolve(app)?;
    if inputs.is_empty() {
        return Err(MrError::BadJob("no input files given".into()));
    }
    if n_reduce == 0 {
        return Err(MrError::BadJob(
            "the number of reduce tasks must be at least 1".into(),
        ));
    }
    if task_timeout.is_zero() {
        return Err(MrError::BadJob("the task timeout must be positive".into()));
    }
    let mut files = Vec::new();
    for p in inputs {
        let meta = std::fs::metadata(p).map_err(|source| MrError::Input {
            path: p.display().to_string(),
            source,
        })?;
        if !meta.is_file() {
            return Err(MrError::BadJob(format!(
                "input {} is not a regular file",
                p.display()
            )));
        }
        std::fs::File::open(p).map_err(|source| MrError::Input {
            path: p.display().to_string(),
            source,
        })?;
        let abs = std::path::absolute(p)
            .map_err(|e| MrError::io(format!("cannot resolve {}", p.display()), e))?;
        files.push(InputFile {
            name: p.display().to_string(),
            path: abs.display().to_string(),
            size: meta.len(),
        });
    }
    Ok(JobSpec {
        app: app.to_string(),
        inputs: files,
        n_reduce,
        task_timeout,
        worker_timeout: DEFAULT_WORKER_TIMEOUT,
        job_id: new_job_id(),
    })
}

/// A job id unlikely to repeat: the clock and the process id.
fn new_job_id() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

/// How long a worker may be silent before it is considered dead (workers heartbeat every
/// [`crate::worker::HEARTBEAT_INTERVAL`]).
pub const DEFAULT_WORKER_TIMEOUT: Duration = Duration::from_secs(3);

/// Serves a job on `listener` until every output file is written, then keeps answering
/// "exit" for `linger` so idle workers learn the job is over, and returns. Output files
/// `mr-out-<r>` go to `output_dir`, each written atomically.
pub async fn serve(
    listener: TcpListener,
    state: Arc<Mutex<Coordinator>>,
    output_dir: PathBuf,
    linger: Duration,
) -> Result<(), MrError> {
    std::fs::create_dir_all(&output_dir)
        .map_err(|e| MrError::io(format!("cannot create {}", output_dir.display()), e))?;
    let start = Instant::now();
    let done = Arc::new(Notify::new());
    let output_dir = Arc::new(output_dir);
    let accept = |stream: TcpStream| {
        let (state, done, dir) = (state.clone(), done.clone(), output_dir.clone());
        tokio::spawn(serve_one(stream, move |req| {
            handle(req, state, done, dir, start)
        }));
    };
    // Phase 1: until the last output file is written.
    if !state.lock().expect("coordinator lock").is_done() {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    accept(accepted.map_err(|e| MrError::io("accepting a connection", e))?.0);
                }
                _ = done.notified() => break,
            }
        }
    }
    // Phase 2: keep answering "exit" for a while, so idle workers learn the job is over.
    let linger_end = tokio::time::sleep(linger);
    tokio::pin!(linger_end);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                accept(accepted.map_err(|e| MrError::io("accepting a connection", e))?.0);
            }
            _ = &mut linger_end => return Ok(()),
        }
    }
}

async fn handle(
    req: Request,
    state: Arc<Mutex<Coordinator>>,
    done: Arc<Notify>,
    dir: Arc<PathBuf>,
    start: Instant,
) -> Response {
    match req {
        Request::GetTask { worker, data_addr } => match state
            .lock()
            .expect("coordinator lock")
            .assign(worker, &data_addr, start.elapsed())
        {
            Assignment::Task(t) => Response::Task(t),
            Assignment::Wait => Response::Wait,
            Assignment::Exit => Response::Exit,
        },
        Request::Hello { worker, data_addr } => {
            let mut c = state.lock().expect("coordinator lock");
            c.heartbeat(worker, &data_addr, start.elapsed());
            Response::Job {
                id: c.spec().job_id,
            }
        }
        Request::Recovered {
            worker,
            data_addr,
            maps,
        } => {
            let mut c = state.lock().expect("coordinator lock");
            c.recovered(worker, &data_addr, &maps, start.elapsed());
            Response::Ack
        }
        Request::Heartbeat { worker, data_addr } => {
            let mut c = state.lock().expect("coordinator lock");
            c.heartbeat(worker, &data_addr, start.elapsed());
            Response::Ack
        }
        Request::MapDone {
            worker,
            map,
            data_addr,
        } => {
            let mut c = state.lock().expect("coordinator lock");
            c.heartbeat(worker, &data_addr, start.elapsed());
            c.map_done(worker, map, data_addr);
            Response::Ack
        }
        Request::ReduceDone { reduce, output, .. } => {
            let result =
                tokio::task::spawn_blocking(move || commit_output(&state, &dir, reduce, &output))
                    .await;
            match result {
                Ok(Ok(all_done)) => {
                    if all_done {
                        done.notify_one();
                    }
                    Response::Ack
                }
                Ok(Err(e)) => Response::Error(e.to_string()),
                Err(e) => Response::Error(format!("internal error writing output: {e}")),
            }
        }
        Request::MapOutputLost {
            reduce, holders, ..
        } => {
            let mut c = state.lock().expect("coordinator lock");
            c.map_output_lost(reduce, &holders);
            Response::Ack
        }
        Request::FetchInput { map } => {
            let path = state
                .lock()
                .expect("coordinator lock")
                .spec()
                .inputs
                .get(map as usize)
                .map(|i| i.path.clone());
            match path {
                None => Response::Error(format!("no map task {map}")),
                Some(p) => match tokio::fs::read(&p).await {
                    Ok(bytes) => Response::Data(bytes),
                    Err(e) => Response::Error(format!("cannot read input {p}: {e}")),
                },
            }
        }
        Request::FetchBucket { .. } => {
            Response::Error("this is the coordinator, not a worker".into())
        }
    }
}

/// Writes reduce task `reduce`'s output unless a previous completion already did; marks the
/// task done only once the file is durable. Returns true if the whole job is now done.
fn commit_output(
    state: &Mutex<Coordinator>,
    dir: &Path,
    reduce: u32,
    output: &[u8],
) -> Result<bool, MrError> {
    let mut c = state.lock().expect("coordinator lock");
    if c.reduce_needs_output(reduce) {
        write_atomic(&dir.join(format!("mr-out-{reduce}")), output)?;
        c.reduce_done(reduce);
    }
    Ok(c.is_done())
}
