//! `nn::qmatmul`: products with Q8_0 / Q4_0 packed weights against f64 oracles, every kernel
//! this CPU has (scalar, AVX2, AVX-512 VNNI) against the scalar one, and the refusals.
//!
//! The packed test weights come from a small reference quantizer in THIS FILE (a test-local
//! copy of ggml's `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`; the crate's own
//! quantizers live elsewhere and are tested there), plus raw integer blocks for the corners
//! the quantizers never emit (Q8_0 `q = -128`).
//!
//! Bounds, with `u = 2^-24` (f32 unit roundoff), `gamma(k) = k u / (1 - k u)`, `nb = n_in / 32`:
//!
//! * Tight (the integer path): the oracle is the f64 product of the dequantized weights
//!   `w^ = d_w * q_w` and the Q8_0-rounded activations `x^ = d_x * q_x` ([`round_acts`], the
//!   rule `quantize_activations` documents). Each block's integer sum is exact (|sum| <
//!   2^24, so its f32 conversion is too); a SIMD kernel splits it into lane partial sums, each
//!   converted exactly. The f32 work per term is `fl(d_w * d_x)`, one multiply(-add) by the
//!   partial sum, at most `nb` additions along a lane and at most 5 in the horizontal sum:
//!   at most `nb + 7` roundings, so `|y - oracle| <= gamma(nb + 7) * S` where `S` is the sum
//!   of the magnitudes of the partial sums' terms: `sum_i |w^_i x^_i|` for Q8_0, and for Q4_0
//!   (computed as `sum nibble * q_x - 8 * sum q_x`) `sum_i |d_w| (nibble_i + 8) |x^_i|`.
//!   The f64 oracle adds at most `n_in * 2^-53 * S`, counted as `2^-40 * S`.
//! * Loose (against f32 activations): the oracle is `sum_i w^_i x_i` in f64. Rounding
//!   `q = round(fl(x * fl(1/d)))` puts `|x - d q| <= d (1/2 + 2^-16)` (`|x / d| <= 127` and two
//!   f32 roundings give `|fl(x * fl(1/d)) - x / d| <= 127 * 2.01 u < 2^-16`), so the bound is
//!   the tight one plus `sum_blocks d_x (1/2 + 2^-16) sum_(i in block) |w^_i|`.
//! * Kernel vs scalar kernel: both within the tight bound of the same oracle, so twice it.

mod common;

use burn::tensor::{Tensor, TensorData};
use half::f16;
use proptest::prelude::*;
use voxtrace::nn::qmatmul::{
    BLOCK, PackedMatrix, QKernel, QMatmulError, QuantKind, qlinear, qmatmul, qmatmul_with,
    quantize_activations,
};

const U: f64 = 1.0 / (1u64 << 24) as f64;

fn gamma(k: usize) -> f64 {
    let ku = k as f64 * U;
    ku / (1.0 - ku)
}

// ---------------------------------------------------------------------------------------
// Test-local reference quantizers (copies of ggml's `_ref` routines; not the crate's).
// ---------------------------------------------------------------------------------------

/// One Q8_0 block from its f16 scale bits and 32 integers.
fn pack_q8_block(d: f16, q: &[i8; 32], out: &mut Vec<u8>) {
    out.extend_from_slice(&d.to_le_bytes());
    out.extend(q.iter().map(|&v| v as u8));
}

/// One Q4_0 block from its f16 scale and 32 nibbles (0..=15): byte i = q[i] | q[i + 16] << 4.
fn pack_q4_block(d: f16, q: &[u8; 32], out: &mut Vec<u8>) {
    out.extend_from_slice(&d.to_le_bytes());
    out.extend((0..16).map(|i| q[i] | (q[i + 16] << 4)));
}

/// ggml `quantize_row_q8_0_ref`: `d = amax / 127`, `q = roundf(x / d)` (via `1 / d`), f16 `d`.
fn quantize_q8_0(w: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in w.chunks_exact(32) {
        let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0i8; 32];
        for (qi, &x) in q.iter_mut().zip(b) {
            *qi = (x * id).round() as i8;
        }
        pack_q8_block(f16::from_f32(d), &q, &mut out);
    }
    out
}

