//! Cross-backend equivalence (issues #2, #3): the same model, the same inputs, traced on Flex
//! (the default CPU backend) and on the deprecated ndarray backend (`--features ndarray`), and on
//! wgpu (`--features wgpu`, e.g. Mesa's lavapipe Vulkan driver on CPU): every recorded tensor of
//! the second run is compared with the Flex run by the comparator library ([`compare_dumps`]),
//! Flex as the reference.
//!
//! Tolerances are the project's parity tolerances: Voxtral tiny atol 1e-5 / rtol 1e-4
//! (`tests/voxtral_parity.rs`), Whisper tiny.en chained forward atol 5e-4 / rtol 1e-4 against
//! upstream (`tests/whisper_parity.rs`, `CHAIN_ATOL`, measured on the dump's frames), raised
//! per tensor to twice upstream's own f32 error against float64 where that is larger
//! (`common::whisper::lift_to_f32_error`, `fixtures/whisper_tiny_en/f32_error.json`): Flex against
//! another backend compares all 1500 encoder frames, and there encoder layer 3's FFN is
//! ill-conditioned (transformers itself is 1.24e-3 from float64 at `fc1.out` on goforward,
//! above the flat 5e-4). Integer
//! captures (`input_ids`, `generated_ids`: greedy decoding on each backend) must be equal.
//! Each backend is also held to upstream PyTorch on its own (the fixture dumps, gathered per
//! `voxtrace.sliced`), so two backends that agree with each other but not with upstream still
//! fail.
//!
//! Each test prints the largest max |diff| per pair and the smallest atol that would pass
//! (`--nocapture`).
//!
//! Measured 2026-12-01 (`voxtrace trace --device flex|ndarray --model WHISPER --inputs
//! fixtures/whisper_tiny_en/dumps/goforward.safetensors`, then `voxtrace compare`):
//! * Voxtral tiny, flex vs ndarray: max |diff| 1.6e-5 (`logits`, values ~1e0..1e1), smallest
//!   passing atol at rtol 1e-4: 7.4e-6 (limit 1e-5).
//! * Whisper tiny.en, flex vs ndarray over all 1500 encoder frames: smallest passing atol at
//!   rtol 1e-4 4.76e-4 on that machine. Against transformers on the dump's gathered frames
//!   ndarray needed atol 3.1e-5, Flex 2.6e-4: the gap was Flex's, first at
//!   `model.encoder.layers.0.self_attn.out_proj.in.0` (softmax(QK^T)V over 1500 keys). Burn
//!   Flex's softmax sums each row in one f32: its rows summed to 1 within 2.4e-5 (layer 0).
//!
//! Measured 2026-12-03, same commands, on a machine where the 2026-12-01 code failed here
//! (flex vs ndarray 1.69e-3 at `model.encoder.layers.3.fc1.out`): attention probabilities now
//! come from `voxtrace::nn::softmax` (row sum in f64) on Flex. Flex's rows sum to 1 within
//! 4.6e-8 (ndarray 1.9e-6); against transformers on the dump's frames Flex needs atol 6.0e-5
//! (was 2.1e-4), ndarray 6.7e-5; flex vs ndarray over all frames 1.18e-3, the share of
//! ndarray's own error (1.04e-3 against float64 by `reference/whisper_f64_noise.py`, Flex
//! 7.9e-5, torch f32 5.77e-4).
//!
//! Measured 2026-12-03 later (full traces of both dump clips from Flex with gemm's AVX2 and
//! AVX-512 kernels, ndarray, ONNX Runtime and torch f32, against
//! `fixtures/whisper_tiny_en/f32_error.json`): the flat 5e-4 fails on all frames for Flex vs
//! torch itself (goforward needs 7.2e-4, at layer 3 `fc1.out`), Flex vs ndarray needs 1.18e-3
//! there; with the raised per-tensor atol every pair passes, the largest needing 1.14x twice
//! upstream's error (AVX2 vs AVX-512 Flex, 1.42e-3 at goforward `fc1.out`). The raised bound is
//! loose where f32 is ill-conditioned, so it no longer separates Flex's old one-f32 softmax row
//! sum (1.69e-3 from ndarray at that tensor); tests/fused_kernels.rs holds the softmax to
//! float64 directly.
#![cfg(all(feature = "ndarray", feature = "record"))]

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::whisper;
use common::{device, device_named, read_dump, s, voxtrace, voxtral_fixture};
use std::path::Path;
use voxtrace::compare::{Report, Tolerances, compare_dumps};
use voxtrace::models::voxtral::generate::generate_offline;
use voxtrace::models::voxtral::{Voxtral, WeightLayout};
use voxtrace::models::whisper::{Whisper, greedy_decode};
use voxtrace::trace::{NameFilter, Scope, Tracer};

