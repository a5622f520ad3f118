//! Readers for tensor dumps: safetensors files, `.npz` archives and folders of `.npy` files.
//!
//! A [`Dump`] is a named collection of tensors. Opening one reads and validates every header
//! (names, shapes, dtypes, byte ranges) but no tensor data; data is read one tensor (or one
//! chunk of a tensor) at a time, converted to `f64`.
//!
//! Formats:
//! - **safetensors** (`huggingface/safetensors`, `safetensors/src/tensor.rs`): memory-mapped;
//!   the header is validated by the `safetensors` crate (offsets must be contiguous and cover the
//!   data section exactly, sizes must match `shape × dtype`). `__metadata__` is exposed through
//!   [`Dump::metadata`]; `voxtrace.order` (a JSON array of names, "voxtrace trace v1") gives the
//!   execution order. Storage order is data-offset order.
//! - **`.npz`** (`numpy/lib/_npyio_impl.py`, `savez` / `savez_compressed`): a zip archive of
//!   `.npy` members. Stored (uncompressed, `np.savez`) members are memory-mapped; deflated
//!   members (`np.savez_compressed`) are decompressed as a stream, chunk by chunk. The tensor
//!   name is the member name without `.npy`. Storage order is archive order, which is the order
//!   of the keyword arguments given to `savez`.
//! - **folder of `.npy`** (`numpy/lib/format.py`, format versions 1.0–3.0): every `*.npy`
//!   file below the folder, recursively; the name is the relative path with `/` replaced by `.`
//!   and the `.npy` suffix removed (`model/layers/0.npy` → `model.layers.0`). Files that do
//!   not end in `.npy` and hidden entries (starting with `.`) are ignored. Storage order is
//!   *natural* name order (digit runs compare as numbers, so `layers.2` < `layers.10`), since a
//!   directory has no intrinsic order.
//!
//! Element types: `F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL`, plus `U16, U32, U64`.
//! npy files may be little- or big-endian and C or Fortran order (Fortran-order arrays are read
//! whole and transposed to C order, so they are the one case held fully in memory). numpy has no
//! bfloat16, so BF16 exists only in safetensors. Integers above 2^53 lose precision in `f64`.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use npyz::zip;
use serde::{Deserialize, Serialize};

use super::error::CompareError;

/// Element type of a stored tensor. Names follow safetensors (`F32`, `BF16`, `BOOL`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[allow(clippy::upper_case_acronyms)]
pub enum DType {
    /// IEEE 754 binary64.
    F64,
    /// IEEE 754 binary32.
    F32,
    /// IEEE 754 binary16.
    F16,
    /// bfloat16 (upper half of a binary32).
    BF16,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 16-bit integer.
    I16,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 64-bit integer.
    U64,
    /// Unsigned 32-bit integer.
    U32,
    /// Unsigned 16-bit integer.
    U16,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean stored as one byte (0 = false, anything else = true; compared as 0.0 / 1.0).
    BOOL,
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> usize {
        match self {
            DType::F64 | DType::I64 | DType::U64 => 8,
            DType::F32 | DType::I32 | DType::U32 => 4,
            DType::F16 | DType::BF16 | DType::I16 | DType::U16 => 2,
            DType::I8 | DType::U8 | DType::BOOL => 1,
        }
    }

    /// The safetensors spelling (`"F32"`, `"BOOL"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F64 => "F64",
            DType::F32 => "F32",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::I64 => "I64",
            DType::I32 => "I32",
            DType::I16 => "I16",
            DType::I8 => "I8",
            DType::U64 => "U64",
            DType::U32 => "U32",
            DType::U16 => "U16",
            DType::U8 => "U8",
            DType::BOOL => "BOOL",
        }
    }

    fn from_safetensors(d: safetensors::Dtype) -> Option<DType> {
        use safetensors::Dtype as S;
        Some(match d {
            S::F64 => DType::F64,
            S::F32 => DType::F32,
            S::F16 => DType::F16,
            S::BF16 => DType::BF16,
            S::I64 => DType::I64,
            S::I32 => DType::I32,
            S::I16 => DType::I16,
            S::I8 => DType::I8,
            S::U64 => DType::U64,
            S::U32 => DType::U32,
            S::U16 => DType::U16,
            S::U8 => DType::U8,
            S::BOOL => DType::BOOL,
            _ => return None,
        })
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shape and element type of one stored tensor. `shape` is in C (row-major) order, `[]` for a
/// scalar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorInfo {
    /// Dimensions, outermost first (e.g. `[batch, seq, d_model]`).
    pub shape: Vec<usize>,
    /// Stored element type.
    pub dtype: DType,
}