/// ggml `quantize_row_q4_0_ref`: `max` = the value of largest magnitude, `d = max / -8`,
/// `q = min(15, (int8)(x / d + 8.5))`, f16 `d`.
fn quantize_q4_0(w: &[f32]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in w.chunks_exact(32) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in b {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let d = max / -8.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [0u8; 32];
        for (qi, &x) in q.iter_mut().zip(b) {
            *qi = ((x * id + 8.5) as i8).min(15) as u8;
        }
        pack_q4_block(f16::from_f32(d), &q, &mut out);
    }
    out
}

fn quantize(kind: QuantKind, w: &[f32]) -> Vec<u8> {
    match kind {
        QuantKind::Q8_0 => quantize_q8_0(w),
        QuantKind::Q4_0 => quantize_q4_0(w),
    }
}

/// Per weight: dequantized value `w^` (f64, exact) and the magnitude weight of the tight bound
/// (`|w^|` for Q8_0, `|d| (nibble + 8)` for Q4_0), decoded by the test itself.
fn decode(kind: QuantKind, bytes: &[u8]) -> (Vec<f64>, Vec<f64>) {
    let (mut w, mut mag) = (Vec::new(), Vec::new());
    for blk in bytes.chunks_exact(kind.block_bytes()) {
        let d = f64::from(f16::from_le_bytes([blk[0], blk[1]]).to_f32());
        match kind {
            QuantKind::Q8_0 => {
                for &b in &blk[2..] {
                    let v = d * f64::from(b as i8);
                    w.push(v);
                    mag.push(v.abs());
                }
            }
            QuantKind::Q4_0 => {
                let nib: Vec<u8> = blk[2..]
                    .iter()
                    .map(|b| b & 15)
                    .chain(blk[2..].iter().map(|b| b >> 4))
                    .collect();
                for n in nib {
                    w.push(d * (f64::from(n) - 8.0));
                    mag.push(d.abs() * (f64::from(n) + 8.0));
                }
            }
        }
    }
    (w, mag)
}

/// The activation rounding `quantize_activations` documents, written out here: per block
/// `d = amax / 127` (f32), `q = round(x * (1 / d))`; returns `x^ = d q` (f64) and each
/// element's block scale.
fn round_acts(x: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let (mut xr, mut ds) = (Vec::new(), Vec::new());
    for b in x.chunks_exact(32) {
        let amax = b.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d == 0.0 { 0.0 } else { 1.0 / d };
        for &v in b {
            xr.push(f64::from(d) * f64::from((v * id).round()));
            ds.push(f64::from(d));
        }
    }
    (xr, ds)
}

// ---------------------------------------------------------------------------------------
// Oracles and checks.
// ---------------------------------------------------------------------------------------

/// Tight and loose oracle values and bounds for every output `[m, n_out]`.
struct Oracle {
    tight: Vec<f64>,
    tight_bound: Vec<f64>,
    loose: Vec<f64>,
    loose_bound: Vec<f64>,
}

fn oracle(kind: QuantKind, bytes: &[u8], x: &[f32], m: usize, n_out: usize, n_in: usize) -> Oracle {
    let (w, mag) = decode(kind, bytes);
    let (xr, ds) = round_acts(x);
    let nb = n_in / BLOCK;
    let mut o = Oracle {
        tight: vec![],
        tight_bound: vec![],
        loose: vec![],
        loose_bound: vec![],
    };
    for i in 0..m {
        for j in 0..n_out {
            let (mut t, mut s, mut l, mut act_err) = (0f64, 0f64, 0f64, 0f64);
            for k in 0..n_in {
                let wv = w[j * n_in + k];
                let xv = xr[i * n_in + k];
                t += wv * xv;
                s += mag[j * n_in + k] * xv.abs();
                l += wv * f64::from(x[i * n_in + k]);
                act_err += ds[i * n_in + k] * (0.5 + 2f64.powi(-16)) * wv.abs();
            }
            let tb = (gamma(nb + 7) + 2f64.powi(-40)) * s;
            o.tight.push(t);
            o.tight_bound.push(tb);
            o.loose.push(l);
            o.loose_bound.push(tb + act_err);
        }
    }
    o
}

