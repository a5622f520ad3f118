//! The Whisper encoder-decoder, mirroring transformers' `WhisperForConditionalGeneration`
//! (huggingface/transformers <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/modeling_whisper.py>:
//! `WhisperModel`, `WhisperEncoder`, `WhisperDecoder`, `WhisperEncoderLayer`,
//! `WhisperDecoderLayer`, `WhisperAttention`, `eager_attention_forward`).
//!
//! Parameter paths equal the transformers state-dict names (`model.encoder.conv1.weight`,
//! `model.decoder.layers.0.encoder_attn.k_proj.weight`, ...) except that Burn's `LayerNorm`
//! calls `weight`/`bias` `gamma`/`beta` (burn-store's `PyTorchToBurnAdapter` renames them) and
//! `proj_out` has no parameter of its own: it is tied to `model.decoder.embed_tokens`.
//! Capture names equal the reference forward-hook names (see `fixtures/whisper_tiny_en/README.md`).

use super::config::{LAYER_NORM_EPS, WhisperConfig};
use crate::nn::attention::{KvCache, attend_with_weights, causal_mask, fused_attention};
use crate::nn::conv::Conv1d;
use crate::nn::gelu;
use crate::nn::linear::{is_capture, is_flex};
use crate::nn::mlp::linear;
use crate::nn::qlinear::{LinearWeight, QLinearError};
use crate::nn::qmatmul::QuantKind;
use crate::trace::Scope;
use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, LinearConfig};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// Errors of a forward pass on inputs of the wrong shape.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ForwardError {
    /// Input features do not have the shape the encoder needs.
    #[error("input features have shape {found:?}, expected [batch, {mels}, {frames}]")]
    Features {
        /// Found shape.
        found: Vec<usize>,
        /// Expected mel bins.
        mels: usize,
        /// Expected frames (2 * max_source_positions).
        frames: usize,
    },
    /// Decoder positions exceed `max_target_positions`.
    #[error("decoder positions {start}..{end} exceed max_target_positions {max}")]
    TooLong {
        /// First position.
        start: usize,
        /// One past the last position.
        end: usize,
        /// Limit.
        max: usize,
    },
    /// A cache holds a different number of layers than the decoder.
    #[error("decoder cache has {found} layers, model has {expected}")]
    Cache {
        /// Found layers.
        found: usize,
        /// Expected layers.
        expected: usize,
    },
}

fn layer_norm(d: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d)
        .with_epsilon(LAYER_NORM_EPS)
        .init(device)
}

/// Apply a LayerNorm and record `in.0` / `out`.
fn norm(ln: &LayerNorm, x: Tensor<3>, scope: &Scope) -> Tensor<3> {
    scope.input(&x);
    scope.output(ln.forward(x))
}

/// Exact (erf) GELU as the module `activation_fn`, recording `in.0` / `out`.
fn activation(x: Tensor<3>, scope: &Scope) -> Tensor<3> {
    scope.input(&x);
    scope.output(gelu(x))
}

/// `WhisperAttention`: q/v/out projections with bias, k without; no RoPE.
///
/// The attention maths is [`crate::nn::attention`]'s shared kernels
/// ([`attend_with_weights`] when the probabilities are recorded or off Flex,
/// [`fused_attention`] otherwise; [`causal_mask`] for the decoder). What stays here is what is
/// Whisper's own: the projection names and biases (`out_proj`, no `k_proj` bias), queries
/// scaled by `head_dim^-0.5` right after `q_proj` (upstream order, so the kernels run with
/// scale 1), the `out.1` probabilities capture, and keys/values passed in so that
/// cross-attention can reuse the encoder's (see [`DecoderLayerCache`]). [`crate::nn::Attention`]
/// (Voxtral) has RoPE, GQA, a sliding window and `o_proj`, none of which Whisper has.
#[derive(Module, Debug)]
pub struct WhisperAttention {
    /// `[d_model] -> [d_model]`, bias.
    pub q_proj: LinearWeight,
    /// `[d_model] -> [d_model]`, no bias.
    pub k_proj: LinearWeight,
    /// `[d_model] -> [d_model]`, bias.
    pub v_proj: LinearWeight,
    /// `[d_model] -> [d_model]`, bias.
    pub out_proj: LinearWeight,
    /// Heads.
    pub n_heads: usize,
    /// Channels per head.
    pub head_dim: usize,
}

