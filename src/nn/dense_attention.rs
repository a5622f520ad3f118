//! Unmasked attention over long sequences (Whisper's encoder self-attention: 1500 queries x
//! 1500 keys per head), computed one block of queries at a time against all keys.
//!
//! Why: Burn Flex 0.22's fused attention (`burn-flex` `ops/attention.rs`) walks the keys in
//! tiles of 64 with an online softmax, so every tile is two small `gemm` calls (`k = 64`) and
//! a rescale of the output rows, with a scalar `exp`; under `perf record` it was the largest
//! share of Whisper tiny's encoder (README, Benchmarks). [`dense_attention`] takes
//! [`Q_BLOCK`] queries against all `t` keys: one `[Q_BLOCK, hd] x [hd, t]` product for the
//! scores (which stay in L2), `exp(score - row max)` over each row, one `[Q_BLOCK, t] x [t, hd]`
//! product for the output, with the (head, query block) pairs spread over the Rayon threads.
//! The maths is upstream's `eager_attention_forward` (softmax(q·kᵀ·scale)·v), the output
//! divided by the row sums after the second product as flash attention does.
//! `tests/fused_kernels.rs` holds it to the explicit path; `just bench-whisper` measures it.

use burn::tensor::{Tensor, TensorData};
use burn_dispatch::backends::Flex;
use rayon::prelude::*;

/// Queries per block: the block's scores (`Q_BLOCK * t` f32, 384 KB for t = 1500) stay in L2.
pub const Q_BLOCK: usize = 64;

/// Smallest query count for which [`crate::nn::attention::fused_attention`] uses
/// [`dense_attention`] (fewer queries, a decode step, go to Flex's kernel).
pub const DENSE_MIN_QUERIES: usize = 16;

/// Smallest key count for which [`crate::nn::attention::fused_attention`] uses
/// [`dense_attention`].
pub const DENSE_MIN_KEYS: usize = 256;

/// `softmax(q · kᵀ · scale) · v` without a mask, GQA by head index (query head `i` reads
/// key/value head `i / (n_heads / n_kv_heads)`, transformers `repeat_kv`).
///
/// Returns `None` (the caller uses another kernel) when the tensors are not f32 Flex tensors,
/// the shapes disagree, or `n_heads` is not a multiple of `n_kv_heads`.
///
/// # Shapes
/// - `q`: `[batch, n_heads, seq, head_dim]`
/// - `k`: `[batch, n_kv_heads, kv_seq, head_dim]`
/// - `v`: `[batch, n_kv_heads, kv_seq, d_v]`
/// - returns `[batch, n_heads, seq, d_v]`
pub fn dense_attention(
    q: &Tensor<4>,
    k: &Tensor<4>,
    v: &Tensor<4>,
    scale: f32,
) -> Option<Tensor<4>> {
    let [b, h, s, hd] = q.dims();
    let [bk, h_kv, t, hdk] = k.dims();
    let [bv, h_v, tv, dv] = v.dims();
    if bk != b || bv != b || hdk != hd || h_v != h_kv || tv != t || h_kv == 0 || h % h_kv != 0 {
        return None;
    }
    if b * h * s * dv == 0 || t == 0 || hd == 0 {
        return None;
    }
    let device = q.device();
    let flat = |x: &Tensor<4>| {
        x.clone()
            .try_into_primitive::<Flex>()
            .ok()
            .map(|f| f.to_contiguous())
    };
    let (qf, kf, vf) = (flat(q)?, flat(k)?, flat(v)?);
    let (qd, kd, vd) = (
        qf.as_slice::<f32>()?,
        kf.as_slice::<f32>()?,
        vf.as_slice::<f32>()?,
    );
    if qd.len() != b * h * s * hd || kd.len() != b * h_kv * t * hd || vd.len() != b * h_kv * t * dv
    {
        return None;
    }
    let n_rep = h / h_kv;
    let mut out = vec![0f32; b * h * s * dv];
    out.par_chunks_mut(s * dv)
        .enumerate()
        .for_each(|(bh, head_out)| {
            let (bi, hi) = (bh / h, bh % h);
            let kv = bi * h_kv + hi / n_rep;
            let qh = &qd[bh * s * hd..(bh + 1) * s * hd];
            let kh = &kd[kv * t * hd..(kv + 1) * t * hd];
            let vh = &vd[kv * t * dv..(kv + 1) * t * dv];
            head_out
                .par_chunks_mut(Q_BLOCK * dv)
                .enumerate()
                .for_each_init(
                    || vec![0f32; Q_BLOCK * t],
                    |scores, (blk, o)| {
                        let rows = o.len() / dv;
                        let qb = &qh[blk * Q_BLOCK * hd..(blk * Q_BLOCK + rows) * hd];
                        attend_block(
                            qb,
                            kh,
                            vh,
                            o,
                            &mut scores[..rows * t],
                            rows,
                            t,
                            hd,
                            dv,
                            scale,
                        );
                    },
                );
        });
    Some(Tensor::from_data(
        TensorData::new(out, [b, h, s, dv]),
        &device,
    ))
}

