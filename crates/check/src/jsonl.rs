//! Key/value histories as JSON Lines, the project's interchange format: one operation a line,
//!
//! ```text
//! {"client":1,"op":"append","key":"k","value":"x","call":100,"return":250,"old":""}
//! ```
//!
//! `value` is the argument of put / append, what a get returned ("" when its outcome is
//! unknown), "" for delete; `old` (optional) is the old value an append returned; `return`
//! is `null` when the outcome is unknown.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{HistoryError, LineError, UnwritableError};
use crate::kv::{KvInput, KvOp, KvOperation, KvOutput};
use crate::model::Operation;

/// The environment variable naming the directory [`write_history_if_requested`] writes to.
pub const HISTORY_DIR_ENV: &str = "FLOTILLA_HISTORY_DIR";

/// One line, as written.
#[derive(Serialize)]
struct LineOut<'a> {
    client: u64,
    op: &'static str,
    key: &'a str,
    value: &'a str,
    call: u64,
    #[serde(rename = "return")]
    ret: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    old: Option<&'a str>,
}

/// One line, as read. Unknown fields are ignored so that later writers can add some.
#[derive(Deserialize)]
struct LineIn {
    client: u64,
    op: String,
    key: String,
    value: String,
    call: u64,
    /// Double `Option` so that a missing `return` is an error while `null` is "unknown".
    #[serde(rename = "return", default, deserialize_with = "present")]
    ret: Option<Option<u64>>,
    #[serde(default)]
    old: Option<String>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
    Option::<u64>::deserialize(d).map(Some)
}

/// Renders `history` as JSON Lines.
pub fn to_jsonl(history: &[KvOperation]) -> Result<String, HistoryError> {
    let mut out = String::new();
    for (index, op) in history.iter().enumerate() {
        let unwritable = |problem| HistoryError::Unwritable { index, problem };
        let line = line_out(op).map_err(unwritable)?;
        let json = serde_json::to_string(&line).map_err(|e| unwritable(e.into()))?;
        out.push_str(&json);
        out.push('\n');
    }
    Ok(out)
}

fn line_out(op: &KvOperation) -> Result<LineOut<'_>, UnwritableError> {
    let unknown = op.output == KvOutput::Unknown || op.ret.is_none();
    let (value, old) = match (op.input.op, &op.output) {
        _ if unknown => (
            if op.input.op == KvOp::Get {
                ""
            } else {
                op.input.value.as_str()
            },
            None,
        ),
        (KvOp::Get, KvOutput::Value(read)) => (read.as_str(), None),
        (KvOp::Get, _) => return Err(UnwritableError::GetWithoutValue),
        (KvOp::Append, KvOutput::Value(old)) => (op.input.value.as_str(), Some(old.as_str())),
        (KvOp::Delete, _) => ("", None),
        (KvOp::Put | KvOp::Append, _) => (op.input.value.as_str(), None),
    };
    Ok(LineOut {
        client: op.client,
        op: op.input.op.name(),
        key: &op.input.key,
        value,
        call: op.call,
        ret: if unknown { None } else { op.ret },
        old,
    })
}

/// Parses JSON Lines (blank lines are skipped).
pub fn parse_jsonl(text: &str) -> Result<Vec<KvOperation>, HistoryError> {
    let mut history = Vec::new();
    for (i, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let line: LineIn = serde_json::from_str(text).map_err(|e| HistoryError::line(i + 1, e))?;
        history.push(operation(line).map_err(|m| HistoryError::line(i + 1, m))?);
    }
    Ok(history)
}

fn operation(line: LineIn) -> Result<KvOperation, LineError> {
    let op = match line.op.as_str() {
        "get" => KvOp::Get,
        "put" => KvOp::Put,
        "append" => KvOp::Append,
        "delete" => KvOp::Delete,
        other => return Err(LineError::UnknownOp { op: other.into() }),
    };
    let ret = line.ret.ok_or(LineError::MissingReturn)?;
    if let Some(r) = ret.filter(|&r| r < line.call) {
        let call = line.call;
        return Err(LineError::ReturnBeforeCall { ret: r, call });
    }
    if line.old.is_some() && (op != KvOp::Append || ret.is_none()) {
        return Err(LineError::MisplacedOld);
    }
    let output = match (ret, op) {
        (None, _) => KvOutput::Unknown,
        (Some(_), KvOp::Get) => KvOutput::Value(line.value.clone()),
        (Some(_), KvOp::Append) => line.old.map_or(KvOutput::Done, KvOutput::Value),
        (Some(_), KvOp::Put | KvOp::Delete) => KvOutput::Done,
    };
    // A get's `value` is its result and a delete has none: neither is an argument.
    let value = if matches!(op, KvOp::Get | KvOp::Delete) {
        String::new()
    } else {
        line.value
    };
    let input = KvInput {
        op,
        key: line.key,
        value,
    };
    Ok(Operation {
        client: line.client,
        input,
        call: line.call,
        output,
        ret,
    })
}

/// Writes `history` to `path` as JSON Lines.
pub fn write_jsonl(path: impl AsRef<Path>, history: &[KvOperation]) -> Result<(), HistoryError> {
    let path = path.as_ref();
    let text = to_jsonl(history)?;
    let mut file = std::fs::File::create(path).map_err(|e| HistoryError::io(path, e))?;
    file.write_all(text.as_bytes())
        .map_err(|e| HistoryError::io(path, e))
}

/// Reads a JSON Lines history from `path`.
pub fn read_jsonl(path: impl AsRef<Path>) -> Result<Vec<KvOperation>, HistoryError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| HistoryError::io(path, e))?;
    parse_jsonl(&text)
}

/// If `FLOTILLA_HISTORY_DIR` is set, writes `history` to `<dir>/<test>-seed<seed>.jsonl`
/// (creating the directory) and returns that path; otherwise does nothing.
///
/// Meant for tests, so a failure to write is reported on stderr rather than failing the test.
/// Characters of `test` other than letters, digits, `-`, `_` and `.` become `_`.
pub fn write_history_if_requested(
    test: &str,
    seed: u64,
    history: &[KvOperation],
) -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os(HISTORY_DIR_ENV)?);
    let name: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let path = dir.join(format!("{name}-seed{seed}.jsonl"));
    let written = std::fs::create_dir_all(&dir)
        .map_err(|e| HistoryError::io(&dir, e))
        .and_then(|()| write_jsonl(&path, history));
    match written {
        Ok(()) => Some(path),
        Err(e) => {
            eprintln!("flotilla-check: could not write the history of {test}: {e}");
            None
        }
    }
}
