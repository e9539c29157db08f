//! The worker: asks the coordinator for tasks, runs them, keeps its map output on local disk
//! and serves it to reducers over TCP until the job is done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;

use crate::apps::Registry;
use crate::compute::{decode_bucket, encode_bucket, map_to_buckets, reduce_to_output, KeyValue};
use crate::files::{read_input, write_atomic};
use crate::protocol::{call, serve_one, Request, Response, Task};
use crate::MrError;

/// How a worker is set up. [`WorkerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The coordinator's address, `host:port`.
    pub coordinator: String,
    /// Where to listen for reducers fetching this worker's map output.
    pub listen: String,
    /// The address reducers should use, if not the bound one (e.g. behind NAT).
    pub advertise: Option<String>,
    /// Where map output is kept; a fresh directory under the system temp dir if `None`.
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
    data_dir: PathBuf,
    data_addr: String,
}

/// Runs a worker until the job is done or the coordinator is gone.
pub async fn run_worker(cfg: WorkerConfig, registry: Registry) -> Result<WorkerExit, MrError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let id = (u64::from(std::process::id()) << 32) ^ (nanos & 0xffff_ffff);
    let (data_dir, owned_dir) = match &cfg.data_dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("flotilla-mr-{}-{nanos}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&data_dir)
        .map_err(|e| MrError::io(format!("cannot create {}", data_dir.display()), e))?;
    let listener = TcpListener::bind(&cfg.listen)
        .await
        .map_err(|e| MrError::io(format!("cannot listen on {}", cfg.listen), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| MrError::io("reading the bound address", e))?;
    let data_addr = cfg.advertise.clone().unwrap_or_else(|| bound.to_string());
    let server = tokio::spawn(serve_buckets(listener, data_dir.clone()));
    let worker = Arc::new(Worker {
        cfg,
        registry,
        id,
        data_dir: data_dir.clone(),
        data_addr,
    });
    let result = worker.work_loop().await;
    server.abort();
    if owned_dir {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    result
}

impl Worker {
    async fn work_loop(self: &Arc<Self>) -> Result<WorkerExit, MrError> {
        let started = Instant::now();
        let mut last_contact: Option<Instant> = None;
        loop {
            let ask = Request::GetTask {
                worker: self.id,
                data_addr: self.data_addr.clone(),
            };
            let reply = match call(&self.cfg.coordinator, &ask, self.cfg.rpc_timeout).await {
                Ok(r) => r,
                Err(e) => {
                    match last_contact {
                        None if started.elapsed() >= self.cfg.connect_grace => {
                            return Err(MrError::CoordinatorUnreachable {
                                addr: self.cfg.coordinator.clone(),
                                source: e,
                            });
                        }
                        Some(t) if t.elapsed() >= self.cfg.gone_after => {
                            return Ok(WorkerExit::CoordinatorGone)
                        }
                        _ => {}
                    }
                    tokio::time::sleep(self.cfg.poll).await;
                    continue;
                }
            };
            last_contact = Some(Instant::now());
            match reply {
                Response::Task(task) => self.run_task(task).await?,
                Response::Wait => tokio::time::sleep(self.cfg.poll).await,
                Response::Exit => return Ok(WorkerExit::JobDone),
                Response::Error(e) => return Err(MrError::Remote(e)),
                other => {
                    return Err(MrError::Remote(format!(
                        "unexpected answer to GetTask: {other:?}"
                    )))
                }
            }
        }
    }

    async fn run_task(self: &Arc<Self>, task: Task) -> Result<(), MrError> {
        let report = match task {
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
        };
        // If the report is lost the task times out and runs again; that is safe by design.
        let _ = call(&self.cfg.coordinator, &report, self.cfg.rpc_timeout).await;
        Ok(())
    }

    async fn run_map(
        &self,
        map: u32,
        app_name: &str,
        name: String,
        path: &Path,
        size: u64,
        n_reduce: u32,
    ) -> Result<(), MrError> {
        let app = self.registry.resolve(app_name)?;
        let contents = self.load_input(map, path, size).await?;
        let dir = self.data_dir.clone();
        let task = format!("map task {map} ({name})");
        let app_label = app_name.to_string();
        tokio::task::spawn_blocking(move || -> Result<(), MrError> {
            let buckets = map_to_buckets(&*app, &name, &contents, n_reduce);
            for (r, pairs) in buckets.into_iter().enumerate() {
                write_atomic(&dir.join(format!("map-{map}-{r}")), &encode_bucket(pairs))?;
            }
            Ok(())
        })
        .await
        .map_err(|e| MrError::AppFailed {
            app: app_label,
            task,
            message: e.to_string(),
        })?
    }

    /// Reads the input locally if this machine has it (same path and size), else fetches it
    /// from the coordinator.
    async fn load_input(&self, map: u32, path: &Path, size: u64) -> Result<String, MrError> {
        if std::fs::metadata(path).is_ok_and(|m| m.len() == size) {
            let p = path.to_path_buf();
            return tokio::task::spawn_blocking(move || read_input(&p))
                .await
                .map_err(|e| MrError::io("reading input", std::io::Error::other(e)))?;
        }
        match call(
            &self.cfg.coordinator,
            &Request::FetchInput { map },
            self.cfg.rpc_timeout,
        )
        .await?
        {
            Response::Data(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
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
                (map, holder, got)
            });
        }
        let mut pairs: Vec<KeyValue> = Vec::new();
        let mut lost: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        while let Some(joined) = fetches.join_next().await {
            let (map, holder, got) =
                joined.map_err(|e| MrError::io("fetching map output", std::io::Error::other(e)))?;
            match got {
                Some(bytes) => pairs.extend(decode_bucket(&bytes)?),
                None => lost.entry(holder).or_default().push(map),
            }
        }
        if let Some((holder, maps)) = lost.into_iter().next() {
            return Ok(Err(Request::MapOutputLost {
                worker: self.id,
                reduce,
                maps,
                holder,
            }));
        }
        let task = format!("reduce task {reduce}");
        let output = tokio::task::spawn_blocking(move || reduce_to_output(&*app, pairs))
            .await
            .map_err(|e| MrError::AppFailed {
                app: app_name.to_string(),
                task,
                message: e.to_string(),
            })?;
        Ok(Ok(output))
    }

    /// One bucket, from local disk if this worker holds it, else from its holder. `None` if the
    /// holder cannot be reached or no longer has it.
    async fn fetch_bucket(&self, map: u32, reduce: u32, holder: &str) -> Option<Vec<u8>> {
        if holder == self.data_addr {
            return tokio::fs::read(self.data_dir.join(format!("map-{map}-{reduce}")))
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
