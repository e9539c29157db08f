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
    #[error("line {line}: {message}")]
    Line {
        /// Which line.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// An operation of a history to be written cannot be represented in the file format.
    #[error("operation {index}: {message}")]
    Unwritable {
        /// Its index in the history.
        index: usize,
        /// Why.
        message: String,
    },
}

impl HistoryError {
    pub(crate) fn line(line: usize, message: impl Into<String>) -> Self {
        HistoryError::Line {
            line,
            message: message.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        HistoryError::Io {
            path: path.into(),
            source,
        }
    }
}
