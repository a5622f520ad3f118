//! The fast kernels used when capture is off agree with the explicit upstream-shaped ops that
//! traces and exports use: fused (flash) attention vs matmul/mask/softmax/matmul, and the
//! few-rows linear kernel vs Burn's `Linear::forward`; and the Flex softmax of the explicit
//! path (`nn::softmax`, f64 row sum) against an f64 softmax.

mod common;

use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Tensor};
use common::device;
use proptest::prelude::*;
use voxtrace::nn::attention::{
    ATTEND_CHUNK, attend, attend_explicit, attend_with_weights, causal_mask, fused_attention,
    sliding_window_mask, window_hides_any,
};
use voxtrace::nn::linear::{
    Layout, SMALL_ROWS_MAX, SMALL_ROWS_MIN_ELEMENTS, linear, matmul_transposed, small_rows_matmul,
};

fn randn<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, 1.0), device)
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

/// Largest |a - b| over all elements (shapes must match).
fn max_abs_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    assert_eq!(a.dims(), b.dims());
    values(a)
        .iter()
        .zip(values(b))
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// `attend` (fused on Flex) against `attend_explicit` for one shape and position setting.
#[allow(clippy::too_many_arguments)]
fn check_attend(
    n_heads: usize,
    n_kv: usize,
    s: usize,
    t: usize,
    q0: usize,
    k0: usize,
    window: usize,
    tol: f32,
) {
    let dev = device();
    let hd = 32;
    let q = randn([1, n_heads, s, hd], &dev);
    let k = randn([1, n_kv, t, hd], &dev);
    let v = randn([1, n_kv, t, hd], &dev);
    let n_rep = n_heads / n_kv;
    let fused = attend(q.clone(), k.clone(), v.clone(), q0, k0, window, n_rep);
    let explicit = attend_explicit(q, k, v, q0, k0, window, n_rep);
    let d = max_abs_diff(fused, explicit);
    assert!(
        d <= tol,
        "heads {n_heads}/{n_kv} s {s} t {t} q0 {q0} k0 {k0} window {window}: max |diff| {d} > {tol}"
    );
}

#[test]
fn fused_attend_matches_explicit_offline_window() {
    // Encoder-like offline pass: the window hides both future and too-old keys.
    check_attend(4, 4, 37, 37, 0, 0, 16, 1e-5);
}

#[test]
fn fused_attend_matches_explicit_gqa_decode_step() {
    // One decoder token with a cache: no key hidden, so no mask is passed at all.
    assert!(!window_hides_any(100, 1, 90, 11, 16));
    check_attend(8, 2, 1, 11, 100, 90, 16, 1e-5);
}

#[test]
fn fused_attend_matches_explicit_streaming_chunk() {
    // Four encoder frames after a cache of ten: the first keys fall out of the window.
    assert!(window_hides_any(20, 4, 10, 14, 12));
    check_attend(4, 4, 4, 14, 20, 10, 12, 1e-5);
}

#[test]
fn fused_attend_matches_explicit_on_the_flash_path() {
    // 600 x 600 scores exceed Flex's naive-attention budget (256 Ki scores): the tiled online
    // softmax runs, with a window mask.
    check_attend(2, 1, 600, 600, 0, 0, 300, 2e-5);
}

#[test]
fn chunked_attend_matches_explicit_encoder_offline() {
    // An encoder whole-file pass longer than one chunk (ATTEND_CHUNK queries): chunks see only
    // the keys their window reaches; the result must be the unchunked one.
    const { assert!(2500 > ATTEND_CHUNK) };
    check_attend(4, 4, 2500, 2500, 0, 0, 96, 2e-5);
}

#[test]
fn chunked_attend_matches_explicit_window_wider_than_a_chunk() {
    // GQA, queries after a cache (q0 > k0), a window reaching back over more than one chunk,
    // and a last chunk shorter than the others.
    check_attend(4, 2, 2100, 2300, 200, 0, 1500, 2e-5);
}

#[test]
fn chunked_attend_matches_explicit_causal_without_window() {
    // A window longer than the sequence: every chunk sees all earlier keys (plain causal).
    check_attend(2, 1, 1500, 1500, 0, 0, usize::MAX / 2, 2e-5);
}