/// Voxtral tiny parity tolerance (`tests/voxtral_parity.rs`).
const VOXTRAL_ATOL: f64 = 1e-5;
const VOXTRAL_RTOL: f64 = 1e-4;
/// Whisper tiny.en chained-forward tolerance against the upstream dump (`tests/whisper_parity.rs`,
/// `CHAIN_ATOL`; measured on the dump's frames, every 50th encoder frame).
const WHISPER_ATOL: f64 = 5e-4;
const WHISPER_RTOL: f64 = 1e-4;

/// Delay tokens of the tiny fixture dumps (480 ms), as in `tests/voxtral_parity.rs`.
const VOXTRAL_DELAY: f32 = 6.0;

/// `input_features [1, mels, frames]` and `input_ids [1, n]` of an upstream dump on `device`.
fn dump_inputs(dump: &Path, device: &Device) -> (Tensor<3>, Tensor<2, Int>) {
    let d = read_dump(dump);
    let f = d.get("input_features");
    let ids = d.get("input_ids");
    (
        Tensor::from_data(TensorData::new(f.f32.clone(), f.shape.clone()), device),
        Tensor::from_data(TensorData::new(ids.i64.clone(), ids.shape.clone()), device),
    )
}

fn record_generated(tracer: &Tracer, ids: Vec<i64>, device: &Device) {
    let n = ids.len();
    tracer.root().record_int(
        "generated_ids",
        &Tensor::<2, Int>::from_data(TensorData::new(ids, [1, n]), device),
    );
}

/// Trace Voxtral tiny on `device` the way `voxtrace trace --inputs DUMP` does: greedy offline
/// generation (recorded as `generated_ids`), then one teacher-forced forward on the dump's
/// inputs with every capture on. Returns the wall time of load + generate + forward.
fn trace_voxtral(layout: WeightLayout, dump: &Path, device: &Device, out: &Path) -> f64 {
    let t0 = std::time::Instant::now();
    let dir = voxtral_fixture(match layout {
        WeightLayout::Mistral => "mistral",
        WeightLayout::Hf => "hf",
    });
    let model = Voxtral::load_layout(&dir, layout, device).unwrap_or_else(|e| panic!("{e}"));
    let (features, ids) = dump_inputs(dump, device);
    let prompt = read_dump(dump).get("input_ids").i64[..39].to_vec();
    let g = generate_offline(&model, features.clone(), &prompt, VOXTRAL_DELAY, Some(2));
    let tracer = Tracer::to_file(NameFilter::all(), out, "cross_backend voxtral").unwrap();
    record_generated(&tracer, g.sequence, device);
    let root = tracer.root();
    root.record("input_features", &features);
    root.record_int("input_ids", &ids);
    // Records every capture and `logits`.
    let _ = model.forward(features, ids, VOXTRAL_DELAY, &root);
    tracer.finish().unwrap();
    t0.elapsed().as_secs_f64()
}

