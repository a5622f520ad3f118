//! Pure-Rust reader for CTranslate2 `model.bin` files, and the mapping of a CTranslate2
//! `WhisperSpec` model onto the transformers `WhisperForConditionalGeneration` state dict.
//!
//! # File format (binary versions 1 to 6)
//!
//! Mirrors the writer `ModelSpec._serialize` in OpenNMT/CTranslate2
//! <https://github.com/OpenNMT/CTranslate2/blob/v4.8.5/python/ctranslate2/specs/model_spec.py> and the reader `Model::load` in
//! <https://github.com/OpenNMT/CTranslate2/blob/v4.8.5/src/models/model.cc> (CTranslate2 4.8.5 wrote the tiny.en `model.bin` the fixtures
//! use). All integers are little-endian.
//!
//! ```text
//! u32 binary_version                         (1..=6; 6 is current)
//! if version >= 2: string spec_name, u32 spec_revision
//! u32 num_variables
//! num_variables x {
//!     string name
//!     u8     rank
//!     u32    dims[rank]
//!     if version >= 4: u8 dtype_id, u32 num_bytes
//!     else:            u8 item_size, u32 num_elements   (num_bytes = item_size * num_elements)
//!     u8     data[num_bytes]                  (row-major, little-endian)
//! }
//! if version >= 3: u32 num_aliases, num_aliases x { string alias, string target }
//! string = u16 length (including a trailing NUL) + bytes
//! ```
//!
//! dtype ids follow `ctranslate2::DataType` (<https://github.com/OpenNMT/CTranslate2/blob/v4.8.5/include/ctranslate2/types.h>):
//! 0 f32, 1 i8, 2 i16, 3 i32, 4 f16, 5 bf16.
//!
//! # Whisper mapping
//!
//! CTranslate2's Whisper converter (<https://github.com/OpenNMT/CTranslate2/blob/v4.8.5/python/ctranslate2/converters/transformers.py>,
//! `WhisperLoader`) fuses the attention projections: self-attention `linear_0` is
//! `q|k|v` stacked along the output rows (`[3 * d_model, d_model]`), cross-attention
//! `linear_0` is `q` and `linear_1` is `k|v` (`[2 * d_model, d_model]`). transformers'
//! `k_proj` has no bias, so the k part of each fused bias must be zero (checked).
//! [`to_hf_state_dict`] undoes the fusion and yields tensors named and shaped like
//! `WhisperForConditionalGeneration.state_dict()` (transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/modeling_whisper.py>), converted to f32.

use super::config::WhisperConfig;
use crate::io::{TensorBytes, WriteError, write_safetensors};
use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

/// Newest `model.bin` binary version this reader understands (CTranslate2 4.x writes 6).
pub const MAX_BINARY_VERSION: u32 = 6;

