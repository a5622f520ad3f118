//! `nn.Linear` / `F.linear` (`y = x·Wᵀ + b`) with our own kernel for a few rows, and the
//! device test that decides when fused or hand-written kernels may be used.
//!
//! Why: a decoder step multiplies one row (a streaming encoder step four) by every weight
//! matrix, which makes the step a read of all weights. Burn Flex sends such a product to the
//! `gemm` crate, whose one-row branch is a single-threaded matrix-vector kernel
//! (`gemm-common` 0.19 `gemm.rs`: the `m <= 1` branches call `gemv` without the parallelism
//! argument) and whose general branch packs the whole right-hand side for a handful of rows.
//! [`small_rows_matmul`] streams each weight row once, eight rows at a time, accumulating into
//! the few output rows that stay in cache, with the output columns split across Rayon
//! threads; AVX2+FMA when the CPU has them (checked at run time), else Burn's matmul.
//! `just bench-voxtral` measures the effect against torch (README, Benchmarks).

use burn::nn::Linear;
use burn::tensor::{Device, Tensor, TensorData};
use burn_dispatch::backends::Flex;
use rayon::prelude::*;

/// Rows up to which [`linear`] and [`matmul_transposed`] use [`small_rows_matmul`]; above it
/// the weight is re-read from cache once per row and `gemm`'s blocked kernel wins.
pub const SMALL_ROWS_MAX: usize = 16;

/// Smallest weight (`d_in * d_out` elements) for the small-rows kernel: below it (Whisper
/// tiny's 384 x 384 projections) the thread hand-off costs more than the product.
pub const SMALL_ROWS_MIN_ELEMENTS: usize = 1 << 20;

/// Whether `device` is Burn's non-executing graph-capture device (`Device::capture()`, used by
/// `voxtrace export`). On it every layer keeps the plain op pattern of the upstream eager code
/// (one matmul per linear; matmul, mask, softmax, matmul per attention), which
/// the ONNX exporter (`export`) recognises and lowers; fused and hand-written kernels run on Flex only
/// ([`is_flex`]).
pub fn is_capture(device: &Device) -> bool {
    matches!(
        device.as_dispatch(),
        burn_dispatch::DispatchDevice::Capture(_)
    )
}

/// Whether `device` is the Flex CPU backend, whose buffers [`small_rows_matmul`] reads.
pub fn is_flex(device: &Device) -> bool {
    matches!(device.as_dispatch(), burn_dispatch::DispatchDevice::Flex(_))
}

/// `f` over the values of an f32 Flex tensor, on the Rayon threads: the values (made
/// contiguous, in `x`'s logical order) are cut into chunks of `chunk` elements (a multiple of
/// the row length when `f` works on rows), `f(src_chunk, out_chunk)` fills the output chunk,
/// and the result is a new tensor of `x`'s shape. `None` when `x` is not an f32 Flex tensor
/// or `chunk` is 0: the caller then runs Burn's own op. Used by [`crate::nn::gelu`] and
/// [`crate::nn::softmax::softmax_last`].
///
/// # Shapes
/// - `x`: any shape
/// - returns the shape of `x`
pub fn map_flex_f32<const D: usize>(
    x: &Tensor<D>,
    chunk: usize,
    f: impl Fn(&[f32], &mut [f32]) + Sync,
) -> Option<Tensor<D>> {
    let n = x.shape().num_elements();
    if chunk == 0 || !is_flex(&x.device()) {
        return None;
    }
    let flex = x.clone().try_into_primitive::<Flex>().ok()?.to_contiguous();
    let src = flex.as_slice::<f32>().filter(|s| s.len() == n)?;
    let mut out = vec![0f32; n];
    out.par_chunks_mut(chunk)
        .zip(src.par_chunks(chunk))
        .for_each(|(o, s)| f(s, o));
    Some(Tensor::from_data(
        TensorData::new(out, x.dims()),
        &x.device(),
    ))
}

