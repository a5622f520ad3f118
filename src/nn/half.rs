//! Matrix products with BF16 or F16 weights used as stored (a memory-mapped safetensors or GGUF
//! tensor, never widened to an f32 copy of the whole matrix).
//!
//! Why: the released Voxtral checkpoint is BF16 (8.9 GB). Widening it to f32 costs 17.7 GB of
//! memory and a ~90 s pass, and a decoder step then reads twice the bytes it needs
//! (`../shared/docs/quantization.md`). Here each weight element is widened in registers as
//! it is read and multiplied in f32, so the result is the f32 product of the widened weights
//! up to the order of the f32 sums.
//!
//! Two schedules, by the number of activation rows `m`:
//! * `m < GEMM_MIN_ROWS` (a decoder step, the 8-frame streaming encoder): each output row is a
//!   dot product of the half-precision weight row, widened 16 (AVX-512F) or 8 (AVX2 + F16C)
//!   lanes at a time, with up to four activation rows at once; output rows split across Rayon
//!   threads. Memory-bound: 2 bytes read per weight.
//! * `m >= GEMM_MIN_ROWS` (prefill, a batched encoder): blocks of weight rows are widened to f32
//!   (a few hundred kB at a time, reused by every activation row) and multiplied by the `gemm`
//!   crate (the f32 kernels Burn's Flex backend also uses). Compute-bound.
//!
//! BF16 → f32 is exact (the 16 bits become the high half of the f32); F16 → f32 is exact
//! (`vcvtph2ps`, or `half::f16::to_f32` in the portable path).

use super::qmatmul::{over_output_rows, untranspose};
use burn::tensor::Tensor;
use bytes::Bytes;
use rayon::prelude::*;

/// Activation rows from which [`half_matmul`] widens weight blocks and calls `gemm`.
pub const GEMM_MIN_ROWS: usize = 16;

/// Smallest weight (`rows * cols` elements) whose output rows are split across Rayon threads.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 16;

/// f32 values widened per weight block in the `gemm` schedule (16 MiB): few blocks per
/// product, because `gemm` packs the activations again for every call.
const GEMM_BLOCK_VALUES: usize = 1 << 22;

/// A 16-bit floating-point storage format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HalfKind {
    /// bfloat16: 1 sign, 8 exponent, 7 mantissa bits (the f32 high half).
    Bf16,
    /// IEEE 754 binary16.
    F16,
}

impl HalfKind {
    /// `bf16` or `f16`.
    pub const fn name(self) -> &'static str {
        match self {
            HalfKind::Bf16 => "bf16",
            HalfKind::F16 => "f16",
        }
    }

    /// Widen one little-endian value.
    #[inline]
    pub fn to_f32(self, bits: u16) -> f32 {
        match self {
            HalfKind::Bf16 => f32::from_bits(u32::from(bits) << 16),
            HalfKind::F16 => half::f16::from_bits(bits).to_f32(),
        }
    }
}

/// Why a half-precision matrix or product was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HalfMatmulError {
    /// The byte buffer does not hold `rows * cols` 2-byte values.
    #[error("{} matrix [{rows}, {cols}]: expected {expected} bytes, found {found}", kind.name())]
    ByteLength {
        /// Storage format.
        kind: HalfKind,
        /// Output rows.
        rows: usize,
        /// Input columns.
        cols: usize,
        /// `rows * cols * 2`.
        expected: usize,
        /// The buffer's length.
        found: usize,
    },
    /// The activations do not hold `m * cols` values.
    #[error("half matmul: x holds {found} values, expected m * n_in = {m} * {n_in}")]
    InputLength {
        /// Activation rows given.
        m: usize,
        /// The weight's input width.
        n_in: usize,
        /// `x.len()`.
        found: usize,
    },
    /// A row index past the matrix.
    #[error("half matrix has {rows} rows, row {row} asked")]
    Row {
        /// Rows of the matrix.
        rows: usize,
        /// The index asked.
        row: usize,
    },
}

/// A `[rows, cols]` weight (`rows` = outputs `n_out`, `cols` = inputs `n_in`, PyTorch's
/// `nn.Linear.weight` layout; also an embedding table `[vocab, d_model]`) of little-endian
/// 16-bit values, row-major, in shared bytes (a slice of a memory-mapped file or an owned
/// buffer; cloning does not copy). No alignment is needed.
#[derive(Debug, Clone)]
pub struct HalfMatrix {
    kind: HalfKind,
    rows: usize,
    cols: usize,
    data: Bytes,
}