impl TensorInfo {
    /// Number of elements (product of `shape`; 1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// Which of the three container formats a [`Dump`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DumpFormat {
    /// A `.safetensors` file.
    Safetensors,
    /// A numpy `.npz` archive (`savez` or `savez_compressed`).
    Npz,
    /// A folder of `.npy` files.
    NpyDir,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endian {
    Little,
    Big,
}

#[derive(Debug, Clone)]
enum Location {
    /// Raw element bytes at `offset` in a memory map (length `numel * dtype.size()`).
    Mapped { map: Arc<Mmap>, offset: usize },
    /// Deflated `.npz` member number `index`; must be decompressed as a stream.
    ZipStream { index: usize },
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    info: TensorInfo,
    endian: Endian,
    fortran: bool,
    /// The file holding the data (the dump path, or the `.npy` file inside a folder).
    file: PathBuf,
    loc: Location,
}

/// An opened dump. Cheap to share between threads (`&Dump` is `Sync`).
#[derive(Debug)]
pub struct Dump {
    path: PathBuf,
    format: DumpFormat,
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    metadata: BTreeMap<String, String>,
    declared_order: Option<Vec<String>>,
}

/// Metadata key holding the execution order ("voxtrace trace v1").
pub const ORDER_KEY: &str = "voxtrace.order";
/// Metadata key describing the producer ("voxtrace trace v1").
pub const SOURCE_KEY: &str = "voxtrace.source";

/// Number of elements decoded per block when streaming a tensor.
pub(crate) const BLOCK: usize = 16 * 1024;

impl Dump {
    /// Open a dump, detecting the format: a directory is a folder of `.npy` files; a file
    /// starting with the zip signature `PK\x03\x04` (or `PK\x05\x06` for an empty archive) is
    /// `.npz`; any other file is parsed as safetensors.
    ///
    /// Errors: [`CompareError::NotFound`] for a missing path, [`CompareError::Format`] for an
    /// empty, corrupt or truncated file or a header whose sizes disagree with the file,
    /// [`CompareError::UnsupportedDtype`] for element types listed as unsupported in the module
    /// docs, [`CompareError::Io`] for other operating-system errors. Every message names the
    /// file.
    pub fn open(path: &Path) -> Result<Dump, CompareError> {
        let meta = std::fs::metadata(path).map_err(|e| CompareError::io(path, "reading", e))?;
        if meta.is_dir() {
            return open_npy_dir(path);
        }
        if !meta.is_file() {
            return Err(CompareError::format(
                path,
                "not a regular file or directory",
            ));
        }
        if meta.len() == 0 {
            return Err(CompareError::format(path, "file is empty"));
        }
        let file = File::open(path).map_err(|e| CompareError::io(path, "opening file", e))?;
        // SAFETY: the map is read-only; as with every memory-mapped reader, the file must not be
        // truncated by another process while the dump is open.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| CompareError::io(path, "memory-mapping file", e))?;
        let map = Arc::new(map);
        if map.starts_with(b"PK\x03\x04") || map.starts_with(b"PK\x05\x06") {
            open_npz(path, map)
        } else if map.starts_with(b"\x93NUMPY") {
            Err(CompareError::format(
                path,
                "this is a single .npy file; pass a folder of .npy files, an .npz or a safetensors file",
            ))
        } else {
            open_safetensors(path, map)
        }
    }

