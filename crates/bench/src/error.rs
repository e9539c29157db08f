//! What can go wrong in a benchmark run. Each variant says what failed and carries the data
//! (program, path, address, the text that could not be read, the source error), so a caller
//! can tell the cases apart; the binary prints them as the sentences below.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A server process could not be spawned (missing binary, no permission).
    #[error("cannot start {name} ({program:?}): {source}")]
    Start {
        name: String,
        program: String,
        source: std::io::Error,
    },
    /// A tool run to completion (pgrep, `flotilla ctl`, redis-benchmark) could not be spawned.
    #[error("cannot run {command}{hint}: {source}")]
    Run {
        command: String,
        /// What to install, when that is the likely cause; empty otherwise.
        hint: &'static str,
        source: std::io::Error,
    },
    /// `PROGRAM --version` could not be run: the system it belongs to is skipped.
    #[error("{program} is not installed or cannot run ({source})")]
    NotInstalled {
        program: String,
        source: std::io::Error,
    },
    /// A tool ran and reported failure; `status` is `None` when it exited 0 but its output
    /// says it did not do the job.
    #[error("{command} failed{}: {output}", status.map_or(String::new(), |s| format!(" ({s})")))]
    Failed {
        command: String,
        status: Option<ExitStatus>,
        output: String,
    },
    /// A started server exited while it was needed.
    #[error("{name} exited ({status}); the end of {}:\n{tail}", log.display())]
    Exited {
        name: String,
        status: ExitStatus,
        log: PathBuf,
        /// The last lines of its log.
        tail: String,
    },
    /// Whether a started server still runs could not be asked.
    #[error("cannot check on {name}: {source}")]
    Check {
        name: String,
        source: std::io::Error,
    },
    /// A server did not become ready (answer PING and a SET, or accept an etcd put) in time.
    #[error("{what} was not ready within {} s ({last}){}", within.as_secs(), log_note(log.as_ref()))]
    NotReady {
        /// "redis-server on port 6391", "etcd at http://…".
        what: String,
        within: Duration,
        /// The last answer or error seen.
        last: String,
        /// The server's log, when the benchmark started it.
        log: Option<PathBuf>,
    },
    /// A port a server is about to listen on is in use.
    #[error("port {port} on 127.0.0.1 is taken ({source}); stop what uses it")]
    PortTaken { port: u16, source: std::io::Error },
    /// I/O on a file or directory.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// "create", "read", "write", …
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// I/O on a TCP connection.
    #[error("{action} {addr}: {source}")]
    Connection {
        /// "cannot connect to", "no answer from the router at", …
        action: &'static str,
        addr: String,
        source: std::io::Error,
    },
    /// A tokio runtime could not be built.
    #[error("cannot start {what}: {source}")]
    Runtime {
        what: &'static str,
        source: std::io::Error,
    },
    /// A helper thread panicked.
    #[error("{what} panicked")]
    Panicked { what: &'static str },
    /// Output of a tool or server, or a file, that does not read as expected.
    #[error("cannot read {what}: {problem}{}", excerpt(text))]
    Parse {
        /// "redis-benchmark's CSV", "a /proc stat line", "the router's reply", a path, …
        what: String,
        problem: String,
        /// The offending text (empty when there is none to show).
        text: String,
    },
    /// JSON that does not decode.
    #[error("{what} is malformed: {source}")]
    Json {
        what: String,
        source: serde_json::Error,
    },
    /// The report could not be encoded.
    #[error("cannot encode the report as JSON: {0}")]
    Encode(#[source] serde_json::Error),
    /// The router answered a request with an error reply.
    #[error("the router answered {reply:?}")]
    ErrorReply { reply: String },
    /// A request got an answer other than the one it must get.
    #[error("{request} answered {reply}")]
    UnexpectedReply { request: String, reply: String },
    /// A key written before a shard move does not read back after it.
    #[error("GET {key} {} after the move", match found {
        Some(n) => format!("returned {n} bytes that are not the value written"),
        None => "found nothing".into(),
    })]
    ValueLost {
        key: String,
        /// Bytes found, if any.
        found: Option<usize>,
    },
    /// The configuration has no such shard.
    #[error("the configuration has no shard {shard}")]
    NoShard { shard: usize },
    /// A shard move needs a second group.
    #[error("the cluster has a single group: nowhere to move the shard")]
    SingleGroup,
    /// The cluster secret is refused.
    #[error("the secret in {} is refused: {source}", path.display())]
    Secret {
        path: PathBuf,
        source: flotilla_transport::auth::SecretError,
    },
    /// The flotilla binary lacks a command or flag the benchmark uses (too old, or not built).
    #[error("{} lacks {what} (build it with `cargo build --release -p flotilla`)", bin.display())]
    BinaryLacks { bin: PathBuf, what: String },
    /// This build has no etcd generator.
    #[error("{}", crate::sweep::NO_ETCD)]
    NoEtcd,
    /// An etcd request failed.
    #[cfg(feature = "etcd")]
    #[error("{what}: {source}")]
    Etcd {
        /// "cannot connect to etcd at …", "Put key failed", …
        what: String,
        source: etcd_client::Error,
    },
    /// A key put in the load's first phase is missing in its second.
    #[cfg(feature = "etcd")]
    #[error("get {key}: not found")]
    EtcdNotFound { key: String },
    /// A load task ended without its result (panicked or cancelled).
    #[cfg(feature = "etcd")]
    #[error("a load task panicked: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl BenchError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        BenchError::Io {
            action,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn parse(
        what: impl Into<String>,
        problem: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        BenchError::Parse {
            what: what.into(),
            problem: problem.into(),
            text: text.into(),
        }
    }
}

/// The offending text after a parse error: on the same line if it is one line, else below.
fn excerpt(text: &str) -> String {
    let text = text.trim();
    let mut s = String::new();
    if text.contains('\n') {
        let _ = write!(s, ":\n{text}");
    } else if !text.is_empty() {
        let _ = write!(s, ": {text}");
    }
    s
}

fn log_note(log: Option<&PathBuf>) -> String {
    log.map_or(String::new(), |p| format!("; its log: {}", p.display()))
}
