//! Quantization-drift metrics of `voxtrace compare`: per-tensor SQNR (dB) and cosine, and for
//! logits tensors the KL divergence of the token distributions (mean, p99, p99.9, max) and
//! top-1 agreement.
//!
//! - against the float64 numpy implementation in `reference/drift_metrics_cases.py`, whose
//!   output for the committed pair `fixtures/compare/drift/{ref,act}.safetensors` is
//!   `fixtures/compare/drift/expected.json` (1e-9 relative);
//! - hand-derived cases (identical tensors, known SQNR, analytic KL, permuted rows, ties,
//!   `-inf` / NaN rows, empty tensors);
//! - properties (proptest): KL ≥ 0, KL(p‖p) = 0, shift invariance, SQNR falls as noise grows,
//!   streaming in arbitrary blocks equals one pass;
//! - the CLI: `voxtrace compare --json --html --logits` carries the fields.

mod common;

use std::path::PathBuf;

use common::compare::*;
use proptest::prelude::*;
use voxtrace::compare::logits::{logits_metrics, percentile_linear, position_kl};
use voxtrace::compare::metrics::sqnr_db;
use voxtrace::compare::{
    CompareOptions, LogitsAccumulator, Report, Tolerances, compare_tensors, execute,
};

fn drift_dir() -> PathBuf {
    fixture("drift")
}

fn expected() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(drift_dir().join("expected.json")).unwrap())
        .unwrap()
}

fn fixture_report(patterns: &[&str]) -> Report {
    let mut o = CompareOptions::new(
        drift_dir().join("ref.safetensors"),
        drift_dir().join("act.safetensors"),
    );
    o.logits = patterns.iter().map(|s| s.to_string()).collect();
    execute(&o).unwrap()
}

