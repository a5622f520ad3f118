//! Parity of the Voxtral Realtime port with upstream at the real dimensions (issue 22): the
//! encoder (32 layers, d_model 1280), the adapter and one decoder pass (26 layers, d_model
//! 3072, vocabulary 131072) of a full-size BF16 checkpoint in the release's Mistral layout
//! (`just full-size-checkpoint DIR`), traced here with the weights used as stored (BF16,
//! products in f32), against upstream transformers' hook dump of the same checkpoint
//! computing in f32 (`reference/voxtral_fullsize_parity.py`: weights held in BF16 and upcast
//! per module, proven bit-identical to a plain f32 model on the tiny fixture).
//!
//! Ignored by default: it needs the ~8.9 GB checkpoint, upstream's f32 and f64 dumps (peak RSS
//! 10.9 / 12.9 GiB, 2 and 5 min to make) and 8.9 GiB here. `just parity-full-size DIR` makes the dumps and runs it with
//! `--ignored`. Inputs (a missing one fails the test, naming it):
//! - `VOXTRACE_FULLSIZE_DIR`: the checkpoint folder;
//! - `VOXTRACE_FULLSIZE_DUMP`: upstream's f32 dump; its `input_features` / `input_ids` /
//!   `voxtrace.num_delay_tokens` are the inputs, its names the captures compared;
//! - `VOXTRACE_FULLSIZE_FLOOR`: the JSON of upstream's own f32 error per tensor
//!   (`max |upstream f32 - upstream f64|`, same weights and inputs; `--floor` of the script).
//!
//! Tolerance. The tiny fixture's atol 1e-5 / rtol 1e-4 (issue 2) is the base. Both sides
//! compute in f32 from the same BF16-exact weights, so their difference is f32 rounding in a
//! different summation order (Burn/gemm vs PyTorch's oneDNN/MKL kernels, voxtrace's BF16
//! kernels for the linears). A dot product of length K rounded in f32 carries an error of order
//! `sqrt(K) * eps_f32 * |x| |w|` (random-walk bound; `eps_f32` = 2^-24 unit roundoff), and
//! every layer adds its own to the residual stream, which carries the earlier ones on: at
//! K = 5120 (encoder FFN) and 9216 (decoder FFN) over 32 + 26 layers this exceeds 1e-5 on
//! tensors of scale ~1 and cannot be held by any f32 implementation that sums in another order
//! (upstream itself does not reproduce its f64 result to that bound). So, as
//! `tests/whisper_parity.rs` does with `lift_to_f32_error`, each tensor's atol is raised to
//! [`F32_ERROR_FACTOR`] times upstream's own f32 error on that tensor where that is larger,
//! measured in the same run against upstream in float64 (f64 softmax too): voxtrace may be as
//! far from upstream f32 as two f32 implementations each as accurate as upstream are from one
//! another (|vox - up32| <= |vox - f64| + |up32 - f64|). Nothing else is widened. Measured
//! 2026-12-07 on 001.wav (63 positions): at 1e-5 flat 128 of 333 tensors fail, from encoder
//! layer 5 on; with the lifted atol every tensor passes, the closest at 0.90 of its tolerance
//! (decoder layer 12); max |diff| / max |ref| is 2e-6 to 7e-6 in every part, the order of
//! `sqrt(9216) * 2^-24` = 5.7e-6; upstream's own f32 error peaks at 7.1e-5 (decoder layer 25
//! output, values up to 26). Full table: README, "Parity at the real size".
//!
//! Failure output names the first tensor in execution order outside its tolerance (the first
//! diverging layer) and every failing one; the per-part maxima and the logits' top-1
//! agreement are printed either way (`--nocapture`).
// Needs tensor capture (the default `record` feature).
#![cfg(feature = "record")]

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::device;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use voxtrace::compare::dump::Dump;
use voxtrace::models::voxtral::{Voxtral, WeightLayout};
use voxtrace::trace::{NameFilter, Tracer};

