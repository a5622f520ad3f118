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
        let groups = n_pad / 32;
        let threads = rayon::current_num_threads();
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
            // This task's output columns 32 g0 .. (its weight rows), 32 x 32 blocks at a time.
            let j_end = ((g0 + ng) * 32).min(n_out);
            for i0 in (0..m).step_by(32) {
                for j0 in (g0 * 32..j_end).step_by(32) {
                    for i in i0..(i0 + 32).min(m) {
                        for j in j0..(j0 + 32).min(j_end) {
                            // SAFETY: i < m, j < n_out: inside `y`; column j belongs to this
                            // task alone.
                            unsafe {
                                *out.get().add(i * n_out + j) = chunk[(j - g0 * 32) * m_pad + i]
                            };
                        }
                    }
                }
            }
        };
        if parallel && threads > 1 && groups > 1 {
            let per_task = groups.div_ceil(threads * 4).max(1);
            ct.par_chunks_mut(per_task * 32 * m_pad)
                .enumerate()
                .for_each(|(t, chunk)| run(t * per_task, chunk));
        } else {
            run(0, ct);
        }
    });
    y
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
