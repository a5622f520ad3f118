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
    compute: HalfCompute,
    amx_min_rows: usize,
}

/// How the products of a [`HalfMatrix`] are computed ([`HalfMatrix::set_compute`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum HalfCompute {
    /// Weights widened to f32 and multiplied with the f32 activations: the f32 product of the
    /// stored weights up to the order of the sums (the default; the parity tests' mode).
    #[default]
    F32,
    /// Activations rounded to bf16 (round to nearest even) and multiplied with the BF16
    /// weights by AMX-BF16 tiles (`tdpbf16ps`, [`super::amx`]) for two rows or more where the
    /// CPU has them and the input width is a multiple of 32, else by AVX-512 BF16
    /// `vdpbf16ps`: each product of two bf16 values is exact in f32
    /// and summed in f32 (with denormal inputs and results flushed to zero, as the instruction
    /// does). This is how PyTorch's BF16 `nn.Linear` treats its input on CPU (oneDNN rounds
    /// the activations to bf16 and accumulates in f32). Each kernel sums a row's products in
    /// an order that does not depend on the other rows, so two schedules agree bit for bit
    /// where they take the same kernel (the batched and the 4-row streaming encoder on AMX);
    /// the AVX-512 and AMX sums differ only in f32 summation order. Only BF16 weights on a
    /// CPU with AVX512_BF16 ([`bf16_compute_available`]); elsewhere [`HalfCompute::F32`] is
    /// used.
    Bf16,
}

impl HalfCompute {
    /// `f32` or `bf16`.
    pub const fn name(self) -> &'static str {
        match self {
            HalfCompute::F32 => "f32",
            HalfCompute::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for HalfCompute {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" => Ok(HalfCompute::F32),
            "bf16" => Ok(HalfCompute::Bf16),
            _ => Err(format!("unknown compute precision {s:?} (f32, bf16)")),
        }
    }
}

/// Whether this CPU runs [`HalfCompute::Bf16`] products (AVX-512F/BW and AVX512_BF16).
pub fn bf16_compute_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f") && has!("avx512bw") && has!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
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
            compute: HalfCompute::F32,
            amx_min_rows: super::amx::AMX_MIN_ROWS,
        })
    }

    /// How products with this matrix are computed from now on (shared bytes untouched).
    pub fn set_compute(&mut self, compute: HalfCompute) {
        self.compute = compute;
    }

    /// Run [`HalfCompute::Bf16`] products on AMX tiles for every row count, one row
    /// included (`true`), or from [`super::amx::AMX_MIN_ROWS`] rows (`false`, the default:
    /// one-row tile products read memory slower). For a layer whose streaming schedule feeds
    /// it one row and whose batched schedule feeds it many (Voxtral's adapter), so that both
    /// schedules compute bit-identical products: under bf16 compute a last-bit difference can
    /// flip the bf16 rounding of the next layer's input and grow to 1e-2 on the logits.
    pub fn set_tiles_for_every_row(&mut self, every_row: bool) {
        self.amx_min_rows = if every_row {
            1
        } else {
            super::amx::AMX_MIN_ROWS
        };
    }

    /// The compute precision asked for ([`HalfMatrix::set_compute`]).
    pub fn compute(&self) -> HalfCompute {
        self.compute
    }

    /// Whether products really run in [`HalfCompute::Bf16`]: asked for, BF16 weights, and a
    /// CPU that has the instructions.
    pub fn computes_in_bf16(&self) -> bool {
        self.compute == HalfCompute::Bf16 && self.kind == HalfKind::Bf16 && bf16_compute_available()
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
    #[cfg(target_arch = "x86_64")]
    if w.computes_in_bf16() {
        if m >= w.amx_min_rows && super::amx::amx_takes(n_in) {
            return Ok(super::amx::bf16_products(
                x, m, &w.data, n_out, n_in, parallel,
            ));
        }
        bf16_products(x, m, w, parallel, &mut yt);
        return Ok(untranspose(yt, m, n_out));
    }
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

/// Which kernel computes a [`HalfCompute::Bf16`] product ([`bf16_matmul_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bf16Path {
    /// AVX-512 BF16 `vdpbf16ps` tiles of 4 x 4 rows.
    Avx512Bf16,
    /// AMX-BF16 `tdpbf16ps` tiles ([`super::amx`]); needs [`super::amx::amx_takes`].
    Amx,
}

