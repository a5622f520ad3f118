//! Whisper hyper-parameters and greedy-generation settings.
//!
//! [`WhisperConfig`] holds the fields of transformers' `WhisperConfig`
//! (huggingface/transformers <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/configuration_whisper.py>) that
//! the forward pass needs; it is read from a transformers `config.json` or derived from a
//! CTranslate2 `model.bin` ([`super::ct2::whisper_dims`]). [`GenerationSettings`] holds the
//! English-only greedy settings of `openai/whisper-tiny.en`'s `generation_config.json`, with the
//! suppression lists read from CTranslate2's `config.json` (`suppress_ids`,
//! `suppress_ids_begin`) or from a transformers `generation_config.json`.

use crate::models::checkpoint::{CheckpointError, parse_json, read_json};
use serde::Deserialize;
use std::path::Path;

/// Shape of a Whisper model (transformers `WhisperConfig` names), from a transformers
/// `config.json` or a CTranslate2 `model.bin` ([`super::ct2::whisper_dims`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WhisperConfig {
    /// Log-mel bins of the input features (80 for tiny.en).
    pub num_mel_bins: usize,
    /// Model width (384 for tiny.en).
    pub d_model: usize,
    /// Encoder layers (4).
    pub encoder_layers: usize,
    /// Decoder layers (4).
    pub decoder_layers: usize,
    /// Encoder attention heads (6; head_dim = d_model / heads = 64).
    pub encoder_attention_heads: usize,
    /// Decoder attention heads (6).
    pub decoder_attention_heads: usize,
    /// Encoder FFN width (1536).
    pub encoder_ffn_dim: usize,
    /// Decoder FFN width (1536).
    pub decoder_ffn_dim: usize,
    /// Vocabulary size (51864 for the English-only models).
    pub vocab_size: usize,
    /// Encoder positions = mel frames / 2 (1500 for 30 s).
    pub max_source_positions: usize,
    /// Decoder positions (448): the longest token sequence, prompt included.
    pub max_target_positions: usize,
}

/// LayerNorm epsilon of every Whisper `nn.LayerNorm` (PyTorch default).
pub const LAYER_NORM_EPS: f64 = 1e-5;

#[derive(Deserialize)]
struct HfConfigJson {
    model_type: Option<String>,
    num_mel_bins: usize,
    d_model: usize,
    encoder_layers: usize,
    decoder_layers: usize,
    encoder_attention_heads: usize,
    decoder_attention_heads: usize,
    encoder_ffn_dim: usize,
    decoder_ffn_dim: usize,
    vocab_size: usize,
    max_source_positions: usize,
    max_target_positions: usize,
    #[serde(default)]
    activation_function: Option<String>,
    #[serde(default)]
    scale_embedding: Option<bool>,
}

impl WhisperConfig {
    /// Whisper tiny.en (openai/whisper-tiny.en `config.json`).
    pub fn tiny_en() -> Self {
        Self {
            num_mel_bins: 80,
            d_model: 384,
            encoder_layers: 4,
            decoder_layers: 4,
            encoder_attention_heads: 6,
            decoder_attention_heads: 6,
            encoder_ffn_dim: 1536,
            decoder_ffn_dim: 1536,
            vocab_size: 51864,
            max_source_positions: 1500,
            max_target_positions: 448,
        }
    }

    /// Read a transformers Whisper `config.json`.
    ///
    /// # Errors
    /// [`CheckpointError`] if unreadable, not JSON, a field is missing, `model_type` is not
    /// `whisper`, the activation is not `gelu`, `scale_embedding` is true (not implemented), or
    /// d_model is not divisible by the head counts.
    pub fn from_hf_config_json(path: &Path) -> Result<Self, CheckpointError> {
        let c: HfConfigJson = read_json(path)?;
        let bad = |message: String| CheckpointError::invalid(path, message);
        if let Some(t) = &c.model_type
            && t != "whisper"
        {
            return Err(bad(format!("model_type is {t:?}, expected \"whisper\"")));
        }
        if let Some(a) = &c.activation_function
            && a != "gelu"
        {
            return Err(bad(format!(
                "activation_function {a:?} is not supported (only \"gelu\")"
            )));
        }
        if c.scale_embedding == Some(true) {
            return Err(bad("scale_embedding = true is not supported".into()));
        }
        let cfg = Self {
            num_mel_bins: c.num_mel_bins,
            d_model: c.d_model,
            encoder_layers: c.encoder_layers,
            decoder_layers: c.decoder_layers,
            encoder_attention_heads: c.encoder_attention_heads,
            decoder_attention_heads: c.decoder_attention_heads,
            encoder_ffn_dim: c.encoder_ffn_dim,
            decoder_ffn_dim: c.decoder_ffn_dim,
            vocab_size: c.vocab_size,
            max_source_positions: c.max_source_positions,
            max_target_positions: c.max_target_positions,
        };
        cfg.validate().map_err(bad)?;
        Ok(cfg)
    }

