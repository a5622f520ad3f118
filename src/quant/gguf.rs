//! GGUF files (llama.cpp / ggml's model container), version 3, read in place and written
//! atomically.
//!
//! Layout (little-endian throughout; `gguf-py`'s `GGUFWriter` / `GGUFReader` and ggml's
//! `gguf.cpp` are the references):
//! 1. magic `GGUF`, `u32` version, `u64` tensor count, `u64` metadata count;
//! 2. metadata: key (a string: `u64` length + bytes), `u32` value type, value; an array is `u32`
//!    element type, `u64` count, elements (arrays may nest);
//! 3. tensor infos: name (string), `u32` dimension count (at most 4), `u64` per dimension
//!    (`ne0`, the innermost, first), `u32` ggml type, `u64` offset into the data section;
//! 4. zero padding to the alignment (`general.alignment`, a `u32` power of two, default 32),
//!    then the data section; each tensor starts at an aligned offset.
//!
//! [`Gguf::parse`] reads a byte slice (a memory map from [`map_file`], usually) and returns
//! views: metadata values borrow the file (arrays are walked lazily, never copied) and each
//! [`TensorInfo`] names its byte range and borrows its bytes. Every count, length and offset is
//! checked against the bytes that are actually there before anything is allocated for it, so a
//! hostile file costs at most a small constant times its own header size in memory, and errors
//! ([`GgufError`]) name the file and the key or tensor. Versions 2 and 3 are read (they share
//! this layout, as in `gguf-py`); big-endian files are refused. Checks beyond `gguf-py`'s, as
//! ggml makes them: at most 4 dimensions, each below 2^63, rows a whole number of blocks, offsets
//! aligned; and tensors must lie inside the file and not overlap (ggml even requires them packed
//! in order; this reader does not).
//!
//! [`GgufWriter`] writes version 3 through [`crate::io::OutputFile`] (atomic for a regular
//! file, symlinks followed, FIFOs written in place), one tensor at a time, with `GGUFWriter`'s
//! layout: tensors in the given order, each padded to the alignment.

use super::GgmlType;
use crate::io::{OutputFile, WriteError};
use std::collections::HashSet;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// The first four bytes of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// The version [`GgufWriter`] writes.
pub const VERSION: u32 = 3;
/// Data alignment when `general.alignment` is absent (`GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u32 = 32;
/// The metadata key that sets the alignment (a `u32` power of two).
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Deepest nesting of metadata arrays accepted (arrays of arrays of ...).
pub const MAX_ARRAY_DEPTH: usize = 8;

/// Smallest metadata entry: empty key (8), type (4), a `u8` value (1).
const MIN_KV_BYTES: u64 = 13;
/// Smallest tensor info: empty name (8), `n_dims` (4), type (4), offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 24;

/// A metadata value type (`gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `u8` (0).
    U8,
    /// `i8` (1).
    I8,
    /// `u16` (2).
    U16,
    /// `i16` (3).
    I16,
    /// `u32` (4).
    U32,
    /// `i32` (5).
    I32,
    /// `f32` (6).
    F32,
    /// One byte, 0 or 1 (7).
    Bool,
    /// `u64` length + bytes (8); UTF-8 by convention, not checked here.
    String,
    /// Element type, `u64` count, elements (9).
    Array,
    /// `u64` (10).
    U64,
    /// `i64` (11).
    I64,
    /// `f64` (12).
    F64,
}

impl ValueType {
    /// The type's number in the file.
    pub const fn id(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }

