//! Errors of reading and writing history files.

use std::path::PathBuf;

/// Why a history could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// The file could not be opened, read, created or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// A line of the input is not a valid operation (lines count from 1).
    #[error("line {line}: {problem}")]
    Line {
        /// Which line.
        line: usize,
        /// What is wrong with it.
        problem: LineError,
    },
    /// An operation of a history to be written cannot be represented in the file format.
    #[error("operation {index}: {problem}")]
    Unwritable {
        /// Its index in the history.
        index: usize,
        /// Why.
        problem: UnwritableError,
    },
}

/// What is wrong with one line of a history file, in any of the formats read (JSON Lines,
/// Jepsen etcd logs, EDN maps). Values quoted from the line are kept as found.
#[derive(Debug, thiserror::Error)]
pub enum LineError {
    /// Not JSON, or JSON without the fields of an operation (JSON Lines).
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    /// An `op` other than get, put, append and delete (JSON Lines).
    #[error("unknown op {op:?} (expected get, put, append or delete)")]
    UnknownOp { op: String },
    /// No `return` field: unknown outcomes must say so with `null` (JSON Lines).
    #[error("missing field `return` (null if the outcome is unknown)")]
    MissingReturn,
    /// An operation that returns before it is called.
    #[error("returns at {ret} ns, before its call at {call} ns")]
    ReturnBeforeCall { ret: u64, call: u64 },
    /// `old` on anything but an append with a known outcome (JSON Lines).
    #[error("`old` is only for an append whose outcome is known")]
    MisplacedOld,
    /// A process invokes a second operation before the first completed.
    #[error("process {process} invokes while its previous operation is pending")]
    AlreadyPending { process: u64 },
    /// A completion event of a process with no operation pending.
    #[error("process {process} completes an operation it never invoked")]
    NeverInvoked { process: u64 },
    /// A completion whose operation differs from the one pending (`event` and `pending` as
    /// the format writes them).
    #[error("{event} does not complete the pending {pending}")]
    CompletionMismatch { event: String, pending: String },
    /// An operation name the model does not know (`:f` in EDN, the function in Jepsen logs).
    #[error("unknown operation {f}")]
    UnknownOperation { f: String },
    /// An event type other than invoke, ok, fail and info.
    #[error("unknown event type {kind}")]
    UnknownEventType { kind: String },
    /// A Jepsen process that is not a number.
    #[error("bad process {process:?}")]
    BadProcess { process: String },
    #[error("expected an integer, found {text:?}")]
    NotAnInteger { text: String },
    /// A Jepsen compare-and-set argument that is not `[from to]`.
    #[error("expected [from to], found {text:?}")]
    BadCasArguments { text: String },
    /// A required EDN key is absent.
    #[error("missing :{key}")]
    MissingKey { key: &'static str },
    /// An EDN key holds a value of the wrong kind.
    #[error(":{key} must be {expected}, not {found}")]
    WrongKind {
        key: &'static str,
        expected: &'static str,
        found: String,
    },
    /// A line that is not one EDN map `{...}`.
    #[error("expected a map {{...}}")]
    NotAMap,
    #[error("map key {key} is not a keyword")]
    KeyNotKeyword { key: String },
    /// A key with nothing after it.
    #[error("expected a value")]
    MissingValue,
    /// An EDN scalar this reader does not support (floats, symbols, collections).
    #[error("unsupported EDN value {word:?}")]
    UnsupportedValue { word: String },
    /// A string escape other than `\n`, `\t`, `\r`, `\"` and `\\` (`None`: the line
    /// ends after the backslash).
    #[error("unsupported escape \\{escape:?}")]
    UnsupportedEscape { escape: Option<char> },
    #[error("unterminated string")]
    UnterminatedString,
}

/// Why an operation cannot be written as a line of JSON Lines.
#[derive(Debug, thiserror::Error)]
pub enum UnwritableError {
    /// A completed get must carry the value it returned.
    #[error("a get that returned no value")]
    GetWithoutValue,
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

impl HistoryError {
    pub(crate) fn line(line: usize, problem: impl Into<LineError>) -> Self {
        HistoryError::Line {
            line,
            problem: problem.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HistoryError::Io {
            path: path.into(),
            source,
        }
    }
}