/// One block: `o [rows, dv] = softmax(q [rows, hd] · k [t, hd]ᵀ · scale) · v [t, dv]`, with
/// `scores [rows, t]` as scratch.
#[allow(clippy::too_many_arguments)]
fn attend_block(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &mut [f32],
    scores: &mut [f32],
    rows: usize,
    t: usize,
    hd: usize,
    dv: usize,
    scale: f32,
) {
    // Real checks (not debug-only): the raw-pointer products below rely on them.
    assert!(q.len() == rows * hd && k.len() == t * hd && v.len() == t * dv);
    assert!(o.len() == rows * dv && scores.len() == rows * t && rows <= Q_BLOCK);
    // SAFETY: every pointer/stride pair below addresses only elements inside the slices, whose
    // lengths are checked above: scores [rows, t] row-major, q [rows, hd] row-major, kᵀ read
    // from k [t, hd] row-major (column stride hd), o [rows, dv], v [t, dv] row-major.
    // `gemm` computes dst = beta * lhs · rhs when read_dst is false.
    unsafe {
        gemm::gemm(
            rows,
            t,
            hd,
            scores.as_mut_ptr(),
            1,
            t as isize,
            false,
            q.as_ptr(),
            1,
            hd as isize,
            k.as_ptr(),
            hd as isize,
            1,
            0.0f32,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    let mut sums = [0f32; Q_BLOCK];
    let simd = crate::nn::linear::avx2_fma();
    for (row, sum) in scores.chunks_exact_mut(t).zip(sums.iter_mut()) {
        *sum = if simd {
            // SAFETY: AVX2 and FMA were detected.
            unsafe { exp_shifted_avx2(row) }
        } else {
            exp_shifted(row)
        };
    }
    // SAFETY: as above.
    unsafe {
        gemm::gemm(
            rows,
            dv,
            t,
            o.as_mut_ptr(),
            1,
            dv as isize,
            false,
            scores.as_ptr(),
            1,
            t as isize,
            v.as_ptr(),
            1,
            dv as isize,
            0.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
    for (row, sum) in o.chunks_exact_mut(dv).zip(sums) {
        let inv = 1.0 / sum;
        for x in row {
            *x *= inv;
        }
    }
}

/// `row[i] = exp(row[i] - max(row))`, returning the sum: the unnormalised softmax of one row
/// of scores, with `f32::exp`.
pub fn exp_shifted(row: &mut [f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for x in row.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    sum
}

/// [`exp_shifted`] eight lanes at a time, `exp` by Cephes' `expf` (range reduction by
/// `ln 2` in two parts, degree-6 polynomial; about 1 ulp): `exp(-inf)` and anything below
/// about `-87.3` give 0, a NaN score makes the sum NaN, as upstream's softmax does.
///
/// # Safety
/// AVX2 and FMA must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub unsafe fn exp_shifted_avx2(row: &mut [f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = row.len();
    let n8 = n / 8 * 8;
    let p = row.as_mut_ptr();
    // Row maximum (NaN ignored here; it reaches the sum through its own exp below).
    let mut vmax = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n.
        vmax = _mm256_max_ps(vmax, unsafe { crate::nn::linear::load8(p.wrapping_add(i)) });
        i += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), vmax) };
    let mut max = lanes.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for &x in &row[n8..] {
        max = max.max(x);
    }
    let shift = _mm256_set1_ps(max);
    let mut vsum = _mm256_setzero_ps();
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= n.
        unsafe {
            let e = exp256(_mm256_sub_ps(
                crate::nn::linear::load8(p.wrapping_add(i)),
                shift,
            ));
            _mm256_storeu_ps(p.wrapping_add(i), e);
            vsum = _mm256_add_ps(vsum, e);
        }
        i += 8;
    }
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), vsum) };
    let mut sum: f32 = lanes.iter().sum();
    for x in &mut row[n8..] {
        *x = (*x - max).exp();
        sum += *x;
    }
    sum
}

/// `exp(x)` of eight lanes for `x <= 0` (scores minus their row maximum), Cephes `expf`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn exp256(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // Below -87.3 the result would be subnormal: flushed to 0 through the exponent mask.
    let lo = _mm256_set1_ps(-87.3);
    let hi = _mm256_set1_ps(88.3);
    // Operand order keeps a NaN `x` (max/min return their second operand on NaN).
    let xc = _mm256_min_ps(hi, _mm256_max_ps(lo, x));
    let fx = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // r = x - fx * ln2, ln2 in two parts (Cephes C1, C2).
    let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), xc);
    let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut y = _mm256_set1_ps(1.987_569_1e-4);
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.398_199_9e-3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(8.333_452e-3));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(4.166_579_6e-2));
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(1.666_666_5e-1));
    // Cephes 5.0000001201e-1, which is 0.5 in f32.
    y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(0.5));
    let r2 = _mm256_mul_ps(r, r);
    y = _mm256_fmadd_ps(y, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0)));
    // 2^fx through the exponent bits; fx >= -126 after the clamp.
    let e = _mm256_slli_epi32::<23>(_mm256_add_epi32(
        _mm256_cvtps_epi32(fx),
        _mm256_set1_epi32(127),
    ));
    let out = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    // Inputs below the clamp (including -inf) give exactly 0.
    let tiny = _mm256_cmp_ps::<_CMP_LT_OQ>(x, lo);
    _mm256_andnot_ps(tiny, out)
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn exp_shifted_avx2(row: &mut [f32]) -> f32 {
    exp_shifted(row)
}