/// `layer(x)` = `x · weight + bias`, as Burn's `Linear::forward` (PyTorch `F.linear`; Burn
/// stores the weight transposed). At most [`SMALL_ROWS_MAX`] rows on Flex run through
/// [`small_rows_matmul`].
///
/// # Shapes
/// - `x`: `[..., d_in]`
/// - `layer.weight`: `[d_in, d_out]`; `layer.bias`: `[d_out]`
/// - returns `[..., d_out]`
pub fn linear<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    let dims = x.dims();
    let rows: usize = dims[..D - 1].iter().product();
    let weight = layer.weight.val();
    let [d_in, d_out] = weight.dims();
    if rows == 0
        || rows > SMALL_ROWS_MAX
        || d_in * d_out < SMALL_ROWS_MIN_ELEMENTS
        || !is_flex(&x.device())
    {
        return layer.forward(x);
    }
    let Some(y) = small_rows_matmul(&x.clone().reshape([rows, d_in]), &weight, Layout::KN) else {
        return layer.forward(x);
    };
    let y = match &layer.bias {
        Some(b) => y + b.val().unsqueeze::<2>(),
        None => y,
    };
    let mut out = dims;
    out[D - 1] = d_out;
    y.reshape(out)
}

/// `x · w_nkᵀ` for a weight stored transposed (a tied embedding used as the output
/// projection). At most [`SMALL_ROWS_MAX`] rows on Flex run through [`small_rows_matmul`];
/// otherwise `x.matmul(w_nk.transpose())`.
///
/// # Shapes
/// - `x`: `[rows, d]`
/// - `w_nk`: `[n, d]` (the `[vocab, d_model]` embedding as LM head)
/// - returns `[rows, n]`
pub fn matmul_transposed(x: Tensor<2>, w_nk: Tensor<2>) -> Tensor<2> {
    let [rows, d] = x.dims();
    let [n, _] = w_nk.dims();
    if rows == 0
        || rows > SMALL_ROWS_MAX
        || n * d < SMALL_ROWS_MIN_ELEMENTS
        || !is_flex(&x.device())
    {
        return x.matmul(w_nk.transpose());
    }
    match small_rows_matmul(&x, &w_nk, Layout::NK) {
        Some(y) => y,
        None => x.matmul(w_nk.transpose()),
    }
}

/// How a weight of a `[rows, k] -> [rows, n]` product is stored (row-major).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `[k, n]`: Burn's `Linear` weight; `y = x · w`.
    KN,
    /// `[n, k]`: PyTorch's `nn.Linear` weight or an embedding table; `y = x · wᵀ`.
    NK,
}