    /// The type numbered `id`, `None` for an unknown number.
    pub const fn from_id(id: u32) -> Option<ValueType> {
        Some(match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// Bytes of one value of a fixed-size type; `None` for strings and arrays.
    pub const fn fixed_size(self) -> Option<u64> {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => Some(1),
            ValueType::U16 | ValueType::I16 => Some(2),
            ValueType::U32 | ValueType::I32 | ValueType::F32 => Some(4),
            ValueType::U64 | ValueType::I64 | ValueType::F64 => Some(8),
            ValueType::String | ValueType::Array => None,
        }
    }

    /// Fewest bytes one value of this type can take (a string its length, an array its
    /// element type and count).
    const fn min_size(self) -> u64 {
        match self.fixed_size() {
            Some(n) => n,
            None => match self {
                ValueType::String => 8,
                _ => 12,
            },
        }
    }
}

/// What is wrong with a GGUF file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GgufErrorKind {
    /// The file does not start with `GGUF`.
    #[error("not a GGUF file: it starts with {0:02x?}, not \"GGUF\"")]
    Magic(Vec<u8>),
    /// A version other than 2 or 3.
    #[error("GGUF version {0} is not supported (2 and 3 are)")]
    Version(u32),
    /// The version reads as a byte-swapped number.
    #[error("big-endian GGUF (version field {0:#010x}) is not supported")]
    BigEndian(u32),
    /// The file ends inside something.
    #[error("truncated: {what} needs {need} bytes at offset {offset}, the file has {len}")]
    Truncated {
        /// What was being read.
        what: String,
        /// Where.
        offset: u64,
        /// Bytes it needs.
        need: u64,
        /// File length.
        len: u64,
    },
    /// A count that the remaining bytes cannot hold.
    #[error(
        "{what}: {count} entries cannot fit in the {left} bytes left at offset {offset} (each \
         takes at least {min} bytes)"
    )]
    Count {
        /// What is counted.
        what: String,
        /// The count in the file.
        count: u64,
        /// Bytes left.
        left: u64,
        /// Where the entries start.
        offset: u64,
        /// Fewest bytes per entry.
        min: u64,
    },
    /// A metadata value type number that is not 0..=12.
    #[error("{what}: unknown value type {ty}")]
    ValueType {
        /// The key (and array element) concerned.
        what: String,
        /// The number.
        ty: u32,
    },
    /// A bool byte other than 0 or 1.
    #[error("{what}: bool byte {byte} is neither 0 nor 1")]
    Bool {
        /// The key concerned.
        what: String,
        /// The byte.
        byte: u8,
    },
    /// Arrays nested deeper than [`MAX_ARRAY_DEPTH`].
    #[error("{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}")]
    Nesting {
        /// The key concerned.
        what: String,
    },
    /// A key or tensor name that is not UTF-8.
    #[error("{what} is not UTF-8")]
    Utf8 {
        /// Which name.
        what: String,
    },
    /// The same key twice.
    #[error("metadata key {0:?} appears twice")]
    DuplicateKey(String),
    /// The same tensor name twice.
    #[error("tensor {0:?} appears twice")]
    DuplicateTensor(String),
    /// `general.alignment` of the wrong type or not a power of two.
    #[error("{ALIGNMENT_KEY}: {0}")]
    Alignment(String),
    /// A ggml type number this reader does not know.
    #[error("tensor {name:?}: unknown ggml type {ty}")]
    UnknownType {
        /// The tensor.
        name: String,
        /// The number.
        ty: u32,
    },
    /// Dimensions out of bounds, or a shape whose element or byte count overflows.
    #[error("tensor {name:?}: {detail}")]
    Shape {
        /// The tensor.
        name: String,
        /// What is wrong.
        detail: String,
    },
    /// An offset not a multiple of the alignment.
    #[error("tensor {name:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    Misaligned {
        /// The tensor.
        name: String,
        /// Its offset in the data section.
        offset: u64,
        /// The alignment.
        alignment: u64,
    },
    /// Tensor bytes past the end of the file.
    #[error(
        "tensor {name:?}: its {bytes} bytes at offset {offset} of the data section (file bytes \
         {start}..{end}) lie beyond the end of the file ({len} bytes)"
    )]
    OutOfFile {
        /// The tensor.
        name: String,
        /// Its byte count.
        bytes: u64,
        /// Its offset in the data section.
        offset: u64,
        /// Absolute start.
        start: u128,
        /// Absolute end.
        end: u128,
        /// File length.
        len: u64,
    },
    /// Two tensors share bytes.
    #[error(
        "tensors {first:?} (bytes {first_range:?}) and {second:?} (bytes {second_range:?}) overlap"
    )]
    Overlap {
        /// One tensor.
        first: String,
        /// Its file bytes.
        first_range: Range<usize>,
        /// The other.
        second: String,
        /// Its file bytes.
        second_range: Range<usize>,
    },
    /// The file could not be opened or mapped.
    #[error("{0}")]
    Io(String),
}

/// A GGUF file could not be read: the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {kind}", path.display())]
pub struct GgufError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong (boxed: errors stay small on the success path).
    pub kind: Box<GgufErrorKind>,
}