/// `x [m, n_in] · bf16(w)ᵀ` -> `[m, n_out]` as [`HalfCompute::Bf16`] computes it, on a chosen
/// kernel (benchmarks and tests; [`half_matmul`] picks AMX when [`super::amx::amx_takes`]).
///
/// # Errors
/// [`HalfMatmulError::InputLength`] when `x.len() != m * w.cols()`; `None` inside `Ok` when
/// the weights are not BF16, the CPU lacks AVX512_BF16, or `path` is [`Bf16Path::Amx`] and
/// [`super::amx::amx_takes`] refuses the width.
pub fn bf16_matmul_on(
    x: &[f32],
    m: usize,
    w: &HalfMatrix,
    path: Bf16Path,
) -> Result<Option<Vec<f32>>, HalfMatmulError> {
    let (n_out, n_in) = (w.rows, w.cols);
    if m.checked_mul(n_in) != Some(x.len()) {
        return Err(HalfMatmulError::InputLength {
            m,
            n_in,
            found: x.len(),
        });
    }
    let amx = path == Bf16Path::Amx;
    if w.kind != HalfKind::Bf16
        || !bf16_compute_available()
        || (amx && !super::amx::amx_takes(n_in))
    {
        return Ok(None);
    }
    if m == 0 || n_out == 0 || n_in == 0 {
        return Ok(Some(vec![0.0; m * n_out]));
    }
    let parallel = n_out * n_in >= PARALLEL_MIN_WEIGHTS && rayon::current_num_threads() > 1;
    if amx {
        return Ok(Some(super::amx::bf16_products(
            x, m, &w.data, n_out, n_in, parallel,
        )));
    }
    #[cfg(target_arch = "x86_64")]
    {
        let mut yt = vec![0f32; n_out * m];
        bf16_products(x, m, w, parallel, &mut yt);
        Ok(Some(untranspose(yt, m, n_out)))
    }
    // Unreachable off x86_64: `bf16_compute_available()` is false there.
    #[cfg(not(target_arch = "x86_64"))]
    Ok(None)
}

/// Activation bytes (bf16, `rows * n_in * 2`) of one block run against a task's weight rows
/// before the next block ([`bf16_products`]): an L2-sized share.
#[cfg(target_arch = "x86_64")]
const BF16_ACT_BLOCK_BYTES: usize = 256 << 10;

/// Input columns per pass of [`bf16_products`]: a tile's 4 weight-row slices (2 kB) stay in
/// L1 while it meets every activation-row slice of the block (from L2).
#[cfg(target_arch = "x86_64")]
const BF16_KC: usize = 256;

