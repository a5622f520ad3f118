//! Metric tests for `voxtrace::compare`: hand-computed values, edge cases (NaN, Inf, zero and
//! empty tensors), both criteria, tolerance overrides, and properties (proptest).

use proptest::prelude::*;
use voxtrace::compare::{
    Accumulator, CompareError, Criterion, Status, TolOverride, Tolerances, compare_tensors,
    metrics::unravel,
};

fn tol(atol: f64, rtol: f64) -> Tolerances {
    Tolerances::new(atol, rtol).unwrap()
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(1e-300)
}

// r = [1, -2, 4, 0], a = [1.5, -2, 3, 0.001], shape [2, 2]
// d = [0.5, 0, -1, 0.001]
const R: [f64; 4] = [1.0, -2.0, 4.0, 0.0];
const A: [f64; 4] = [1.5, -2.0, 3.0, 0.001];

#[test]
fn hand_computed_allclose() {
    let t = compare_tensors("x", &R, &[2, 2], &A, &[2, 2], &tol(0.01, 0.1)).unwrap();
    let m = t.metrics.as_ref().unwrap();
    assert_eq!(m.numel, 4);
    assert_eq!(m.finite_pairs, 4);
    assert_eq!(m.max_abs_err, 1.0);
    assert_eq!(m.max_abs_err_index, Some(vec![1, 0]));
    assert!(close(
        m.mean_abs_err,
        (0.5 + 0.0 + 1.0 + 0.001) / 4.0,
        1e-15
    ));
    // rel errors over r != 0: 0.5/1, 0/2, 1/4 -> 0.5 (r = 0 is excluded)
    assert_eq!(m.max_rel_err, 0.5);
    let d2 = 0.25 + 1.0 + 0.001f64 * 0.001;
    let r2 = 1.0 + 4.0 + 16.0;
    assert!(close(m.nmse, d2 / r2, 1e-14));
    assert!(close(m.rel_l2, (d2 / r2).sqrt(), 1e-14));
    let ar = 1.5 + 4.0 + 12.0;
    let a2 = 2.25 + 4.0 + 9.0 + 0.001f64 * 0.001;
    assert!(close(m.cosine, ar / (a2 * r2).sqrt(), 1e-14));
    // thresholds atol + rtol|r| = [0.11, 0.21, 0.41, 0.01]: elements 0 and 2 fail
    assert_eq!(m.out_of_tol, 2);
    assert_eq!(m.frac_out_of_tol, 0.5);
    // min atol = max(|d| - rtol|r|) = max(0.4, -0.2, 0.6, 0.001) = 0.6
    assert!(close(m.min_atol, 0.6, 1e-15));
    assert_eq!(
        (
            m.ref_nan,
            m.ref_inf,
            m.act_nan,
            m.act_inf,
            m.nonfinite_mismatch
        ),
        (0, 0, 0, 0, 0)
    );
    assert_eq!(t.status, Status::Fail);
    assert_eq!((t.atol, t.rtol), (0.01, 0.1));

    // It passes at exactly min_atol and fails just below.
    let pass = compare_tensors("x", &R, &[2, 2], &A, &[2, 2], &tol(m.min_atol, 0.1)).unwrap();
    assert_eq!(pass.status, Status::Pass);
    let below = compare_tensors("x", &R, &[2, 2], &A, &[2, 2], &tol(0.5999, 0.1)).unwrap();
    assert_eq!(below.status, Status::Fail);
    assert_eq!(below.metrics.unwrap().out_of_tol, 1);
}

#[test]
fn hand_computed_polygraphy() {
    // Polygraphy elemwise: fail iff |d| > atol AND |d|/|r'| > rtol, r' = eps for r = 0.
    // rel = [0.5, 0, 0.25, 0.001/2.22e-16]; rel > 0.1 for 0, 2, 3; |d| > 0.01 for 0, 2.
    let mut t = tol(0.01, 0.1);
    t.criterion = Criterion::Polygraphy;
    let r = compare_tensors("x", &R, &[2, 2], &A, &[2, 2], &t).unwrap();
    let m = r.metrics.unwrap();
    assert_eq!(m.out_of_tol, 2);
    // min atol = largest |d| among rel-failing elements = 1.0
    assert_eq!(m.min_atol, 1.0);
    t.atol = 0.6;
    let m = compare_tensors("x", &R, &[2, 2], &A, &[2, 2], &t)
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(m.out_of_tol, 1);
    // Allclose with the same tolerance is stricter: 0.6 + 0.1*4 = 1.0 >= 1 passes element 2,
    // 0.6 + 0.1*1 = 0.7 >= 0.5 passes element 0, so 0 failures; Polygraphy fails element 2.
    t.criterion = Criterion::Allclose;
    let m = compare_tensors("x", &R, &[2, 2], &A, &[2, 2], &t)
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(m.out_of_tol, 0);
    // Polygraphy: a zero reference with |a| > atol fails (relative error is ~4.5e12 there).
    t.criterion = Criterion::Polygraphy;
    t.atol = 1e-4;
    let m = compare_tensors("z", &[0.0], &[1], &[0.001], &[1], &t)
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(m.out_of_tol, 1);
    assert_eq!(
        m.max_rel_err, 0.0,
        "zero reference excluded from max_rel_err"
    );
}

