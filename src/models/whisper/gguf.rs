//! Whisper in one self-contained GGUF file: weights, hyper-parameters, greedy-generation
//! settings and the tokenizer, so the file alone transcribes (`voxtrace quantize --model
//! models-cache/whisper-tiny.en --type q8_0 --out whisper.gguf`, then any `--model` takes it).
//!
//! ## Names
//! Tensors keep the transformers state-dict names of `WhisperForConditionalGeneration`
//! (`model.encoder.conv1.weight`, `model.decoder.layers.0.encoder_attn.k_proj.weight`, ...;
//! [`super::loader::expected_tensors`] lists them, PyTorch shapes; ggml order reverses them,
//! so an `nn.Linear` `[out, in]` is `ne = [in, out]`). Why these and not whisper.cpp's: they are
//! this port's module paths and capture names (a GGUF tensor, a trace entry and a transformers
//! checkpoint key are the same string), and they are the names candle-transformers' quantized
//! Whisper (`models::whisper::quantized_model`, which reads GGUF) loads. whisper.cpp does not use
//! GGUF: its `ggml-*.bin` files are its own older container with OpenAI's names
//! (`encoder.blocks.N.attn.query.weight`), so taking its names would buy no interchange. The tied
//! `proj_out.weight` is not written (it is `model.decoder.embed_tokens.weight`); a file that has
//! it must give it the embedding's shape, and it is not read.
//!
//! ## Types ([`OutType`]): the same mix as in-memory packing
//! | tensor | f32 | f16 / bf16 | q8_0 / q4_0 |
//! |---|---|---|---|
//! | linear weights (per layer `self_attn` / `encoder_attn` `{q,k,v,out}_proj`, `fc1`, `fc2`) | F32 | F16 / BF16 | Q8_0 / Q4_0 (rows of whole 32-blocks; F32 otherwise) |
//! | conv stem, LayerNorms, biases, both position tables, token embedding (also the tied head) | F32 | F32 | F32 |
//!
//! That is what `Whisper::quantize` packs in memory ([`crate::nn::qlinear`] has the table), so a
//! Q8_0 / Q4_0 file holds the bytes in-memory packing produces and transcribes identically.
//! Block bytes are [`crate::quant::blocks::quantize`]'s, byte-identical with PyPI `gguf`'s
//! `gguf.quants.quantize` on the same f32 values (`tests/whisper_gguf.rs` against
//! `reference/whisper_gguf.py`).
//!
//! ## Metadata
//! | key | type | what |
//! |---|---|---|
//! | `general.architecture` | string | `whisper` |
//! | `general.name` | string | the source folder's name |
//! | `general.file_type`, `general.quantization_version` | u32 | llama.cpp's file type (as Voxtral's files); 2 for Q8_0 / Q4_0 files |
//! | `whisper.<field>` | u32 | each [`WhisperConfig`] field by its transformers name: `num_mel_bins`, `d_model`, `encoder_layers`, `decoder_layers`, `encoder_attention_heads`, `decoder_attention_heads`, `encoder_ffn_dim`, `decoder_ffn_dim`, `vocab_size`, `max_source_positions`, `max_target_positions` |
//! | `whisper.generation.prompt`, `.suppress_tokens`, `.begin_suppress_tokens` | u32 arrays | [`GenerationSettings`] |
//! | `whisper.generation.eos_token_id`, `.max_length` | u32 | [`GenerationSettings`] |
//! | `tokenizer.huggingface.json` | string | the model's `tokenizer.json`, verbatim (the GGUF spec's key for a whole Hugging Face tokenizer) |
//!
//! ## Loading ([`Whisper::load_gguf`])
//! The file is memory-mapped; Q8_0 / Q4_0 and BF16 / F16 linear weights stay in its pages and are
//! multiplied in place ([`crate::nn::qmatmul`], [`crate::nn::half`]); every other tensor (any
//! type) is widened to f32. Names and shapes are checked against the configuration first (every
//! problem listed, the file named).

use super::config::{GenerationSettings, WhisperConfig};
use super::ct2::{Ct2Model, HfTensor, to_hf_state_dict, whisper_dims};
use super::loader::{Whisper, WhisperLayout, detect_layout, expected_tensors};
use crate::models::checkpoint::{
    CheckpointError, FoundTensor, StoredMatrix, no_problems, stored_matrix, tensor_problems,
};
use crate::models::voxtral::gguf::WriteSummary;
use crate::quant::GgmlType;
use crate::quant::blocks::{dequantize, quantize};
use crate::quant::gguf::{Gguf, GgufWriter, TensorSpec, Value, ValueType, map_file};
use crate::tokenizer::WhisperTokenizer;
use burn::tensor::Device;
use regex::Regex;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::LazyLock;