/// `x` times a weight `w` stored as `layout`, computed by our own kernel
/// over the Flex buffers (no copy of `w`), the `n` output columns split into one block per
/// Rayon thread. Returns `None` (the caller falls back to Burn's matmul) when the tensors are
/// not contiguous f32 Flex tensors (another backend, the capture device, a strided view) or
/// the CPU lacks AVX2+FMA.
///
/// Sums run over `k` in a different order than `gemm`'s, so results differ from Burn's matmul
/// by f32 rounding only (`tests/fused_kernels.rs` bounds it).
///
/// # Shapes
/// - `x`: `[m, k]`
/// - `w`: `[k, n]` for [`Layout::KN`], `[n, k]` for [`Layout::NK`]
/// - returns `[m, n]`
pub fn small_rows_matmul(x: &Tensor<2>, w: &Tensor<2>, layout: Layout) -> Option<Tensor<2>> {
    if !avx2_fma() {
        return None;
    }
    let device = x.device();
    let [m, k] = x.dims();
    let n = match layout {
        Layout::KN => w.dims()[1],
        Layout::NK => w.dims()[0],
    };
    let wf = w.clone().try_into_primitive::<Flex>().ok()?;
    let w_data = wf.as_slice::<f32>()?;
    let xf = x.clone().try_into_primitive::<Flex>().ok()?.to_contiguous();
    let x_data = xf.as_slice::<f32>()?;
    if w_data.len() != k * n || x_data.len() != m * k {
        return None;
    }
    // Column blocks of a multiple of 8 (one AVX register), one per thread. With `[k, n]` each
    // thread walks every weight row over its columns and its output rows stay in L1 between
    // weight rows; with `[n, k]` it reads whole weight rows (a contiguous range of the table).
    let threads = rayon::current_num_threads().max(1);
    let chunk = n.div_ceil(threads).div_ceil(8) * 8;
    let blocks: Vec<(usize, Vec<f32>)> = (0..threads)
        .into_par_iter()
        .filter(|t| t * chunk < n)
        .map(|t| {
            let c0 = t * chunk;
            let len = chunk.min(n - c0);
            let mut y = vec![0f32; m * len];
            // SAFETY: AVX2 and FMA were detected above; columns (weight rows for `NK`)
            // c0 .. c0 + len <= n lie inside `w_data` (`k * n`, checked), `x_data` holds
            // `m * k`, `y` holds `m * len`.
            unsafe {
                match layout {
                    Layout::KN => kn_block(m, k, x_data, w_data, n, c0, len, &mut y),
                    Layout::NK => nk_block(m, k, x_data, w_data, c0, len, &mut y),
                }
            }
            (c0, y)
        })
        .collect();
    let mut out = vec![0f32; m * n];
    for (c0, y) in blocks {
        let len = y.len() / m;
        for i in 0..m {
            out[i * n + c0..i * n + c0 + len].copy_from_slice(&y[i * len..(i + 1) * len]);
        }
    }
    Some(Tensor::from_data(TensorData::new(out, [m, n]), &device))
}

/// Whether the CPU has AVX2 and FMA (checked at run time; cached by std), which every
/// hand-written kernel in `nn` needs.
pub(crate) fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Eight f32 from `p` (unaligned): `vlddqu`. Not `_mm256_loadu_ps`, which is a
/// `ptr::copy_nonoverlapping` into a stack temporary: with this crate's debug assertions on
/// (dev and test profiles) that carries a run-time precondition check and a round trip
/// through memory on every load (seen under `perf annotate` of the tied-projection kernel).
///
/// # Safety
/// AVX2 must be available and `p .. p + 8` readable.
#[cfg(target_arch = "x86_64")]
#[inline]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn load8(p: *const f32) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // SAFETY: the caller guarantees 32 readable bytes at `p`; vlddqu has no alignment need.
    _mm256_castsi256_ps(unsafe { _mm256_lddqu_si256(p.cast::<__m256i>()) })
}

/// Rows of `w` read together in [`kn_block`]: eight concurrent streams, one output
/// load/store per eight multiply-adds.
#[cfg(target_arch = "x86_64")]
const KN_ROWS: usize = 8;

