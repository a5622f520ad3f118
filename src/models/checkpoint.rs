//! What every model loader shares: finding which checkpoint layout a folder holds, reading a
//! JSON configuration with errors that name the file and the key, checking the tensors a file
//! holds against the tensors a configuration implies (every problem listed at once), filling a
//! Burn module from a safetensors file, and the one error type of all of it,
//! [`CheckpointError`].
//!
//! Used by [`crate::models::voxtral::loader`] and [`crate::models::whisper::loader`] (and their
//! configuration readers). Tensor names are the upstream (transformers) state-dict names and
//! shapes the PyTorch shapes (`nn.Linear` `[out, in]`, `nn.Conv1d` `[c_out, c_in, kernel]`).

use burn::store::{
    FloatCastAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, PyTorchToBurnAdapter,
    SafetensorsStore,
};
use burn::tensor::DType;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors loading a checkpoint folder or reading its configuration. Every variant names the
/// file (or folder) and the cause.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The folder holds none of the layouts the model accepts.
    #[error("{}: no {model} checkpoint found (expected {expected})", dir.display())]
    NotFound {
        /// The folder.
        dir: PathBuf,
        /// Model name (`Voxtral`, `Whisper`).
        model: &'static str,
        /// The accepted layouts, e.g. `model.safetensors + config.json, or ...`.
        expected: String,
    },
    /// A file cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A configuration file is not valid JSON.
    #[error("{}: not valid JSON: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: serde_json::Error,
    },
    /// A configuration key is missing or has the wrong type.
    #[error("{}: key `{key}`: {problem}", path.display())]
    Key {
        /// The file.
        path: PathBuf,
        /// Dotted key path.
        key: String,
        /// What is wrong (`missing`, `expected a number`, ...).
        problem: String,
    },
    /// A configuration file is valid JSON but not a configuration this crate can use.
    #[error("{}: invalid configuration: {message}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The weights file cannot be opened or its header is invalid (truncated, corrupt).
    #[error("{}: {message}", path.display())]
    File {
        /// Weights file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Tensors missing, unexpected or of the wrong shape/dtype.
    #[error("{}: {} tensor problem(s):\n  {}", path.display(), problems.len(), problems.join("\n  "))]
    Tensors {
        /// Weights file.
        path: PathBuf,
        /// One line per problem: name, expected and found shape.
        problems: Vec<String>,
    },
    /// CTranslate2 `model.bin` reader or mapping problem (names the file, offset, variable).
    #[error(transparent)]
    Ct2(#[from] crate::models::whisper::ct2::Ct2Error),
}

impl CheckpointError {
    /// [`CheckpointError::File`] for `path`.
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self::File {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// [`CheckpointError::Invalid`] for `path`.
    pub fn invalid(path: &Path, message: impl Into<String>) -> Self {
        Self::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// One checkpoint layout a model accepts: the files that must exist in the folder and,
/// optionally, a test of its `config.json`.
#[derive(Debug, Clone, Copy)]
pub struct LayoutSpec<L> {
    /// The layout this spec stands for.
    pub layout: L,
    /// File names that must all exist in the folder.
    pub files: &'static [&'static str],
    /// A test `config.json` must pass (it must then exist and be JSON), described by `note`.
    pub config_test: Option<fn(&Value) -> bool>,
    /// What `config_test` requires, for the not-found message (empty when none).
    pub note: &'static str,
}

impl<L> LayoutSpec<L> {
    fn matches(&self, dir: &Path, config: &Option<Value>) -> bool {
        self.files.iter().all(|f| dir.join(f).is_file())
            && self
                .config_test
                .is_none_or(|test| config.as_ref().is_some_and(test))
    }

    fn describe(&self) -> String {
        let files = self.files.join(" + ");
        if self.note.is_empty() {
            files
        } else {
            format!("{files} {}", self.note)
        }
    }
}

/// The first layout of `specs` that `dir` holds (so earlier specs are preferred when a folder
/// holds several).
///
/// # Errors
/// [`CheckpointError::NotFound`] naming `dir`, `model` and every accepted layout.
pub fn detect_layout<L: Copy>(
    dir: &Path,
    model: &'static str,
    specs: &[LayoutSpec<L>],
) -> Result<L, CheckpointError> {
    // Read config.json only when a spec tests it; unreadable or invalid means "no match".
    let config = if specs.iter().any(|s| s.config_test.is_some()) {
        std::fs::read_to_string(dir.join("config.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    } else {
        None
    };
    if let Some(s) = specs.iter().find(|s| s.matches(dir, &config)) {
        return Ok(s.layout);
    }
    // No layout matched. A config.json some layout would have tested, present but unreadable
    // or not JSON, is the likelier cause: say so, naming it.
    let config_path = dir.join("config.json");
    if config.is_none() && config_path.exists() && specs.iter().any(|s| s.config_test.is_some()) {
        read_json_value(&config_path)?;
    }
    Err(CheckpointError::NotFound {
        dir: dir.to_path_buf(),
        model,
        expected: specs
            .iter()
            .map(LayoutSpec::describe)
            .collect::<Vec<_>>()
            .join(", or "),
    })
}

/// Read a JSON file.
///
/// # Errors
/// [`CheckpointError::Read`] or [`CheckpointError::Json`] naming `path`.
pub fn read_json_value(path: &Path) -> Result<Value, CheckpointError> {
    let text = std::fs::read_to_string(path).map_err(|source| CheckpointError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| CheckpointError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// Read a JSON file into `T` (serde): a missing field or wrong type is
/// [`CheckpointError::Key`] naming the file, the key path where it went wrong
/// (`suppress_ids[3]`, via `serde_path_to_error`) and the cause.
///
/// # Errors
/// As [`read_json_value`], or [`CheckpointError::Key`].
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, CheckpointError> {
    json_into(read_json_value(path)?, path)
}

/// [`read_json`] of a JSON file's bytes already in memory (a browser's `fetch`); `path` only
/// names the file in errors.
///
/// # Errors
/// [`CheckpointError::Json`] (not JSON) or [`CheckpointError::Key`], naming `path`.
pub fn parse_json<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    path: &Path,
) -> Result<T, CheckpointError> {
    let value = serde_json::from_slice(bytes).map_err(|source| CheckpointError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    json_into(value, path)
}

fn json_into<T: serde::de::DeserializeOwned>(
    value: Value,
    path: &Path,
) -> Result<T, CheckpointError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let key = e.path().to_string();
        CheckpointError::Key {
            path: path.to_path_buf(),
            key: if key == "." {
                "(top level)".to_string()
            } else {
                key
            },
            problem: e.into_inner().to_string(),
        }
    })
}

/// A JSON configuration read by dotted key paths (`audio_config.hidden_size`), whose errors
/// name the file and the key.
#[derive(Debug, Clone)]
pub struct ConfigJson {
    path: PathBuf,
    value: Value,
}

impl ConfigJson {
    /// Read `path`.
    ///
    /// # Errors
    /// See [`read_json_value`].
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        Ok(Self {
            path: path.to_path_buf(),
            value: read_json_value(path)?,
        })
    }

    /// A configuration already in memory (e.g. rebuilt from GGUF metadata); errors name `path`.
    pub fn from_value(path: &Path, value: Value) -> Self {
        Self {
            path: path.to_path_buf(),
            value,
        }
    }

    /// The file the configuration came from (named in errors).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, key: &str, problem: &str) -> CheckpointError {
        CheckpointError::Key {
            path: self.path.clone(),
            key: key.to_string(),
            problem: problem.to_string(),
        }
    }

    /// The value at dotted `key`.
    ///
    /// # Errors
    /// [`CheckpointError::Key`] (`missing`).
    pub fn get(&self, key: &str) -> Result<&Value, CheckpointError> {
        let mut v = &self.value;
        for part in key.split('.') {
            v = v.get(part).ok_or_else(|| self.err(key, "missing"))?;
        }
        Ok(v)
    }

    /// A non-negative integer at `key`.
    ///
    /// # Errors
    /// [`CheckpointError::Key`]: missing or not a non-negative integer.
    pub fn usize(&self, key: &str) -> Result<usize, CheckpointError> {
        self.get(key)?
            .as_u64()
            .map(|x| x as usize)
            .ok_or_else(|| self.err(key, "expected a non-negative integer"))
    }

    /// A number at `key`.
    ///
    /// # Errors
    /// [`CheckpointError::Key`]: missing or not a number.
    pub fn f64(&self, key: &str) -> Result<f64, CheckpointError> {
        self.get(key)?
            .as_f64()
            .ok_or_else(|| self.err(key, "expected a number"))
    }

    /// A boolean at `key`, `default` when the key is absent.
    ///
    /// # Errors
    /// [`CheckpointError::Key`]: present but not a boolean.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, CheckpointError> {
        match self.get(key) {
            Err(_) => Ok(default),
            Ok(v) => v
                .as_bool()
                .ok_or_else(|| self.err(key, "expected a boolean")),
        }
    }
}

/// The tensors a configuration implies: upstream names with PyTorch shapes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpectedTensors {
    /// Tensors that must be present with exactly this shape.
    pub required: BTreeMap<String, Vec<usize>>,
    /// Tied copies that may be present (then with this shape) and are never loaded:
    /// name -> (shape, the tensor it is tied to).
    pub tied: BTreeMap<String, (Vec<usize>, String)>,
}