impl WhisperAttention {
    /// Randomly initialised attention of width `d_model` with `n_heads` heads.
    pub fn new(d_model: usize, n_heads: usize, device: &Device) -> Self {
        Self {
            q_proj: LinearConfig::new(d_model, d_model).init(device).into(),
            k_proj: LinearConfig::new(d_model, d_model)
                .with_bias(false)
                .init(device)
                .into(),
            v_proj: LinearConfig::new(d_model, d_model).init(device).into(),
            out_proj: LinearConfig::new(d_model, d_model).init(device).into(),
            n_heads,
            head_dim: d_model / n_heads,
        }
    }

    /// The four projections (`q_proj`, `k_proj`, `v_proj`, `out_proj`), for packing.
    pub fn projections_mut(&mut self) -> [&mut LinearWeight; 4] {
        [
            &mut self.q_proj,
            &mut self.k_proj,
            &mut self.v_proj,
            &mut self.out_proj,
        ]
    }

    /// `[b, t, d_model]` -> `[b, n_heads, t, head_dim]`.
    fn heads(&self, x: Tensor<3>) -> Tensor<4> {
        let [b, t, _] = x.dims();
        x.reshape([b, t, self.n_heads, self.head_dim])
            .swap_dims(1, 2)
    }

    /// Keys and values of `states`, recording the `k_proj` / `v_proj` captures.
    ///
    /// # Shapes
    /// `states [batch, t, d_model]` -> `(k, v)`, each `[batch, n_heads, t, head_dim]`.
    pub fn key_values(&self, states: Tensor<3>, scope: &Scope) -> (Tensor<4>, Tensor<4>) {
        let k = linear(&self.k_proj, states.clone(), &scope.child("k_proj"));
        let v = linear(&self.v_proj, states, &scope.child("v_proj"));
        (self.heads(k), self.heads(v))
    }

    /// Attend `x [b, s, d_model]` to keys/values `[b, n_heads, t, head_dim]`; `mask [s, t]`
    /// hides keys where `true`. Queries are scaled by `head_dim^-0.5` after `q_proj`, as
    /// upstream does. Records `q_proj`, `out_proj`, `out.0` and the probabilities `out.1`
    /// `[b, n_heads, s, t]`. With capture off on Flex the probabilities are not needed and the
    /// fused kernel ([`fused_attention`]) runs instead of matmul/softmax/matmul.
    ///
    /// # Shapes
    /// `x [batch, s, d_model]`, `k` / `v [batch, n_heads, t, head_dim]`, `mask [s, t]` ->
    /// `[batch, s, d_model]`.
    pub fn attend(
        &self,
        x: Tensor<3>,
        k: Tensor<4>,
        v: Tensor<4>,
        mask: Option<Tensor<2, burn::tensor::Bool>>,
        scope: &Scope,
    ) -> Tensor<3> {
        let [b, s, d] = x.dims();
        let scaling = (self.head_dim as f64).powf(-0.5);
        let q = linear(&self.q_proj, x, &scope.child("q_proj")) * scaling;
        let q = self.heads(q);
        // The probabilities exist only on the explicit path: use it when they are recorded,
        // and off Flex (a graph captured for export keeps upstream's op pattern); otherwise
        // the fused kernel.
        let (out, weights) = if scope.enabled() || !is_flex(&q.device()) {
            let (out, weights) = attend_with_weights(q, k, v, 1.0, mask);
            (out, Some(weights))
        } else {
            (fused_attention(q, k, v, Some(1.0), mask), None)
        };
        let out = out.swap_dims(1, 2).reshape([b, s, d]);
        let out = linear(&self.out_proj, out, &scope.child("out_proj"));
        scope.record("out.0", &out);
        if let Some(w) = &weights {
            scope.record("out.1", w);
        }
        out
    }
}

/// `WhisperEncoderLayer` (pre-norm).
#[derive(Module, Debug)]
pub struct WhisperEncoderLayer {
    /// Self-attention.
    pub self_attn: WhisperAttention,
    /// Norm before self-attention.
    pub self_attn_layer_norm: LayerNorm,
    /// `[d_model] -> [ffn]`.
    pub fc1: LinearWeight,
    /// `[ffn] -> [d_model]`.
    pub fc2: LinearWeight,
    /// Norm before the FFN.
    pub final_layer_norm: LayerNorm,
}

