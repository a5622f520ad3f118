//! Voxtral Mini 4B Realtime configuration, read from Mistral `params.json` or HF `config.json`.
//!
//! Field names follow the field's terms; each doc names the upstream keys (Mistral `params.json`
//! / transformers `VoxtralRealtime*Config` in
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/configuration_voxtral_realtime.py>).

use crate::models::checkpoint::{CheckpointError, ConfigJson};
use crate::nn::RopeStyle;
use std::path::Path;

/// Largest width (d_model, head_dim, FFN width, mel bins) a config may give: 65 536.
pub const MAX_WIDTH: usize = 1 << 16;
/// Largest layer or head count a config may give: 1 024.
pub const MAX_LAYERS: usize = 1 << 10;
/// Largest vocabulary a config may give: 4 194 304 tokens.
pub const MAX_VOCAB: usize = 1 << 22;
/// Largest sliding window a config may give: 16 777 216 positions.
pub const MAX_WINDOW: usize = 1 << 24;

/// Audio encoder ("whisper_encoder" / `audio_tower`) hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    /// Model width. Mistral `encoder_args.dim`; HF `audio_config.hidden_size`. Released: 1280.
    pub d_model: usize,
    /// Transformer layers. Mistral `n_layers`; HF `num_hidden_layers`. Released: 32.
    pub n_layers: usize,
    /// Attention heads (no GQA). Mistral `n_heads`; HF `num_attention_heads`. Released: 32.
    pub n_heads: usize,
    /// Channels per head. Mistral/HF `head_dim`. Released: 64.
    pub head_dim: usize,
    /// SwiGLU hidden width. Mistral `hidden_dim`; HF `intermediate_size`. Released: 5120.
    pub intermediate_size: usize,
    /// Log-mel bins. Mistral `audio_encoding_args.num_mel_bins`; HF `num_mel_bins`. Released: 128.
    pub num_mel_bins: usize,
    /// RoPE base. Mistral `rope_theta`; HF `rope_parameters.rope_theta`. Released: 1e6.
    pub rope_theta: f64,
    /// Sliding attention window in encoder frames (20 ms each), including the current frame.
    /// Mistral/HF `sliding_window`. Released: 750.
    pub sliding_window: usize,
    /// RMSNorm epsilon. Mistral `norm_eps`; HF `rms_norm_eps`. Released: 1e-5.
    pub norm_eps: f64,
}

/// Text decoder (`language_model`) hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// Model width. Mistral `dim`; HF `text_config.hidden_size`. Released: 3072.
    pub d_model: usize,
    /// Layers. Mistral `n_layers`; HF `num_hidden_layers`. Released: 26.
    pub n_layers: usize,
    /// Query heads. Mistral `n_heads`; HF `num_attention_heads`. Released: 32.
    pub n_heads: usize,
    /// Key/value heads (GQA). Mistral `n_kv_heads`; HF `num_key_value_heads`. Released: 8.
    pub n_kv_heads: usize,
    /// Channels per head. Mistral/HF `head_dim`. Released: 128.
    pub head_dim: usize,
    /// SwiGLU hidden width. Mistral `hidden_dim`; HF `intermediate_size`. Released: 9216.
    pub intermediate_size: usize,
    /// Vocabulary size (tokens). Mistral/HF `vocab_size`. Released: 131072.
    pub vocab_size: usize,
    /// RoPE base. Mistral `rope_theta`; HF `rope_parameters.rope_theta`. Released: 1e6.
    pub rope_theta: f64,
    /// Sliding attention window in tokens, including the current one. Released: 8192.
    pub sliding_window: usize,
    /// RMSNorm epsilon. Mistral `norm_eps`; HF `rms_norm_eps`. Released: 1e-5.
    pub norm_eps: f64,
    /// LM head shares the token embedding. Mistral `tied_embeddings`; HF `tie_word_embeddings`.
    pub tied_embeddings: bool,
    /// Bottleneck width of the ADA RMSNorm time conditioning. Mistral
    /// `ada_rms_norm_t_cond_dim`; HF hard-codes 32. Released: 32.
    pub ada_t_cond_dim: usize,
}