/// One tensor found in a checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTensor {
    /// Name as stored in the file (used in messages).
    pub stored: String,
    /// Upstream name it maps to; `None` when no name mapping rule matches.
    pub name: Option<String>,
    /// Stored shape.
    pub shape: Vec<usize>,
    /// Stored element type (`None` when the values are already f32 in memory).
    pub dtype: Option<safetensors::Dtype>,
}

impl FoundTensor {
    /// A tensor whose stored name is its upstream name.
    pub fn named(name: &str, shape: &[usize], dtype: Option<safetensors::Dtype>) -> Self {
        Self {
            stored: name.to_string(),
            name: Some(name.to_string()),
            shape: shape.to_vec(),
            dtype,
        }
    }
}

/// Compare what a file holds with what the configuration implies; one line per problem, all
/// of them at once (empty when the file matches):
///
/// * `missing tensor NAME: expected shape [..]`
/// * `tensor STORED: expected shape [..], found [..]` (also for a tied copy, noted)
/// * `unexpected tensor STORED [..]` (no mapping, or not implied by the configuration)
/// * `tensor STORED: expected a float dtype, found ..`
/// * `tensor STORED: maps to NAME, already given by OTHER`
pub fn tensor_problems(expected: &ExpectedTensors, found: &[FoundTensor]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut by_name: BTreeMap<&str, &FoundTensor> = BTreeMap::new();
    for t in found {
        if let Some(d) = t.dtype {
            use safetensors::Dtype as T;
            if !matches!(d, T::F32 | T::F16 | T::BF16 | T::F64) {
                problems.push(format!(
                    "tensor {}: expected a float dtype, found {d:?}",
                    t.stored
                ));
            }
        }
        match &t.name {
            None => problems.push(format!("unexpected tensor {} {:?}", t.stored, t.shape)),
            Some(name) => {
                if let Some(other) = by_name.insert(name, t) {
                    problems.push(format!(
                        "tensor {}: maps to {name}, already given by {}",
                        t.stored, other.stored
                    ));
                }
            }
        }
    }
    for (name, want) in &expected.required {
        match by_name.get(name.as_str()) {
            None => problems.push(format!("missing tensor {name}: expected shape {want:?}")),
            Some(t) if &t.shape != want => problems.push(format!(
                "tensor {}: expected shape {want:?}, found {:?}",
                t.stored, t.shape
            )),
            Some(_) => {}
        }
    }
    for (name, t) in &by_name {
        if expected.required.contains_key(*name) {
            continue;
        }
        match expected.tied.get(*name) {
            Some((want, to)) if &t.shape != want => problems.push(format!(
                "tensor {} (tied to {to}): expected shape {want:?}, found {:?}",
                t.stored, t.shape
            )),
            Some(_) => {}
            None => problems.push(format!("unexpected tensor {} {:?}", t.stored, t.shape)),
        }
    }
    problems
}

