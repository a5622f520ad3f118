//! GELU (`nn.GELU()` / `F.gelu`, the exact erf form `0.5·x·(1 + erf(x/√2))`), split across
//! the Rayon threads on Flex.
//!
//! Why: Burn Flex 0.22 computes `gelu` in one single-threaded pass of `libm::erff`
//! (`burn-flex` `ops/activation.rs`), one core for the `[1500, 1536]` activations of each
//! Whisper encoder MLP. [`gelu`] evaluates the same expression in chunks on every thread,
//! eight lanes at a time with AVX2 ([`gelu_avx2`]; `erf` by a rational approximation within
//! a few ulp), else with `libm::erff` as Burn does. `tests/fused_kernels.rs` holds it to an
//! f64 reference. On other devices (ndarray, wgpu, the capture device used by
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
/// [`PARALLEL_MIN_ELEMENTS`] elements the values are computed by [`gelu_avx2`] (or
/// [`gelu_scalar`] without AVX2+FMA) on all Rayon threads; otherwise this is
/// `burn::tensor::activation::gelu`.
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
    let simd = avx2_fma();
    out.par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .for_each(|(o, s)| {
            if simd {
                // SAFETY: AVX2 and FMA were detected; `o` and `s` have the same length.
                unsafe { gelu_avx2(s, o) }
            } else {
                for (o, &v) in o.iter_mut().zip(s) {
                    *o = gelu_scalar(v);
                }
            }
        });
    Tensor::from_data(TensorData::new(out, dims), &device)
}

fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `dst[i] = 0.5·x·(1 + erf(x/√2))` for `x = src[i]`, eight lanes at a time, `erf` by the
/// rational approximation Eigen and XLA use for f32 (`erf(z) = z·P(z²)/Q(z²)` on
/// `z ∈ (-4, 4)`, ±1 outside; a few ulp), a tail of fewer than eight values through the
/// same lanes. NaN stays NaN;
/// `gelu(-inf)` is NaN and `gelu(inf)` is inf, as in the scalar form.
///
/// # Safety
/// AVX2 and FMA must be available; `dst.len() == src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::excessive_precision)] // the coefficients as Eigen publishes them
pub unsafe fn gelu_avx2(src: &[f32], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    debug_assert_eq!(src.len(), dst.len());
    let n = src.len().min(dst.len());
    let n8 = n / 8 * 8;
    // The last `n - n8` values go through the same lanes from a padded copy, so every value
    // gets the same function wherever it sits.
    if n8 < n {
        let mut tail_in = [0f32; 8];
        let mut tail_out = [0f32; 8];
        tail_in[..n - n8].copy_from_slice(&src[n8..n]);
        // SAFETY: AVX2+FMA as for this call; both buffers hold 8 values.
        unsafe { gelu_avx2(&tail_in, &mut tail_out) };
        dst[n8..n].copy_from_slice(&tail_out[..n - n8]);
    }
    let c = |v: f32| _mm256_set1_ps(v);
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n <= both lengths.
        let x = unsafe { crate::nn::linear::load8(src.as_ptr().wrapping_add(i)) };
        let z_in = _mm256_mul_ps(x, c(std::f32::consts::FRAC_1_SQRT_2));
        // Operand order keeps a NaN `z` (min/max return their second operand on NaN).
        let z = _mm256_min_ps(c(4.0), _mm256_max_ps(c(-4.0), z_in));
        let z2 = _mm256_mul_ps(z, z);
        let mut p = c(-2.726_142_2e-10);
        p = _mm256_fmadd_ps(p, z2, c(2.770_681_4e-8));
        p = _mm256_fmadd_ps(p, z2, c(-2.101_024e-6));
        p = _mm256_fmadd_ps(p, z2, c(-5.692_506_4e-5));
        p = _mm256_fmadd_ps(p, z2, c(-7.349_906_3e-4));
        p = _mm256_fmadd_ps(p, z2, c(-2.954_600_1e-3));
        p = _mm256_fmadd_ps(p, z2, c(-1.609_603_3e-2));
        let mut q = c(-1.456_607_2e-5);
        q = _mm256_fmadd_ps(q, z2, c(-2.133_740_6e-4));
        q = _mm256_fmadd_ps(q, z2, c(-1.682_827e-3));
        q = _mm256_fmadd_ps(q, z2, c(-7.373_329e-3));
        q = _mm256_fmadd_ps(q, z2, c(-1.426_474e-2));
        let erf = _mm256_div_ps(_mm256_mul_ps(z, p), q);
        // |z| >= 4: erf is ±1 exactly (so gelu(-inf) = -inf·0 = NaN, as the scalar form).
        let sign = _mm256_and_ps(z, c(-0.0));
        let sat = _mm256_cmp_ps::<_CMP_GE_OQ>(_mm256_andnot_ps(c(-0.0), z_in), c(4.0));
        let erf = _mm256_blendv_ps(erf, _mm256_or_ps(sign, c(1.0)), sat);
        let y = _mm256_mul_ps(_mm256_mul_ps(c(0.5), x), _mm256_add_ps(c(1.0), erf));
        // SAFETY: as above.
        unsafe { _mm256_storeu_ps(dst.as_mut_ptr().wrapping_add(i), y) };
        i += 8;
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn gelu_avx2(src: &[f32], dst: &mut [f32]) {
    for (o, &v) in dst.iter_mut().zip(src) {
        *o = gelu_scalar(v);
    }
}
