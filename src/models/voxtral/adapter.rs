//! Audio-to-text adapter (`multi_modal_projector`; Mistral `audio_language_projection`).
//!
//! Mirrors `VoxtralRealtimeMultiModalProjector` (huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>):
//! the encoder output `[batch, frames, d_enc]` is regrouped row-major to
//! `[batch, frames/4, 4*d_enc]` (frames 4k..4k+3 side by side), then
//! `linear_2(gelu(linear_1(x)))`, no biases. `d_enc` and `d_dec` are the encoder's and the
//! decoder's `d_model`.

use crate::nn::LinearWeight;
use crate::nn::gelu;
use crate::nn::mlp::linear;
use crate::trace::Scope;
use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::{Device, Tensor};

/// Two-layer GELU projector from grouped encoder frames to decoder width.
#[derive(Module, Debug)]
pub struct MultiModalProjector {
    /// `[downsample * d_enc] -> [d_dec]`, no bias (Mistral `audio_language_projection.0`).
    pub linear_1: LinearWeight,
    /// `[d_dec] -> [d_dec]`, no bias (Mistral `audio_language_projection.2`).
    pub linear_2: LinearWeight,
}

impl MultiModalProjector {
    /// Randomly initialised (replaced by a checkpoint when loading).
    pub fn new(d_in: usize, d_dec: usize, device: &Device) -> Self {
        Self {
            linear_1: LinearConfig::new(d_in, d_dec)
                .with_bias(false)
                .init(device)
                .into(),
            linear_2: LinearConfig::new(d_dec, d_dec)
                .with_bias(false)
                .init(device)
                .into(),
        }
    }

    /// `linear_2(gelu(linear_1(x)))`; records `linear_1`, `act`, `linear_2` and this module's
    /// `in.0`/`out`.
    ///
    /// # Shapes
    /// - `x`: `[batch, tokens, downsample_factor * d_enc]`, from [`group_frames`]
    /// - returns `[batch, tokens, d_dec]`
    pub fn forward(&self, x: Tensor<3>, scope: &Scope) -> Tensor<3> {
        let x = scope.fed_input(x);
        let h = linear(&self.linear_1, x, &scope.child("linear_1"));
        let act = scope.child("act");
        act.input(&h);
        let h = act.output(gelu(h));
        let h = linear(&self.linear_2, h, &scope.child("linear_2"));
        scope.output(h)
    }
}

/// Put each run of `factor` consecutive frames side by side (upstream `reshape`): row `k` of
/// the result is frames `factor * k .. factor * (k + 1)` concatenated. `frames` must be a
/// multiple of `factor`.
///
/// # Shapes
/// - `x`: `[batch, frames, d_enc]`
/// - returns `[batch, frames / factor, factor * d_enc]`
pub fn group_frames(x: Tensor<3>, factor: usize) -> Tensor<3> {
    let [b, t, d] = x.dims();
    x.reshape([b, t / factor, factor * d])
}