    /// Check that heads divide d_model and no size is zero.
    ///
    /// # Errors
    /// A message naming the offending field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("num_mel_bins", self.num_mel_bins),
            ("d_model", self.d_model),
            ("encoder_layers", self.encoder_layers),
            ("decoder_layers", self.decoder_layers),
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
            ("encoder_ffn_dim", self.encoder_ffn_dim),
            ("decoder_ffn_dim", self.decoder_ffn_dim),
            ("vocab_size", self.vocab_size),
            ("max_source_positions", self.max_source_positions),
            ("max_target_positions", self.max_target_positions),
        ] {
            if v == 0 {
                return Err(format!("{name} is 0"));
            }
            // Far above any Whisper (large-v3: d_model 1280, 32 layers, vocab 51866); bounds
            // what a config.json can make us allocate.
            let max = match name {
                "vocab_size" => 1 << 22,
                "encoder_layers"
                | "decoder_layers"
                | "encoder_attention_heads"
                | "decoder_attention_heads" => 1 << 10,
                _ => 1 << 16,
            };
            if v > max {
                return Err(format!("{name} is {v}, expected at most {max}"));
            }
        }
        for h in [self.encoder_attention_heads, self.decoder_attention_heads] {
            if !self.d_model.is_multiple_of(h) {
                return Err(format!(
                    "d_model {} is not divisible by {h} heads",
                    self.d_model
                ));
            }
        }
        Ok(())
    }

    /// The config as a transformers `config.json` object (enough for
    /// [`WhisperConfig::from_hf_config_json`] and `WhisperConfig.from_dict`).
    pub fn to_hf_json(&self) -> serde_json::Value {
        serde_json::json!({
            "model_type": "whisper",
            "architectures": ["WhisperForConditionalGeneration"],
            "num_mel_bins": self.num_mel_bins,
            "d_model": self.d_model,
            "encoder_layers": self.encoder_layers,
            "decoder_layers": self.decoder_layers,
            "encoder_attention_heads": self.encoder_attention_heads,
            "decoder_attention_heads": self.decoder_attention_heads,
            "encoder_ffn_dim": self.encoder_ffn_dim,
            "decoder_ffn_dim": self.decoder_ffn_dim,
            "vocab_size": self.vocab_size,
            "max_source_positions": self.max_source_positions,
            "max_target_positions": self.max_target_positions,
            "activation_function": "gelu",
            "scale_embedding": false,
            "tie_word_embeddings": true,
            "decoder_start_token_id": SOT,
            "eos_token_id": EOT,
            "pad_token_id": EOT,
        })
    }

    /// Channels per encoder head.
    pub fn encoder_head_dim(&self) -> usize {
        self.d_model / self.encoder_attention_heads
    }

    /// Channels per decoder head.
    pub fn decoder_head_dim(&self) -> usize {
        self.d_model / self.decoder_attention_heads
    }

    /// Mel frames of one window (`2 * max_source_positions`, 3000 = 30 s at hop 160).
    pub fn n_frames(&self) -> usize {
        2 * self.max_source_positions
    }
}

/// `<|startoftranscript|>` of the English-only vocabulary (decoder start token).
pub const SOT: u32 = 50257;
/// `<|endoftext|>` (EOS, also the pad token).
pub const EOT: u32 = 50256;
/// `<|notimestamps|>` of the English-only vocabulary.
pub const NO_TIMESTAMPS: u32 = 50362;

/// Greedy decoding settings (transformers `GenerationConfig` fields for Whisper).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationSettings {
    /// Decoder prompt, `[50257, 50362]` for tiny.en without timestamps
    /// (`<|startoftranscript|><|notimestamps|>`).
    pub prompt: Vec<u32>,
    /// End-of-text token; decoding stops after emitting it.
    pub eos_token_id: u32,
    /// Longest sequence in tokens, prompt included (`max_length` = 448).
    pub max_length: usize,
    /// Tokens whose logits are set to `-inf` at every step (`suppress_tokens`).
    pub suppress_tokens: Vec<u32>,
    /// Tokens suppressed at the first generated position only (`begin_suppress_tokens`,
    /// `[220, 50256]`).
    pub begin_suppress_tokens: Vec<u32>,
}

/// Every id of `ids` (from key `key` of `path`) is a token of a `vocab_size`-token vocabulary.
fn check_ids(
    path: &Path,
    key: &str,
    ids: &[u32],
    vocab_size: usize,
) -> Result<(), CheckpointError> {
    match ids.iter().find(|&&t| t as usize >= vocab_size) {
        Some(t) => Err(CheckpointError::Key {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem: format!("token id {t} is outside the model's {vocab_size}-token vocabulary"),
        }),
        None => Ok(()),
    }
}

#[derive(Deserialize)]
struct Ct2ConfigJson {
    suppress_ids: Vec<u32>,
    suppress_ids_begin: Vec<u32>,
}