#[test]
fn nan_and_inf_semantics() {
    let nan = f64::NAN;
    let inf = f64::INFINITY;
    let r = [nan, inf, -inf, 1.0, 2.0, nan, inf];
    let a = [nan, inf, inf, nan, 2.0, 1.0, 5.0];
    let run = |equal_nan: bool, inf_equal: bool| {
        let mut t = tol(0.0, 0.0);
        t.equal_nan = equal_nan;
        t.inf_equal = inf_equal;
        compare_tensors("n", &r, &[7], &a, &[7], &t).unwrap()
    };
    // Default: NaN/NaN fails, inf/inf equal, -inf/inf, 1/NaN, NaN/1, inf/5 fail.
    let t = run(false, true);
    let m = t.metrics.as_ref().unwrap();
    assert_eq!(t.status, Status::Fail);
    assert_eq!(m.out_of_tol, 5);
    assert_eq!(m.nonfinite_mismatch, 5);
    assert_eq!(m.finite_pairs, 1);
    assert_eq!((m.ref_nan, m.ref_inf, m.act_nan, m.act_inf), (2, 3, 2, 2));
    assert_eq!(m.max_abs_err, 0.0);
    assert_eq!(m.max_abs_err_index, None);
    assert_eq!(m.min_atol, f64::INFINITY);
    assert_eq!(m.cosine, 1.0, "only finite pair is (2, 2)");
    assert_eq!(m.rel_l2, 0.0);
    assert!(close(m.frac_out_of_tol, 5.0 / 7.0, 1e-15));
    assert_eq!(run(true, true).metrics.unwrap().out_of_tol, 4);
    assert_eq!(run(false, false).metrics.unwrap().out_of_tol, 6);
    assert_eq!(run(true, false).metrics.unwrap().out_of_tol, 5);

    // Matching infinities only: passes with defaults, and the metrics ignore them.
    let t = compare_tensors(
        "mask",
        &[-inf, 0.5, -inf],
        &[3],
        &[-inf, 0.5, -inf],
        &[3],
        &tol(0.0, 0.0),
    )
    .unwrap();
    assert_eq!(t.status, Status::Pass);
    assert_eq!(t.metrics.unwrap().min_atol, 0.0);

    // NaN in actual where the reference is finite always fails, whatever the tolerance.
    let t = compare_tensors("n", &[1.0], &[1], &[nan], &[1], &tol(1e30, 1e30)).unwrap();
    assert_eq!(t.status, Status::Fail);
}

