//! Causal audio encoder (`model.audio_tower`; Mistral `whisper_encoder`).
//!
//! Mirrors `VoxtralRealtimeEncoder`, `VoxtralRealtimeEmbedder`, `VoxtralRealtimeEncoderLayer`
//! in huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>:
//! conv1 (k=3, stride 1, 2 zeros left) + GELU, conv2 (k=3, stride 2, 1 zero left) + GELU,
//! transpose to `[batch, frames, d_model]`, then pre-norm layers with RoPE attention over a causal
//! sliding window and a SwiGLU MLP, then a final RMSNorm. No positional embedding is added.

use super::config::EncoderConfig;
use crate::nn::attention::{Attention, AttentionConfig, KvCache, Step, record_rope};
use crate::nn::gelu;
use crate::nn::{CausalConv1d, RMSNorm, RopeStyle, RotaryEmbedding, SwiGluMlp};
use crate::trace::Scope;
use burn::module::Module;
use burn::tensor::{Device, Tensor};

/// The conv stem (`embedder`).
#[derive(Module, Debug)]
pub struct Embedder {
    /// `num_mel_bins -> d_model`, k=3, stride 1 (Mistral `conv_layers.0.conv`).
    pub conv1: CausalConv1d,
    /// `d_model -> d_model`, k=3, stride 2 (Mistral `conv_layers.1.conv`).
    pub conv2: CausalConv1d,
}

impl Embedder {
    /// Randomly initialised stem for `cfg`: `num_mel_bins -> d_model` (k=3, stride 1), then
    /// `d_model -> d_model` (k=3, stride 2).
    pub fn new(cfg: &EncoderConfig, device: &Device) -> Self {
        Self {
            conv1: CausalConv1d::new(cfg.num_mel_bins, cfg.d_model, 3, 1, device),
            conv2: CausalConv1d::new(cfg.d_model, cfg.d_model, 3, 2, device),
        }
    }

    /// conv1 + GELU, conv2 + GELU, transposed to one row per encoder frame; records `conv1`,
    /// `conv2` and this module's `in.0`/`out`.
    ///
    /// # Shapes
    /// - `features`: `[batch, n_mels, frames]`, `frames` even
    /// - returns `[batch, frames / 2, d_model]`
    pub fn forward(&self, features: Tensor<3>, scope: &Scope) -> Tensor<3> {
        scope.input(&features);
        let c1 = scope.child("conv1");
        c1.input(&features);
        let h = gelu(c1.output(self.conv1.forward(features)));
        let c2 = scope.child("conv2");
        c2.input(&h);
        let h = gelu(c2.output(self.conv2.forward(h)));
        scope.output(h.swap_dims(1, 2))
    }
}

/// One encoder layer.
#[derive(Module, Debug)]
pub struct EncoderLayer {
    /// Pre-attention norm (Mistral `attention_norm`).
    pub self_attn_layer_norm: RMSNorm,
    /// Attention; biases on q, v, o but not k (Mistral `attention.wq/wk/wv/wo`).
    pub self_attn: Attention,
    /// Pre-MLP norm (Mistral `ffn_norm`).
    pub final_layer_norm: RMSNorm,
    /// SwiGLU; `down_proj` has a bias (Mistral `feed_forward.w1/w3/w2`).
    pub mlp: SwiGluMlp,
}

impl EncoderLayer {
    /// Randomly initialised layer for `cfg`: multi-head attention (`n_kv_heads = n_heads`) with
    /// q, v, o biases and none on k; SwiGLU whose `down_proj` has a bias.
    pub fn new(cfg: &EncoderConfig, device: &Device) -> Self {
        let attn = AttentionConfig {
            d_model: cfg.d_model,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_heads,
            head_dim: cfg.head_dim,
            biases: [true, false, true, true],
        };
        Self {
            self_attn_layer_norm: RMSNorm::new(cfg.d_model, cfg.norm_eps, device),
            self_attn: Attention::new(&attn, device),
            final_layer_norm: RMSNorm::new(cfg.d_model, cfg.norm_eps, device),
            mlp: SwiGluMlp::new(cfg.d_model, cfg.intermediate_size, true, device),
        }
    }

    /// Pre-norm residual layer: `x + self_attn(self_attn_layer_norm(x))`, then
    /// `+ mlp(final_layer_norm(..))`, at the positions, RoPE tables and window of `step`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`
    /// - `step.cos`, `step.sin`: `[seq, head_dim/2]`
    /// - returns `[batch, seq, d_model]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        step: &Step,
        cache: Option<&mut KvCache>,
        scope: &Scope,
    ) -> Tensor<3> {
        let x = scope.fed_input(x);
        if let Some(tp) = &step.traced {
            tp.record(scope);
            tp.record(&scope.child("self_attn"));
        }
        let n1 = scope.child("self_attn_layer_norm");
        n1.input(&x);
        let h = n1.output(self.self_attn_layer_norm.forward(x.clone()));
        let h = self
            .self_attn
            .forward(h, step, cache, &scope.child("self_attn"));
        let x = x + h;
        let n2 = scope.child("final_layer_norm");
        n2.input(&x);
        let h = n2.output(self.final_layer_norm.forward(x.clone()));
        let h = self.mlp.forward(h, &scope.child("mlp"));
        scope.output(x + h)
    }
}

/// The audio encoder.
#[derive(Module, Debug)]
pub struct AudioEncoder {
    /// Conv stem.
    pub embedder: Embedder,
    /// Transformer layers.
    pub layers: Vec<EncoderLayer>,
    /// Final norm (Mistral `transformer.norm`).
    pub norm: RMSNorm,
}

impl AudioEncoder {
    /// Randomly initialised encoder of the given shape.
    pub fn new(cfg: &EncoderConfig, device: &Device) -> Self {
        Self {
            embedder: Embedder::new(cfg, device),
            layers: (0..cfg.n_layers)
                .map(|_| EncoderLayer::new(cfg, device))
                .collect(),
            norm: RMSNorm::new(cfg.d_model, cfg.norm_eps, device),
        }
    }

    /// Offline pass: conv stem, every layer with the causal sliding-window mask over all frames
    /// at once, final norm.
    ///
    /// # Shapes
    /// - `features`: `[batch, n_mels, frames]`, `frames` even
    /// - returns `[batch, frames / 2, d_model]`
    pub fn forward(
        &self,
        features: Tensor<3>,
        cfg: &EncoderConfig,
        style: RopeStyle,
        scope: &Scope,
    ) -> Tensor<3> {
        scope.record("in.input_features", &features);
        let h = self.embedder.forward(features, &scope.child("embedder"));
        let seq = h.dims()[1];
        let rope = RotaryEmbedding {
            theta: cfg.rope_theta,
            head_dim: cfg.head_dim,
        };
        let (cos, sin) = rope.tables(0, seq, &h.device());
        let traced = record_rope(&scope.child("rotary_emb"), &h, &cos, &sin, 0);
        let step = Step {
            pos0: 0,
            cos: &cos,
            sin: &sin,
            style,
            window: cfg.sliding_window,
            traced,
        };
        let mut h = h;
        let layers = scope.child("layers");
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h, &step, None, &layers.index(i));
        }
        let n = scope.child("norm");
        let h = n.fed_input(h);
        let h = n.output(self.norm.forward(h));
        scope.record("out.last_hidden_state", &h);
        h
    }
}
