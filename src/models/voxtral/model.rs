//! The whole Voxtral Realtime model: root module (parameter paths = HF state-dict keys) and a
//! wrapper that carries the configuration and runs the offline forward pass.
//!
//! Mirrors `VoxtralRealtimeModel` and `VoxtralRealtimeForConditionalGeneration` in
//! huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>.
//! In the shapes below `d_dec` is the decoder's `d_model` (3072 for the release) and `vocab`
//! its `vocab_size`.

use super::adapter::{MultiModalProjector, group_frames};
use super::config::VoxtralConfig;
use super::decoder::TextModel;
use super::encoder::AudioEncoder;
use super::time_embedding::time_embedding;
use crate::nn::LinearWeight;
use crate::nn::attention::KvCache;
use crate::nn::half::HalfCompute;
use crate::nn::qlinear::QLinearError;
use crate::nn::qmatmul::QuantKind;
use crate::trace::Scope;
use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::{Device, Int, Tensor};

/// `VoxtralRealtimeModel`: encoder, projector, decoder (time embedding has no weights).
#[derive(Module, Debug)]
pub struct VoxtralRealtimeModel {
    /// Audio encoder (`model.audio_tower`).
    pub audio_tower: AudioEncoder,
    /// Adapter (`model.multi_modal_projector`).
    pub multi_modal_projector: MultiModalProjector,
    /// Text decoder (`model.language_model`).
    pub language_model: TextModel,
}

/// `VoxtralRealtimeForConditionalGeneration`: the model plus an untied LM head if the
/// checkpoint has one (the released model ties it to `embed_tokens`).
#[derive(Module, Debug)]
pub struct VoxtralRealtime {
    /// The model.
    pub model: VoxtralRealtimeModel,
    /// Untied LM head `[d_model] -> [vocab]`; `None` when tied (released model).
    pub lm_head: Option<LinearWeight>,
}

/// A loaded (or randomly built) model with its configuration.
#[derive(Debug)]
pub struct Voxtral {
    /// The Burn module tree.
    pub net: VoxtralRealtime,
    /// Hyper-parameters and RoPE layout.
    pub config: VoxtralConfig,
}

impl Voxtral {
    /// A model with random weights of the configured shape (benchmarks at full size without
    /// the checkpoint: `Voxtral::random(VoxtralConfig::mini_4b_realtime(), &device)`).
    pub fn random(config: VoxtralConfig, device: &Device) -> Self {
        let net = VoxtralRealtime {
            model: VoxtralRealtimeModel {
                audio_tower: AudioEncoder::new(&config.encoder, device),
                multi_modal_projector: MultiModalProjector::new(
                    config.encoder.d_model * config.downsample_factor,
                    config.decoder.d_model,
                    device,
                ),
                language_model: TextModel::new(&config.decoder, device),
            },
            lm_head: (!config.decoder.tied_embeddings).then(|| {
                LinearConfig::new(config.decoder.d_model, config.decoder.vocab_size)
                    .with_bias(false)
                    .init(device)
                    .into()
            }),
        };
        Self { net, config }
    }

    /// Every [`LinearWeight`] of the network with its upstream (transformers) module path:
    /// per encoder layer `model.audio_tower.layers.N.self_attn.{q,k,v,o}_proj` and
    /// `….mlp.{gate,up,down}_proj`, the projector's `model.multi_modal_projector.linear_{1,2}`,
    /// per decoder layer `model.language_model.layers.N.self_attn.*` and `….mlp.*`, and an untied
    /// `lm_head`. The conv stem, norms, the ADA-norm time conditioning (computed once per
    /// stream), the token embedding and the tied LM head are plain Burn modules (f32).
    pub fn linears_mut(&mut self) -> Vec<(String, &mut LinearWeight)> {
        let mut v = Vec::new();
        let m = &mut self.net.model;
        for (i, l) in m.audio_tower.layers.iter_mut().enumerate() {
            let p = format!("model.audio_tower.layers.{i}");
            for (n, w) in l.self_attn.projections_mut() {
                v.push((format!("{p}.self_attn.{n}"), w));
            }
            for (n, w) in l.mlp.projections_mut() {
                v.push((format!("{p}.mlp.{n}"), w));
            }
        }
        let proj = &mut m.multi_modal_projector;
        v.push((
            "model.multi_modal_projector.linear_1".to_string(),
            &mut proj.linear_1,
        ));
        v.push((
            "model.multi_modal_projector.linear_2".to_string(),
            &mut proj.linear_2,
        ));
        for (i, l) in m.language_model.layers.iter_mut().enumerate() {
            let p = format!("model.language_model.layers.{i}");
            for (n, w) in l.self_attn.projections_mut() {
                v.push((format!("{p}.self_attn.{n}"), w));
            }
            for (n, w) in l.mlp.projections_mut() {
                v.push((format!("{p}.mlp.{n}"), w));
            }
        }
        if let Some(head) = &mut self.net.lm_head {
            v.push(("lm_head".to_string(), head));
        }
        v
    }

