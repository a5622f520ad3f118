//! [`ReportError`]: what can go wrong reading the history or a check outcome, checking a run
//! against a baseline, or writing the report; each names the file or the bad option.

use std::path::PathBuf;

/// A report error. The message names the file (and line) or the option; the underlying cause,
/// if any, is the [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be read, created or appended to, or its JSON does not parse.
    #[error(transparent)]
    File(#[from] crate::io::FileError),
    /// A line of `history.jsonl` does not parse.
    #[error("{}:{line}: malformed history row", path.display())]
    MalformedRow {
        /// The history file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A file could not be written (atomic write).
    #[error(transparent)]
    Write(#[from] crate::io::WriteError),
    /// Bad check options or runs that cannot be compared (pinned id in neither run, no common
    /// system, a bad threshold).
    #[error("{0}")]
    Check(String),
    /// The report template failed to compile or render (a bug, never the data).
    #[error("{what}")]
    Template {
        /// `report template` or `rendering report.html`.
        what: &'static str,
        /// minijinja's error.
        #[source]
        source: minijinja::Error,
    },
}