    /// The path this dump was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container format.
    pub fn format(&self) -> DumpFormat {
        self.format
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if the dump holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True if a tensor of this name exists.
    pub fn contains(&self, name: &str) -> bool {
        self.by_name.contains_key(name)
    }

    /// safetensors `__metadata__` (empty for `.npz` and `.npy` folders).
    pub fn metadata(&self) -> &BTreeMap<String, String> {
        &self.metadata
    }

    /// The `voxtrace.source` metadata entry, if present.
    pub fn source(&self) -> Option<&str> {
        self.metadata.get(SOURCE_KEY).map(String::as_str)
    }

    /// The execution order declared in `voxtrace.order`, if present (names not present in the
    /// file and repeated names are dropped).
    pub fn declared_order(&self) -> Option<&[String]> {
        self.declared_order.as_deref()
    }

    /// Names in storage order: data-offset order (safetensors), archive order (`.npz`) or
    /// natural name order (`.npy` folder).
    pub fn names_in_storage_order(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// Names in execution order: the `voxtrace.order` list first, then any tensor it does not
    /// mention, in storage order. Without `voxtrace.order` this is storage order.
    pub fn names_in_order(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::with_capacity(self.entries.len());
        let mut seen = std::collections::HashSet::new();
        if let Some(order) = &self.declared_order {
            for n in order {
                if seen.insert(n.as_str()) {
                    out.push(n);
                }
            }
        }
        for e in &self.entries {
            if seen.insert(e.name.as_str()) {
                out.push(&e.name);
            }
        }
        out
    }

    /// Shape and dtype of a tensor, or `None` if there is no such name.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.by_name.get(name).map(|&i| &self.entries[i].info)
    }

    fn entry(&self, name: &str) -> Result<&Entry, CompareError> {
        self.by_name
            .get(name)
            .map(|&i| &self.entries[i])
            .ok_or_else(|| CompareError::read(&self.path, name, "no tensor of this name"))
    }

    /// Read a whole tensor as `f64`, in C order (length = product of the shape). Intended for
    /// tests and small tensors; the comparator itself streams.
    pub fn read_f64(&self, name: &str) -> Result<Vec<f64>, CompareError> {
        let e = self.entry(name)?;
        let mut out = vec![0.0; e.info.numel()];
        self.with_source(name, &mut |src| {
            let mut filled = 0;
            while filled < out.len() {
                let n = src.next_block(&mut out[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// Read a whole tensor as `f32` (values converted from `f64` with rounding), in C order.
    pub fn read_f32(&self, name: &str) -> Result<Vec<f32>, CompareError> {
        Ok(self.read_f64(name)?.into_iter().map(|v| v as f32).collect())
    }

    /// True if the tensor's data is read from a memory map (safetensors, `.npy` files, stored
    /// `.npz` members); false if it is decompressed as a stream (deflated `.npz` members) or
    /// the name is unknown.
    pub fn is_memory_mapped(&self, name: &str) -> bool {
        self.entry(name)
            .is_ok_and(|e| matches!(e.loc, Location::Mapped { .. }))
    }

    /// The raw little/big-endian bytes of a C-order memory-mapped tensor, for chunk-parallel
    /// reading. `None` for streamed or Fortran-order tensors.
    pub(crate) fn mapped(&self, name: &str) -> Option<MappedTensor<'_>> {
        let e = self.entry(name).ok()?;
        match &e.loc {
            Location::Mapped { map, offset } if !e.fortran => {
                let len = e.info.numel() * e.info.dtype.size();
                Some(MappedTensor {
                    bytes: &map[*offset..*offset + len],
                    dtype: e.info.dtype,
                    big_endian: e.endian == Endian::Big,
                    map,
                    offset: *offset,
                })
            }
            _ => None,
        }
    }

    /// Run `f` with a sequential block source over tensor `name` (C order).
    pub(crate) fn with_source(
        &self,
        name: &str,
        f: &mut dyn FnMut(&mut dyn BlockSource) -> Result<(), CompareError>,
    ) -> Result<(), CompareError> {
        let e = self.entry(name)?;
        let numel = e.info.numel();
        if e.fortran {
            // Read the whole array in file (column-major) order, then transpose to C order.
            let mut raw = vec![0.0; numel];
            self.with_raw_source(e, &mut |src| {
                let mut filled = 0;
                while filled < raw.len() {
                    let n = src.next_block(&mut raw[filled..])?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                Ok(())
            })?;
            let data = fortran_to_c(&raw, &e.info.shape);
            let mut src = VecSource { data, pos: 0 };
            return f(&mut src);
        }
        self.with_raw_source(e, f)
    }

    fn with_raw_source(
        &self,
        e: &Entry,
        f: &mut dyn FnMut(&mut dyn BlockSource) -> Result<(), CompareError>,
    ) -> Result<(), CompareError> {
        let numel = e.info.numel();
        match &e.loc {
            Location::Mapped { map, offset } => {
                let len = numel * e.info.dtype.size();
                let t = MappedTensor {
                    bytes: &map[*offset..*offset + len],
                    dtype: e.info.dtype,
                    big_endian: e.endian == Endian::Big,
                    map,
                    offset: *offset,
                };
                let mut src = MappedSource { t, pos: 0 };
                let out = f(&mut src);
                t.release(0, numel);
                out
            }
            Location::ZipStream { index } => {
                let file = File::open(&e.file)
                    .map_err(|err| CompareError::io(&e.file, "opening file", err))?;
                let mut archive = zip::ZipArchive::new(file)
                    .map_err(|err| CompareError::format(&e.file, format!("invalid zip: {err}")))?;
                let mut member = archive.by_index(*index).map_err(|err| {
                    CompareError::read(&e.file, &e.name, format!("opening zip member: {err}"))
                })?;
                let pre = npy_header_guard(&mut member, &e.file, &e.name)?;
                npyz::NpyHeader::from_reader(std::io::Cursor::new(pre).chain(&mut member))
                    .map_err(|err| {
                        CompareError::read(&e.file, &e.name, format!("npy header: {err}"))
                    })?;
                let mut src = StreamSource {
                    reader: &mut member,
                    dtype: e.info.dtype,
                    big_endian: e.endian == Endian::Big,
                    remaining: numel,
                    buf: Vec::new(),
                    file: &e.file,
                    name: &e.name,
                };
                f(&mut src)
            }
        }
    }
}

/// A sequential source of `f64` values.
pub(crate) trait BlockSource {
    /// Fill up to `out.len()` values; returns how many were written (0 at the end).
    fn next_block(&mut self, out: &mut [f64]) -> Result<usize, CompareError>;
}

/// The raw bytes of one C-order tensor in a memory map.
#[derive(Clone, Copy)]
pub(crate) struct MappedTensor<'a> {
    pub bytes: &'a [u8],
    pub dtype: DType,
    pub big_endian: bool,
    map: &'a Mmap,
    offset: usize,
}

impl<'a> MappedTensor<'a> {
    /// Tell the kernel that elements `start .. start + len` will not be read again, so their
    /// pages leave this process's resident set (they stay in the page cache). Keeps the
    /// resident memory of a comparison small however large the dumps are. Best effort.
    pub fn release(&self, start: usize, len: usize) {
        #[cfg(unix)]
        {
            let s = self.dtype.size();
            // SAFETY: `DontNeed` on a read-only file mapping only drops page-table entries;
            // later reads fault the (unchanged) file contents back in. No reference into the
            // range is held by us past this point.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    self.offset + start * s,
                    len * s,
                )
            };
        }
        #[cfg(not(unix))]
        let _ = (start, len, self.map, self.offset);
    }

    /// Decode elements `start .. start + out.len()` into `out`.
    pub fn decode_range(&self, start: usize, out: &mut [f64]) {
        let s = self.dtype.size();
        decode(
            self.dtype,
            self.big_endian,
            &self.bytes[start * s..(start + out.len()) * s],
            out,
        );
    }
}

struct MappedSource<'a> {
    t: MappedTensor<'a>,
    pos: usize,
}

impl BlockSource for MappedSource<'_> {
    fn next_block(&mut self, out: &mut [f64]) -> Result<usize, CompareError> {
        let total = self.t.bytes.len() / self.t.dtype.size();
        let n = out.len().min(total - self.pos);
        self.t.decode_range(self.pos, &mut out[..n]);
        self.pos += n;
        Ok(n)
    }
}

struct VecSource {
    data: Vec<f64>,
    pos: usize,
}

impl BlockSource for VecSource {
    fn next_block(&mut self, out: &mut [f64]) -> Result<usize, CompareError> {
        let n = out.len().min(self.data.len() - self.pos);
        out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

struct StreamSource<'a, R: Read> {
    reader: R,
    dtype: DType,
    big_endian: bool,
    remaining: usize,
    buf: Vec<u8>,
    file: &'a Path,
    name: &'a str,
}

impl<R: Read> BlockSource for StreamSource<'_, R> {
    fn next_block(&mut self, out: &mut [f64]) -> Result<usize, CompareError> {
        let n = out.len().min(self.remaining);
        if n == 0 {
            return Ok(0);
        }
        let nbytes = n * self.dtype.size();
        self.buf.resize(nbytes, 0);
        self.reader.read_exact(&mut self.buf).map_err(|err| {
            let detail = if err.kind() == std::io::ErrorKind::UnexpectedEof {
                "data ends before the size given in the npy header (truncated)".to_string()
            } else {
                format!("decompressing: {err}")
            };
            CompareError::read(self.file, self.name, detail)
        })?;
        decode(self.dtype, self.big_endian, &self.buf, &mut out[..n]);
        self.remaining -= n;
        if self.remaining == 0 {
            // Drain the member so that the zip reader checks the CRC-32.
            let mut rest = [0u8; 64];
            loop {
                match self.reader.read(&mut rest) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(err) => {
                        return Err(CompareError::read(
                            self.file,
                            self.name,
                            format!("decompressing: {err}"),
                        ));
                    }
                }
            }
        }
        Ok(n)
    }
}

macro_rules! decode_as {
    ($bytes:expr, $out:expr, $n:literal, $conv:expr) => {
        for (o, c) in $out.iter_mut().zip($bytes.chunks_exact($n)) {
            let mut a = [0u8; $n];
            a.copy_from_slice(c);
            *o = $conv(a);
        }
    };
}

/// Decode `bytes` (exactly `out.len() * dtype.size()` long) into `out`.
pub(crate) fn decode(dtype: DType, big_endian: bool, bytes: &[u8], out: &mut [f64]) {
    debug_assert_eq!(bytes.len(), out.len() * dtype.size());
    match (dtype, big_endian) {
        (DType::F64, false) => decode_as!(bytes, out, 8, f64::from_le_bytes),
        (DType::F64, true) => decode_as!(bytes, out, 8, f64::from_be_bytes),
        (DType::F32, false) => decode_as!(bytes, out, 4, |a| f32::from_le_bytes(a) as f64),
        (DType::F32, true) => decode_as!(bytes, out, 4, |a| f32::from_be_bytes(a) as f64),
        (DType::F16, false) => {
            decode_as!(bytes, out, 2, |a| half::f16::from_le_bytes(a).to_f64())
        }
        (DType::F16, true) => {
            decode_as!(bytes, out, 2, |a| half::f16::from_be_bytes(a).to_f64())
        }
        (DType::BF16, false) => {
            decode_as!(bytes, out, 2, |a| half::bf16::from_le_bytes(a).to_f64())
        }
        (DType::BF16, true) => {
            decode_as!(bytes, out, 2, |a| half::bf16::from_be_bytes(a).to_f64())
        }
        (DType::I64, false) => decode_as!(bytes, out, 8, |a| i64::from_le_bytes(a) as f64),
        (DType::I64, true) => decode_as!(bytes, out, 8, |a| i64::from_be_bytes(a) as f64),
        (DType::U64, false) => decode_as!(bytes, out, 8, |a| u64::from_le_bytes(a) as f64),
        (DType::U64, true) => decode_as!(bytes, out, 8, |a| u64::from_be_bytes(a) as f64),
        (DType::I32, false) => decode_as!(bytes, out, 4, |a| i32::from_le_bytes(a) as f64),
        (DType::I32, true) => decode_as!(bytes, out, 4, |a| i32::from_be_bytes(a) as f64),
        (DType::U32, false) => decode_as!(bytes, out, 4, |a| u32::from_le_bytes(a) as f64),
        (DType::U32, true) => decode_as!(bytes, out, 4, |a| u32::from_be_bytes(a) as f64),
        (DType::I16, false) => decode_as!(bytes, out, 2, |a| i16::from_le_bytes(a) as f64),
        (DType::I16, true) => decode_as!(bytes, out, 2, |a| i16::from_be_bytes(a) as f64),
        (DType::U16, false) => decode_as!(bytes, out, 2, |a| u16::from_le_bytes(a) as f64),
        (DType::U16, true) => decode_as!(bytes, out, 2, |a| u16::from_be_bytes(a) as f64),
        (DType::I8, _) => decode_as!(bytes, out, 1, |a: [u8; 1]| a[0] as i8 as f64),
        (DType::U8, _) => decode_as!(bytes, out, 1, |a: [u8; 1]| a[0] as f64),
        (DType::BOOL, _) => decode_as!(bytes, out, 1, |a: [u8; 1]| if a[0] != 0 {
            1.0
        } else {
            0.0
        }),
    }
}

/// Transpose a column-major (Fortran) buffer of `shape` into row-major (C) order.
fn fortran_to_c(raw: &[f64], shape: &[usize]) -> Vec<f64> {
    let numel = raw.len();
    if shape.len() <= 1 {
        return raw.to_vec();
    }
    // Fortran strides: stride[0] = 1, stride[k] = stride[k-1] * shape[k-1].
    let mut fstride = vec![1usize; shape.len()];
    for k in 1..shape.len() {
        fstride[k] = fstride[k - 1] * shape[k - 1];
    }
    let mut out = Vec::with_capacity(numel);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..numel {
        let off: usize = idx.iter().zip(&fstride).map(|(i, s)| i * s).sum();
        out.push(raw[off]);
        // Increment the C-order multi-index (last axis fastest).
        for k in (0..shape.len()).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    out
}

fn open_safetensors(path: &Path, map: Arc<Mmap>) -> Result<Dump, CompareError> {
    let st = safetensors::SafeTensors::deserialize(&map[..])
        .map_err(|e| CompareError::format(path, format!("not a valid safetensors file: {e}")))?;
    let (_, header) = safetensors::SafeTensors::read_metadata(&map[..])
        .map_err(|e| CompareError::format(path, format!("not a valid safetensors file: {e}")))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let base = map.as_ptr() as usize;
    let mut entries = Vec::with_capacity(st.len());
    for (name, view) in st.iter() {
        let dtype = DType::from_safetensors(view.dtype()).ok_or_else(|| {
            CompareError::UnsupportedDtype {
                path: path.to_path_buf(),
                tensor: name.to_string(),
                dtype: format!("{:?}", view.dtype()),
            }
        })?;
        let offset = view.data().as_ptr() as usize - base;
        entries.push(Entry {
            name: name.to_string(),
            info: TensorInfo {
                shape: view.shape().to_vec(),
                dtype,
            },
            endian: Endian::Little,
            fortran: false,
            file: path.to_path_buf(),
            loc: Location::Mapped {
                map: map.clone(),
                offset,
            },
        });
    }
    // Data-offset order (the order the writer laid the tensors out in); ties (empty tensors)
    // broken by name for determinism.
    entries.sort_by(|a, b| {
        let oa = match a.loc {
            Location::Mapped { offset, .. } => offset,
            _ => 0,
        };
        let ob = match b.loc {
            Location::Mapped { offset, .. } => offset,
            _ => 0,
        };
        oa.cmp(&ob).then_with(|| a.name.cmp(&b.name))
    });
    let declared_order = match metadata.get(ORDER_KEY) {
        None => None,
        Some(s) => {
            let list: Vec<String> = serde_json::from_str(s).map_err(|e| {
                CompareError::format(
                    path,
                    format!("metadata `{ORDER_KEY}` is not a JSON array of strings: {e}"),
                )
            })?;
            Some(list)
        }
    };
    finish(
        path,
        DumpFormat::Safetensors,
        entries,
        metadata,
        declared_order,
    )
}

fn finish(
    path: &Path,
    format: DumpFormat,
    entries: Vec<Entry>,
    metadata: BTreeMap<String, String>,
    declared_order: Option<Vec<String>>,
) -> Result<Dump, CompareError> {
    let mut by_name = HashMap::with_capacity(entries.len());
    for (i, e) in entries.iter().enumerate() {
        if by_name.insert(e.name.clone(), i).is_some() {
            return Err(CompareError::format(
                path,
                format!("tensor name `{}` occurs more than once", e.name),
            ));
        }
    }
    let declared_order = declared_order.map(|list| {
        let mut seen = std::collections::HashSet::new();
        list.into_iter()
            .filter(|n| by_name.contains_key(n) && seen.insert(n.clone()))
            .collect()
    });
    Ok(Dump {
        path: path.to_path_buf(),
        format,
        entries,
        by_name,
        metadata,
        declared_order,
    })
}

/// Parsed npy header: element info plus where the data starts (relative to the header start).
struct NpyMeta {
    info: TensorInfo,
    endian: Endian,
    fortran: bool,
    header_len: usize,
}

/// Deepest bracket nesting accepted in an npy header's dict (numpy writes 2: the dict and
/// the shape tuple).
const NPY_MAX_NESTING: usize = 4;

/// Largest npy header accepted (numpy's reader refuses more than 10,000 bytes by default).
const NPY_MAX_HEADER: usize = 1 << 16;

/// Read an npy preamble and header (`\x93NUMPY`, version, length, the dict text) and refuse,
/// before `npyz` parses it, a header longer than [`NPY_MAX_HEADER`] or nesting brackets deeper
/// than [`NPY_MAX_NESTING`]: `npyz`'s header grammar (`py_literal`, a PEG parser) backtracks
/// exponentially on deeply nested dicts, so a damaged file could hang the reader (seen in
/// `tests/hostile_dumps.rs`). Returns the bytes read, for the caller to replay in front of
/// the rest of the stream; a preamble that is not npy's is returned as read, for `npyz` to
/// name the error.
fn npy_header_guard(r: &mut dyn Read, file: &Path, name: &str) -> Result<Vec<u8>, CompareError> {
    let mut pre = Vec::with_capacity(12);
    (&mut *r)
        .take(8)
        .read_to_end(&mut pre)
        .map_err(|e| CompareError::read(file, name, format!("npy preamble: {e}")))?;
    if pre.len() < 8 || &pre[..6] != b"\x93NUMPY" {
        return Ok(pre);
    }
    let len_bytes = if pre[6] == 1 { 2 } else { 4 };
    let mut len = Vec::new();
    (&mut *r)
        .take(len_bytes)
        .read_to_end(&mut len)
        .map_err(|e| CompareError::read(file, name, format!("npy header length: {e}")))?;
    pre.extend_from_slice(&len);
    if len.len() as u64 != len_bytes {
        return Ok(pre);
    }
    let header_len = len
        .iter()
        .rev()
        .fold(0usize, |a, &b| (a << 8) | usize::from(b));
    if header_len > NPY_MAX_HEADER {
        return Err(CompareError::format(
            file,
            format!("tensor `{name}`: npy header of {header_len} bytes (at most {NPY_MAX_HEADER})"),
        ));
    }
    let mut header = Vec::with_capacity(header_len);
    (&mut *r)
        .take(header_len as u64)
        .read_to_end(&mut header)
        .map_err(|e| CompareError::read(file, name, format!("npy header: {e}")))?;
    let (mut depth, mut deepest) = (0usize, 0usize);
    for &b in &header {
        match b {
            b'{' | b'[' | b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    if deepest > NPY_MAX_NESTING {
        return Err(CompareError::format(
            file,
            format!("tensor `{name}`: npy header nests brackets {deepest} deep (numpy writes 2)"),
        ));
    }
    pre.extend_from_slice(&header);
    Ok(pre)
}

fn parse_npy_header(
    bytes_or_reader: &mut dyn Read,
    file: &Path,
    name: &str,
) -> Result<NpyMeta, CompareError> {
    let pre = npy_header_guard(bytes_or_reader, file, name)?;
    let mut replay = std::io::Cursor::new(pre).chain(bytes_or_reader);
    let mut counting = CountingReader {
        inner: &mut replay,
        count: 0,
    };
    let header = npyz::NpyHeader::from_reader(&mut counting).map_err(|e| {
        CompareError::format(file, format!("tensor `{name}`: invalid npy header: {e}"))
    })?;
    let (dtype, endian) = match header.dtype() {
        npyz::DType::Plain(ts) => {
            let size = ts.size_field();
            let endian = match ts.endianness() {
                npyz::Endianness::Big => Endian::Big,
                _ => Endian::Little,
            };
            let dtype = match (ts.type_char(), size) {
                (npyz::TypeChar::Float, 8) => Some(DType::F64),
                (npyz::TypeChar::Float, 4) => Some(DType::F32),
                (npyz::TypeChar::Float, 2) => Some(DType::F16),
                (npyz::TypeChar::Int, 8) => Some(DType::I64),
                (npyz::TypeChar::Int, 4) => Some(DType::I32),
                (npyz::TypeChar::Int, 2) => Some(DType::I16),
                (npyz::TypeChar::Int, 1) => Some(DType::I8),
                (npyz::TypeChar::Uint, 8) => Some(DType::U64),
                (npyz::TypeChar::Uint, 4) => Some(DType::U32),
                (npyz::TypeChar::Uint, 2) => Some(DType::U16),
                (npyz::TypeChar::Uint, 1) => Some(DType::U8),
                (npyz::TypeChar::Bool, 1) => Some(DType::BOOL),
                _ => None,
            };
            match dtype {
                Some(d) => (d, endian),
                None => {
                    return Err(CompareError::UnsupportedDtype {
                        path: file.to_path_buf(),
                        tensor: name.to_string(),
                        dtype: ts.to_string(),
                    });
                }
            }
        }
        other => {
            return Err(CompareError::UnsupportedDtype {
                path: file.to_path_buf(),
                tensor: name.to_string(),
                dtype: other.descr(),
            });
        }
    };
    let shape: Vec<usize> = header
        .shape()
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| CompareError::format(file, format!("tensor `{name}`: shape too large")))?;
    shape
        .iter()
        .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| {
            CompareError::format(file, format!("tensor `{name}`: shape {shape:?} overflows"))
        })?;
    Ok(NpyMeta {
        info: TensorInfo { shape, dtype },
        endian,
        fortran: header.order() == npyz::Order::Fortran,
        header_len: counting.count,
    })
}

struct CountingReader<'a> {
    inner: &'a mut dyn Read,
    count: usize,
}

impl Read for CountingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n;
        Ok(n)
    }
}