/// A metadata value, borrowing the file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetaValue<'a> {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// bool.
    Bool(bool),
    /// A string's bytes (UTF-8 by convention; see [`MetaValue::as_str`]).
    String(&'a [u8]),
    /// An array, walked lazily.
    Array(MetaArray<'a>),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
}

impl<'a> MetaValue<'a> {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::String(_) => ValueType::String,
            MetaValue::Array(_) => ValueType::Array,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F64(_) => ValueType::F64,
        }
    }

    /// A string value as UTF-8; `None` for another type or invalid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            MetaValue::String(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// An unsigned or non-negative signed integer value of any width as `u64`.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// A float value (`f32` widened) as `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// An array value.
    pub fn as_array(&self) -> Option<&MetaArray<'a>> {
        match self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }

    /// An owned copy, for [`GgufWriter`] (arrays copied element by element).
    pub fn to_value(&self) -> Value {
        match *self {
            MetaValue::U8(v) => Value::U8(v),
            MetaValue::I8(v) => Value::I8(v),
            MetaValue::U16(v) => Value::U16(v),
            MetaValue::I16(v) => Value::I16(v),
            MetaValue::U32(v) => Value::U32(v),
            MetaValue::I32(v) => Value::I32(v),
            MetaValue::F32(v) => Value::F32(v),
            MetaValue::Bool(v) => Value::Bool(v),
            MetaValue::String(b) => Value::String(b.to_vec()),
            MetaValue::Array(a) => Value::Array {
                elem: a.elem_type(),
                items: a.iter().map(|v| v.to_value()).collect(),
            },
            MetaValue::U64(v) => Value::U64(v),
            MetaValue::I64(v) => Value::I64(v),
            MetaValue::F64(v) => Value::F64(v),
        }
    }
}

/// A metadata array: its element type, length and encoded elements (checked when the file was
/// parsed), decoded one at a time by [`MetaArray::iter`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetaArray<'a> {
    elem: ValueType,
    len: u64,
    raw: &'a [u8],
}

impl<'a> MetaArray<'a> {
    /// Element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// Number of elements.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// No elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The encoded elements as they are in the file.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The elements, decoded in order.
    pub fn iter(&self) -> MetaArrayIter<'a> {
        MetaArrayIter {
            elem: self.elem,
            left: self.len,
            cur: Cursor::new(self.raw, Path::new("")),
        }
    }
}

/// Iterator over a [`MetaArray`]'s elements.
#[derive(Debug, Clone)]
pub struct MetaArrayIter<'a> {
    elem: ValueType,
    left: u64,
    cur: Cursor<'a, 'static>,
}

impl<'a> Iterator for MetaArrayIter<'a> {
    type Item = MetaValue<'a>;
    fn next(&mut self) -> Option<MetaValue<'a>> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // The bytes were checked when the file was parsed; a failure here cannot happen and
        // ends the iteration.
        match self.cur.value(self.elem, &|| String::new(), 0) {
            Ok(v) => Some(v),
            Err(_) => {
                self.left = 0;
                None
            }
        }
    }
}

/// One tensor of a parsed file: where its bytes are, borrowed.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo<'a> {
    /// Name.
    pub name: &'a str,
    /// ggml type.
    pub ty: GgmlType,
    /// Dimensions in ggml order: `dims[0]` (`ne0`) is the innermost, contiguous one. A numpy
    /// or PyTorch shape is this reversed ([`TensorInfo::shape`]).
    pub dims: Vec<u64>,
    /// Offset in the data section.
    pub offset: u64,
    /// Its bytes in the file (absolute).
    pub range: Range<usize>,
    /// Its bytes.
    pub data: &'a [u8],
}

impl TensorInfo<'_> {
    /// Row-major (numpy / PyTorch) shape: `dims` reversed.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }

    /// Number of elements (product of `dims`; 1 for no dimensions).
    pub fn n_elements(&self) -> u64 {
        // Checked when the file was parsed.
        self.dims.iter().product()
    }
}

/// A parsed GGUF file: header, metadata and tensor views over the bytes.
#[derive(Debug, Clone)]
pub struct Gguf<'a> {
    path: PathBuf,
    version: u32,
    alignment: u64,
    data_offset: u64,
    metadata: Vec<(&'a str, MetaValue<'a>)>,
    tensors: Vec<TensorInfo<'a>>,
}

/// Memory-map `path` for [`Gguf::parse`] (read it whole without the `native` feature:
/// [`crate::io::map_file`]).
///
/// # Errors
/// [`GgufError`] naming `path` with [`GgufErrorKind::Io`]: it cannot be opened or mapped.
pub fn map_file(path: &Path) -> Result<crate::io::FileBytes, GgufError> {
    let err = |e: std::io::Error| GgufError {
        path: path.to_path_buf(),
        kind: Box::new(GgufErrorKind::Io(e.to_string())),
    };
    let file = std::fs::File::open(path).map_err(err)?;
    crate::io::map_file(&file).map_err(err)
}