impl HalfMatrix {
    /// Wrap `data` as a `[rows, cols]` matrix of `kind` values.
    ///
    /// # Errors
    /// [`HalfMatmulError::ByteLength`] when `data` is not exactly `rows * cols * 2` bytes.
    pub fn new(
        kind: HalfKind,
        rows: usize,
        cols: usize,
        data: impl Into<Bytes>,
    ) -> Result<Self, HalfMatmulError> {
        let data = data.into();
        let expected = rows.checked_mul(cols).and_then(|n| n.checked_mul(2));
        if expected != Some(data.len()) {
            return Err(HalfMatmulError::ByteLength {
                kind,
                rows,
                cols,
                expected: expected.unwrap_or(usize::MAX),
                found: data.len(),
            });
        }
        Ok(Self {
            kind,
            rows,
            cols,
            data,
        })
    }

    /// `values` `[rows, cols]` rounded to `kind` (round to nearest even), in an owned buffer.
    ///
    /// # Errors
    /// [`HalfMatmulError::ByteLength`] when `values.len() != rows * cols`.
    pub fn from_f32(
        kind: HalfKind,
        rows: usize,
        cols: usize,
        values: &[f32],
    ) -> Result<Self, HalfMatmulError> {
        let mut bytes = Vec::with_capacity(values.len() * 2);
        for &v in values {
            let bits = match kind {
                HalfKind::Bf16 => half::bf16::from_f32(v).to_bits(),
                HalfKind::F16 => half::f16::from_f32(v).to_bits(),
            };
            bytes.extend_from_slice(&bits.to_le_bytes());
        }
        Self::new(kind, rows, cols, bytes)
    }

    /// Storage format.
    pub fn kind(&self) -> HalfKind {
        self.kind
    }

    /// Output rows (`n_out`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input columns (`n_in`).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The stored bytes (`rows * cols * 2`).
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Row `j` widened to f32 into `out` (`cols` values).
    ///
    /// # Errors
    /// [`HalfMatmulError::Row`] when `j >= rows`.
    pub fn row_into(&self, j: usize, out: &mut [f32]) -> Result<(), HalfMatmulError> {
        if j >= self.rows {
            return Err(HalfMatmulError::Row {
                rows: self.rows,
                row: j,
            });
        }
        let bytes = &self.data[j * self.cols * 2..(j + 1) * self.cols * 2];
        widen(self.kind, bytes, &mut out[..self.cols]);
        Ok(())
    }

    /// The whole matrix widened to f32, `[rows, cols]` row-major (tests, small matrices).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        widen(self.kind, &self.data, &mut out);
        out
    }
}

