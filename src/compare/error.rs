//! Error type of the comparator.
//!
//! Every variant that concerns a file carries the file's path, and every message names it, so
//! that `voxtrace compare` can print one line that says which file is at fault and why. All of
//! these errors map to exit code 2 ("could not compare"); see [`crate::compare::exit_code`].

use std::path::{Path, PathBuf};

/// Why a comparison could not be carried out (as opposed to "it ran and some tensors failed",
/// which is a [`crate::compare::Report`] whose `passed()` is false).
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// The path does not exist.
    #[error("{}: no such file or directory", path.display())]
    NotFound {
        /// The path that was given.
        path: PathBuf,
    },
    /// An operating-system error while opening, mapping or reading the file.
    #[error("{}: {context}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What was being done (for example `opening file`).
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid dump: unknown format, corrupt or truncated file, a header that
    /// does not parse, or a header whose sizes/offsets disagree with the file.
    #[error("{}: {detail}", path.display())]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// Human-readable cause.
        detail: String,
    },
    /// A tensor is stored with an element type the comparator cannot read (for example
    /// `F8_E4M3`, complex, strings, or a numpy `V2` blob).
    #[error("{}: tensor `{tensor}` has unsupported dtype {dtype}", path.display())]
    UnsupportedDtype {
        /// The file concerned.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The dtype as written in the file.
        dtype: String,
    },
    /// Reading a tensor's data failed after the header was accepted (truncated compressed
    /// stream, CRC error, I/O error).
    #[error("{}: reading tensor `{tensor}`: {detail}", path.display())]
    Read {
        /// The file concerned.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// Human-readable cause.
        detail: String,
    },
    /// The reference dump holds no tensors, so nothing would be compared (Polygraphy treats
    /// "no outputs compared" as a critical error too).
    #[error("{}: reference dump contains no tensors; nothing to compare", path.display())]
    EmptyReference {
        /// The reference file.
        path: PathBuf,
    },
    /// Invalid arguments (bad tolerance, bad `--tol` pattern, slice length not matching a shape).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// Writing a report file failed.
    #[error("{}: writing report: {detail}", path.display())]
    Write {
        /// The output file.
        path: PathBuf,
        /// Human-readable cause.
        detail: String,
    },
}

impl CompareError {
    pub(crate) fn format(path: &Path, detail: impl Into<String>) -> Self {
        CompareError::Format {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }

    pub(crate) fn io(path: &Path, context: &str, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            return CompareError::NotFound {
                path: path.to_path_buf(),
            };
        }
        CompareError::Io {
            path: path.to_path_buf(),
            context: context.to_string(),
            source,
        }
    }

    pub(crate) fn read(path: &Path, tensor: &str, detail: impl Into<String>) -> Self {
        CompareError::Read {
            path: path.to_path_buf(),
            tensor: tensor.to_string(),
            detail: detail.into(),
        }
    }

    /// The file this error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            CompareError::NotFound { path }
            | CompareError::Io { path, .. }
            | CompareError::Format { path, .. }
            | CompareError::UnsupportedDtype { path, .. }
            | CompareError::Read { path, .. }
            | CompareError::EmptyReference { path }
            | CompareError::Write { path, .. } => Some(path),
            CompareError::InvalidInput(_) => None,
        }
    }
}
