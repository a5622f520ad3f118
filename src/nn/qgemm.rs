//! Batched Q8_0 / Q4_0 products on AVX-512 VNNI, for CPUs without AMX (AMD Zen 4, Intel
//! before Sapphire Rapids): the batched encoder, the adapter and the prompt prefill.
//!
//! [`super::qmatmul`]'s row kernel takes one weight row against four activation rows at a
//! time and sums within each 512-bit register (about 16 multiply-adds per instruction). Here
//! the activations are laid out VNNI-style once per product (per block of 32 and quad of 4
//! values, the 4 bytes of each of `m` rows side by side: `[nb][8][m_pad]` u32, biased to
//! unsigned by `+ 128`), so a register holds one quad of 16 activation rows, and each weight
//! quad is broadcast from the weight row as stored (Q4_0 nibbles unpacked to `nibble - 8`
//! first): a tile of 32 activation rows x 4 weight rows keeps 8 integer and 8 f32
//! accumulators in registers, 8 `vpdpbusd` per 2 activation loads and 4 broadcasts (64
//! multiply-adds per instruction). Per block, each integer sum starts at `-128 * sum(w)` (the
//! bias), so it is the exact `sum(q_w * q_x)` of the other kernels; then
//! `y = fma(d_w * d_x, sum, y)` in f32, block after block from 0: the arithmetic, and so the
//! bits, of [`super::amx::q_products`], for any `m`.
//!
//! Mirrors nothing upstream: ggml's `ggml_vec_dot_q8_0_q8_0` / llama.cpp's `llamafile_sgemm`
//! compute the same block products with a different f32 order.

use super::qmatmul::{QuantKind, QuantizedRows};
use rayon::prelude::*;

/// Activation rows from which [`super::qmatmul::QKernel::Avx512VnniGemm`] runs
/// [`q_products`] (below, the row kernel of [`super::qmatmul::QKernel::Avx512Vnni`]); `voxtrace
/// bench qmatmul --m M` times both.
pub const VNNI_GEMM_MIN_ROWS: usize = 24;

/// Activation rows per tile (two 512-bit registers of 16 i32 lanes).
const MT: usize = 32;

/// Weight rows per tile (each weight quad broadcast once for the tile's 32 activation rows).
const NR: usize = 4;

/// Weight rows unpacked together at most (and run against each activation tile in turn).
const WG: usize = 64;

/// Bytes of unpacked weights (`rows * n`) a group holds at most, so that it stays in L2: 64
/// rows up to `n` = 4096, 48 at 5120 (the encoder's FFN), 28 at 9216 (the decoder's).
const GROUP_BYTES: usize = 256 << 10;

