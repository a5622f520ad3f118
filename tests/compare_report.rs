//! Report tests for `voxtrace compare`: a synthetic reference/actual pair whose every metric is
//! known by construction, the terminal table and JSON (insta snapshots), the HTML report,
//! `run()` exit codes and outputs, chunk-parallel comparison of a large tensor, and order
//! fallbacks.

mod common;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use common::compare::*;
use safetensors::Dtype;
use voxtrace::cli::compare::{CompareArgs, CriterionArg, run};
use voxtrace::compare::{
    DType, Dump, ITEM_ELEMS, OrderSource, Report, Status, TolOverride, Tolerances, compare_dumps,
    compare_opened, compare_tensors,
};

const ORDER: [&str; 6] = [
    "model.embed.out",
    "model.layers.0.attn.out",
    "model.layers.0.mlp.out",
    "model.layers.1.out",
    "model.norm.out",
    "logits",
];

/// Reference and actual dumps:
/// - `model.embed.out` F32 [2,2] identical -> PASS, all errors 0;
/// - `model.layers.0.attn.out` F32 [2,2]: r = [1,-2,4,0], a = [1.5,-2,3,0.25] -> FAIL;
/// - `model.layers.0.mlp.out` F16 in reference, F32 in actual, same values -> PASS, dtype differs;
/// - `model.layers.1.out` missing from actual;
/// - `model.norm.out` [2,3] vs [3,2] -> shape mismatch;
/// - `logits` zeros in both -> PASS, cosine 1;
/// - actual has an extra `debug.extra`.
fn write_pair(dir: &Path) -> (PathBuf, PathBuf) {
    let r = dir.join("ref.safetensors");
    let a = dir.join("act.safetensors");
    let mlp = [0.5f32, -1.25, 2.0];
    let oj = order_json(&ORDER);
    write_safetensors(
        &r,
        &[
            st_f32("logits", &[2], &[0.0, 0.0]),
            st_f32("model.embed.out", &[2, 2], &[1.0, 2.0, 3.0, 4.0]),
            st_f32("model.layers.0.attn.out", &[2, 2], &[1.0, -2.0, 4.0, 0.0]),
            st("model.layers.0.mlp.out", Dtype::F16, &[3], f16_bytes(&mlp)),
            st_f32("model.layers.1.out", &[1], &[1.0]),
            st_f32("model.norm.out", &[2, 3], &[1.0; 6]),
        ],
        Some(&[
            ("voxtrace.format", "trace-v1"),
            ("voxtrace.order", oj.as_str()),
            ("voxtrace.source", "pytorch transformers 5.23.0 eager f32"),
        ]),
    );
    write_safetensors(
        &a,
        &[
            st_f32("logits", &[2], &[0.0, 0.0]),
            st_f32("model.embed.out", &[2, 2], &[1.0, 2.0, 3.0, 4.0]),
            st_f32("model.layers.0.attn.out", &[2, 2], &[1.5, -2.0, 3.0, 0.25]),
            st_f32("model.layers.0.mlp.out", &[3], &mlp),
            st_f32("model.norm.out", &[3, 2], &[1.0; 6]),
            st_f32("debug.extra", &[1], &[9.0]),
        ],
        Some(&[("voxtrace.source", "burn 0.22.1 flex")]),
    );
    (r, a)
}

/// Replace the temporary paths so that snapshots are stable.
fn stable(mut r: Report) -> Report {
    r.reference.path = "ref.safetensors".into();
    r.actual.path = "act.safetensors".into();
    r
}

