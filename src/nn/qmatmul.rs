//! Matrix products with weights packed in GGUF's Q8_0 and Q4_0 block layouts, read in place.
//!
//! Why: a decoder step reads every weight once, so its time is bounded by the bytes read.
//! Q8_0 reads 34 bytes per 32 weights (1.06 bytes per weight, against 4 for f32), Q4_0 18
//! (0.56). Burn 0.22.1 stores its own quantized tensors unpacked and dequantizes the whole
//! weight before an f32 matmul (`../shared/docs/quantization.md`), which keeps neither gain.
//!
//! Mirrors ggml (llama.cpp `ggml/src/ggml-cpu`): `block_q8_0` / `block_q4_0` for the weights,
//! and, as `ggml_vec_dot_q8_0_q8_0` / `ggml_vec_dot_q4_0_q8_0` do, each activation row
//! quantized to 8-bit blocks of 32 on the fly, integer dot products per block, and one f32
//! multiply-add per block by `d_w * d_x`. Two departures from ggml: the activation scale `d_x`
//! is kept in f32 (ggml rounds it to f16), and Q4_0 is computed as
//! `sum(nibble * q_x) - 8 * sum(q_x)` with the unsigned nibbles fed straight to the
//! unsigned-times-signed instructions (the per-block `sum(q_x)` is computed once per
//! activation row).
//!
//! Kernels ([`QKernel`]), chosen at run time by [`QKernel::detect`]: AVX-512 VNNI + VBMI
//! (groups of four blocks: quants and scales gathered by byte shuffles from two loads,
//! `vpdpbusd` into per-block lanes, activations laid out once per product to match), AVX2
//! (`vpmaddubsw` with the sign trick for Q8_0), a portable scalar one, and AMX-INT8 tiles for
//! many rows (`super::amx`). All give the same integer block sums; only the order of
//! the f32 sums over blocks differs. Output rows are split across Rayon threads when the
//! weight has at least [`PARALLEL_MIN_WEIGHTS`] elements.

use burn::tensor::Tensor;
use bytes::Bytes;
use rayon::prelude::*;
use std::borrow::Cow;

/// Weights per block in both formats.
pub const BLOCK: usize = 32;

/// Smallest weight (`rows * cols` elements) whose output rows are split across Rayon threads;
/// below it the hand-off costs more than the product.
pub const PARALLEL_MIN_WEIGHTS: usize = 1 << 16;

/// Output rows computed together against one activation-row group in one task: a few
/// thousand bytes of weights per task at least.
const ROWS_PER_TASK_MIN: usize = 8;

/// Activation rows computed together against one weight row (each weight block loaded once
/// for all of them).
const X_ROWS: usize = 4;

/// Weight rows run together against each group of [`X_ROWS`] activation rows (a few tens of
/// kB of packed weights: they stay in L2 while the group stays in L1).
const W_ROWS: usize = 16;

/// Quantized activation bytes (`rows * n_in`) run against a task's weight rows before the
/// next rows are taken ([`qmatmul_with`]'s loop order for many rows).
const ACT_BLOCK_BYTES: usize = 256 << 10;

/// Blocks per group of the AVX-512 kernel (a 512-bit register of Q4_0 nibbles, two of Q8_0
/// quants).
const GROUP: usize = 4;

/// Activation rows laid out for the AVX-512 kernel, groups of [`GROUP`] blocks of each row
/// (`ng = n / 128` groups per row; the `nb % 4` tail blocks stay in [`QuantizedRows`]):
/// * Q4_0: `x [m, ng, 128]` bytes, per group the low halves (elements 0..16) of its four
///   blocks, then the high halves (16..32), matching the nibble order of the weights;
///   `init [m, ng, 16]` i32 with `-8 * sum(q_x)` of block `k` in lane `4k` (the lanes of
///   `vpdpbusd` that block's products land in), zero elsewhere; `d [m, ng, 16]` with block
///   `k`'s scale in lanes `4k..4k+4`.
/// * Q8_0: `x [m, ng, 128]` bytes `q + 128` (unsigned, for `vpdpbusd`'s unsigned operand);
///   `d [m, ng, 32]` with block `k`'s scale in lanes `8k..8k+8`.
#[derive(Debug)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct GroupedRows {
    ng: usize,
    x: Vec<u8>,
    init: Vec<i32>,
    d: Vec<f32>,
}

impl GroupedRows {
    fn new(kind: QuantKind, acts: &QuantizedRows) -> Self {
        let nb = acts.n / BLOCK;
        let ng = nb / GROUP;
        let m = acts.m;
        let dl = match kind {
            QuantKind::Q4_0 => 16,
            QuantKind::Q8_0 => 32,
        };
        let mut x = vec![0u8; m * ng * GROUP * BLOCK];
        let mut init = vec![
            0i32;
            if kind == QuantKind::Q4_0 {
                m * ng * 16
            } else {
                0
            }
        ];
        let mut d = vec![0f32; m * ng * dl];
        for r in 0..m {
            for g in 0..ng {
                let base = r * ng + g;
                let xg = &mut x[base * 128..(base + 1) * 128];
                for k in 0..GROUP {
                    let bi = r * nb + g * GROUP + k;
                    let q = &acts.q[bi * BLOCK..(bi + 1) * BLOCK];
                    match kind {
                        QuantKind::Q4_0 => {
                            for j in 0..16 {
                                xg[16 * k + j] = q[j] as u8;
                                xg[64 + 16 * k + j] = q[16 + j] as u8;
                            }
                            init[base * 16 + 4 * k] = -8 * acts.sum[bi];
                            d[base * 16 + 4 * k..base * 16 + 4 * k + 4].fill(acts.d[bi]);
                        }
                        QuantKind::Q8_0 => {
                            for j in 0..BLOCK {
                                xg[32 * k + j] = (q[j] as u8) ^ 0x80;
                            }
                            d[base * 32 + 8 * k..base * 32 + 8 * k + 8].fill(acts.d[bi]);
                        }
                    }
                }
            }
        }
        GroupedRows { ng, x, init, d }
    }
}

