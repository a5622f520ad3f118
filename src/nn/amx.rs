//! Intel AMX tile products: `yt [n_out, m] = w · xᵀ` for BF16 weights `w [n_out, n_in]` used
//! in place (a memory-mapped safetensors or GGUF tensor) and activations rounded to bf16,
//! by `tdpbf16ps` (AMX-BF16) on 16 x 16 f32 accumulator tiles.
//!
//! Why: a batched encoder or prefill pass is compute-bound. AVX-512 BF16 (`vdpbf16ps`) does
//! 32 multiply-adds per instruction; one `tdpbf16ps` does 16 x 16 x 32 = 8192, which is what
//! the "encoder over the 11 s clip in 4 s" needs (about 1.1 TFLOP on 2 cores).
//!
//! Numerics (the same as [`super::half::HalfCompute::Bf16`] promises): each product of two
//! bf16 values is exact in f32, summed in f32 with denormal inputs and results flushed to zero
//! (the instruction ignores MXCSR). Every output element is accumulated over the input columns
//! in order, in one accumulator tile entry that sees only its own weight row and activation
//! row, and the k-blocked schedule stores and reloads that entry exactly (f32 to f32). So the
//! value of an output row does not depend on the other rows of the batch (tested): a batched
//! encoder pass and the 8-frame streaming schedule (4 rows per call) compute bit-identical
//! encoder products.
//!
//! One activation row (a decoder step) stays on the AVX-512 BF16 path ([`AMX_MIN_ROWS`]):
//! a tile load touches 16 weight rows at once, which the hardware prefetchers do not follow,
//! and measured from memory it reads the weights at about half the rate of the AVX-512 loop
//! (`voxtrace bench half --m 1 --n-out 131072 --n-in 3072`; software prefetches made it worse).
//!
//! Tiles (all 16 rows x 64 bytes): `tmm0..tmm3` accumulate, `tmm4`/`tmm5` hold weight rows
//! (A: 16 rows x 32 bf16 read straight from the weight with its row stride), `tmm6`/`tmm7`
//! hold activations in the VNNI pair layout AMX wants (B: 16 column pairs x 16 rows x 2 bf16,
//! packed once per product). Intel SDM vol. 1 ch. 18 and vol. 2 (`TDPBF16PS`); Linux
//! `Documentation/arch/x86/xstate.rst` for the `ARCH_REQ_XCOMP_PERM` request every process
//! makes before its first tile instruction.
//!
//! `VOXTRACE_AMX=0` in the environment turns the path off (read once per process), so the
//! benchmarks can report what the tiles give against the AVX-512 BF16 path.

use rayon::prelude::*;
use std::sync::OnceLock;

/// Fewest activation rows [`super::half::half_matmul`] sends to the tiles.
pub const AMX_MIN_ROWS: usize = 2;

/// Fewest activation rows [`super::qmatmul::qmatmul`] sends to the tiles (below, the VNNI
/// kernel: decoder steps, the 8-frame streaming encoder). Unpacking a group's blocks and the
/// per-block f32 scaling cost the same whatever the row count, so the tiles pay from about 16
/// rows: `voxtrace bench qmatmul --kind q4_0 --m M --n-out 9216 --n-in 3072` (2 threads), tiles
/// against VNNI: 3.88 / 6.89 ms at 32 rows, 5.21 / 7.91 at the 39-row prompt prefill (Q8_0:
/// 5.28 / 10.26 at 39); with this threshold set to 8 for the measurement, 3.28 / 1.50 at 8
/// rows and 3.39 / 3.36 at 16.
pub const AMX_INT8_MIN_ROWS: usize = 24;

/// Input columns one tile step covers (64 bytes of bf16 per tile row).
pub const K_STEP: usize = 32;

/// Input columns per k block: the accumulator tiles are stored and reloaded between blocks,
/// so a block's weight rows (16 KB per tile row pair at 1024 columns) and activation panel
/// stay in L2 while every tile pair meets them.
const KC: usize = 1024;

/// Activation rows per block (rounded to the tile pair): 256 rows x [`KC`] bf16 = 512 KB of
/// packed activations in L2, met by every weight tile of the task before the next block.
const MC: usize = 256;

/// Whether this process can run AMX-BF16 tiles: the CPU has AMX-TILE and AMX-BF16
/// (`CPUID.(7,0):EDX` bits 24 and 22), the OS enables the tile state in XCR0 (bits 17, 18),
/// Linux granted the tile data permission (`arch_prctl(ARCH_REQ_XCOMP_PERM,
/// XFEATURE_XTILEDATA)`), and `VOXTRACE_AMX` is not `0`. Checked once; `false` on every other
/// target.
pub fn amx_bf16_available() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        if std::env::var("VOXTRACE_AMX").is_ok_and(|v| v.trim() == "0") {
            return false;
        }
        detect()
    })
}