/// Widen `bytes` (little-endian 16-bit values) into `out` (`bytes.len() / 2` values).
fn widen(kind: HalfKind, bytes: &[u8], out: &mut [f32]) {
    for (o, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *o = kind.to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// A dot-product kernel for the few-rows schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HalfKernel {
    /// Portable Rust, any CPU.
    Scalar,
    /// AVX2 + FMA + F16C, 8 lanes.
    Avx2,
    /// AVX-512F, 16 lanes.
    Avx512,
}

impl HalfKernel {
    /// Every kernel, fastest last.
    pub const ALL: [HalfKernel; 3] = [HalfKernel::Scalar, HalfKernel::Avx2, HalfKernel::Avx512];

    /// Whether this CPU can run the kernel (checked at run time; cached by std).
    pub fn available(self) -> bool {
        match self {
            HalfKernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            HalfKernel::Avx2 => {
                use std::arch::is_x86_feature_detected as has;
                has!("avx2") && has!("fma") && has!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            HalfKernel::Avx512 => {
                use std::arch::is_x86_feature_detected as has;
                HalfKernel::Avx2.available() && has!("avx512f")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest kernel this CPU can run.
    pub fn detect() -> HalfKernel {
        HalfKernel::ALL
            .into_iter()
            .rev()
            .find(|k| k.available())
            .unwrap_or(HalfKernel::Scalar)
    }
}

/// `x [m, n_in] · wᵀ` for `w` `[n_out, n_in]` in BF16 / F16 -> `[m, n_out]` row-major
/// (PyTorch `F.linear(x, w)` without bias, with `w` widened to f32), fastest kernel of this CPU.
///
/// # Errors
/// [`HalfMatmulError::InputLength`] when `x.len() != m * w.cols()`.
pub fn half_matmul(x: &[f32], m: usize, w: &HalfMatrix) -> Result<Vec<f32>, HalfMatmulError> {
    half_matmul_with(x, m, w, HalfKernel::detect(), GEMM_MIN_ROWS)
}

/// [`half_matmul`] with a chosen few-rows kernel (unavailable kernels fall back to scalar)
/// and the row count from which the `gemm` schedule is used (tests and benchmarks).
///
/// # Errors
/// [`HalfMatmulError::InputLength`] when `x.len() != m * w.cols()`.
pub fn half_matmul_with(
    x: &[f32],
    m: usize,
    w: &HalfMatrix,
    kernel: HalfKernel,
    gemm_min_rows: usize,
) -> Result<Vec<f32>, HalfMatmulError> {
    let (n_out, n_in) = (w.rows, w.cols);
    if m.checked_mul(n_in) != Some(x.len()) {
        return Err(HalfMatmulError::InputLength {
            m,
            n_in,
            found: x.len(),
        });
    }
    if m == 0 || n_out == 0 || n_in == 0 {
        return Ok(vec![0.0; m * n_out]);
    }
    let kernel = if kernel.available() {
        kernel
    } else {
        HalfKernel::Scalar
    };
    let threads = rayon::current_num_threads();
    let parallel = n_out * n_in >= PARALLEL_MIN_WEIGHTS && threads > 1;
    // Output transposed, `[n_out, m]`: each task owns a contiguous range of weight rows.
    let mut yt = vec![0f32; n_out * m];
    if m >= gemm_min_rows {
        let rows_per_block = (GEMM_BLOCK_VALUES / n_in).clamp(1, n_out);
        let mut wf = vec![0f32; rows_per_block * n_in];
        for (t, chunk) in yt.chunks_mut(rows_per_block * m).enumerate() {
            let j0 = t * rows_per_block;
            let nb = chunk.len() / m;
            let wf = &mut wf[..nb * n_in];
            let src = &w.data[j0 * n_in * 2..(j0 + nb) * n_in * 2];
            // Widen the block on every thread, a row range each.
            wf.par_chunks_mut(n_in * 64)
                .zip(src.par_chunks(n_in * 64 * 2))
                .for_each(|(o, b)| widen(w.kind, b, o));
            // chunk [nb, m] = wf [nb, n_in] · xᵀ [n_in, m].
            // SAFETY: every pointer/stride pair addresses memory inside `chunk` (nb x m,
            // row stride m), `wf` (nb x n_in, row stride n_in) and `x` (m x n_in read as its
            // transpose: row stride 1, column stride n_in); `chunk` is not aliased.
            unsafe {
                gemm::gemm(
                    nb,
                    m,
                    n_in,
                    chunk.as_mut_ptr(),
                    1,
                    m as isize,
                    false,
                    wf.as_ptr(),
                    1,
                    n_in as isize,
                    x.as_ptr(),
                    n_in as isize,
                    1,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    if parallel {
                        gemm::Parallelism::Rayon(threads)
                    } else {
                        gemm::Parallelism::None
                    },
                );
            }
        }
    } else {
        let row_bytes = n_in * 2;
        let run = |j0: usize, chunk: &mut [f32]| {
            for (jj, yrow) in chunk.chunks_exact_mut(m).enumerate() {
                let j = j0 + jj;
                let wrow = &w.data[j * row_bytes..(j + 1) * row_bytes];
                let mut r0 = 0;
                while r0 < m {
                    let g = 4.min(m - r0);
                    rows_dot(
                        kernel,
                        w.kind,
                        wrow,
                        &x[r0 * n_in..],
                        n_in,
                        &mut yrow[r0..r0 + g],
                    );
                    r0 += g;
                }
            }
        };
        over_output_rows(&mut yt, m, parallel, 8, run);
    }
    Ok(untranspose(yt, m, n_out))
}

/// `out[i] = dot(widen(wrow), x[i * n .. (i + 1) * n])` for `i < out.len() <= 4`.
fn rows_dot(kernel: HalfKernel, kind: HalfKind, wrow: &[u8], x: &[f32], n: usize, out: &mut [f32]) {
    debug_assert!(wrow.len() == 2 * n && x.len() >= out.len() * n && out.len() <= 4);
    match kernel {
        #[cfg(target_arch = "x86_64")]
        HalfKernel::Avx512 => {
            // SAFETY: `available()` was checked by the caller; lengths as asserted above.
            unsafe {
                match out.len() {
                    1 => x86::dot1_avx512(kind, wrow, x, n, out),
                    2 => x86::dot_avx512::<2>(kind, wrow, x, n, out),
                    3 => x86::dot_avx512::<3>(kind, wrow, x, n, out),
                    _ => x86::dot_avx512::<4>(kind, wrow, x, n, out),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        HalfKernel::Avx2 => {
            // SAFETY: as above.
            unsafe {
                match out.len() {
                    1 => x86::dot_avx2::<1>(kind, wrow, x, n, out),
                    2 => x86::dot_avx2::<2>(kind, wrow, x, n, out),
                    3 => x86::dot_avx2::<3>(kind, wrow, x, n, out),
                    _ => x86::dot_avx2::<4>(kind, wrow, x, n, out),
                }
            }
        }
        _ => {
            for (i, o) in out.iter_mut().enumerate() {
                let xr = &x[i * n..(i + 1) * n];
                *o = wrow
                    .chunks_exact(2)
                    .zip(xr)
                    .map(|(b, &xv)| kind.to_f32(u16::from_le_bytes([b[0], b[1]])) * xv)
                    .sum();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! AVX2 and AVX-512 dot products. Contract of every function: the CPU has the features it
    //! enables; `wrow` holds `n` 16-bit values (`2 n` bytes); `x` holds at least `R * n`
    //! values (row `i` at `i * n`); `out.len() == R`.

    use super::HalfKind;
    use std::arch::x86_64::*;

    /// Sum of the 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    /// Scalar tail of `R` dots from element `i0`.
    #[inline]
    fn tail<const R: usize>(
        kind: HalfKind,
        wrow: &[u8],
        x: &[f32],
        n: usize,
        i0: usize,
        acc: &mut [f32; R],
    ) {
        for i in i0..n {
            let w = kind.to_f32(u16::from_le_bytes([wrow[2 * i], wrow[2 * i + 1]]));
            for (r, a) in acc.iter_mut().enumerate() {
                *a += w * x[r * n + i];
            }
        }
    }

    /// AVX2 + F16C: 8 weights widened per iteration.
    ///
    /// # Safety
    /// The module contract.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_avx2<const R: usize>(
        kind: HalfKind,
        wrow: &[u8],
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) {
        let mut acc = [_mm256_setzero_ps(); R];
        let full = n / 8 * 8;
        let wp = wrow.as_ptr();
        let xp = x.as_ptr();
        let mut i = 0;
        while i < full {
            // SAFETY: i + 8 <= n, so 16 bytes at wp + 2i and 8 floats per row are in bounds.
            unsafe {
                let h = _mm_loadu_si128(wp.add(2 * i).cast());
                let w = match kind {
                    HalfKind::Bf16 => {
                        _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h)))
                    }
                    HalfKind::F16 => _mm256_cvtph_ps(h),
                };
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(w, _mm256_loadu_ps(xp.add(r * n + i)), *a);
                }
            }
            i += 8;
        }
        let mut sums = [0f32; R];
        for (s, a) in sums.iter_mut().zip(acc) {
            *s = hsum256(a);
        }
        tail::<R>(kind, wrow, x, n, full, &mut sums);
        out.copy_from_slice(&sums);
    }

    /// One activation row (a decoder step), AVX-512F: 64 weights per iteration into four
    /// independent accumulators, so the FMA latency does not bound the read rate.
    ///
    /// # Safety
    /// The module contract with `R = 1`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn dot1_avx512(
        kind: HalfKind,
        wrow: &[u8],
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) {
        #[inline]
        #[target_feature(enable = "avx2,fma,f16c,avx512f")]
        unsafe fn load(kind: HalfKind, p: *const u8) -> __m512 {
            // SAFETY: 32 readable bytes at `p` (caller).
            let h = unsafe { _mm256_loadu_si256(p.cast()) };
            match kind {
                HalfKind::Bf16 => {
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
                }
                HalfKind::F16 => _mm512_cvtph_ps(h),
            }
        }
        let mut acc = [_mm512_setzero_ps(); 4];
        let wp = wrow.as_ptr();
        let xp = x.as_ptr();
        let full4 = n / 64 * 64;
        let mut i = 0;
        while i < full4 {
            for (u, a) in acc.iter_mut().enumerate() {
                let j = i + 16 * u;
                // SAFETY: j + 16 <= n: 32 weight bytes and 16 floats in bounds.
                unsafe {
                    *a = _mm512_fmadd_ps(load(kind, wp.add(2 * j)), _mm512_loadu_ps(xp.add(j)), *a);
                }
            }
            i += 64;
        }
        let full = n / 16 * 16;
        while i < full {
            // SAFETY: i + 16 <= n.
            unsafe {
                acc[0] = _mm512_fmadd_ps(
                    load(kind, wp.add(2 * i)),
                    _mm512_loadu_ps(xp.add(i)),
                    acc[0],
                );
            }
            i += 16;
        }
        let sum = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
        let mut s = [_mm512_reduce_add_ps(sum)];
        tail::<1>(kind, wrow, x, n, full, &mut s);
        out[0] = s[0];
    }

    /// AVX-512F: 16 weights widened per iteration.
    ///
    /// # Safety
    /// The module contract.
    #[target_feature(enable = "avx2,fma,f16c,avx512f")]
    pub(super) unsafe fn dot_avx512<const R: usize>(
        kind: HalfKind,
        wrow: &[u8],
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) {
        let mut acc = [_mm512_setzero_ps(); R];
        let full = n / 16 * 16;
        let wp = wrow.as_ptr();
        let xp = x.as_ptr();
        let mut i = 0;
        while i < full {
            // SAFETY: i + 16 <= n, so 32 bytes at wp + 2i and 16 floats per row are in bounds.
            unsafe {
                let h = _mm256_loadu_si256(wp.add(2 * i).cast());
                let w = match kind {
                    HalfKind::Bf16 => {
                        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
                    }
                    HalfKind::F16 => _mm512_cvtph_ps(h),
                };
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(xp.add(r * n + i)), *a);
                }
            }
            i += 16;
        }
        let mut sums = [0f32; R];
        for (s, a) in sums.iter_mut().zip(acc) {
            *s = _mm512_reduce_add_ps(a);
        }
        tail::<R>(kind, wrow, x, n, full, &mut sums);
        out.copy_from_slice(&sums);
    }
}

/// `x [..., n_in]` through a half-precision weight: `[..., n_out]` via [`half_matmul`] (the
/// values are copied out of and back into Burn tensors on `x`'s device).
///
/// # Errors
/// [`HalfMatmulError::InputLength`] when the last dimension of `x` is not `w.cols()`.
pub fn half_linear<const D: usize>(
    x: Tensor<D>,
    w: &HalfMatrix,
) -> Result<Tensor<D>, HalfMatmulError> {
    super::linear::on_host_rows(x, w.rows, |v, m| half_matmul(v, m, w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(kind: HalfKind, rows: usize, cols: usize, seed: u32) -> (HalfMatrix, Vec<f32>) {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        let vals: Vec<f32> = (0..rows * cols)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect();
        let m = HalfMatrix::from_f32(kind, rows, cols, &vals).unwrap();
        let widened = m.to_f32();
        (m, widened)
    }

    fn reference(x: &[f32], m: usize, w: &[f32], n_out: usize, n_in: usize) -> Vec<f32> {
        let mut y = vec![0f32; m * n_out];
        for i in 0..m {
            for j in 0..n_out {
                let mut s = 0f64;
                for k in 0..n_in {
                    s += f64::from(x[i * n_in + k]) * f64::from(w[j * n_in + k]);
                }
                y[i * n_out + j] = s as f32;
            }
        }
        y
    }

    #[test]
    fn bf16_widening_is_the_high_half() {
        assert_eq!(HalfKind::Bf16.to_f32(0x3F80), 1.0);
        assert_eq!(HalfKind::Bf16.to_f32(0xC000), -2.0);
        assert_eq!(HalfKind::F16.to_f32(0x3C00), 1.0);
    }

    #[test]
    fn every_kernel_and_schedule_matches_the_widened_product() {
        for kind in [HalfKind::Bf16, HalfKind::F16] {
            for &(m, n_out, n_in) in &[
                (1, 3, 5),
                (1, 7, 150),
                (1, 4, 64),
                (3, 17, 33),
                (5, 40, 100),
                (20, 9, 70),
            ] {
                let (w, wf) = matrix(kind, n_out, n_in, (m * 31 + n_in) as u32);
                let (_, x) = matrix(HalfKind::F16, m, n_in, 7);
                let want = reference(&x, m, &wf, n_out, n_in);
                for kernel in HalfKernel::ALL {
                    for gemm_min in [1, 1000] {
                        let got = half_matmul_with(&x, m, &w, kernel, gemm_min).unwrap();
                        for (g, r) in got.iter().zip(&want) {
                            assert!(
                                (g - r).abs() <= 1e-5 * (n_in as f32) + 1e-6,
                                "{kind:?} {kernel:?} gemm_min {gemm_min} [{m},{n_out},{n_in}]: {g} vs {r}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn wrong_lengths_are_errors() {
        assert!(matches!(
            HalfMatrix::new(HalfKind::Bf16, 2, 3, vec![0u8; 11]),
            Err(HalfMatmulError::ByteLength { expected: 12, .. })
        ));
        let (w, _) = matrix(HalfKind::Bf16, 2, 3, 1);
        assert!(half_matmul(&[0.0; 5], 2, &w).is_err());
        let mut row = [0f32; 3];
        assert!(w.row_into(2, &mut row).is_err());
        assert!(w.row_into(1, &mut row).is_ok());
    }
}