/// Errors of the CTranslate2 reader and of the Whisper mapping. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum Ct2Error {
    /// The file could not be opened or read.
    #[error("{path}: cannot read CTranslate2 model: {source}")]
    Io {
        /// File being read.
        path: PathBuf,
        /// Underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file ends before a field that the header says is there.
    #[error(
        "{path}: truncated CTranslate2 model: need {needed} bytes for {what} at byte offset {offset}, only {available} left"
    )]
    Truncated {
        /// File being read.
        path: PathBuf,
        /// Byte offset (from the start of the file) of the field that could not be read.
        offset: usize,
        /// Which field was being read.
        what: String,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes left in the file from `offset`.
        available: usize,
    },
    /// A field holds an impossible value (unknown version or dtype, size mismatch, ...).
    #[error("{path}: corrupt CTranslate2 model at byte offset {offset}: {reason}")]
    Corrupt {
        /// File being read.
        path: PathBuf,
        /// Byte offset of the offending field.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// A variable exists but cannot be used as requested (dtype, shape, NaN, missing).
    #[error("{path}: variable {name:?}: {reason}")]
    Variable {
        /// File the model was read from.
        path: PathBuf,
        /// CTranslate2 variable name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// The model as a whole does not fit the Whisper mapping.
    #[error("{path}: cannot map to transformers Whisper: {reason}")]
    Mapping {
        /// File the model was read from.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// Result alias for this module.
pub type Result<T, E = Ct2Error> = std::result::Result<T, E>;

/// Element type of a stored variable (`ctranslate2::DataType`, `include/ctranslate2/types.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ct2DType {
    /// IEEE 754 binary32 (id 0).
    F32,
    /// Signed 8-bit integer (id 1); quantized weights or flags.
    I8,
    /// Signed 16-bit integer (id 2).
    I16,
    /// Signed 32-bit integer (id 3).
    I32,
    /// IEEE 754 binary16 (id 4).
    F16,
    /// bfloat16 (id 5).
    BF16,
}

impl Ct2DType {
    /// dtype from the id stored in binary version >= 4; `None` for an unknown id.
    pub fn from_id(id: u8) -> Option<Self> {
        Some(match id {
            0 => Self::F32,
            1 => Self::I8,
            2 => Self::I16,
            3 => Self::I32,
            4 => Self::F16,
            5 => Self::BF16,
            _ => return None,
        })
    }

    /// dtype from the item size stored in binary versions < 4 (`get_dtype_from_item_size`
    /// in `src/models/model.cc`: 4 -> f32, 2 -> i16, 1 -> i8).
    pub fn from_legacy_item_size(size: u8) -> Option<Self> {
        Some(match size {
            4 => Self::F32,
            2 => Self::I16,
            1 => Self::I8,
            _ => return None,
        })
    }

    /// Size of one element in bytes.
    pub fn item_size(self) -> usize {
        match self {
            Self::I8 => 1,
            Self::I16 | Self::F16 | Self::BF16 => 2,
            Self::F32 | Self::I32 => 4,
        }
    }

    /// True for f32, f16 and bf16.
    pub fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F16 | Self::BF16)
    }

    /// Short lowercase name (`f32`, `f16`, `i8`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::I8 => "i8",
            Self::I16 => "i16",
            Self::I32 => "i32",
            Self::F16 => "f16",
            Self::BF16 => "bf16",
        }
    }
}

impl fmt::Display for Ct2DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One stored variable: name, shape (row-major, `[]` for a scalar), dtype and raw bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Ct2Variable {
    /// CTranslate2 name, e.g. `encoder/layer_0/self_attention/linear_0/weight`.
    pub name: String,
    /// Dimensions, outermost first; empty for a scalar.
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: Ct2DType,
    /// Raw little-endian bytes, `numel() * dtype.item_size()` long.
    pub data: Vec<u8>,
    /// Byte offset of `data` in the file (for error messages and debugging).
    pub data_offset: usize,
}

impl Ct2Variable {
    /// Number of elements (product of `shape`; 1 for a scalar).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Values converted to f32 (exact for f16 and bf16). Integer variables are refused:
    /// they are flags or quantized weights whose meaning needs a scale.
    pub fn to_f32(&self, path: &Path) -> Result<Vec<f32>> {
        let d = &self.data;
        Ok(match self.dtype {
            Ct2DType::F32 => d
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Ct2DType::F16 => d
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Ct2DType::BF16 => d
                .chunks_exact(2)
                .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Ct2Error::Variable {
                    path: path.to_owned(),
                    name: self.name.clone(),
                    reason: format!("dtype {other} is not a float type; cannot convert to f32"),
                });
            }
        })
    }

    /// Values of an integer variable widened to i64 (flags such as `encoder/num_heads`).
    pub fn to_i64(&self, path: &Path) -> Result<Vec<i64>> {
        let d = &self.data;
        Ok(match self.dtype {
            Ct2DType::I8 => d.iter().map(|&b| i64::from(b as i8)).collect(),
            Ct2DType::I16 => d
                .chunks_exact(2)
                .map(|c| i64::from(i16::from_le_bytes([c[0], c[1]])))
                .collect(),
            Ct2DType::I32 => d
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            other => {
                return Err(Ct2Error::Variable {
                    path: path.to_owned(),
                    name: self.name.clone(),
                    reason: format!("dtype {other} is not an integer type"),
                });
            }
        })
    }
}

