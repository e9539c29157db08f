//! The worker: asks the coordinator for tasks, runs them, keeps its map output on local disk
//! (in a [`MapStore`] that a successor process can recover) and serves it to reducers over TCP
//! until the job is done.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;

use crate::apps::Registry;
use crate::compute::{decode_bucket, map_to_buckets, reduce_to_output, KeyValue};
use crate::files::read_input_into;
use crate::protocol::{call, serve_one, Request, Response, Task};
use crate::store::MapStore;
use crate::MrError;

/// How often a worker tells the coordinator it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// How a worker is set up. [`WorkerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's address, `host:port`.
    pub coordinator: String,
    /// Where to listen for reducers fetching this worker's map output.
    pub listen: String,
    /// The address reducers should use, if not the bound one (e.g. behind NAT).
    pub advertise: Option<String>,
    /// Where map output is kept. `None`: a slot under `$TMPDIR/flotilla-mr/<coordinator>/`,
    /// shared with other workers of this host so a restarted worker recovers a dead one's.
    pub data_dir: Option<PathBuf>,
    /// Pause between asks when there is no work.
    pub poll: Duration,
    /// How long to keep trying a coordinator this worker has never reached.
    pub connect_grace: Duration,
    /// After contact, how long the coordinator may be unreachable before the worker concludes
    /// the job is over and exits.
    pub gone_after: Duration,
    /// Limit of one request/response exchange.
    pub rpc_timeout: Duration,
}

impl WorkerConfig {
    pub fn new(coordinator: impl Into<String>) -> Self {
        WorkerConfig {
            coordinator: coordinator.into(),
            listen: "127.0.0.1:0".into(),
            advertise: None,
            data_dir: None,
            poll: Duration::from_millis(100),
            connect_grace: Duration::from_secs(3),
            gone_after: Duration::from_secs(3),
            rpc_timeout: Duration::from_secs(60),
        }
    }
}

/// Why a worker stopped without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerExit {
    /// The coordinator said the job is done.
    JobDone,
    /// The coordinator went away after the worker had reached it (the job is over).
    CoordinatorGone,
}

/// What a running worker needs everywhere.
struct Worker {
    cfg: WorkerConfig,
    registry: Registry,
    id: u64,
    store: MapStore,
    data_addr: String,
    /// Input bytes of the current map task; its capacity is reused from task to task.
    input: std::sync::Mutex<Vec<u8>>,
}

/// When the coordinator was last reached, to tell "not up yet" from "gone".
struct Contact {
    started: Instant,
    last: Option<Instant>,
}

/// Runs a worker until the job is done or the coordinator is gone.
pub async fn run_worker(cfg: WorkerConfig, registry: Registry) -> Result<WorkerExit, MrError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let id = (u64::from(std::process::id()) << 32) ^ (nanos & 0xffff_ffff);
    let store = match &cfg.data_dir {
        Some(d) => MapStore::at(d)?,
        None => MapStore::claim(&default_root(&cfg.coordinator))?,
    };
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| MrError::io(format!("cannot listen on {}", cfg.listen), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| MrError::io("reading the bound address", e))?;
    let data_addr = cfg.advertise.clone().unwrap_or_else(|| bound.to_string());
    let server = tokio::spawn(serve_buckets(listener, store.dir().to_path_buf()));
    let worker = Arc::new(Worker {
        cfg,
        registry,
        id,
        store,
        data_addr,
        input: std::sync::Mutex::new(Vec::new()),
    });
    // Heartbeats run on the async runtime while tasks run on blocking threads, so a worker
    // stalled inside an app still counts as alive, and a dead process falls silent.
    let beats = tokio::spawn(worker.clone().heartbeats());
    let result = worker.work_loop().await;
    beats.abort();
    server.abort();
    if matches!(result, Ok(WorkerExit::JobDone)) {
        if let Ok(w) = Arc::try_unwrap(worker) {
            w.store.remove();
        }
    }
    result
}

/// `$TMPDIR/flotilla-mr/<coordinator address>`: where this host's workers of one coordinator
/// keep their slots.
fn default_root(coordinator: &str) -> PathBuf {
    let safe: String = coordinator
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::env::temp_dir().join("flotilla-mr").join(safe)
}

impl Worker {
    async fn heartbeats(self: Arc<Self>) {
        let beat = Request::Heartbeat {
            worker: self.id,
            data_addr: self.data_addr.clone(),
        };
        loop {
            tokio::time::sleep(HEARTBEAT_INTERVAL).await;
            let _ = call(&self.cfg.coordinator, &beat, HEARTBEAT_INTERVAL * 2).await;
        }
    }