/// A GGUF block format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QuantKind {
    /// `block_q8_0`: f16 scale `d` (2 bytes, little-endian), 32 x i8 `q`; `w = d * q`.
    /// 34 bytes per 32 weights.
    Q8_0,
    /// `block_q4_0`: f16 scale `d`, 16 bytes of nibbles; element `i < 16` is the low nibble
    /// of byte `i`, element `i + 16` its high nibble; `w = d * (nibble - 8)`. 18 bytes per 32
    /// weights.
    Q4_0,
}

impl QuantKind {
    /// Bytes of one block of [`BLOCK`] weights.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantKind::Q8_0 => 2 + BLOCK,
            QuantKind::Q4_0 => 2 + BLOCK / 2,
        }
    }

    /// The GGUF tensor type of this block format.
    pub const fn ggml_type(self) -> crate::quant::GgmlType {
        match self {
            QuantKind::Q8_0 => crate::quant::GgmlType::Q8_0,
            QuantKind::Q4_0 => crate::quant::GgmlType::Q4_0,
        }
    }

    /// The GGUF name (`q8_0`, `q4_0`).
    pub const fn name(self) -> &'static str {
        match self {
            QuantKind::Q8_0 => "q8_0",
            QuantKind::Q4_0 => "q4_0",
        }
    }
}

impl std::str::FromStr for QuantKind {
    type Err = QMatmulError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "q8_0" => Ok(QuantKind::Q8_0),
            "q4_0" => Ok(QuantKind::Q4_0),
            _ => Err(QMatmulError::UnknownKind(s.to_string())),
        }
    }
}

/// Why a packed matrix or product was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QMatmulError {
    /// The input width is not a whole number of blocks.
    #[error("packed matrix: {cols} columns is not a multiple of {BLOCK}")]
    Cols {
        /// The width given.
        cols: usize,
    },
    /// The byte buffer does not hold exactly `rows * cols / 32` blocks.
    #[error(
        "packed {} matrix [{rows}, {cols}]: expected {expected} bytes, found {found}",
        kind.name()
    )]
    ByteLength {
        /// Block format.
        kind: QuantKind,
        /// Output rows.
        rows: usize,
        /// Input columns.
        cols: usize,
        /// `rows * cols / 32 * block_bytes`.
        expected: usize,
        /// The buffer's length.
        found: usize,
    },
    /// The activations do not hold `m * cols` values.
    #[error("qmatmul: x holds {found} values, expected m * n_in = {m} * {n_in}")]
    InputLength {
        /// Activation rows given.
        m: usize,
        /// The weight's input width.
        n_in: usize,
        /// `x.len()`.
        found: usize,
    },
    /// The requested kernel needs CPU features this machine lacks.
    #[error("qmatmul: kernel {0:?} is not available on this CPU")]
    KernelUnavailable(QKernel),
    /// Not `q8_0` or `q4_0`.
    #[error("unknown quantization kind {0:?} (q8_0, q4_0)")]
    UnknownKind(String),
}

/// Bytes of a packed weight: borrowed, or shared ([`Bytes`]: an owned buffer or a slice of a
/// memory-mapped file kept alive by the handle; cloning does not copy).
#[derive(Debug, Clone)]
pub enum WeightBytes<'a> {
    /// Borrowed for `'a`.
    Borrowed(&'a [u8]),
    /// Shared, reference-counted.
    Shared(Bytes),
}

impl std::ops::Deref for WeightBytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            WeightBytes::Borrowed(b) => b,
            WeightBytes::Shared(b) => b,
        }
    }
}

impl<'a> From<&'a [u8]> for WeightBytes<'a> {
    fn from(b: &'a [u8]) -> Self {
        WeightBytes::Borrowed(b)
    }
}

impl From<Vec<u8>> for WeightBytes<'_> {
    fn from(b: Vec<u8>) -> Self {
        WeightBytes::Shared(Bytes::from(b))
    }
}

impl From<Bytes> for WeightBytes<'_> {
    fn from(b: Bytes) -> Self {
        WeightBytes::Shared(b)
    }
}

impl<'a> From<Cow<'a, [u8]>> for WeightBytes<'a> {
    fn from(b: Cow<'a, [u8]>) -> Self {
        match b {
            Cow::Borrowed(b) => WeightBytes::Borrowed(b),
            Cow::Owned(v) => v.into(),
        }
    }
}

/// A `[rows, cols]` weight (`rows` = outputs `n_out`, `cols` = inputs `n_in`) packed row-major
/// in GGUF blocks: output row `j` is the `cols / 32` consecutive blocks starting at byte
/// `j * cols / 32 * kind.block_bytes()`, as a GGUF tensor of shape `[n_in, n_out]` (ggml's
/// `ne0 = n_in`) stores a PyTorch `nn.Linear` weight `[n_out, n_in]`. The bytes are borrowed
/// (a memory-mapped file) or owned; no alignment is needed.
#[derive(Debug, Clone)]
pub struct PackedMatrix<'a> {
    kind: QuantKind,
    rows: usize,
    cols: usize,
    data: WeightBytes<'a>,
}