#[test]
fn synthetic_pair_known_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, ap) = write_pair(dir.path());
    let r = compare_dumps(&rp, &ap, &Tolerances::default()).unwrap();
    assert_eq!(r.order_source, OrderSource::Reference);
    let names: Vec<&str> = r.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ORDER);
    let st: Vec<Status> = r.tensors.iter().map(|t| t.status).collect();
    assert_eq!(
        st,
        [
            Status::Pass,
            Status::Fail,
            Status::Pass,
            Status::Missing,
            Status::ShapeMismatch,
            Status::Pass
        ]
    );

    let m = r.tensors[0].metrics.as_ref().unwrap();
    assert_eq!(
        (m.max_abs_err, m.mean_abs_err, m.rel_l2, m.cosine),
        (0.0, 0.0, 0.0, 1.0)
    );

    // d = [0.5, 0, -1, 0.25]
    let t = &r.tensors[1];
    let m = t.metrics.as_ref().unwrap();
    assert_eq!(m.max_abs_err, 1.0);
    assert_eq!(m.max_abs_err_index, Some(vec![1, 0]));
    assert_eq!(m.mean_abs_err, 1.75 / 4.0);
    assert_eq!(m.max_rel_err, 0.5); // max(0.5/1, 0/2, 1/4); r = 0 excluded
    assert_eq!(m.nmse, 1.3125 / 21.0); // (0.25 + 1 + 0.0625) / (1 + 4 + 16)
    assert_eq!(m.rel_l2, 0.25);
    let cos = 17.5 / (15.3125f64 * 21.0).sqrt(); // a.r = 1.5+4+12; |a|^2 = 2.25+4+9+0.0625
    assert!((m.cosine - cos).abs() < 1e-15);
    // default tol: |d| > 1e-5 + 1e-4 |r| at 0, 2, 3
    assert_eq!(m.out_of_tol, 3);
    assert_eq!(m.frac_out_of_tol, 0.75);
    // min atol = max(0.5 - 1e-4, 0 - 2e-4, 1 - 4e-4, 0.25 - 0) = 0.9996
    assert!((m.min_atol - 0.9996).abs() < 1e-15);
    assert_eq!((t.atol, t.rtol), (1e-5, 1e-4));

    let t = &r.tensors[2];
    assert!(t.dtype_differs);
    assert_eq!(t.reference.dtype, DType::F16);
    assert_eq!(t.actual.as_ref().unwrap().dtype, DType::F32);
    assert_eq!(t.metrics.as_ref().unwrap().max_abs_err, 0.0);

    assert!(r.tensors[3].actual.is_none() && r.tensors[3].metrics.is_none());
    assert_eq!(r.tensors[4].actual.as_ref().unwrap().shape, vec![3, 2]);
    assert_eq!(r.tensors[5].metrics.as_ref().unwrap().cosine, 1.0);

    assert_eq!(r.missing(), ["model.layers.1.out"]);
    assert_eq!(r.shape_mismatches(), ["model.norm.out"]);
    assert_eq!(r.dtype_differences(), ["model.layers.0.mlp.out"]);
    assert_eq!(r.extra.len(), 1);
    assert_eq!(r.extra[0].name, "debug.extra");
    assert_eq!(r.first_failure().unwrap().name, "model.layers.0.attn.out");
    assert!(!r.passed());
    assert_eq!(r.exit_code(), 1);
    let s = &r.summary;
    assert_eq!(
        (
            s.total,
            s.compared,
            s.passed,
            s.failed,
            s.missing,
            s.shape_mismatch
        ),
        (6, 4, 3, 1, 1, 1)
    );
    assert_eq!((s.dtype_differs, s.extra), (1, 1));
}

#[test]
fn overrides_change_the_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, ap) = write_pair(dir.path());
    // Loosen the attention output enough to pass: atol 1 covers |d| <= 1.
    let t = Tolerances::default().with_override(TolOverride::parse("*.attn.*=1,0").unwrap());
    let r = compare_dumps(&rp, &ap, &t).unwrap();
    let at = r.get("model.layers.0.attn.out").unwrap();
    assert_eq!(at.status, Status::Pass);
    assert_eq!((at.atol, at.rtol), (1.0, 0.0));
    // Still failing overall: a missing tensor and a shape mismatch, the first is layers.1.
    assert!(!r.passed());
    assert_eq!(r.first_failure().unwrap().name, "model.layers.1.out");
    assert_eq!(r.first_failure().unwrap().status, Status::Missing);
    assert!(r.first_numeric_failure().is_none());
    assert_eq!(r.tolerances.overrides.len(), 1);
}

#[test]
fn passing_pair_exits_zero_and_extras_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.safetensors");
    let a = dir.path().join("a.safetensors");
    write_safetensors(&r, &[st_f32("x", &[3], &[1.0, 2.0, 3.0])], None);
    write_safetensors(
        &a,
        &[
            st_f32("x", &[3], &[1.0, 2.0, 3.0001]),
            st_f32("only_in_actual", &[1], &[0.0]),
        ],
        None,
    );
    let json = dir.path().join("out.json");
    let html = dir.path().join("out.html");
    let mut args = CompareArgs::new(&r, &a);
    args.json = Some(json.clone());
    args.html = Some(html.clone());
    // |d| = 1e-4 (in f32: 3.0001 - 3 = 1.0013580322265625e-4) vs 1e-5 + 1e-4 * 3 -> pass
    assert_eq!(run(&args).unwrap(), ExitCode::SUCCESS);
    let rep = Report::from_json(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(rep.passed());
    assert_eq!(rep.extra[0].name, "only_in_actual");
    assert!(std::fs::read_to_string(&html).unwrap().contains("PASSED"));
    // Atomic writes leave no temporary files behind.
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["a.safetensors", "out.html", "out.json", "r.safetensors"]
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&json).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }
    // Tighten: now it fails with exit 1.
    args.rtol = 0.0;
    assert_eq!(run(&args).unwrap(), ExitCode::from(1));
}

