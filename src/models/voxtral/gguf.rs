//! Voxtral Realtime in GGUF, in the tensor names and metadata keys of voxtral.cpp's converter
//! (github MrShitFox/voxtral.cpp, `tools/convert_voxtral_to_gguf.py` and its loader
//! `src/voxtral.cpp`), so files made for that runtime load here and files written here load
//! there.
//!
//! ## Names
//! voxtral.cpp keeps Mistral's weights (interleaved RoPE, no permutation) under compact names:
//!
//! | GGUF (voxtral.cpp)                 | Mistral `consolidated.safetensors` (`E` = `mm_streams_embeddings.embedding_module.`) |
//! |------------------------------------|-------------------------------------------------------------------------------------|
//! | `tok_embeddings.weight`            | `E` `tok_embeddings.weight`                                                          |
//! | `enc.conv{0,1}.{weight,bias}`      | `E` `whisper_encoder.conv_layers.{0,1}.conv.*`                                       |
//! | `enc.blk.N.attn_{q,k,v,o}.*`       | `E` `whisper_encoder.transformer.layers.N.attention.w{q,k,v,o}.*`                    |
//! | `enc.blk.N.{attn,ffn}_norm.weight` | `E` `whisper_encoder.transformer.layers.N.{attention,ffn}_norm.weight`               |
//! | `enc.blk.N.ffn_w{1,2,3}.*`         | `E` `whisper_encoder.transformer.layers.N.feed_forward.w{1,2,3}.*`                   |
//! | `enc.norm.weight`                  | `E` `whisper_encoder.transformer.norm.weight`                                        |
//! | `adapter.{0,2}.weight`             | `E` `audio_language_projection.{0,2}.weight`                                         |
//! | `dec.blk.N.attn_{q,k,v,o}.weight`  | `layers.N.attention.w{q,k,v,o}.weight`                                               |
//! | `dec.blk.N.{attn,ffn}_norm.weight` | `layers.N.{attention,ffn}_norm.weight`                                               |
//! | `dec.blk.N.ffn_w{1,2,3}.weight`    | `layers.N.feed_forward.w{1,2,3}.weight`                                              |
//! | `dec.blk.N.ada{0,2}.weight`        | `layers.N.ada_rms_norm_t_cond.{0,2}.weight`                                          |
//! | `norm.weight`, `output.weight`     | the same                                                                             |
//! | `audio.mel_filters`                | (none: the Slaney filter bank `[n_fft/2 + 1, n_mels]`, f32, written by the converter) |
//!
//! Shapes are ggml's (`ne0` innermost): a PyTorch `[out, in]` weight is `ne = [in, out]`.
//!
//! ## Types ([`OutType`])
//! As the converter (`f32`: everything F32; `f16`: 1-D tensors F32, others F16) and its
//! quantizer `voxtral-quantize` (`q8_0` / `q4_0`: the tensors matching its quantizable patterns,
//! `tok_embeddings`, `adapter.{0,2}`, `{enc,dec}.blk.N.attn_{q,k,v,o}` / `ffn_w{1,2,3}`,
//! `dec.blk.N.ada{0,2}`, `output`, whose rows are whole blocks of 32, in that type; the rest
//! F16, 1-D F32). `bf16` is `f16` with BF16 (not in voxtral.cpp's converter; ggml reads it).
//! Quantized bytes are [`crate::quant::blocks::quantize`]'s, byte-identical with PyPI `gguf`'s
//! `gguf.quants.quantize` on the same f32 values (voxtral.cpp quantizes its F16 file instead,
//! so its bytes differ where F16 rounding moved a value).
//!
//! ## Loading ([`Voxtral::load_gguf`])
//! The configuration comes from the flattened `params.json` the converter stores
//! (`voxtral.params.*`), the tokenizer from `voxtral.tokenizer.*` (vocabulary as base64 token
//! bytes, control tokens, pattern) and `voxtral.audio.*`. Q8_0 / Q4_0 weights of the linear
//! layers that [`Voxtral::linears_mut`] lists stay packed ([`crate::nn::qlinear`]); every other
//! tensor (any type: F32, F16, BF16, Q8_0, Q4_0) is widened to f32, including a quantized token
//! embedding (which is also the tied LM head).

use super::config::VoxtralConfig;
use super::loader::{
    WeightLayout, detect_layout, expected_tensors, hf_to_mistral, interleave_rope_rows,
    mistral_to_hf, rope_permuted_heads,
};
use super::model::Voxtral;
use crate::audio::AudioConfig;
use crate::audio::mel::VOXTRAL_GLOBAL_LOG_MEL_MAX;
use crate::models::checkpoint::{
    CheckpointError, ConfigJson, FoundTensor, StoredMatrix, no_problems, stored_matrix,
    tensor_problems,
};
use crate::nn::embedding::TokenEmbedding;
use crate::nn::qlinear::LinearWeight;
use crate::quant::GgmlType;
use crate::quant::blocks::{dequantize, quantize};
use crate::quant::gguf::{Gguf, GgufWriter, TensorSpec, Value, ValueType, map_file};
use crate::tokenizer::Tekken;
use burn::store::{ModuleSnapshot, PyTorchToBurnAdapter};
use burn::tensor::{DType, Device, Shape, TensorData};
use regex::Regex;
use serde_json::{Map, Value as Json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, LazyLock};

/// `general.architecture` of a Voxtral Realtime GGUF (voxtral.cpp: `voxtral` is the offline
/// Voxtral Mini 3B, not supported here).
pub const ARCHITECTURE: &str = "voxtral_realtime";

/// Prefix of the audio tower in Mistral names.
const E: &str = "mm_streams_embeddings.embedding_module.";

