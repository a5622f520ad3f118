//! GELU (`nn.GELU()` / `F.gelu`, the exact erf form `0.5·x·(1 + erf(x/√2))`), split across
//! the Rayon threads on Flex.
//!
//! Why: Burn Flex 0.22 computes `gelu` in one single-threaded pass of `libm::erff`
//! (`burn-flex` `ops/activation.rs`), one core for the `[1500, 1536]` activations of each
//! Whisper encoder MLP. [`gelu`] evaluates the same expression in chunks on every thread,
//! eight lanes at a time with [`erff8`], an AVX2 transcription of `libm::erff` (and of the
//! `expf` it calls) operation for operation, so its values are bit for bit Burn's
//! (`tests/fused_kernels.rs`: every 97th f32 bit pattern against `libm::erff`, and the
//! tensor against Burn's `gelu`); on other devices (ndarray, wgpu, the capture device used by
//! `voxtrace export`) it is Burn's `gelu` itself.

use crate::nn::linear::map_flex_f32;
use burn::tensor::{Tensor, activation};

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

/// `gelu(x)` elementwise. On Flex with an f32 tensor of at least [`PARALLEL_MIN_ELEMENTS`]
/// elements the values are computed by [`gelu_scalar`] on all Rayon threads; otherwise this is
/// `burn::tensor::activation::gelu`.
///
/// # Shapes
/// - `x`: any shape (`[batch, seq, intermediate_size]` in the MLPs, `[batch, d_model, frames]`
///   after the conv stems)
/// - returns the shape of `x`
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.shape().num_elements() < PARALLEL_MIN_ELEMENTS {
        return activation::gelu(x);
    }
    map_flex_f32(&x, CHUNK, gelu_slice).unwrap_or_else(|| activation::gelu(x))
}

/// `out[i] = gelu_scalar(src[i])`, eight at a time by [`erff8`] when AVX2 is available
/// (the same bits as the scalar loop).
///
/// # Shapes
/// - `src`: `[n]`
/// - `out`: `[n]`, overwritten
///
/// # Panics
/// When `src` and `out` differ in length (a caller bug, not an input error).
pub fn gelu_slice(src: &[f32], out: &mut [f32]) {
    assert_eq!(
        src.len(),
        out.len(),
        "gelu_slice: input and output lengths differ"
    );
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_mut))]
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 was detected; the lengths are equal (checked above).
        done = unsafe { gelu_slice_avx2(src, out) };
    }
    for (o, &v) in out[done..].iter_mut().zip(&src[done..]) {
        *o = gelu_scalar(v);
    }
}

/// The whole groups of eight of [`gelu_slice`]; returns how many values it wrote.
///
/// # Safety
/// AVX2 must be available and `out.len() == src.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gelu_slice_avx2(src: &[f32], out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let n8 = src.len() / 8 * 8;
    let (s, o) = (src.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    while i < n8 {
        // SAFETY: i + 8 <= len of both slices; AVX2 per the contract.
        unsafe {
            let x = crate::nn::linear::load8(s.add(i));
            let e = erff8(_mm256_div_ps(x, _mm256_set1_ps(std::f32::consts::SQRT_2)));
            let g = _mm256_mul_ps(
                _mm256_mul_ps(_mm256_set1_ps(0.5), x),
                _mm256_add_ps(_mm256_set1_ps(1.0), e),
            );
            _mm256_storeu_ps(o.add(i), g);
        }
        i += 8;
    }
    n8
}