/// `got` equals `want` (a JSON number or "inf"/"-inf"/"nan") to `rel` relative; non-finite
/// values must match exactly.
fn check(name: &str, key: &str, got: &serde_json::Value, want: &serde_json::Value, rel: f64) {
    if let Some(w) = want.as_u64() {
        assert_eq!(got.as_u64(), Some(w), "{name}.{key}");
    } else if let Some(w) = want.as_str() {
        assert_eq!(got.as_str(), Some(w), "{name}.{key}: ours {got}");
    } else {
        let (g, w) = (
            got.as_f64()
                .unwrap_or_else(|| panic!("{name}.{key}: {got}")),
            want.as_f64().unwrap(),
        );
        assert!(
            (g - w).abs() <= rel * g.abs().max(w.abs()),
            "{name}.{key}: ours {g:e} vs numpy {w:e}"
        );
    }
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

/// Every metric of every tensor of the fixture equals the numpy float64 reference to 1e-9
/// (relative); counts and non-finite values exactly.
#[test]
fn fixture_matches_numpy_reference() {
    let want = expected();
    let pattern = want["logits_pattern"].as_str().unwrap();
    let report = fixture_report(&[pattern]);
    let tensors = want["tensors"].as_object().unwrap();
    assert_eq!(report.summary.compared, tensors.len());
    let mut logits_seen = 0;
    for (name, w) in tensors {
        let m = report.get(name).unwrap().metrics.as_ref().unwrap();
        let got = serde_json::to_value(m).unwrap();
        let w = w.as_object().unwrap();
        for (k, wv) in w {
            check(name, k, &got[k], wv, 1e-9);
        }
        // No logits field on non-logits tensors, all of them on logits tensors.
        assert_eq!(m.logits.is_some(), w.contains_key("kl_mean"), "{name}");
        logits_seen += m.logits.is_some() as usize;
    }
    assert_eq!(logits_seen, 4);
    // The fixture exercises what it is meant to: a KL tail, flipped argmaxes, SQNR ordering.
    let l = report.get("dec.logits").unwrap().metrics.as_ref().unwrap();
    let lm = l.logits.as_ref().unwrap();
    assert!(lm.kl_mean < lm.kl_p99 && lm.kl_p99 < lm.kl_p999 && lm.kl_p999 < lm.kl_max);
    assert!(lm.top1_agreement > 0.5 && lm.top1_agreement < 1.0);
    let s: Vec<f64> = (0..3)
        .map(|k| {
            report
                .get(&format!("enc.layers.{k}.out"))
                .unwrap()
                .metrics
                .as_ref()
                .unwrap()
                .sqnr_db
        })
        .collect();
    assert!(s[0] > s[1] && s[1] > s[2], "{s:?}");
}

/// Without `--logits`, `head_scores` is an ordinary tensor; names ending in `logits` are
/// always logits.
#[test]
fn logits_pattern_selects_extra_tensors() {
    let report = fixture_report(&[]);
    let m = |n: &str| report.get(n).unwrap().metrics.clone().unwrap();
    assert!(m("head_scores").logits.is_none());
    assert!(m("dec.logits").logits.is_some());
    let v = serde_json::to_value(m("head_scores")).unwrap();
    assert!(v.get("kl_mean").is_none() && v.get("top1_agreement").is_none());
    assert!(v.get("sqnr_db").is_some());
    // A bad glob is an input error.
    let mut o = CompareOptions::new(
        drift_dir().join("ref.safetensors"),
        drift_dir().join("act.safetensors"),
    );
    o.logits = vec!["head_[".into()];
    let e = execute(&o).unwrap_err().to_string();
    assert!(e.contains("--logits") && e.contains("head_["), "{e}");
}

#[test]
fn sqnr_hand_derived() {
    let t = Tolerances::default();
    let m = |r: &[f64], a: &[f64]| {
        compare_tensors("x", r, &[r.len()], a, &[a.len()], &t)
            .unwrap()
            .metrics
            .unwrap()
    };
    // Σr² = 25, Σd² = 0.25: 10·log10(100) = 20 dB exactly.
    assert_eq!(m(&[3.0, 4.0], &[3.5, 4.0]).sqnr_db, 20.0);
    // Σr² = 25, Σd² = 0.0025: 40 dB; halving the error adds 10·log10(4) = 6.0206 dB.
    assert!(close(m(&[3.0, 4.0], &[3.0, 4.05]).sqnr_db, 40.0, 1e-12));
    let a = m(&[3.0, 4.0], &[3.0, 4.1]).sqnr_db;
    let b = m(&[3.0, 4.0], &[3.0, 4.05]).sqnr_db;
    assert!(close(b - a, 20.0 * 2f64.log10(), 1e-9));
    // Noise as strong as the signal: 0 dB; stronger: negative.
    assert_eq!(m(&[1.0, -1.0], &[0.0, 0.0]).sqnr_db, 0.0);
    assert!(close(m(&[1.0], &[-9.0]).sqnr_db, -20.0, 1e-12));
    // Identical (also all-zero, also empty): +inf; zero reference with error: -inf.
    assert_eq!(m(&[1.0, 2.0], &[1.0, 2.0]).sqnr_db, f64::INFINITY);
    assert_eq!(m(&[0.0, 0.0], &[0.0, 0.0]).sqnr_db, f64::INFINITY);
    assert_eq!(m(&[], &[]).sqnr_db, f64::INFINITY);
    assert_eq!(m(&[0.0, 0.0], &[0.0, 1e-3]).sqnr_db, f64::NEG_INFINITY);
    // Non-finite positions stay out of the sums (they fail through the NaN/Inf rule).
    assert_eq!(
        m(&[3.0, 4.0, f64::NAN], &[3.5, 4.0, 1.0]).sqnr_db,
        20.0,
        "NaN position excluded"
    );
    // The helper's edge cases and the overflow fallback.
    assert_eq!(sqnr_db(0.0, 0.0), f64::INFINITY);
    assert_eq!(sqnr_db(1e300, 1e-300), 6000.0);
    assert!(close(sqnr_db(1e-300, 1e300), -6000.0, 1e-12));
    // JSON: the strings "inf" / "-inf", never null.
    let v = serde_json::to_value(m(&[1.0], &[1.0])).unwrap();
    assert_eq!(v["sqnr_db"], "inf");
    assert_eq!(v["cosine"], 1.0);
    let v = serde_json::to_value(m(&[0.0], &[1.0])).unwrap();
    assert_eq!(v["sqnr_db"], "-inf");
    assert_eq!(v["cosine"], 0.0);
}

/// A report written before `sqnr_db` existed still parses (the field reads back as NaN).
#[test]
fn older_reports_still_parse() {
    let t = compare_tensors("x", &[1.0], &[1], &[2.0], &[1], &Tolerances::default()).unwrap();
    let mut v = serde_json::to_value(&t).unwrap();
    v["metrics"].as_object_mut().unwrap().remove("sqnr_db");
    let back: voxtrace::compare::TensorResult = serde_json::from_value(v).unwrap();
    let m = back.metrics.unwrap();
    assert!(m.sqnr_db.is_nan());
    assert!(m.logits.is_none());
}

#[test]
fn kl_hand_derived() {
    // P = (1/2, 1/2), Q = (3/4, 1/4): KL = ½ln(2/3) + ½ln 2 = ½ln(4/3). Ties: both argmax 0.
    let (kl, agree) = position_kl(&[0.0, 0.0], &[3f64.ln(), 0.0]).unwrap();
    assert!(close(kl, 0.5 * (4.0f64 / 3.0).ln(), 1e-14), "{kl}");
    assert!(agree);
    // The reverse direction is a different number: KL(Q‖P) = ¾ln(3/2) + ¼ln(1/2).
    let (klr, agree_r) = position_kl(&[3f64.ln(), 0.0], &[0.0, 0.0]).unwrap();
    assert!(close(klr, 0.75 * 1.5f64.ln() + 0.25 * 0.5f64.ln(), 1e-14));
    assert!(
        agree_r,
        "tie in the actual row resolved to index 0 = reference argmax"
    );
    assert!((kl - klr).abs() > 1e-3);
    // Argmax moved: disagree.
    assert!(!position_kl(&[0.0, 0.0], &[0.0, 3f64.ln()]).unwrap().1);

    // A reversed row: P = softmax(0,1,2,3), Q_i = P_{3−i}, KL = Σ P_i (log P_i − log P_{3−i})
    // = Σ P_i (2i − 3); every argmax moves.
    let x = [0.0, 1.0, 2.0, 3.0];
    let y = [3.0, 2.0, 1.0, 0.0];
    let z: f64 = x.iter().map(|v: &f64| v.exp()).sum();
    let want: f64 = x.iter().map(|&v| v.exp() / z * (2.0 * v - 3.0)).sum();
    let (kl, agree) = position_kl(&x, &y).unwrap();
    assert!(close(kl, want, 1e-14), "{kl} vs {want}");
    assert!(!agree);
    let lm = logits_metrics(&[x, x, x].concat(), &[y, y, y].concat(), &[3, 4]);
    assert_eq!((lm.positions, lm.kl_positions, lm.top1_agree), (3, 3, 0));
    assert_eq!(lm.top1_agreement, 0.0);
    assert!(close(lm.kl_mean, want, 1e-14) && close(lm.kl_p999, want, 1e-14));

    // Identical rows: KL exactly 0, top-1 1.0.
    let lm = logits_metrics(&[1.0, 5.0, -2.0, 0.5], &[1.0, 5.0, -2.0, 0.5], &[2, 2]);
    assert_eq!(
        (lm.kl_mean, lm.kl_p99, lm.kl_p999, lm.kl_max),
        (0.0, 0.0, 0.0, 0.0)
    );
    assert_eq!(lm.top1_agreement, 1.0);
    // A constant shift of a row leaves the distribution unchanged.
    let (kl, agree) = position_kl(&[1.0, 5.0, -2.0], &[101.0, 105.0, 98.0]).unwrap();
    assert!(kl < 1e-15 && agree, "{kl}");
}

#[test]
fn ties_take_the_first_index() {
    // Reference argmax of [1, 5, 5] is 1.
    assert!(position_kl(&[1.0, 5.0, 5.0], &[1.0, 5.0, 5.0]).unwrap().1);
    assert!(!position_kl(&[1.0, 5.0, 5.0], &[1.0, 4.0, 5.0]).unwrap().1);
    assert!(!position_kl(&[1.0, 5.0, 5.0], &[5.0, 5.0, 1.0]).unwrap().1);
    assert!(position_kl(&[1.0, 5.0, 5.0], &[1.0, 6.0, 6.0]).unwrap().1);
}

#[test]
fn masked_and_undefined_rows() {
    let ninf = f64::NEG_INFINITY;
    // −inf in both at the same token: probability 0 in both, no contribution.
    let (kl, agree) = position_kl(&[0.0, ninf, 0.0], &[0.0, ninf, 0.0]).unwrap();
    assert_eq!((kl, agree), (0.0, true));
    // Same as the row without that token.
    let a = position_kl(&[0.0, ninf, 1.0], &[0.5, ninf, 0.0]).unwrap().0;
    let b = position_kl(&[0.0, 1.0], &[0.5, 0.0]).unwrap().0;
    assert!(close(a, b, 1e-15));
    // The actual model masks a token the reference gives mass: KL = +inf.
    assert_eq!(
        position_kl(&[0.0, 0.0], &[0.0, ninf]).unwrap().0,
        f64::INFINITY
    );
    // The reference masks a token the actual model gives mass: finite (ln 2 here).
    assert!(close(
        position_kl(&[0.0, ninf], &[0.0, 0.0]).unwrap().0,
        2f64.ln(),
        1e-15
    ));
    // Reference row undefined (NaN, +inf, all −inf): position skipped.
    for bad in [[f64::NAN, 0.0], [f64::INFINITY, 0.0], [ninf, ninf]] {
        assert!(position_kl(&bad, &[0.0, 1.0]).is_none());
    }
    // Actual row undefined: KL = +inf, disagree.
    assert_eq!(
        position_kl(&[0.0, 1.0], &[f64::NAN, 1.0]),
        Some((f64::INFINITY, false))
    );
    let lm = logits_metrics(
        &[0.0, 1.0, f64::NAN, 1.0, 0.0, 1.0],
        &[0.0, 1.0, 0.0, 1.0, f64::NAN, 1.0],
        &[3, 2],
    );
    assert_eq!((lm.positions, lm.kl_positions, lm.top1_agree), (3, 2, 1));
    assert_eq!(lm.top1_agreement, 0.5);
    assert_eq!(lm.kl_max, f64::INFINITY);
    assert_eq!(lm.kl_mean, f64::INFINITY);
    // No position measured (and an empty tensor): every statistic NaN, "nan" in JSON.
    for lm in [
        logits_metrics(&[f64::NAN, 0.0], &[0.0, 0.0], &[1, 2]),
        logits_metrics(&[], &[], &[0, 5]),
        logits_metrics(&[], &[], &[3, 0]),
    ] {
        assert_eq!(lm.kl_positions, 0);
        assert!(lm.kl_mean.is_nan() && lm.kl_p999.is_nan() && lm.top1_agreement.is_nan());
        let v = serde_json::to_value(&lm).unwrap();
        assert_eq!(v["kl_mean"], "nan");
    }
    // Rank 0: one position of vocabulary 1.
    let lm = logits_metrics(&[2.0], &[3.0], &[]);
    assert_eq!((lm.vocab, lm.positions, lm.top1_agree), (1, 1, 1));
    assert_eq!(lm.kl_mean, 0.0);
}

#[test]
fn percentiles_interpolate_linearly() {
    let v: Vec<f64> = (0..=10).map(f64::from).collect();
    assert!(close(percentile_linear(&v, 99.0), 9.9, 1e-15));
    assert!(close(percentile_linear(&v, 99.9), 9.99, 1e-15));
    assert_eq!(percentile_linear(&v, 100.0), 10.0);
    assert_eq!(percentile_linear(&v, 0.0), 0.0);
    assert_eq!(percentile_linear(&v, 50.0), 5.0);
    assert_eq!(percentile_linear(&[7.0], 99.9), 7.0);
    assert!(percentile_linear(&[], 99.0).is_nan());
    // An infinite top value makes the interpolated tail infinite, not NaN.
    assert_eq!(
        percentile_linear(&[0.0, 1.0, f64::INFINITY], 99.0),
        f64::INFINITY
    );
    assert_eq!(percentile_linear(&[0.0, 1.0, f64::INFINITY], 50.0), 1.0);
}

/// Logits metrics through the dump pipeline equal the in-memory computation: a compressed
/// `.npz` (streamed; rows cross the 16384-value blocks) and a memory-mapped safetensors tensor
/// larger than one parallel work item (logits tensors are not split into chunks).
#[test]
fn pipeline_matches_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let make = |pos: usize, vocab: usize| {
        let r: Vec<f32> = (0..pos * vocab)
            .map(|i| ((i * 7919 % 1013) as f32 - 506.0) / 97.0)
            .collect();
        let a: Vec<f32> = r
            .iter()
            .enumerate()
            .map(|(i, v)| v + ((i * 31 % 17) as f32 - 8.0) / 40.0)
            .collect();
        (r, a)
    };
    let want = |r: &[f32], a: &[f32], shape: &[usize]| {
        let r64: Vec<f64> = r.iter().map(|&v| v as f64).collect();
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        logits_metrics(&r64, &a64, shape)
    };
    let got = |rp: &std::path::Path, ap: &std::path::Path| {
        let rep = voxtrace::compare::compare_dumps(rp, ap, &Tolerances::default()).unwrap();
        rep.get("x.logits")
            .unwrap()
            .metrics
            .clone()
            .unwrap()
            .logits
            .unwrap()
    };

    let (pos, vocab) = (301usize, 113usize); // 34013 values
    let (r, a) = make(pos, vocab);
    let (rp, ap) = (dir.path().join("r.npz"), dir.path().join("a.npz"));
    let shape = [pos as u64, vocab as u64];
    write_npz(&rp, &[("x.logits", Arr::F32(&shape, &r))], true);
    write_npz(&ap, &[("x.logits", Arr::F32(&shape, &a))], true);
    let g = got(&rp, &ap);
    assert_eq!(g, want(&r, &a, &[pos, vocab]));
    assert_eq!(g.positions, pos as u64);
    assert!(g.kl_mean > 0.0 && g.top1_agree > 0);

    let (pos, vocab) = (1031usize, 1021usize); // > ITEM_ELEMS values
    assert!(pos * vocab > voxtrace::compare::ITEM_ELEMS);
    let (r, a) = make(pos, vocab);
    let (rp, ap) = (
        dir.path().join("r.safetensors"),
        dir.path().join("a.safetensors"),
    );
    write_safetensors(&rp, &[st_f32("x.logits", &[pos, vocab], &r)], None);
    write_safetensors(&ap, &[st_f32("x.logits", &[pos, vocab], &a)], None);
    let g = got(&rp, &ap);
    assert_eq!(g, want(&r, &a, &[pos, vocab]));
    assert_eq!(g.positions, pos as u64);
}