/// Trace Whisper tiny.en on `device` like `voxtrace trace --inputs DUMP`: greedy decoding of
/// the dump's features (recorded as `generated_ids`), then one teacher-forced forward on the
/// dump's `input_features` / `input_ids` with every capture on. Returns the wall time.
fn trace_whisper(clip: &str, device: &Device, out: &Path) -> f64 {
    let t0 = std::time::Instant::now();
    let m = Whisper::load(&whisper::require_model_bin(), device).unwrap_or_else(|e| panic!("{e}"));
    let (features, ids) = dump_inputs(&whisper::dump_path(clip), device);
    let enc = m
        .net
        .model
        .encoder
        .forward(features.clone(), &Scope::off())
        .unwrap();
    let g = greedy_decode(&m.net, &enc, &m.generation).unwrap();
    let tracer = Tracer::to_file(NameFilter::all(), out, "cross_backend whisper").unwrap();
    record_generated(
        &tracer,
        g.token_ids.iter().map(|&t| i64::from(t)).collect(),
        device,
    );
    // Records `input_features`, `input_ids`, every capture and `logits`.
    m.net.forward(features, ids, &tracer.root()).unwrap();
    tracer.finish().unwrap();
    t0.elapsed().as_secs_f64()
}

/// Compare `actual` with `reference` at `tol`; assert every reference tensor passed and at
/// least `min_compared` were compared; print the largest differences.
fn assert_agree(label: &str, reference: &Path, actual: &Path, tol: &Tolerances, min: usize) {
    let report: Report = compare_dumps(reference, actual, tol).unwrap();
    let mut worst: Vec<(f64, f64, &str)> = report
        .tensors
        .iter()
        .filter_map(|t| {
            let m = t.metrics.as_ref()?;
            Some((m.max_abs_err, m.min_atol, t.name.as_str()))
        })
        .collect();
    worst.sort_by(|a, b| b.0.total_cmp(&a.0));
    let tightest = worst.iter().map(|w| w.1).fold(0.0, f64::max);
    eprintln!(
        "{label}: {} of {} tensors compared; smallest passing atol at rtol {}: {tightest:.3e}; \
         largest max |diff|:",
        report.summary.compared, report.summary.total, tol.rtol
    );
    for (d, _, name) in worst.iter().take(5) {
        eprintln!("  {d:.3e}  {name}");
    }
    let failures: Vec<String> = report
        .tensors
        .iter()
        .filter(|t| !t.passed())
        .map(|t| {
            format!(
                "{} {:?} max |diff| {:?}",
                t.name,
                t.status,
                t.metrics.as_ref().map(|m| m.max_abs_err)
            )
        })
        .collect();
    assert!(
        report.summary.compared >= min,
        "{label}: only {} tensors compared (expected >= {min})",
        report.summary.compared
    );
    assert!(
        failures.is_empty() && report.summary.all_passed,
        "{label}: {} of {} did not pass at atol {} rtol {}:\n{}",
        failures.len(),
        report.summary.total,
        tol.atol,
        tol.rtol,
        failures.join("\n")
    );
}

fn voxtral_tol() -> Tolerances {
    Tolerances::new(VOXTRAL_ATOL, VOXTRAL_RTOL).unwrap()
}

/// The Whisper chained tolerance on `clip`, raised per tensor to twice upstream's own f32
/// error where that is larger ([`whisper::lift_to_f32_error`], which prints the raised names).
fn whisper_tol(clip: &str) -> Tolerances {
    whisper::lift_to_f32_error(Tolerances::new(WHISPER_ATOL, WHISPER_RTOL).unwrap(), clip)
}

/// Voxtral tiny on `other` vs Flex, both layouts, cards-001 (the full-capture dump).
fn voxtral_cross(name: &str, other: &Device) {
    let dir = tempfile::tempdir().unwrap();
    let dump = voxtral_fixture("dumps/cards-001.safetensors");
    for layout in [WeightLayout::Hf, WeightLayout::Mistral] {
        let a = dir.path().join(format!("flex-{layout:?}.safetensors"));
        let b = dir.path().join(format!("{name}-{layout:?}.safetensors"));
        let ta = trace_voxtral(layout, &dump, &device(), &a);
        let tb = trace_voxtral(layout, &dump, other, &b);
        eprintln!("voxtral tiny {layout:?}: flex {ta:.2} s, {name} {tb:.2} s");
        // Every capture plus inputs, generated_ids and logits.
        assert_agree(
            &format!("voxtral tiny {layout:?} flex vs {name}"),
            &a,
            &b,
            &voxtral_tol(),
            150,
        );
        assert_agree(
            &format!("voxtral tiny {layout:?} upstream vs {name}"),
            &dump,
            &b,
            &voxtral_tol(),
            150,
        );
    }
}