/// A parsed CTranslate2 `model.bin`.
#[derive(Debug, Clone)]
pub struct Ct2Model {
    /// File the model was read from (used in every error message).
    pub path: PathBuf,
    /// Binary format version (1..=6).
    pub binary_version: u32,
    /// Spec name, e.g. `WhisperSpec` (empty for binary version 1).
    pub spec: String,
    /// Spec revision (1 for binary version 1).
    pub spec_revision: u32,
    /// Variables in file order.
    pub variables: Vec<Ct2Variable>,
    /// `(alias, target)` pairs, e.g. `("decoder/projection/weight", "decoder/embeddings/weight")`.
    pub aliases: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

struct Reader<'a> {
    buf: &'a [u8],
    off: usize,
    path: &'a Path,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&'a [u8]> {
        let available = self.buf.len() - self.off;
        if n > available {
            return Err(Ct2Error::Truncated {
                path: self.path.to_owned(),
                offset: self.off,
                what: what(),
                needed: n,
                available,
            });
        }
        let s = &self.buf[self.off..self.off + n];
        self.off += n;
        Ok(s)
    }

    fn u8(&mut self, what: &dyn Fn() -> String) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &dyn Fn() -> String) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn corrupt(&self, offset: usize, reason: String) -> Ct2Error {
        Ct2Error::Corrupt {
            path: self.path.to_owned(),
            offset,
            reason,
        }
    }

    /// u16 length (NUL included) + bytes; like `std::string(c_str)` in model.cc the
    /// value ends at the first NUL.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String> {
        let len = self.u16(&|| format!("length of {}", what()))? as usize;
        let start = self.off;
        let bytes = self.take(len, what)?;
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        String::from_utf8(bytes[..end].to_vec())
            .map_err(|e| self.corrupt(start, format!("{} is not UTF-8: {e}", what())))
    }
}