fn row(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(-30.0f64..30.0, len)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn prop_kl_nonnegative_and_zero_on_itself(
        (x, y) in (1usize..40).prop_flat_map(|n| (row(n..n + 1), row(n..n + 1)))
    ) {
        let (kl, _) = position_kl(&x, &y).unwrap();
        prop_assert!(kl >= 0.0);
        prop_assert!(kl.is_finite());
        let (k0, agree) = position_kl(&x, &x).unwrap();
        prop_assert_eq!(k0, 0.0);
        prop_assert!(agree);
    }

    #[test]
    fn prop_kl_shift_invariant(x in row(1..40), c in -50.0f64..50.0) {
        let y: Vec<f64> = x.iter().map(|v| v + c).collect();
        let (kl, _) = position_kl(&x, &y).unwrap();
        prop_assert!(kl <= 1e-12, "{}", kl);
    }

    #[test]
    fn prop_kl_grows_with_temperature_gap(x in row(2..30)) {
        // Sharpening the distribution by a larger factor moves it further away.
        prop_assume!(x.iter().any(|&v| (v - x[0]).abs() > 1e-3));
        let s = |k: f64| x.iter().map(|v| v * k).collect::<Vec<f64>>();
        let k1 = position_kl(&x, &s(1.5)).unwrap().0;
        let k2 = position_kl(&x, &s(3.0)).unwrap().0;
        prop_assert!(k2 > k1, "{} {}", k1, k2);
    }

    #[test]
    fn prop_sqnr_falls_as_noise_grows(
        (r, e) in (1usize..100).prop_flat_map(|n| (row(n..n + 1), row(n..n + 1))),
        k in 1e-4f64..1.0,
    ) {
        prop_assume!(r.iter().any(|&v| v != 0.0) && e.iter().any(|&v| v.abs() > 1e-3));
        let t = Tolerances::default();
        let s = |k: f64| {
            let a: Vec<f64> = r.iter().zip(&e).map(|(r, e)| r + k * e).collect();
            compare_tensors("x", &r, &[r.len()], &a, &[a.len()], &t).unwrap().metrics.unwrap()
        };
        let (m1, m2) = (s(k), s(2.0 * k));
        prop_assert!(m1.sqnr_db > m2.sqnr_db);
        // Doubling the error costs 20·log10(2) = 6.02 dB.
        prop_assert!((m1.sqnr_db - m2.sqnr_db - 20.0 * 2f64.log10()).abs() < 1e-6);
        // One definition: SQNR = −10·log10(nmse).
        prop_assert!((m1.sqnr_db + 10.0 * m1.nmse.log10()).abs() < 1e-9);
    }

    #[test]
    fn prop_streaming_blocks_equal_one_pass(
        (vocab, x, y) in (1usize..12, 1usize..12).prop_flat_map(|(v, p)| {
            (Just(v), row(v * p..v * p + 1), row(v * p..v * p + 1))
        }),
        cuts in prop::collection::vec(1usize..20, 1..10),
    ) {
        let shape = [x.len() / vocab, vocab];
        let whole = logits_metrics(&x, &y, &shape);
        let mut acc = LogitsAccumulator::new(&shape);
        let (mut pos, mut k) = (0, 0);
        while pos < x.len() {
            let n = cuts[k % cuts.len()].min(x.len() - pos);
            acc.update(&x[pos..pos + n], &y[pos..pos + n]);
            pos += n;
            k += 1;
        }
        prop_assert_eq!(acc.finish(), whole);
    }
}