/// Base tolerance: the tiny fixture's (`tests/voxtral_parity.rs`).
const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-4;
/// Allowed multiple of upstream's own f32 error (as `tests/common/whisper.rs`).
const F32_ERROR_FACTOR: f64 = 2.0;

fn env_path(var: &str, what: &str) -> PathBuf {
    let p = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{var} is not set: {what} (`just parity-full-size DIR` sets it and runs this test)")
    });
    assert!(p.exists(), "{var}={}: does not exist ({what})", p.display());
    p
}

/// Upstream's own f32 error per tensor (`max_err` of the floor JSON).
fn read_floor(path: &std::path::Path) -> HashMap<String, f64> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let per = v["tensors"]
        .as_object()
        .unwrap_or_else(|| panic!("{}: no `tensors` object", path.display()));
    per.iter()
        .map(|(k, st)| {
            let e = st["max_err"]
                .as_f64()
                .unwrap_or_else(|| panic!("{}: {k}: no max_err", path.display()));
            (k.clone(), e)
        })
        .collect()
}

/// The part of the model a capture belongs to (for the per-part maxima).
fn part(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("model.language_model.layers.") {
        let i = rest.split('.').next().unwrap_or("?");
        return format!("decoder layer {i:>2}");
    }
    if name.starts_with("model.audio_tower") {
        return "encoder".into();
    }
    if name.starts_with("model.multi_modal_projector") || name == "model.out.audio_hidden_states" {
        return "adapter".into();
    }
    if name == "logits" || name.starts_with("lm_head") {
        return "logits".into();
    }
    "decoder other".into()
}

/// Per-tensor outcome.
struct Row {
    name: String,
    max_abs: f64,
    /// max |diff| / max |reference|
    rel_to_scale: f64,
    atol: f64,
    worst_ratio: f64,
}