impl Ct2Model {
    /// Read and parse `path` (normally `<model dir>/model.bin`).
    ///
    /// Errors: [`Ct2Error::Io`] if unreadable, [`Ct2Error::Truncated`] /
    /// [`Ct2Error::Corrupt`] with the byte offset if malformed.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| Ct2Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Parse an in-memory `model.bin`; `path` is only used in error messages.
    ///
    /// Stricter than CTranslate2 itself on two points: trailing bytes after the alias
    /// table, duplicate variable names and aliases to missing variables are errors.
    pub fn parse(bytes: &[u8], path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let mut r = Reader {
            buf: bytes,
            off: 0,
            path,
        };
        let version = r.u32(&|| "binary version".into())?;
        if version == 0 || version > MAX_BINARY_VERSION {
            return Err(r.corrupt(
                0,
                format!(
                    "unsupported binary version {version} (supported: 1..={MAX_BINARY_VERSION})"
                ),
            ));
        }
        let (spec, spec_revision) = if version >= 2 {
            let spec = r.string(&|| "spec name".into())?;
            let rev = r.u32(&|| "spec revision".into())?;
            (spec, rev)
        } else {
            (String::new(), 1)
        };
        let count_off = r.off;
        let n = r.u32(&|| "variable count".into())? as usize;
        // Each variable needs at least 2 (name length) + 1 (rank) + 1 + 4 bytes.
        if n > (bytes.len() - r.off) / 8 {
            return Err(Ct2Error::Truncated {
                path: path.to_owned(),
                offset: count_off + 4,
                what: format!(
                    "{n} variables (at least 8 bytes each; count read at offset {count_off})"
                ),
                needed: n.saturating_mul(8),
                available: bytes.len() - r.off,
            });
        }
        let mut variables = Vec::with_capacity(n);
        let mut index = HashMap::with_capacity(n);
        for i in 0..n {
            let name_off = r.off;
            let name = r.string(&|| format!("name of variable #{i}"))?;
            let vname = name.clone();
            let rank = r.u8(&|| format!("rank of {vname}"))? as usize;
            let mut shape = Vec::with_capacity(rank);
            for k in 0..rank {
                shape.push(r.u32(&|| format!("dim {k} of {vname}"))? as usize);
            }
            let numel = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| r.corrupt(name_off, format!("{name}: shape {shape:?} overflows")))?;
            let dtype_off = r.off;
            let (dtype, nbytes) = if version >= 4 {
                let id = r.u8(&|| format!("dtype of {vname}"))?;
                let dtype = Ct2DType::from_id(id).ok_or_else(|| {
                    r.corrupt(dtype_off, format!("{name}: unknown dtype id {id}"))
                })?;
                let nb = r.u32(&|| format!("byte count of {vname}"))? as usize;
                (dtype, nb)
            } else {
                let size = r.u8(&|| format!("item size of {vname}"))?;
                let dtype = Ct2DType::from_legacy_item_size(size).ok_or_else(|| {
                    r.corrupt(dtype_off, format!("{name}: unknown item size {size}"))
                })?;
                let ne = r.u32(&|| format!("element count of {vname}"))? as usize;
                (dtype, ne * usize::from(size))
            };
            let want = numel.checked_mul(dtype.item_size());
            if want != Some(nbytes) {
                return Err(r.corrupt(
                    dtype_off,
                    format!(
                        "{name}: {nbytes} data bytes but shape {shape:?} of {dtype} needs {}",
                        want.map_or("an overflowing count".into(), |w| w.to_string())
                    ),
                ));
            }
            let data_offset = r.off;
            let data = r.take(nbytes, &|| format!("data of {vname}"))?.to_vec();
            if index.insert(name.clone(), variables.len()).is_some() {
                return Err(r.corrupt(name_off, format!("duplicate variable name {name:?}")));
            }
            variables.push(Ct2Variable {
                name,
                shape,
                dtype,
                data,
                data_offset,
            });
        }
        let mut aliases = Vec::new();
        if version >= 3 {
            let count_off = r.off;
            let na = r.u32(&|| "alias count".into())? as usize;
            if na > (bytes.len() - r.off) / 4 {
                return Err(Ct2Error::Truncated {
                    path: path.to_owned(),
                    offset: count_off + 4,
                    what: format!(
                        "{na} aliases (at least 4 bytes each; count read at offset {count_off})"
                    ),
                    needed: na.saturating_mul(4),
                    available: bytes.len() - r.off,
                });
            }
            for i in 0..na {
                let alias_off = r.off;
                let alias = r.string(&|| format!("alias #{i}"))?;
                let target = r.string(&|| format!("target of alias {alias:?}"))?;
                if !index.contains_key(&target) {
                    return Err(r.corrupt(
                        alias_off,
                        format!("alias {alias:?} points to missing variable {target:?}"),
                    ));
                }
                if index.contains_key(&alias) || aliases.iter().any(|(a, _)| *a == alias) {
                    return Err(r.corrupt(alias_off, format!("alias {alias:?} is already a name")));
                }
                aliases.push((alias, target));
            }
        }
        if r.off != bytes.len() {
            return Err(r.corrupt(
                r.off,
                format!("{} unexpected trailing bytes", bytes.len() - r.off),
            ));
        }
        Ok(Self {
            path: path.to_owned(),
            binary_version: version,
            spec,
            spec_revision,
            variables,
            aliases,
            index,
        })
    }

    /// Variable by name, following aliases (as CTranslate2's `register_variable_alias` does).
    pub fn get(&self, name: &str) -> Option<&Ct2Variable> {
        let target = self
            .aliases
            .iter()
            .find(|(a, _)| a == name)
            .map_or(name, |(_, t)| t.as_str());
        self.index.get(target).map(|&i| &self.variables[i])
    }

    /// Like [`Ct2Model::get`] but a missing variable is a [`Ct2Error::Variable`] error.
    pub fn require(&self, name: &str) -> Result<&Ct2Variable> {
        self.get(name).ok_or_else(|| Ct2Error::Variable {
            path: self.path.clone(),
            name: name.to_owned(),
            reason: "not in the model".into(),
        })
    }

    /// Integer scalar (e.g. `encoder/num_heads`, stored as i16), widened to i64.
    pub fn scalar_i64(&self, name: &str) -> Result<i64> {
        let v = self.require(name)?;
        let vals = v.to_i64(&self.path)?;
        match vals.as_slice() {
            [x] => Ok(*x),
            _ => Err(self.var_err(name, format!("expected a scalar, shape is {:?}", v.shape))),
        }
    }

    fn var_err(&self, name: &str, reason: String) -> Ct2Error {
        Ct2Error::Variable {
            path: self.path.clone(),
            name: name.to_owned(),
            reason,
        }
    }

    fn map_err(&self, reason: String) -> Ct2Error {
        Ct2Error::Mapping {
            path: self.path.clone(),
            reason,
        }
    }
}