/// The tensors of a safetensors file from its header (memory-mapped; the header is validated,
/// including that every tensor's bytes lie inside the file). `rename` maps a stored name to
/// its upstream name (`None`: no rule matches).
///
/// # Errors
/// [`CheckpointError::File`] naming `path`: unreadable, truncated or corrupt.
pub fn read_safetensors_header(
    path: &Path,
    rename: impl Fn(&str) -> Option<String>,
) -> Result<Vec<FoundTensor>, CheckpointError> {
    let file = std::fs::File::open(path).map_err(|e| CheckpointError::file(path, e.to_string()))?;
    let mmap =
        crate::io::map_file(&file).map_err(|e| CheckpointError::file(path, e.to_string()))?;
    safetensors_header_of(&mmap, path, rename)
}

/// [`read_safetensors_header`] of a whole safetensors file's bytes; `path` only names it in
/// errors.
///
/// # Errors
/// [`CheckpointError::File`] naming `path`: truncated or corrupt.
pub fn safetensors_header_of(
    bytes: &[u8],
    path: &Path,
    rename: impl Fn(&str) -> Option<String>,
) -> Result<Vec<FoundTensor>, CheckpointError> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| CheckpointError::file(path, format!("invalid safetensors header: {e}")))?;
    Ok(meta
        .tensors()
        .into_iter()
        .map(|(stored, info)| FoundTensor {
            name: rename(&stored),
            stored,
            shape: info.shape.clone(),
            dtype: Some(info.dtype),
        })
        .collect())
}