/// `erf` of eight lanes, bit for bit `libm::erff` (libm 0.2, the FreeBSD `s_erff.c`
/// port): the same polynomials, the same operations in the same order, no fused
/// multiply-add, and `expf` likewise reproduced by `expf8_erfc_domain` (private). Every range of
/// `libm::erff` is computed for all lanes and the lane's own range selected, so there is no
/// branch per value. `tests/fused_kernels.rs` checks the lanes against `libm::erff` on every
/// 97th f32 bit pattern (NaNs and infinities included).
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
// The constants are libm's literals as written there, so they can be checked by eye.
#[allow(clippy::excessive_precision)]
#[target_feature(enable = "avx2")]
pub unsafe fn erff8(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    // Coefficients of libm 0.2.16 `src/math/erff.rs`.
    const ERX: f32 = 8.4506291151e-01;
    const EFX8: f32 = 1.0270333290e+00;
    const PP: [f32; 5] = [
        1.2837916613e-01,
        -3.2504209876e-01,
        -2.8481749818e-02,
        -5.7702702470e-03,
        -2.3763017452e-05,
    ];
    const QQ: [f32; 5] = [
        3.9791721106e-01,
        6.5022252500e-02,
        5.0813062117e-03,
        1.3249473704e-04,
        -3.9602282413e-06,
    ];
    const PA: [f32; 7] = [
        -2.3621185683e-03,
        4.1485610604e-01,
        -3.7220788002e-01,
        3.1834661961e-01,
        -1.1089469492e-01,
        3.5478305072e-02,
        -2.1663755178e-03,
    ];
    const QA: [f32; 6] = [
        1.0642088205e-01,
        5.4039794207e-01,
        7.1828655899e-02,
        1.2617121637e-01,
        1.3637083583e-02,
        1.1984500103e-02,
    ];
    const RA: [f32; 8] = [
        -9.8649440333e-03,
        -6.9385856390e-01,
        -1.0558626175e+01,
        -6.2375331879e+01,
        -1.6239666748e+02,
        -1.8460508728e+02,
        -8.1287437439e+01,
        -9.8143291473e+00,
    ];
    const SA: [f32; 8] = [
        1.9651271820e+01,
        1.3765776062e+02,
        4.3456588745e+02,
        6.4538726807e+02,
        4.2900814819e+02,
        1.0863500214e+02,
        6.5702495575e+00,
        -6.0424413532e-02,
    ];
    const RB: [f32; 7] = [
        -9.8649431020e-03,
        -7.9928326607e-01,
        -1.7757955551e+01,
        -1.6063638306e+02,
        -6.3756646729e+02,
        -1.0250950928e+03,
        -4.8351919556e+02,
    ];
    const SB: [f32; 7] = [
        3.0338060379e+01,
        3.2579251099e+02,
        1.5367296143e+03,
        3.1998581543e+03,
        2.5530502930e+03,
        4.7452853394e+02,
        -2.2440952301e+01,
    ];

    // Macros, not closures, so that every intrinsic is inlined under this function's
    // target features.
    macro_rules! s1 {
        ($v:expr) => {
            _mm256_set1_ps($v)
        };
    }
    macro_rules! add {
        ($a:expr, $b:expr $(,)?) => {
            _mm256_add_ps($a, $b)
        };
    }
    macro_rules! mul {
        ($a:expr, $b:expr $(,)?) => {
            _mm256_mul_ps($a, $b)
        };
    }
    // c[0] + s·(c[1] + s·(… + s·c[n-1])), innermost first, as libm writes it.
    macro_rules! horner {
        ($s:expr, $c:expr) => {{
            let (s, c): (__m256, &[f32]) = ($s, $c);
            let mut acc = s1!(c[c.len() - 1]);
            for &k in c[..c.len() - 1].iter().rev() {
                acc = add!(s1!(k), mul!(s, acc));
            }
            acc
        }};
    }
    // 1 + s·(c[0] + s·(c[1] + …)).
    macro_rules! one_plus {
        ($s:expr, $c:expr) => {
            add!(s1!(1.0), mul!($s, horner!($s, $c)))
        };
    }

    let sign_bit = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
    let sign = _mm256_and_ps(x, sign_bit);
    let ax = _mm256_andnot_ps(sign_bit, x);
    let ix = _mm256_castps_si256(ax);
    // ix < bound, as a lane mask (ix has its top bit clear, so the signed compare is right).
    macro_rules! below {
        ($bound:expr) => {
            _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32($bound), ix))
        };
    }

    // |x| < 2^-28.
    let tiny = mul!(s1!(0.125), add!(mul!(s1!(8.0), x), mul!(s1!(EFX8), x)));
    // |x| < 0.84375: x + x·r/s with z = x².
    let z = mul!(x, x);
    let small = add!(
        x,
        mul!(x, _mm256_div_ps(horner!(z, &PP), one_plus!(z, &QQ)))
    );
    // |x| < 1.25: 1 − erfc1(x), erfc1 = (1 − erx) − p/q at s = |x| − 1.
    let s = _mm256_sub_ps(ax, s1!(1.0));
    let erfc1 = _mm256_sub_ps(
        _mm256_sub_ps(s1!(1.0), s1!(ERX)),
        _mm256_div_ps(horner!(s, &PA), one_plus!(s, &QA)),
    );
    let mid = _mm256_sub_ps(s1!(1.0), erfc1);
    // |x| < 6: 1 − erfc2(x).
    let s = _mm256_div_ps(s1!(1.0), mul!(ax, ax));
    let near = below!(0x4036db6d); // |x| < 1/0.35
    let r = _mm256_blendv_ps(horner!(s, &RB), horner!(s, &RA), near);
    let big_s = _mm256_blendv_ps(one_plus!(s, &SB), one_plus!(s, &SA), near);
    let zt = _mm256_castsi256_ps(_mm256_and_si256(
        ix,
        _mm256_set1_epi32(0xffffe000u32 as i32),
    ));
    let neg_zt = _mm256_xor_ps(zt, sign_bit);
    // SAFETY (both calls): AVX2 is available (this function's contract).
    let e1 = unsafe { expf8_erfc_domain(_mm256_sub_ps(mul!(neg_zt, zt), s1!(0.5625))) };
    let e2 = unsafe {
        expf8_erfc_domain(add!(
            mul!(_mm256_sub_ps(zt, ax), add!(zt, ax)),
            _mm256_div_ps(r, big_s),
        ))
    };
    let erfc2 = _mm256_div_ps(mul!(e1, e2), ax);
    let far = _mm256_sub_ps(s1!(1.0), erfc2);
    // |x| >= 6: 1 − 2^-120.
    let huge = _mm256_sub_ps(s1!(1.0), s1!(f32::from_bits(0x0380_0000)));

    // Ranges where libm returns ±y with y > 0: the sign is put back by xor.
    let mut y = _mm256_blendv_ps(huge, far, below!(0x40c00000));
    y = _mm256_blendv_ps(y, mid, below!(0x3fa00000));
    y = _mm256_xor_ps(y, sign);
    y = _mm256_blendv_ps(y, small, below!(0x3f580000));
    y = _mm256_blendv_ps(y, tiny, below!(0x31800000));
    // ±inf and NaN: 1 − 2·sign + 1/x.
    let sign01 = _mm256_cvtepi32_ps(_mm256_srli_epi32::<31>(_mm256_castps_si256(x)));
    let special = add!(
        _mm256_sub_ps(s1!(1.0), mul!(s1!(2.0), sign01)),
        _mm256_div_ps(s1!(1.0), x)
    );
    let finite = below!(0x7f800000);
    _mm256_blendv_ps(special, y, finite)
}