fn count_layers(model: &Ct2Model, prefix: &str) -> usize {
    (0..)
        .take_while(|i| {
            model
                .get(&format!("{prefix}/layer_{i}/ffn/linear_0/weight"))
                .is_some()
        })
        .count()
}

fn dim(model: &Ct2Model, name: &str, rank: usize, axis: usize) -> Result<usize> {
    let v = model.require(name)?;
    if v.shape.len() != rank {
        return Err(model.var_err(
            name,
            format!("expected rank {rank}, shape is {:?}", v.shape),
        ));
    }
    Ok(v.shape[axis])
}

fn positive(model: &Ct2Model, name: &str) -> Result<usize> {
    let x = model.scalar_i64(name)?;
    usize::try_from(x)
        .ok()
        .filter(|&h| h > 0)
        .ok_or_else(|| model.var_err(name, format!("expected a positive count, got {x}")))
}

/// Read the model's shape ([`WhisperConfig`], transformers names) from a `WhisperSpec` model's
/// variable shapes and `*/num_heads` scalars.
///
/// Errors: [`Ct2Error::Mapping`] if the spec is not `WhisperSpec`; [`Ct2Error::Variable`] if
/// a variable needed for a dimension is missing or has the wrong rank.
pub fn whisper_dims(model: &Ct2Model) -> Result<WhisperConfig> {
    if model.spec != "WhisperSpec" {
        return Err(model.map_err(format!(
            "spec is {:?}, expected \"WhisperSpec\"",
            model.spec
        )));
    }
    let d_model = dim(model, "encoder/conv1/weight", 3, 0)?;
    let dims = WhisperConfig {
        num_mel_bins: dim(model, "encoder/conv1/weight", 3, 1)?,
        d_model,
        encoder_layers: count_layers(model, "encoder"),
        decoder_layers: count_layers(model, "decoder"),
        encoder_attention_heads: positive(model, "encoder/num_heads")?,
        decoder_attention_heads: positive(model, "decoder/num_heads")?,
        encoder_ffn_dim: dim(model, "encoder/layer_0/ffn/linear_0/weight", 2, 0)?,
        decoder_ffn_dim: dim(model, "decoder/layer_0/ffn/linear_0/weight", 2, 0)?,
        vocab_size: dim(model, "decoder/embeddings/weight", 2, 0)?,
        max_source_positions: dim(model, "encoder/position_encodings/encodings", 2, 0)?,
        max_target_positions: dim(model, "decoder/position_encodings/encodings", 2, 0)?,
    };
    if dims.encoder_layers == 0 || dims.decoder_layers == 0 {
        return Err(model.map_err("no encoder or decoder layers found".into()));
    }
    for h in [dims.encoder_attention_heads, dims.decoder_attention_heads] {
        if d_model % h != 0 {
            return Err(model.map_err(format!("d_model {d_model} not divisible by {h} heads")));
        }
    }
    Ok(dims)
}

/// One tensor of the transformers state dict: name, PyTorch shape, row-major f32 values.
#[derive(Debug, Clone, PartialEq)]
pub struct HfTensor {
    /// transformers name, e.g. `model.encoder.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// PyTorch shape (`nn.Linear` weight is `[out_features, in_features]`, `nn.Conv1d`
    /// weight `[out_channels, in_channels, kernel]`).
    pub shape: Vec<usize>,
    /// Values, row-major, converted exactly from the stored dtype.
    pub data: Vec<f32>,
    /// Where it came from, e.g. `encoder/layer_0/self_attention/linear_0/weight[384..768]`.
    pub source: String,
}