#[test]
fn zero_and_empty_tensors() {
    let z = [0.0; 3];
    // Two zero tensors: identical; cosine defined as 1, rel_l2 = nmse = 0.
    let m = compare_tensors("z", &z, &[3], &z, &[3], &tol(0.0, 0.0))
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(
        (m.cosine, m.rel_l2, m.nmse, m.max_rel_err),
        (1.0, 0.0, 0.0, 0.0)
    );
    assert!(m.passed());

    // Zero reference, non-zero actual: ||r|| = 0 -> rel_l2 = nmse = inf; cosine 0.
    let m = compare_tensors("z", &z, &[3], &[0.0, 3.0, 4.0], &[3], &tol(0.0, 0.0))
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(m.rel_l2, f64::INFINITY);
    assert_eq!(m.nmse, f64::INFINITY);
    assert_eq!(m.cosine, 0.0);
    assert_eq!(m.max_rel_err, 0.0);
    assert_eq!(m.max_abs_err, 4.0);
    assert_eq!(m.max_abs_err_index, Some(vec![2]));
    assert!(close(m.mean_abs_err, 7.0 / 3.0, 1e-15));
    assert_eq!(m.out_of_tol, 2);

    // Zero actual, non-zero reference: rel_l2 = nmse = 1, cosine 0, max_rel 1.
    let m = compare_tensors("z", &[3.0, 4.0], &[2], &[0.0, 0.0], &[2], &tol(0.0, 0.0))
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(
        (m.rel_l2, m.nmse, m.cosine, m.max_rel_err),
        (1.0, 1.0, 0.0, 1.0)
    );

    // Opposite vectors: cosine -1, rel_l2 = ||-2r|| / ||r|| = 2.
    let m = compare_tensors("z", &[1.0, 2.0], &[2], &[-1.0, -2.0], &[2], &tol(0.0, 0.0))
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(m.cosine, -1.0);
    assert_eq!(m.rel_l2, 2.0);
    assert_eq!(m.nmse, 4.0);

    // Empty tensor: passes, everything 0, cosine 1.
    let t = compare_tensors("e", &[], &[0, 4], &[], &[0, 4], &tol(0.0, 0.0)).unwrap();
    assert_eq!(t.status, Status::Pass);
    let m = t.metrics.unwrap();
    assert_eq!(
        (m.numel, m.frac_out_of_tol, m.cosine, m.mean_abs_err),
        (0, 0.0, 1.0, 0.0)
    );

    // Scalar (shape []).
    let m = compare_tensors("s", &[2.0], &[], &[2.5], &[], &tol(0.0, 0.0))
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(m.max_abs_err, 0.5);
    assert_eq!(m.max_abs_err_index, Some(vec![]));
}

#[test]
fn shape_mismatch_and_bad_lengths() {
    let t = compare_tensors(
        "s",
        &[1.0; 6],
        &[2, 3],
        &[1.0; 6],
        &[3, 2],
        &Tolerances::default(),
    )
    .unwrap();
    assert_eq!(t.status, Status::ShapeMismatch);
    assert!(t.metrics.is_none());
    let e = compare_tensors("s", &[1.0; 5], &[2, 3], &[1.0; 6], &[2, 3], &tol(0.0, 0.0));
    assert!(matches!(e, Err(CompareError::InvalidInput(m)) if m.contains("`s`")));
}

#[test]
fn defaults_and_overrides() {
    let t = Tolerances::default();
    assert_eq!((t.atol, t.rtol), (1e-5, 1e-4));
    assert_eq!(t.criterion, Criterion::Allclose);
    assert!(!t.equal_nan && t.inf_equal);

    let t = Tolerances::default()
        .with_override(TolOverride::parse("model.*=1,1").unwrap())
        .with_override(TolOverride::parse("model.audio*=0.5,0").unwrap());
    let g = |n: &str| {
        let e = t.for_name(n);
        (e.atol, e.rtol)
    };
    assert_eq!(
        g("model.audio_tower.layers.0.out"),
        (0.5, 0.0),
        "last match wins"
    );
    assert_eq!(g("model.language_model.out"), (1.0, 1.0));
    assert_eq!(g("logits"), (1e-5, 1e-4), "no match: default");
    // Reversed order: the broad pattern now wins for audio too.
    let t2 = Tolerances::default()
        .with_override(TolOverride::parse("model.audio*=0.5,0").unwrap())
        .with_override(TolOverride::parse("model.*=1,1").unwrap());
    assert_eq!(t2.for_name("model.audio_tower.x").atol, 1.0);
    // `*` crosses dots; whole-name match; alternatives and classes work.
    let o = TolOverride::parse("*.layers.[0-9].{mlp,self_attn}.*=1e-3,1e-2").unwrap();
    assert_eq!((o.atol, o.rtol), (1e-3, 1e-2));
    assert!(o.matches("model.audio_tower.layers.3.mlp.out"));
    assert!(o.matches("model.audio_tower.layers.3.self_attn.q_proj.out"));
    assert!(!o.matches("model.audio_tower.layers.12.mlp.out"));
    assert!(!o.matches("model.audio_tower.layers.3.norm.out"));
    // Patterns containing `=` split at the last `=`.
    assert_eq!(TolOverride::parse("a=b=1,2").unwrap().pattern, "a=b");

    for bad in [
        "abc", "a=1", "a=x,1", "a=1,y", "=1,1", "a=-1,0", "a=1,inf", "a[=1,1",
    ] {
        assert!(
            matches!(TolOverride::parse(bad), Err(CompareError::InvalidInput(_))),
            "{bad} should be rejected"
        );
    }
    assert!(Tolerances::new(f64::NAN, 0.0).is_err());
    assert!(Tolerances::new(0.0, -1.0).is_err());
}