/// Whether [`q_products`] can run here: AVX-512 F/BW/VL with VNNI, and AVX2, F16C, FMA.
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        has!("avx512f")
            && has!("avx512bw")
            && has!("avx512vl")
            && has!("avx512vnni")
            && has!("avx2")
            && has!("f16c")
            && has!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `y [m, n_out] = dequant(w) · xᵀ` for `w` `[n_out, n]` in Q8_0 / Q4_0 blocks (the packed
/// bytes) and the activations quantized to 8-bit blocks (`acts`,
/// [`super::qmatmul::quantize_activations`]), by the register tiles of the module doc. Output
/// rows of `w` split across Rayon threads when `parallel`. Equal, bit for bit, to
/// [`super::amx::q_products`] on the same inputs.
///
/// # Panics
/// When the caller breaks the contract: [`available`] false, `n` not a positive multiple of
/// 32, `acts` not `[m, n]`, or `w` not `n_out` rows of `n / 32` blocks of `kind`.
pub fn q_products(
    kind: QuantKind,
    w: &[u8],
    n_out: usize,
    acts: &QuantizedRows,
    parallel: bool,
) -> Vec<f32> {
    let (m, n) = (acts.m, acts.n);
    assert!(available() && n.is_multiple_of(32) && n > 0);
    let nb = n / 32;
    let bb = kind.block_bytes();
    let row_bytes = nb * bb;
    assert!(w.len() == n_out * row_bytes && acts.q.len() == m * n && acts.d.len() == m * nb);
    if m == 0 || n_out == 0 {
        return vec![0.0; m * n_out];
    }
    let m_pad = m.next_multiple_of(MT);
    // Activation panel `[nb][8][m_pad]`: the quad (4 values) of each row as one u32, each byte
    // `q + 128` (`q ^ 0x80`); padded rows 0. Scales `[nb][m_pad]`, padded rows 0.
    let mut xp = vec![0u32; nb * 8 * m_pad];
    let mut dxt = vec![0f32; nb * m_pad];
    let fill = |b: usize, (panel, dx): (&mut [u32], &mut [f32])| {
        for r in 0..m {
            let q = &acts.q[r * n + b * 32..r * n + b * 32 + 32];
            for p in 0..8 {
                let v = u32::from_le_bytes([
                    q[4 * p] as u8,
                    q[4 * p + 1] as u8,
                    q[4 * p + 2] as u8,
                    q[4 * p + 3] as u8,
                ]);
                panel[p * m_pad + r] = v ^ 0x8080_8080;
            }
            dx[r] = acts.d[r * nb + b];
        }
    };
    if parallel {
        xp.par_chunks_mut(8 * m_pad)
            .zip(dxt.par_chunks_mut(m_pad))
            .enumerate()
            .for_each(|(b, c)| fill(b, c));
    } else {
        xp.chunks_mut(8 * m_pad)
            .zip(dxt.chunks_mut(m_pad))
            .enumerate()
            .for_each(|(b, c)| fill(b, c));
    }
    let wg = (GROUP_BYTES / n).clamp(NR, WG) / NR * NR;
    let (xp, dxt) = (&xp[..], &dxt[..]);
    let mut y = vec![0f32; m * n_out];
    let out = OutPtr(y.as_mut_ptr());
    // Tasks of whole weight-row groups (about four per thread); each writes its own columns
    // `j0 .. j0 + rows` of `y`.
    let run = |j0: usize, rows: usize| {
        // One group's unpacked weights `[wg][n]`, scales and biases `[wg][nb]`.
        let mut wq = vec![0i8; wg * n];
        let mut dw = vec![0f32; wg * nb];
        let mut bias = vec![0i32; wg * nb];
        let mut g0 = 0;
        while g0 < rows {
            let gn = wg.min(rows - g0);
            for t in 0..gn {
                let j = j0 + g0 + t;
                // SAFETY: `available()` (asserted) implies AVX2 and F16C on x86_64; the slices
                // hold `nb` blocks.
                unsafe {
                    unpack_row(
                        kind,
                        &w[j * row_bytes..(j + 1) * row_bytes],
                        &mut wq[t * n..(t + 1) * n],
                        &mut dw[t * nb..(t + 1) * nb],
                        &mut bias[t * nb..(t + 1) * nb],
                    )
                };
            }
            // Each activation tile (32 rows, in L1 or L2) against every weight row of the
            // group (in L2).
            for r0 in (0..m_pad).step_by(MT) {
                let mut g = g0;
                while g < g0 + gn {
                    let nr = NR.min(g0 + gn - g);
                    let l = g - g0;
                    let tile = Tile {
                        wq: wq[l * n..].as_ptr(),
                        dw: dw[l * nb..].as_ptr(),
                        bias: bias[l * nb..].as_ptr(),
                        nb,
                        // SAFETY (both): column r0 < m_pad lies inside the panel
                        // (`nb * 8 * m_pad` values) and the scales (`nb * m_pad`).
                        xp: unsafe { xp.as_ptr().add(r0) },
                        dxt: unsafe { dxt.as_ptr().add(r0) },
                        m_pad,
                        // Row r0 < m, column j0 + g of `y` (`[m, n_out]`).
                        out: out.at(r0 * n_out + j0 + g),
                        n_out,
                        valid: MT.min(m - r0),
                    };
                    // SAFETY: `available()` was asserted; the tile's pointers cover what
                    // `Tile::run` reads and writes (rows t < nr of `wq`/`dw`/`bias` from row l
                    // hold `nb` blocks, the panel holds columns r0 .. r0 + 32 of every block,
                    // `y` rows r0 .. r0 + valid at columns j0 + g .. j0 + g + nr are this
                    // task's alone).
                    unsafe {
                        match nr {
                            1 => tile.run::<1>(),
                            2 => tile.run::<2>(),
                            3 => tile.run::<3>(),
                            _ => tile.run::<4>(),
                        }
                    }
                    g += nr;
                }
            }
            g0 += gn;
        }
    };
    let threads = if parallel {
        rayon::current_num_threads()
    } else {
        1
    };
    let per_task = n_out.div_ceil(threads * 4).next_multiple_of(NR);
    let tasks = n_out.div_ceil(per_task);
    let task = |ti: usize| {
        let j0 = ti * per_task;
        run(j0, per_task.min(n_out - j0));
    };
    if threads > 1 {
        (0..tasks).into_par_iter().for_each(task);
    } else {
        (0..tasks).for_each(task);
    }
    y
}

/// `y`'s buffer, written by tasks that each own their columns.
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint columns through it (see `q_products`).
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The element `i` places in (not dereferenced here).
    fn at(&self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

/// One weight row's blocks as i8 values (`q`, or `nibble - 8`) into `wq`, their f32 scales
/// into `dw` and `-128 * sum(values)` (the bias of the `+ 128` activations) into `bias`; per
/// block one 256-bit store, the sum by `vpsadbw` on the values biased to unsigned.
///
/// # Safety
/// AVX2 available; `blocks` whole blocks of `kind`, `wq` 32 values and `dw` / `bias` one
/// entry per block.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,f16c")]
unsafe fn unpack_row(
    kind: QuantKind,
    blocks: &[u8],
    wq: &mut [i8],
    dw: &mut [f32],
    bias: &mut [i32],
) {
    use std::arch::x86_64::*;
    let bb = kind.block_bytes();
    let nb = blocks.len() / bb;
    assert!(wq.len() >= nb * 32 && dw.len() >= nb && bias.len() >= nb);
    let zero = _mm256_setzero_si256();
    for b in 0..nb {
        let blk = &blocks[b * bb..(b + 1) * bb];
        dw[b] = half::f16::from_le_bytes([blk[0], blk[1]]).to_f32();
        // SAFETY: the loads read bytes 2 .. 34 (Q8_0) or 2 .. 18 (Q4_0) of the block, the
        // store 32 values at b * 32 < wq.len() (asserted).
        unsafe {
            // `u`: the 32 values + 128 (Q8_0) or + 8 (Q4_0) as unsigned bytes; `off` the bias.
            let (u, off) = match kind {
                QuantKind::Q8_0 => {
                    let q = _mm256_loadu_si256(blk.as_ptr().add(2).cast());
                    _mm256_storeu_si256(wq.as_mut_ptr().add(b * 32).cast(), q);
                    (_mm256_xor_si256(q, _mm256_set1_epi8(-128)), 128)
                }
                QuantKind::Q4_0 => {
                    let v = _mm_loadu_si128(blk.as_ptr().add(2).cast());
                    let mask = _mm_set1_epi8(0x0F);
                    let lo = _mm_and_si128(v, mask);
                    let hi = _mm_and_si128(_mm_srli_epi16::<4>(v), mask);
                    let nib = _mm256_set_m128i(hi, lo);
                    let q = _mm256_sub_epi8(nib, _mm256_set1_epi8(8));
                    _mm256_storeu_si256(wq.as_mut_ptr().add(b * 32).cast(), q);
                    (nib, 8)
                }
            };
            let sad = _mm256_sad_epu8(u, zero);
            let s2 = _mm_add_epi64(
                _mm256_castsi256_si128(sad),
                _mm256_extracti128_si256::<1>(sad),
            );
            let total = _mm_cvtsi128_si64(_mm_add_epi64(s2, _mm_unpackhi_epi64(s2, s2)));
            bias[b] = -128 * (total as i32 - 32 * off);
        }
    }
}

/// Not reached off x86_64 ([`available`] is false there).
#[cfg(not(target_arch = "x86_64"))]
unsafe fn unpack_row(_: QuantKind, _: &[u8], _: &mut [i8], _: &mut [f32], _: &mut [i32]) {
    unreachable!("no AVX-512 VNNI off x86_64")
}

/// One register tile: up to [`NR`] weight rows x 32 activation rows over every block,
/// written to `y`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Tile {
    /// `[NR][nb * 32]` unpacked weights.
    wq: *const i8,
    /// `[NR][nb]` weight scales.
    dw: *const f32,
    /// `[NR][nb]` biases `-128 * sum(w)`.
    bias: *const i32,
    /// Blocks per row.
    nb: usize,
    /// The panel at the tile's first activation row.
    xp: *const u32,
    /// The activation scales at the same place.
    dxt: *const f32,
    /// Padded activation rows: the panel's row stride.
    m_pad: usize,
    /// `y` at the tile's first activation row and first weight row.
    out: *mut f32,
    /// `y`'s row stride.
    n_out: usize,
    /// Activation rows of the tile that exist (the rest are padding), at most 32.
    valid: usize,
}

impl Tile {
    /// Run the tile for `R` weight rows.
    ///
    /// # Safety
    /// AVX-512F/BW/VL/VNNI and FMA available; the pointers as the fields describe, for `R`
    /// weight rows (`y` columns `0 .. R`, rows `0 .. valid`).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,fma")]
    #[expect(
        clippy::needless_range_loop,
        reason = "f[t][h] and s[t][h] cross register arrays: the indices say which tile entry"
    )]
    unsafe fn run<const R: usize>(&self) {
        use std::arch::x86_64::*;
        let m_pad = self.m_pad;
        // SAFETY: every pointer below stays inside the ranges the fields describe (the
        // caller's contract): weight rows t < R, blocks b < nb, quads p < 8, the tile's 32
        // panel columns, `y` rows below `valid` at columns t < R.
        unsafe {
            let mut f = [[_mm512_setzero_ps(); 2]; R];
            for b in 0..self.nb {
                let mut s = [[_mm512_setzero_si512(); 2]; R];
                for t in 0..R {
                    let c = _mm512_set1_epi32(*self.bias.add(t * self.nb + b));
                    s[t] = [c, c];
                }
                for p in 0..8 {
                    let x = self.xp.add((b * 8 + p) * m_pad);
                    let a0 = _mm512_loadu_si512(x.cast());
                    let a1 = _mm512_loadu_si512(x.add(16).cast());
                    for t in 0..R {
                        let wv = _mm512_set1_epi32(std::ptr::read_unaligned(
                            self.wq.add(t * self.nb * 32 + b * 32 + 4 * p).cast::<i32>(),
                        ));
                        s[t][0] = _mm512_dpbusd_epi32(s[t][0], a0, wv);
                        s[t][1] = _mm512_dpbusd_epi32(s[t][1], a1, wv);
                    }
                }
                let dx0 = _mm512_loadu_ps(self.dxt.add(b * m_pad));
                let dx1 = _mm512_loadu_ps(self.dxt.add(b * m_pad + 16));
                for t in 0..R {
                    let d = _mm512_set1_ps(*self.dw.add(t * self.nb + b));
                    f[t][0] = _mm512_fmadd_ps(
                        _mm512_mul_ps(d, dx0),
                        _mm512_cvtepi32_ps(s[t][0]),
                        f[t][0],
                    );
                    f[t][1] = _mm512_fmadd_ps(
                        _mm512_mul_ps(d, dx1),
                        _mm512_cvtepi32_ps(s[t][1]),
                        f[t][1],
                    );
                }
            }
            // Transpose 4 x 16 per half in 4 x 4 blocks (one per 128-bit lane): lane `l` of
            // `rows[i]` is weight rows 0..4 of activation row 16 h + 4 l + i; store its first
            // R values.
            let z = _mm512_setzero_ps();
            let mask: __mmask8 = (1u8 << R) - 1;
            for h in 0..2 {
                let v = |t: usize| if t < R { f[t][h] } else { z };
                let (lo01, hi01) = (
                    _mm512_unpacklo_ps(v(0), v(1)),
                    _mm512_unpackhi_ps(v(0), v(1)),
                );
                let (lo23, hi23) = (
                    _mm512_unpacklo_ps(v(2), v(3)),
                    _mm512_unpackhi_ps(v(2), v(3)),
                );
                let pd = _mm512_castps_pd;
                let rows = [
                    _mm512_castpd_ps(_mm512_unpacklo_pd(pd(lo01), pd(lo23))),
                    _mm512_castpd_ps(_mm512_unpackhi_pd(pd(lo01), pd(lo23))),
                    _mm512_castpd_ps(_mm512_unpacklo_pd(pd(hi01), pd(hi23))),
                    _mm512_castpd_ps(_mm512_unpackhi_pd(pd(hi01), pd(hi23))),
                ];
                for l in 0..4 {
                    for (i, &row) in rows.iter().enumerate() {
                        let r = 16 * h + 4 * l + i;
                        if r < self.valid {
                            let q = match l {
                                0 => _mm512_extractf32x4_ps::<0>(row),
                                1 => _mm512_extractf32x4_ps::<1>(row),
                                2 => _mm512_extractf32x4_ps::<2>(row),
                                _ => _mm512_extractf32x4_ps::<3>(row),
                            };
                            _mm_mask_storeu_ps(self.out.add(r * self.n_out), mask, q);
                        }
                    }
                }
            }
        }
    }

    /// Not reached off x86_64 ([`available`] is false there).
    #[cfg(not(target_arch = "x86_64"))]
    unsafe fn run<const R: usize>(&self) {
        unreachable!("no AVX-512 VNNI off x86_64")
    }
}

