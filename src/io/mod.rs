//! Files in and out: the one output writer ([`OutputFile`], [`write_atomic`]: atomic for
//! regular files, symlinks followed, FIFOs and character devices written in place, the umask's
//! mode) and the one whole-file safetensors writer every tool uses. Lowest layer: imports
//! nothing else from the crate.

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

/// Where an output path leads, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputTarget {
    /// A regular file, or no file yet, at this path (symlinks already followed): written to a
    /// temporary file in the same folder and renamed over it.
    Replace(PathBuf),
    /// A FIFO or character device (e.g. `/dev/stdout`, a named pipe): written in place, never
    /// replaced by a regular file.
    InPlace(PathBuf),
}

/// Symlinks followed at most this many times (the kernel's own limit is 40).
const MAX_SYMLINK_HOPS: usize = 40;

/// Decide how to write `path`: a symlink is followed to its target (also a dangling one, which
/// is then created), a regular file or a missing one is replaced atomically, a FIFO or
/// character device is written in place.
///
/// # Errors
/// [`WriteError`] naming `path`: it is a folder, a block device or a socket; a symlink loop;
/// the folder that would hold it does not exist.
pub fn output_target(path: &Path) -> Result<OutputTarget, WriteError> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINK_HOPS {
        let meta = match std::fs::symlink_metadata(&current) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let dir = parent_of(&current);
                if !dir.is_dir() {
                    return Err(WriteError::new(
                        path,
                        format!("folder {} does not exist", dir.display()),
                    ));
                }
                return Ok(OutputTarget::Replace(current));
            }
            Err(e) => return Err(WriteError::new(path, format!("cannot inspect: {e}"))),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let link = std::fs::read_link(&current)
                .map_err(|e| WriteError::new(path, format!("cannot read the symlink: {e}")))?;
            current = if link.is_absolute() {
                link
            } else {
                parent_of(&current).join(link)
            };
            continue;
        }
        if kind.is_file() {
            return Ok(OutputTarget::Replace(current));
        }
        if kind.is_dir() {
            return Err(WriteError::new(path, "is a folder, not a file"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::FileTypeExt;
            if kind.is_fifo() || kind.is_char_device() {
                return Ok(OutputTarget::InPlace(current));
            }
            if kind.is_block_device() {
                return Err(WriteError::new(
                    path,
                    "is a block device; refusing to write to it",
                ));
            }
            if kind.is_socket() {
                return Err(WriteError::new(path, "is a socket, not a file"));
            }
        }
        return Err(WriteError::new(
            path,
            "is a special file; refusing to write to it",
        ));
    }
    Err(WriteError::new(
        path,
        format!("more than {MAX_SYMLINK_HOPS} symlinks (a loop?)"),
    ))
}

/// `text` made safe to print on a terminal: control characters (C0 including newline, tab and
/// ESC, DEL, C1) and Unicode bidirectional controls (U+061C, U+200E, U+200F,
/// U+202A..=U+202E, U+2066..=U+2069) are written as escapes (`\n`, `\t`, `\r`, otherwise
/// `\u{1b}`), everything else is kept, so a tensor name or path read from a file cannot move
/// the cursor, recolour the terminal, forge table lines or reorder the text around it.
/// Borrowed when nothing needed escaping.
pub fn terminal_safe(text: &str) -> std::borrow::Cow<'_, str> {
    fn unsafe_char(c: char) -> bool {
        c.is_control()
            || matches!(
                c,
                '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
            )
    }
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// What a path that is not a regular file is, in words (`"a folder"`, `"a FIFO (named
/// pipe)"`, ...), or `None` for a regular file. `meta` should come from [`std::fs::metadata`]
/// (symlinks followed).
///
/// Readers check this before opening an input: opening a FIFO blocks until some process opens
/// it for writing (forever if none does), and a folder or device is no input file.
pub fn special_file_kind(meta: &std::fs::Metadata) -> Option<&'static str> {
    let kind = meta.file_type();
    if kind.is_file() {
        return None;
    }
    if kind.is_dir() {
        return Some("a folder");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return Some("a FIFO (named pipe)");
        }
        if kind.is_socket() {
            return Some("a socket");
        }
        if kind.is_char_device() {
            return Some("a character device");
        }
        if kind.is_block_device() {
            return Some("a block device");
        }
    }
    Some("a special file")
}

/// The folder holding `path` (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The permission bits a newly created regular file gets: `0666` less the process umask, as
/// `open(2)` would give (read from `/proc/self/status` on Linux; `0644` where it cannot be read).
pub fn new_file_mode() -> u32 {
    let umask = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022);
    0o666 & !umask
}

/// An output file being written: a temporary file that [`OutputFile::commit`] puts in place
/// (renamed over a regular file, copied into a FIFO or character device), so an interrupted
/// run never leaves a half-written file and never clobbers the previous one. Dropping it
/// without committing removes the temporary file.
#[derive(Debug)]
pub struct OutputFile {
    /// The path the user gave (for messages).
    path: PathBuf,
    target: OutputTarget,
    tmp: tempfile::NamedTempFile,
}

impl OutputFile {
    /// Start writing `path` (see [`output_target`] for symlinks and special files).
    ///
    /// # Errors
    /// The errors of [`output_target`]; the temporary file cannot be created.
    pub fn create(path: &Path) -> Result<Self, WriteError> {
        let target = output_target(path)?;
        let tmp = match &target {
            OutputTarget::Replace(p) => {
                let dir = parent_of(p);
                tempfile::Builder::new()
                    .prefix(".voxtrace-")
                    .tempfile_in(&dir)
                    .map_err(|e| {
                        WriteError::new(
                            path,
                            format!("creating a temporary file in {}: {e}", dir.display()),
                        )
                    })?
            }
            // The folder of a device or FIFO (e.g. /dev) is not ours to write in.
            OutputTarget::InPlace(_) => tempfile::NamedTempFile::new()
                .map_err(|e| WriteError::new(path, format!("creating a temporary file: {e}")))?,
        };
        Ok(Self {
            path: path.to_path_buf(),
            target,
            tmp,
        })
    }

