//! GELU (`nn.GELU()` / `F.gelu`, the exact erf form `0.5·x·(1 + erf(x/√2))`), split across
//! the Rayon threads on Flex.
//!
//! Why: Burn Flex 0.22 computes `gelu` in one single-threaded pass of `libm::erff`
//! (`burn-flex` `ops/activation.rs`), one core for the `[1500, 1536]` activations of each
//! Whisper encoder MLP. [`gelu`] evaluates the same expression with the same
//! `libm::erff`, in chunks on every thread, so its values are bit for bit Burn's
//! (`tests/fused_kernels.rs`); on other devices (ndarray, wgpu, the capture device used by
//! `voxtrace export`) it is Burn's `gelu` itself.

use crate::nn::linear::is_flex;
use burn::tensor::{Tensor, TensorData, activation};
use burn_dispatch::backends::Flex;
use rayon::prelude::*;

/// Elements below which [`gelu`] runs Burn's single-threaded pass (thread hand-off costs
/// more than it saves).
pub const PARALLEL_MIN_ELEMENTS: usize = 1 << 15;

/// Elements per Rayon task.
const CHUNK: usize = 1 << 14;

/// GELU of one value, the expression of Burn Flex's `gelu` (and PyTorch's default
/// `approximate="none"`): `0.5·x·(1 + erf(x/√2))`.
#[inline]
pub fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + libm::erff(x / std::f32::consts::SQRT_2))
}

/// `gelu(x)` elementwise, any shape (`[batch, seq, d_ff]` in the MLPs, `[batch, channels,
/// frames]` after the conv stems). On Flex with an f32 tensor of at least
/// [`PARALLEL_MIN_ELEMENTS`] elements the values are computed by [`gelu_scalar`] on all Rayon
/// threads; otherwise this is `burn::tensor::activation::gelu`.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let n = x.shape().num_elements();
    if n < PARALLEL_MIN_ELEMENTS || !is_flex(&x.device()) {
        return activation::gelu(x);
    }
    let device = x.device();
    let dims = x.dims();
    let Ok(flex) = x.clone().try_into_primitive::<Flex>() else {
        return activation::gelu(x);
    };
    let flex = flex.to_contiguous();
    let Some(src) = flex.as_slice::<f32>().filter(|s| s.len() == n) else {
        return activation::gelu(x);
    };
    let mut out = vec![0f32; n];
    out.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(o, s)| {
            for (o, &v) in o.iter_mut().zip(s) {
                *o = gelu_scalar(v);
            }
        });
    Tensor::from_data(TensorData::new(out, dims), &device)
}