impl<'a> Gguf<'a> {
    /// Parse `bytes`, the whole of the file `path` (named in errors).
    ///
    /// # Errors
    /// [`GgufError`] naming `path` and the key or tensor: bad magic, unsupported version or
    /// byte order, truncation anywhere, counts or lengths the remaining bytes cannot hold,
    /// unknown value or ggml types, duplicate keys or tensors, a bad `general.alignment`,
    /// more than 4 dimensions, overflowing shapes, rows not whole blocks, misaligned offsets,
    /// tensors beyond the end of the file or overlapping.
    pub fn parse(bytes: &'a [u8], path: &Path) -> Result<Gguf<'a>, GgufError> {
        let mut cur = Cursor::new(bytes, path);
        let magic = cur.take(4, &|| "the magic".into())?;
        if magic != MAGIC {
            return Err(cur.err(GgufErrorKind::Magic(magic.to_vec())));
        }
        let version = cur.u32(&|| "the version".into())?;
        if version & 0xffff == 0 && version != 0 {
            return Err(cur.err(GgufErrorKind::BigEndian(version)));
        }
        if version != 2 && version != 3 {
            return Err(cur.err(GgufErrorKind::Version(version)));
        }
        let n_tensors = cur.u64(&|| "the tensor count".into())?;
        let n_kv = cur.u64(&|| "the metadata count".into())?;
        cur.check_count(n_kv, MIN_KV_BYTES, "metadata")?;
        cur.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor infos")?;

        let mut metadata: Vec<(&'a str, MetaValue<'a>)> = Vec::new();
        let mut keys = HashSet::new();
        for i in 0..n_kv {
            let key_bytes = cur.string(&|| format!("metadata entry {i}: the key"))?;
            let key = std::str::from_utf8(key_bytes).map_err(|_| {
                cur.err(GgufErrorKind::Utf8 {
                    what: format!("metadata entry {i}'s key"),
                })
            })?;
            let what = || format!("metadata key {key:?}");
            let ty = cur.u32(&what)?;
            let ty = ValueType::from_id(ty)
                .ok_or_else(|| cur.err(GgufErrorKind::ValueType { what: what(), ty }))?;
            let value = cur.value(ty, &what, 0)?;
            if !keys.insert(key) {
                return Err(cur.err(GgufErrorKind::DuplicateKey(key.to_string())));
            }
            metadata.push((key, value));
        }

        let alignment = match metadata.iter().find(|(k, _)| *k == ALIGNMENT_KEY) {
            None => u64::from(DEFAULT_ALIGNMENT),
            Some((_, MetaValue::U32(a))) if a.is_power_of_two() => u64::from(*a),
            Some((_, MetaValue::U32(a))) => {
                return Err(cur.err(GgufErrorKind::Alignment(format!(
                    "{a} is not a power of two"
                ))));
            }
            Some((_, v)) => {
                return Err(cur.err(GgufErrorKind::Alignment(format!(
                    "must be a u32, found {:?}",
                    v.value_type()
                ))));
            }
        };

        cur.check_count(n_tensors, MIN_TENSOR_INFO_BYTES, "tensor infos")?;
        struct Raw<'a> {
            name: &'a str,
            ty: GgmlType,
            dims: Vec<u64>,
            offset: u64,
            bytes: u64,
        }
        let mut raws: Vec<Raw<'a>> = Vec::new();
        let mut names = HashSet::new();
        for i in 0..n_tensors {
            let name_bytes = cur.string(&|| format!("tensor info {i}: the name"))?;
            let name = std::str::from_utf8(name_bytes).map_err(|_| {
                cur.err(GgufErrorKind::Utf8 {
                    what: format!("tensor info {i}'s name"),
                })
            })?;
            let what = || format!("tensor {name:?}");
            let shape_err = |detail: String| GgufErrorKind::Shape {
                name: name.to_string(),
                detail,
            };
            let n_dims = cur.u32(&what)?;
            if n_dims as usize > MAX_DIMS {
                return Err(cur.err(shape_err(format!(
                    "{n_dims} dimensions, at most {MAX_DIMS}"
                ))));
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                let d = cur.u64(&what)?;
                if d > i64::MAX as u64 {
                    return Err(cur.err(shape_err(format!("dimension {d} is at least 2^63"))));
                }
                dims.push(d);
            }
            let ty_id = cur.u32(&what)?;
            let offset = cur.u64(&what)?;
            let ty = GgmlType::from_id(ty_id).ok_or_else(|| {
                cur.err(GgufErrorKind::UnknownType {
                    name: name.to_string(),
                    ty: ty_id,
                })
            })?;
            let n = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| {
                    cur.err(shape_err(format!(
                        "dimensions {dims:?} hold more than 2^63 elements"
                    )))
                })?;
            let ne0 = dims.first().copied().unwrap_or(1);
            let block = u64::from(ty.block_size());
            if !ne0.is_multiple_of(block) {
                return Err(cur.err(shape_err(format!(
                    "{ne0} elements per row is not a multiple of {ty}'s block of {block}"
                ))));
            }
            // `n` is a whole number of blocks when `ne0` is (or when `n` is 0).
            let bytes = ty
                .bytes_for(n)
                .ok_or_else(|| cur.err(shape_err(format!("{n} elements overflow as {ty}"))))?;
            if offset % alignment != 0 {
                return Err(cur.err(GgufErrorKind::Misaligned {
                    name: name.to_string(),
                    offset,
                    alignment,
                }));
            }
            if !names.insert(name) {
                return Err(cur.err(GgufErrorKind::DuplicateTensor(name.to_string())));
            }
            raws.push(Raw {
                name,
                ty,
                dims,
                offset,
                bytes,
            });
        }