/// Deterministic values: mostly N(0,1)-like, some exact zeros, some outliers (x100), and some
/// whole zero blocks.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        if next() % 16 == 0 {
            out.extend(std::iter::repeat_n(0.0, 32.min(n - out.len())));
            continue;
        }
        let r = next();
        // Sum of four uniforms, centred: roughly normal, unit-ish scale.
        let u: f32 = (0..4)
            .map(|k| ((r >> (16 * k)) & 0xFFFF) as f32 / 65535.0)
            .sum::<f32>()
            - 2.0;
        let v = match next() % 20 {
            0 | 1 => 0.0,
            2 => u * 100.0,
            _ => u,
        };
        out.push(v);
    }
    out
}

fn check(kind: QuantKind, bytes: &[u8], x: &[f32], m: usize, n_out: usize, n_in: usize) {
    let w = PackedMatrix::new(kind, n_out, n_in, bytes).unwrap();
    let o = oracle(kind, bytes, x, m, n_out, n_in);
    let scalar = qmatmul_with(x, m, &w, QKernel::Scalar).unwrap();
    for kernel in QKernel::ALL.into_iter().filter(|k| k.available()) {
        let y = qmatmul_with(x, m, &w, kernel).unwrap();
        assert_eq!(y.len(), m * n_out);
        for (idx, &v) in y.iter().enumerate() {
            let v = f64::from(v);
            let ctx = || format!("{kind:?} {kernel:?} m={m} n_out={n_out} n_in={n_in} at {idx}");
            let e = (v - o.tight[idx]).abs();
            assert!(
                e <= o.tight_bound[idx],
                "{}: tight {v} vs {} (err {e:e} > {:e})",
                ctx(),
                o.tight[idx],
                o.tight_bound[idx]
            );
            let e = (v - o.loose[idx]).abs();
            assert!(
                e <= o.loose_bound[idx],
                "{}: loose {v} vs {} (err {e:e} > {:e})",
                ctx(),
                o.loose[idx],
                o.loose_bound[idx]
            );
            let e = (v - f64::from(scalar[idx])).abs();
            assert!(
                e <= 2.0 * o.tight_bound[idx],
                "{}: vs scalar {} (err {e:e})",
                ctx(),
                scalar[idx]
            );
        }
    }
}