/// Whole-model configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct VoxtralConfig {
    /// Audio encoder.
    pub encoder: EncoderConfig,
    /// Text decoder.
    pub decoder: DecoderConfig,
    /// Encoder frames grouped into one adapter token. Mistral
    /// `downsample_args.downsample_factor`; HF `downsample_factor`. Released: 4.
    pub downsample_factor: usize,
    /// RoPE layout the checkpoint's q/k rows assume: interleaved for Mistral
    /// `consolidated.safetensors`, half-split for HF `model.safetensors`.
    pub rope_style: RopeStyle,
}

impl VoxtralConfig {
    /// The released Voxtral Mini 4B Realtime (mistralai/Voxtral-Mini-4B-Realtime-2602
    /// `params.json`), Mistral weight layout.
    pub fn mini_4b_realtime() -> Self {
        Self {
            encoder: EncoderConfig {
                d_model: 1280,
                n_layers: 32,
                n_heads: 32,
                head_dim: 64,
                intermediate_size: 5120,
                num_mel_bins: 128,
                rope_theta: 1e6,
                sliding_window: 750,
                norm_eps: 1e-5,
            },
            decoder: DecoderConfig {
                d_model: 3072,
                n_layers: 26,
                n_heads: 32,
                n_kv_heads: 8,
                head_dim: 128,
                intermediate_size: 9216,
                vocab_size: 131072,
                rope_theta: 1e6,
                sliding_window: 8192,
                norm_eps: 1e-5,
                tied_embeddings: true,
                ada_t_cond_dim: 32,
            },
            downsample_factor: 4,
            rope_style: RopeStyle::Interleaved,
        }
    }

    /// Range checks, before anything is allocated from these numbers: every size at least 1 and
    /// at most a bound far above the released model (widths and head_dim
    /// [`MAX_WIDTH`], layers and heads [`MAX_LAYERS`], vocabulary [`MAX_VOCAB`], sliding
    /// windows [`MAX_WINDOW`], downsample factor 1..=64), heads that divide into KV groups,
    /// finite positive RoPE theta and norm epsilon below 1.
    ///
    /// # Errors
    /// A message naming the first offending key and value.
    pub fn validate(&self) -> Result<(), String> {
        let e = &self.encoder;
        let d = &self.decoder;
        let sizes = [
            ("encoder dim", e.d_model, MAX_WIDTH),
            ("encoder n_layers", e.n_layers, MAX_LAYERS),
            ("encoder n_heads", e.n_heads, MAX_LAYERS),
            ("encoder head_dim", e.head_dim, MAX_WIDTH),
            ("encoder hidden_dim", e.intermediate_size, MAX_WIDTH),
            ("num_mel_bins", e.num_mel_bins, MAX_WIDTH),
            ("encoder sliding_window", e.sliding_window, MAX_WINDOW),
            ("dim", d.d_model, MAX_WIDTH),
            ("n_layers", d.n_layers, MAX_LAYERS),
            ("n_heads", d.n_heads, MAX_LAYERS),
            ("n_kv_heads", d.n_kv_heads, MAX_LAYERS),
            ("head_dim", d.head_dim, MAX_WIDTH),
            ("hidden_dim", d.intermediate_size, MAX_WIDTH),
            ("vocab_size", d.vocab_size, MAX_VOCAB),
            ("sliding_window", d.sliding_window, MAX_WINDOW),
            ("ada_rms_norm_t_cond_dim", d.ada_t_cond_dim, MAX_WIDTH),
            ("downsample_factor", self.downsample_factor, 64),
        ];
        for (name, v, max) in sizes {
            if v == 0 || v > max {
                return Err(format!("{name} is {v}, expected 1..={max}"));
            }
        }
        if !d.n_heads.is_multiple_of(d.n_kv_heads) {
            return Err(format!(
                "n_heads {} is not a multiple of n_kv_heads {}",
                d.n_heads, d.n_kv_heads
            ));
        }
        for (name, theta) in [
            ("encoder rope_theta", e.rope_theta),
            ("rope_theta", d.rope_theta),
        ] {
            if !(theta.is_finite() && theta > 0.0) {
                return Err(format!("{name} is {theta}, expected a finite value > 0"));
            }
        }
        for (name, eps) in [("encoder norm_eps", e.norm_eps), ("norm_eps", d.norm_eps)] {
            if !(eps.is_finite() && eps > 0.0 && eps < 1.0) {
                return Err(format!("{name} is {eps}, expected 0 < eps < 1"));
            }
        }
        Ok(())
    }