#[test]
fn fused_attention_matches_attend_with_weights_whisper_shapes() {
    let dev = device();
    let hd = 64;
    // Encoder self-attention (no mask), pre-scaled queries as Whisper passes them.
    let q = randn([1, 6, 700, hd], &dev) * (hd as f64).powf(-0.5);
    let k = randn([1, 6, 700, hd], &dev);
    let v = randn([1, 6, 700, hd], &dev);
    let (explicit, _) = attend_with_weights(q.clone(), k.clone(), v.clone(), 1.0, None);
    let fused = fused_attention(q, k, v, Some(1.0), None);
    let d = max_abs_diff(fused, explicit);
    assert!(d <= 2e-5, "encoder: max |diff| {d}");
    // Decoder prompt: causal mask.
    let q = randn([1, 6, 3, hd], &dev);
    let k = randn([1, 6, 3, hd], &dev);
    let v = randn([1, 6, 3, hd], &dev);
    let mask = causal_mask(0, 3, 3, &dev);
    let (explicit, _) =
        attend_with_weights(q.clone(), k.clone(), v.clone(), 0.5, Some(mask.clone()));
    let fused = fused_attention(q, k, v, Some(0.5), Some(mask));
    let d = max_abs_diff(fused, explicit);
    assert!(d <= 1e-5, "decoder prompt: max |diff| {d}");
}

proptest! {
    #[test]
    fn window_hides_any_agrees_with_the_mask(
        q0 in 0usize..40, s in 1usize..6, k0 in 0usize..40, t in 1usize..12, window in 1usize..20,
    ) {
        let dev = device();
        let mask = sliding_window_mask(q0, s, k0, t, window, &dev);
        let any = values(mask.int().float()).iter().any(|&x| x != 0.0);
        prop_assert_eq!(window_hides_any(q0, s, k0, t, window), any);
    }
}

/// A linear layer with random weight and bias of `[d_in, d_out]`.
fn random_linear(d_in: usize, d_out: usize, dev: &Device) -> Linear {
    let mut l = LinearConfig::new(d_in, d_out).init(dev);
    l.weight = Param::from_tensor(randn([d_in, d_out], dev));
    l.bias = Some(Param::from_tensor(randn([d_out], dev)));
    l
}

/// Checks `y [m, n]` against `x [m, k] · w` computed in f64, element by element, with the
/// standard forward error bound of an f32 dot product of length `k` summed in any order:
/// `|y - exact| <= k · u · Σ_r |x_r w_r|` (u = 2^-24). `w` is `[k, n]` when `kn`, else `[n, k]`.
fn check_against_f64(x: &[f32], w: &[f32], y: &[f32], m: usize, k: usize, n: usize, kn: bool) {
    let u = f64::from(f32::EPSILON) / 2.0;
    for i in 0..m {
        for c in 0..n {
            let (mut exact, mut mag) = (0f64, 0f64);
            for r in 0..k {
                let wv = if kn { w[r * n + c] } else { w[c * k + r] };
                let p = f64::from(x[i * k + r]) * f64::from(wv);
                exact += p;
                mag += p.abs();
            }
            let err = (f64::from(y[i * n + c]) - exact).abs();
            let bound = k as f64 * u * mag;
            assert!(
                err <= bound,
                "row {i} col {c}: |y - exact| = {err:e} > bound {bound:e} (k {k})"
            );
        }
    }
}

