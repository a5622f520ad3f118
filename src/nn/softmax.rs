//! Softmax over the last axis (`F.softmax(x, dim=-1)`) with the row sum accumulated in f64.
//!
//! Why: Burn Flex 0.22's f32 softmax (`burn-flex` `ops/activation.rs`, `softmax_row_f32_simd`)
//! adds the `exp` values of a row one after the other into a single f32 and then multiplies
//! by the rounded reciprocal of that sum. Over Whisper's 1500 encoder keys the sum carries a
//! relative error of a few 1e-6, the same for every probability of the row, which the
//! attention output and the residual stream carry on: `reference/whisper_f64_noise.py` put
//! Flex's error against a float64 forward pass at 5x torch f32's from the first encoder
//! `out_proj` on (99th percentile 4.2e-6 vs 8.6e-7), while Burn's ndarray backend stayed at
//! torch's level. PyTorch (`aten/src/ATen/native/cpu/SoftMaxKernel.cpp`,
//! `_vec_softmax_lastdim`) reduces the row in vector lanes and divides.
//!
//! [`softmax_last`] computes `exp(x - max)` in f32 as Flex does (`f32::exp`), sums in f64 and
//! divides in f64, so each probability is the f32 rounding of `e_i / Σ e_j` with the `e_i`
//! as computed. It runs on Flex only; other devices (ndarray, wgpu, the capture device of
//! `voxtrace export`, which lowers Burn's softmax to ONNX `Softmax`) get Burn's `softmax`.

use crate::nn::linear::map_flex_f32;
use burn::tensor::{Tensor, activation};

/// Rows per Rayon task.
const ROWS_PER_TASK: usize = 64;

/// `softmax(x, dim = D - 1)`. On Flex with f32 data each row goes through [`softmax_row`] on
/// the Rayon threads; elsewhere this is `burn::tensor::activation::softmax(x, D - 1)`. A row
/// that is all `-inf` (every key masked) or holds a NaN comes out NaN, as in Burn and PyTorch.
///
/// # Shapes
/// - `x`: `[..., n]`, any rank (`[batch, n_heads, seq, kv_seq]` attention scores)
/// - returns the shape of `x`, each row of `n` summing to 1
pub fn softmax_last<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let row = x.dims()[D - 1];
    map_flex_f32(&x, ROWS_PER_TASK * row, |src, out| {
        for (s, o) in src.chunks_exact(row).zip(out.chunks_exact_mut(row)) {
            softmax_row(s, o);
        }
    })
    .unwrap_or_else(|| activation::softmax(x, D - 1))
}

/// Softmax of one row: `out[i] = exp(src[i] - max) / Σ_j exp(src[j] - max)`, the `exp` in
/// f32 (`f32::exp`), the sum (four f64 partial sums) and the division in f64. NaN in, NaN
/// out for the whole row; an all `-inf` row gives NaN (`-inf - -inf`).
///
/// # Shapes
/// - `src`: `[n]`
/// - `out`: `[n]`, overwritten
///
/// # Panics
/// When `src` and `out` differ in length (a caller bug, not an input error).
pub fn softmax_row(src: &[f32], out: &mut [f32]) {
    assert_eq!(
        src.len(),
        out.len(),
        "softmax_row: input and output lengths differ"
    );
    // `f32::max` skips NaN; a NaN element still makes its `exp` and so the sum NaN.
    let max = src.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (o, &v) in out.iter_mut().zip(src) {
        *o = (v - max).exp();
    }
    let mut acc = [0f64; 4];
    let mut quads = out.chunks_exact(4);
    for q in &mut quads {
        for (a, &e) in acc.iter_mut().zip(q) {
            *a += e as f64;
        }
    }
    let tail: f64 = quads.remainder().iter().map(|&e| e as f64).sum();
    let sum = (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail;
    for o in out.iter_mut() {
        *o = (*o as f64 / sum) as f32;
    }
}