impl WhisperEncoderLayer {
    /// Randomly initialised layer.
    pub fn new(d_model: usize, heads: usize, ffn: usize, device: &Device) -> Self {
        Self {
            self_attn: WhisperAttention::new(d_model, heads, device),
            self_attn_layer_norm: layer_norm(d_model, device),
            fc1: LinearConfig::new(d_model, ffn).init(device).into(),
            fc2: LinearConfig::new(ffn, d_model).init(device).into(),
            final_layer_norm: layer_norm(d_model, device),
        }
    }

    /// Pre-norm self-attention (full, bidirectional) and FFN, each with its residual.
    ///
    /// # Shapes
    /// `x [batch, frames, d_model]` -> `[batch, frames, d_model]`.
    pub fn forward(&self, x: Tensor<3>, scope: &Scope) -> Tensor<3> {
        let x = scope.fed_input(x);
        let h = norm(
            &self.self_attn_layer_norm,
            x.clone(),
            &scope.child("self_attn_layer_norm"),
        );
        let sa = scope.child("self_attn");
        sa.record("in.hidden_states", &h);
        let (k, v) = self.self_attn.key_values(h.clone(), &sa);
        let h = self.self_attn.attend(h, k, v, None, &sa);
        let x = x + h;
        let x = x.clone() + self.ffn(x, scope);
        scope.output(x)
    }

    /// `fc2(gelu(fc1(final_layer_norm(x))))`, without the residual.
    ///
    /// # Shapes
    /// `x [batch, frames, d_model]` -> `[batch, frames, d_model]` (`[.., ffn]` inside).
    pub fn ffn(&self, x: Tensor<3>, scope: &Scope) -> Tensor<3> {
        ffn(&self.final_layer_norm, &self.fc1, &self.fc2, x, scope)
    }
}

fn ffn(
    ln: &LayerNorm,
    fc1: &LinearWeight,
    fc2: &LinearWeight,
    x: Tensor<3>,
    scope: &Scope,
) -> Tensor<3> {
    let h = norm(ln, x, &scope.child("final_layer_norm"));
    let h = linear(fc1, h, &scope.child("fc1"));
    let h = activation(h, &scope.child("activation_fn"));
    linear(fc2, h, &scope.child("fc2"))
}

/// `WhisperEncoder`: conv stem, sinusoidal position table (stored as weights), layers, norm.
#[derive(Module, Debug)]
pub struct WhisperEncoder {
    /// `num_mel_bins -> d_model`, kernel 3, padding 1.
    pub conv1: Conv1d,
    /// `d_model -> d_model`, kernel 3, stride 2, padding 1.
    pub conv2: Conv1d,
    /// `[max_source_positions, d_model]`.
    pub embed_positions: Embedding,
    /// Layers.
    pub layers: Vec<WhisperEncoderLayer>,
    /// Final norm.
    pub layer_norm: LayerNorm,
}

impl WhisperEncoder {
    /// Randomly initialised encoder.
    pub fn new(cfg: &WhisperConfig, device: &Device) -> Self {
        let d = cfg.d_model;
        Self {
            conv1: Conv1d::new(cfg.num_mel_bins, d, 3, 1, 1, device),
            conv2: Conv1d::new(d, d, 3, 2, 1, device),
            embed_positions: EmbeddingConfig::new(cfg.max_source_positions, d).init(device),
            layers: (0..cfg.encoder_layers)
                .map(|_| {
                    WhisperEncoderLayer::new(
                        d,
                        cfg.encoder_attention_heads,
                        cfg.encoder_ffn_dim,
                        device,
                    )
                })
                .collect(),
            layer_norm: layer_norm(d, device),
        }
    }

