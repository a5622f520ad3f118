//! Streaming writer for `trace-v1` safetensors dumps.
//!
//! Tensor bytes are appended to a temporary data file as they are recorded (only names, shapes
//! and offsets stay in memory). [`TraceWriter::finish`] writes header + data into a second
//! temporary file in the destination folder and renames it over the destination, so an
//! interrupted run never leaves a half-written dump and never clobbers an existing one.

use super::{Captured, CapturedData};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Errors while recording or writing a trace.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// An I/O error on the named file.
    #[error("{path}: {source}")]
    Io {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A tensor could not be read back from the backend.
    #[error("tensor {name}: {message}")]
    Data {
        /// Capture name.
        name: String,
        /// What went wrong.
        message: String,
    },
    /// The same capture name was recorded twice (a model bug: names must be unique).
    #[error("capture name recorded twice: {0}")]
    Duplicate(String),
    /// A previous panic poisoned the tracer lock.
    #[error("tracer state poisoned by an earlier panic")]
    Poisoned,
}

struct Entry {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    start: u64,
    end: u64,
}

/// Write `values` little-endian to `w`; returns the number of bytes written.
fn write_le<T: bytemuck::Pod, const N: usize>(
    w: &mut impl Write,
    values: &[T],
    to_le: impl Fn(&T) -> [u8; N],
) -> std::io::Result<usize> {
    if cfg!(target_endian = "little") {
        let bytes: &[u8] = bytemuck::cast_slice(values);
        w.write_all(bytes)?;
        Ok(bytes.len())
    } else {
        let bytes: Vec<u8> = values.iter().flat_map(to_le).collect();
        w.write_all(&bytes)?;
        Ok(bytes.len())
    }
}