/// Whisper tiny.en on `other` vs Flex, goforward (the shorter dump).
fn whisper_cross(name: &str, other: &Device) {
    let dir = tempfile::tempdir().unwrap();
    let clip = "goforward";
    let a = dir.path().join("flex.safetensors");
    let b = dir.path().join(format!("{name}.safetensors"));
    let ta = trace_whisper(clip, &device(), &a);
    let tb = trace_whisper(clip, other, &b);
    eprintln!("whisper tiny.en {clip}: flex {ta:.2} s, {name} {tb:.2} s");
    let tol = whisper_tol(clip);
    assert_agree(
        &format!("whisper tiny.en {clip} flex vs {name}"),
        &a,
        &b,
        &tol,
        270,
    );
    assert_agree(
        &format!("whisper tiny.en {clip} upstream vs {name}"),
        &whisper::dump_path(clip),
        &b,
        &tol,
        270,
    );
}

#[test]
fn voxtral_tiny_ndarray_matches_flex() {
    voxtral_cross("ndarray", &device_named("ndarray"));
}

#[test]
fn whisper_tiny_en_ndarray_matches_flex() {
    whisper_cross("ndarray", &device_named("ndarray"));
}

#[cfg(feature = "wgpu")]
#[test]
fn voxtral_tiny_wgpu_matches_flex() {
    voxtral_cross("wgpu", &device_named("wgpu"));
}

#[cfg(feature = "wgpu")]
#[test]
fn whisper_tiny_en_wgpu_matches_flex() {
    whisper_cross("wgpu", &device_named("wgpu"));
}

/// `voxtrace trace --device D` on the tiny fixture for flex and `device`, then
/// `voxtrace compare FLEX D` exits 0 at the Voxtral tolerance (the CLI default, 1e-5/1e-4).
fn cli_cross(device: &str) {
    let dir = tempfile::tempdir().unwrap();
    let dump = voxtral_fixture("dumps/cards-001.safetensors");
    let model = voxtral_fixture("mistral");
    let mut outs = Vec::new();
    for dev in ["flex", device] {
        let out = dir.path().join(format!("{dev}.safetensors"));
        let t0 = std::time::Instant::now();
        let o = voxtrace(&[
            "trace",
            "--model",
            s(&model),
            "--inputs",
            s(&dump),
            "--device",
            dev,
            "--out",
            s(&out),
        ]);
        assert!(
            o.status.success(),
            "trace --device {dev}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        eprintln!(
            "voxtrace trace --device {dev} (tiny, cards-001): {:.2} s",
            t0.elapsed().as_secs_f64()
        );
        outs.push(out);
    }
    let json = dir.path().join("r.json");
    let o = voxtrace(&["compare", s(&outs[0]), s(&outs[1]), "--json", s(&json)]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "compare flex vs {device}: {}",
        report["summary"]
    );
    assert_eq!(report["tolerances"]["atol"], VOXTRAL_ATOL);
    assert_eq!(report["tolerances"]["rtol"], VOXTRAL_RTOL);
    assert!(
        report["summary"]["compared"].as_u64().unwrap() > 150,
        "{}",
        report["summary"]
    );
}

#[test]
fn cli_trace_ndarray_then_compare_with_flex_passes() {
    cli_cross("ndarray");
}

#[cfg(feature = "wgpu")]
#[test]
fn cli_trace_wgpu_then_compare_with_flex_passes() {
    cli_cross("wgpu");
}

/// The device names the CLI accepts are the ones compiled in; an unknown one is refused with
/// exit code 2 and the list of available devices.
#[test]
fn cli_refuses_an_unknown_device() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.safetensors");
    let o = voxtrace(&[
        "trace",
        "--model",
        s(&voxtral_fixture("mistral")),
        "--inputs",
        s(&voxtral_fixture("dumps/cards-001.safetensors")),
        "--device",
        "tpu",
        "--out",
        s(&out),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("available: flex, ndarray"), "{err}");
    assert!(!out.exists());
}