#[test]
fn run_writes_json_that_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, ap) = write_pair(dir.path());
    let json = dir.path().join("report.json");
    let mut args = CompareArgs::new(&rp, &ap);
    args.json = Some(json.clone());
    args.quiet = true;
    assert_eq!(run(&args).unwrap(), ExitCode::from(1));
    let text = std::fs::read_to_string(&json).unwrap();
    let back = Report::from_json(&text).unwrap();
    let direct = compare_dumps(&rp, &ap, &Tolerances::default()).unwrap();
    assert_eq!(back, direct);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["summary"]["first_failure"], "model.layers.0.attn.out");
    assert_eq!(v["tensors"][1]["status"], "fail");
    assert_eq!(v["tensors"][3]["status"], "missing");
    assert_eq!(v["tensors"][4]["status"], "shape_mismatch");
}

#[test]
fn non_finite_metrics_serialize_as_strings() {
    let t = compare_tensors(
        "z",
        &[0.0, f64::NAN],
        &[2],
        &[1.0, 2.0],
        &[2],
        &Tolerances::default(),
    )
    .unwrap();
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(v["metrics"]["rel_l2"], "inf");
    assert_eq!(v["metrics"]["nmse"], "inf");
    assert_eq!(v["metrics"]["min_atol"], "inf");
    assert_eq!(v["metrics"]["max_abs_err"], 1.0);
    let back: voxtrace::compare::TensorResult = serde_json::from_value(v).unwrap();
    assert_eq!(back.metrics.unwrap().rel_l2, f64::INFINITY);
}

#[test]
fn table_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, ap) = write_pair(dir.path());
    let r = stable(compare_dumps(&rp, &ap, &Tolerances::default()).unwrap());
    insta::assert_snapshot!("compare_table", r.render_table());
}

#[test]
fn json_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, ap) = write_pair(dir.path());
    let t = Tolerances::default().with_override(TolOverride::parse("logits=0,0").unwrap());
    let r = stable(compare_dumps(&rp, &ap, &t).unwrap());
    insta::assert_snapshot!("compare_json", r.to_json());
}

#[test]
fn table_is_aligned() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, ap) = write_pair(dir.path());
    let r = compare_dumps(&rp, &ap, &Tolerances::default()).unwrap();
    let table = r.render_table();
    let lines: Vec<&str> = table.lines().collect();
    let header = lines.iter().position(|l| l.starts_with("#  name")).unwrap();
    // The "status" column starts at the same character offset on every row.
    let col = lines[header].find("status").unwrap();
    for l in &lines[header + 1..header + 1 + ORDER.len()] {
        let label = &l[col..];
        assert!(
            ["PASS", "FAIL", "SHAPE", "MISSING"].contains(&label),
            "row {l:?} misaligned: {label:?}"
        );
    }
    assert!(table.trim_end().lines().last().unwrap().starts_with(
        "FAILED: 6 tensors, 4 compared, 3 passed, 1 failed, 1 missing, 1 shape mismatch, 1 dtype differences, 1 extra; first failure: #1 model.layers.0.attn.out (FAIL)"
    ));
}