#[test]
fn accumulator_merge_matches_single_pass() {
    let r: Vec<f64> = (0..1000).map(|i| ((i * 37) % 101) as f64 - 50.0).collect();
    let a: Vec<f64> = r
        .iter()
        .enumerate()
        .map(|(i, v)| v + ((i * 13) % 7) as f64 * 0.01)
        .collect();
    let et = tol(1e-3, 1e-3).for_name("x");
    let mut one = Accumulator::new(et);
    one.update(&r, &a, 0);
    let mut p1 = Accumulator::new(et);
    p1.update(&r[..333], &a[..333], 0);
    let mut p2 = Accumulator::new(et);
    p2.update(&r[333..], &a[333..], 333);
    p1.merge(&p2);
    let (m1, m2) = (one.finish(&[10, 100]), p1.finish(&[10, 100]));
    assert_eq!(m1.max_abs_err, m2.max_abs_err);
    assert_eq!(m1.max_abs_err_index, m2.max_abs_err_index);
    assert_eq!(m1.out_of_tol, m2.out_of_tol);
    assert_eq!(m1.min_atol, m2.min_atol);
    assert_eq!(m1.max_rel_err, m2.max_rel_err);
    assert!(close(m1.mean_abs_err, m2.mean_abs_err, 1e-12));
    assert!(close(m1.rel_l2, m2.rel_l2, 1e-12));
    assert!(close(m1.cosine, m2.cosine, 1e-12));
    // The arg-max is the first index attaining the maximum |d|.
    let first = (0..1000)
        .max_by(|&i, &j| {
            let (di, dj) = ((a[i] - r[i]).abs(), (a[j] - r[j]).abs());
            di.partial_cmp(&dj).unwrap().then(j.cmp(&i))
        })
        .unwrap();
    assert_eq!(
        m1.max_abs_err_index,
        Some(unravel(first as u64, &[10, 100]))
    );
}

#[test]
fn unravel_is_c_order() {
    assert_eq!(unravel(0, &[2, 3, 4]), vec![0, 0, 0]);
    assert_eq!(unravel(5, &[2, 3, 4]), vec![0, 1, 1]);
    assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
}

fn finite_vec(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(
        prop_oneof![
            4 => -1e6f64..1e6,
            1 => Just(0.0),
            1 => -1e-6f64..1e-6,
        ],
        len,
    )
}

fn pair(len: std::ops::Range<usize>) -> impl Strategy<Value = (Vec<f64>, Vec<f64>)> {
    len.prop_flat_map(|n| (finite_vec(n..n + 1), finite_vec(n..n + 1)))
}