    /// Read Mistral `params.json` (layout: interleaved RoPE).
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file: unreadable, invalid JSON, a missing/mistyped key
    /// (named too), or a value out of range ([`VoxtralConfig::validate`]).
    pub fn from_params_json(path: &Path) -> Result<Self, CheckpointError> {
        Self::from_params_value(ConfigJson::read(path)?)
    }

    /// [`VoxtralConfig::from_params_json`] on a `params.json` already read (errors name the
    /// path `j` carries).
    ///
    /// # Errors
    /// As [`VoxtralConfig::from_params_json`].
    pub fn from_params_value(j: ConfigJson) -> Result<Self, CheckpointError> {
        let path = j.path().to_path_buf();
        let path = path.as_path();
        let e = "multimodal.whisper_model_args.encoder_args";
        Self::checked(
            path,
            Self {
                encoder: EncoderConfig {
                    d_model: j.usize(&format!("{e}.dim"))?,
                    n_layers: j.usize(&format!("{e}.n_layers"))?,
                    n_heads: j.usize(&format!("{e}.n_heads"))?,
                    head_dim: j.usize(&format!("{e}.head_dim"))?,
                    intermediate_size: j.usize(&format!("{e}.hidden_dim"))?,
                    num_mel_bins: j.usize(&format!("{e}.audio_encoding_args.num_mel_bins"))?,
                    rope_theta: j.f64(&format!("{e}.rope_theta"))?,
                    sliding_window: j.usize(&format!("{e}.sliding_window"))?,
                    norm_eps: j.f64(&format!("{e}.norm_eps"))?,
                },
                decoder: DecoderConfig {
                    d_model: j.usize("dim")?,
                    n_layers: j.usize("n_layers")?,
                    n_heads: j.usize("n_heads")?,
                    n_kv_heads: j.usize("n_kv_heads")?,
                    head_dim: j.usize("head_dim")?,
                    intermediate_size: j.usize("hidden_dim")?,
                    vocab_size: j.usize("vocab_size")?,
                    rope_theta: j.f64("rope_theta")?,
                    sliding_window: j.usize("sliding_window")?,
                    norm_eps: j.f64("norm_eps")?,
                    tied_embeddings: j.bool_or("tied_embeddings", true)?,
                    ada_t_cond_dim: j.usize("ada_rms_norm_t_cond_dim")?,
                },
                downsample_factor: j
                    .usize("multimodal.whisper_model_args.downsample_args.downsample_factor")?,
                rope_style: RopeStyle::Interleaved,
            },
        )
    }

    /// `cfg` if [`VoxtralConfig::validate`] accepts it, else an error naming `path`.
    fn checked(path: &Path, cfg: Self) -> Result<Self, CheckpointError> {
        cfg.validate()
            .map_err(|m| CheckpointError::invalid(path, m))?;
        Ok(cfg)
    }