/// The most a deflate stream can expand (zlib's technical note: 1032:1).
const MAX_DEFLATE_RATIO: u64 = 1032;

fn open_npz(path: &Path, map: Arc<Mmap>) -> Result<Dump, CompareError> {
    let file = File::open(path).map_err(|e| CompareError::io(path, "opening file", e))?;
    let mut archive = zip::ZipArchive::new(file)
        .map_err(|e| CompareError::format(path, format!("not a valid .npz (zip) archive: {e}")))?;
    let mut entries = Vec::new();
    for index in 0..archive.len() {
        let mut member = archive
            .by_index(index)
            .map_err(|e| CompareError::format(path, format!("zip member #{index}: {e}")))?;
        let Some(name) = member.name().strip_suffix(".npy").map(str::to_string) else {
            continue;
        };
        let stored = member.compression() == zip::CompressionMethod::Stored;
        let data_start = member.data_start();
        let member_size = member.size();
        // Deflate cannot expand more than 1032:1; a member declaring more is a zip bomb or a
        // corrupt archive, refused before anything is inflated.
        let packed = member.compressed_size();
        if member_size
            > packed
                .saturating_mul(MAX_DEFLATE_RATIO)
                .saturating_add(1024)
        {
            return Err(CompareError::format(
                path,
                format!(
                    "zip member `{}` declares {member_size} bytes from {packed} compressed bytes, \
                     beyond deflate's {MAX_DEFLATE_RATIO}:1 limit (a zip bomb or a corrupt archive)",
                    member.name()
                ),
            ));
        }
        let meta = parse_npy_header(&mut member, path, &name)?;
        let nbytes = (meta.info.numel() * meta.info.dtype.size()) as u64;
        let needed = meta.header_len as u64 + nbytes;
        if needed > member_size {
            return Err(CompareError::format(
                path,
                format!(
                    "tensor `{name}`: npy header announces {nbytes} data bytes but the member holds only {} (truncated or lying header)",
                    member_size.saturating_sub(meta.header_len as u64)
                ),
            ));
        }
        let loc = if stored {
            let offset = data_start as usize + meta.header_len;
            if offset as u64 + nbytes > map.len() as u64 {
                return Err(CompareError::format(
                    path,
                    format!("tensor `{name}`: data runs past the end of the file (truncated)"),
                ));
            }
            Location::Mapped {
                map: map.clone(),
                offset,
            }
        } else {
            Location::ZipStream { index }
        };
        entries.push(Entry {
            name,
            info: meta.info,
            endian: meta.endian,
            fortran: meta.fortran,
            file: path.to_path_buf(),
            loc,
        });
    }
    finish(path, DumpFormat::Npz, entries, BTreeMap::new(), None)
}