#[derive(Deserialize)]
struct HfGenerationJson {
    #[serde(default)]
    suppress_tokens: Option<Vec<u32>>,
    #[serde(default)]
    begin_suppress_tokens: Option<Vec<u32>>,
    #[serde(default)]
    max_length: Option<usize>,
    #[serde(default)]
    decoder_start_token_id: Option<u32>,
    #[serde(default)]
    no_timestamps_token_id: Option<u32>,
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
}

impl GenerationSettings {
    /// English-only, no timestamps, with the given suppression lists.
    pub fn english_only(
        suppress_tokens: Vec<u32>,
        begin_suppress_tokens: Vec<u32>,
        max_length: usize,
    ) -> Self {
        Self {
            prompt: vec![SOT, NO_TIMESTAMPS],
            eos_token_id: EOT,
            max_length,
            suppress_tokens,
            begin_suppress_tokens,
        }
    }

    /// From a CTranslate2 Whisper `config.json` (`suppress_ids`, `suppress_ids_begin`);
    /// `max_length` is the model's `max_target_positions`, `vocab_size` its vocabulary
    /// (tokens).
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file and the key: unreadable, not JSON, a list missing
    /// or not a list of token ids, or an id outside the vocabulary.
    pub fn from_ct2_config_json(
        path: &Path,
        max_length: usize,
        vocab_size: usize,
    ) -> Result<Self, CheckpointError> {
        Self::from_ct2_config(read_json(path)?, path, max_length, vocab_size)
    }

    /// [`GenerationSettings::from_ct2_config_json`] of the file's bytes (a browser's `fetch`);
    /// `path` only names it in errors.
    ///
    /// # Errors
    /// As [`GenerationSettings::from_ct2_config_json`].
    pub fn from_ct2_config_bytes(
        bytes: &[u8],
        path: &Path,
        max_length: usize,
        vocab_size: usize,
    ) -> Result<Self, CheckpointError> {
        Self::from_ct2_config(parse_json(bytes, path)?, path, max_length, vocab_size)
    }

    fn from_ct2_config(
        c: Ct2ConfigJson,
        path: &Path,
        max_length: usize,
        vocab_size: usize,
    ) -> Result<Self, CheckpointError> {
        check_ids(path, "suppress_ids", &c.suppress_ids, vocab_size)?;
        check_ids(
            path,
            "suppress_ids_begin",
            &c.suppress_ids_begin,
            vocab_size,
        )?;
        Ok(Self::english_only(
            c.suppress_ids,
            c.suppress_ids_begin,
            max_length,
        ))
    }

    /// From a transformers `generation_config.json` (missing fields take the tiny.en values:
    /// prompt `[decoder_start_token_id, no_timestamps_token_id]`, EOS 50256, `max_length`
    /// = `default_max_length`).
    ///
    /// # Errors
    /// [`CheckpointError`] if unreadable, or `suppress_tokens` / `begin_suppress_tokens` missing.
    pub fn from_hf_generation_json(
        path: &Path,
        default_max_length: usize,
        vocab_size: usize,
    ) -> Result<Self, CheckpointError> {
        let g = Self::read_hf_generation_json(path, default_max_length)?;
        check_ids(path, "decoder_start_token_id", &g.prompt[..1], vocab_size)?;
        check_ids(path, "no_timestamps_token_id", &g.prompt[1..], vocab_size)?;
        check_ids(path, "eos_token_id", &[g.eos_token_id], vocab_size)?;
        check_ids(path, "suppress_tokens", &g.suppress_tokens, vocab_size)?;
        check_ids(
            path,
            "begin_suppress_tokens",
            &g.begin_suppress_tokens,
            vocab_size,
        )?;
        Ok(g)
    }

    /// [`Self::from_hf_generation_json`] without the vocabulary check.
    fn read_hf_generation_json(
        path: &Path,
        default_max_length: usize,
    ) -> Result<Self, CheckpointError> {
        let c: HfGenerationJson = read_json(path)?;
        let missing = |f: &str| CheckpointError::invalid(path, format!("{f} missing"));
        let eos = match c.eos_token_id {
            Some(serde_json::Value::Number(n)) => n.as_u64().map(|x| x as u32).unwrap_or(EOT),
            _ => EOT,
        };
        Ok(Self {
            prompt: vec![
                c.decoder_start_token_id.unwrap_or(SOT),
                c.no_timestamps_token_id.unwrap_or(NO_TIMESTAMPS),
            ],
            eos_token_id: eos,
            max_length: c.max_length.unwrap_or(default_max_length),
            suppress_tokens: c
                .suppress_tokens
                .ok_or_else(|| missing("suppress_tokens"))?,
            begin_suppress_tokens: c
                .begin_suppress_tokens
                .ok_or_else(|| missing("begin_suppress_tokens"))?,
        })
    }
}