    /// This configuration as Mistral `params.json` (the keys
    /// [`VoxtralConfig::from_params_value`] reads, plus the fixed ones the released file
    /// carries: `use_biases`, `causal`, `ada_rms_norm_t_cond`, the encoder's `ffn_type`,
    /// `norm_type`, `pos_embed`), with the spectrogram settings of `audio` and
    /// `global_log_mel_max` (log10 units) under `audio_encoding_args`. What `voxtrace quantize`
    /// stores as `voxtral.params.*` for an HF folder, which has no `params.json`; the RoPE style
    /// is not part of it (Mistral files are interleaved).
    pub fn to_params_json(
        &self,
        audio: &crate::audio::AudioConfig,
        global_log_mel_max: f64,
    ) -> serde_json::Value {
        let e = &self.encoder;
        let d = &self.decoder;
        let sc = &audio.audio_encoding_config;
        serde_json::json!({
            "dim": d.d_model,
            "n_layers": d.n_layers,
            "head_dim": d.head_dim,
            "hidden_dim": d.intermediate_size,
            "n_heads": d.n_heads,
            "n_kv_heads": d.n_kv_heads,
            "use_biases": false,
            "causal": true,
            "rope_theta": d.rope_theta,
            "norm_eps": d.norm_eps,
            "vocab_size": d.vocab_size,
            "tied_embeddings": d.tied_embeddings,
            "sliding_window": d.sliding_window,
            "ada_rms_norm_t_cond": true,
            "ada_rms_norm_t_cond_dim": d.ada_t_cond_dim,
            "multimodal": {
                "whisper_model_args": {
                    "encoder_args": {
                        "audio_encoding_args": {
                            "sampling_rate": audio.sampling_rate,
                            "frame_rate": audio.frame_rate,
                            "num_mel_bins": e.num_mel_bins,
                            "hop_length": sc.hop_length,
                            "window_size": sc.window_size,
                            "global_log_mel_max": global_log_mel_max,
                            "transcription_format": audio.transcription_format,
                        },
                        "dim": e.d_model,
                        "n_layers": e.n_layers,
                        "head_dim": e.head_dim,
                        "hidden_dim": e.intermediate_size,
                        "n_heads": e.n_heads,
                        "n_kv_heads": e.n_heads,
                        "vocab_size": d.vocab_size,
                        "use_biases": true,
                        "rope_theta": e.rope_theta,
                        "causal": true,
                        "norm_eps": e.norm_eps,
                        "pos_embed": "rope",
                        "ffn_type": "swiglu",
                        "norm_type": "rms_norm",
                        "sliding_window": e.sliding_window,
                    },
                    "downsample_args": { "downsample_factor": self.downsample_factor },
                }
            }
        })
    }

    /// Read HF `config.json` (`VoxtralRealtimeConfig`; layout: half-split RoPE).
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file: unreadable, invalid JSON, a missing/mistyped key
    /// (named too), or a value out of range ([`VoxtralConfig::validate`]).
    pub fn from_hf_config_json(path: &Path) -> Result<Self, CheckpointError> {
        let j = ConfigJson::read(path)?;
        let a = "audio_config";
        let t = "text_config";
        let theta = |p: &str| -> Result<f64, CheckpointError> {
            j.f64(&format!("{p}.rope_parameters.rope_theta"))
                .or_else(|_| j.f64(&format!("{p}.rope_theta")))
        };
        Self::checked(
            path,
            Self {
                encoder: EncoderConfig {
                    d_model: j.usize(&format!("{a}.hidden_size"))?,
                    n_layers: j.usize(&format!("{a}.num_hidden_layers"))?,
                    n_heads: j.usize(&format!("{a}.num_attention_heads"))?,
                    head_dim: j.usize(&format!("{a}.head_dim"))?,
                    intermediate_size: j.usize(&format!("{a}.intermediate_size"))?,
                    num_mel_bins: j.usize(&format!("{a}.num_mel_bins"))?,
                    rope_theta: theta(a)?,
                    sliding_window: j.usize(&format!("{a}.sliding_window"))?,
                    norm_eps: j.f64(&format!("{a}.rms_norm_eps"))?,
                },
                decoder: DecoderConfig {
                    d_model: j.usize(&format!("{t}.hidden_size"))?,
                    n_layers: j.usize(&format!("{t}.num_hidden_layers"))?,
                    n_heads: j.usize(&format!("{t}.num_attention_heads"))?,
                    n_kv_heads: j.usize(&format!("{t}.num_key_value_heads"))?,
                    head_dim: j.usize(&format!("{t}.head_dim"))?,
                    intermediate_size: j.usize(&format!("{t}.intermediate_size"))?,
                    vocab_size: j.usize(&format!("{t}.vocab_size"))?,
                    rope_theta: theta(t)?,
                    sliding_window: j.usize(&format!("{t}.sliding_window"))?,
                    norm_eps: j.f64(&format!("{t}.rms_norm_eps"))?,
                    tied_embeddings: j.bool_or("tie_word_embeddings", true)?,
                    // transformers hard-codes the ADA bottleneck (VoxtralRealtimeTextAdaRmsNorm).
                    ada_t_cond_dim: 32,
                },
                downsample_factor: j.usize("downsample_factor")?,
                rope_style: RopeStyle::HalfSplit,
            },
        )
    }
}