fn open_npy_dir(root: &Path) -> Result<Dump, CompareError> {
    let mut files = Vec::new();
    collect_npy(root, root, &mut files)?;
    files.sort_by(|a, b| natural_cmp(&a.0, &b.0));
    let mut entries = Vec::with_capacity(files.len());
    for (name, file_path) in files {
        let file =
            File::open(&file_path).map_err(|e| CompareError::io(&file_path, "opening file", e))?;
        let len = file
            .metadata()
            .map_err(|e| CompareError::io(&file_path, "reading metadata", e))?
            .len();
        if len == 0 {
            return Err(CompareError::format(&file_path, "file is empty"));
        }
        let mut f2 = &file;
        let meta = parse_npy_header(&mut f2, &file_path, &name)?;
        let nbytes = (meta.info.numel() * meta.info.dtype.size()) as u64;
        let available = len - meta.header_len as u64;
        if nbytes > available {
            return Err(CompareError::format(
                &file_path,
                format!(
                    "npy header announces {nbytes} data bytes but the file holds only {available} (truncated or lying header)"
                ),
            ));
        }
        (&file)
            .seek(SeekFrom::Start(0))
            .map_err(|e| CompareError::io(&file_path, "seeking", e))?;
        // SAFETY: read-only map; see `Dump::open`.
        let map = unsafe { Mmap::map(&file) }
            .map_err(|e| CompareError::io(&file_path, "memory-mapping file", e))?;
        entries.push(Entry {
            name,
            info: meta.info,
            endian: meta.endian,
            fortran: meta.fortran,
            file: file_path.clone(),
            loc: Location::Mapped {
                map: Arc::new(map),
                offset: meta.header_len,
            },
        });
    }
    finish(root, DumpFormat::NpyDir, entries, BTreeMap::new(), None)
}