#[test]
fn small_rows_linear_matches_linear_forward() {
    let dev = device();
    // 1024 x 2051: above the kernel's size threshold; an odd width leaves scalar tail
    // columns, 3 threads give uneven blocks, d_in = 1027 a partial group of weight rows.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for (d_in, d_out) in [(1024, 2051), (1027, 1024)] {
        assert!(d_in * d_out >= SMALL_ROWS_MIN_ELEMENTS);
        let layer = random_linear(d_in, d_out, &dev);
        for rows in [1, 4, SMALL_ROWS_MAX] {
            let x = randn([1, rows, d_in], &dev);
            let fast = pool.install(|| linear(&layer, x.clone()));
            assert_eq!(fast.dims(), [1, rows, d_out]);
            // Without the bias, both products are within f32 dot-product rounding of the
            // exact one; with it, the kernel's result plus the bias is exactly what `linear`
            // returns.
            let mut no_bias = random_linear(d_in, d_out, &dev);
            no_bias.weight = layer.weight.clone();
            no_bias.bias = None;
            let fast_nb = pool.install(|| linear(&no_bias, x.clone()));
            let w = values(layer.weight.val());
            let xs = values(x.clone());
            for y in [fast_nb.clone(), no_bias.forward(x.clone())] {
                check_against_f64(&xs, &w, &values(y), rows, d_in, d_out, true);
            }
            let b = layer.bias.as_ref().unwrap().val().unsqueeze::<3>();
            assert_eq!(values(fast), values(fast_nb + b));
            // The kernel is really used (it needs AVX2+FMA, which x86-64 CI machines have).
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                let w = layer.weight.val();
                assert!(small_rows_matmul(&x.reshape([rows, d_in]), &w, Layout::KN).is_some());
            }
        }
    }
}

#[test]
fn small_rows_tied_projection_matches_matmul_with_transpose() {
    let dev = device();
    // A tied output projection: embedding `[vocab, d]` used as `x · Eᵀ`; d = 259 leaves a
    // scalar tail of each dot product, vocab = 5001 a partial group of four columns.
    let (vocab, d) = (5001, 259);
    let e = randn([vocab, d], &dev);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(3)
        .build()
        .unwrap();
    for rows in [1, 3] {
        let x = randn([rows, d], &dev);
        let fast = pool.install(|| matmul_transposed(x.clone(), e.clone()));
        assert_eq!(fast.dims(), [rows, vocab]);
        check_against_f64(
            &values(x),
            &values(e.clone()),
            &values(fast),
            rows,
            d,
            vocab,
            false,
        );
    }
}

#[test]
fn small_rows_kernel_declines_non_flex_and_strided_inputs() {
    let dev = device();
    let x = randn([2, 64], &dev);
    // A strided (transposed) weight view is not read by the kernel: Burn's matmul runs.
    let wt = randn([32, 64], &dev).transpose();
    assert!(small_rows_matmul(&x, &wt, Layout::KN).is_none());
    // The capture device is not Flex.
    assert!(!voxtrace::nn::linear::is_flex(&Device::capture()));
    assert!(voxtrace::nn::linear::is_flex(&dev));
}

/// `nn::gelu` (parallel on Flex) gives Burn's `gelu` bit for bit, on a tensor large enough to
/// take the parallel path, with a strided view and the special values (±0, ±inf, NaN,
/// large and tiny magnitudes) in it; a small tensor goes through Burn's own pass.
#[test]
fn parallel_gelu_is_burns_gelu_bit_for_bit() {
    use voxtrace::nn::activation::{PARALLEL_MIN_ELEMENTS, gelu};
    let dev = device();
    let n = PARALLEL_MIN_ELEMENTS * 3 + 17;
    let mut v = values(randn([n], &dev).mul_scalar(4.0));
    let special = [
        0.0,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1e-30,
        -1e-30,
        88.0,
        -88.0,
        f32::MAX,
        f32::MIN,
    ];
    v[..special.len()].copy_from_slice(&special);
    let x = Tensor::<1>::from_data(burn::tensor::TensorData::new(v, [n]), &dev);
    let bits = |t: Tensor<1>| -> Vec<u32> { values(t).iter().map(|f| f.to_bits()).collect() };
    let ours = bits(gelu(x.clone()));
    let burn = bits(burn::tensor::activation::gelu(x.clone()));
    assert_eq!(ours.len(), burn.len());
    let differ = ours.iter().zip(&burn).filter(|(a, b)| a != b).count();
    assert_eq!(differ, 0, "{differ} of {n} values differ from Burn's gelu");
    // A transposed (strided) view: made contiguous first, same values.
    let m = Tensor::<2>::from_data(
        burn::tensor::TensorData::new(values(x.clone()), [n, 1]),
        &dev,
    )
    .repeat_dim(1, 2)
    .transpose();
    let a = values(gelu(m.clone()));
    let b = values(burn::tensor::activation::gelu(m));
    assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    // Below the threshold: Burn's pass itself.
    let small = randn([64], &dev);
    assert_eq!(
        bits(gelu(small.clone())),
        bits(burn::tensor::activation::gelu(small))
    );
}