/// `y [m, len] = x [m, k] · w[:, c0 .. c0 + len]` for `w [k, ldw]` row-major: eight weight
/// rows at a time, each 8-column slice of them loaded once and applied to every input row.
///
/// # Safety
/// AVX2 and FMA must be available; `x.len() >= m * k`, `w.len() >= k * ldw`,
/// `c0 + len <= ldw`, `y.len() >= m * len`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn kn_block(
    m: usize,
    k: usize,
    x: &[f32],
    w: &[f32],
    ldw: usize,
    c0: usize,
    len: usize,
    y: &mut [f32],
) {
    use std::arch::x86_64::*;
    let wp = w.as_ptr();
    let xp = x.as_ptr();
    let yp = y.as_mut_ptr();
    let mut r = 0;
    while r < k {
        let rr = KN_ROWS.min(k - r);
        let mut c = 0;
        if rr == KN_ROWS {
            while c + 8 <= len {
                // SAFETY: rows r .. r + 8 <= k and columns c0 + c .. + 8 <= c0 + len <= ldw.
                // Written out (no arrays or iterators): this crate builds at opt-level 1 in
                // the dev profile, where those left loads and checks inside the loop.
                unsafe {
                    let base = wp.wrapping_add(r * ldw + c0 + c);
                    let w0 = load8(base);
                    let w1 = load8(base.wrapping_add(ldw));
                    let w2 = load8(base.wrapping_add(2 * ldw));
                    let w3 = load8(base.wrapping_add(3 * ldw));
                    let w4 = load8(base.wrapping_add(4 * ldw));
                    let w5 = load8(base.wrapping_add(5 * ldw));
                    let w6 = load8(base.wrapping_add(6 * ldw));
                    let w7 = load8(base.wrapping_add(7 * ldw));
                    let mut yi = yp.wrapping_add(c);
                    let mut xi = xp.wrapping_add(r);
                    for _ in 0..m {
                        let xv = |j: usize| _mm256_set1_ps(*xi.wrapping_add(j));
                        let mut acc = load8(yi);
                        acc = _mm256_fmadd_ps(xv(0), w0, acc);
                        acc = _mm256_fmadd_ps(xv(1), w1, acc);
                        acc = _mm256_fmadd_ps(xv(2), w2, acc);
                        acc = _mm256_fmadd_ps(xv(3), w3, acc);
                        acc = _mm256_fmadd_ps(xv(4), w4, acc);
                        acc = _mm256_fmadd_ps(xv(5), w5, acc);
                        acc = _mm256_fmadd_ps(xv(6), w6, acc);
                        acc = _mm256_fmadd_ps(xv(7), w7, acc);
                        _mm256_storeu_ps(yi, acc);
                        yi = yi.wrapping_add(len);
                        xi = xi.wrapping_add(k);
                    }
                }
                c += 8;
            }
        }
        // Tail columns (and the last partial group of rows), scalar.
        while c < len {
            for i in 0..m {
                let mut s = y[i * len + c];
                for j in 0..rr {
                    s += x[i * k + r + j] * w[(r + j) * ldw + c0 + c];
                }
                y[i * len + c] = s;
            }
            c += 1;
        }
        r += KN_ROWS;
    }
}

/// How many weight rows ahead [`nk_block`] asks for the cache lines it will read next (a
/// prefetch hint; reading past the table's end is not a fault).
#[cfg(target_arch = "x86_64")]
const NK_PREFETCH_ROWS: usize = 4;