proptest! {
    #[test]
    fn prop_self_comparison_is_exact(r in finite_vec(0..200)) {
        let n = r.len();
        let t = compare_tensors("p", &r, &[n], &r, &[n], &tol(0.0, 0.0)).unwrap();
        prop_assert_eq!(t.status, Status::Pass);
        let m = t.metrics.unwrap();
        prop_assert_eq!(m.max_abs_err, 0.0);
        prop_assert_eq!(m.mean_abs_err, 0.0);
        prop_assert_eq!(m.max_rel_err, 0.0);
        prop_assert_eq!(m.rel_l2, 0.0);
        prop_assert_eq!(m.nmse, 0.0);
        prop_assert_eq!(m.cosine, 1.0);
        prop_assert_eq!(m.min_atol, 0.0);
        prop_assert_eq!(m.out_of_tol, 0);
    }

    #[test]
    fn prop_common_scaling_invariance((r, a) in pair(1..100), c in 1e-3f64..1e3) {
        let n = r.len();
        let rs: Vec<f64> = r.iter().map(|v| v * c).collect();
        let as_: Vec<f64> = a.iter().map(|v| v * c).collect();
        let m1 = compare_tensors("p", &r, &[n], &a, &[n], &tol(0.0, 0.0)).unwrap().metrics.unwrap();
        let m2 = compare_tensors("p", &rs, &[n], &as_, &[n], &tol(0.0, 0.0)).unwrap().metrics.unwrap();
        prop_assert!((m1.cosine - m2.cosine).abs() <= 1e-12, "{} vs {}", m1.cosine, m2.cosine);
        if m1.rel_l2.is_finite() {
            prop_assert!(close(m1.rel_l2, m2.rel_l2, 1e-12), "{} vs {}", m1.rel_l2, m2.rel_l2);
            prop_assert!(close(m1.nmse, m2.nmse, 1e-12));
        } else {
            prop_assert_eq!(m2.rel_l2, f64::INFINITY);
        }
        prop_assert!(close(m1.max_rel_err, m2.max_rel_err, 1e-12));
        // Absolute errors scale by c.
        prop_assert!(close(m1.max_abs_err * c, m2.max_abs_err, 1e-12));
    }

    #[test]
    fn prop_max_abs_at_least_mean_abs((r, a) in pair(0..100)) {
        let n = r.len();
        let m = compare_tensors("p", &r, &[n], &a, &[n], &tol(0.0, 0.0)).unwrap().metrics.unwrap();
        prop_assert!(m.max_abs_err >= m.mean_abs_err);
        prop_assert!(m.cosine >= -1.0 && m.cosine <= 1.0);
        prop_assert!(m.frac_out_of_tol >= 0.0 && m.frac_out_of_tol <= 1.0);
        prop_assert!(m.nmse >= 0.0 && m.rel_l2 >= 0.0);
    }

    #[test]
    fn prop_passes_exactly_at_min_atol(
        (r, a) in pair(1..100),
        rtol in prop_oneof![Just(0.0), 1e-6f64..1.0],
        polygraphy in any::<bool>(),
    ) {
        let n = r.len();
        let mut t = tol(0.0, rtol);
        if polygraphy { t.criterion = Criterion::Polygraphy; }
        let m = compare_tensors("p", &r, &[n], &a, &[n], &t).unwrap().metrics.unwrap();
        t.atol = m.min_atol;
        let at = compare_tensors("p", &r, &[n], &a, &[n], &t).unwrap();
        prop_assert_eq!(at.status, Status::Pass, "min_atol={}", m.min_atol);
        if m.min_atol > 1e-9 * m.max_abs_err {
            t.atol = m.min_atol * 0.5;
            let below = compare_tensors("p", &r, &[n], &a, &[n], &t).unwrap();
            prop_assert_eq!(below.status, Status::Fail);
        }
    }
}

/// Cross-check against the independent numpy implementation in
/// `reference/compare_numpy_bench.py`, whose output for the committed pair
/// `fixtures/compare/metrics_{ref,act}.safetensors` is `fixtures/compare/numpy_metrics.json`
/// (regenerate with `reference/make_compare_fixtures.py`).
#[test]
fn metrics_match_numpy_reference() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/compare");
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("numpy_metrics.json")).unwrap())
            .unwrap();
    let report = voxtrace::compare::compare_dumps(
        &dir.join("metrics_ref.safetensors"),
        &dir.join("metrics_act.safetensors"),
        &Tolerances::default(),
    )
    .unwrap();
    let want = want.as_object().unwrap();
    assert_eq!(want.len(), 5);
    assert_eq!(report.summary.compared, 5);
    for (name, w) in want {
        let got =
            serde_json::to_value(report.get(name).unwrap().metrics.as_ref().unwrap()).unwrap();
        for (k, wv) in w.as_object().unwrap() {
            let gv = &got[k];
            if let Some(wi) = wv.as_u64() {
                assert_eq!(gv.as_u64(), Some(wi), "{name}.{k}");
            } else if let Some(ws) = wv.as_str() {
                assert_eq!(gv.as_str(), Some(ws), "{name}.{k}");
            } else {
                let (g, w) = (gv.as_f64().unwrap(), wv.as_f64().unwrap());
                // Maxima/minima are exact; sums differ only by summation order.
                let tol = match k.as_str() {
                    "max_abs_err" | "max_rel_err" => 0.0,
                    "min_atol" => 4.0 * f64::EPSILON,
                    _ => 1e-12,
                };
                assert!(
                    (g - w).abs() <= tol * g.abs().max(w.abs())
                        || (k == "cosine" && (g - w).abs() <= 1e-15),
                    "{name}.{k}: ours {g} vs numpy {w}"
                );
            }
        }
    }
    let sp = report.get("specials").unwrap().metrics.as_ref().unwrap();
    assert_eq!(sp.nonfinite_mismatch, 3);
}