pub use crate::models::voxtral::gguf::OutType;

/// `general.architecture` of a Whisper GGUF.
pub const ARCHITECTURE: &str = "whisper";

/// The metadata key holding the whole `tokenizer.json` (GGUF spec: `tokenizer.huggingface.json`).
pub const TOKENIZER_KEY: &str = "tokenizer.huggingface.json";

/// Whether `name` is the weight of one of the linear layers in-memory packing packs
/// (`WhisperForConditionalGeneration::linears_mut`).
pub fn is_linear_weight(name: &str) -> bool {
    static LINEAR: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
            r"^model\.(encoder|decoder)\.layers\.\d+\.((self_attn|encoder_attn)\.(q_proj|k_proj|v_proj|out_proj)|fc1|fc2)\.weight$",
        )
        .expect("static pattern")
    });
    LINEAR.is_match(name)
}

/// The GGUF type of tensor `name` (PyTorch `shape`) in a file of `out` (module doc, Types).
pub fn tensor_type(out: OutType, name: &str, shape: &[usize]) -> GgmlType {
    if shape.len() != 2 || !is_linear_weight(name) {
        return GgmlType::F32;
    }
    match out {
        OutType::F32 => GgmlType::F32,
        OutType::F16 => GgmlType::F16,
        OutType::Bf16 => GgmlType::BF16,
        OutType::Q8_0 | OutType::Q4_0 if !shape[1].is_multiple_of(32) => GgmlType::F32,
        OutType::Q8_0 => GgmlType::Q8_0,
        OutType::Q4_0 => GgmlType::Q4_0,
    }
}

/// The configuration fields, by their metadata key suffix (transformers names).
fn config_fields(c: &WhisperConfig) -> [(&'static str, usize); 11] {
    [
        ("num_mel_bins", c.num_mel_bins),
        ("d_model", c.d_model),
        ("encoder_layers", c.encoder_layers),
        ("decoder_layers", c.decoder_layers),
        ("encoder_attention_heads", c.encoder_attention_heads),
        ("decoder_attention_heads", c.decoder_attention_heads),
        ("encoder_ffn_dim", c.encoder_ffn_dim),
        ("decoder_ffn_dim", c.decoder_ffn_dim),
        ("vocab_size", c.vocab_size),
        ("max_source_positions", c.max_source_positions),
        ("max_target_positions", c.max_target_positions),
    ]
}

fn u32_value(path: &Path, what: &str, x: usize) -> Result<Value, CheckpointError> {
    u32::try_from(x)
        .map(Value::U32)
        .map_err(|_| CheckpointError::invalid(path, format!("{what} = {x} does not fit a u32")))
}

fn u32_array(ids: &[u32]) -> Value {
    Value::Array {
        elem: ValueType::U32,
        items: ids.iter().map(|&i| Value::U32(i)).collect(),
    }
}

/// The metadata of a Whisper GGUF (module doc, Metadata), in file order.
fn metadata(
    name: &str,
    out: OutType,
    cfg: &WhisperConfig,
    generation: &GenerationSettings,
    tokenizer_json: &str,
    path: &Path,
) -> Result<Vec<(String, Value)>, CheckpointError> {
    let mut kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::string(ARCHITECTURE)),
        ("general.name".into(), Value::string(name)),
        ("general.file_type".into(), Value::U32(out.file_type())),
    ];
    if matches!(out, OutType::Q8_0 | OutType::Q4_0) {
        kv.push(("general.quantization_version".into(), Value::U32(2)));
    }
    for (k, v) in config_fields(cfg) {
        kv.push((format!("whisper.{k}"), u32_value(path, k, v)?));
    }
    let g = generation;
    kv.extend([
        ("whisper.generation.prompt".into(), u32_array(&g.prompt)),
        (
            "whisper.generation.eos_token_id".into(),
            Value::U32(g.eos_token_id),
        ),
        (
            "whisper.generation.max_length".into(),
            u32_value(path, "max_length", g.max_length)?,
        ),
        (
            "whisper.generation.suppress_tokens".into(),
            u32_array(&g.suppress_tokens),
        ),
        (
            "whisper.generation.begin_suppress_tokens".into(),
            u32_array(&g.begin_suppress_tokens),
        ),
        (TOKENIZER_KEY.into(), Value::string(tokenizer_json)),
    ]);
    Ok(kv)
}