/// `voxtrace compare --json --html --logits` writes the fields, the table shows the SQNR
/// column and the logits block, the HTML the SQNR chart and the logits table.
#[test]
fn cli_reports_carry_the_drift_fields() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("r.json");
    let html = dir.path().join("r.html");
    let want = expected();
    let o = common::voxtrace(&[
        "compare",
        common::s(&drift_dir().join("ref.safetensors")),
        common::s(&drift_dir().join("act.safetensors")),
        "--json",
        common::s(&json),
        "--html",
        common::s(&html),
        "--logits",
        want["logits_pattern"].as_str().unwrap(),
    ]);
    // Drift fails the default tolerances: exit 1, reports written.
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["schema_version"], 1);
    for t in v["tensors"].as_array().unwrap() {
        let name = t["name"].as_str().unwrap();
        let w = &want["tensors"][name];
        let m = &t["metrics"];
        for k in ["sqnr_db", "cosine"] {
            check(name, k, &m[k], &w[k], 1e-9);
        }
        if w.get("kl_mean").is_some() {
            for k in ["kl_mean", "kl_p99", "kl_p999", "kl_max", "top1_agreement"] {
                check(name, k, &m[k], &w[k], 1e-9);
            }
        } else {
            assert!(m.get("kl_mean").is_none(), "{name}");
        }
    }
    assert_eq!(v["tensors"].as_array().unwrap().len(), 10);

    let table = String::from_utf8(o.stdout).unwrap();
    let header = table.lines().find(|l| l.starts_with("#  name")).unwrap();
    assert!(header.contains(" cosine  sqnr_db "), "{header}");
    let row = table
        .lines()
        .find(|l| l.contains(" enc.layers.1.out "))
        .unwrap();
    assert!(row.contains(" 40.14 "), "{row}");
    let ident = table
        .lines()
        .find(|l| l.contains(" enc.identical "))
        .unwrap();
    assert!(ident.contains(" inf "), "{ident}");
    assert!(table.contains("\nlogits: KL(P_ref||P_act)"), "{table}");
    let dec = table
        .lines()
        .filter(|l| l.contains(" dec.logits "))
        .nth(1)
        .expect("dec.logits in the logits block");
    assert!(dec.contains("97.16% (583/600)"), "{dec}");
    assert!(
        table
            .lines()
            .any(|l| l.contains(" head_scores ") && l.contains("85.00% (34/40)")),
        "{table}"
    );

    let h = std::fs::read_to_string(&html).unwrap();
    assert!(h.contains(r#"class="l-sqnr""#));
    assert!(h.contains("aria-label=\"SQNR per tensor\""));
    assert!(
        h.contains("m-sqnr_inf"),
        "identical tensors drawn on the inf line"
    );
    assert!(h.contains(">inf</text>") && h.contains(">-inf</text>"));
    assert!(h.contains("Token distributions of logits tensors"));
    // minijinja's HTML escaping writes `/` as `&#x2f;`.
    assert!(
        h.contains("97.16% (583&#x2f;600)"),
        "logits row in the HTML table"
    );
    // Still self-contained: the one http string is the first SVG's namespace.
    assert_eq!(h.matches("http").count(), 1);
}