/// `y [m, len] = x [m, k] · w[c0 .. c0 + len, :]ᵀ` for `w [n, k]` row-major: four output
/// columns (weight rows) at a time, each a dot product over `k` in 8-wide lanes, the loop
/// unrolled by hand (this crate builds at opt-level 1 in the dev profile).
///
/// # Safety
/// AVX2 and FMA must be available; `x.len() >= m * k`, `w.len() >= (c0 + len) * k`,
/// `y.len() >= m * len`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn nk_block(m: usize, k: usize, x: &[f32], w: &[f32], c0: usize, len: usize, y: &mut [f32]) {
    use std::arch::x86_64::*;
    // Horizontal sum of the 8 lanes.
    #[target_feature(enable = "avx2,fma")]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }
    let k8 = k / 8 * 8;
    let wp = w.as_ptr();
    let xp = x.as_ptr();
    let full = len / 4 * 4;
    let mut c = 0;
    // Groups of four weight rows, unrolled: four independent accumulators.
    while c < full {
        for i in 0..m {
            // SAFETY: r + 8 <= k8 <= k; weight rows c0 + c .. c0 + c + 4 <= c0 + len.
            unsafe {
                let xr = xp.wrapping_add(i * k);
                let w0 = wp.wrapping_add((c0 + c) * k);
                let (w1, w2, w3) = (
                    w0.wrapping_add(k),
                    w0.wrapping_add(2 * k),
                    w0.wrapping_add(3 * k),
                );
                let (mut a0, mut a1, mut a2, mut a3) = (
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                    _mm256_setzero_ps(),
                );
                let mut r = 0;
                while r < k8 {
                    // The next group of four rows, 16 floats (one cache line) per row per
                    // step, requested ahead: with the four row streams alone the loads sat
                    // waiting on memory (`perf annotate`).
                    if r % 16 == 0 {
                        for row in NK_PREFETCH_ROWS..NK_PREFETCH_ROWS + 4 {
                            let ahead = w0.wrapping_add(row * k + r);
                            _mm_prefetch::<_MM_HINT_T0>(ahead.cast::<i8>());
                        }
                    }
                    let xv = load8(xr.wrapping_add(r));
                    a0 = _mm256_fmadd_ps(xv, load8(w0.wrapping_add(r)), a0);
                    a1 = _mm256_fmadd_ps(xv, load8(w1.wrapping_add(r)), a1);
                    a2 = _mm256_fmadd_ps(xv, load8(w2.wrapping_add(r)), a2);
                    a3 = _mm256_fmadd_ps(xv, load8(w3.wrapping_add(r)), a3);
                    r += 8;
                }
                let mut out = [hsum(a0), hsum(a1), hsum(a2), hsum(a3)];
                for (j, o) in out.iter_mut().enumerate() {
                    for rr in k8..k {
                        *o += x[i * k + rr] * w[(c0 + c + j) * k + rr];
                    }
                }
                y[i * len + c..i * len + c + 4].copy_from_slice(&out);
            }
        }
        c += 4;
    }
    // The last one to three weight rows.
    while c < len {
        for i in 0..m {
            let mut acc = _mm256_setzero_ps();
            let mut r = 0;
            while r < k8 {
                // SAFETY: r + 8 <= k; weight row c0 + c < c0 + len.
                unsafe {
                    let xv = load8(xp.wrapping_add(i * k + r));
                    acc = _mm256_fmadd_ps(xv, load8(wp.wrapping_add((c0 + c) * k + r)), acc);
                }
                r += 8;
            }
            let mut s = hsum(acc);
            for rr in k8..k {
                s += x[i * k + rr] * w[(c0 + c) * k + rr];
            }
            y[i * len + c] = s;
        }
        c += 1;
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(clippy::too_many_arguments)]
unsafe fn kn_block(
    _: usize,
    _: usize,
    _: &[f32],
    _: &[f32],
    _: usize,
    _: usize,
    _: usize,
    _: &mut [f32],
) {
    unreachable!("avx2_fma() is false off x86_64")
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn nk_block(_: usize, _: usize, _: &[f32], _: &[f32], _: usize, _: usize, _: &mut [f32]) {
    unreachable!("avx2_fma() is false off x86_64")
}

/// `f(values, m)` on the host over the values of `x [..., n_in]` (`m` = the product of the
/// leading dimensions), the result `[m, n_out]` returned as `[..., n_out]` on `x`'s device:
/// the bridge between Burn tensors and the hand-written products (`nn::qmatmul`,
/// `nn::half`), which check `values.len() == m * n_in` themselves.
///
/// # Errors
/// What `f` returns.
pub fn on_host_rows<const D: usize, E>(
    x: Tensor<D>,
    n_out: usize,
    f: impl FnOnce(&[f32], usize) -> Result<Vec<f32>, E>,
) -> Result<Tensor<D>, E> {
    let dims = x.dims();
    let device = x.device();
    let m: usize = dims[..D - 1].iter().product();
    // After `convert::<f32>()` the element type matches, so this cannot fail; an empty vector
    // would be refused by `f` as an input-length error, not a panic.
    let values: Vec<f32> = x
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap_or_default();
    let y = f(&values, m)?;
    let mut out = dims;
    out[D - 1] = n_out;
    Ok(Tensor::from_data(TensorData::new(y, out), &device))
}