impl<'a> PackedMatrix<'a> {
    /// Wrap `data` as a `[rows, cols]` matrix of `kind` blocks.
    ///
    /// # Errors
    /// [`QMatmulError::Cols`] when `cols` is not a multiple of 32,
    /// [`QMatmulError::ByteLength`] when `data` is not exactly `rows * cols / 32` blocks.
    pub fn new(
        kind: QuantKind,
        rows: usize,
        cols: usize,
        data: impl Into<WeightBytes<'a>>,
    ) -> Result<Self, QMatmulError> {
        let data = data.into();
        if !cols.is_multiple_of(BLOCK) {
            return Err(QMatmulError::Cols { cols });
        }
        let expected = rows
            .checked_mul(cols / BLOCK)
            .and_then(|b| b.checked_mul(kind.block_bytes()));
        if expected != Some(data.len()) {
            return Err(QMatmulError::ByteLength {
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

    /// Block format.
    pub fn kind(&self) -> QuantKind {
        self.kind
    }

    /// Output rows (`n_out`).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input columns (`n_in`, a multiple of 32).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The packed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }

    /// Bytes of one output row.
    pub fn row_bytes(&self) -> usize {
        self.cols / BLOCK * self.kind.block_bytes()
    }

    /// The matrix as f32, `[rows, cols]` row-major (`w = d * q`, `d * (nibble - 8)`).
    pub fn dequantize(&self) -> Vec<f32> {
        Self::dequantize_blocks(self.kind, &self.data)
    }

    /// Row `j` as f32 (`cols` values; an embedding lookup), `None` when `j >= rows`.
    pub fn dequantize_row(&self, j: usize) -> Option<Vec<f32>> {
        (j < self.rows).then(|| {
            let rb = self.row_bytes();
            Self::dequantize_blocks(self.kind, &self.data[j * rb..(j + 1) * rb])
        })
    }

    fn dequantize_blocks(kind: QuantKind, data: &[u8]) -> Vec<f32> {
        let mut out = Vec::with_capacity(data.len() / kind.block_bytes() * BLOCK);
        for blk in data.chunks_exact(kind.block_bytes()) {
            let d = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
            match kind {
                QuantKind::Q8_0 => out.extend(blk[2..].iter().map(|&q| d * f32::from(q as i8))),
                QuantKind::Q4_0 => {
                    let nib = &blk[2..];
                    out.extend(nib.iter().map(|&b| d * (f32::from(b & 0x0F) - 8.0)));
                    out.extend(nib.iter().map(|&b| d * (f32::from(b >> 4) - 8.0)));
                }
            }
        }
        out
    }
}

/// Activation rows quantized to 8-bit blocks ([`quantize_activations`]).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantizedRows {
    /// Rows.
    pub m: usize,
    /// Values per row (a multiple of 32).
    pub n: usize,
    /// `[m, n]` quantized values, each in `-127..=127`.
    pub q: Vec<i8>,
    /// `[m, n / 32]` block scales: `x ~= d * q`.
    pub d: Vec<f32>,
    /// `[m, n / 32]` sums of each block's `q` (for Q4_0's `- 8` offset).
    pub sum: Vec<i32>,
}

/// Quantize `x [m, n]` (`n` a multiple of 32) to 8-bit blocks as ggml's
/// `quantize_row_q8_0_ref`, except that the scale stays f32: per block of 32,
/// `d = max|x| / 127`, `q = round(x * (1 / d))` (ties away from zero; `q = 0` when `d = 0`),
/// so `|x - d * q| <= d / 2` up to f32 rounding of `d` and `1 / d`.
///
/// Rows are split across the Rayon threads from [`PARALLEL_MIN_WEIGHTS`] values (a batched
/// encoder's activations); every block is quantized alone, so the split changes nothing.
///
/// # Panics
/// When `x.len() != m * n` or `n` is not a multiple of 32 (the caller checked both).
pub fn quantize_activations(x: &[f32], m: usize, n: usize) -> QuantizedRows {
    assert!(n.is_multiple_of(BLOCK) && x.len() == m * n);
    let nb = m * n / BLOCK;
    let mut q = vec![0i8; m * n];
    let mut d = vec![0f32; nb];
    let mut sum = vec![0i32; nb];
    let threads = rayon::current_num_threads();
    if m * n >= PARALLEL_MIN_WEIGHTS && m > 1 && threads > 1 {
        let rows = m.div_ceil(2 * threads);
        let bpr = n / BLOCK;
        x.par_chunks(rows * n)
            .zip(q.par_chunks_mut(rows * n))
            .zip(d.par_chunks_mut(rows * bpr))
            .zip(sum.par_chunks_mut(rows * bpr))
            .for_each(|(((x, q), d), s)| quantize_blocks(x, q, d, s));
    } else {
        quantize_blocks(x, &mut q, &mut d, &mut sum);
    }
    QuantizedRows { m, n, q, d, sum }
}

/// [`quantize_activations`]' blocks of `x` into `q`, `d`, `sum` (one block of 32 values
/// each), with AVX-512F when the CPU has it.
fn quantize_blocks(x: &[f32], q: &mut [i8], d: &mut [f32], sum: &mut [i32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked above).
        return unsafe { quantize_blocks_avx512(x, q, d, sum) };
    }
    quantize_blocks_portable(x, q, d, sum);
}

/// [`quantize_blocks`] compiled for AVX-512F: the same code, so the same values
/// (`f32::round` lowers to an exact vector sequence instead of a `roundf` call per value).
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn quantize_blocks_avx512(x: &[f32], q: &mut [i8], d: &mut [f32], sum: &mut [i32]) {
    quantize_blocks_portable(x, q, d, sum);
}

/// [`quantize_blocks`]' body (inlined into each caller, so it is compiled per target feature
/// set).
#[inline(always)]
fn quantize_blocks_portable(x: &[f32], q: &mut [i8], d: &mut [f32], sum: &mut [i32]) {
    for (((xb, qb), db), sb) in x
        .chunks_exact(BLOCK)
        .zip(q.chunks_exact_mut(BLOCK))
        .zip(d.iter_mut())
        .zip(sum.iter_mut())
    {
        let amax = xb.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inv = if scale == 0.0 { 0.0 } else { 1.0 / scale };
        let mut s = 0i32;
        for (qi, &xi) in qb.iter_mut().zip(xb) {
            // |xi * inv| <= 127 (1 + 2^-22): rounds to at most 127 in magnitude. A NaN
            // becomes 0 (`as` saturates and maps NaN to 0).
            let v = (xi * inv).round() as i8;
            *qi = v;
            s += i32::from(v);
        }
        *db = scale;
        *sb = s;
    }
}

/// A product kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QKernel {
    /// Portable Rust, any CPU.
    Scalar,
    /// AVX2 + FMA + F16C (x86-64).
    Avx2,
    /// AVX-512 F/BW/VL with VNNI (`vpdpbusd`) and VBMI (`vpermb`, `vpermt2b`: a group of
    /// four blocks' quants and scales gathered with one byte shuffle each), plus the AVX2 set
    /// for the tail blocks.
    Avx512Vnni,
    /// [`super::qgemm::q_products`]' register tiles (32 activation rows x 4 weight rows) from
    /// [`super::qgemm::VNNI_GEMM_MIN_ROWS`] activation rows (a batched encoder, the prompt
    /// prefill, Whisper's encoder), [`QKernel::Avx512Vnni`] below: the batched kernel of CPUs
    /// with AVX-512 VNNI but no AMX.
    Avx512VnniGemm,
    /// AMX-INT8 tiles from [`super::amx::AMX_INT8_MIN_ROWS`] activation rows (a batched
    /// encoder, the prompt prefill; [`super::amx::q_products`]: `tdpbssd` block sums, then the
    /// f32 scaling on AVX-512), [`QKernel::Avx512Vnni`] below (decoder steps, the 8-frame
    /// streaming encoder).
    AmxInt8,
}

impl QKernel {
    /// Every kernel, fastest last.
    pub const ALL: [QKernel; 5] = [
        QKernel::Scalar,
        QKernel::Avx2,
        QKernel::Avx512Vnni,
        QKernel::Avx512VnniGemm,
        QKernel::AmxInt8,
    ];