    /// Conv stem (GELU after each conv), position table, layers, final norm.
    ///
    /// # Shapes
    /// Log-mel `features [batch, num_mel_bins, 2 * max_source_positions]` (`[1, 80, 3000]`
    /// for tiny.en) -> `last_hidden_state [batch, max_source_positions, d_model]`.
    ///
    /// # Errors
    /// [`ForwardError::Features`] when the shape differs (transformers raises too: Whisper
    /// needs exactly 3000 frames).
    pub fn forward(&self, features: Tensor<3>, scope: &Scope) -> Result<Tensor<3>, ForwardError> {
        let [_, mels, frames] = features.dims();
        let [_, c_in, _] = self.conv1.weight.val().dims();
        let [n_pos, _] = self.embed_positions.weight.val().dims();
        if mels != c_in || frames != 2 * n_pos {
            return Err(ForwardError::Features {
                found: features.dims().to_vec(),
                mels: c_in,
                frames: 2 * n_pos,
            });
        }
        scope.input(&features);
        let c1 = scope.child("conv1");
        c1.input(&features);
        let h = gelu(c1.output(self.conv1.forward(features)));
        let c2 = scope.child("conv2");
        c2.input(&h);
        let h = gelu(c2.output(self.conv2.forward(h)));
        let h = h.swap_dims(1, 2);
        let pe = scope.child("embed_positions");
        if pe.enabled() {
            let ids: Vec<i64> = (0..n_pos as i64).collect();
            let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [n_pos]), &h.device());
            pe.record_int("in.0", &ids);
        }
        let pos = pe.output(self.embed_positions.weight.val());
        let mut h = h + pos.unsqueeze::<3>();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h, &scope.child("layers").index(i));
        }
        let h = norm(&self.layer_norm, h, &scope.child("layer_norm"));
        scope.record("out.last_hidden_state", &h);
        Ok(h)
    }
}

/// Per-layer decoder state for incremental decoding: self-attention keys/values of the
/// tokens so far and the cross-attention keys/values of the encoder output (computed once).
#[derive(Debug, Clone)]
pub struct DecoderLayerCache {
    /// Self-attention `[b, n_heads, tokens, head_dim]`.
    pub self_attn: KvCache,
    /// Cross-attention keys `[b, n_heads, frames, head_dim]`.
    pub cross_k: Tensor<4>,
    /// Cross-attention values `[b, n_heads, frames, head_dim]`.
    pub cross_v: Tensor<4>,
}

/// `t` with its elements in row-major order of its shape (a copy when `t` is a strided view;
/// unchanged on the graph-capture device, where layout is not observable).
fn contiguous<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    if is_capture(&t.device()) {
        return t;
    }
    let device = t.device();
    Tensor::from_data(t.into_data(), &device)
}

/// `WhisperDecoderLayer` (pre-norm: self-attention, cross-attention, FFN).
#[derive(Module, Debug)]
pub struct WhisperDecoderLayer {
    /// Causal self-attention.
    pub self_attn: WhisperAttention,
    /// Norm before self-attention.
    pub self_attn_layer_norm: LayerNorm,
    /// Cross-attention over the encoder output.
    pub encoder_attn: WhisperAttention,
    /// Norm before cross-attention.
    pub encoder_attn_layer_norm: LayerNorm,
    /// `[d_model] -> [ffn]`.
    pub fc1: LinearWeight,
    /// `[ffn] -> [d_model]`.
    pub fc2: LinearWeight,
    /// Norm before the FFN.
    pub final_layer_norm: LayerNorm,
}

/// The float additive causal mask as upstream passes it (`[1, 1, s, t]`, 0 where visible,
/// `f32::MIN` where hidden), for capture only.
fn float_causal_mask(pos0: usize, s: usize, t: usize, device: &Device) -> Tensor<4> {
    let mut m = Vec::with_capacity(s * t);
    for i in 0..s {
        for j in 0..t {
            m.push(if j > pos0 + i { f32::MIN } else { 0.0 });
        }
    }
    Tensor::<2>::from_data(TensorData::new(m, [s, t]), device).reshape([1, 1, s, t])
}

impl WhisperDecoderLayer {
    /// Randomly initialised layer.
    pub fn new(d_model: usize, heads: usize, ffn: usize, device: &Device) -> Self {
        Self {
            self_attn: WhisperAttention::new(d_model, heads, device),
            self_attn_layer_norm: layer_norm(d_model, device),
            encoder_attn: WhisperAttention::new(d_model, heads, device),
            encoder_attn_layer_norm: layer_norm(d_model, device),
            fc1: LinearConfig::new(d_model, ffn).init(device).into(),
            fc2: LinearConfig::new(ffn, d_model).init(device).into(),
            final_layer_norm: layer_norm(d_model, device),
        }
    }