struct Mapper<'a> {
    model: &'a Ct2Model,
    dims: WhisperConfig,
    out: Vec<HfTensor>,
    used: BTreeSet<String>,
}

impl Mapper<'_> {
    /// f32 values of a CT2 float variable with an exact expected shape; NaN/inf refused.
    fn load(&mut self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let v = self.model.require(name)?;
        if v.shape != shape {
            return Err(self
                .model
                .var_err(name, format!("shape {:?}, expected {shape:?}", v.shape)));
        }
        if !v.dtype.is_float() {
            return Err(self.model.var_err(
                name,
                format!(
                    "dtype {} (quantized weights need their `_scale`; only f32/f16/bf16 models are supported)",
                    v.dtype
                ),
            ));
        }
        let data = v.to_f32(&self.model.path)?;
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(self.model.var_err(
                name,
                format!("non-finite value {} at flat index {i}", data[i]),
            ));
        }
        self.used.insert(v.name.clone());
        Ok(data)
    }

    fn push(&mut self, name: String, shape: Vec<usize>, data: Vec<f32>, source: String) {
        self.out.push(HfTensor {
            name,
            shape,
            data,
            source,
        });
    }

    fn copy(&mut self, dst: &str, src: &str, shape: &[usize]) -> Result<()> {
        let data = self.load(src, shape)?;
        self.push(dst.into(), shape.to_vec(), data, src.into());
        Ok(())
    }

    fn layer_norm(&mut self, dst: &str, src: &str) -> Result<()> {
        let d = self.dims.d_model;
        self.copy(&format!("{dst}.weight"), &format!("{src}/gamma"), &[d])?;
        self.copy(&format!("{dst}.bias"), &format!("{src}/beta"), &[d])
    }

    fn linear(&mut self, dst: &str, src: &str, out_f: usize, in_f: usize) -> Result<()> {
        self.copy(
            &format!("{dst}.weight"),
            &format!("{src}/weight"),
            &[out_f, in_f],
        )?;
        self.copy(&format!("{dst}.bias"), &format!("{src}/bias"), &[out_f])
    }

    /// Split a fused projection (rows stacked as `parts`) into `<dst>.<part>.weight/bias`;
    /// `k_proj` gets no bias and its bias slice must be all zeros.
    fn split(&mut self, dst: &str, src: &str, parts: &[&str]) -> Result<()> {
        let d = self.dims.d_model;
        let n = parts.len();
        let wname = format!("{src}/weight");
        let bname = format!("{src}/bias");
        let w = self.load(&wname, &[n * d, d])?;
        let b = self.load(&bname, &[n * d])?;
        for (i, part) in parts.iter().enumerate() {
            let rows = i * d..(i + 1) * d;
            self.push(
                format!("{dst}.{part}.weight"),
                vec![d, d],
                w[rows.start * d..rows.end * d].to_vec(),
                format!("{wname}[{}..{}]", rows.start, rows.end),
            );
            let bias = &b[rows.clone()];
            if *part == "k_proj" {
                if let Some(j) = bias.iter().position(|&x| x != 0.0) {
                    return Err(self.model.var_err(
                        &bname,
                        format!(
                            "k part [{}..{}] has non-zero value {} at {}; transformers' k_proj has no bias",
                            rows.start,
                            rows.end,
                            bias[j],
                            rows.start + j
                        ),
                    ));
                }
            } else {
                self.push(
                    format!("{dst}.{part}.bias"),
                    vec![d],
                    bias.to_vec(),
                    format!("{bname}[{}..{}]", rows.start, rows.end),
                );
            }
        }
        Ok(())
    }
}