/// `libm::expf` (libm 0.2.16 `src/math/expf.rs`, FreeBSD `e_expf.c`) of eight lanes, bit for
/// bit, for the arguments [`erff8`] passes: `|x| < 87.3` (the overflow and underflow branches
/// are not reproduced) and results in the normal range (`scalbnf` by `2^k` is one exact
/// multiply there). Arguments `|x| <= 2^-14` return `1 + x` as libm does.
///
/// # Safety
/// AVX2 must be available.
#[cfg(target_arch = "x86_64")]
// The constants are libm's literals as written there, so they can be checked by eye.
#[allow(clippy::excessive_precision)]
#[target_feature(enable = "avx2")]
unsafe fn expf8_erfc_domain(x: std::arch::x86_64::__m256) -> std::arch::x86_64::__m256 {
    use std::arch::x86_64::*;
    const LN2_HI: f32 = 6.9314575195e-01;
    const LN2_LO: f32 = 1.4286067653e-06;
    const INV_LN2: f32 = 1.4426950216e+00;
    const P1: f32 = 1.6666625440e-1;
    const P2: f32 = -2.7667332906e-3;
    macro_rules! s1 {
        ($v:expr) => {
            _mm256_set1_ps($v)
        };
    }
    let sign_bit = _mm256_castsi256_ps(_mm256_set1_epi32(i32::MIN));
    // All ones in the lanes with the sign bit set.
    let negative = _mm256_srai_epi32::<31>(_mm256_castps_si256(x));
    let hx = _mm256_castps_si256(_mm256_andnot_ps(sign_bit, x));
    macro_rules! above {
        ($bound:expr) => {
            _mm256_cmpgt_epi32(hx, _mm256_set1_epi32($bound))
        };
    }
    // k: trunc(x/ln2 ± 1/2) above 1.5·ln2, ±1 above ln2/2, else 0.
    let half = _mm256_blendv_ps(s1!(0.5), s1!(-0.5), _mm256_castsi256_ps(negative));
    let k_far = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(s1!(INV_LN2), x), half));
    // 1 − 2·sign: 1 or −1 (negative is 0 or −1 per lane).
    let k_one = _mm256_add_epi32(_mm256_set1_epi32(1), _mm256_add_epi32(negative, negative));
    let k = _mm256_blendv_epi8(
        _mm256_and_si256(k_one, above!(0x3eb17218)),
        k_far,
        above!(0x3f851592),
    );
    let kf = _mm256_cvtepi32_ps(k);
    // k = 0 gives hi = x − 0 = x, lo = 0, x − lo = x: libm's `k = 0` branch.
    let hi = _mm256_sub_ps(x, _mm256_mul_ps(kf, s1!(LN2_HI)));
    let lo = _mm256_mul_ps(kf, s1!(LN2_LO));
    let r = _mm256_sub_ps(hi, lo);
    let rr = _mm256_mul_ps(r, r);
    let c = _mm256_sub_ps(
        r,
        _mm256_mul_ps(rr, _mm256_add_ps(s1!(P1), _mm256_mul_ps(rr, s1!(P2)))),
    );
    let q = _mm256_div_ps(_mm256_mul_ps(r, c), _mm256_sub_ps(s1!(2.0), c));
    let y = _mm256_add_ps(s1!(1.0), _mm256_add_ps(_mm256_sub_ps(q, lo), hi));
    // scalbnf(y, k) = y · 2^k, exact for normal results.
    let two_k = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        k,
        _mm256_set1_epi32(127),
    )));
    let scaled = _mm256_mul_ps(y, two_k);
    // |x| <= 2^-14: 1 + x.
    let tiny = _mm256_castsi256_ps(above!(0x39000000));
    _mm256_blendv_ps(_mm256_add_ps(s1!(1.0), x), scaled, tiny)
}