/// The eight-lane `erff8` and `gelu_slice` give `libm::erff` and the scalar GELU bit for
/// bit on every 97th f32 bit pattern (44 million values: both signs, zeros, subnormals,
/// every range of erff's piecewise form, infinities and NaNs), plus the edges of those
/// ranges and their neighbours, and a slice whose length is not a multiple of eight.
#[cfg(target_arch = "x86_64")]
#[test]
fn simd_erff_and_gelu_are_libm_bit_for_bit() {
    use voxtrace::nn::activation::{erff8, gelu_scalar, gelu_slice};
    if !std::arch::is_x86_feature_detected!("avx2") {
        eprintln!("no AVX2: the scalar path is the only one");
        return;
    }
    let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
    let mut xs: Vec<f32> = (0..=u32::MAX / 97)
        .map(|i| f32::from_bits(i * 97))
        .collect();
    // Range edges of erff (|x| = 2^-28, 0.84375, 1.25, 1/0.35, 6) and of its expf (ln2/2,
    // 1.5 ln2, 2^-14), with the patterns either side.
    for edge in [
        0x3180_0000u32,
        0x3f58_0000,
        0x3fa0_0000,
        0x4036_db6d,
        0x40c0_0000,
        0x3eb1_7218,
        0x3f85_1592,
        0x3900_0000,
        0x7f80_0000,
    ] {
        for d in 0..3 {
            for b in [edge - 1 + d, (edge - 1 + d) | 0x8000_0000] {
                xs.push(f32::from_bits(b));
            }
        }
    }
    let mut bad = 0usize;
    let mut first = None;
    for chunk in xs.chunks_exact(8) {
        let mut lanes = [0f32; 8];
        // SAFETY: AVX2 was detected; `chunk` and `lanes` hold eight f32.
        unsafe {
            use std::arch::x86_64::*;
            _mm256_storeu_ps(lanes.as_mut_ptr(), erff8(_mm256_loadu_ps(chunk.as_ptr())));
        }
        for (&x, &y) in chunk.iter().zip(&lanes) {
            if !same(y, libm::erff(x)) {
                bad += 1;
                first.get_or_insert((x, y, libm::erff(x)));
            }
        }
    }
    assert_eq!(
        bad, 0,
        "{bad} lanes differ from libm::erff; first (x, ours, libm): {first:?}"
    );
    let n = xs.len() / 8 * 8 - 3; // not a multiple of eight
    let src = &xs[..n];
    let mut out = vec![0f32; n];
    gelu_slice(src, &mut out);
    let differ = src
        .iter()
        .zip(&out)
        .filter(|&(&x, &g)| !same(g, gelu_scalar(x)))
        .count();
    assert_eq!(
        differ, 0,
        "{differ} of {n} GELU values differ from the scalar form"
    );
}