    /// Sends `req` to the coordinator, retrying while it is unreachable. `Ok(None)` means the
    /// coordinator is gone after having been reached: the job is over.
    async fn ask(&self, req: &Request, contact: &mut Contact) -> Result<Option<Response>, MrError> {
        loop {
            match call(&self.cfg.coordinator, req, self.cfg.rpc_timeout).await {
                Ok(Response::Error(e)) => return Err(MrError::Remote(e)),
                Ok(r) => {
                    contact.last = Some(Instant::now());
                    return Ok(Some(r));
                }
                Err(e) => match contact.last {
                    None if contact.started.elapsed() >= self.cfg.connect_grace => {
                        return Err(MrError::CoordinatorUnreachable {
                            addr: self.cfg.coordinator.clone(),
                            source: e,
                        });
                    }
                    Some(t) if t.elapsed() >= self.cfg.gone_after => return Ok(None),
                    _ => tokio::time::sleep(self.cfg.poll).await,
                },
            }
        }
    }

    async fn work_loop(self: &Arc<Self>) -> Result<WorkerExit, MrError> {
        let mut contact = Contact {
            started: Instant::now(),
            last: None,
        };
        let hello = Request::Hello {
            worker: self.id,
            data_addr: self.data_addr.clone(),
        };
        let job = match self.ask(&hello, &mut contact).await? {
            None => return Ok(WorkerExit::CoordinatorGone),
            Some(Response::Job { id }) => id,
            Some(other) => {
                return Err(MrError::Remote(format!(
                    "unexpected answer to Hello: {other:?}"
                )))
            }
        };
        let recovered = self.store.adopt(job)?;
        if !recovered.is_empty() {
            tracing::info!(
                worker = self.id,
                ?recovered,
                "recovered map output left by a previous worker"
            );
            let req = Request::Recovered {
                worker: self.id,
                data_addr: self.data_addr.clone(),
                maps: recovered,
            };
            if self.ask(&req, &mut contact).await?.is_none() {
                return Ok(WorkerExit::CoordinatorGone);
            }
        }
        let get_task = Request::GetTask {
            worker: self.id,
            data_addr: self.data_addr.clone(),
        };
        loop {
            match self.ask(&get_task, &mut contact).await? {
                None => return Ok(WorkerExit::CoordinatorGone),
                Some(Response::Task(task)) => {
                    let report = self.run_task(task).await?;
                    // If the report is lost the task times out and runs again; that is safe.
                    if self.ask(&report, &mut contact).await?.is_none() {
                        return Ok(WorkerExit::CoordinatorGone);
                    }
                }
                Some(Response::Wait) => tokio::time::sleep(self.cfg.poll).await,
                Some(Response::Exit) => return Ok(WorkerExit::JobDone),
                Some(other) => {
                    return Err(MrError::Remote(format!(
                        "unexpected answer to GetTask: {other:?}"
                    )))
                }
            }
        }
    }

    /// Runs a task; returns the report for the coordinator.
    async fn run_task(self: &Arc<Self>, task: Task) -> Result<Request, MrError> {
        tracing::debug!(worker = self.id, ?task, "starting task");
        Ok(match task {
            Task::Map {
                map,
                app,
                name,
                path,
                size,
                n_reduce,
            } => {
                self.run_map(map, &app, name, Path::new(&path), size, n_reduce)
                    .await?;
                Request::MapDone {
                    worker: self.id,
                    map,
                    data_addr: self.data_addr.clone(),
                }
            }
            Task::Reduce {
                reduce,
                app,
                sources,
            } => match self.run_reduce(reduce, &app, &sources).await? {
                Ok(output) => Request::ReduceDone {
                    worker: self.id,
                    reduce,
                    output,
                },
                Err(lost) => lost,
            },
        })
    }