/// The type a [`write_gguf`] file stores its tensors in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    /// Everything F32.
    F32,
    /// 2-D and 3-D tensors F16, 1-D F32 (voxtral.cpp's converter default).
    F16,
    /// 2-D and 3-D tensors BF16, 1-D F32.
    Bf16,
    /// Quantizable matrices Q8_0, other matrices F16, 1-D F32.
    Q8_0,
    /// Quantizable matrices Q4_0, other matrices F16, 1-D F32.
    Q4_0,
}

impl std::str::FromStr for OutType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "f32" => OutType::F32,
            "f16" => OutType::F16,
            "bf16" => OutType::Bf16,
            "q8_0" => OutType::Q8_0,
            "q4_0" => OutType::Q4_0,
            _ => return Err(format!("unknown type {s:?} (f32, f16, bf16, q8_0, q4_0)")),
        })
    }
}

impl OutType {
    /// llama.cpp's `general.file_type` (`LLAMA_FTYPE_ALL_F32` 0, `MOSTLY_F16` 1, `MOSTLY_Q4_0`
    /// 2, `MOSTLY_Q8_0` 7, `MOSTLY_BF16` 32).
    pub fn file_type(self) -> u32 {
        match self {
            OutType::F32 => 0,
            OutType::F16 => 1,
            OutType::Q4_0 => 2,
            OutType::Q8_0 => 7,
            OutType::Bf16 => 32,
        }
    }

    /// The type of a tensor of `shape` (PyTorch order) named `compact`.
    pub fn tensor_type(self, compact: &str, shape: &[usize]) -> GgmlType {
        let matrix = match self {
            OutType::F32 => return GgmlType::F32,
            OutType::Bf16 => GgmlType::BF16,
            _ => GgmlType::F16,
        };
        if shape.len() < 2 {
            return GgmlType::F32;
        }
        let q = match self {
            OutType::Q8_0 => GgmlType::Q8_0,
            OutType::Q4_0 => GgmlType::Q4_0,
            _ => return matrix,
        };
        static QUANTIZABLE: LazyLock<Regex> = LazyLock::new(|| {
            Regex::new(
                r"^(tok_embeddings|adapter\.[02]|(enc|dec)\.blk\.\d+\.(attn_[qkvo]|ffn_w[123])|dec\.blk\.\d+\.ada[02]|output|output_mm)\.weight$",
            )
            .expect("static pattern")
        });
        if shape.len() == 2 && QUANTIZABLE.is_match(compact) && shape[1].is_multiple_of(32) {
            q
        } else {
            matrix
        }
    }
}

/// (compact pattern, compact template, Mistral pattern, Mistral template); `N` is a layer.
fn name_rules() -> &'static [(Regex, String, Regex, String)] {
    static RULES: LazyLock<Vec<(Regex, String, Regex, String)>> = LazyLock::new(|| {
        let e = regex::escape(E);
        let enc = format!("{e}whisper_encoder\\.");
        let pairs: Vec<(String, String, String, String)> = vec![
            (
                r"^tok_embeddings\.weight$".into(),
                "tok_embeddings.weight".into(),
                format!(r"^{e}tok_embeddings\.weight$"),
                format!("{E}tok_embeddings.weight"),
            ),
            (
                r"^norm\.weight$".into(),
                "norm.weight".into(),
                r"^norm\.weight$".into(),
                "norm.weight".into(),
            ),
            (
                r"^output\.weight$".into(),
                "output.weight".into(),
                r"^output\.weight$".into(),
                "output.weight".into(),
            ),
            (
                r"^enc\.conv([01])\.(weight|bias)$".into(),
                "enc.conv${1}.${2}".into(),
                format!(r"^{enc}conv_layers\.([01])\.conv\.(weight|bias)$"),
                format!("{E}whisper_encoder.conv_layers.${{1}}.conv.${{2}}"),
            ),
            (
                r"^enc\.norm\.weight$".into(),
                "enc.norm.weight".into(),
                format!(r"^{enc}transformer\.norm\.weight$"),
                format!("{E}whisper_encoder.transformer.norm.weight"),
            ),
            (
                r"^adapter\.([02])\.weight$".into(),
                "adapter.${1}.weight".into(),
                format!(r"^{e}audio_language_projection\.([02])\.weight$"),
                format!("{E}audio_language_projection.${{1}}.weight"),
            ),
            (
                r"^enc\.blk\.(\d+)\.attn_norm\.weight$".into(),
                "enc.blk.${1}.attn_norm.weight".into(),
                format!(r"^{enc}transformer\.layers\.(\d+)\.attention_norm\.weight$"),
                format!("{E}whisper_encoder.transformer.layers.${{1}}.attention_norm.weight"),
            ),
            (
                r"^enc\.blk\.(\d+)\.ffn_norm\.weight$".into(),
                "enc.blk.${1}.ffn_norm.weight".into(),
                format!(r"^{enc}transformer\.layers\.(\d+)\.ffn_norm\.weight$"),
                format!("{E}whisper_encoder.transformer.layers.${{1}}.ffn_norm.weight"),
            ),
            (
                r"^enc\.blk\.(\d+)\.attn_([qkvo])\.(weight|bias)$".into(),
                "enc.blk.${1}.attn_${2}.${3}".into(),
                format!(r"^{enc}transformer\.layers\.(\d+)\.attention\.w([qkvo])\.(weight|bias)$"),
                format!("{E}whisper_encoder.transformer.layers.${{1}}.attention.w${{2}}.${{3}}"),
            ),
            (
                r"^enc\.blk\.(\d+)\.ffn_w([123])\.(weight|bias)$".into(),
                "enc.blk.${1}.ffn_w${2}.${3}".into(),
                format!(
                    r"^{enc}transformer\.layers\.(\d+)\.feed_forward\.w([123])\.(weight|bias)$"
                ),
                format!("{E}whisper_encoder.transformer.layers.${{1}}.feed_forward.w${{2}}.${{3}}"),
            ),
            (
                r"^dec\.blk\.(\d+)\.attn_norm\.weight$".into(),
                "dec.blk.${1}.attn_norm.weight".into(),
                r"^layers\.(\d+)\.attention_norm\.weight$".into(),
                "layers.${1}.attention_norm.weight".into(),
            ),
            (
                r"^dec\.blk\.(\d+)\.ffn_norm\.weight$".into(),
                "dec.blk.${1}.ffn_norm.weight".into(),
                r"^layers\.(\d+)\.ffn_norm\.weight$".into(),
                "layers.${1}.ffn_norm.weight".into(),
            ),
            (
                r"^dec\.blk\.(\d+)\.attn_([qkvo])\.weight$".into(),
                "dec.blk.${1}.attn_${2}.weight".into(),
                r"^layers\.(\d+)\.attention\.w([qkvo])\.weight$".into(),
                "layers.${1}.attention.w${2}.weight".into(),
            ),
            (
                r"^dec\.blk\.(\d+)\.ffn_w([123])\.weight$".into(),
                "dec.blk.${1}.ffn_w${2}.weight".into(),
                r"^layers\.(\d+)\.feed_forward\.w([123])\.weight$".into(),
                "layers.${1}.feed_forward.w${2}.weight".into(),
            ),
            (
                r"^dec\.blk\.(\d+)\.ada([02])\.weight$".into(),
                "dec.blk.${1}.ada${2}.weight".into(),
                r"^layers\.(\d+)\.ada_rms_norm_t_cond\.([02])\.weight$".into(),
                "layers.${1}.ada_rms_norm_t_cond.${2}.weight".into(),
            ),
        ];
        pairs
            .into_iter()
            .map(|(cp, ct, mp, mt)| {
                (
                    Regex::new(&cp).expect("static pattern"),
                    ct,
                    Regex::new(&mp).expect("static pattern"),
                    mt,
                )
            })
            .collect()
    });
    &RULES
}

