//! Errors the MapReduce library returns; the binary prints them as plain sentences.

use flotilla_wire::WireError;

#[derive(Debug, thiserror::Error)]
pub enum MrError {
    #[error("unknown app {name:?} (known apps: {known})")]
    UnknownApp { name: String, known: String },
    #[error("cannot read input file {path}: {source}")]
    Input {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot reach the coordinator at {addr}: {source}")]
    CoordinatorUnreachable { addr: String, source: WireError },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("network error: {0}")]
    Wire(#[from] WireError),
    #[error("bad job: {0}")]
    BadJob(String),
    #[error("the coordinator answered with an error: {0}")]
    Remote(String),
    #[error("the {app} app failed on {task}: {message}")]
    AppFailed {
        app: String,
        task: String,
        message: String,
    },
}

impl MrError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        MrError::Io {
            context: context.into(),
            source,
        }
    }
}
