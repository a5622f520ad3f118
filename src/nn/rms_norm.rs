//! RMSNorm: `weight * x / sqrt(mean(x^2) + eps)` over the last axis.
//!
//! Mirrors `VoxtralRealtimeRMSNorm` (huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>),
//! itself T5LayerNorm.
//! The struct is spelled `RMSNorm` on purpose: burn-store's PyTorch adapter renames the
//! `weight` of a module type called `RmsNorm` to Burn's `gamma`, and this layer keeps the
//! upstream parameter name.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

/// Root-mean-square layer norm with a learned scale and no bias.
#[derive(Module, Debug)]
pub struct RMSNorm {
    /// Scale `[d_model]` (upstream `weight`).
    pub weight: Param<Tensor<1>>,
    /// Epsilon added to the mean square (upstream `variance_epsilon`, `rms_norm_eps`/`norm_eps`).
    pub eps: f64,
}

impl RMSNorm {
    /// A norm of width `d_model` with scale 1.
    pub fn new(d_model: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Param::from_tensor(Tensor::ones([d_model], device)),
            eps,
        }
    }

    /// `weight * x / sqrt(mean(x^2) + eps)` over the last axis.
    ///
    /// # Shapes
    /// - `x`: `[..., d_model]` (`[batch, seq, d_model]` in the models)
    /// - returns `[..., d_model]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let variance = x.clone().powi_scalar(2).mean_dim(D - 1);
        let normed = x * (variance + self.eps).sqrt().recip();
        normed * self.weight.val().unsqueeze()
    }
}