/// The voxtral.cpp name of a Mistral tensor name (`None`: not a Voxtral Realtime tensor).
pub fn mistral_to_compact(name: &str) -> Option<String> {
    name_rules().iter().find_map(|(_, ct, mp, _)| {
        mp.is_match(name)
            .then(|| mp.replace(name, ct.as_str()).into_owned())
    })
}

/// The Mistral name of a voxtral.cpp tensor name (`None`: unknown, e.g. `audio.mel_filters`).
pub fn compact_to_mistral(name: &str) -> Option<String> {
    name_rules().iter().find_map(|(cp, _, _, mt)| {
        cp.is_match(name)
            .then(|| cp.replace(name, mt.as_str()).into_owned())
    })
}

/// What [`write_gguf`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSummary {
    /// Tensors written (with `audio.mel_filters`).
    pub tensors: usize,
    /// Tensors per ggml type name (`f32`, `f16`, `q8_0`, ...).
    pub by_type: BTreeMap<String, usize>,
    /// Bytes of tensor data (without padding).
    pub data_bytes: u64,
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn read_json(path: &Path) -> Result<Json, CheckpointError> {
    crate::models::checkpoint::read_json_value(path)
}

/// Flatten `v` under `prefix` as the converter's `_flatten_dict`: nested objects joined with
/// `.`; lists and nulls are skipped (as there).
fn flatten(prefix: &str, v: &Json, out: &mut Vec<(String, Value)>) {
    match v {
        Json::Object(m) => {
            for (k, x) in m {
                flatten(&format!("{prefix}.{k}"), x, out);
            }
        }
        Json::Bool(b) => out.push((prefix.to_string(), Value::Bool(*b))),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.push((prefix.to_string(), Value::I64(i)));
            } else if let Some(f) = n.as_f64() {
                out.push((prefix.to_string(), Value::F64(f)));
            }
        }
        Json::String(s) => out.push((prefix.to_string(), Value::string(s))),
        _ => {}
    }
}

/// Metadata keys of voxtral.cpp's converter (`metadata_from_model_info`) for `params` and
/// `tekken` (the JSON files), plus `voxtrace.tekken.audio` (the tekken `audio` section as JSON,
/// so the transcription delay survives exactly).
/// What [`metadata`] describes: the checkpoint's JSON files and parsed settings, and what the
/// writer computed (name map, hashes).
struct MetaInputs<'a> {
    params: &'a Json,
    tekken: &'a Json,
    cfg: &'a VoxtralConfig,
    audio: &'a AudioConfig,
    out_type: OutType,
    /// (Mistral name, voxtral.cpp name), in file order.
    names: &'a [(String, String)],
    mel_sha256: &'a str,
    /// (Mistral name, sha256 of its f32 bytes).
    checksums: &'a [(String, String)],
    /// Named in errors.
    path: &'a Path,
}