#[cfg(test)]
mod tests {
    use super::{available, q_products};
    use crate::nn::qmatmul::{QuantKind, quantize_activations};

    fn xorshift(s: &mut u32) -> u32 {
        *s ^= *s << 13;
        *s ^= *s >> 17;
        *s ^= *s << 5;
        *s
    }

    /// `n_out` rows of random blocks of `kind` (scales 0.01, any quant bytes).
    fn packed(kind: QuantKind, n_out: usize, n: usize) -> Vec<u8> {
        let mut s = 0x9E37_79B9u32 ^ (n_out as u32);
        let mut bytes = Vec::new();
        for _ in 0..n_out * n / 32 {
            bytes.extend_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
            for _ in 2..kind.block_bytes() {
                bytes.push((xorshift(&mut s) >> 24) as u8);
            }
        }
        bytes
    }

    /// Each row of a batch is bit-identical to that row alone (partial tiles of activation and
    /// weight rows, one and several passes over the blocks), and, where the CPU has AMX-INT8,
    /// to [`crate::nn::amx::q_products`] (the bounds against the exact product are
    /// `tests/qmatmul.rs`'s, which runs every kernel).
    #[test]
    fn rows_do_not_depend_on_the_batch_and_match_the_tiles() {
        if !available() {
            eprintln!("no AVX-512 VNNI here: QKernel::Avx512VnniGemm is unavailable");
            return;
        }
        for kind in [QuantKind::Q8_0, QuantKind::Q4_0] {
            for &(m, n_out, n) in &[(1, 3, 32), (17, 40, 64), (37, 70, 8192), (70, 33, 96)] {
                let mut s = (m * 7919 + n) as u32;
                let x: Vec<f32> = (0..m * n)
                    .map(|_| (xorshift(&mut s) % 2001) as f32 / 1000.0 - 1.0)
                    .collect();
                let bytes = packed(kind, n_out, n);
                let acts = quantize_activations(&x, m, n);
                let y = q_products(kind, &bytes, n_out, &acts, true);
                if crate::nn::amx::amx_int8_available() {
                    let t = crate::nn::amx::q_products(kind, &bytes, n_out, &acts, true);
                    assert!(
                        t.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{kind:?} [{m},{n_out},{n}]: not the AMX tiles' bits"
                    );
                }
                for i in 0..m {
                    let xi = &x[i * n..(i + 1) * n];
                    let one =
                        q_products(kind, &bytes, n_out, &quantize_activations(xi, 1, n), false);
                    for j in 0..n_out {
                        assert_eq!(
                            one[j].to_bits(),
                            y[i * n_out + j].to_bits(),
                            "{kind:?} [{m},{n_out},{n}] row {i} out {j}"
                        );
                    }
                }
            }
        }
    }
}