    /// Whether this CPU can run the kernel (checked at run time; cached by std).
    pub fn available(self) -> bool {
        match self {
            QKernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            QKernel::Avx2 => {
                use std::arch::is_x86_feature_detected as has;
                has!("avx2") && has!("fma") && has!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            QKernel::Avx512Vnni => {
                use std::arch::is_x86_feature_detected as has;
                QKernel::Avx2.available()
                    && has!("avx512f")
                    && has!("avx512bw")
                    && has!("avx512vl")
                    && has!("avx512vnni")
                    && has!("avx512vbmi")
            }
            QKernel::Avx512VnniGemm => QKernel::Avx512Vnni.available() && super::qgemm::available(),
            QKernel::AmxInt8 => QKernel::Avx512Vnni.available() && super::amx::amx_int8_available(),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The fastest kernel this CPU can run.
    pub fn detect() -> QKernel {
        QKernel::ALL
            .into_iter()
            .rev()
            .find(|k| k.available())
            .unwrap_or(QKernel::Scalar)
    }
}

/// `x [m, n_in] · wᵀ` for `w` packed `[n_out, n_in]` -> `[m, n_out]` row-major (PyTorch
/// `F.linear(x, w)` without bias), with the fastest kernel this CPU has ([`QKernel::detect`]).
/// Activations are quantized per block of 32 first ([`quantize_activations`]), so the result
/// is the exact product of the dequantized weights and the rounded activations up to f32
/// rounding of the per-block sums (`tests/qmatmul.rs` states the bounds).
///
/// # Errors
/// [`QMatmulError::InputLength`] when `x.len() != m * w.cols()`.
pub fn qmatmul(x: &[f32], m: usize, w: &PackedMatrix<'_>) -> Result<Vec<f32>, QMatmulError> {
    qmatmul_with(x, m, w, QKernel::detect())
}

/// [`qmatmul`] with a chosen kernel (for tests and benchmarks).
///
/// # Errors
/// [`QMatmulError::InputLength`] when `x.len() != m * w.cols()`,
/// [`QMatmulError::KernelUnavailable`] when the CPU lacks the kernel's features.
pub fn qmatmul_with(
    x: &[f32],
    m: usize,
    w: &PackedMatrix<'_>,
    kernel: QKernel,
) -> Result<Vec<f32>, QMatmulError> {
    let n_in = w.cols;
    if m.checked_mul(n_in) != Some(x.len()) {
        return Err(QMatmulError::InputLength {
            m,
            n_in,
            found: x.len(),
        });
    }
    if !kernel.available() {
        return Err(QMatmulError::KernelUnavailable(kernel));
    }
    let n_out = w.rows;
    if m == 0 || n_out == 0 {
        return Ok(vec![0.0; m * n_out]);
    }
    let acts = quantize_activations(x, m, n_in);
    let parallel = n_out * n_in >= PARALLEL_MIN_WEIGHTS;
    let kernel = if kernel == QKernel::AmxInt8 {
        if m >= super::amx::AMX_INT8_MIN_ROWS {
            return Ok(super::amx::q_products(
                w.kind, &w.data, n_out, &acts, parallel,
            ));
        }
        QKernel::Avx512Vnni
    } else if kernel == QKernel::Avx512VnniGemm {
        if m >= super::qgemm::VNNI_GEMM_MIN_ROWS {
            return Ok(super::qgemm::q_products(
                w.kind, &w.data, n_out, &acts, parallel,
            ));
        }
        QKernel::Avx512Vnni
    } else {
        kernel
    };
    let grouped = (kernel == QKernel::Avx512Vnni).then(|| GroupedRows::new(w.kind, &acts));
    // Output transposed, `[n_out, m]`: each task owns a contiguous range of weight rows.
    let mut yt = vec![0f32; n_out * m];
    let row_bytes = w.row_bytes();
    // Activation rows in blocks of about `ACT_BLOCK_BYTES` (an L2-sized share), each block
    // against every weight row of the task: a weight row (a few kB, in L1) serves a whole
    // block, and the block stays in L2 across the task's rows.
    let act_block = (ACT_BLOCK_BYTES / n_in).max(X_ROWS) / X_ROWS * X_ROWS;
    let run = |j0: usize, chunk: &mut [f32]| {
        let rows = chunk.len() / m;
        let mut a0 = 0;
        while a0 < m {
            let a1 = (a0 + act_block).min(m);
            // Weight rows in blocks of `W_ROWS` (in L2), each X_ROWS group of activation rows
            // (in L1) against every row of the block.
            let mut jb = 0;
            while jb < rows {
                let je = (jb + W_ROWS).min(rows);
                let mut r0 = a0;
                while r0 < a1 {
                    let g = X_ROWS.min(a1 - r0);
                    for jj in jb..je {
                        let j = j0 + jj;
                        let wrow = &w.data[j * row_bytes..(j + 1) * row_bytes];
                        row_dot(
                            kernel,
                            w.kind,
                            wrow,
                            &acts,
                            grouped.as_ref(),
                            r0,
                            &mut chunk[jj * m + r0..jj * m + r0 + g],
                        );
                    }
                    r0 += g;
                }
                jb = je;
            }
            a0 = a1;
        }
    };
    over_output_rows(&mut yt, m, parallel, ROWS_PER_TASK_MIN, run);
    Ok(untranspose(yt, m, n_out))
}

/// `run(j0, chunk)` over `yt [n_out, m]` (output rows first) in chunks of whole output rows,
/// `j0` the chunk's first row: on the Rayon threads, about four tasks per thread of at least
/// `min_rows` rows each, when `parallel` and there is more than one thread; else in one call.
pub(crate) fn over_output_rows(
    yt: &mut [f32],
    m: usize,
    parallel: bool,
    min_rows: usize,
    run: impl Fn(usize, &mut [f32]) + Sync,
) {
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 {
        let n_out = yt.len() / m.max(1);
        let rows_per_task = n_out.div_ceil(threads * 4).max(min_rows);
        #[cfg(not(target_arch = "wasm32"))]
        if m <= SPIN_POOL_MAX_ROWS {
            let tasks = n_out.div_ceil(rows_per_task);
            let out = SharedOut(yt.as_mut_ptr(), yt.len());
            super::spin_pool::for_each_index(tasks, &|t| {
                let j0 = t * rows_per_task;
                let rows = rows_per_task.min(n_out - j0);
                // SAFETY: task t alone gets output rows j0 .. j0 + rows (disjoint ranges
                // inside `yt`, which outlives the call).
                let chunk = unsafe { out.rows(j0 * m, rows * m) };
                run(j0, chunk);
            });
            return;
        }
        yt.par_chunks_mut(rows_per_task * m)
            .enumerate()
            .for_each(|(t, chunk)| run(t * rows_per_task, chunk));
    } else {
        run(0, yt);
    }
}

/// Products of at most this many activation rows (decoder steps) are split over
/// [`super::spin_pool`], larger ones (prefill, batched encoder) over Rayon. `voxtrace bench
/// qmatmul --rotate N` compares the two.
#[cfg(not(target_arch = "wasm32"))]
pub(crate) const SPIN_POOL_MAX_ROWS: usize = 8;

/// `yt`'s buffer shared by tasks that each write their own disjoint range.
#[cfg(not(target_arch = "wasm32"))]
struct SharedOut(*mut f32, usize);
// SAFETY: tasks write disjoint ranges through it (see `rows`).
#[cfg(not(target_arch = "wasm32"))]
unsafe impl Sync for SharedOut {}

#[cfg(not(target_arch = "wasm32"))]
impl SharedOut {
    /// Elements `start .. start + len`.
    ///
    /// # Safety
    /// In bounds, and no other live reference to them.
    #[allow(clippy::mut_from_ref)]
    unsafe fn rows(&self, start: usize, len: usize) -> &mut [f32] {
        debug_assert!(start + len <= self.1);
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// `yt [n_out, m]` as the row-major product `[m, n_out]` (no copy when `m == 1`): a blocked
/// transpose (32 x 32 tiles, so reads and writes stay within a few cache lines each), bands
/// of 32 output rows on the Rayon threads when the product is large.
pub(crate) fn untranspose(yt: Vec<f32>, m: usize, n_out: usize) -> Vec<f32> {
    const T: usize = 32;
    if m == 1 || n_out == 0 {
        return yt;
    }
    let mut y = vec![0f32; m * n_out];
    let band = |bi: usize, ych: &mut [f32]| {
        let i0 = bi * T;
        let rows = ych.len() / n_out;
        for j0 in (0..n_out).step_by(T) {
            for j in j0..(j0 + T).min(n_out) {
                let col = &yt[j * m + i0..j * m + i0 + rows];
                for (ii, v) in col.iter().enumerate() {
                    ych[ii * n_out + j] = *v;
                }
            }
        }
    };
    if m * n_out >= PARALLEL_MIN_WEIGHTS {
        y.par_chunks_mut(T * n_out)
            .enumerate()
            .for_each(|(bi, c)| band(bi, c));
    } else {
        y.chunks_mut(T * n_out)
            .enumerate()
            .for_each(|(bi, c)| band(bi, c));
    }
    y
}

/// `layer(x)` for a packed weight: `x [..., n_in]` -> `[..., n_out]` through [`qmatmul`]
/// (the values are copied out of and back into Burn tensors on `x`'s device).
///
/// # Errors
/// [`QMatmulError::InputLength`] when the last dimension of `x` is not `w.cols()`.
pub fn qlinear<const D: usize>(
    x: Tensor<D>,
    w: &PackedMatrix<'_>,
) -> Result<Tensor<D>, QMatmulError> {
    super::linear::on_host_rows(x, w.rows, |v, m| qmatmul(v, m, w))
}

/// `out[i] = dot(wrow, activation row r0 + i)` for `i < out.len() <= X_ROWS`; `grouped` is
/// present exactly when `kernel` is [`QKernel::Avx512Vnni`].
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn row_dot(
    kernel: QKernel,
    kind: QuantKind,
    wrow: &[u8],
    acts: &QuantizedRows,
    grouped: Option<&GroupedRows>,
    r0: usize,
    out: &mut [f32],
) {
    match kernel {
        QKernel::Scalar => {
            for (i, o) in out.iter_mut().enumerate() {
                *o = dot_scalar(kind, wrow, acts, r0 + i);
            }
        }
        #[cfg(target_arch = "x86_64")]
        QKernel::Avx2 => {
            let nb = acts.n / BLOCK;
            debug_assert_eq!(wrow.len(), nb * kind.block_bytes());
            debug_assert!(r0 + out.len() <= acts.m);
            // SAFETY: `qmatmul_with` checked `kernel.available()` (the CPU features each
            // function enables); `wrow` holds `nb` blocks of `kind` (a row of a checked
            // `PackedMatrix` whose `cols` is `acts.n`); activation rows r0 .. r0 + out.len()
            // <= m exist in `acts` (`n` values and `nb` scales and sums each).
            unsafe {
                match out.len() {
                    1 => x86::dot_avx2::<1>(kind, wrow, acts, r0, out),
                    2 => x86::dot_avx2::<2>(kind, wrow, acts, r0, out),
                    3 => x86::dot_avx2::<3>(kind, wrow, acts, r0, out),
                    4 => x86::dot_avx2::<4>(kind, wrow, acts, r0, out),
                    _ => unreachable!("at most X_ROWS = 4 rows per call"),
                }
            }
        }
        #[cfg(target_arch = "x86_64")]
        QKernel::Avx512Vnni => {
            let nb = acts.n / BLOCK;
            debug_assert_eq!(wrow.len(), nb * kind.block_bytes());
            debug_assert!(r0 + out.len() <= acts.m);
            let g = grouped.expect("qmatmul_with groups the rows for the AVX-512 kernel");
            // SAFETY: as for AVX2 above, and `g` was built from `acts` for `kind`
            // (`GroupedRows::new`), so it holds rows r0 .. r0 + out.len() of `ng` groups.
            unsafe {
                match out.len() {
                    1 => x86::dot_avx512::<1>(kind, wrow, acts, g, r0, out),
                    2 => x86::dot_avx512::<2>(kind, wrow, acts, g, r0, out),
                    3 => x86::dot_avx512::<3>(kind, wrow, acts, g, r0, out),
                    4 => x86::dot_avx512::<4>(kind, wrow, acts, g, r0, out),
                    _ => unreachable!("at most X_ROWS = 4 rows per call"),
                }
            }
        }
        QKernel::AmxInt8 | QKernel::Avx512VnniGemm => {
            unreachable!("qmatmul_with sends {kernel:?} to its tiles or to the row kernel")
        }
        #[cfg(not(target_arch = "x86_64"))]
        _ => unreachable!("only the scalar kernel is available off x86_64"),
    }
}

/// The exact integer sum of one block: `sum(q_w * q_x)` (Q8_0) or
/// `sum(nibble * q_x) - 8 * sum(q_x)` (Q4_0).
fn block_sum_scalar(kind: QuantKind, wq: &[u8], xq: &[i8], xsum: i32) -> i32 {
    match kind {
        QuantKind::Q8_0 => wq
            .iter()
            .zip(xq)
            .map(|(&w, &x)| i32::from(w as i8) * i32::from(x))
            .sum(),
        QuantKind::Q4_0 => {
            let (lo, hi) = xq.split_at(BLOCK / 2);
            let s: i32 = wq
                .iter()
                .zip(lo.iter().zip(hi))
                .map(|(&b, (&l, &h))| {
                    i32::from(b & 0x0F) * i32::from(l) + i32::from(b >> 4) * i32::from(h)
                })
                .sum();
            s - 8 * xsum
        }
    }
}

/// One weight row times activation row `r`, portable: per block the exact integer sum, then
/// `acc += (d_w * d_x) * sum` in f32, blocks in order.
fn dot_scalar(kind: QuantKind, wrow: &[u8], acts: &QuantizedRows, r: usize) -> f32 {
    let nb = acts.n / BLOCK;
    let mut acc = 0f32;
    for (b, blk) in wrow.chunks_exact(kind.block_bytes()).enumerate() {
        let dw = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        let xi = r * nb + b;
        let xq = &acts.q[xi * BLOCK..(xi + 1) * BLOCK];
        let s = block_sum_scalar(kind, &blk[2..], xq, acts.sum[xi]);
        acc += (dw * acts.d[xi]) * s as f32;
    }
    acc
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The AVX2 and AVX-512 VNNI kernels. Shared preconditions of every function here (the
    //! "kernel contract"): the CPU has the features the function enables; `wrow` holds
    //! `acts.n / 32` blocks of `kind`; activation rows `r0 .. r0 + R` exist in `acts`;
    //! `out.len() == R`.

    use super::{BLOCK, GROUP, GroupedRows, QuantKind, QuantizedRows};
    use std::arch::x86_64::*;

    /// The f16 scale at the start of the block at `p`, as f32.
    ///
    /// # Safety
    /// F16C available, two bytes readable at `p`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scale(p: *const u8) -> f32 {
        // SAFETY: the caller guarantees two readable bytes; read_unaligned has no alignment need.
        let bits = unsafe { p.cast::<u16>().read_unaligned() };
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(u16::from_le(
            bits,
        )))))
    }

    /// Sum of the 8 lanes.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn hsum256(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    /// The 32 weights of the Q4_0 block whose nibbles start at `p`, as bytes 0..=15 in
    /// element order (16 low nibbles, then 16 high).
    ///
    /// # Safety
    /// AVX2 available, 16 bytes readable at `p`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn nibbles256(p: *const u8) -> __m256i {
        // SAFETY: 16 readable bytes at `p` (caller); loadu has no alignment need.
        let b = unsafe { _mm_loadu_si128(p.cast()) };
        let mask = _mm_set1_epi8(0x0F);
        let lo = _mm_and_si128(b, mask);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(b), mask);
        _mm256_set_m128i(hi, lo)
    }