/// Appends tensors to a temporary file and finalises a `trace-v1` safetensors dump.
pub struct TraceWriter {
    out: PathBuf,
    source: String,
    data: BufWriter<File>,
    data_path: tempfile::TempPath,
    entries: Vec<Entry>,
    seen: std::collections::HashSet<String>,
    offset: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TraceError + '_ {
    move |source| TraceError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn parent_dir(out: &Path) -> PathBuf {
    match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

impl TraceWriter {
    /// Start a dump that will be written to `out`; `source` goes to `voxtrace.source`.
    ///
    /// # Errors
    /// The temporary data file cannot be created next to `out`.
    pub fn create(out: &Path, source: &str) -> Result<Self, TraceError> {
        let dir = parent_dir(out);
        let tmp = tempfile::Builder::new()
            .prefix(".voxtrace-trace-")
            .suffix(".data")
            .tempfile_in(&dir)
            .map_err(io(&dir))?;
        let (file, data_path) = tmp.into_parts();
        Ok(Self {
            out: out.to_path_buf(),
            source: source.to_string(),
            data: BufWriter::new(file),
            data_path,
            entries: Vec::new(),
            seen: Default::default(),
            offset: 0,
        })
    }

    /// Append one tensor (little-endian bytes).
    ///
    /// # Errors
    /// I/O errors on the temporary file; a name recorded twice.
    pub fn append(&mut self, t: &Captured) -> Result<(), TraceError> {
        if !self.seen.insert(t.name.clone()) {
            return Err(TraceError::Duplicate(t.name.clone()));
        }
        let path = self.data_path.to_path_buf();
        // safetensors is little-endian: on little-endian targets the values are written as
        // they are in memory (one copy into the buffered writer); elsewhere converted per value.
        let (dtype, written) = match &t.data {
            CapturedData::F32(v) => ("F32", write_le(&mut self.data, v, |x| x.to_le_bytes())),
            CapturedData::I64(v) => ("I64", write_le(&mut self.data, v, |x| x.to_le_bytes())),
        };
        let len = written.map_err(io(&path))?;
        let start = self.offset;
        self.offset += len as u64;
        self.entries.push(Entry {
            name: t.name.clone(),
            dtype,
            shape: t.shape.clone(),
            start,
            end: self.offset,
        });
        Ok(())
    }

    /// Write the safetensors file: header (with `voxtrace.order`) then the data, into a
    /// temporary file that is renamed to the destination.
    ///
    /// # Errors
    /// I/O errors, naming the file.
    pub fn finish(mut self) -> Result<(), TraceError> {
        let data_path = self.data_path.to_path_buf();
        self.data.flush().map_err(io(&data_path))?;
        let mut data_file = self.data.into_inner().map_err(|e| TraceError::Io {
            path: data_path.clone(),
            source: e.into_error(),
        })?;

        let header_bytes = header(&self.entries, &self.source);

        // Symlinks at `out` are followed and FIFOs / character devices written in place
        // (crate::io::OutputFile); a regular file is replaced atomically.
        let write_err = |e: crate::io::WriteError| TraceError::Io {
            path: e.path,
            source: std::io::Error::other(e.detail),
        };
        let mut out = crate::io::OutputFile::create(&self.out).map_err(write_err)?;
        {
            let out_path = self.out.clone();
            let mut w = BufWriter::new(out.file());
            w.write_all(&(header_bytes.len() as u64).to_le_bytes())
                .map_err(io(&out_path))?;
            w.write_all(&header_bytes).map_err(io(&out_path))?;
            data_file.seek(SeekFrom::Start(0)).map_err(io(&data_path))?;
            std::io::copy(&mut data_file, &mut w).map_err(io(&out_path))?;
            w.flush().map_err(io(&out_path))?;
        }
        out.commit().map_err(write_err)?;
        Ok(())
    }
}

/// The safetensors header of a `trace-v1` dump (`voxtrace.order`, `.format`, `.source`
/// metadata, then the tensors), padded with spaces to a multiple of 8 bytes.
fn header(entries: &[Entry], source: &str) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let order: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut meta = BTreeMap::new();
    meta.insert("voxtrace.format".to_string(), "trace-v1".to_string());
    meta.insert(
        "voxtrace.order".to_string(),
        serde_json::to_string(&order).expect("strings serialise"),
    );
    meta.insert("voxtrace.source".to_string(), source.to_string());
    header.insert(
        "__metadata__".to_string(),
        serde_json::to_value(&meta).expect("map serialises"),
    );
    for e in entries {
        header.insert(
            e.name.clone(),
            serde_json::json!({
                "dtype": e.dtype,
                "shape": e.shape,
                "data_offsets": [e.start, e.end],
            }),
        );
    }
    let mut header_bytes = serde_json::to_vec(&header).expect("header serialises");
    // Pad the header with spaces to a multiple of 8 bytes, as the safetensors crate does.
    while !header_bytes.len().is_multiple_of(8) {
        header_bytes.push(b' ');
    }
    header_bytes
}

/// The whole `trace-v1` safetensors file of `tensors` (in recording order, as
/// [`super::Tracer::finish`] of an in-memory tracer returns them) in memory, byte for byte what
/// [`TraceWriter`] writes for the same tensors: for the browser build, which has no file system
/// (the page offers the bytes as a download). The result is allocated once at its final size
/// (a Whisper tiny.en trace is ~620 MB, and a 32-bit wasm memory holds 4 GiB).
///
/// # Errors
/// [`TraceError::Duplicate`]: a name recorded twice.
pub fn trace_v1_bytes(tensors: &[Captured], source: &str) -> Result<Vec<u8>, TraceError> {
    let mut entries = Vec::with_capacity(tensors.len());
    let mut seen = std::collections::HashSet::new();
    let mut offset = 0u64;
    for t in tensors {
        if !seen.insert(t.name.as_str()) {
            return Err(TraceError::Duplicate(t.name.clone()));
        }
        let (dtype, len) = match &t.data {
            CapturedData::F32(v) => ("F32", std::mem::size_of_val(v.as_slice())),
            CapturedData::I64(v) => ("I64", std::mem::size_of_val(v.as_slice())),
        };
        entries.push(Entry {
            name: t.name.clone(),
            dtype,
            shape: t.shape.clone(),
            start: offset,
            end: offset + len as u64,
        });
        offset += len as u64;
    }
    let header_bytes = header(&entries, source);
    let mut out = Vec::with_capacity(8 + header_bytes.len() + offset as usize);
    out.extend_from_slice(&(header_bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(&header_bytes);
    for t in tensors {
        let written = match &t.data {
            CapturedData::F32(v) => write_le(&mut out, v, |x| x.to_le_bytes()),
            CapturedData::I64(v) => write_le(&mut out, v, |x| x.to_le_bytes()),
        };
        written.expect("writing to a Vec cannot fail");
    }
    Ok(out)
}