/// Convert a CTranslate2 `WhisperSpec` model to the state dict of transformers
/// `WhisperForConditionalGeneration` (<https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/modeling_whisper.py>):
/// names, PyTorch shapes and f32 values, in module order (encoder, decoder, `proj_out`).
///
/// | CTranslate2 | transformers |
/// |---|---|
/// | `encoder/conv{1,2}/{weight,bias}` `[d, c_in, 3]` | `model.encoder.conv{1,2}.*` |
/// | `encoder/position_encodings/encodings` `[1500, d]` | `model.encoder.embed_positions.weight` |
/// | `{enc,dec}/layer_i/self_attention/linear_0` `[3d, d]` (q\|k\|v) | `….self_attn.{q,k,v}_proj` (k without bias) |
/// | `{enc,dec}/layer_i/self_attention/linear_1` | `….self_attn.out_proj` |
/// | `{enc,dec}/layer_i/self_attention/layer_norm/{gamma,beta}` | `….self_attn_layer_norm.{weight,bias}` |
/// | `decoder/layer_i/attention/linear_0` | `….encoder_attn.q_proj` |
/// | `decoder/layer_i/attention/linear_1` `[2d, d]` (k\|v) | `….encoder_attn.{k,v}_proj` (k without bias) |
/// | `decoder/layer_i/attention/linear_2` | `….encoder_attn.out_proj` |
/// | `decoder/layer_i/attention/layer_norm` | `….encoder_attn_layer_norm` |
/// | `{enc,dec}/layer_i/ffn/linear_{0,1}` | `….fc1`, `….fc2` |
/// | `{enc,dec}/layer_i/ffn/layer_norm` | `….final_layer_norm` |
/// | `{enc,dec}oder/layer_norm` | `model.{en,de}coder.layer_norm` |
/// | `decoder/embeddings/weight` `[vocab, d]` | `model.decoder.embed_tokens.weight` |
/// | `decoder/position_encodings/encodings` `[448, d]` | `model.decoder.embed_positions.weight` |
/// | `decoder/projection/weight` (alias of the embeddings) | `proj_out.weight` (tied) |
///
/// Errors: anything [`whisper_dims`] reports; a missing variable, a shape that does not fit
/// the dims, a non-float (quantized) weight, a NaN/inf value, a non-zero k bias, or a
/// non-scalar variable left unmapped ([`Ct2Error::Mapping`]).
pub fn to_hf_state_dict(model: &Ct2Model) -> Result<Vec<HfTensor>> {
    let dims = whisper_dims(model)?;
    let WhisperConfig {
        num_mel_bins: mels,
        d_model: d,
        ..
    } = dims;
    let mut m = Mapper {
        model,
        dims,
        out: Vec::new(),
        used: BTreeSet::new(),
    };
    let e = "model.encoder";
    m.copy(
        &format!("{e}.conv1.weight"),
        "encoder/conv1/weight",
        &[d, mels, 3],
    )?;
    m.copy(&format!("{e}.conv1.bias"), "encoder/conv1/bias", &[d])?;
    m.copy(
        &format!("{e}.conv2.weight"),
        "encoder/conv2/weight",
        &[d, d, 3],
    )?;
    m.copy(&format!("{e}.conv2.bias"), "encoder/conv2/bias", &[d])?;
    m.copy(
        &format!("{e}.embed_positions.weight"),
        "encoder/position_encodings/encodings",
        &[dims.max_source_positions, d],
    )?;
    for i in 0..dims.encoder_layers {
        let (s, t) = (format!("encoder/layer_{i}"), format!("{e}.layers.{i}"));
        let ffn = dims.encoder_ffn_dim;
        m.split(
            &format!("{t}.self_attn"),
            &format!("{s}/self_attention/linear_0"),
            &["q_proj", "k_proj", "v_proj"],
        )?;
        m.linear(
            &format!("{t}.self_attn.out_proj"),
            &format!("{s}/self_attention/linear_1"),
            d,
            d,
        )?;
        m.layer_norm(
            &format!("{t}.self_attn_layer_norm"),
            &format!("{s}/self_attention/layer_norm"),
        )?;
        m.linear(&format!("{t}.fc1"), &format!("{s}/ffn/linear_0"), ffn, d)?;
        m.linear(&format!("{t}.fc2"), &format!("{s}/ffn/linear_1"), d, ffn)?;
        m.layer_norm(
            &format!("{t}.final_layer_norm"),
            &format!("{s}/ffn/layer_norm"),
        )?;
    }
    m.layer_norm(&format!("{e}.layer_norm"), "encoder/layer_norm")?;
    let dd = "model.decoder";
    m.copy(
        &format!("{dd}.embed_tokens.weight"),
        "decoder/embeddings/weight",
        &[dims.vocab_size, d],
    )?;
    m.copy(
        &format!("{dd}.embed_positions.weight"),
        "decoder/position_encodings/encodings",
        &[dims.max_target_positions, d],
    )?;
    for i in 0..dims.decoder_layers {
        let (s, t) = (format!("decoder/layer_{i}"), format!("{dd}.layers.{i}"));
        let ffn = dims.decoder_ffn_dim;
        m.split(
            &format!("{t}.self_attn"),
            &format!("{s}/self_attention/linear_0"),
            &["q_proj", "k_proj", "v_proj"],
        )?;
        m.linear(
            &format!("{t}.self_attn.out_proj"),
            &format!("{s}/self_attention/linear_1"),
            d,
            d,
        )?;
        m.layer_norm(
            &format!("{t}.self_attn_layer_norm"),
            &format!("{s}/self_attention/layer_norm"),
        )?;
        m.linear(
            &format!("{t}.encoder_attn.q_proj"),
            &format!("{s}/attention/linear_0"),
            d,
            d,
        )?;
        m.split(
            &format!("{t}.encoder_attn"),
            &format!("{s}/attention/linear_1"),
            &["k_proj", "v_proj"],
        )?;
        m.linear(
            &format!("{t}.encoder_attn.out_proj"),
            &format!("{s}/attention/linear_2"),
            d,
            d,
        )?;
        m.layer_norm(
            &format!("{t}.encoder_attn_layer_norm"),
            &format!("{s}/attention/layer_norm"),
        )?;
        m.linear(&format!("{t}.fc1"), &format!("{s}/ffn/linear_0"), ffn, d)?;
        m.linear(&format!("{t}.fc2"), &format!("{s}/ffn/linear_1"), d, ffn)?;
        m.layer_norm(
            &format!("{t}.final_layer_norm"),
            &format!("{s}/ffn/layer_norm"),
        )?;
    }
    m.layer_norm(&format!("{dd}.layer_norm"), "decoder/layer_norm")?;
    // The output projection is tied to the token embeddings; CTranslate2 stores it as an
    // alias. A model without the alias uses the embeddings too (as transformers does).
    let proj_src = if model.get("decoder/projection/weight").is_some() {
        "decoder/projection/weight"
    } else {
        "decoder/embeddings/weight"
    };
    m.copy("proj_out.weight", proj_src, &[dims.vocab_size, d])?;

    let unused: Vec<&str> = model
        .variables
        .iter()
        .filter(|v| !v.shape.is_empty() && !m.used.contains(&v.name))
        .map(|v| v.name.as_str())
        .collect();
    if !unused.is_empty() {
        return Err(model.map_err(format!(
            "{} non-scalar variables have no transformers name: {unused:?}",
            unused.len()
        )));
    }
    Ok(m.out)
}

/// Write `tensors` as an f32 safetensors file (transformers names, PyTorch shapes, metadata
/// `format = pt`) so that Burn's safetensors store or
/// `WhisperForConditionalGeneration.from_pretrained` can load it. Written with
/// [`crate::io::write_safetensors`] (atomic: a temporary file next to `path`, renamed).
///
/// # Errors
/// [`WriteError`] naming `path`: a tensor whose data length does not match its shape (the
/// tensor is named), or any write failure.
pub fn save_hf_safetensors(tensors: &[HfTensor], path: impl AsRef<Path>) -> Result<(), WriteError> {
    let views: Vec<TensorBytes<'_>> = tensors
        .iter()
        .map(|t| TensorBytes::f32(t.name.clone(), t.shape.clone(), &t.data))
        .collect();
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    write_safetensors(path.as_ref(), &views, Some(meta))
}