    /// How every BF16 linear layer (encoder, adapter, decoder) computes its products from now
    /// on ([`HalfCompute`]: `F32` widens the weights, the default; `Bf16` rounds the
    /// activations to bf16 and uses AMX or AVX-512 BF16 products, as PyTorch's BF16 model does
    /// on CPU). The tied LM head and f32 / packed layers are unchanged. Returns how many layers
    /// now run in bf16 (0 without BF16 weights or without AVX512_BF16).
    ///
    /// The encoder and adapter layers take the AMX tiles for every row count
    /// ([`LinearWeight::set_tiles_for_every_row`]): the 8-frame streaming schedule feeds the
    /// adapter one row per step and the batched one many, and both must compute the same
    /// products. Decoder layers keep one-row steps on AVX-512 (both schedules step alike).
    pub fn set_compute(&mut self, compute: HalfCompute) -> usize {
        self.linears_mut()
            .into_iter()
            .map(|(name, l)| {
                let audio = name.starts_with("model.audio_tower.")
                    || name.starts_with("model.multi_modal_projector.");
                l.set_tiles_for_every_row(audio);
                l.set_compute(compute)
            })
            .filter(|&bf16| bf16)
            .count()
    }

    /// Pack every [`Self::linears_mut`] layer whose `n_in` is a multiple of 32 as `kind`
    /// ([`LinearWeight::quantize`]); the rest stays f32 (see `nn::qlinear` for the mix).
    /// Returns how many layers are packed as `kind`.
    ///
    /// # Errors
    /// [`QLinearError::Values`] when a weight cannot be read back as f32 (not on Flex or
    /// ndarray), [`QLinearError::Quantize`] for a non-finite weight; layers packed before it
    /// stay packed.
    pub fn quantize(&mut self, kind: QuantKind) -> Result<usize, QLinearError> {
        let mut packed = 0;
        for (_, l) in self.linears_mut() {
            if l.quantize(kind)? {
                packed += 1;
            }
        }
        if self.net.lm_head.is_none()
            && self.net.model.language_model.embed_tokens.quantize(kind)?
        {
            packed += 1;
        }
        Ok(packed)
    }

    /// Weight bytes one decoder step reads, as stored: every decoder layer's attention and MLP
    /// projections plus the LM head (the tied token table unless the checkpoint has its own).
    /// Divided by the memory bandwidth, the lower bound of a step's time.
    pub fn decoder_step_weight_bytes(&self) -> usize {
        let lm = &self.net.model.language_model;
        let layers: usize = lm
            .layers
            .iter()
            .map(|l| {
                let (a, m) = (&l.self_attn, &l.mlp);
                [
                    &a.q_proj,
                    &a.k_proj,
                    &a.v_proj,
                    &a.o_proj,
                    &m.gate_proj,
                    &m.up_proj,
                    &m.down_proj,
                ]
                .iter()
                .map(|w| w.weight_bytes())
                .sum::<usize>()
            })
            .sum();
        layers
            + match &self.net.lm_head {
                Some(h) => h.weight_bytes(),
                None => lm.embed_tokens.weight_bytes(),
            }
    }

    /// Audio embeddings from log-mel features: encoder, frame grouping, projector (upstream
    /// `get_audio_features`), one row per 80 ms audio token.
    ///
    /// # Shapes
    /// - `features`: `[batch, n_mels, frames]`, `frames` a multiple of `2 * downsample_factor`
    /// - returns `[batch, frames / (2 * downsample_factor), d_dec]`
    pub fn audio_embeds(&self, features: Tensor<3>, scope: &Scope) -> Tensor<3> {
        let m = &self.net.model;
        let enc = m.audio_tower.forward(
            features,
            &self.config.encoder,
            self.config.rope_style,
            &scope.child("audio_tower"),
        );
        let grouped = group_frames(enc, self.config.downsample_factor);
        m.multi_modal_projector
            .forward(grouped, &scope.child("multi_modal_projector"))
    }

    /// Time conditioning `t_cond` for `delay_tokens` (80 ms each; 6 = 480 ms).
    ///
    /// # Shapes
    /// - returns `[1, d_dec]`
    pub fn t_cond(&self, delay_tokens: f32, scope: &Scope, device: &Device) -> Tensor<2> {
        let s = scope.child("time_embedding");
        if s.enabled() {
            s.input(&Tensor::<1>::from_floats([delay_tokens], device));
        }
        let t = time_embedding(delay_tokens, self.config.decoder.d_model, device);
        s.output(t).unsqueeze::<2>()
    }