    /// Cross-attention keys/values of `encoder_hidden_states [b, frames, d_model]`, stored
    /// contiguous in `[b, n_heads, frames, head_dim]` order (the head split is a strided view;
    /// without this every decoder step would copy them again inside the attention kernel).
    ///
    /// # Shapes
    /// `encoder_hidden_states [batch, frames, d_model]` -> `cross_k` / `cross_v`
    /// `[batch, n_heads, frames, head_dim]`; the self-attention cache starts empty.
    pub fn cross_cache(&self, encoder_hidden_states: Tensor<3>) -> DecoderLayerCache {
        let (k, v) = self
            .encoder_attn
            .key_values(encoder_hidden_states, &Scope::off());
        DecoderLayerCache {
            self_attn: KvCache::default(),
            cross_k: contiguous(k),
            cross_v: contiguous(v),
        }
    }

    /// One decoder layer at decoder positions `pos0 .. pos0 + s`.
    ///
    /// Without a cache, `encoder_hidden_states` is projected here (recorded) and the
    /// self-attention sees only `x` (so `pos0` must be 0). With a cache, past keys/values are
    /// prepended, the new ones appended, and the cached cross-attention keys/values are used
    /// (`encoder_hidden_states` is then only recorded).
    ///
    /// # Shapes
    /// `x [batch, s, d_model]`, `encoder_hidden_states [batch, frames, d_model]` ->
    /// `[batch, s, d_model]`.
    pub fn forward(
        &self,
        x: Tensor<3>,
        encoder_hidden_states: &Tensor<3>,
        pos0: usize,
        cache: Option<&mut DecoderLayerCache>,
        scope: &Scope,
    ) -> Tensor<3> {
        let [_, s, _] = x.dims();
        let device = x.device();
        let past = cache.as_ref().map(|c| c.self_attn.len()).unwrap_or(0);
        let t = past + s;
        let x = scope.fed_input(x);
        if scope.enabled() {
            let m = float_causal_mask(pos0, s, t, &device);
            scope.record("in.1", &m);
            scope.record("in.2", encoder_hidden_states);
            scope.child("self_attn").record("in.attention_mask", &m);
        }
        // Self-attention.
        let h = norm(
            &self.self_attn_layer_norm,
            x.clone(),
            &scope.child("self_attn_layer_norm"),
        );
        let sa = scope.child("self_attn");
        sa.input(&h);
        let (k, v) = self.self_attn.key_values(h.clone(), &sa);
        let (k, v, cache) = match cache {
            None => (k, v, None),
            Some(c) => {
                let (k, v) = match (c.self_attn.k.take(), c.self_attn.v.take()) {
                    (Some(pk), Some(pv)) => {
                        (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2))
                    }
                    _ => (k, v),
                };
                c.self_attn.k = Some(k.clone());
                c.self_attn.v = Some(v.clone());
                (k, v, Some(c))
            }
        };
        let mask = (s > 1).then(|| causal_mask(pos0, s, t, &device));
        let h = self.self_attn.attend(h, k, v, mask, &sa);
        let x = x + h;
        // Cross-attention.
        let h = norm(
            &self.encoder_attn_layer_norm,
            x.clone(),
            &scope.child("encoder_attn_layer_norm"),
        );
        let ca = scope.child("encoder_attn");
        ca.input(&h);
        ca.record("in.key_value_states", encoder_hidden_states);
        let (k, v) = match cache {
            Some(c) => (c.cross_k.clone(), c.cross_v.clone()),
            None => self
                .encoder_attn
                .key_values(encoder_hidden_states.clone(), &ca),
        };
        let h = self.encoder_attn.attend(h, k, v, None, &ca);
        let x = x + h;
        let x = x.clone() + ffn(&self.final_layer_norm, &self.fc1, &self.fc2, x, scope);
        scope.output(x)
    }
}

/// `WhisperDecoder`: token + learned position embeddings, layers, final norm.
#[derive(Module, Debug)]
pub struct WhisperDecoder {
    /// `[vocab_size, d_model]`; also the output projection (tied).
    pub embed_tokens: Embedding,
    /// `[max_target_positions, d_model]` (`WhisperPositionalEmbedding`).
    pub embed_positions: Embedding,
    /// Layers.
    pub layers: Vec<WhisperDecoderLayer>,
    /// Final norm.
    pub layer_norm: LayerNorm,
}