/// `dense_attention` (our query-block kernel, taken by `fused_attention` without a mask on
/// long sequences) against the explicit matmul/softmax/matmul and against Flex's own fused
/// kernel: two batches, GQA (4 query heads on 2 key/value heads), a query count that is not a
/// multiple of the block, and scores large enough that a softmax without the row maximum
/// would overflow.
#[test]
fn dense_attention_matches_explicit_and_flex_kernel() {
    use burn::tensor::module::attention;
    use burn::tensor::ops::AttentionModuleOptions;
    use voxtrace::nn::dense_attention::{
        DENSE_MIN_KEYS, DENSE_MIN_QUERIES, Q_BLOCK, dense_attention,
    };
    let dev = device();
    let (b, h, h_kv, hd) = (2, 4, 2, 32);
    let s = Q_BLOCK * 2 + 11;
    let t = DENSE_MIN_KEYS + 45;
    assert!(s >= DENSE_MIN_QUERIES);
    let q = randn([b, h, s, hd], &dev) * 3.0;
    let k = randn([b, h_kv, t, hd], &dev) * 3.0;
    let v = randn([b, h_kv, t, hd], &dev);
    let scale = (hd as f32).powf(-0.5);
    let dense = dense_attention(&q, &k, &v, scale).expect("f32 Flex tensors");
    assert_eq!(dense.dims(), [b, h, s, hd]);
    // Explicit path, key/value heads repeated as transformers' repeat_kv.
    let kr = voxtrace::nn::attention::repeat_kv(k.clone(), h / h_kv);
    let vr = voxtrace::nn::attention::repeat_kv(v.clone(), h / h_kv);
    let (explicit, _) = attend_with_weights(q.clone(), kr, vr, scale as f64, None);
    let d = max_abs_diff(dense.clone(), explicit);
    assert!(d <= 2e-5, "dense vs explicit: max |diff| {d}");
    let options = AttentionModuleOptions {
        scale: Some(scale as f64),
        softcap: None,
        is_causal: false,
    };
    let flex = attention(q.clone(), k.clone(), v.clone(), None, None, options);
    let d = max_abs_diff(dense.clone(), flex);
    assert!(d <= 2e-5, "dense vs Flex's fused kernel: max |diff| {d}");
    // fused_attention takes the dense path here: same values.
    let via = fused_attention(q.clone(), k.clone(), v.clone(), Some(scale as f64), None);
    assert_eq!(values(via), values(dense));
    // Shapes that do not fit are declined, not guessed.
    assert!(dense_attention(&q, &k.clone().narrow(2, 0, t - 1), &v, scale).is_none());
    let k3 = randn([b, 3, t, hd], &dev);
    let v3 = randn([b, 3, t, hd], &dev);
    assert!(dense_attention(&q, &k3, &v3, scale).is_none());
}

/// The AVX2 row softmax numerator (`exp(x - max)`, Cephes polynomial) against f64 `exp`:
/// within 2^-21 relative (a few f32 ulps) over the whole range down to the flush point, 0 for
/// `-inf` and for scores far below the maximum, and a NaN score makes the sum NaN.
#[test]
fn simd_exp_row_matches_f64_exp() {
    use voxtrace::nn::dense_attention::{exp_shifted, exp_shifted_avx2};
    if !(std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")) {
        eprintln!("no AVX2+FMA on this CPU: the kernel is never called; nothing to check");
        return;
    }
    // Max 0 first, then a sweep of [-87, 0], then the edge values; 8-lane body plus a tail.
    let mut row: Vec<f32> = vec![0.0];
    row.extend((0..20_000).map(|i| -87.0 * i as f32 / 19_999.0));
    row.extend([-1e-7, -0.5, -1.0, -86.9, f32::NEG_INFINITY, -1e30, -200.0]);
    let input = row.clone();
    // SAFETY: AVX2 and FMA detected above.
    let sum = unsafe { exp_shifted_avx2(&mut row) };
    let mut worst = 0f64;
    for (&x, &e) in input.iter().zip(&row) {
        let want = (x as f64).exp();
        if x < -87.3 {
            assert_eq!(e, 0.0, "exp({x}) should flush to 0, got {e}");
        } else {
            worst = worst.max(((e as f64) - want).abs() / want);
        }
    }
    assert!(worst <= 2f64.powi(-21), "worst relative error {worst:e}");
    let want_sum: f64 = input.iter().map(|&x| (x as f64).exp()).sum();
    assert!(((sum as f64) - want_sum).abs() / want_sum < 1e-5);
    // Same row through the scalar reference: the sums agree closely.
    let mut scalar = input.clone();
    let s2 = exp_shifted(&mut scalar);
    assert!((sum - s2).abs() / s2 < 1e-5);
    // A NaN score poisons the sum (upstream's softmax gives NaN rows too).
    let mut nan_row = vec![0.0f32; 19];
    nan_row[9] = f32::NAN;
    // SAFETY: as above.
    assert!(unsafe { exp_shifted_avx2(&mut nan_row) }.is_nan());
}