    /// Token embeddings of `ids` (`embed_tokens`).
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]`
    /// - returns `[batch, seq, d_dec]`
    pub fn embed(&self, ids: Tensor<2, Int>, scope: &Scope) -> Tensor<3> {
        let s = scope.child("embed_tokens");
        s.record_int("in.0", &ids);
        s.output(self.net.model.language_model.embed_tokens.forward(ids))
    }

    /// Logits from final hidden states (tied to the `[vocab, d_dec]` embedding unless the
    /// checkpoint has its own head).
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, d_dec]`
    /// - returns `[batch, seq, vocab]`
    pub fn lm_head(&self, h: Tensor<3>, scope: &Scope) -> Tensor<3> {
        let s = scope.child("lm_head");
        let h = s.fed_input(h);
        let logits = match &self.net.lm_head {
            Some(head) => crate::nn::LinearLayer::apply(head, h),
            None => self.net.model.language_model.embed_tokens.logits(h),
        };
        s.output(logits)
    }

    /// Teacher-forced offline forward pass (upstream `forward`): at every position the decoder
    /// input is `embed(ids) + audio_embeds`.
    ///
    /// # Shapes
    /// - `features`: `[1, n_mels, frames]`
    /// - `input_ids`: `[1, seq]` with `seq = frames / 8` (one id per audio token)
    /// - returns logits `[1, seq, vocab]`
    pub fn forward(
        &self,
        features: Tensor<3>,
        input_ids: Tensor<2, Int>,
        delay_tokens: f32,
        scope: &Scope,
    ) -> Tensor<3> {
        let device = features.device();
        let ms = scope.child("model");
        ms.record_int("in.input_ids", &input_ids);
        ms.record("in.input_features", &features);
        let lm = ms.child("language_model");
        let tok = self.embed(input_ids, &lm);
        let audio = self.audio_embeds(features, &ms);
        let inputs = tok + audio.clone();
        let t_cond = self.t_cond(delay_tokens, &ms, &device);
        let h = self.net.model.language_model.forward(
            inputs,
            &t_cond,
            0,
            &self.config.decoder,
            self.config.rope_style,
            None,
            &lm,
        );
        ms.record("out.last_hidden_state", &h);
        ms.record("out.audio_hidden_states", &audio);
        let logits = self.lm_head(h, scope);
        scope.record("logits", &logits);
        logits
    }

    /// One incremental decoder step at positions `pos0..pos0+seq`, updating one KV cache per
    /// layer.
    ///
    /// # Shapes
    /// - `inputs_embeds`: `[1, seq, d_dec]`
    /// - `t_cond`: `[1, d_dec]`
    /// - `caches`: one per decoder layer, `[1, n_kv_heads, cached, head_dim]` each
    /// - returns logits `[1, seq, vocab]`
    pub fn decode_step(
        &self,
        inputs_embeds: Tensor<3>,
        t_cond: &Tensor<2>,
        pos0: usize,
        caches: &mut [KvCache],
    ) -> Tensor<3> {
        let h = self.decode_hidden(inputs_embeds, t_cond, pos0, caches);
        self.lm_head(h, &Scope::off())
    }

    /// [`Self::decode_step`] with logits for the last position only (what greedy decoding
    /// reads): a prefill of `seq` positions costs one LM-head product, not `seq` (at the
    /// released size the head is 131072 x 3072).
    ///
    /// # Shapes
    /// As [`Self::decode_step`]; returns logits `[1, 1, vocab]`.
    pub fn decode_step_last(
        &self,
        inputs_embeds: Tensor<3>,
        t_cond: &Tensor<2>,
        pos0: usize,
        caches: &mut [KvCache],
    ) -> Tensor<3> {
        let h = self.decode_hidden(inputs_embeds, t_cond, pos0, caches);
        let seq = h.dims()[1];
        self.lm_head(h.narrow(1, seq - 1, 1), &Scope::off())
    }

    /// The decoder and its final norm over `inputs_embeds` with the KV caches, untraced:
    /// hidden states `[1, seq, d_dec]`.
    fn decode_hidden(
        &self,
        inputs_embeds: Tensor<3>,
        t_cond: &Tensor<2>,
        pos0: usize,
        caches: &mut [KvCache],
    ) -> Tensor<3> {
        self.net.model.language_model.forward(
            inputs_embeds,
            t_cond,
            pos0,
            &self.config.decoder,
            self.config.rope_style,
            Some(caches),
            &Scope::off(),
        )
    }
}