impl WhisperDecoder {
    /// Randomly initialised decoder.
    pub fn new(cfg: &WhisperConfig, device: &Device) -> Self {
        let d = cfg.d_model;
        Self {
            embed_tokens: EmbeddingConfig::new(cfg.vocab_size, d).init(device),
            embed_positions: EmbeddingConfig::new(cfg.max_target_positions, d).init(device),
            layers: (0..cfg.decoder_layers)
                .map(|_| {
                    WhisperDecoderLayer::new(
                        d,
                        cfg.decoder_attention_heads,
                        cfg.decoder_ffn_dim,
                        device,
                    )
                })
                .collect(),
            layer_norm: layer_norm(d, device),
        }
    }

    /// One cache entry per layer (see [`WhisperDecoderLayer::cross_cache`]).
    ///
    /// # Shapes
    /// `encoder_hidden_states [batch, frames, d_model]`.
    pub fn new_cache(&self, encoder_hidden_states: &Tensor<3>) -> Vec<DecoderLayerCache> {
        self.layers
            .iter()
            .map(|l| l.cross_cache(encoder_hidden_states.clone()))
            .collect()
    }

    /// Token and position embeddings, layers and final norm for the tokens at positions
    /// `pos0 .. pos0 + s`. With `cache`, past tokens come from it and it is extended.
    ///
    /// # Shapes
    /// `input_ids [batch, s]`, `encoder_hidden_states [batch, frames, d_model]` ->
    /// `last_hidden_state [batch, s, d_model]` (after the final norm).
    ///
    /// # Errors
    /// [`ForwardError::TooLong`] past `max_target_positions`; [`ForwardError::Cache`] when the
    /// cache does not have one entry per layer.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        encoder_hidden_states: &Tensor<3>,
        pos0: usize,
        cache: Option<&mut [DecoderLayerCache]>,
        scope: &Scope,
    ) -> Result<Tensor<3>, ForwardError> {
        let [b, s] = input_ids.dims();
        let [max, _] = self.embed_positions.weight.val().dims();
        if pos0 + s > max {
            return Err(ForwardError::TooLong {
                start: pos0,
                end: pos0 + s,
                max,
            });
        }
        if let Some(c) = &cache
            && c.len() != self.layers.len()
        {
            return Err(ForwardError::Cache {
                found: c.len(),
                expected: self.layers.len(),
            });
        }
        let device = input_ids.device();
        scope.record_int("in.input_ids", &input_ids);
        scope.record("in.encoder_hidden_states", encoder_hidden_states);
        let et = scope.child("embed_tokens");
        et.record_int("in.0", &input_ids);
        let tok = et.output(self.embed_tokens.forward(input_ids.clone()));
        let ep = scope.child("embed_positions");
        if ep.enabled() {
            ep.record_int("in.0", &input_ids);
            let ids: Vec<i64> = (0..b)
                .flat_map(|_| (pos0 as i64)..(pos0 + s) as i64)
                .collect();
            let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, [b, s]), &device);
            ep.record_int("in.position_ids", &ids);
        }
        let pos = self
            .embed_positions
            .weight
            .val()
            .narrow(0, pos0, s)
            .unsqueeze::<3>()
            .expand([b, s, tok.dims()[2]]);
        let pos = ep.output(pos);
        let mut h = tok + pos;
        let layers = scope.child("layers");
        match cache {
            Some(c) => {
                for (i, (layer, lc)) in self.layers.iter().zip(c.iter_mut()).enumerate() {
                    h = layer.forward(h, encoder_hidden_states, pos0, Some(lc), &layers.index(i));
                }
            }
            None => {
                for (i, layer) in self.layers.iter().enumerate() {
                    h = layer.forward(h, encoder_hidden_states, pos0, None, &layers.index(i));
                }
            }
        }
        let h = norm(&self.layer_norm, h, &scope.child("layer_norm"));
        scope.record("out.last_hidden_state", &h);
        Ok(h)
    }
}

/// `WhisperModel`: encoder and decoder.
#[derive(Module, Debug)]
pub struct WhisperModel {
    /// Audio encoder.
    pub encoder: WhisperEncoder,
    /// Text decoder.
    pub decoder: WhisperDecoder,
}