/// Fill `module` from the safetensors file `path` with burn-store: PyTorch layout adapted
/// (`PyTorchToBurnAdapter`: Linear weights transposed, LayerNorm `weight/bias` ->
/// `gamma/beta`), any float dtype cast to f32, stored names remapped by `remap` (none: the
/// stored names are the module paths). Check the header with [`tensor_problems`] first: this
/// reports what burn-store reports, one line per tensor.
///
/// # Errors
/// [`CheckpointError::File`] (unreadable file, bad remapping rules) or
/// [`CheckpointError::Tensors`] (tensors burn-store could not apply or did not find).
pub fn load_safetensors_into<M: ModuleSnapshot>(
    module: &mut M,
    path: &Path,
    remap: Option<&[(&str, &str)]>,
) -> Result<(), CheckpointError> {
    load_store_into(module, SafetensorsStore::from_file(path), path, remap)
}

/// [`load_safetensors_into`] from a whole safetensors file's bytes (a browser's `fetch`);
/// `path` only names the file in errors.
///
/// # Errors
/// See [`load_safetensors_into`].
pub fn load_safetensors_bytes_into<M: ModuleSnapshot>(
    module: &mut M,
    bytes: Vec<u8>,
    path: &Path,
    remap: Option<&[(&str, &str)]>,
) -> Result<(), CheckpointError> {
    load_store_into(
        module,
        SafetensorsStore::from_bytes(Some(bytes)),
        path,
        remap,
    )
}

fn load_store_into<M: ModuleSnapshot>(
    module: &mut M,
    store: SafetensorsStore,
    path: &Path,
    remap: Option<&[(&str, &str)]>,
) -> Result<(), CheckpointError> {
    let mut store = store
        .with_from_adapter(PyTorchToBurnAdapter.chain(FloatCastAdapter::to(DType::F32)))
        .allow_partial(false);
    if let Some(rules) = remap {
        let remapper = KeyRemapper::from_patterns(rules.to_vec())
            .map_err(|e| CheckpointError::file(path, format!("key remapping: {e}")))?;
        store = store.remap(remapper);
    }
    let result = module
        .load_from(&mut store)
        .map_err(|e| CheckpointError::file(path, e.to_string()))?;
    let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    problems.extend(
        result
            .missing
            .iter()
            .map(|(name, why)| format!("missing tensor {name}: {why}")),
    );
    no_problems(path, problems)
}