        let len = bytes.len() as u64;
        let data_offset = (cur.pos as u64).next_multiple_of(alignment);
        let mut tensors = Vec::with_capacity(raws.len());
        for r in raws {
            let start = u128::from(data_offset) + u128::from(r.offset);
            let end = start + u128::from(r.bytes);
            if end > u128::from(len) {
                return Err(cur.err(GgufErrorKind::OutOfFile {
                    name: r.name.to_string(),
                    bytes: r.bytes,
                    offset: r.offset,
                    start,
                    end,
                    len,
                }));
            }
            // Both fit in the file's length, hence in usize.
            let range = start as usize..end as usize;
            tensors.push(TensorInfo {
                name: r.name,
                ty: r.ty,
                dims: r.dims,
                offset: r.offset,
                data: &bytes[range.clone()],
                range,
            });
        }

        let mut order: Vec<usize> = (0..tensors.len())
            .filter(|&i| !tensors[i].range.is_empty())
            .collect();
        order.sort_by_key(|&i| tensors[i].range.start);
        for w in order.windows(2) {
            let (a, b) = (&tensors[w[0]], &tensors[w[1]]);
            if b.range.start < a.range.end {
                return Err(cur.err(GgufErrorKind::Overlap {
                    first: a.name.to_string(),
                    first_range: a.range.clone(),
                    second: b.name.to_string(),
                    second_range: b.range.clone(),
                }));
            }
        }

