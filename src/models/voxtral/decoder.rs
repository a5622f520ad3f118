//! Text decoder (`model.language_model`; Mistral top-level `layers.N`, `norm`,
//! `tok_embeddings`).
//!
//! Mirrors `VoxtralRealtimeTextModel`, `VoxtralRealtimeTextDecoderLayer`,
//! `VoxtralRealtimeTextAdaRmsNorm` in huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>:
//! pre-norm GQA attention without
//! biases, then `post_attention_layernorm(h) * (1 + ada_rms_norm(t_cond))` (only the FFN norm
//! is time-conditioned) and a SwiGLU MLP; a final RMSNorm.

use super::config::DecoderConfig;
use crate::nn::attention::{Attention, AttentionConfig, KvCache, Step, record_rope};
use crate::nn::embedding::TokenEmbedding;
use crate::nn::gelu;
use crate::nn::mlp::linear;
use crate::nn::{RMSNorm, RopeStyle, RotaryEmbedding, SwiGluMlp};
use crate::trace::Scope;
use burn::module::Module;
use burn::nn::{EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

/// ADA RMSNorm time conditioning: `linear2(gelu(linear1(t_cond)))`.
#[derive(Module, Debug)]
pub struct AdaRmsNorm {
    /// `[d_model] -> [t_cond_dim]`, no bias (Mistral `ada_rms_norm_t_cond.0`).
    pub linear1: Linear,
    /// `[t_cond_dim] -> [d_model]`, no bias (Mistral `ada_rms_norm_t_cond.2`).
    pub linear2: Linear,
}

impl AdaRmsNorm {
    /// Randomly initialised `[d_model] -> [ada_t_cond_dim] -> [d_model]`, no biases.
    pub fn new(cfg: &DecoderConfig, device: &Device) -> Self {
        Self {
            linear1: LinearConfig::new(cfg.d_model, cfg.ada_t_cond_dim)
                .with_bias(false)
                .init(device),
            linear2: LinearConfig::new(cfg.ada_t_cond_dim, cfg.d_model)
                .with_bias(false)
                .init(device),
        }
    }

    /// Scale offset of the FFN norm, `linear2(gelu(linear1(t_cond)))`.
    ///
    /// # Shapes
    /// - `t_cond`: `[1, d_model]`
    /// - returns `[1, d_model]` (through a `[1, ada_t_cond_dim]` bottleneck)
    pub fn forward(&self, t_cond: Tensor<2>, scope: &Scope) -> Tensor<2> {
        scope.input(&t_cond);
        let h = linear(&self.linear1, t_cond, &scope.child("linear1"));
        let h = linear(&self.linear2, gelu(h), &scope.child("linear2"));
        scope.output(h)
    }
}

/// One decoder layer.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// Pre-attention norm (Mistral `attention_norm`).
    pub input_layernorm: RMSNorm,
    /// GQA attention without biases (Mistral `attention.wq/wk/wv/wo`).
    pub self_attn: Attention,
    /// Pre-MLP norm (Mistral `ffn_norm`), scaled by `1 + ada_rms_norm(t_cond)`.
    pub post_attention_layernorm: RMSNorm,
    /// Time conditioning of the FFN norm.
    pub ada_rms_norm: AdaRmsNorm,
    /// SwiGLU without biases (Mistral `feed_forward.w1/w3/w2`).
    pub mlp: SwiGluMlp,
}

impl DecoderLayer {
    /// Randomly initialised layer for `cfg`: GQA attention without biases
    /// (`n_heads` query heads over `n_kv_heads` key/value heads), ADA RMSNorm, SwiGLU.
    pub fn new(cfg: &DecoderConfig, device: &Device) -> Self {
        let attn = AttentionConfig {
            d_model: cfg.d_model,
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
            biases: [false; 4],
        };
        Self {
            input_layernorm: RMSNorm::new(cfg.d_model, cfg.norm_eps, device),
            self_attn: Attention::new(&attn, device),
            post_attention_layernorm: RMSNorm::new(cfg.d_model, cfg.norm_eps, device),
            ada_rms_norm: AdaRmsNorm::new(cfg, device),
            mlp: SwiGluMlp::new(cfg.d_model, cfg.intermediate_size, false, device),
        }
    }