#[test]
fn html_report_is_self_contained_and_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.safetensors");
    let a = dir.path().join("a.safetensors");
    let evil = "x.<script>alert(\"&\")</script>.out";
    write_safetensors(
        &r,
        &[
            st_f32(evil, &[2], &[1.0, 2.0]),
            st_f32("ok", &[2], &[1.0, 2.0]),
            st_f32("gone", &[1], &[1.0]),
        ],
        None,
    );
    write_safetensors(
        &a,
        &[
            st_f32(evil, &[2], &[1.0, 2.5]),
            st_f32("ok", &[2], &[1.0, 2.0]),
        ],
        None,
    );
    let rep = compare_dumps(&r, &a, &Tolerances::default()).unwrap();
    let html = rep.render_html().unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("<script>alert"), "name must be escaped");
    assert!(html.contains("x.&lt;script&gt;alert(&quot;&amp;&quot;)&lt;&#x2f;script&gt;.out"));
    // Exactly one <script> element: ours.
    assert_eq!(html.matches("<script").count(), 1);
    // No network: no external resources of any kind.
    for bad in ["<link", "src=", "href=", "@import", "url(", "https://"] {
        assert!(!html.contains(bad), "HTML contains {bad:?}");
    }
    // The only http: string is the SVG namespace identifier.
    assert_eq!(html.matches("http").count(), 1);
    assert!(html.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
    // Chart: both series, the atol step line, a failing marker, a gap for the missing tensor.
    assert!(html.contains(r#"class="l-max_abs""#));
    assert!(html.contains(r#"class="l-rel_l2""#));
    assert!(html.contains(r#"class="l-atol""#));
    assert!(html.contains("m-fail"));
    assert!(html.contains(r#"class="gap""#));
    assert!(
        html.contains(">1e-5<") || html.contains(">1e-6<"),
        "log-scale labels"
    );
    // The table has one row per reference tensor.
    assert_eq!(html.matches("<tr class=").count(), 3);
}

#[test]
fn large_tensor_is_split_and_matches_single_pass() {
    let dir = tempfile::tempdir().unwrap();
    let n = ITEM_ELEMS * 2 + 12343;
    assert!(n.is_multiple_of(5));
    let rv: Vec<f32> = (0..n).map(|i| ((i % 1000) as f32 - 500.0) / 64.0).collect();
    let mut av = rv.clone();
    for (i, v) in av.iter_mut().enumerate() {
        if i % 7 == 0 {
            *v += 1.0 / 1024.0;
        }
    }
    // Largest error in the last chunk, so the merged arg-max must come from it.
    let last = n - 3;
    av[last] += 0.5;
    let (rp, ap) = (
        dir.path().join("r.safetensors"),
        dir.path().join("a.safetensors"),
    );
    write_safetensors(&rp, &[st_f32("big", &[n / 5, 5], &rv)], None);
    write_safetensors(&ap, &[st_f32("big", &[n / 5, 5], &av)], None);
    let t = Tolerances::new(5e-4, 0.0).unwrap();
    let r = compare_dumps(&rp, &ap, &t).unwrap();
    // Pages are released after each chunk (madvise DONTNEED); re-reading the same opened dumps
    // must give the same report.
    let (rd, ad) = (Dump::open(&rp).unwrap(), Dump::open(&ap).unwrap());
    let again1 = compare_opened(&rd, &ad, &t).unwrap();
    let again2 = compare_opened(&rd, &ad, &t).unwrap();
    assert_eq!(again1.tensors, r.tensors);
    assert_eq!(again2.tensors, r.tensors);
    let m = r.tensors[0].metrics.clone().unwrap();
    let r64: Vec<f64> = rv.iter().map(|&x| x as f64).collect();
    let a64: Vec<f64> = av.iter().map(|&x| x as f64).collect();
    let single = compare_tensors("big", &r64, &[n / 5, 5], &a64, &[n / 5, 5], &t)
        .unwrap()
        .metrics
        .unwrap();
    assert_eq!(m.max_abs_err, single.max_abs_err);
    assert_eq!(m.max_abs_err_index, Some(vec![last / 5, last % 5]));
    assert_eq!(m.max_abs_err_index, single.max_abs_err_index);
    assert_eq!(m.out_of_tol, single.out_of_tol);
    assert_eq!(m.out_of_tol, n.div_ceil(7) as u64);
    assert_eq!(m.min_atol, single.min_atol);
    assert_eq!(m.numel, n as u64);
    for (x, y) in [
        (m.mean_abs_err, single.mean_abs_err),
        (m.rel_l2, single.rel_l2),
        (m.nmse, single.nmse),
        (m.cosine, single.cosine),
    ] {
        assert!((x - y).abs() <= 1e-12 * x.abs().max(y.abs()), "{x} vs {y}");
    }
}

#[test]
fn order_falls_back_to_actual_then_storage() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.safetensors");
    let a = dir.path().join("a.safetensors");
    // Reference without order; actual declares c, a (b is not mentioned).
    write_safetensors(
        &r,
        &[
            st_f32("a", &[1], &[1.0]),
            st_f32("b", &[1], &[1.0]),
            st_f32("c", &[1], &[1.0]),
        ],
        None,
    );
    let oj = order_json(&["c", "zz", "a"]);
    write_safetensors(
        &a,
        &[
            st_f32("a", &[1], &[1.0]),
            st_f32("c", &[1], &[1.0]),
            st_f32("zz", &[1], &[1.0]),
        ],
        Some(&[("voxtrace.order", oj.as_str())]),
    );
    let rep = compare_dumps(&r, &a, &Tolerances::default()).unwrap();
    assert_eq!(rep.order_source, OrderSource::Actual);
    let names: Vec<&str> = rep.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["c", "a", "b"]);
    assert_eq!(rep.tensors[2].status, Status::Missing);
    assert_eq!(rep.extra[0].name, "zz");
    // Neither declares an order: reference storage order.
    let rep = compare_dumps(&r, &r, &Tolerances::default()).unwrap();
    assert_eq!(rep.order_source, OrderSource::Storage);
    assert!(rep.passed());
}

#[test]
fn mixed_formats_compare() {
    // Reference safetensors, actual a folder of .npy and an .npz holding the same values.
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path().join("r.safetensors");
    write_safetensors(
        &r,
        &[
            st_f32("model.layers.0.out", &[2], &[1.0, 2.0]),
            st("ids", Dtype::I64, &[2], i64_bytes(&[3, 4])),
        ],
        None,
    );
    let npy = dir.path().join("npy");
    write_npy_f64(&npy.join("model/layers/0/out.npy"), &[2], &[1.0, 2.0]);
    let npz = dir.path().join("a.npz");
    write_npz(
        &npz,
        &[
            ("model.layers.0.out", Arr::F32(&[2], &[1.0, 2.0])),
            ("ids", Arr::I64(&[2], &[3, 4])),
        ],
        true,
    );
    let rep = compare_dumps(&r, &npz, &Tolerances::new(0.0, 0.0).unwrap()).unwrap();
    assert!(rep.passed(), "{}", rep.render_table());
    let rep = compare_dumps(&r, &npy, &Tolerances::new(0.0, 0.0).unwrap()).unwrap();
    assert_eq!(rep.missing(), ["ids"]);
    assert_eq!(rep.dtype_differences(), ["model.layers.0.out"]);
    assert_eq!(rep.get("model.layers.0.out").unwrap().status, Status::Pass);
}

#[test]
fn polygraphy_criterion_via_cli_args() {
    let dir = tempfile::tempdir().unwrap();
    let (rp, ap) = write_pair(dir.path());
    let mut args = CompareArgs::new(&rp, &ap);
    args.criterion = CriterionArg::Polygraphy;
    args.atol = 0.3;
    args.rtol = 0.3;
    let t = args.options().tolerances().unwrap();
    let r = compare_dumps(&rp, &ap, &t).unwrap();
    // attn: |d| = [0.5, 0, 1, 0.25], rel = [0.5, 0, 0.25, inf]; fail iff |d| > 0.3 and rel > 0.3:
    // only element 0.
    let m = r
        .get("model.layers.0.attn.out")
        .unwrap()
        .metrics
        .clone()
        .unwrap();
    assert_eq!(m.out_of_tol, 1);
    assert_eq!(m.min_atol, 0.5);
}

#[test]
fn clap_arguments_parse() {
    use clap::{CommandFactory, Parser};
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CompareArgs,
    }
    Cli::command().debug_assert();
    let cli = Cli::try_parse_from([
        "voxtrace-compare",
        "ref.safetensors",
        "act_dir",
        "--tol",
        "model.audio_tower.*=1e-4,1e-3",
        "--tol",
        "logits=0,0",
        "--atol",
        "2e-5",
        "--criterion",
        "polygraphy",
        "--equal-nan",
        "--json",
        "r.json",
        "--html",
        "r.html",
    ])
    .unwrap();
    let a = cli.args;
    assert_eq!(a.reference, PathBuf::from("ref.safetensors"));
    assert_eq!(a.actual, PathBuf::from("act_dir"));
    assert_eq!((a.atol, a.rtol), (2e-5, 1e-4));
    assert_eq!(a.criterion, CriterionArg::Polygraphy);
    assert!(a.equal_nan && !a.no_inf_equal && !a.quiet);
    assert_eq!(a.json, Some(PathBuf::from("r.json")));
    let t = a.options().tolerances().unwrap();
    assert_eq!(t.for_name("model.audio_tower.layers.0.out").atol, 1e-4);
    assert_eq!(t.for_name("logits").rtol, 0.0);
    assert_eq!(t.for_name("other").atol, 2e-5);
    // Defaults.
    let d = Cli::try_parse_from(["x", "r", "a"]).unwrap().args;
    assert_eq!(
        (d.atol, d.rtol, d.criterion),
        (1e-5, 1e-4, CriterionArg::Allclose)
    );
    assert!(Cli::try_parse_from(["x", "r"]).is_err());
}