        Ok(Gguf {
            path: path.to_path_buf(),
            version,
            alignment,
            data_offset,
            metadata,
            tensors,
        })
    }

    /// The file named in errors.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data alignment in bytes.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Where the data section starts in the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Metadata entries in file order.
    pub fn metadata(&self) -> &[(&'a str, MetaValue<'a>)] {
        &self.metadata
    }

    /// The value of metadata `key`.
    pub fn get(&self, key: &str) -> Option<&MetaValue<'a>> {
        self.metadata
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }

    /// Tensors in file order.
    pub fn tensors(&self) -> &[TensorInfo<'a>] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo<'a>> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// A bounds-checked little-endian reader over the file's bytes.
#[derive(Debug, Clone)]
struct Cursor<'a, 'p> {
    bytes: &'a [u8],
    pos: usize,
    path: &'p Path,
}

impl<'a, 'p> Cursor<'a, 'p> {
    fn new(bytes: &'a [u8], path: &'p Path) -> Self {
        Cursor {
            bytes,
            pos: 0,
            path,
        }
    }

    fn err(&self, kind: GgufErrorKind) -> GgufError {
        GgufError {
            path: self.path.to_path_buf(),
            kind: Box::new(kind),
        }
    }

    fn left(&self) -> u64 {
        (self.bytes.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        if n > self.left() {
            return Err(self.err(GgufErrorKind::Truncated {
                what: what(),
                offset: self.pos as u64,
                need: n,
                len: self.bytes.len() as u64,
            }));
        }
        let s = &self.bytes[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], GgufError> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8], GgufError> {
        let n = self.u64(what)?;
        self.take(n, &|| format!("{} (a string of {n} bytes)", what()))
    }

    /// `count` entries of at least `min` bytes each fit in what is left.
    fn check_count(&self, count: u64, min: u64, what: &str) -> Result<(), GgufError> {
        if u128::from(count) * u128::from(min) > u128::from(self.left()) {
            return Err(self.err(GgufErrorKind::Count {
                what: what.to_string(),
                count,
                left: self.left(),
                offset: self.pos as u64,
                min,
            }));
        }
        Ok(())
    }

    /// One value of type `ty`; arrays are checked element by element (nested ones to
    /// [`MAX_ARRAY_DEPTH`]) and returned as views.
    fn value(
        &mut self,
        ty: ValueType,
        what: &dyn Fn() -> String,
        depth: usize,
    ) -> Result<MetaValue<'a>, GgufError> {
        Ok(match ty {
            ValueType::U8 => MetaValue::U8(u8::from_le_bytes(self.array(what)?)),
            ValueType::I8 => MetaValue::I8(i8::from_le_bytes(self.array(what)?)),
            ValueType::U16 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            ValueType::I16 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            ValueType::U32 => MetaValue::U32(u32::from_le_bytes(self.array(what)?)),
            ValueType::I32 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            ValueType::F32 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            ValueType::U64 => MetaValue::U64(u64::from_le_bytes(self.array(what)?)),
            ValueType::I64 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            ValueType::F64 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            ValueType::Bool => {
                let [b] = self.array(what)?;
                if b > 1 {
                    return Err(self.err(GgufErrorKind::Bool {
                        what: what(),
                        byte: b,
                    }));
                }
                MetaValue::Bool(b == 1)
            }
            ValueType::String => MetaValue::String(self.string(what)?),
            ValueType::Array => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(GgufErrorKind::Nesting { what: what() }));
                }
                let elem_id = self.u32(what)?;
                let elem = ValueType::from_id(elem_id).ok_or_else(|| {
                    self.err(GgufErrorKind::ValueType {
                        what: format!("{} (array elements)", what()),
                        ty: elem_id,
                    })
                })?;
                let len = self.u64(what)?;
                self.check_count(len, elem.min_size(), &format!("{} (array)", what()))?;
                let start = self.pos;
                match elem.fixed_size() {
                    Some(size) if elem != ValueType::Bool => {
                        // Cannot overflow: check_count bounded len * size by the bytes left.
                        self.take(len * size, what)?;
                    }
                    _ => {
                        for i in 0..len {
                            let what_i = || format!("{}[{i}]", what());
                            self.value(elem, &what_i, depth + 1)?;
                        }
                    }
                }
                MetaValue::Array(MetaArray {
                    elem,
                    len,
                    raw: &self.bytes[start..self.pos],
                })
            }
        })
    }
}

/// An owned metadata value, for [`GgufWriter`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// bool.
    Bool(bool),
    /// A string's bytes (write UTF-8).
    String(Vec<u8>),
    /// An array whose items all have type `elem` (arrays as items may differ in their own
    /// element types).
    Array {
        /// Element type.
        elem: ValueType,
        /// Items.
        items: Vec<Value>,
    },
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array { .. } => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// A UTF-8 string value.
    pub fn string(s: &str) -> Value {
        Value::String(s.as_bytes().to_vec())
    }

    /// An array of strings.
    pub fn strings<S: AsRef<str>>(items: &[S]) -> Value {
        Value::Array {
            elem: ValueType::String,
            items: items.iter().map(|s| Value::string(s.as_ref())).collect(),
        }
    }

    /// Append the encoded value (without its type number) to `out`; `what` names it in errors.
    fn encode(&self, out: &mut Vec<u8>, what: &dyn Fn() -> String) -> Result<(), String> {
        match self {
            Value::U8(v) => out.extend(v.to_le_bytes()),
            Value::I8(v) => out.extend(v.to_le_bytes()),
            Value::U16(v) => out.extend(v.to_le_bytes()),
            Value::I16(v) => out.extend(v.to_le_bytes()),
            Value::U32(v) => out.extend(v.to_le_bytes()),
            Value::I32(v) => out.extend(v.to_le_bytes()),
            Value::F32(v) => out.extend(v.to_le_bytes()),
            Value::Bool(v) => out.push(u8::from(*v)),
            Value::String(s) => {
                out.extend((s.len() as u64).to_le_bytes());
                out.extend(s);
            }
            Value::Array { elem, items } => {
                out.extend(elem.id().to_le_bytes());
                out.extend((items.len() as u64).to_le_bytes());
                for (i, item) in items.iter().enumerate() {
                    if item.value_type() != *elem {
                        return Err(format!(
                            "{}[{i}] is {:?} in an array of {elem:?}",
                            what(),
                            item.value_type()
                        ));
                    }
                    item.encode(out, &|| format!("{}[{i}]", what()))?;
                }
            }
            Value::U64(v) => out.extend(v.to_le_bytes()),
            Value::I64(v) => out.extend(v.to_le_bytes()),
            Value::F64(v) => out.extend(v.to_le_bytes()),
        }
        Ok(())
    }
}