fn collect_npy(
    root: &Path,
    dir: &Path,
    out: &mut Vec<(String, PathBuf)>,
) -> Result<(), CompareError> {
    let rd = std::fs::read_dir(dir).map_err(|e| CompareError::io(dir, "listing folder", e))?;
    for item in rd {
        let item = item.map_err(|e| CompareError::io(dir, "listing folder", e))?;
        let p = item.path();
        let fname = item.file_name();
        let fname = fname.to_string_lossy();
        if fname.starts_with('.') {
            continue;
        }
        let ft = std::fs::metadata(&p).map_err(|e| CompareError::io(&p, "reading metadata", e))?;
        if ft.is_dir() {
            collect_npy(root, &p, out)?;
        } else if ft.is_file() && fname.ends_with(".npy") {
            let rel = p.strip_prefix(root).unwrap_or(&p);
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if let Some(last) = parts.last_mut() {
                last.truncate(last.len() - ".npy".len());
            }
            out.push((parts.join("."), p));
        }
    }
    Ok(())
}

/// Natural ("human") order: runs of ASCII digits compare by numeric value, everything else by
/// character, so `layers.2.out` < `layers.10.out`.
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    while i < ab.len() && j < bb.len() {
        if ab[i].is_ascii_digit() && bb[j].is_ascii_digit() {
            let si = i;
            while i < ab.len() && ab[i].is_ascii_digit() {
                i += 1;
            }
            let sj = j;
            while j < bb.len() && bb[j].is_ascii_digit() {
                j += 1;
            }
            let na = a[si..i].trim_start_matches('0');
            let nb = b[sj..j].trim_start_matches('0');
            let ord = na
                .len()
                .cmp(&nb.len())
                .then_with(|| na.cmp(nb))
                .then_with(|| (i - si).cmp(&(j - sj)));
            if ord != Ordering::Equal {
                return ord;
            }
        } else {
            let ord = ab[i].cmp(&bb[j]);
            if ord != Ordering::Equal {
                return ord;
            }
            i += 1;
            j += 1;
        }
    }
    (ab.len() - i).cmp(&(bb.len() - j))
}
