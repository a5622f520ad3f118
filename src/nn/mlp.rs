//! SwiGLU feed-forward: `down_proj(silu(gate_proj(x)) * up_proj(x))`.
//!
//! Mirrors `VoxtralRealtimeMLP` (encoder: `down_proj` has a bias) and `VoxtralRealtimeTextMLP`
//! (decoder: no biases) in huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>;
//! Mistral names `feed_forward.w1` (gate), `w3` (up), `w2` (down).

use super::qlinear::{LinearLayer, LinearWeight};
use crate::trace::Scope;
use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::activation::silu;
use burn::tensor::{Device, Tensor};

/// Gated SiLU MLP with hidden width `intermediate_size`.
#[derive(Module, Debug)]
pub struct SwiGluMlp {
    /// `[d_model] -> [intermediate_size]`, no bias.
    pub gate_proj: LinearWeight,
    /// `[d_model] -> [intermediate_size]`, no bias.
    pub up_proj: LinearWeight,
    /// `[intermediate_size] -> [d_model]`, bias when `down_bias`.
    pub down_proj: LinearWeight,
}

impl SwiGluMlp {
    /// A randomly initialised MLP (weights are replaced by a checkpoint when loading).
    pub fn new(d_model: usize, intermediate_size: usize, down_bias: bool, device: &Device) -> Self {
        Self {
            gate_proj: LinearConfig::new(d_model, intermediate_size)
                .with_bias(false)
                .init(device)
                .into(),
            up_proj: LinearConfig::new(d_model, intermediate_size)
                .with_bias(false)
                .init(device)
                .into(),
            down_proj: LinearConfig::new(intermediate_size, d_model)
                .with_bias(down_bias)
                .init(device)
                .into(),
        }
    }

    /// The three projections with their upstream names (`gate_proj`, `up_proj`, `down_proj`).
    pub fn projections_mut(&mut self) -> [(&'static str, &mut LinearWeight); 3] {
        [
            ("gate_proj", &mut self.gate_proj),
            ("up_proj", &mut self.up_proj),
            ("down_proj", &mut self.down_proj),
        ]
    }

    /// `down_proj(silu(gate_proj(x)) * up_proj(x))`; records `gate_proj`, `act_fn`, `up_proj`,
    /// `down_proj` inputs/outputs and this module's `in.0`/`out`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`
    /// - returns `[batch, seq, d_model]` (the gated activations are
    ///   `[batch, seq, intermediate_size]`)
    pub fn forward(&self, x: Tensor<3>, scope: &Scope) -> Tensor<3> {
        scope.input(&x);
        let gate = linear(&self.gate_proj, x.clone(), &scope.child("gate_proj"));
        let act_scope = scope.child("act_fn");
        act_scope.input(&gate);
        let act = act_scope.output(silu(gate));
        let up = linear(&self.up_proj, x, &scope.child("up_proj"));
        let down = linear(&self.down_proj, act * up, &scope.child("down_proj"));
        scope.output(down)
    }
}

/// Apply a linear layer and record its `in.0` and `out` under `scope`: a Burn `Linear` runs
/// through [`super::linear::linear`] (threaded for a single row), a
/// [`super::qlinear::LinearWeight`] through its f32 or packed product
/// ([`LinearLayer::apply`]).
///
/// # Shapes
/// - `x`: `[..., d_in]`
/// - returns `[..., d_out]` (Burn's `layer.weight` is `[d_in, d_out]`)
pub fn linear<L: LinearLayer, const D: usize>(layer: &L, x: Tensor<D>, scope: &Scope) -> Tensor<D> {
    scope.input(&x);
    scope.output(layer.apply(x))
}