#[cfg(all(target_arch = "x86_64", target_os = "linux", feature = "native"))]
fn detect() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // cpuid is available on every x86_64 CPU (safe in std).
    let (leaf1, leaf7) = (__cpuid(1), __cpuid_count(7, 0));
    let amx_bf16 = leaf7.edx & (1 << 22) != 0;
    let amx_tile = leaf7.edx & (1 << 24) != 0;
    let osxsave = leaf1.ecx & (1 << 27) != 0;
    let avx512 = std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw");
    if !(amx_bf16 && amx_tile && osxsave && avx512) {
        return false;
    }
    #[target_feature(enable = "xsave")]
    fn xcr0() -> u64 {
        // SAFETY: OSXSAVE is set (checked by the caller), so xgetbv is enabled.
        unsafe { std::arch::x86_64::_xgetbv(0) }
    }
    // SAFETY: the CPU has XSAVE (OSXSAVE implies it).
    let xcr0 = unsafe { xcr0() };
    if xcr0 & (0b11 << 17) != 0b11 << 17 {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: a plain system call with integer arguments; it only changes this process's
    // permission to use the tile state.
    let r = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    r == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux", feature = "native")))]
fn detect() -> bool {
    false
}

/// Whether [`bf16_products`] takes a matrix of `n_in` input columns (a whole number of tile
/// steps); the choice depends on the matrix only, never on the row count.
pub fn amx_takes(n_in: usize) -> bool {
    n_in > 0 && n_in.is_multiple_of(K_STEP) && amx_bf16_available()
}

/// `v` rounded to bf16 (round to nearest even, NaN kept quiet): `half::bf16::from_f32`'s bits.
#[inline]
fn bf16_bits(v: f32) -> u32 {
    let b = v.to_bits();
    if v.is_nan() {
        (b >> 16) | 0x40
    } else {
        (b + 0x7FFF + ((b >> 16) & 1)) >> 16
    }
}

/// `x [m, n]` (f32, row-major) rounded to bf16 in the VNNI layout of B tiles, rows `m ..
/// m_pad` zero: `[m_pad / 16][n / 32][16 pairs][16 rows]` of u32 (two bf16, the lower column
/// in the low half), so the tile of rows `16 rb ..` and columns `32 ks ..` is 1 KB at
/// `(rb * n / 32 + ks) * 256` words. `out` is resized and fully written.
fn pack_vnni(x: &[f32], m: usize, n: usize, m_pad: usize, out: &mut Vec<u32>) {
    let ksteps = n / K_STEP;
    out.clear();
    out.resize(m_pad * n / 2, 0);
    out.par_chunks_mut(8 * n).enumerate().for_each(|(rb, blk)| {
        for r in 0..16 {
            let row = rb * 16 + r;
            if row >= m {
                break;
            }
            let src = &x[row * n..(row + 1) * n];
            for (ks, tile) in blk.chunks_exact_mut(256).enumerate().take(ksteps) {
                let pairs = &src[ks * K_STEP..(ks + 1) * K_STEP];
                for (p, pair) in pairs.chunks_exact(2).enumerate() {
                    tile[p * 16 + r] = bf16_bits(pair[0]) | (bf16_bits(pair[1]) << 16);
                }
            }
        }
    });
}

thread_local! {
    /// Per calling thread: packed activations and the accumulator tiles, kept between
    /// products so their pages stay mapped (fresh multi-MB buffers cost a page fault and a
    /// page clear per 4 KB, measured as a tenth of the batched encoder).
    static SCRATCH: std::cell::RefCell<(Vec<u32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// A raw output pointer the Rayon tasks share; each writes only its own columns.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint elements (their own output columns) through it.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// The pointer (a method, so closures capture the whole `Sync` wrapper).
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `y [m, n_out] = bf16(x) · wᵀ` with `w` `[n_out, n]` little-endian bf16 bytes
/// (`n_out * n * 2`) and `x` `[m, n]` f32 rounded to bf16 (round to nearest even), on AMX
/// tiles; output columns split across Rayon threads in 32-column groups when `parallel`.
///
/// # Panics
/// When the caller breaks the contract: [`amx_takes`]`(n)` false, or lengths not as above.
pub fn bf16_products(
    x: &[f32],
    m: usize,
    w: &[u8],
    n_out: usize,
    n: usize,
    parallel: bool,
) -> Vec<f32> {
    assert!(
        amx_takes(n),
        "AMX bf16 products need AMX and n_in a multiple of 32"
    );
    assert!(w.len() == n_out * n * 2 && x.len() == m * n);
    let mut y = vec![0f32; m * n_out];
    if m == 0 || n_out == 0 {
        return y;
    }
    let m_pad = m.next_multiple_of(32);
    let n_pad = n_out.next_multiple_of(32);
    // The last partial group of 32 weight rows, zero-padded, so every A tile is whole.
    let full = n_out / 32 * 32;
    let tail: Vec<u8> = if full < n_out {
        let mut t = vec![0u8; 32 * n * 2];
        t[..(n_out - full) * n * 2].copy_from_slice(&w[full * n * 2..]);
        t
    } else {
        Vec::new()
    };
    SCRATCH.with_borrow_mut(|(xp, ct)| {
        pack_vnni(x, m, n, m_pad, xp);
        // Accumulators `[n_pad, m_pad]` f32: tile (group g, act tile i) at rows 32 g ..,
        // columns 16 i ..; the first k block starts from zeroed tiles, so no clearing here.
        if ct.len() < n_pad * m_pad {
            ct.resize(n_pad * m_pad, 0.0);
        }
        let ct = &mut ct[..n_pad * m_pad];
        let xp: &[u32] = xp;
        let out = OutPtr(y.as_mut_ptr());
        let run = |g0: usize, chunk: &mut [f32]| {
            let cfg = TileConfig::all_16x64();
            // SAFETY: amx_takes(n) checked the CPU and the OS permission.
            unsafe { x86::load_config(&cfg) };
            let ng = chunk.len() / (32 * m_pad);
            let ksteps_all = n / K_STEP;
            let mut k0 = 0;
            while k0 < n {
                let kc = KC.min(n - k0);
                let mut a0 = 0;
                while a0 < m_pad {
                    let a1 = (a0 + MC).min(m_pad);
                    for gg in 0..ng {
                        let g = g0 + gg;
                        let (wp, wrow0) = if g * 32 < full {
                            (w.as_ptr(), g * 32)
                        } else {
                            (tail.as_ptr(), 0)
                        };
                        let mut r = a0;
                        while r < a1 {
                            // SAFETY: weight rows wrow0 .. + 32 of `wp` (n columns, k0 + kc
                            // <= n), activation tiles r/16, r/16 + 1 < m_pad / 16 (columns
                            // k0 .. + kc), accumulator rows 32 gg .. + 32 and columns r .. r +
                            // 32 <= m_pad of `chunk` are in bounds; the configuration is
                            // loaded.
                            unsafe {
                                let a = wp.add((wrow0 * n + k0) * 2);
                                let b =
                                    xp.as_ptr().add(((r / 16) * ksteps_all + k0 / K_STEP) * 256);
                                let c = chunk.as_mut_ptr().add(gg * 32 * m_pad + r);
                                x86::block_2x2(
                                    a,
                                    n * 2,
                                    b.cast(),
                                    ksteps_all * 1024,
                                    c,
                                    m_pad * 4,
                                    kc / K_STEP,
                                    k0 == 0,
                                );
                            }
                            r += 32;
                        }
                    }
                    a0 = a1;
                }
                k0 += kc;
            }
            // SAFETY: releases this thread's tile state (configured above).
            unsafe { x86::release() };
            // SAFETY: this task owns output columns 32 g0 .. 32 (g0 + ng) of `y` ([m, n_out]).
            unsafe { write_columns(chunk, g0, m, m_pad, n_out, out) };
        };
        over_groups(ct, m_pad, parallel, run);
    });
    y
}

/// `run(g0, chunk)` over the accumulators `ct` `[n_pad, m_pad]` in whole 32-row groups
/// (`g0` the chunk's first group): about four tasks per Rayon thread when `parallel`, else
/// one call.
fn over_groups(
    ct: &mut [f32],
    m_pad: usize,
    parallel: bool,
    run: impl Fn(usize, &mut [f32]) + Sync,
) {
    let groups = ct.len() / (32 * m_pad);
    let threads = rayon::current_num_threads();
    if parallel && threads > 1 && groups > 1 {
        let per_task = groups.div_ceil(threads * 4).max(1);
        ct.par_chunks_mut(per_task * 32 * m_pad)
            .enumerate()
            .for_each(|(t, chunk)| run(t * per_task, chunk));
    } else {
        run(0, ct);
    }
}

/// A task's accumulator rows `chunk` (groups `g0 ..`, rows `m_pad` apart) into their output
/// columns `32 g0 .. min(32 (g0 + groups), n_out)` of `y [m, n_out]`, 32 x 32 blocks at a time.
///
/// # Safety
/// `out` addresses `m * n_out` f32 and no other task writes these columns meanwhile.
unsafe fn write_columns(
    chunk: &[f32],
    g0: usize,
    m: usize,
    m_pad: usize,
    n_out: usize,
    out: OutPtr,
) {
    let ng = chunk.len() / (32 * m_pad);
    let j_end = ((g0 + ng) * 32).min(n_out);
    for i0 in (0..m).step_by(32) {
        for j0 in (g0 * 32..j_end).step_by(32) {
            for i in i0..(i0 + 32).min(m) {
                for j in j0..(j0 + 32).min(j_end) {
                    // SAFETY: i < m, j < n_out: inside `y`; the caller owns column j.
                    unsafe { *out.get().add(i * n_out + j) = chunk[(j - g0 * 32) * m_pad + i] };
                }
            }
        }
    }
}

/// Whether this process can run AMX-INT8 tiles (AMX-TILE and AMX-INT8, `CPUID.(7,0):EDX` bit
/// 25, on top of [`amx_bf16_available`]'s checks).
///
/// Checked once: `QKernel::detect` asks on every product, and `cpuid` traps to the
/// hypervisor on a VM.
pub fn amx_int8_available() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            amx_bf16_available() && std::arch::x86_64::__cpuid_count(7, 0).edx & (1 << 25) != 0
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// `y [m, n_out] = dequant(w) · xᵀ` for `w` `[n_out, n]` in Q8_0 / Q4_0 blocks (read from the
/// packed bytes) and the activations already quantized to 8-bit blocks (`acts`,
/// [`super::qmatmul::quantize_activations`]), on AMX-INT8 tiles: per block of 32, the integer
/// sums `Σ q_w q_x` of 16 x 16 (weight row, activation row) pairs by `tdpbssd` (Q4_0's
/// nibbles unpacked to `nibble - 8` first), then `y += (d_w d_x) * sum` in f32 (AVX-512 FMA),
/// block after block in order. The integer block sums are those of the VNNI kernels, so
/// this differs from them only in the order of the f32 sums; each output sums its own blocks
/// whatever the other rows are. Output columns split across Rayon threads in 32-column groups
/// when `parallel`.
///
/// # Panics
/// When the caller breaks the contract: [`amx_int8_available`] false, `n` not a multiple of
/// 32, `acts` not `[m, n]`, or `w` not `n_out` rows of `n / 32` blocks of `kind`.
pub fn q_products(
    kind: super::qmatmul::QuantKind,
    w: &[u8],
    n_out: usize,
    acts: &super::qmatmul::QuantizedRows,
    parallel: bool,
) -> Vec<f32> {
    let (m, n) = (acts.m, acts.n);
    assert!(amx_int8_available() && n.is_multiple_of(K_STEP) && n > 0);
    let nb = n / K_STEP;
    let bb = kind.block_bytes();
    let row_bytes = nb * bb;
    assert!(w.len() == n_out * row_bytes && acts.q.len() == m * n && acts.d.len() == m * nb);
    let mut y = vec![0f32; m * n_out];
    if m == 0 || n_out == 0 {
        return y;
    }
    let m_pad = m.next_multiple_of(32);
    let n_pad = n_out.next_multiple_of(32);
    // B tiles: `[m_pad / 16][nb][8 quads][16 rows]` u32 (four i8 of one row each), 512 bytes
    // per (16 rows, block); activation scales by block, `[nb][m_pad]`, padded rows 0.
    SCRATCH.with_borrow_mut(|(xp, ct)| {
        xp.clear();
        xp.resize(m_pad * n / 4, 0);
        xp.par_chunks_mut(4 * n).enumerate().for_each(|(rb, blk)| {
            for r in 0..16 {
                let row = rb * 16 + r;
                if row >= m {
                    break;
                }
                let src = &acts.q[row * n..(row + 1) * n];
                for (b, tile) in blk.chunks_exact_mut(128).enumerate() {
                    for p in 0..8 {
                        let q = &src[b * 32 + 4 * p..b * 32 + 4 * p + 4];
                        tile[p * 16 + r] =
                            u32::from_le_bytes([q[0] as u8, q[1] as u8, q[2] as u8, q[3] as u8]);
                    }
                }
            }
        });
        let mut dxt = vec![0f32; nb * m_pad];
        for r in 0..m {
            for b in 0..nb {
                dxt[b * m_pad + r] = acts.d[r * nb + b];
            }
        }
        // f32 accumulators `[n_pad, m_pad]`, zeroed (every block adds to them).
        ct.clear();
        ct.resize(n_pad * m_pad, 0.0);
        let out = OutPtr(y.as_mut_ptr());
        let (xp, dxt) = (&xp[..], &dxt[..]);
        let run = |g0: usize, chunk: &mut [f32]| {
            let cfg = TileConfig::int8_blocks();
            // SAFETY: amx_int8_available() checked the CPU and the OS permission.
            unsafe { x86::load_config(&cfg) };
            let ng = chunk.len() / (32 * m_pad);
            let kb = (KC / K_STEP).min(nb);
            // Per k block of the group: `[kb][32 rows][32]` i8 weights and `[kb][32]` scales.
            let mut wq = vec![0i8; kb * 32 * 32];
            let mut dw = vec![0f32; kb * 32];
            let mut tmp = [0i32; 4 * 256];
            for gg in 0..ng {
                let g = g0 + gg;
                let mut b0 = 0;
                while b0 < nb {
                    let bn = kb.min(nb - b0);
                    // SAFETY: AMX CPUs have AVX-512F/BW and F16C; rows g * 32 .. of `w` are
                    // checked against n_out inside.
                    unsafe {
                        unpack_group(kind, w, row_bytes, n_out, g * 32, b0, bn, &mut wq, &mut dw)
                    };
                    for r in (0..m_pad).step_by(32) {
                        for bi in 0..bn {
                            let b = b0 + bi;
                            // SAFETY: the weight tiles (two of 16 rows x 32 bytes) lie in `wq`,
                            // the activation tiles (rows r .. r + 32 <= m_pad, block b < nb) in
                            // `xp`, `tmp` holds four 16 x 16 i32 tiles; configuration loaded.
                            unsafe {
                                x86::int8_block_2x2(
                                    wq.as_ptr().add(bi * 1024),
                                    xp.as_ptr().add(((r / 16) * nb + b) * 128).cast(),
                                    nb * 512,
                                    tmp.as_mut_ptr(),
                                );
                            }
                            let acc = &mut chunk[gg * 32 * m_pad..(gg + 1) * 32 * m_pad];
                            // SAFETY: AMX CPUs have AVX-512F and FMA.
                            unsafe {
                                scale_add(
                                    &tmp,
                                    &dw[bi * 32..bi * 32 + 32],
                                    &dxt[b * m_pad + r..b * m_pad + r + 32],
                                    acc,
                                    m_pad,
                                    r,
                                );
                            }
                        }
                    }
                    b0 += bn;
                }
            }
            // SAFETY: releases this thread's tile state (configured above).
            unsafe { x86::release() };
            // SAFETY: this task owns output columns 32 g0 .. 32 (g0 + ng) of `y` ([m, n_out]).
            unsafe { write_columns(chunk, g0, m, m_pad, n_out, out) };
        };
        over_groups(ct, m_pad, parallel, run);
    });
    y
}

/// Weight rows `j0 .. j0 + 32` (rows past `n_out` as zeros), blocks `b0 .. b0 + bn`, as i8
/// values (`q`, or `nibble - 8`) into `wq` `[bn][32 rows][32]` and f32 scales into `dw`
/// `[bn][32 rows]`.
///
/// # Safety
/// On x86_64, the CPU has AVX-512F/BW and F16C.
#[allow(clippy::too_many_arguments)]
#[cfg_attr(
    target_arch = "x86_64",
    target_feature(enable = "avx512f,avx512bw,f16c")
)]
unsafe fn unpack_group(
    kind: super::qmatmul::QuantKind,
    w: &[u8],
    row_bytes: usize,
    n_out: usize,
    j0: usize,
    b0: usize,
    bn: usize,
    wq: &mut [i8],
    dw: &mut [f32],
) {
    let bb = kind.block_bytes();
    for t in 0..32 {
        let j = j0 + t;
        if j >= n_out {
            for bi in 0..bn {
                wq[(bi * 32 + t) * 32..(bi * 32 + t + 1) * 32].fill(0);
                dw[bi * 32 + t] = 0.0;
            }
            continue;
        }
        let row = &w[j * row_bytes + b0 * bb..j * row_bytes + (b0 + bn) * bb];
        for (bi, blk) in row.chunks_exact(bb).enumerate() {
            dw[bi * 32 + t] = half::f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
            let dst: &mut [i8; 32] = (&mut wq[(bi * 32 + t) * 32..(bi * 32 + t + 1) * 32])
                .try_into()
                .expect("32 values");
            match kind {
                super::qmatmul::QuantKind::Q8_0 => {
                    let src: &[u8; 32] = blk[2..34].try_into().expect("32 quants");
                    for i in 0..32 {
                        dst[i] = src[i] as i8;
                    }
                }
                super::qmatmul::QuantKind::Q4_0 => {
                    let src: &[u8; 16] = blk[2..18].try_into().expect("16 bytes of nibbles");
                    for i in 0..16 {
                        dst[i] = (src[i] & 0x0F) as i8 - 8;
                        dst[i + 16] = (src[i] >> 4) as i8 - 8;
                    }
                }
            }
        }
    }
}

/// `acc[t][r + i] += (dw[t] * dx[i]) * sums` for the 32 x 32 block of integer sums in `tmp`
/// (tile `2 * (t / 16) + i / 16`, row `t % 16`, column `i % 16`), `acc` rows `m_pad` apart.
///
/// # Safety
/// On x86_64, the CPU has AVX-512F and FMA (every AMX CPU does).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,fma")]
unsafe fn scale_add(
    tmp: &[i32; 1024],
    dw: &[f32],
    dx: &[f32],
    acc: &mut [f32],
    m_pad: usize,
    r: usize,
) {
    use std::arch::x86_64::*;
    assert!(
        dw.len() >= 32 && dx.len() >= 32 && r + 32 <= m_pad && acc.len() >= 31 * m_pad + r + 32
    );
    // SAFETY: every load and store below is inside `tmp` (1024 values), `dx` (32), and row t
    // < 32 of `acc` at columns r .. r + 32 (asserted above).
    unsafe {
        let dx0 = _mm512_loadu_ps(dx.as_ptr());
        let dx1 = _mm512_loadu_ps(dx.as_ptr().add(16));
        for (t, &dwt) in dw.iter().enumerate().take(32) {
            let w = _mm512_set1_ps(dwt);
            let row = acc.as_mut_ptr().add(t * m_pad + r);
            let base = tmp.as_ptr().add(2 * (t / 16) * 256 + (t % 16) * 16);
            for (h, dxv) in [(0usize, dx0), (1, dx1)] {
                let sums = _mm512_cvtepi32_ps(_mm512_loadu_si512(base.add(h * 256).cast()));
                let o = row.add(h * 16);
                let v = _mm512_fmadd_ps(_mm512_mul_ps(w, dxv), sums, _mm512_loadu_ps(o));
                _mm512_storeu_ps(o, v);
            }
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn scale_add(_: &[i32; 1024], _: &[f32], _: &[f32], _: &mut [f32], _: usize, _: usize) {
    unreachable!("no AMX off x86_64")
}

/// The 64-byte tile configuration `ldtilecfg` reads (palette 1).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    /// [`q_products`]' tiles: accumulators 0..4 16 rows x 64 bytes (16 i32), weights 4 and 5
    /// 16 rows x 32 bytes (one block of 32 i8), activations 6 and 7 8 rows x 64 bytes (16 rows
    /// of four i8 per 4-column quad).
    fn int8_blocks() -> Self {
        let mut c = Self::all_16x64();
        c.colsb[4] = 32;
        c.colsb[5] = 32;
        c.rows[6] = 8;
        c.rows[7] = 8;
        c
    }

    /// Tiles 0..8 all 16 rows x 64 bytes.
    fn all_16x64() -> Self {
        let mut c = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            c.colsb[t] = 64;
            c.rows[t] = 16;
        }
        c
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The tile instructions, by inline assembly (Rust's AMX intrinsics are unstable). The
    //! compiler never allocates `tmm` registers, so tile contents live from one `asm!` to the
    //! next within a thread.

    use super::TileConfig;
    use std::arch::asm;

    /// `ldtilecfg`.
    ///
    /// # Safety
    /// AMX available to this process ([`super::amx_bf16_available`]).
    pub(super) unsafe fn load_config(cfg: &TileConfig) {
        // SAFETY: the caller's contract; `cfg` is 64 readable bytes.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) cfg as *const TileConfig, options(nostack, readonly))
        };
    }

    /// `tilerelease`.
    ///
    /// # Safety
    /// AMX available to this process.
    pub(super) unsafe fn release() {
        // SAFETY: the caller's contract.
        unsafe { asm!("tilerelease", options(nostack, nomem)) };
    }

    /// Two 16-row weight tiles x two 16-row activation tiles over `steps` k steps: the four
    /// accumulator tiles are zeroed (`first`) or loaded from `c` (rows `c_stride` bytes
    /// apart, weight tile `t` at row `16 t`, activation tile `i` at column `16 i`), advanced
    /// by `tdpbf16ps`, and stored to `c`.
    ///
    /// # Safety
    /// Tiles configured 16 x 64; `a` .. 32 weight rows of `a_stride` bytes with `64 steps`
    /// readable bytes each; `b` .. `steps` packed activation tiles (1 KB apart), and the same
    /// `b_next` bytes further for the second activation tile; `c` .. 32 rows of 32 f32.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block_2x2(
        a: *const u8,
        a_stride: usize,
        b: *const u8,
        b_next: usize,
        c: *mut f32,
        c_stride: usize,
        steps: usize,
        first: bool,
    ) {
        // SAFETY (every block): addresses within the caller's ranges.
        unsafe {
            let c00 = c.cast::<u8>();
            let c01 = c00.add(64);
            let c10 = c00.add(16 * c_stride);
            let c11 = c10.add(64);
            if first {
                asm!(
                    "tilezero tmm0",
                    "tilezero tmm1",
                    "tilezero tmm2",
                    "tilezero tmm3",
                    options(nostack, nomem),
                );
            } else {
                asm!(
                    "tileloadd tmm0, [{c00} + {cs}*1]",
                    "tileloadd tmm1, [{c01} + {cs}*1]",
                    "tileloadd tmm2, [{c10} + {cs}*1]",
                    "tileloadd tmm3, [{c11} + {cs}*1]",
                    c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11,
                    cs = in(reg) c_stride,
                    options(nostack, readonly),
                );
            }
            let a1 = a.add(16 * a_stride);
            let b1 = b.add(b_next);
            tile_steps(a, a1, a_stride, b, b1, steps);
            asm!(
                "tilestored [{c00} + {cs}*1], tmm0",
                "tilestored [{c01} + {cs}*1], tmm1",
                "tilestored [{c10} + {cs}*1], tmm2",
                "tilestored [{c11} + {cs}*1], tmm3",
                c00 = in(reg) c00, c01 = in(reg) c01, c10 = in(reg) c10, c11 = in(reg) c11,
                cs = in(reg) c_stride,
                options(nostack),
            );
        }
    }

    /// One block of 32: the four accumulators zeroed, then `tdpbssd` of two weight tiles
    /// (`a` and `a + 512`, rows 32 bytes apart) by two activation tiles (`b` and `b + b_next`,
    /// rows 64 bytes apart), stored to `out` as four 16 x 16 i32 tiles (1 KB apart).
    ///
    /// # Safety
    /// Tiles configured by `TileConfig::int8_blocks`; 1 KB readable at `a`, 512 bytes at `b`
    /// and at `b + b_next`; 4 KB writable at `out`.
    pub(super) unsafe fn int8_block_2x2(a: *const i8, b: *const u8, b_next: usize, out: *mut i32) {
        // SAFETY: the caller's contract.
        unsafe {
            asm!(
                "tilezero tmm0",
                "tilezero tmm1",
                "tilezero tmm2",
                "tilezero tmm3",
                "tileloadd tmm4, [{a0} + {s32}*1]",
                "tileloadd tmm5, [{a1} + {s32}*1]",
                "tileloadd tmm6, [{b0} + {s64}*1]",
                "tileloadd tmm7, [{b1} + {s64}*1]",
                "tdpbssd tmm0, tmm4, tmm6",
                "tdpbssd tmm1, tmm4, tmm7",
                "tdpbssd tmm2, tmm5, tmm6",
                "tdpbssd tmm3, tmm5, tmm7",
                "tilestored [{o0} + {s64}*1], tmm0",
                "tilestored [{o1} + {s64}*1], tmm1",
                "tilestored [{o2} + {s64}*1], tmm2",
                "tilestored [{o3} + {s64}*1], tmm3",
                a0 = in(reg) a, a1 = in(reg) a.add(512),
                b0 = in(reg) b, b1 = in(reg) b.add(b_next),
                o0 = in(reg) out, o1 = in(reg) out.add(256), o2 = in(reg) out.add(512), o3 = in(reg) out.add(768),
                s32 = in(reg) 32usize, s64 = in(reg) 64usize,
                options(nostack),
            );
        }
    }

    /// `steps >= 1` k steps of the 2 x 2 block on the loaded accumulators `tmm0..tmm3`:
    /// weight tiles from `a0` / `a1` (rows `a_stride` bytes apart), activation tiles from
    /// `b0` / `b1`, each advancing 64 / 1024 bytes per step.
    ///
    /// # Safety
    /// As [`block_2x2`]'s reads, for `steps` steps from these pointers.
    #[inline(always)]
    unsafe fn tile_steps(
        a0: *const u8,
        a1: *const u8,
        a_stride: usize,
        b0: *const u8,
        b1: *const u8,
        steps: usize,
    ) {
        // SAFETY: the caller's contract.
        unsafe {
            asm!(
                "2:",
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {s64}*1]",
                "tileloadd tmm7, [{b1} + {s64}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                "add {a0}, 64",
                "add {a1}, 64",
                "add {b0}, 1024",
                "add {b1}, 1024",
                "dec {n}",
                "jnz 2b",
                a0 = inout(reg) a0 => _, a1 = inout(reg) a1 => _,
                b0 = inout(reg) b0 => _, b1 = inout(reg) b1 => _,
                sa = in(reg) a_stride, s64 = in(reg) 64usize,
                n = inout(reg) steps => _,
                options(nostack, readonly),
            );
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod x86 {
    use super::TileConfig;
    pub(super) unsafe fn int8_block_2x2(_: *const i8, _: *const u8, _: usize, _: *mut i32) {
        unreachable!("no AMX off x86_64")
    }
    pub(super) unsafe fn load_config(_: &TileConfig) {
        unreachable!("no AMX off x86_64")
    }
    pub(super) unsafe fn release() {}
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn block_2x2(
        _: *const u8,
        _: usize,
        _: *const u8,
        _: usize,
        _: *mut f32,
        _: usize,
        _: usize,
        _: bool,
    ) {
        unreachable!("no AMX off x86_64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    fn to_bf16(v: &[f32]) -> Vec<u16> {
        v.iter()
            .map(|&x| half::bf16::from_f32(x).to_bits())
            .collect()
    }

    /// Q8_0 / Q4_0 on tiles: each row of a batch bit-identical to that row alone (the
    /// bounds against the exact product are `tests/qmatmul.rs`'s, which runs every kernel).
    #[test]
    fn int8_rows_do_not_depend_on_the_batch() {
        use crate::nn::qmatmul::{
            PackedMatrix, QKernel, QuantKind, qmatmul_with, quantize_activations,
        };
        if !amx_int8_available() {
            eprintln!("no AMX-INT8 here: QKernel::AmxInt8 is unavailable");
            assert!(!QKernel::AmxInt8.available());
            return;
        }
        for kind in [QuantKind::Q8_0, QuantKind::Q4_0] {
            for &(m, n_out, n) in &[(2, 32, 32), (5, 40, 64), (37, 70, 1088), (70, 33, 96)] {
                let x = values(m * n, (m + n) as u32);
                let mut bytes = Vec::new();
                let mut s = 0x9E37_79B9u32 ^ (n_out as u32);
                for _ in 0..n_out * n / 32 {
                    bytes.extend_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
                    for _ in 2..kind.block_bytes() {
                        s ^= s << 13;
                        s ^= s >> 17;
                        s ^= s << 5;
                        bytes.push((s >> 24) as u8);
                    }
                }
                let y = q_products(kind, &bytes, n_out, &quantize_activations(&x, m, n), true);
                if m >= AMX_INT8_MIN_ROWS {
                    let w = PackedMatrix::new(kind, n_out, n, bytes.as_slice()).unwrap();
                    assert_eq!(qmatmul_with(&x, m, &w, QKernel::AmxInt8).unwrap(), y);
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

    /// The packing's rounding is `half`'s (the AVX-512 path's): every f32 class.
    #[test]
    fn rounding_matches_half() {
        let mut vals = vec![
            0.0f32,
            -0.0,
            1.0,
            f32::MAX,
            f32::MIN_POSITIVE,
            1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            -f32::NAN,
        ];
        vals.extend(values(100_000, 9).iter().map(|v| v * 1e3));
        vals.extend((0..100_000u32).map(|i| f32::from_bits(i.wrapping_mul(2654435761))));
        for v in vals {
            let want = u32::from(half::bf16::from_f32(v).to_bits());
            let got = bf16_bits(v);
            if v.is_nan() {
                assert!(half::bf16::from_bits(got as u16).is_nan(), "{v}");
            } else {
                assert_eq!(got, want, "{v:e} ({:#x})", v.to_bits());
            }
        }
    }

    /// Each output within the f32 summation bound of the exact (f64) product of the bf16
    /// values, over shapes with partial weight groups, partial activation tiles and a k block
    /// edge; and every row of a batch bit-identical to the same row computed alone.
    #[test]
    fn tiles_give_the_bf16_product_and_rows_do_not_depend_on_the_batch() {
        if !amx_bf16_available() {
            eprintln!("no AMX-BF16 here: the tile path is not taken (amx_takes is false)");
            assert!(!amx_takes(64));
            return;
        }
        for &(m, n_out, n) in &[
            (1, 32, 32),
            (3, 40, 64),
            (17, 70, 1056),
            (37, 33, 2080),
            (64, 96, 96),
        ] {
            let x = values(m * n, (m * 3 + n) as u32);
            let xb = to_bf16(&x);
            let wb = to_bf16(&values(n_out * n, n_out as u32));
            let w: Vec<u8> = wb.iter().flat_map(|v| v.to_le_bytes()).collect();
            let y = bf16_products(&x, m, &w, n_out, n, true);
            let f = |b: u16| f64::from(f32::from_bits(u32::from(b) << 16));
            let u = f64::from(f32::EPSILON) / 2.0;
            let gamma = (n as f64 + 1.0) * u / (1.0 - (n as f64 + 1.0) * u);
            for j in 0..n_out {
                for i in 0..m {
                    let (mut s, mut a) = (0f64, 0f64);
                    for k in 0..n {
                        let p = f(xb[i * n + k]) * f(wb[j * n + k]);
                        s += p;
                        a += p.abs();
                    }
                    let g = f64::from(y[i * n_out + j]);
                    assert!(
                        (g - s).abs() <= gamma * a + 1e-30,
                        "[{m},{n_out},{n}] ({i},{j}): {g} vs {s}"
                    );
                }
            }
            for i in 0..m {
                let one = bf16_products(&x[i * n..(i + 1) * n], 1, &w, n_out, n, false);
                for j in 0..n_out {
                    assert_eq!(
                        one[j].to_bits(),
                        y[i * n_out + j].to_bits(),
                        "[{m},{n_out},{n}] row {i} out {j}"
                    );
                }
            }
        }
    }
}