/// Write the Whisper checkpoint in `dir` (CTranslate2 layout: `model.bin`, `config.json`,
/// `tokenizer.json`) to `out` as a self-contained GGUF of `out_type` (module doc), atomically
/// ([`crate::io::OutputFile`]). The f32 values are those [`Whisper::load`] uses
/// ([`to_hf_state_dict`]), so a Q8_0 / Q4_0 file holds the bytes `Whisper::quantize` packs.
///
/// # Errors
/// [`CheckpointError`] naming the file: not a CTranslate2 Whisper folder (a transformers
/// folder is refused), an unreadable or invalid `model.bin`, `config.json` or
/// `tokenizer.json`, a write failure.
pub fn write_gguf(
    dir: &Path,
    out_type: OutType,
    out: &Path,
) -> Result<WriteSummary, CheckpointError> {
    if detect_layout(dir)? != WhisperLayout::Ct2 {
        return Err(CheckpointError::invalid(
            dir,
            "Whisper GGUF export reads the CTranslate2 layout (model.bin + config.json + tokenizer.json)",
        ));
    }
    let bin = dir.join("model.bin");
    let ct2 = Ct2Model::load(&bin)?;
    let cfg = whisper_dims(&ct2)?;
    let tensors = to_hf_state_dict(&ct2)?;
    drop(ct2);
    let generation = GenerationSettings::from_ct2_config_json(
        &dir.join("config.json"),
        cfg.max_target_positions,
        cfg.vocab_size,
    )?;
    let tok_path = dir.join("tokenizer.json");
    let tokenizer_json = std::fs::read_to_string(&tok_path)
        .map_err(|e| CheckpointError::file(&tok_path, e.to_string()))?;
    // Refuse a tokenizer the loader would refuse, before writing anything.
    WhisperTokenizer::from_bytes(tokenizer_json.as_bytes(), &tok_path)
        .map_err(|e| CheckpointError::file(&tok_path, format!("tokenizer: {}", e.message)))?;
    let tensors: Vec<HfTensor> = tensors
        .into_iter()
        .filter(|t| t.name != "proj_out.weight")
        .collect();
    let specs: Vec<TensorSpec> = tensors
        .iter()
        .map(|t| {
            TensorSpec::from_shape(
                t.name.clone(),
                tensor_type(out_type, &t.name, &t.shape),
                &t.shape,
            )
        })
        .collect();
    let name = dir
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "whisper".into());
    let kv = metadata(&name, out_type, &cfg, &generation, &tokenizer_json, &bin)?;
    let werr = |e: crate::quant::gguf::GgufWriteError| CheckpointError::file(out, e.to_string());
    let mut w = GgufWriter::create(out, &kv, &specs).map_err(werr)?;
    let mut summary = WriteSummary {
        tensors: specs.len(),
        by_type: BTreeMap::new(),
        data_bytes: 0,
    };
    for (t, spec) in tensors.iter().zip(&specs) {
        let row = t.shape.last().copied().unwrap_or(1).max(1);
        let bytes = quantize(&t.data, row, spec.ty)
            .map_err(|e| CheckpointError::file(&bin, format!("tensor {}: {e}", t.name)))?;
        summary.data_bytes += bytes.len() as u64;
        *summary
            .by_type
            .entry(spec.ty.name().to_string())
            .or_default() += 1;
        w.write_tensor(&bytes).map_err(werr)?;
    }
    w.finish().map_err(werr)?;
    Ok(summary)
}

fn missing_key(path: &Path, key: &str, what: &str) -> CheckpointError {
    CheckpointError::Key {
        path: path.to_path_buf(),
        key: key.to_string(),
        problem: format!("missing or not {what}"),
    }
}

fn meta_usize(g: &Gguf<'_>, path: &Path, key: &str) -> Result<usize, CheckpointError> {
    g.get(key)
        .and_then(|v| v.as_u64())
        .and_then(|x| usize::try_from(x).ok())
        .ok_or_else(|| missing_key(path, key, "a non-negative integer"))
}

fn meta_ids(g: &Gguf<'_>, path: &Path, key: &str) -> Result<Vec<u32>, CheckpointError> {
    let a = g
        .get(key)
        .and_then(|v| v.as_array())
        .ok_or_else(|| missing_key(path, key, "an array of token ids"))?;
    a.iter()
        .map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
        .collect::<Option<Vec<u32>>>()
        .ok_or_else(|| missing_key(path, key, "an array of token ids"))
}