/// One tensor to write: name, ggml type and dimensions in ggml order (`ne0`, the innermost,
/// first; a row-major `[rows, cols]` matrix is `dims = [cols, rows]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSpec {
    /// Name.
    pub name: String,
    /// ggml type.
    pub ty: GgmlType,
    /// Dimensions, `ne0` first.
    pub dims: Vec<u64>,
}

impl TensorSpec {
    /// A spec from a row-major (numpy / PyTorch) `shape`.
    pub fn from_shape(name: impl Into<String>, ty: GgmlType, shape: &[usize]) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            ty,
            dims: shape.iter().rev().map(|&d| d as u64).collect(),
        }
    }

    /// Bytes of the tensor's data, or why the spec is invalid.
    fn byte_len(&self) -> Result<u64, String> {
        if self.dims.len() > MAX_DIMS {
            return Err(format!(
                "{} dimensions, at most {MAX_DIMS}",
                self.dims.len()
            ));
        }
        let block = u64::from(self.ty.block_size());
        let ne0 = self.dims.first().copied().unwrap_or(1);
        if !ne0.is_multiple_of(block) {
            return Err(format!(
                "{ne0} elements per row is not a multiple of {}'s block of {block}",
                self.ty
            ));
        }
        self.dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .and_then(|n| self.ty.bytes_for(n))
            .ok_or_else(|| format!("dimensions {:?} overflow", self.dims))
    }
}