    /// Where the bytes will go.
    pub fn target(&self) -> &OutputTarget {
        &self.target
    }

    /// The temporary file to write into.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// Put the written bytes in place: flush, give the file the umask's mode (`0666 & !umask`,
    /// 0644 by default) and rename it over the target; for a FIFO or character device, copy the
    /// bytes into it instead.
    ///
    /// # Errors
    /// [`WriteError`] naming the path: flushing, the rename or the copy failed.
    pub fn commit(mut self) -> Result<(), WriteError> {
        let path = self.path.clone();
        let err = |what: &str, e: std::io::Error| WriteError::new(&path, format!("{what}: {e}"));
        self.tmp
            .as_file_mut()
            .flush()
            .and_then(|_| self.tmp.as_file().sync_all())
            .map_err(|e| err("writing the temporary file", e))?;
        match self.target {
            OutputTarget::Replace(target) => {
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    self.tmp
                        .as_file()
                        .set_permissions(std::fs::Permissions::from_mode(new_file_mode()))
                        .map_err(|e| err("setting permissions", e))?;
                }
                self.tmp
                    .persist(&target)
                    .map_err(|e| err("renaming the temporary file", e.error))?;
            }
            OutputTarget::InPlace(target) => {
                use std::io::Seek;
                let mut src = self.tmp.reopen().map_err(|e| err("reading back", e))?;
                src.seek(std::io::SeekFrom::Start(0))
                    .map_err(|e| err("reading back", e))?;
                let mut dst = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(|e| err("opening for writing", e))?;
                std::io::copy(&mut src, &mut dst).map_err(|e| err("writing", e))?;
                dst.flush().map_err(|e| err("writing", e))?;
            }
        }
        Ok(())
    }
}

/// Write `bytes` to `path` through an [`OutputFile`]: atomically for a regular file (symlinks
/// followed, the link kept), in place for a FIFO or character device.
///
/// # Errors
/// [`WriteError`] naming `path`: the folder does not exist or is not writable, the path is a
/// folder or another special file, the disk is full, the rename fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    let mut out = OutputFile::create(path)?;
    out.file()
        .write_all(bytes)
        .map_err(|e| WriteError::new(path, format!("writing the temporary file: {e}")))?;
    out.commit()
}

/// An exclusive lock on the folder holding a file, held until dropped: what serialises the
/// read-modify-write cycles of a shared file (e.g. `reports/history.jsonl`, rewritten with
/// [`write_atomic`] by concurrent runs) between threads and processes. The rename of
/// [`write_atomic`] replaces the file itself, so the lock is taken on what does not change: on
/// Unix the folder itself (`flock(2)` on it, through [`std::fs::File::lock`]), elsewhere a
/// `.voxtrace.lock` file in it. The lock is advisory: it only excludes others taking it.
#[derive(Debug)]
pub struct FolderLock {
    _file: std::fs::File,
}

/// Take the [`FolderLock`] of the folder that holds `path`'s target (symlinks followed, as
/// [`write_atomic`] follows them), waiting for whoever holds it.
///
/// # Errors
/// [`WriteError`] naming `path`: the errors of [`output_target`] (e.g. the folder does not
/// exist); the folder cannot be opened or locked.
pub fn lock_folder_of(path: &Path) -> Result<FolderLock, WriteError> {
    let target = match output_target(path)? {
        OutputTarget::Replace(p) | OutputTarget::InPlace(p) => p,
    };
    let dir = parent_of(&target);
    #[cfg(unix)]
    let file = std::fs::File::open(&dir);
    #[cfg(not(unix))]
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".voxtrace.lock"));
    let file = file.map_err(|e| {
        WriteError::new(
            path,
            format!("cannot open {} to lock it: {e}", dir.display()),
        )
    })?;
    file.lock()
        .map_err(|e| WriteError::new(path, format!("cannot lock {}: {e}", dir.display())))?;
    Ok(FolderLock { _file: file })
}

/// The bytes of a whole input file: memory-mapped with the `native` feature, read into memory
/// without it (the browser build has no `mmap`; there checkpoints usually come as bytes anyway).
#[cfg(feature = "native")]
pub type FileBytes = memmap2::Mmap;
/// The bytes of a whole input file: memory-mapped with the `native` feature, read into memory
/// without it (the browser build has no `mmap`; there checkpoints usually come as bytes anyway).
#[cfg(not(feature = "native"))]
pub type FileBytes = Vec<u8>;

/// Map (with `native`) or read `file`, opened read-only by the caller, whole.
///
/// # Errors
/// The operating system's error: the file cannot be mapped or read.
pub fn map_file(file: &std::fs::File) -> std::io::Result<FileBytes> {
    #[cfg(feature = "native")]
    {
        // SAFETY: the file is opened read-only; as every memory-mapped loader (burn-store's
        // included), we rely on no other process truncating it while it is mapped.
        unsafe { memmap2::Mmap::map(file) }
    }
    #[cfg(not(feature = "native"))]
    {
        use std::io::Read;
        let mut bytes = Vec::new();
        let mut f = file;
        f.read_to_end(&mut bytes)?;
        Ok(bytes)
    }
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