/// The configuration a Whisper GGUF carries (`whisper.*` keys), validated.
///
/// # Errors
/// [`CheckpointError`] naming the file and the key: not `whisper`, a key missing or of the
/// wrong type, a configuration [`WhisperConfig::validate`] refuses.
pub fn config_from_gguf(g: &Gguf<'_>, path: &Path) -> Result<WhisperConfig, CheckpointError> {
    match g.get("general.architecture").and_then(|v| v.as_str()) {
        Some(ARCHITECTURE) => {}
        Some(other) => {
            return Err(CheckpointError::invalid(
                path,
                format!("general.architecture is {other:?}, expected {ARCHITECTURE:?}"),
            ));
        }
        None => return Err(missing_key(path, "general.architecture", "a string")),
    }
    let f = |k: &str| meta_usize(g, path, &format!("whisper.{k}"));
    let cfg = WhisperConfig {
        num_mel_bins: f("num_mel_bins")?,
        d_model: f("d_model")?,
        encoder_layers: f("encoder_layers")?,
        decoder_layers: f("decoder_layers")?,
        encoder_attention_heads: f("encoder_attention_heads")?,
        decoder_attention_heads: f("decoder_attention_heads")?,
        encoder_ffn_dim: f("encoder_ffn_dim")?,
        decoder_ffn_dim: f("decoder_ffn_dim")?,
        vocab_size: f("vocab_size")?,
        max_source_positions: f("max_source_positions")?,
        max_target_positions: f("max_target_positions")?,
    };
    cfg.validate()
        .map_err(|e| CheckpointError::invalid(path, format!("whisper.*: {e}")))?;
    Ok(cfg)
}

/// The greedy-generation settings a Whisper GGUF carries (`whisper.generation.*`), every id
/// checked against the vocabulary.
///
/// # Errors
/// [`CheckpointError::Key`] naming the file and the key: missing, of the wrong type, or an id
/// outside the vocabulary.
pub fn generation_from_gguf(
    g: &Gguf<'_>,
    path: &Path,
    cfg: &WhisperConfig,
) -> Result<GenerationSettings, CheckpointError> {
    let p = "whisper.generation.";
    let prompt = meta_ids(g, path, &format!("{p}prompt"))?;
    if prompt.is_empty() {
        return Err(missing_key(
            path,
            &format!("{p}prompt"),
            "a non-empty array",
        ));
    }
    let eos = meta_usize(g, path, &format!("{p}eos_token_id"))?;
    let settings = GenerationSettings {
        prompt,
        eos_token_id: u32::try_from(eos)
            .map_err(|_| missing_key(path, &format!("{p}eos_token_id"), "a token id"))?,
        max_length: meta_usize(g, path, &format!("{p}max_length"))?,
        suppress_tokens: meta_ids(g, path, &format!("{p}suppress_tokens"))?,
        begin_suppress_tokens: meta_ids(g, path, &format!("{p}begin_suppress_tokens"))?,
    };
    let lists: [(&str, &[u32]); 4] = [
        ("prompt", &settings.prompt),
        ("eos_token_id", &[settings.eos_token_id]),
        ("suppress_tokens", &settings.suppress_tokens),
        ("begin_suppress_tokens", &settings.begin_suppress_tokens),
    ];
    for (k, ids) in lists {
        if let Some(t) = ids.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return Err(CheckpointError::Key {
                path: path.to_path_buf(),
                key: format!("{p}{k}"),
                problem: format!(
                    "token id {t} is outside the model's {}-token vocabulary",
                    cfg.vocab_size
                ),
            });
        }
    }
    if settings.max_length > cfg.max_target_positions {
        return Err(CheckpointError::Key {
            path: path.to_path_buf(),
            key: format!("{p}max_length"),
            problem: format!(
                "{} exceeds max_target_positions {}",
                settings.max_length, cfg.max_target_positions
            ),
        });
    }
    Ok(settings)
}

/// Whether `path` is a GGUF file whose `general.architecture` is `whisper` (a file that does not
/// parse is not; its loader reports why).
pub fn is_whisper_gguf(path: &Path) -> bool {
    if !crate::models::voxtral::loader::is_gguf(path) {
        return false;
    }
    let Ok(map) = map_file(path) else {
        return false;
    };
    Gguf::parse(&map, path)
        .is_ok_and(|g| g.get("general.architecture").and_then(|v| v.as_str()) == Some(ARCHITECTURE))
}

/// `t` as a linear weight kept in the mapping, when it is one of the linear layers and stored
/// Q8_0, Q4_0, BF16 or F16 (`None`: widen it to f32).
fn stored_linear(
    mmap: &bytes::Bytes,
    t: &crate::quant::gguf::TensorInfo<'_>,
    path: &Path,
) -> Result<Option<StoredMatrix>, CheckpointError> {
    if !is_linear_weight(t.name) {
        return Ok(None);
    }
    stored_matrix(mmap, t, path)
}