/// A GGUF file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum GgufWriteError {
    /// The metadata, a tensor spec or the tensor data given are invalid.
    #[error("{}: {detail}", path.display())]
    Invalid {
        /// The file being written.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Writing failed.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// Writes a GGUF v3 file: [`GgufWriter::create`] writes the header, metadata and tensor infos;
/// [`GgufWriter::write_tensor`] each tensor's bytes in the order given; [`GgufWriter::finish`]
/// puts the file in place. Dropped unfinished, nothing is written to the path.
#[derive(Debug)]
pub struct GgufWriter {
    path: PathBuf,
    out: OutputFile,
    alignment: u64,
    /// Each tensor's name and byte count.
    pending: Vec<(String, u64)>,
    next: usize,
}

impl GgufWriter {
    /// Start `path`: check `metadata` and `tensors` (no duplicate keys or names, array items of
    /// their array's type, `general.alignment` a `u32` power of two, at most 4 dimensions, rows
    /// whole blocks) and write everything up to the data section. The alignment is
    /// `general.alignment` when given, else 32.
    ///
    /// # Errors
    /// [`GgufWriteError::Invalid`] for the checks above; [`GgufWriteError::Write`] when the
    /// file cannot be created or written.
    pub fn create(
        path: &Path,
        metadata: &[(String, Value)],
        tensors: &[TensorSpec],
    ) -> Result<GgufWriter, GgufWriteError> {
        let invalid = |detail: String| GgufWriteError::Invalid {
            path: path.to_path_buf(),
            detail,
        };
        let mut alignment = u64::from(DEFAULT_ALIGNMENT);
        let mut head = Vec::new();
        head.extend(MAGIC);
        head.extend(VERSION.to_le_bytes());
        head.extend((tensors.len() as u64).to_le_bytes());
        head.extend((metadata.len() as u64).to_le_bytes());
        let mut keys = HashSet::new();
        for (key, value) in metadata {
            if !keys.insert(key.as_str()) {
                return Err(invalid(format!("metadata key {key:?} given twice")));
            }
            if key == ALIGNMENT_KEY {
                match value {
                    Value::U32(a) if a.is_power_of_two() => alignment = u64::from(*a),
                    v => {
                        return Err(invalid(format!(
                            "{ALIGNMENT_KEY} must be a u32 power of two, found {v:?}"
                        )));
                    }
                }
            }
            Value::string(key)
                .encode(&mut head, &|| String::new())
                .map_err(&invalid)?;
            head.extend(value.value_type().id().to_le_bytes());
            value
                .encode(&mut head, &|| format!("metadata key {key:?}"))
                .map_err(&invalid)?;
        }
        let mut names = HashSet::new();
        let mut pending = Vec::with_capacity(tensors.len());
        let mut offset = 0u64;
        for t in tensors {
            if !names.insert(t.name.as_str()) {
                return Err(invalid(format!("tensor {:?} given twice", t.name)));
            }
            let bytes = t
                .byte_len()
                .map_err(|e| invalid(format!("tensor {:?}: {e}", t.name)))?;
            Value::string(&t.name)
                .encode(&mut head, &|| String::new())
                .map_err(&invalid)?;
            head.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                head.extend(d.to_le_bytes());
            }
            head.extend(t.ty.id().to_le_bytes());
            head.extend(offset.to_le_bytes());
            offset = bytes
                .checked_next_multiple_of(alignment)
                .and_then(|b| b.checked_add(offset))
                .ok_or_else(|| invalid("the data section overflows u64".to_string()))?;
            pending.push((t.name.clone(), bytes));
        }
        head.resize((head.len() as u64).next_multiple_of(alignment) as usize, 0);
        let mut w = GgufWriter {
            path: path.to_path_buf(),
            out: OutputFile::create(path)?,
            alignment,
            pending,
            next: 0,
        };
        w.write_all(&head)?;
        Ok(w)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), WriteError> {
        self.out.file().write_all(bytes).map_err(|e| WriteError {
            path: self.path.clone(),
            detail: format!("writing the temporary file: {e}"),
        })
    }

    /// Write the next tensor's bytes (in the order the specs were given) and its padding.
    ///
    /// # Errors
    /// [`GgufWriteError::Invalid`] when all tensors are written already or `bytes` is not the
    /// spec's byte count; [`GgufWriteError::Write`] when writing fails.
    pub fn write_tensor(&mut self, bytes: &[u8]) -> Result<(), GgufWriteError> {
        let Some((name, expected)) = self.pending.get(self.next).cloned() else {
            return Err(GgufWriteError::Invalid {
                path: self.path.clone(),
                detail: format!("all {} tensors are written already", self.pending.len()),
            });
        };
        if bytes.len() as u64 != expected {
            return Err(GgufWriteError::Invalid {
                path: self.path.clone(),
                detail: format!(
                    "tensor {name:?}: {} bytes given, its spec needs {expected}",
                    bytes.len()
                ),
            });
        }
        self.write_all(bytes)?;
        let pad = expected.next_multiple_of(self.alignment) - expected;
        self.write_all(&vec![0u8; pad as usize])?;
        self.next += 1;
        Ok(())
    }

    /// Put the file in place (see [`OutputFile::commit`]).
    ///
    /// # Errors
    /// [`GgufWriteError::Invalid`] when tensors remain unwritten (nothing is written to the
    /// path then); [`GgufWriteError::Write`] when committing fails.
    pub fn finish(self) -> Result<(), GgufWriteError> {
        if self.next != self.pending.len() {
            return Err(GgufWriteError::Invalid {
                path: self.path.clone(),
                detail: format!(
                    "{} of {} tensors written; tensor {:?} is missing",
                    self.next,
                    self.pending.len(),
                    self.pending[self.next].0
                ),
            });
        }
        Ok(self.out.commit()?)
    }
}

/// Write a whole GGUF v3 file at once (see [`GgufWriter`]): `metadata` in order, then each
/// tensor's spec and bytes.
///
/// # Errors
/// The errors of [`GgufWriter::create`], [`GgufWriter::write_tensor`] and
/// [`GgufWriter::finish`].
pub fn write_gguf(
    path: &Path,
    metadata: &[(String, Value)],
    tensors: &[(TensorSpec, &[u8])],
) -> Result<(), GgufWriteError> {
    let specs: Vec<TensorSpec> = tensors.iter().map(|(s, _)| s.clone()).collect();
    let mut w = GgufWriter::create(path, metadata, &specs)?;
    for (_, bytes) in tensors {
        w.write_tensor(bytes)?;
    }
    w.finish()
}