fn kind_strategy() -> impl Strategy<Value = QuantKind> {
    prop_oneof![Just(QuantKind::Q8_0), Just(QuantKind::Q4_0)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Quantized weights (test-local quantizer) over shapes m 1..=9, n_out 1..=70,
    /// n_in 32..=512 in steps of 32.
    #[test]
    fn every_kernel_matches_the_oracles(
        kind in kind_strategy(),
        m in 1usize..=9,
        n_out in 1usize..=70,
        nb in 1usize..=16,
        seed in any::<u64>(),
    ) {
        let n_in = nb * BLOCK;
        let w = values(n_out * n_in, seed);
        let x = values(m * n_in, seed ^ 0xA5A5);
        check(kind, &quantize(kind, &w), &x, m, n_out, n_in);
    }

    /// Raw blocks with every integer value, including Q8_0's q = -128 (which ggml's quantizer
    /// never writes but a file may hold), random f16 scales of both signs.
    #[test]
    fn raw_blocks_with_extreme_integers(
        kind in kind_strategy(),
        m in 1usize..=9,
        n_out in 1usize..=20,
        nb in 1usize..=16,
        seed in any::<u64>(),
    ) {
        let n_in = nb * BLOCK;
        let r = values(n_out * nb * 33, seed ^ 0x5151);
        let mut bytes = Vec::new();
        for (b, v) in r.chunks_exact(33).enumerate() {
            let d = f16::from_f32(v[0] * 0.01);
            let ints = v[1..].iter().enumerate().map(|(i, x)| {
                if (b + i) % 7 == 0 { i32::MIN } else { (x.to_bits() % 256) as i32 }
            });
            match kind {
                QuantKind::Q8_0 => {
                    let mut q = [0i8; 32];
                    for (qi, n) in q.iter_mut().zip(ints) {
                        *qi = if n == i32::MIN { -128 } else { (n - 128) as i8 };
                    }
                    pack_q8_block(d, &q, &mut bytes);
                }
                QuantKind::Q4_0 => {
                    let mut q = [0u8; 32];
                    for (qi, n) in q.iter_mut().zip(ints) {
                        *qi = if n == i32::MIN { 0 } else { (n % 16) as u8 };
                    }
                    pack_q4_block(d, &q, &mut bytes);
                }
            }
        }
        let x = values(m * n_in, seed);
        check(kind, &bytes, &x, m, n_out, n_in);
    }

    /// `quantize_activations` is exactly the rounding the oracle assumes.
    #[test]
    fn activation_rounding_is_the_documented_one(m in 1usize..=4, nb in 1usize..=8, seed in any::<u64>()) {
        let n = nb * BLOCK;
        let x = values(m * n, seed);
        let q = quantize_activations(&x, m, n);
        let (xr, _) = round_acts(&x);
        for (i, &qi) in q.q.iter().enumerate() {
            prop_assert_eq!(f64::from(q.d[i / BLOCK]) * f64::from(qi), xr[i]);
        }
        for (b, s) in q.sum.iter().enumerate() {
            prop_assert_eq!(*s, q.q[b * BLOCK..(b + 1) * BLOCK].iter().map(|&v| i32::from(v)).sum::<i32>());
        }
    }
}

/// Shapes big enough to take the multithreaded path (>= PARALLEL_MIN_WEIGHTS weights), an
/// odd block count (the AVX-512 tail) and more than four activation rows.
#[test]
fn large_shapes_multithreaded() {
    for kind in [QuantKind::Q8_0, QuantKind::Q4_0] {
        let (m, n_out, n_in) = (5, 300, 32 * 23);
        let w = values(n_out * n_in, 7);
        let x = values(m * n_in, 8);
        check(kind, &quantize(kind, &w), &x, m, n_out, n_in);
    }
}

/// More activation rows than one L2-sized activation block holds (256 kB of quantized rows:
/// 32 rows at n_in 8192) and more weight rows than one weight block (16), with rows left
/// over in both: the blocked loop order covers every output once.
#[test]
fn many_rows_span_several_activation_and_weight_blocks() {
    for kind in [QuantKind::Q8_0, QuantKind::Q4_0] {
        let (m, n_out, n_in) = (37, 21, 8192);
        let w = values(n_out * n_in, 17);
        let x = values(m * n_in, 18);
        check(kind, &quantize(kind, &w), &x, m, n_out, n_in);
    }
}

/// The detected kernel is one this CPU can run and is the one `qmatmul` uses (same result).
#[test]
fn detected_kernel_is_used() {
    let kernel = QKernel::detect();
    assert!(kernel.available());
    eprintln!(
        "kernels available: {:?}",
        QKernel::ALL
            .into_iter()
            .filter(|k| k.available())
            .collect::<Vec<_>>()
    );
    let w = values(64 * 96, 3);
    let x = values(2 * 96, 4);
    let p = PackedMatrix::new(QuantKind::Q4_0, 64, 96, quantize_q4_0(&w)).unwrap();
    assert_eq!(
        qmatmul(&x, 2, &p).unwrap(),
        qmatmul_with(&x, 2, &p, kernel).unwrap()
    );
}

/// `dequantize` matches the test's own decoding, bit for bit.
#[test]
fn dequantize_matches_the_block_layout() {
    for kind in [QuantKind::Q8_0, QuantKind::Q4_0] {
        let bytes = quantize(kind, &values(3 * 64, 11));
        let p = PackedMatrix::new(kind, 3, 64, bytes.as_slice()).unwrap();
        let (w, _) = decode(kind, &bytes);
        let got: Vec<f64> = p.dequantize().into_iter().map(f64::from).collect();
        assert_eq!(got, w);
    }
}

/// The Burn wrapper agrees with the slice function and keeps leading dimensions.
#[test]
fn qlinear_on_tensors() {
    let device = common::device();
    let (n_out, n_in) = (40, 64);
    let p = PackedMatrix::new(
        QuantKind::Q8_0,
        n_out,
        n_in,
        quantize_q8_0(&values(n_out * n_in, 5)),
    )
    .unwrap();
    let xv = values(2 * 3 * n_in, 6);
    let x = Tensor::<3>::from_data(TensorData::new(xv.clone(), [2, 3, n_in]), &device);
    let y = qlinear(x, &p).unwrap();
    assert_eq!(y.dims(), [2, 3, n_out]);
    let got = y
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    assert_eq!(got, qmatmul(&xv, 6, &p).unwrap());
    let bad = Tensor::<2>::zeros([2, 32], &device);
    assert!(matches!(
        qlinear(bad, &p),
        Err(QMatmulError::InputLength { .. })
    ));
}

#[test]
fn refuses_wrong_byte_length() {
    let bytes = vec![0u8; 2 * 34 + 1];
    let e = PackedMatrix::new(QuantKind::Q8_0, 1, 64, bytes.as_slice()).unwrap_err();
    assert_eq!(
        e,
        QMatmulError::ByteLength {
            kind: QuantKind::Q8_0,
            rows: 1,
            cols: 64,
            expected: 68,
            found: 69
        }
    );
    assert!(e.to_string().contains("expected 68 bytes, found 69"), "{e}");
    let e = PackedMatrix::new(QuantKind::Q4_0, 2, 64, vec![0u8; 68]).unwrap_err();
    assert!(
        matches!(e, QMatmulError::ByteLength { expected: 72, .. }),
        "{e}"
    );
    // An overflowing size is a length error, not a panic.
    let e = PackedMatrix::new(QuantKind::Q4_0, usize::MAX, 64, vec![0u8; 18]).unwrap_err();
    assert!(matches!(e, QMatmulError::ByteLength { .. }), "{e}");
}

#[test]
fn refuses_width_not_multiple_of_32() {
    let e = PackedMatrix::new(QuantKind::Q8_0, 1, 48, vec![0u8; 51]).unwrap_err();
    assert_eq!(e, QMatmulError::Cols { cols: 48 });
}

#[test]
fn refuses_wrong_input_length() {
    let p = PackedMatrix::new(QuantKind::Q8_0, 2, 32, vec![0u8; 68]).unwrap();
    for kernel in QKernel::ALL.into_iter().filter(|k| k.available()) {
        let e = qmatmul_with(&[0.0; 33], 1, &p, kernel).unwrap_err();
        assert_eq!(
            e,
            QMatmulError::InputLength {
                m: 1,
                n_in: 32,
                found: 33
            }
        );
    }
    assert!(qmatmul(&[0.0; 64], 1, &p).is_err());
    assert_eq!(qmatmul(&[], 0, &p).unwrap(), Vec::<f32>::new());
}

#[test]
fn kind_names() {
    assert_eq!("q8_0".parse::<QuantKind>().unwrap(), QuantKind::Q8_0);
    assert_eq!("Q4_0".parse::<QuantKind>().unwrap(), QuantKind::Q4_0);
    assert!(matches!(
        "q5_0".parse::<QuantKind>(),
        Err(QMatmulError::UnknownKind(_))
    ));
}

/// Enough activation rows for the AMX-INT8 tiles (`QKernel::AmxInt8` from
/// `amx::AMX_INT8_MIN_ROWS`), with a partial 32-row weight group, activation rows padded to
/// the tile pair, and more than one 1024-column k block; 24 and 39 rows (the threshold and the
/// 39-row prompt prefill) fill one tile pair partly: every kernel against the oracles.
#[test]
fn tile_sized_batches_match_the_oracles() {
    for kind in [QuantKind::Q8_0, QuantKind::Q4_0] {
        for &(m, n_out, n_in) in &[
            (24, 33, 1280),
            (39, 45, 1280),
            (70, 45, 1280),
            (129, 64, 2080),
        ] {
            let w = values(n_out * n_in, 19);
            let x = values(m * n_in, 20);
            check(kind, &quantize(kind, &w), &x, m, n_out, n_in);
        }
    }
}