impl Whisper {
    /// Load a Whisper GGUF (module doc) onto `device`, with the tokenizer it carries.
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file: not GGUF or damaged ([`crate::quant::gguf`]'s
    /// checks), not `whisper`, configuration, generation or tokenizer keys missing or invalid,
    /// tensors missing, unexpected or mis-shaped (all listed, each named), a tensor type that
    /// cannot be read as f32.
    pub fn load_gguf(
        path: &Path,
        device: &Device,
    ) -> Result<(Self, WhisperTokenizer), CheckpointError> {
        // One shared handle on the mapping: packed and 16-bit matrices keep slices of it.
        // GgufError names the file itself: keep only its cause.
        let gguf_err =
            |e: crate::quant::gguf::GgufError| CheckpointError::file(path, e.kind.to_string());
        let mmap = bytes::Bytes::from_owner(map_file(path).map_err(gguf_err)?);
        let g = Gguf::parse(&mmap, path).map_err(gguf_err)?;
        let config = config_from_gguf(&g, path)?;
        let generation = generation_from_gguf(&g, path, &config)?;
        let tok_json = g
            .get(TOKENIZER_KEY)
            .and_then(|v| v.as_str())
            .ok_or_else(|| missing_key(path, TOKENIZER_KEY, "a string"))?;
        let tok = WhisperTokenizer::from_bytes(tok_json.as_bytes(), path).map_err(|e| {
            CheckpointError::Key {
                path: path.to_path_buf(),
                key: TOKENIZER_KEY.into(),
                problem: e.message,
            }
        })?;
        let found: Vec<FoundTensor> = g
            .tensors()
            .iter()
            .map(|t| {
                let shape: Vec<usize> = t.shape().iter().map(|&d| d as usize).collect();
                FoundTensor::named(t.name, &shape, None)
            })
            .collect();
        no_problems(path, tensor_problems(&expected_tensors(&config), &found))?;
        let mut stored = HashMap::new();
        let mut tensors = Vec::new();
        for t in g.tensors() {
            if t.name == "proj_out.weight" {
                continue; // tied to the token embedding; shape checked above
            }
            if let Some(s) = stored_linear(&mmap, t, path)? {
                stored.insert(t.name.to_string(), s);
                continue;
            }
            let data = dequantize(t.data, t.ty)
                .map_err(|e| CheckpointError::file(path, format!("tensor {}: {e}", t.name)))?;
            tensors.push(HfTensor {
                name: t.name.to_string(),
                shape: t.shape().iter().map(|&d| d as usize).collect(),
                data,
                source: format!("{} ({})", t.name, t.ty.name()),
            });
        }
        let net = Self::build_checked(&config, tensors, stored, device);
        Ok((
            Self {
                net,
                config,
                generation,
            },
            tok,
        ))
    }

    /// Load a model with its tokenizer from what a `--model` names: a Whisper GGUF file
    /// ([`Whisper::load_gguf`], tokenizer from its metadata) or a checkpoint folder
    /// ([`Whisper::load`], `tokenizer.json` in it). `tokenizer` overrides either.
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file; a tokenizer that cannot be read is
    /// [`CheckpointError::Invalid`] naming it.
    pub fn open(
        model: &Path,
        tokenizer: Option<&Path>,
        device: &Device,
    ) -> Result<(Self, WhisperTokenizer), CheckpointError> {
        let read_tok = |p: &Path| {
            WhisperTokenizer::from_file(p)
                .map_err(|e| CheckpointError::file(p, format!("tokenizer: {}", e.message)))
        };
        if crate::models::voxtral::loader::is_gguf(model) {
            let (m, tok) = Self::load_gguf(model, device)?;
            let tok = match tokenizer {
                Some(p) => read_tok(p)?,
                None => tok,
            };
            return Ok((m, tok));
        }
        let m = Self::load(model, device)?;
        let tok =
            read_tok(&tokenizer.map_or_else(|| model.join("tokenizer.json"), Path::to_path_buf))?;
        Ok((m, tok))
    }
}

/// Whether `path` names a Whisper model any `--model` accepts: a checkpoint folder
/// ([`super::is_whisper_dir`]) or a Whisper GGUF file ([`is_whisper_gguf`]).
pub fn is_whisper_model(path: &Path) -> bool {
    super::is_whisper_dir(path) || is_whisper_gguf(path)
}