/// `WhisperForConditionalGeneration`: `model` plus `proj_out`, which is tied to
/// `model.decoder.embed_tokens.weight` (so it has no parameter here).
#[derive(Module, Debug)]
pub struct WhisperForConditionalGeneration {
    /// Encoder-decoder.
    pub model: WhisperModel,
}

impl WhisperForConditionalGeneration {
    /// Randomly initialised model of shape `cfg` (weights are replaced when loading).
    pub fn new(cfg: &WhisperConfig, device: &Device) -> Self {
        Self {
            model: WhisperModel {
                encoder: WhisperEncoder::new(cfg, device),
                decoder: WhisperDecoder::new(cfg, device),
            },
        }
    }

    /// Every `LinearWeight` of the network: per encoder layer `self_attn.{q,k,v,out}_proj`,
    /// `fc1`, `fc2`; per decoder layer the same plus `encoder_attn.{q,k,v,out}_proj`. The conv
    /// stem, norms, embeddings and the tied `proj_out` are not among them (they stay f32).
    pub fn linears_mut(&mut self) -> Vec<&mut LinearWeight> {
        let mut v = Vec::new();
        for l in &mut self.model.encoder.layers {
            v.extend(l.self_attn.projections_mut());
            v.push(&mut l.fc1);
            v.push(&mut l.fc2);
        }
        for l in &mut self.model.decoder.layers {
            v.extend(l.self_attn.projections_mut());
            v.extend(l.encoder_attn.projections_mut());
            v.push(&mut l.fc1);
            v.push(&mut l.fc2);
        }
        v
    }

    /// Pack every eligible linear layer ([`Self::linears_mut`] whose `n_in` is a multiple of
    /// 32) as `kind` ([`LinearWeight::quantize`]); the others stay f32. Returns how many layers
    /// are packed as `kind`.
    ///
    /// # Errors
    /// [`QLinearError::Values`] when a weight cannot be read back as f32 (not on Flex or
    /// ndarray); layers packed before it stay packed.
    pub fn quantize(&mut self, kind: QuantKind) -> Result<usize, QLinearError> {
        let mut packed = 0;
        for l in self.linears_mut() {
            if l.quantize(kind)? {
                packed += 1;
            }
        }
        Ok(packed)
    }

    /// `proj_out` with the token embedding matrix (tied). Records `proj_out.in.0` under `scope`
    /// (the root scope).
    ///
    /// # Shapes
    /// `hidden [batch, s, d_model]` -> logits `[batch, s, vocab_size]`.
    pub fn proj_out(&self, hidden: Tensor<3>, scope: &Scope) -> Tensor<3> {
        let hidden = scope.child("proj_out").fed_input(hidden);
        let [b, s, d] = hidden.dims();
        let w = self.model.decoder.embed_tokens.weight.val();
        let [vocab, _] = w.dims();
        crate::nn::linear::matmul_transposed(hidden.reshape([b * s, d]), w).reshape([b, s, vocab])
    }

    /// Teacher-forced forward `model(input_features, decoder_input_ids)` without cache.
    /// Records every capture point of the reference dumps under `scope` (root), plus
    /// `input_features`, `input_ids` and `logits`.
    ///
    /// # Shapes
    /// `features [batch, num_mel_bins, 3000]`, `input_ids [batch, s]` -> logits
    /// `[batch, s, vocab_size]`.
    ///
    /// # Errors
    /// [`ForwardError`] for a wrong feature shape or too many tokens.
    pub fn forward(
        &self,
        features: Tensor<3>,
        input_ids: Tensor<2, Int>,
        scope: &Scope,
    ) -> Result<Tensor<3>, ForwardError> {
        scope.record("input_features", &features);
        scope.record_int("input_ids", &input_ids);
        let m = scope.child("model");
        m.input(&features);
        m.record_int("in.decoder_input_ids", &input_ids);
        let enc = self.model.encoder.forward(features, &m.child("encoder"))?;
        let dec = self
            .model
            .decoder
            .forward(input_ids, &enc, 0, None, &m.child("decoder"))?;
        m.record("out.last_hidden_state", &dec);
        m.record("out.encoder_last_hidden_state", &enc);
        let logits = self.proj_out(dec, scope);
        scope.record("logits", &logits);
        Ok(logits)
    }
}