/// `yt [n_out, m] = w · bf16(x)ᵀ` by [`HalfCompute::Bf16`]: the activations rounded to bf16
/// once, then tiles of up to 4 weight rows x 4 activation rows (16 accumulators, each weight
/// and activation vector loaded once per tile) over [`BF16_KC`] columns at a time (each
/// pass's sums added to the output in column order, the same order for any `m`), activation
/// rows in L2-sized blocks, output rows across Rayon threads when `parallel`.
#[cfg(target_arch = "x86_64")]
fn bf16_products(x: &[f32], m: usize, w: &HalfMatrix, parallel: bool, yt: &mut [f32]) {
    let n = w.cols;
    let xb: Vec<u16> = x
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    let act_block = (BF16_ACT_BLOCK_BYTES / (2 * BF16_KC.min(n))).max(4) / 4 * 4;
    let data: &[u8] = &w.data;
    let run = |j0: usize, chunk: &mut [f32]| {
        let rows = chunk.len() / m;
        let mut a0 = 0;
        while a0 < m {
            let a1 = (a0 + act_block).min(m);
            let mut jj = 0;
            while jj < rows {
                let jw = 4.min(rows - jj);
                // The tile's weight rows are read front to back (prefetch-friendly streams);
                // each 256-column slice stays in L1 while it meets every activation tile.
                let mut k0 = 0;
                while k0 < n {
                    let len = BF16_KC.min(n - k0);
                    let mut r = a0;
                    while r < a1 {
                        let rr = 4.min(a1 - r);
                        let mut tile = [[0f32; 4]; 4];
                        // SAFETY: `bf16_products` runs only when `computes_in_bf16()` (the CPU
                        // has AVX-512F/BW/BF16); weight rows j0 + jj .. + jw < n_out and
                        // activation rows r .. r + rr <= m each hold `n` values (`data` is
                        // `n_out * n * 2` bytes, `xb` is `m * n` values), of which columns
                        // k0 .. k0 + len <= n are read.
                        unsafe {
                            x86::bf16_tile(
                                data.as_ptr().add(((j0 + jj) * n + k0) * 2).cast(),
                                jw,
                                xb.as_ptr().add(r * n + k0),
                                rr,
                                n,
                                len,
                                &mut tile,
                            );
                        }
                        for (t, trow) in tile.iter().enumerate().take(jw) {
                            let y = &mut chunk[(jj + t) * m + r..(jj + t) * m + r + rr];
                            if k0 == 0 {
                                y.copy_from_slice(&trow[..rr]);
                            } else {
                                for (o, v) in y.iter_mut().zip(trow) {
                                    *o += v;
                                }
                            }
                        }
                        r += rr;
                    }
                    k0 += len;
                }
                jj += jw;
            }
            a0 = a1;
        }
    };
    over_output_rows(yt, m, parallel, 8, run);
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

    /// `tile[t][i] = dot(w row t, x row i)` over `len` columns, for `t < jw <= 4`,
    /// `i < rr <= 4`, rows `stride` bf16 values apart (weights from `w`, activations from
    /// `x`), by `vdpbf16ps`: 32 values per step, the last `len % 32` by masked loads.
    ///
    /// # Safety
    /// AVX-512F/BW/BF16 available; `len` values readable at `w + t * stride` (`t < jw`) and
    /// at `x + i * stride` (`i < rr`).
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn bf16_tile(
        w: *const u16,
        jw: usize,
        x: *const u16,
        rr: usize,
        stride: usize,
        len: usize,
        tile: &mut [[f32; 4]; 4],
    ) {
        macro_rules! tile {
            ($JW:literal, $R:literal) => {
                // SAFETY: the caller's contract, with jw == $JW and rr == $R.
                unsafe { bf16_tile_n::<$JW, $R>(w, x, stride, len, tile) }
            };
        }
        match (jw, rr) {
            (1, 1) => tile!(1, 1),
            (1, 2) => tile!(1, 2),
            (1, 3) => tile!(1, 3),
            (1, 4) => tile!(1, 4),
            (2, 1) => tile!(2, 1),
            (2, 2) => tile!(2, 2),
            (2, 3) => tile!(2, 3),
            (2, 4) => tile!(2, 4),
            (3, 1) => tile!(3, 1),
            (3, 2) => tile!(3, 2),
            (3, 3) => tile!(3, 3),
            (3, 4) => tile!(3, 4),
            (4, 1) => tile!(4, 1),
            (4, 2) => tile!(4, 2),
            (4, 3) => tile!(4, 3),
            (4, 4) => tile!(4, 4),
            _ => unreachable!("tiles are at most 4 x 4"),
        }
    }

    /// [`bf16_tile`] with its sizes as constants.
    ///
    /// # Safety
    /// As [`bf16_tile`] with `jw = JW`, `rr = R`.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    #[expect(
        clippy::needless_range_loop,
        reason = "acc[t][i] crosses two register arrays: the indices say which tile entry"
    )]
    unsafe fn bf16_tile_n<const JW: usize, const R: usize>(
        w: *const u16,
        x: *const u16,
        stride: usize,
        n: usize,
        tile: &mut [[f32; 4]; 4],
    ) {
        let mut acc = [[_mm512_setzero_ps(); R]; JW];
        let mut k = 0;
        // SAFETY (both loops): k + 32 <= n, or the mask covers k .. n only: every load reads
        // values of rows the caller guarantees; bf16 pairs reinterpret 512-bit integer vectors.
        while k + 32 <= n {
            unsafe {
                let mut wv = [_mm512_setzero_si512(); JW];
                for (t, v) in wv.iter_mut().enumerate() {
                    *v = _mm512_loadu_si512(w.add(t * stride + k).cast());
                }
                for i in 0..R {
                    let xv: __m512bh =
                        std::mem::transmute(_mm512_loadu_si512(x.add(i * stride + k).cast()));
                    for t in 0..JW {
                        acc[t][i] = _mm512_dpbf16_ps(
                            acc[t][i],
                            xv,
                            std::mem::transmute::<__m512i, __m512bh>(wv[t]),
                        );
                    }
                }
            }
            k += 32;
        }
        if k < n {
            let mask: __mmask32 = (1u32 << (n - k)) - 1;
            unsafe {
                let mut wv = [_mm512_setzero_si512(); JW];
                for (t, v) in wv.iter_mut().enumerate() {
                    *v = _mm512_maskz_loadu_epi16(mask, w.add(t * stride + k).cast());
                }
                for i in 0..R {
                    let xv: __m512bh = std::mem::transmute(_mm512_maskz_loadu_epi16(
                        mask,
                        x.add(i * stride + k).cast(),
                    ));
                    for t in 0..JW {
                        acc[t][i] = _mm512_dpbf16_ps(
                            acc[t][i],
                            xv,
                            std::mem::transmute::<__m512i, __m512bh>(wv[t]),
                        );
                    }
                }
            }
        }
        for t in 0..JW {
            for i in 0..R {
                tile[t][i] = _mm512_reduce_add_ps(acc[t][i]);
            }
        }
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

    /// `HalfCompute::Bf16`: the f64 product of bf16-rounded activations and the weights,
    /// within the f32 summation bound `gamma(n) * sum |x_b| |w|` (each bf16 x bf16 product is
    /// exact in f32), over tiles of every size (rows not multiples of 4) and widths with and
    /// without a masked tail; F16 weights fall back to the f32 path.
    #[test]
    fn bf16_compute_is_the_product_of_rounded_activations() {
        if !bf16_compute_available() {
            eprintln!(
                "no AVX512_BF16 on this CPU: HalfCompute::Bf16 falls back to F32 (checked below)"
            );
        }
        for &(m, n_out, n_in) in &[
            (1, 1, 32),
            (1, 9, 100),
            (3, 5, 64),
            (6, 7, 47),
            (9, 13, 300),
            (17, 70, 96),
        ] {
            let (mut w, wf) = matrix(HalfKind::Bf16, n_out, n_in, (m * 7 + n_in) as u32);
            let (_, x) = matrix(HalfKind::F16, m, n_in, 11);
            w.set_compute(HalfCompute::Bf16);
            assert_eq!(w.computes_in_bf16(), bf16_compute_available());
            let got = half_matmul(&x, m, &w).unwrap();
            let xr: Vec<f32> = if w.computes_in_bf16() {
                x.iter()
                    .map(|&v| half::bf16::from_f32(v).to_f32())
                    .collect()
            } else {
                x.clone()
            };
            let u = f64::from(f32::EPSILON) / 2.0;
            let gamma = (n_in as f64 + 1.0) * u / (1.0 - (n_in as f64 + 1.0) * u);
            for i in 0..m {
                for j in 0..n_out {
                    let (mut s, mut a) = (0f64, 0f64);
                    for k in 0..n_in {
                        let p = f64::from(xr[i * n_in + k]) * f64::from(wf[j * n_in + k]);
                        s += p;
                        a += p.abs();
                    }
                    let g = f64::from(got[i * n_out + j]);
                    assert!(
                        (g - s).abs() <= gamma * a + 1e-30,
                        "[{m},{n_out},{n_in}] at ({i},{j}): {g} vs {s} (bound {})",
                        gamma * a
                    );
                }
            }
            if bf16_compute_available() {
                // Rounding the activations is visible: the f32 path differs somewhere.
                let mut wf32 = w.clone();
                wf32.set_compute(HalfCompute::F32);
                assert_ne!(
                    half_matmul(&x, m, &wf32).unwrap(),
                    got,
                    "[{m},{n_out},{n_in}]"
                );
            }
        }
        let (mut w16, _) = matrix(HalfKind::F16, 5, 64, 3);
        w16.set_compute(HalfCompute::Bf16);
        assert!(!w16.computes_in_bf16());
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