#[test]
#[ignore = "needs the full-size checkpoint and upstream's dump (~13 GB RAM, ~15 min): just parity-full-size DIR"]
fn fullsize_encoder_adapter_and_decoder_pass_match_upstream() {
    let dir = env_path(
        "VOXTRACE_FULLSIZE_DIR",
        "the full-size Mistral-layout checkpoint folder (just full-size-checkpoint DIR)",
    );
    let dump_path = env_path(
        "VOXTRACE_FULLSIZE_DUMP",
        "upstream's f32 hook dump (reference/voxtral_fullsize_parity.py)",
    );
    let floor_path = env_path(
        "VOXTRACE_FULLSIZE_FLOOR",
        "upstream's f32-vs-f64 error per tensor (reference/voxtral_fullsize_parity.py --floor)",
    );
    let up = Dump::open(&dump_path).unwrap_or_else(|e| panic!("{e}"));
    let floor = read_floor(&floor_path);
    let delay: f32 = up
        .metadata()
        .get("voxtrace.num_delay_tokens")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{}: no voxtrace.num_delay_tokens", dump_path.display()));
    let info = |n: &str| {
        up.info(n)
            .unwrap_or_else(|| panic!("{}: no {n}", dump_path.display()))
            .shape
            .clone()
    };
    let (fshape, ishape) = (info("input_features"), info("input_ids"));
    let feats = up.read_f32("input_features").unwrap();
    let ids: Vec<i64> = up
        .read_f64("input_ids")
        .unwrap()
        .into_iter()
        .map(|v| v as i64)
        .collect();
    let dev = device();
    let features = Tensor::<3>::from_data(TensorData::new(feats, fshape), &dev);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(ids, ishape), &dev);

    let model =
        Voxtral::load_layout(&dir, WeightLayout::Mistral, &dev).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = up
        .names_in_order()
        .into_iter()
        .map(str::to_string)
        .collect();
    let tracer = Tracer::in_memory(NameFilter::all().and_names(names.iter().cloned()));
    let logits = model.forward(features, ids, delay, &tracer.root());
    let mut ours: BTreeMap<String, (Vec<usize>, Vec<f32>)> = tracer
        .finish()
        .unwrap()
        .into_iter()
        .map(|c| (c.name.clone(), (c.shape.clone(), c.data.to_f32())))
        .collect();
    let lshape = logits.dims().to_vec();
    let lvals: Vec<f32> = logits.into_data().convert::<f32>().try_into_vec().unwrap();
    ours.insert("logits".into(), (lshape, lvals));

    let mut rows = Vec::new();
    let mut failures = Vec::new();
    let mut top1 = None;
    for name in &names {
        if name == "input_features" || name == "input_ids" {
            continue;
        }
        let Some((shape, a)) = ours.get(name) else {
            failures.push(format!("{name}: not recorded by voxtrace"));
            continue;
        };
        let rshape = info(name);
        if *shape != rshape {
            failures.push(format!("{name}: shape {shape:?} vs upstream {rshape:?}"));
            continue;
        }
        let r = up.read_f64(name).unwrap();
        let fe = floor
            .get(name)
            .copied()
            .unwrap_or_else(|| panic!("{}: no f32 error for {name}", floor_path.display()));
        let atol = ATOL.max(F32_ERROR_FACTOR * fe);
        let (mut max_abs, mut scale, mut worst) = (0f64, 0f64, 0f64);
        for (&x, &y) in a.iter().zip(&r) {
            let d = (f64::from(x) - y).abs();
            let d = if d.is_nan() { f64::INFINITY } else { d };
            max_abs = max_abs.max(d);
            scale = scale.max(y.abs());
            worst = worst.max(d / (atol + RTOL * y.abs()));
        }
        if name == "logits" {
            let v = *rshape.last().unwrap();
            let argmax = |s: &[f64]| {
                s.iter()
                    .enumerate()
                    .fold((0, f64::MIN), |b, (i, &x)| if x > b.1 { (i, x) } else { b })
                    .0
            };
            let a64: Vec<f64> = a.iter().map(|&x| f64::from(x)).collect();
            let rows_n = r.len() / v;
            let agree = (0..rows_n)
                .filter(|&p| argmax(&a64[p * v..(p + 1) * v]) == argmax(&r[p * v..(p + 1) * v]))
                .count();
            top1 = Some((agree, rows_n));
        }
        if worst > 1.0 {
            failures.push(format!(
                "{name}: max |diff| {max_abs:.3e} (max |ref| {scale:.3e}), {worst:.2}x its tolerance atol {atol:.2e} rtol {RTOL:e}"
            ));
        }
        rows.push(Row {
            name: name.clone(),
            max_abs,
            rel_to_scale: max_abs / scale.max(f64::MIN_POSITIVE),
            atol,
            worst_ratio: worst,
        });
    }

    // Per-part maxima.
    let mut parts: BTreeMap<String, (f64, f64, f64, String)> = BTreeMap::new();
    for r in &rows {
        let e = parts
            .entry(part(&r.name))
            .or_insert((0.0, 0.0, 0.0, String::new()));
        if r.max_abs > e.0 {
            e.0 = r.max_abs;
            e.3 = r.name.clone();
        }
        e.1 = e.1.max(r.rel_to_scale);
        e.2 = e.2.max(r.worst_ratio);
    }
    eprintln!(
        "{:<18} {:>12} {:>14} {:>10}  tensor with the max |diff|",
        "part", "max |diff|", "/ max |ref|", "of tol"
    );
    for (p, (m, rel, w, n)) in &parts {
        eprintln!("{p:<18} {m:>12.3e} {rel:>14.3e} {w:>10.3}  {n}");
    }
    let lifted = rows.iter().filter(|r| r.atol > ATOL).count();
    eprintln!(
        "{} tensors compared, {lifted} with atol lifted to {F32_ERROR_FACTOR}x upstream's f32 error",
        rows.len()
    );
    if let Some((a, n)) = top1 {
        eprintln!("logits top-1 agreement: {a}/{n} positions");
    }
    assert!(rows.len() > 300, "only {} tensors compared", rows.len());
    assert!(
        failures.is_empty(),
        "first diverging tensor (execution order): {}\n{} of {} failed:\n{}",
        failures[0],
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    let (a, n) = top1.expect("logits compared");
    assert_eq!(a, n, "logits top-1 differs at {} of {n} positions", n - a);
}
