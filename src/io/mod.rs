//! Files in and out: the one atomic file writer and the one whole-file safetensors writer
//! every tool uses. Lowest layer: imports nothing else from the crate.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A file could not be written. The message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: {detail}", path.display())]
pub struct WriteError {
    /// The file that was to be written.
    pub path: PathBuf,
    /// What went wrong (the operating system's message included).
    pub detail: String,
}

impl WriteError {
    fn new(path: &Path, detail: impl Into<String>) -> Self {
        Self {
            path: path.to_path_buf(),
            detail: detail.into(),
        }
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, flushed, given mode
/// 0644 (Unix), then renamed over `path`, so an interrupted write never leaves a half-written
/// file and never clobbers the previous one.
///
/// # Errors
/// [`WriteError`] naming `path`: the folder does not exist or is not writable, the disk is
/// full, the rename fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(WriteError::new(
            path,
            format!("folder {} does not exist", dir.display()),
        ));
    }
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| {
        WriteError::new(
            path,
            format!("creating a temporary file in {}: {e}", dir.display()),
        )
    })?;
    tmp.write_all(bytes)
        .and_then(|_| tmp.as_file().sync_all())
        .map_err(|e| WriteError::new(path, format!("writing the temporary file: {e}")))?;
    // tempfile creates files with mode 0600; outputs are ordinary, world-readable files.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(|e| WriteError::new(path, format!("setting permissions: {e}")))?;
    }
    tmp.persist(path)
        .map_err(|e| WriteError::new(path, format!("renaming the temporary file: {}", e.error)))?;
    Ok(())
}

/// One tensor for [`write_safetensors`]: its name, element type, shape and little-endian bytes
/// (`shape.iter().product() * dtype.size()` of them).
#[derive(Debug, Clone)]
pub struct TensorBytes<'a> {
    /// Tensor name as stored in the file.
    pub name: String,
    /// Element type.
    pub dtype: safetensors::Dtype,
    /// Shape, outermost first.
    pub shape: Vec<usize>,
    /// Little-endian element bytes, row-major.
    pub data: std::borrow::Cow<'a, [u8]>,
}

impl<'a> TensorBytes<'a> {
    /// An f32 tensor from `values` (`[shape...]`, row-major).
    pub fn f32(name: impl Into<String>, shape: Vec<usize>, values: &'a [f32]) -> Self {
        let data = if cfg!(target_endian = "little") {
            std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
        } else {
            std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
        };
        Self {
            name: name.into(),
            dtype: safetensors::Dtype::F32,
            shape,
            data,
        }
    }
}

/// Write whole `tensors` (with optional `__metadata__` strings) as one safetensors file,
/// atomically (see [`write_atomic`]). The streaming writer for trace dumps is
/// `crate::trace::writer`; every other safetensors file this crate writes goes through here.
///
/// # Errors
/// [`WriteError`] naming `path`: a tensor whose byte count does not match its shape and dtype,
/// or any error of [`write_atomic`].
pub fn write_safetensors(
    path: &Path,
    tensors: &[TensorBytes<'_>],
    metadata: Option<std::collections::HashMap<String, String>>,
) -> Result<(), WriteError> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let view = safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data)
            .map_err(|e| WriteError::new(path, format!("tensor `{}`: {e}", t.name)))?;
        views.push((t.name.as_str(), view));
    }
    let bytes = safetensors::tensor::serialize(views, metadata)
        .map_err(|e| WriteError::new(path, format!("serializing safetensors: {e}")))?;
    write_atomic(path, &bytes)
}

/// A file could not be read, or its JSON could not be parsed or produced. The message names the
/// file and what failed; the operating system's or the parser's error is the
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Opening, reading, creating or appending failed.
    #[error("{}: {what}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// What failed, e.g. `cannot read`.
        what: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The JSON does not parse, or a value could not be serialised for it.
    #[error("{}: {what}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What failed, e.g. `malformed results.json`.
        what: &'static str,
        /// The parser's or serialiser's error.
        #[source]
        source: serde_json::Error,
    },
}

impl FileError {
    /// For `map_err`: [`FileError::Io`] naming `path` and `what` failed.
    pub fn io(path: &Path, what: &'static str) -> impl FnOnce(std::io::Error) -> FileError {
        let path = path.to_path_buf();
        move |source| FileError::Io { path, what, source }
    }

    /// For `map_err`: [`FileError::Json`] naming `path` and `what` failed.
    pub fn json(path: &Path, what: &'static str) -> impl FnOnce(serde_json::Error) -> FileError {
        let path = path.to_path_buf();
        move |source| FileError::Json { path, what, source }
    }
}