/// f64 softmax of one f32 row (the exact result the f32 kernels round).
fn softmax_f64(row: &[f32]) -> Vec<f64> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = row.iter().map(|&x| (x as f64 - max).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|v| v / s).collect()
}

#[test]
fn softmax_rows_sum_to_one_and_match_f64() {
    let dev = device();
    // [batch, heads, queries, keys] scores as in Whisper's encoder (1500 keys), wide spread,
    // a masked band and a row length that is not a multiple of four.
    for keys in [1500usize, 7, 1] {
        let scores = randn([1, 3, 40, keys], &dev) * 4.0;
        let mut v = values(scores);
        for (i, x) in v.iter_mut().enumerate() {
            if keys > 1 && i % keys > keys / 2 && (i / keys) % 3 == 0 {
                *x = f32::NEG_INFINITY;
            }
        }
        let t = Tensor::<4>::from_data(
            burn::tensor::TensorData::new(v.clone(), [1, 3, 40, keys]),
            &dev,
        );
        let got = values(voxtrace::nn::softmax::softmax_last(t.clone()));
        let burn = values(burn::tensor::activation::softmax(t, 3));
        let (mut worst_sum, mut worst_burn_sum, mut worst_rel) = (0f64, 0f64, 0f64);
        for ((row, out), bout) in v.chunks(keys).zip(got.chunks(keys)).zip(burn.chunks(keys)) {
            let want = softmax_f64(row);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            // exp's argument x - max is rounded to f32 (relative 2^-24 of |x - max|), exp
            // itself and the division round once each; the sum shares the worst of its terms.
            let spread = row
                .iter()
                .filter(|x| x.is_finite())
                .map(|&x| max - x as f64)
                .fold(0.0, f64::max);
            for ((&x, &o), &w) in row.iter().zip(out).zip(&want) {
                if x == f32::NEG_INFINITY {
                    assert_eq!(o, 0.0, "masked key must get probability 0");
                    continue;
                }
                let bound = ((max - x as f64) + spread + 4.0) * 2f64.powi(-24);
                let rel = (o as f64 - w).abs() / w.max(f64::MIN_POSITIVE);
                worst_rel = worst_rel.max(rel / bound);
                assert!(
                    rel <= bound,
                    "keys {keys}: p {o} vs f64 {w} (relative {rel:.2e} > {bound:.2e})"
                );
            }
            let sum: f64 = out.iter().map(|&p| p as f64).sum();
            worst_sum = worst_sum.max((sum - 1.0).abs());
            let bsum: f64 = bout.iter().map(|&p| p as f64).sum();
            worst_burn_sum = worst_burn_sum.max((bsum - 1.0).abs());
        }
        eprintln!(
            "keys {keys}: |row sum - 1| max {worst_sum:.2e} (Burn Flex softmax {worst_burn_sum:.2e}); \
             worst error / bound {worst_rel:.2}"
        );
        // Every probability is one rounding of an f64 quotient: the row sums to 1 within a
        // few f32 ulps of 1, whatever the row length.
        assert!(
            worst_sum <= 4.0 * 2f64.powi(-24),
            "keys {keys}: row sum off by {worst_sum:.2e}"
        );
    }
}

#[test]
fn softmax_nan_and_fully_masked_rows_are_nan_and_views_are_read_in_order() {
    let mut out = [0f32; 3];
    voxtrace::nn::softmax::softmax_row(&[0.0, f32::NAN, 1.0], &mut out);
    assert!(out.iter().all(|p| p.is_nan()), "{out:?}");
    voxtrace::nn::softmax::softmax_row(&[f32::NEG_INFINITY; 3], &mut out);
    assert!(out.iter().all(|p| p.is_nan()), "{out:?}");
    // A transposed (strided) view: the kernel must softmax along the view's last axis.
    let dev = device();
    let t = randn([2, 5, 9], &dev);
    let view = t.clone().swap_dims(1, 2);
    let got = values(voxtrace::nn::softmax::softmax_last(view.clone()));
    let contiguous = Tensor::<3>::from_data(view.into_data(), &dev);
    let want = values(voxtrace::nn::softmax::softmax_last(contiguous));
    assert_eq!(got, want);
}