    /// One block (`b`) of one weight row against `R` activation rows, AVX2, added into `acc`.
    ///
    /// # Safety
    /// The kernel contract (module doc) and `b < nb`.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn block_avx2<const R: usize>(
        kind: QuantKind,
        wrow: *const u8,
        acts: &QuantizedRows,
        r0: usize,
        b: usize,
        acc: &mut [__m256; R],
    ) {
        let nb = acts.n / BLOCK;
        let ones = _mm256_set1_epi16(1);
        // SAFETY: block b < nb of `wrow` and of rows r0 .. r0 + R lies in bounds (kernel
        // contract); all loads are unaligned loads of bytes inside those blocks.
        unsafe {
            let blk = wrow.add(b * kind.block_bytes());
            let dw = scale(blk);
            // (unsigned weights, activations sign-adjusted to match) per kind.
            let (uw, sign) = match kind {
                QuantKind::Q8_0 => {
                    let w = _mm256_loadu_si256(blk.add(2).cast());
                    (_mm256_sign_epi8(w, w), Some(w))
                }
                QuantKind::Q4_0 => (nibbles256(blk.add(2)), None),
            };
            for (r, a) in acc.iter_mut().enumerate() {
                let xi = (r0 + r) * nb + b;
                let mut x = _mm256_loadu_si256(acts.q.as_ptr().add(xi * BLOCK).cast());
                if let Some(w) = sign {
                    // x * sign(w): |w| * (x * sign(w)) = w * x. |x| <= 127 so the
                    // negation cannot overflow; |w| = 128 for w = -128 is right as unsigned.
                    x = _mm256_sign_epi8(x, w);
                }
                // Pairs: |128 * 127 * 2| = 32512 < 2^15, so maddubs never saturates.
                let pairs = _mm256_maddubs_epi16(uw, x);
                let mut s = _mm256_madd_epi16(pairs, ones);
                if sign.is_none() {
                    s = _mm256_sub_epi32(
                        s,
                        _mm256_setr_epi32(8 * *acts.sum.get_unchecked(xi), 0, 0, 0, 0, 0, 0, 0),
                    );
                }
                let d = _mm256_set1_ps(dw * *acts.d.get_unchecked(xi));
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, *a);
            }
        }
    }

    /// One weight row against `R` activation rows, AVX2: `out[i]` = the row's product with
    /// activation row `r0 + i`.
    ///
    /// # Safety
    /// The kernel contract (module doc).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(super) unsafe fn dot_avx2<const R: usize>(
        kind: QuantKind,
        wrow: &[u8],
        acts: &QuantizedRows,
        r0: usize,
        out: &mut [f32],
    ) {
        let nb = acts.n / BLOCK;
        let mut acc = [_mm256_setzero_ps(); R];
        for b in 0..nb {
            // SAFETY: b < nb; the rest is the caller's kernel contract.
            unsafe { block_avx2::<R>(kind, wrow.as_ptr(), acts, r0, b, &mut acc) };
        }
        for (o, a) in out.iter_mut().zip(acc) {
            *o = hsum256(a);
        }
    }

    /// How far ahead of the group being multiplied [`dot_avx512`] asks for weight bytes
    /// (`prefetcht0`; past the row's end it reaches the task's next row). Without it a core
    /// alternated between waiting for memory and computing: `voxtrace bench qmatmul --kind
    /// q4_0 --m 1 --n-out 131072 --n-in 3072` (2 threads, Intel Xeon) read 18.8 GB/s before
    /// this prefetch (commit fcaba86) and 28.9 GB/s with it; Q8_0 19.1 and 28.9 GB/s; the
    /// read bandwidth (`voxtrace bench bandwidth`) was 30.4 GB/s. Of the distances tried
    /// (256 to 4096 bytes) 2048 read fastest.
    const PREFETCH_BYTES: usize = 2048;

    /// 64 indices as a 512-bit vector.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn idx(v: &[u8; 64]) -> __m512i {
        // SAFETY: `v` is 64 readable bytes; loadu has no alignment need.
        unsafe { _mm512_loadu_si512(v.as_ptr().cast()) }
    }

    /// `vpermt2b` indices: the 64 nibble bytes of a group of four Q4_0 blocks (72 bytes at
    /// `p`), from `lo = p[0..64]` (indices 0..64) and `hi = p[8..72]` (64.. = byte + 56).
    const Q4_NIBBLES: [u8; 64] = {
        let mut t = [0u8; 64];
        let mut i = 0;
        while i < 64 {
            let src = 18 * (i / 16) + 2 + i % 16;
            t[i] = if src < 64 { src } else { src + 56 } as u8;
            i += 1;
        }
        t
    };

    /// Byte-shuffle indices putting the four f16 scales of a group of blocks `bb` bytes apart
    /// (bytes `bb * k`, `bb * k + 1`) into bytes 0..8: for Q4_0 (`vpermb` on `p[0..64]`) and
    /// Q8_0 (`vpermt2b` on `p[0..64]`, `p[64..128]`, where the index is the byte offset).
    const fn scale_indices(bb: usize) -> [u8; 64] {
        let mut t = [0u8; 64];
        let mut k = 0;
        while k < 4 {
            t[2 * k] = (bb * k) as u8;
            t[2 * k + 1] = (bb * k + 1) as u8;
            k += 1;
        }
        t
    }
    const Q4_SCALES: [u8; 64] = scale_indices(18);
    const Q8_SCALES: [u8; 64] = scale_indices(34);

    /// Lane `l` of a product of a Q4_0 group belongs to block `l / 4`; of a Q8_0 register
    /// pair to block `l / 8` (first register) and `2 + l / 8` (second).
    const EXPAND4: [i32; 16] = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3];
    const EXPAND8_LO: [i32; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1];
    const EXPAND8_HI: [i32; 16] = [2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3];

    /// One weight row against `R` activation rows, AVX-512 VNNI + VBMI: groups of four blocks
    /// (128 weights) per step, their quants and f16 scales gathered by byte shuffles from
    /// two 512-bit loads, `vpdpbusd` into per-block lanes, one f32 multiply-add per lane by
    /// the expanded `d_w * d_x`; the `nb % 4` tail blocks through [`block_avx2`]. The
    /// per-block integer sums are exact, as in the other kernels.
    ///
    /// # Safety
    /// The kernel contract (module doc), and `g` built from `acts` for `kind`.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")]
    pub(super) unsafe fn dot_avx512<const R: usize>(
        kind: QuantKind,
        wrow: &[u8],
        acts: &QuantizedRows,
        g: &GroupedRows,
        r0: usize,
        out: &mut [f32],
    ) {
        let nb = acts.n / BLOCK;
        let ng = g.ng;
        let bb = kind.block_bytes();
        let wp = wrow.as_ptr();
        let mut acc = [_mm512_setzero_ps(); R];
        let mut tail = [_mm256_setzero_ps(); R];
        let xs = g.x.as_ptr();
        let ds = g.d.as_ptr();
        match kind {
            QuantKind::Q4_0 => {
                let nib_idx = idx(&Q4_NIBBLES);
                let sc_idx = idx(&Q4_SCALES);
                // SAFETY: EXPAND4 is 16 readable i32.
                let exp = unsafe { _mm512_loadu_si512(EXPAND4.as_ptr().cast()) };
                let mask = _mm512_set1_epi8(0x0F);
                let inits = g.init.as_ptr();
                for gi in 0..ng {
                    // SAFETY: group gi < ng covers bytes gi * 72 .. gi * 72 + 72 of `wrow`
                    // (4 blocks of 18); both 64-byte loads lie inside it. Rows r0 .. r0 + R
                    // of `g` hold `ng` groups of 128 bytes, 16 i32 and 16 f32 each.
                    unsafe {
                        let p = wp.add(gi * GROUP * bb);
                        _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(PREFETCH_BYTES).cast());
                        let lo = _mm512_loadu_si512(p.cast());
                        let hi = _mm512_loadu_si512(p.add(8).cast());
                        let nib = _mm512_permutex2var_epi8(lo, nib_idx, hi);
                        let wl = _mm512_and_si512(nib, mask);
                        let wh = _mm512_and_si512(_mm512_srli_epi16::<4>(nib), mask);
                        let sc = _mm512_castsi512_si128(_mm512_permutexvar_epi8(sc_idx, lo));
                        let dw =
                            _mm512_permutexvar_ps(exp, _mm512_castps128_ps512(_mm_cvtph_ps(sc)));
                        for (r, a) in acc.iter_mut().enumerate() {
                            let base = (r0 + r) * ng + gi;
                            let x = xs.add(base * 128);
                            let s = _mm512_loadu_si512(inits.add(base * 16).cast());
                            let s = _mm512_dpbusd_epi32(s, wl, _mm512_loadu_si512(x.cast()));
                            let s =
                                _mm512_dpbusd_epi32(s, wh, _mm512_loadu_si512(x.add(64).cast()));
                            let d = _mm512_mul_ps(dw, _mm512_loadu_ps(ds.add(base * 16)));
                            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s), d, *a);
                        }
                    }
                }
            }
            QuantKind::Q8_0 => {
                let sc_idx = idx(&Q8_SCALES);
                // SAFETY: EXPAND8_* are 16 readable i32 each.
                let (elo, ehi) = unsafe {
                    (
                        _mm512_loadu_si512(EXPAND8_LO.as_ptr().cast()),
                        _mm512_loadu_si512(EXPAND8_HI.as_ptr().cast()),
                    )
                };
                let c128 = _mm512_set1_epi8(-128);
                for gi in 0..ng {
                    // SAFETY: group gi < ng covers bytes gi * 136 .. gi * 136 + 136 of `wrow`
                    // (4 blocks of 34); every load lies inside it. Rows r0 .. r0 + R of `g`
                    // hold `ng` groups of 128 bytes and 32 f32 each.
                    unsafe {
                        let p = wp.add(gi * GROUP * bb);
                        let ahead = p.wrapping_add(PREFETCH_BYTES);
                        _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                        _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
                        let w0 = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(_mm256_loadu_si256(p.add(2).cast())),
                            _mm256_loadu_si256(p.add(36).cast()),
                        );
                        let w1 = _mm512_inserti64x4::<1>(
                            _mm512_castsi256_si512(_mm256_loadu_si256(p.add(70).cast())),
                            _mm256_loadu_si256(p.add(104).cast()),
                        );
                        let sc = _mm512_castsi512_si128(_mm512_permutex2var_epi8(
                            _mm512_loadu_si512(p.cast()),
                            sc_idx,
                            _mm512_loadu_si512(p.add(64).cast()),
                        ));
                        let dw4 = _mm512_castps128_ps512(_mm_cvtph_ps(sc));
                        let (dw0, dw1) = (
                            _mm512_permutexvar_ps(elo, dw4),
                            _mm512_permutexvar_ps(ehi, dw4),
                        );
                        // (q_x + 128) * w summed = q_x * w + 128 * w: start each lane at
                        // -128 * (its four w), shared by every activation row.
                        let z = _mm512_setzero_si512();
                        let i0 = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, c128, w0));
                        let i1 = _mm512_sub_epi32(z, _mm512_dpbusd_epi32(z, c128, w1));
                        for (r, a) in acc.iter_mut().enumerate() {
                            let base = (r0 + r) * ng + gi;
                            let x = xs.add(base * 128);
                            let s0 = _mm512_dpbusd_epi32(i0, _mm512_loadu_si512(x.cast()), w0);
                            let s1 =
                                _mm512_dpbusd_epi32(i1, _mm512_loadu_si512(x.add(64).cast()), w1);
                            let d0 = _mm512_mul_ps(dw0, _mm512_loadu_ps(ds.add(base * 32)));
                            let d1 = _mm512_mul_ps(dw1, _mm512_loadu_ps(ds.add(base * 32 + 16)));
                            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), d0, *a);
                            *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), d1, *a);
                        }
                    }
                }
            }
        }
        for b in ng * GROUP..nb {
            // SAFETY: b < nb; AVX2/FMA/F16C are enabled here; the rest is the kernel contract.
            unsafe { block_avx2::<R>(kind, wp, acts, r0, b, &mut tail) };
        }
        for ((o, a), t) in out.iter_mut().zip(acc).zip(tail) {
            *o = _mm512_reduce_add_ps(a) + hsum256(t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::untranspose;

    /// The blocked (and, from 65536 values, parallel) transpose equals the plain one, with
    /// partial tiles in both directions.
    #[test]
    fn untranspose_is_the_transpose() {
        for (m, n_out) in [(1, 5), (2, 3), (33, 70), (100, 1000), (65, 1025)] {
            let yt: Vec<f32> = (0..m * n_out).map(|v| v as f32).collect();
            let y = untranspose(yt.clone(), m, n_out);
            for i in 0..m {
                for j in 0..n_out {
                    assert_eq!(y[i * n_out + j], yt[j * m + i], "[{m},{n_out}] ({i},{j})");
                }
            }
        }
    }
}