    async fn run_map(
        self: &Arc<Self>,
        map: u32,
        app_name: &str,
        name: String,
        path: &Path,
        size: u64,
        n_reduce: u32,
    ) -> Result<(), MrError> {
        let app = self.registry.resolve(app_name)?;
        // Read locally if this machine has the file (same path and size), else fetch it.
        let fetched = match std::fs::metadata(path).is_ok_and(|m| m.len() == size) {
            true => None,
            false => Some(self.fetch_input(map).await?),
        };
        let me = self.clone();
        let path = path.to_path_buf();
        let failed = |e: tokio::task::JoinError| MrError::AppFailed {
            app: app_name.to_string(),
            task: format!("map task {map}"),
            message: e.to_string(),
        };
        tokio::task::spawn_blocking(move || {
            let t0 = Instant::now();
            // One task at a time per worker, so the lock is never contended.
            let mut buf = me.input.lock().expect("input buffer lock");
            let text = match fetched {
                None => read_input_into(&path, &mut buf)?,
                Some(bytes) => {
                    *buf = bytes;
                    String::from_utf8_lossy(&buf)
                }
            };
            let read = t0.elapsed();
            let buckets = map_to_buckets(&*app, &name, &text, n_reduce);
            let mapped = t0.elapsed() - read;
            me.store.write_map(map, buckets)?;
            tracing::debug!(map, ?read, ?mapped, stored = ?(t0.elapsed() - read - mapped), "map task done");
            Ok(())
        })
        .await
        .map_err(failed)?
    }

    /// The input of map task `map`, from the coordinator.
    async fn fetch_input(&self, map: u32) -> Result<Vec<u8>, MrError> {
        match call(
            &self.cfg.coordinator,
            &Request::FetchInput { map },
            self.cfg.rpc_timeout,
        )
        .await?
        {
            Response::Data(bytes) => Ok(bytes),
            Response::Error(e) => Err(MrError::Remote(e)),
            other => Err(MrError::Remote(format!(
                "unexpected answer to FetchInput: {other:?}"
            ))),
        }
    }

    /// Gathers bucket `reduce` of every map task and reduces it. If some holders cannot be
    /// reached, returns (as `Err`) the report telling the coordinator which output was lost.
    async fn run_reduce(
        self: &Arc<Self>,
        reduce: u32,
        app_name: &str,
        sources: &[(u32, String)],
    ) -> Result<Result<Vec<u8>, Request>, MrError> {
        let app = self.registry.resolve(app_name)?;
        let mut fetches = tokio::task::JoinSet::new();
        for (map, holder) in sources.iter().cloned() {
            let me = self.clone();
            fetches.spawn(async move {
                let got = me.fetch_bucket(map, reduce, &holder).await;
                (holder, got)
            });
        }
        let mut pairs: Vec<KeyValue> = Vec::new();
        let mut lost: BTreeSet<String> = BTreeSet::new();
        while let Some(joined) = fetches.join_next().await {
            let (holder, got) =
                joined.map_err(|e| MrError::io("fetching map output", std::io::Error::other(e)))?;
            match got {
                Some(bytes) => pairs.extend(decode_bucket(&bytes)?),
                None => {
                    lost.insert(holder);
                }
            }
        }
        if !lost.is_empty() {
            tracing::info!(
                worker = self.id,
                reduce,
                ?lost,
                "cannot fetch map output; giving the reduce task back"
            );
            let holders = lost.into_iter().collect();
            return Ok(Err(Request::MapOutputLost {
                worker: self.id,
                reduce,
                holders,
            }));
        }
        let failed = |e: tokio::task::JoinError| MrError::AppFailed {
            app: app_name.to_string(),
            task: format!("reduce task {reduce}"),
            message: e.to_string(),
        };
        let output = tokio::task::spawn_blocking(move || reduce_to_output(&*app, pairs))
            .await
            .map_err(failed)?;
        Ok(Ok(output))
    }

    /// One bucket, from local disk if this worker holds it, else from its holder. `None` if the
    /// holder cannot be reached or no longer has it.
    async fn fetch_bucket(&self, map: u32, reduce: u32, holder: &str) -> Option<Vec<u8>> {
        if holder == self.data_addr {
            return tokio::fs::read(self.store.bucket_path(map, reduce))
                .await
                .ok();
        }
        match call(
            holder,
            &Request::FetchBucket { map, reduce },
            self.cfg.rpc_timeout,
        )
        .await
        {
            Ok(Response::Data(bytes)) => Some(bytes),
            _ => None,
        }
    }
}

/// Serves `FetchBucket` requests from `dir` until aborted.
async fn serve_buckets(listener: TcpListener, dir: PathBuf) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let dir = dir.clone();
        tokio::spawn(serve_one(stream, move |req| async move {
            match req {
                Request::FetchBucket { map, reduce } => {
                    match tokio::fs::read(dir.join(format!("map-{map}-{reduce}"))).await {
                        Ok(bytes) => Response::Data(bytes),
                        Err(e) => {
                            Response::Error(format!("no output for map {map} bucket {reduce}: {e}"))
                        }
                    }
                }
                other => {
                    Response::Error(format!("a worker only serves FetchBucket, not {other:?}"))
                }
            }
        }));
    }
}