/// `Ok` when `problems` is empty, else [`CheckpointError::Tensors`] naming `path`.
///
/// # Errors
/// See above.
pub fn no_problems(path: &Path, problems: Vec<String>) -> Result<(), CheckpointError> {
    if problems.is_empty() {
        Ok(())
    } else {
        Err(CheckpointError::Tensors {
            path: path.to_path_buf(),
            problems,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expected() -> ExpectedTensors {
        ExpectedTensors {
            required: BTreeMap::from([
                ("a.weight".to_string(), vec![2, 3]),
                ("b.weight".to_string(), vec![4]),
            ]),
            tied: BTreeMap::from([(
                "head.weight".to_string(),
                (vec![2, 3], "a.weight".to_string()),
            )]),
        }
    }

    #[test]
    fn matching_tensors_have_no_problems() {
        let found = [
            FoundTensor::named("a.weight", &[2, 3], Some(safetensors::Dtype::BF16)),
            FoundTensor::named("b.weight", &[4], None),
            FoundTensor::named("head.weight", &[2, 3], None),
        ];
        assert!(tensor_problems(&expected(), &found).is_empty());
    }

    #[test]
    fn every_problem_is_listed_at_once() {
        let found = [
            FoundTensor {
                stored: "w_a".into(),
                name: Some("a.weight".into()),
                shape: vec![3, 2],
                dtype: Some(safetensors::Dtype::I32),
            },
            FoundTensor {
                stored: "w_a_again".into(),
                name: Some("a.weight".into()),
                shape: vec![2, 3],
                dtype: None,
            },
            FoundTensor {
                stored: "mystery".into(),
                name: None,
                shape: vec![1],
                dtype: None,
            },
            FoundTensor::named("extra.weight", &[5], None),
            FoundTensor::named("head.weight", &[9], None),
        ];
        let p = tensor_problems(&expected(), &found);
        for line in [
            "tensor w_a: expected a float dtype, found I32",
            "tensor w_a_again: maps to a.weight, already given by w_a",
            "unexpected tensor mystery [1]",
            "missing tensor b.weight: expected shape [4]",
            "unexpected tensor extra.weight [5]",
            "tensor head.weight (tied to a.weight): expected shape [2, 3], found [9]",
        ] {
            assert!(p.iter().any(|l| l == line), "{line:?} not in {p:#?}");
        }
        assert_eq!(p.len(), 6, "{p:#?}");
    }

    #[test]
    fn layout_detection_names_every_accepted_layout() {
        let dir = tempfile::tempdir().unwrap();
        let specs = [
            LayoutSpec {
                layout: 1,
                files: &["x.bin", "config.json"],
                config_test: Some(|c: &Value| c.get("kind").is_some()),
                note: "with a `kind`",
            },
            LayoutSpec {
                layout: 2,
                files: &["y.safetensors"],
                config_test: None,
                note: "",
            },
        ];
        let err = detect_layout(dir.path(), "Test", &specs).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.ends_with(
                "no Test checkpoint found (expected x.bin + config.json with a `kind`, or y.safetensors)"
            ),
            "{msg}"
        );
        std::fs::write(dir.path().join("x.bin"), b"").unwrap();
        std::fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert!(detect_layout(dir.path(), "Test", &specs).is_err());
        std::fs::write(dir.path().join("config.json"), r#"{"kind": 1}"#).unwrap();
        assert_eq!(detect_layout(dir.path(), "Test", &specs).unwrap(), 1);
    }

    #[test]
    fn config_errors_name_the_file_and_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("params.json");
        let missing = ConfigJson::read(&p).unwrap_err().to_string();
        assert!(missing.contains("params.json: cannot read"), "{missing}");
        std::fs::write(&p, "{not json").unwrap();
        let bad = ConfigJson::read(&p).unwrap_err().to_string();
        assert!(bad.contains("params.json: not valid JSON"), "{bad}");
        std::fs::write(&p, r#"{"a": {"b": -1}, "t": 3}"#).unwrap();
        let j = ConfigJson::read(&p).unwrap();
        let e = j.usize("a.b").unwrap_err().to_string();
        assert!(
            e.ends_with("params.json: key `a.b`: expected a non-negative integer"),
            "{e}"
        );
        let e = j.f64("a.c").unwrap_err().to_string();
        assert!(e.ends_with("key `a.c`: missing"), "{e}");
        assert!(j.bool_or("absent", true).unwrap());
        assert!(j.bool_or("t", true).is_err());
    }
}

/// A 2-D GGUF tensor kept as stored (a slice of the memory-mapped file), for the loaders of
/// every model: packed Q8_0 / Q4_0 or BF16 / F16, multiplied in place by
/// [`crate::nn::qmatmul`] / [`crate::nn::half`].
#[derive(Debug)]
pub enum StoredMatrix {
    /// Packed GGUF blocks.
    Packed(crate::nn::qmatmul::PackedMatrix<'static>),
    /// 16-bit values.
    Half(crate::nn::half::HalfMatrix),
}

/// `t` (ggml `ne = [n_in, n_out]`, PyTorch `[n_out, n_in]`) as a slice of `mmap` when it is a
/// matrix of Q8_0, Q4_0, BF16 or F16; `None` for other types and for vectors.
///
/// # Errors
/// [`CheckpointError`] naming `path` and the tensor when its bytes do not fit its shape.
pub(crate) fn stored_matrix(
    mmap: &bytes::Bytes,
    t: &crate::quant::gguf::TensorInfo<'_>,
    path: &Path,
) -> Result<Option<StoredMatrix>, CheckpointError> {
    use crate::nn::half::{HalfKind, HalfMatrix};
    use crate::nn::qmatmul::{PackedMatrix, QuantKind};
    use crate::quant::GgmlType;
    let shape = t.shape();
    if shape.len() != 2 {
        return Ok(None);
    }
    let (rows, cols) = (shape[0] as usize, shape[1] as usize);
    let bytes = mmap.slice(t.range.clone());
    let bad = |e: String| CheckpointError::file(path, format!("tensor {}: {e}", t.name));
    Ok(match t.ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 => {
            let kind = if t.ty == GgmlType::Q8_0 {
                QuantKind::Q8_0
            } else {
                QuantKind::Q4_0
            };
            Some(StoredMatrix::Packed(
                PackedMatrix::new(kind, rows, cols, bytes).map_err(|e| bad(e.to_string()))?,
            ))
        }
        GgmlType::BF16 | GgmlType::F16 => {
            let kind = if t.ty == GgmlType::BF16 {
                HalfKind::Bf16
            } else {
                HalfKind::F16
            };
            Some(StoredMatrix::Half(
                HalfMatrix::new(kind, rows, cols, bytes).map_err(|e| bad(e.to_string()))?,
            ))
        }
        _ => None,
    })
}