    /// Pre-norm residual layer: `x + self_attn(input_layernorm(x))`, then
    /// `+ mlp(post_attention_layernorm(..) * (1 + ada_rms_norm(t_cond)))`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`
    /// - `t_cond`: `[1, d_model]`
    /// - `step.cos`, `step.sin`: `[seq, head_dim/2]`
    /// - returns `[batch, seq, d_model]`
    pub fn forward(
        &self,
        x: Tensor<3>,
        t_cond: &Tensor<2>,
        step: &Step,
        cache: Option<&mut KvCache>,
        scope: &Scope,
    ) -> Tensor<3> {
        let x = scope.fed_input(x);
        scope.record("in.t_cond", t_cond);
        if let Some(tp) = &step.traced {
            tp.record(scope);
            tp.record(&scope.child("self_attn"));
        }
        let n1 = scope.child("input_layernorm");
        n1.input(&x);
        let h = n1.output(self.input_layernorm.forward(x.clone()));
        let h = self
            .self_attn
            .forward(h, step, cache, &scope.child("self_attn"));
        let x = x + h;
        let n2 = scope.child("post_attention_layernorm");
        n2.input(&x);
        let h = n2.output(self.post_attention_layernorm.forward(x.clone()));
        let ada = self
            .ada_rms_norm
            .forward(t_cond.clone(), &scope.child("ada_rms_norm"));
        let h = h * (ada + 1.0).unsqueeze::<3>();
        let h = self.mlp.forward(h, &scope.child("mlp"));
        scope.output(x + h)
    }
}

/// The text decoder.
#[derive(Module, Debug)]
pub struct TextModel {
    /// Token embedding `[vocab, d_model]` (Mistral `tok_embeddings`), also the tied LM head.
    pub embed_tokens: TokenEmbedding,
    /// Decoder layers.
    pub layers: Vec<DecoderLayer>,
    /// Final norm.
    pub norm: RMSNorm,
}

impl TextModel {
    /// Randomly initialised decoder of the given shape.
    pub fn new(cfg: &DecoderConfig, device: &Device) -> Self {
        Self {
            embed_tokens: EmbeddingConfig::new(cfg.vocab_size, cfg.d_model)
                .init(device)
                .into(),
            layers: (0..cfg.n_layers)
                .map(|_| DecoderLayer::new(cfg, device))
                .collect(),
            norm: RMSNorm::new(cfg.d_model, cfg.norm_eps, device),
        }
    }

    /// Decoder pass over `inputs_embeds` at positions `pos0..pos0+seq`, then the final norm.
    /// With `caches` (one per layer) keys/values are kept for later steps.
    ///
    /// # Shapes
    /// - `inputs_embeds`: `[batch, seq, d_model]`
    /// - `t_cond`: `[1, d_model]`
    /// - returns `[batch, seq, d_model]` (last hidden state)
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        inputs_embeds: Tensor<3>,
        t_cond: &Tensor<2>,
        pos0: usize,
        cfg: &DecoderConfig,
        style: RopeStyle,
        mut caches: Option<&mut [KvCache]>,
        scope: &Scope,
    ) -> Tensor<3> {
        scope.record("in.inputs_embeds", &inputs_embeds);
        scope.record("in.t_cond", t_cond);
        let seq = inputs_embeds.dims()[1];
        let rope = RotaryEmbedding {
            theta: cfg.rope_theta,
            head_dim: cfg.head_dim,
        };
        let (cos, sin) = rope.tables(pos0, seq, &inputs_embeds.device());
        let traced = record_rope(&scope.child("rotary_emb"), &inputs_embeds, &cos, &sin, pos0);
        let step = Step {
            pos0,
            cos: &cos,
            sin: &sin,
            style,
            window: cfg.sliding_window,
            traced,
        };
        let layers = scope.child("layers");
        let mut h = inputs_embeds;
        for (i, layer) in self.layers.iter().enumerate() {
            let cache = caches.as_deref_mut().map(|c| &mut c[i]);
            h = layer.forward(h, t_cond, &step, cache, &layers.index(i));
        }
        let n = scope.child("norm");
        let h = n.fed_input(h);
        let h = n.output(self.norm.forward(h));
        scope.record("out.last_hidden_state", &h);
        h
    }
}
