//! What coordinator and workers say to each other. Every exchange is one request frame and one
//! response frame on a fresh TCP connection, so a crashed peer costs at most one failed call.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use flotilla_wire::{read_frame, write_frame, WireError, DEFAULT_MAX_FRAME};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    /// Worker → coordinator, first: which job is this? (Answered with `Job`.)
    Hello { worker: u64, data_addr: String },
    /// Worker → coordinator: my store already holds these map tasks' output for this job
    /// (left by a worker process that died on this host); it is served at `data_addr`.
    Recovered {
        worker: u64,
        data_addr: String,
        maps: Vec<u32>,
    },
    /// Worker → coordinator: give me work. `data_addr` is where I serve my map output.
    GetTask { worker: u64, data_addr: String },
    /// Worker → coordinator: I am alive (sent every half second, even while a task runs).
    Heartbeat { worker: u64, data_addr: String },
    /// Worker → coordinator: map task done; its buckets are at `data_addr`.
    MapDone {
        worker: u64,
        map: u32,
        data_addr: String,
    },
    /// Worker → coordinator: reduce task done; here is the output file's contents.
    ReduceDone {
        worker: u64,
        reduce: u32,
        output: Vec<u8>,
    },
    /// Worker → coordinator: I could not fetch map output from these holders, so I gave up
    /// reduce task `reduce`.
    MapOutputLost {
        worker: u64,
        reduce: u32,
        holders: Vec<String>,
    },
    /// Worker → coordinator: send me map task `map`'s input (when I cannot read it locally).
    FetchInput { map: u32 },
    /// Reduce worker → map worker: send me bucket `reduce` of map task `map`.
    FetchBucket { map: u32, reduce: u32 },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    /// The job's identity, so a worker never reuses another job's map output.
    Job {
        id: u64,
    },
    Task(Task),
    /// Nothing to do right now; ask again shortly.
    Wait,
    /// The job is done: exit.
    Exit,
    Ack,
    Data(Vec<u8>),
    Error(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Task {
    Map {
        map: u32,
        app: String,
        /// The input's name as the user gave it (what `map` receives as its filename).
        name: String,
        /// Its absolute path on the coordinator's machine; read directly if present locally.
        path: String,
        size: u64,
        n_reduce: u32,
    },
    Reduce {
        reduce: u32,
        app: String,
        /// For every map task, the address of a worker holding its output.
        sources: Vec<(u32, String)>,
    },
}

/// Sends one request and waits for its response, all within `timeout`.
pub async fn call(addr: &str, req: &Request, timeout: Duration) -> Result<Response, WireError> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        write_frame(&mut stream, req).await?;
        read_frame(&mut stream, DEFAULT_MAX_FRAME).await
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(WireError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from {addr} within {timeout:?}"),
        ))),
    }
}

/// Reads one request from `stream`, answers it with `handle`, and closes. Malformed requests get
/// an error response (if the connection still works), never a panic.
pub async fn serve_one<F, Fut>(mut stream: TcpStream, handle: F)
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let _ = stream.set_nodelay(true);
    let response = match read_frame::<_, Request>(&mut stream, DEFAULT_MAX_FRAME).await {
        Ok(req) => handle(req).await,
        Err(WireError::Io(_)) => return,
        Err(e) => Response::Error(format!("bad request: {e}")),
    };
    let _ = write_frame(&mut stream, &response).await;
}