fn metadata(m: &MetaInputs<'_>) -> Result<Vec<(String, Value)>, CheckpointError> {
    let MetaInputs {
        params,
        tekken,
        cfg,
        audio,
        out_type,
        names,
        mel_sha256,
        checksums,
        path,
    } = *m;
    let enc = &cfg.encoder;
    let dec = &cfg.decoder;
    let i32v = |x: usize| Value::I32(x as i32);
    let n_special = tekken
        .pointer("/config/default_num_special_tokens")
        .and_then(Json::as_u64)
        .unwrap_or(1000) as usize;
    let specials: Vec<(i32, String)> = tekken
        .get("special_tokens")
        .and_then(Json::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| {
                    Some((
                        t.get("rank")?.as_i64()? as i32,
                        t.get("token_str")
                            .and_then(Json::as_str)
                            .unwrap_or("")
                            .to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let vocab = tekken
        .get("vocab")
        .and_then(Json::as_array)
        .cloned()
        .unwrap_or_default();
    let limit = dec.vocab_size.saturating_sub(n_special).min(vocab.len());
    let vocab_b64: Vec<String> = vocab[..limit]
        .iter()
        .map(|v| {
            v.get("token_bytes")
                .and_then(Json::as_str)
                .unwrap_or("")
                .to_string()
        })
        .collect();
    let special = |s: &str, default: i32| {
        specials
            .iter()
            .find(|(_, n)| n == s)
            .map_or(default, |(r, _)| *r)
    };
    let audio_err = |e: crate::audio::AudioError| CheckpointError::invalid(path, e.to_string());
    let n_delay = audio.n_delay_tokens(None).map_err(audio_err)?;
    let n_left = audio.n_left_pad_tokens().map_err(audio_err)?;
    let n_right = audio.n_right_pad_tokens(None).map_err(audio_err)?;
    let sc = &audio.audio_encoding_config;
    let mut kv: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::string(ARCHITECTURE)),
        (
            "general.name".into(),
            Value::string("Voxtral-Mini-4B-Realtime-2602"),
        ),
        ("general.file_type".into(), Value::U32(out_type.file_type())),
    ];
    if matches!(out_type, OutType::Q8_0 | OutType::Q4_0) {
        kv.push(("general.quantization_version".into(), Value::U32(2)));
    }
    kv.extend([
        ("voxtral.format_version".into(), Value::I32(1)),
        ("voxtral.decode.offline".into(), Value::Bool(false)),
        ("voxtral.decoder.dim".into(), i32v(dec.d_model)),
        ("voxtral.decoder.n_layers".into(), i32v(dec.n_layers)),
        ("voxtral.decoder.n_heads".into(), i32v(dec.n_heads)),
        ("voxtral.decoder.head_dim".into(), i32v(dec.head_dim)),
        (
            "voxtral.decoder.hidden_dim".into(),
            i32v(dec.intermediate_size),
        ),
        ("voxtral.decoder.n_kv_heads".into(), i32v(dec.n_kv_heads)),
        (
            "voxtral.decoder.norm_eps".into(),
            Value::F32(dec.norm_eps as f32),
        ),
        (
            "voxtral.decoder.rope_theta".into(),
            Value::F32(dec.rope_theta as f32),
        ),
        (
            "voxtral.decoder.sliding_window".into(),
            i32v(dec.sliding_window),
        ),
        ("voxtral.encoder.dim".into(), i32v(enc.d_model)),
        ("voxtral.encoder.n_layers".into(), i32v(enc.n_layers)),
        ("voxtral.encoder.n_heads".into(), i32v(enc.n_heads)),
        ("voxtral.encoder.head_dim".into(), i32v(enc.head_dim)),
        (
            "voxtral.encoder.hidden_dim".into(),
            i32v(enc.intermediate_size),
        ),
        ("voxtral.encoder.n_kv_heads".into(), i32v(enc.n_heads)),
        (
            "voxtral.encoder.norm_eps".into(),
            Value::F32(enc.norm_eps as f32),
        ),
        (
            "voxtral.encoder.rope_theta".into(),
            Value::F32(enc.rope_theta as f32),
        ),
        (
            "voxtral.encoder.sliding_window".into(),
            i32v(enc.sliding_window),
        ),
        ("voxtral.encoder.causal".into(), Value::Bool(true)),
        ("voxtral.encoder.norm_type".into(), Value::string("rmsnorm")),
        ("voxtral.encoder.ffn_type".into(), Value::string("swiglu")),
        ("voxtral.ada_rms_norm_t_cond".into(), Value::Bool(true)),
        (
            "voxtral.ada_rms_norm_t_cond_dim".into(),
            i32v(dec.ada_t_cond_dim),
        ),
        ("voxtral.vocab_size".into(), i32v(dec.vocab_size)),
        (
            "voxtral.audio.sample_rate".into(),
            Value::I32(audio.sampling_rate as i32),
        ),
        (
            "voxtral.audio.frame_rate".into(),
            Value::F32(audio.frame_rate as f32),
        ),
        ("voxtral.audio.num_mel_bins".into(), i32v(sc.num_mel_bins)),
        ("voxtral.audio.hop_length".into(), i32v(sc.hop_length)),
        ("voxtral.audio.window_size".into(), i32v(sc.window_size)),
        (
            "voxtral.audio.global_log_mel_max".into(),
            Value::F32(
                params
                    .pointer("/multimodal/whisper_model_args/encoder_args/audio_encoding_args/global_log_mel_max")
                    .and_then(Json::as_f64)
                    .unwrap_or(1.5) as f32,
            ),
        ),
        (
            "voxtral.audio.mel_filters_tensor".into(),
            Value::string("audio.mel_filters"),
        ),
        (
            "voxtral.audio.mel_filters_sha256".into(),
            Value::string(mel_sha256),
        ),
        (
            "voxtral.audio.downsample_factor".into(),
            i32v(cfg.downsample_factor),
        ),
        ("voxtral.audio.n_delay_tokens".into(), i32v(n_delay)),
        ("voxtral.audio.n_left_pad_tokens".into(), i32v(n_left)),
        ("voxtral.audio.n_right_pad_tokens".into(), i32v(n_right)),
        ("voxtral.token.bos".into(), Value::I32(special("<s>", 1))),
        ("voxtral.token.eos".into(), Value::I32(special("</s>", 2))),
        (
            "voxtral.token.streaming_pad".into(),
            Value::I32(special("[STREAMING_PAD]", 32)),
        ),
        (
            "voxtral.token.begin_audio".into(),
            Value::I32(special("[BEGIN_AUDIO]", 25)),
        ),
        ("voxtral.token.audio".into(), Value::I32(special("[AUDIO]", 24))),
        (
            "voxtral.tokenizer.pattern".into(),
            Value::string(
                tekken
                    .pointer("/config/pattern")
                    .and_then(Json::as_str)
                    .unwrap_or(""),
            ),
        ),
        (
            "voxtral.tokenizer.num_special_tokens".into(),
            Value::I32(n_special as i32),
        ),
        (
            "voxtral.tokenizer.vocab_token_bytes_b64".into(),
            Value::strings(&vocab_b64),
        ),
        (
            "voxtral.tokenizer.special_token_ranks".into(),
            Value::Array {
                elem: ValueType::I32,
                items: specials.iter().map(|(r, _)| Value::I32(*r)).collect(),
            },
        ),
        (
            "voxtral.tokenizer.special_token_strings".into(),
            Value::strings(&specials.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>()),
        ),
        (
            "voxtral.verify.checksum.names".into(),
            Value::strings(&checksums.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()),
        ),
        (
            "voxtral.verify.checksum.sha256".into(),
            Value::strings(&checksums.iter().map(|(_, h)| h.as_str()).collect::<Vec<_>>()),
        ),
        (
            "voxtral.tensor_name.src".into(),
            Value::strings(&names.iter().map(|(m, _)| m.as_str()).collect::<Vec<_>>()),
        ),
        (
            "voxtral.tensor_name.dst".into(),
            Value::strings(&names.iter().map(|(_, c)| c.as_str()).collect::<Vec<_>>()),
        ),
    ]);
    let mut flat = Vec::new();
    flatten("voxtral.params", params, &mut flat);
    flat.sort_by(|a, b| a.0.cmp(&b.0));
    kv.extend(flat);
    if let Some(a) = tekken.get("audio") {
        kv.push((
            "voxtrace.tekken.audio".into(),
            Value::string(&a.to_string()),
        ));
    }
    Ok(kv)
}

/// A safetensors tensor as f32 (F32, F16 or BF16 stored).
fn tensor_f32(
    t: &safetensors::tensor::TensorView<'_>,
    path: &Path,
    name: &str,
) -> Result<Vec<f32>, CheckpointError> {
    let b = t.data();
    Ok(match t.dtype() {
        safetensors::Dtype::F32 => b
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        safetensors::Dtype::F16 => b
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        safetensors::Dtype::BF16 => b
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        other => {
            return Err(CheckpointError::file(
                path,
                format!("tensor {name}: dtype {other:?} (expected F32, F16 or BF16)"),
            ));
        }
    })
}

/// Write the Voxtral Realtime checkpoint in `dir` to `out` as a voxtral.cpp GGUF of
/// `out_type`, one tensor at a time (memory: the largest tensor in f32 plus its encoding). The
/// file is written atomically ([`crate::io::OutputFile`]).
///
/// `dir` is a Mistral folder (`consolidated.safetensors`, `params.json`, `tekken.json`) or an
/// HF folder (`model.safetensors`, `config.json`, and the `tekken.json` the GGUF carries as its
/// tokenizer; `preprocessor_config.json`'s `global_log_mel_max` when present, else 1.5). An HF
/// folder is written as the Mistral one it was converted from: names mapped back
/// ([`super::loader::hf_to_mistral`]), the q/k rows the transformers converter permuted for
/// half-split RoPE put back in interleaved order ([`super::loader::interleave_rope_rows`]), a
/// tied `lm_head.weight` dropped, and `voxtral.params.*` rebuilt from `config.json`
/// ([`VoxtralConfig::to_params_json`]). `voxtral.tensor_name.src` holds Mistral names either way.
///
/// # Errors
/// [`CheckpointError`] naming the file: no checkpoint folder, a missing `tekken.json`,
/// unreadable or invalid files, tensors missing or mis-shaped (all listed), a non-finite weight
/// where a block type is requested, a write failure.
pub fn write_gguf(
    dir: &Path,
    out_type: OutType,
    out: &Path,
) -> Result<WriteSummary, CheckpointError> {
    let layout = detect_layout(dir)?;
    let tekken_path = dir.join("tekken.json");
    if !tekken_path.is_file() {
        return Err(CheckpointError::invalid(
            &tekken_path,
            "missing: the GGUF carries the tokenizer, so the folder needs the checkpoint's tekken.json",
        ));
    }
    let tekken = read_json(&tekken_path)?;
    let tok = Tekken::from_file(&tekken_path)
        .map_err(|e| CheckpointError::invalid(&tekken_path, e.to_string()))?;
    let audio = tok
        .audio()
        .cloned()
        .unwrap_or_else(AudioConfig::voxtral_realtime);
    let (cfg, params, weights) = match layout {
        WeightLayout::Mistral => {
            let params_path = dir.join("params.json");
            (
                VoxtralConfig::from_params_json(&params_path)?,
                read_json(&params_path)?,
                dir.join("consolidated.safetensors"),
            )
        }
        WeightLayout::Hf => {
            let cfg = VoxtralConfig::from_hf_config_json(&dir.join("config.json"))?;
            let pre = dir.join("preprocessor_config.json");
            let log_mel_max = if pre.is_file() {
                read_json(&pre)?
                    .get("global_log_mel_max")
                    .and_then(Json::as_f64)
                    .unwrap_or(f64::from(VOXTRAL_GLOBAL_LOG_MEL_MAX))
            } else {
                f64::from(VOXTRAL_GLOBAL_LOG_MEL_MAX)
            };
            let params = cfg.to_params_json(&audio, log_mel_max);
            (cfg, params, dir.join("model.safetensors"))
        }
    };
    super::loader::check_header(&weights, &cfg, layout)?;

    let file = std::fs::File::open(&weights)
        .map_err(|e| CheckpointError::file(&weights, e.to_string()))?;
    let mmap =
        crate::io::map_file(&file).map_err(|e| CheckpointError::file(&weights, e.to_string()))?;
    let st = safetensors::SafeTensors::deserialize(&mmap)
        .map_err(|e| CheckpointError::file(&weights, format!("invalid safetensors: {e}")))?;
    // (Mistral name, voxtral.cpp name), sorted by Mistral name; `stored_of` maps a Mistral name
    // to the name in the file.
    let mut names = Vec::new();
    let mut stored_of: HashMap<String, String> = HashMap::new();
    let mut unknown = Vec::new();
    for s in st.names() {
        let mistral = match layout {
            WeightLayout::Mistral => Some(s.to_string()),
            WeightLayout::Hf if s == "lm_head.weight" && cfg.decoder.tied_embeddings => continue,
            WeightLayout::Hf => hf_to_mistral(s),
        };
        match mistral
            .as_deref()
            .and_then(|m| Some((m, mistral_to_compact(m)?)))
        {
            Some((m, c)) => {
                names.push((m.to_string(), c));
                stored_of.insert(m.to_string(), s.to_string());
            }
            None => unknown.push(format!("unexpected tensor {s} (no voxtral.cpp name)")),
        }
    }
    unknown.sort();
    no_problems(&weights, unknown)?;
    names.sort();
    // A tensor as f32 in Mistral order (HF q/k rows interleaved back).
    let values_of = |m: &str| -> Result<(Vec<f32>, Vec<usize>), CheckpointError> {
        let stored = stored_of.get(m).map_or(m, String::as_str);
        let t = st
            .tensor(stored)
            .map_err(|e| CheckpointError::file(&weights, format!("{stored}: {e}")))?;
        let mut v = tensor_f32(&t, &weights, stored)?;
        if layout == WeightLayout::Hf
            && let Some(heads) = rope_permuted_heads(&cfg, m)
        {
            let rows = t.shape()[0];
            v = interleave_rope_rows(&v, rows, v.len() / rows.max(1), heads)
                .map_err(|e| CheckpointError::file(&weights, format!("{stored}: {e}")))?;
        }
        Ok((v, t.shape().to_vec()))
    };

    // The mel filter bank voxtral.cpp reads from the file: [n_fft / 2 + 1, n_mels].
    let sc = &audio.audio_encoding_config;
    let n_freq = sc.window_size / 2 + 1;
    let mel: Vec<f32> = crate::audio::mel::mel_filter_bank(
        n_freq,
        sc.num_mel_bins,
        0.0,
        8000.0,
        audio.sampling_rate,
    )
    .map_err(|e| CheckpointError::invalid(&tekken_path, e.to_string()))?
    .into_iter()
    .map(|x| x as f32)
    .collect();
    let mel_bytes: Vec<u8> = mel.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mel_sha = sha256_hex(&mel_bytes);

    let checksum_names = [
        format!("{E}tok_embeddings.weight"),
        "layers.0.attention.wq.weight".to_string(),
        format!("layers.{}.feed_forward.w2.weight", cfg.decoder.n_layers - 1),
        format!("{E}whisper_encoder.conv_layers.0.conv.weight"),
        format!("{E}whisper_encoder.transformer.norm.weight"),
    ];
    let mut checksums = Vec::new();
    for n in &checksum_names {
        let (v, _) = values_of(n)?;
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        checksums.push((n.clone(), sha256_hex(&bytes)));
    }

    let mut specs = Vec::new();
    for (m, c) in &names {
        let stored = stored_of.get(m).map_or(m.as_str(), String::as_str);
        let t = st
            .tensor(stored)
            .map_err(|e| CheckpointError::file(&weights, format!("{stored}: {e}")))?;
        specs.push(TensorSpec::from_shape(
            c.clone(),
            out_type.tensor_type(c, t.shape()),
            t.shape(),
        ));
    }
    specs.push(TensorSpec::from_shape(
        "audio.mel_filters",
        GgmlType::F32,
        &[n_freq, sc.num_mel_bins],
    ));
    let kv = metadata(&MetaInputs {
        params: &params,
        tekken: &tekken,
        cfg: &cfg,
        audio: &audio,
        out_type,
        names: &names,
        mel_sha256: &mel_sha,
        checksums: &checksums,
        path: &weights,
    })?;
    let werr = |e: crate::quant::gguf::GgufWriteError| CheckpointError::file(out, e.to_string());
    let mut w = GgufWriter::create(out, &kv, &specs).map_err(werr)?;
    let mut summary = WriteSummary {
        tensors: specs.len(),
        by_type: BTreeMap::new(),
        data_bytes: 0,
    };
    for ((m, _), spec) in names.iter().zip(&specs) {
        let (values, shape) = values_of(m)?;
        let row = *shape.last().unwrap_or(&1);
        let bytes = quantize(&values, row.max(1), spec.ty)
            .map_err(|e| CheckpointError::file(&weights, format!("{m}: {e}")))?;
        summary.data_bytes += bytes.len() as u64;
        *summary
            .by_type
            .entry(spec.ty.name().to_string())
            .or_default() += 1;
        w.write_tensor(&bytes).map_err(werr)?;
    }
    summary.data_bytes += mel_bytes.len() as u64;
    *summary
        .by_type
        .entry(GgmlType::F32.name().to_string())
        .or_default() += 1;
    w.write_tensor(&mel_bytes).map_err(werr)?;
    w.finish().map_err(werr)?;
    Ok(summary)
}

/// Rebuild the nested `params.json` from the `voxtral.params.*` keys.
fn params_from_metadata(g: &Gguf<'_>) -> Json {
    let mut root = Map::new();
    for (key, v) in g.metadata() {
        let Some(rest) = key.strip_prefix("voxtral.params.") else {
            continue;
        };
        let value = match v.to_value() {
            Value::Bool(b) => Json::Bool(b),
            Value::I64(i) => Json::from(i),
            Value::I32(i) => Json::from(i),
            Value::U32(i) => Json::from(i),
            Value::U64(i) => Json::from(i),
            Value::F64(f) => Json::from(f),
            Value::F32(f) => Json::from(f64::from(f)),
            Value::String(s) => Json::String(String::from_utf8_lossy(&s).into_owned()),
            _ => continue,
        };
        let parts: Vec<&str> = rest.split('.').collect();
        let mut node = &mut root;
        for p in &parts[..parts.len() - 1] {
            let entry = node
                .entry(p.to_string())
                .or_insert_with(|| Json::Object(Map::new()));
            if !entry.is_object() {
                *entry = Json::Object(Map::new());
            }
            node = entry.as_object_mut().expect("object");
        }
        node.insert(parts[parts.len() - 1].to_string(), value);
    }
    Json::Object(root)
}

fn meta_i64(g: &Gguf<'_>, key: &str) -> Option<i64> {
    match g.get(key)?.to_value() {
        Value::I32(i) => Some(i64::from(i)),
        Value::I64(i) => Some(i),
        Value::U32(i) => Some(i64::from(i)),
        Value::U64(i) => i64::try_from(i).ok(),
        _ => None,
    }
}

fn meta_f64(g: &Gguf<'_>, key: &str) -> Option<f64> {
    g.get(key)?.as_f64()
}

fn meta_strings(g: &Gguf<'_>, key: &str) -> Option<Vec<String>> {
    match g.get(key)?.to_value() {
        Value::Array { items, .. } => items
            .into_iter()
            .map(|v| match v {
                Value::String(s) => String::from_utf8(s).ok(),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

/// The Tekken tokenizer a voxtral.cpp GGUF carries (`voxtral.tokenizer.*`, `voxtral.audio.*`,
/// and `voxtrace.tekken.audio` when this crate wrote the file).
///
/// # Errors
/// [`CheckpointError::Invalid`] naming the file: keys missing or of the wrong type, or a
/// vocabulary [`Tekken`] refuses.
pub fn tekken_from_gguf(g: &Gguf<'_>, path: &Path) -> Result<Tekken, CheckpointError> {
    let missing = |k: &str| {
        CheckpointError::invalid(
            path,
            format!("metadata key {k} missing or of the wrong type"),
        )
    };
    let vocab = meta_strings(g, "voxtral.tokenizer.vocab_token_bytes_b64")
        .ok_or_else(|| missing("voxtral.tokenizer.vocab_token_bytes_b64"))?;
    let ranks: Vec<i64> = match g
        .get("voxtral.tokenizer.special_token_ranks")
        .map(|v| v.to_value())
    {
        Some(Value::Array { items, .. }) => items
            .into_iter()
            .map(|v| match v {
                Value::I32(i) => Some(i64::from(i)),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| missing("voxtral.tokenizer.special_token_ranks"))?,
        _ => return Err(missing("voxtral.tokenizer.special_token_ranks")),
    };
    let strings = meta_strings(g, "voxtral.tokenizer.special_token_strings")
        .ok_or_else(|| missing("voxtral.tokenizer.special_token_strings"))?;
    if ranks.len() != strings.len() {
        return Err(CheckpointError::invalid(
            path,
            format!(
                "{} special token ranks but {} strings",
                ranks.len(),
                strings.len()
            ),
        ));
    }
    let n_special = meta_i64(g, "voxtral.tokenizer.num_special_tokens")
        .ok_or_else(|| missing("voxtral.tokenizer.num_special_tokens"))?;
    let vocab_size =
        meta_i64(g, "voxtral.vocab_size").ok_or_else(|| missing("voxtral.vocab_size"))?;
    let pattern = g
        .get("voxtral.tokenizer.pattern")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let audio: Json = match g.get("voxtrace.tekken.audio").and_then(|v| v.as_str()) {
        Some(s) => serde_json::from_str(s)
            .map_err(|e| CheckpointError::invalid(path, format!("voxtrace.tekken.audio: {e}")))?,
        None => {
            let i = |k: &str| meta_i64(g, k).ok_or_else(|| missing(k));
            let frame_rate = meta_f64(g, "voxtral.audio.frame_rate")
                .ok_or_else(|| missing("voxtral.audio.frame_rate"))?;
            // The converter stores the delay in 80 ms tokens only, and not the streaming
            // look-ahead / look-back: the released model's values (voxtral.cpp's constants).
            let delay_ms = i("voxtral.audio.n_delay_tokens")? as f64 * 1000.0 / frame_rate;
            let released = AudioConfig::voxtral_realtime();
            serde_json::json!({
                "sampling_rate": i("voxtral.audio.sample_rate")?,
                "frame_rate": frame_rate,
                "audio_encoding_config": {
                    "num_mel_bins": i("voxtral.audio.num_mel_bins")?,
                    "hop_length": i("voxtral.audio.hop_length")?,
                    "window_size": i("voxtral.audio.window_size")?,
                },
                "transcription_format": "streaming",
                "transcription_delay_ms": delay_ms,
                "streaming_n_left_pad_tokens": i("voxtral.audio.n_left_pad_tokens")?,
                "streaming_look_ahead_ms": released.streaming_look_ahead_ms,
                "streaming_look_back_ms": released.streaming_look_back_ms,
            })
        }
    };
    let json = serde_json::json!({
        "config": {
            "pattern": pattern,
            "num_vocab_tokens": vocab.len(),
            "default_vocab_size": vocab_size,
            "default_num_special_tokens": n_special,
            "version": "v13",
        },
        "vocab": vocab.iter().enumerate().map(|(i, b)| serde_json::json!({"rank": i, "token_bytes": b})).collect::<Vec<_>>(),
        "special_tokens": ranks.iter().zip(&strings).map(|(r, s)| serde_json::json!({"rank": r, "token_str": s, "is_control": true})).collect::<Vec<_>>(),
        "audio": audio,
    });
    Tekken::from_json_bytes(json.to_string().as_bytes(), path)
        .map_err(|e| CheckpointError::invalid(path, e.to_string()))
}

/// The configuration a voxtral.cpp GGUF carries (`voxtral.params.*`: the flattened
/// `params.json`).
///
/// # Errors
/// [`CheckpointError`] naming the file: not `voxtral_realtime`, keys missing, values out of range.
pub fn config_from_gguf(g: &Gguf<'_>, path: &Path) -> Result<VoxtralConfig, CheckpointError> {
    match g.get("general.architecture").and_then(|v| v.as_str()) {
        Some(ARCHITECTURE) => {}
        Some(other) => {
            return Err(CheckpointError::invalid(
                path,
                format!(
                    "general.architecture is {other:?}; only {ARCHITECTURE:?} (Voxtral Mini 4B Realtime) is supported"
                ),
            ));
        }
        None => {
            return Err(CheckpointError::invalid(
                path,
                "general.architecture missing: not a voxtral.cpp GGUF",
            ));
        }
    }
    let params = params_from_metadata(g);
    if params.as_object().is_none_or(Map::is_empty) {
        return Err(CheckpointError::invalid(
            path,
            "no voxtral.params.* metadata (the flattened params.json voxtral.cpp's converter writes)",
        ));
    }
    VoxtralConfig::from_params_value(ConfigJson::from_value(path, params))
}

impl Voxtral {
    /// Load a voxtral.cpp GGUF (see the module doc) onto `device`, with its tokenizer.
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file: not GGUF or damaged ([`crate::quant::gguf`]'s checks),
    /// not `voxtral_realtime`, configuration or tokenizer keys missing, tensors missing,
    /// unexpected or mis-shaped (all listed), a tensor type other than F32, F16, BF16, Q8_0, Q4_0.
    pub fn load_gguf(path: &Path, device: &Device) -> Result<(Self, Tekken), CheckpointError> {
        // One shared handle on the mapping: packed and 16-bit matrices keep slices of it.
        let mmap = bytes::Bytes::from_owner(
            map_file(path).map_err(|e| CheckpointError::file(path, e.to_string()))?,
        );
        Self::load_gguf_bytes(mmap, path, device)
    }

    /// [`Voxtral::load_gguf`] from the whole file's bytes (a browser's `fetch`); `path` only
    /// names the file in errors. Packed and 16-bit matrices keep slices of `mmap`.
    ///
    /// # Errors
    /// See [`Voxtral::load_gguf`].
    pub fn load_gguf_bytes(
        mmap: bytes::Bytes,
        path: &Path,
        device: &Device,
    ) -> Result<(Self, Tekken), CheckpointError> {
        let g = Gguf::parse(&mmap, path).map_err(|e| CheckpointError::file(path, e.to_string()))?;
        let cfg = config_from_gguf(&g, path)?;
        let tok = tekken_from_gguf(&g, path)?;
        // Check names and shapes against the configuration, as for safetensors.
        let mut found = Vec::new();
        let mut hf_of: HashMap<String, String> = HashMap::new();
        for t in g.tensors() {
            if t.name == "audio.mel_filters" || t.name == "enc.pos_embedding" {
                continue;
            }
            let hf = compact_to_mistral(t.name).and_then(|m| mistral_to_hf(&m));
            if let Some(h) = &hf {
                hf_of.insert(t.name.to_string(), h.clone());
            }
            let shape: Vec<usize> = t.shape().iter().map(|&d| d as usize).collect();
            let mut f = FoundTensor::named(t.name, &shape, None);
            f.name = hf;
            found.push(f);
        }
        no_problems(path, tensor_problems(&expected_tensors(&cfg), &found))?;

        let mut model = Voxtral::random(cfg, device);
        // Tensors used in place (packed or 16-bit), not loaded through Burn.
        let mut in_place: HashSet<String> = HashSet::new();
        {
            let mut linears: HashMap<String, &mut LinearWeight> = model
                .linears_mut()
                .into_iter()
                .map(|(n, l)| (format!("{n}.weight"), l))
                .collect();
            for t in g.tensors() {
                let Some(hf) = hf_of.get(t.name) else {
                    continue;
                };
                let Some(stored) = stored_matrix(&mmap, t, path)? else {
                    continue;
                };
                if let Some(l) = linears.get_mut(hf) {
                    match stored {
                        StoredMatrix::Packed(m) => l.set_packed(m),
                        StoredMatrix::Half(m) => l.set_half(m),
                    }
                    in_place.insert(t.name.to_string());
                }
            }
        }
        // The token table (also the tied head) as stored too.
        if let Some(t) = g.tensor("tok_embeddings.weight")
            && let Some(stored) = stored_matrix(&mmap, t, path)?
        {
            model.net.model.language_model.embed_tokens = match stored {
                StoredMatrix::Packed(m) => TokenEmbedding::Packed(Arc::new(m)),
                StoredMatrix::Half(m) => TokenEmbedding::Half(m),
            };
            in_place.insert(t.name.to_string());
        }
        // Everything not packed: widened to f32 when Burn asks for it.
        let mut snapshots = Vec::new();
        for t in g.tensors() {
            let Some(hf) = hf_of.get(t.name) else {
                continue;
            };
            if in_place.contains(t.name) {
                continue;
            }
            let shape: Vec<usize> = t.shape().iter().map(|&d| d as usize).collect();
            let (ty, range) = (t.ty, t.range.clone());
            let map = mmap.clone();
            let name = t.name.to_string();
            snapshots.push(burn::store::bridge::deferred(
                hf.clone(),
                DType::F32,
                Shape::from(shape.clone()),
                None,
                move || {
                    let v = dequantize(&map[range.clone()], ty).map_err(|e| {
                        burn::store::burn_pack::Error::ValidationError(format!(
                            "tensor {name}: {e}"
                        ))
                    })?;
                    Ok(TensorData::new(v, shape.clone()))
                },
            ));
        }
        let result = model
            .net
            .apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), false);
        let mut problems: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
        problems.extend(
            result
                .missing
                .iter()
                .map(|(n, why)| format!("missing tensor {n}: {why}")),
        );
        no_problems(path, problems)?;
        Ok((model, tok))
    }
}
