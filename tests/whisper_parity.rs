//! Layer-by-layer parity of the Burn Whisper tiny.en port with transformers 5.23.0
//! (`WhisperForConditionalGeneration`, eager attention, f32 compute on both sides; weights are
//! the CTranslate2 float16 `model.bin` upcast exactly to f32 on both sides), against the dumps
//! `fixtures/whisper_tiny_en/dumps/{goforward,1272-128104-0000}.safetensors` made by
//! `reference/whisper_reference.py`.
//!
//! * Layer-local: each module is fed its upstream input from the dump and its output is
//!   compared at atol 1e-5 / rtol 1e-4: every Linear (`q/k/v/out_proj`, `fc1`, `fc2`), every
//!   LayerNorm, every `activation_fn`, `conv1` (on the full `input_features`),
//!   `embed_tokens`, both `embed_positions`, `proj_out` (-> `logits`), and the decoder
//!   self-attention blocks (`self_attn` fed `self_attn.in.0`, compared on `out.0` and the
//!   attention probabilities `out.1`). Encoder tensors are gathered on the time axis in the
//!   dumps (see the fixture README), which is fine for the position-wise modules.
//! * Modules whose inputs the dumps do not hold in full (encoder self-attention, `conv2`,
//!   cross-attention: they mix all 1500 / 3000 frames) are checked in the chained forward.
//! * Chained: one traced teacher-forced forward from `input_features` and `input_ids`,
//!   every capture compared (after the same gathers) with the measured tolerance documented
//!   at [`CHAIN_ATOL`], raised per tensor where upstream's own f32 error is larger.
// Needs tensor capture (the default `record` feature).
#![cfg(feature = "record")]

mod common;

use burn::tensor::Tensor;
use burn::tensor::activation::gelu;
use common::whisper::*;
use common::{DumpTensor, allclose, device, to_vec};
use voxtrace::models::whisper::Whisper;
use voxtrace::nn::attention::causal_mask;
use voxtrace::trace::{NameFilter, Scope, Tracer};

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

/// Chained forward tolerance (absolute part dominates). Measured 2026-11-22 (Flex backend,
/// `cargo test --test whisper_parity -- --nocapture` prints the 12 largest per clip): max
/// |diff| over all 280 captures 3.43e-4 (goforward) and 3.62e-4 (1272-128104-0000), both at
/// `model.encoder.layers.3` FFN tensors (values up to ~10^2); decoder `last_hidden_state`
/// 2.1e-4 / 2.9e-4. Both sides compute in f32 from the same f16-exact weights, so the
/// difference is only f32 summation order (Flex vs PyTorch CPU matmul/conv kernels)
/// accumulated through the conv stem and 4 encoder layers over 1500 frames, then carried into
/// the decoder through cross-attention; layer-local checks of the same modules hold at
/// 1e-5/1e-4. The bound below is 1.4x the largest measured value. Like the other chained
/// Whisper checks it is raised per tensor to twice upstream's own f32 error against float64
/// where that is larger (`common::whisper::lift_to_f32_error`): encoder layer 3's FFN, where
/// transformers itself is 1.2e-3 to 1.8e-3 from float64 and Flex with gemm's AVX2 kernels
/// differs from it by up to 7.2e-4 on frames the dumps do not keep
/// (`reference/whisper_f32_error.py --pairs`, 2026-12-03).
const CHAIN_ATOL: f32 = 5e-4;
const CHAIN_RTOL: f32 = 1e-4;

/// The position-wise module at `path` applied to `x` (None if `path` is not such a module).
fn pointwise(m: &Whisper, path: &str, x: Tensor<3>) -> Option<Tensor<3>> {
    let net = &m.net.model;
    if path == "model.encoder.layer_norm" {
        return Some(net.encoder.layer_norm.forward(x));
    }
    if path == "model.decoder.layer_norm" {
        return Some(net.decoder.layer_norm.forward(x));
    }
    let (side, rest) = if let Some(r) = path.strip_prefix("model.encoder.layers.") {
        ("enc", r)
    } else if let Some(r) = path.strip_prefix("model.decoder.layers.") {
        ("dec", r)
    } else {
        return None;
    };
    let (idx, leaf) = rest.split_once('.')?;
    let i: usize = idx.parse().ok()?;
    if leaf == "activation_fn" {
        return Some(gelu(x));
    }
    if side == "enc" {
        let l = &net.encoder.layers[i];
        Some(match leaf {
            "self_attn_layer_norm" => l.self_attn_layer_norm.forward(x),
            "final_layer_norm" => l.final_layer_norm.forward(x),
            "fc1" => l.fc1.forward(x),
            "fc2" => l.fc2.forward(x),
            "self_attn.q_proj" => l.self_attn.q_proj.forward(x),
            "self_attn.k_proj" => l.self_attn.k_proj.forward(x),
            "self_attn.v_proj" => l.self_attn.v_proj.forward(x),
            "self_attn.out_proj" => l.self_attn.out_proj.forward(x),
            _ => return None,
        })
    } else {
        let l = &net.decoder.layers[i];
        Some(match leaf {
            "self_attn_layer_norm" => l.self_attn_layer_norm.forward(x),
            "encoder_attn_layer_norm" => l.encoder_attn_layer_norm.forward(x),
            "final_layer_norm" => l.final_layer_norm.forward(x),
            "fc1" => l.fc1.forward(x),
            "fc2" => l.fc2.forward(x),
            "self_attn.q_proj" => l.self_attn.q_proj.forward(x),
            "self_attn.k_proj" => l.self_attn.k_proj.forward(x),
            "self_attn.v_proj" => l.self_attn.v_proj.forward(x),
            "self_attn.out_proj" => l.self_attn.out_proj.forward(x),
            "encoder_attn.q_proj" => l.encoder_attn.q_proj.forward(x),
            "encoder_attn.k_proj" => l.encoder_attn.k_proj.forward(x),
            "encoder_attn.v_proj" => l.encoder_attn.v_proj.forward(x),
            "encoder_attn.out_proj" => l.encoder_attn.out_proj.forward(x),
            _ => return None,
        })
    }
}

struct Checker {
    failures: Vec<String>,
    compared: usize,
    worst: (f32, String),
}

impl Checker {
    fn new() -> Self {
        Self {
            failures: Vec::new(),
            compared: 0,
            worst: (0.0, String::new()),
        }
    }

    fn check(
        &mut self,
        what: &str,
        shape: &[usize],
        got: &[f32],
        want: &DumpTensor,
        atol: f32,
        rtol: f32,
    ) {
        if shape != want.shape.as_slice() {
            self.failures.push(format!(
                "{what}: shape {shape:?} vs upstream {:?}",
                want.shape
            ));
            return;
        }
        let (ok, max) = allclose(got, &want.f32, atol, rtol);
        self.compared += 1;
        if max > self.worst.0 {
            self.worst = (max, what.to_string());
        }
        if !ok {
            self.failures.push(format!("{what}: max |diff| {max:e}"));
        }
    }

    fn finish(self, label: &str, min_compared: usize) {
        eprintln!(
            "{label}: {} tensors compared, worst max |diff| {:e} at {}",
            self.compared, self.worst.0, self.worst.1
        );
        assert!(
            self.compared >= min_compared,
            "{label}: only {} tensors compared (expected >= {min_compared})",
            self.compared
        );
        assert!(
            self.failures.is_empty(),
            "{label}: {} failed:\n{}",
            self.failures.len(),
            self.failures.join("\n")
        );
    }
}

fn layer_local(clip: &str, m: &Whisper) {
    let d = dump(clip);
    let dev = device();
    let mut c = Checker::new();
    // Position-wise modules: Linear, LayerNorm, activation_fn.
    for name in &d.order {
        let Some(path) = name.strip_suffix(".out") else {
            continue;
        };
        let input = format!("{path}.in.0");
        if !d.tensors.contains_key(&input) || d.get(&input).shape.len() != 3 {
            continue;
        }
        let Some(y) = pointwise(m, path, d.float(&input, &dev)) else {
            continue;
        };
        let (shape, v) = to_vec(y);
        c.check(name, &shape, &v, d.get(name), ATOL, RTOL);
    }
    // conv1 on the full input_features, compared at the gathered frames.
    let feats = d.float("input_features", &dev);
    let (shape, v) = to_vec(m.net.model.encoder.conv1.forward(feats));
    let (shape, v) = d.gather_like("model.encoder.conv1.out", &shape, &v);
    c.check(
        "model.encoder.conv1.out",
        &shape,
        &v,
        d.get("model.encoder.conv1.out"),
        ATOL,
        RTOL,
    );
    // Encoder position table (rows gathered).
    let (shape, v) = to_vec(m.net.model.encoder.embed_positions.weight.val());
    let (shape, v) = d.gather_like("model.encoder.embed_positions.out", &shape, &v);
    let name = "model.encoder.embed_positions.out";
    c.check(name, &shape, &v, d.get(name), 0.0, 0.0);
    // Decoder embeddings.
    let ids = d.ids("model.decoder.embed_tokens.in.0", &dev);
    let (shape, v) = to_vec(m.net.model.decoder.embed_tokens.forward(ids));
    let name = "model.decoder.embed_tokens.out";
    c.check(name, &shape, &v, d.get(name), 0.0, 0.0);
    let s = d.get("model.decoder.embed_positions.in.position_ids").shape[1];
    let pos = m
        .net
        .model
        .decoder
        .embed_positions
        .weight
        .val()
        .narrow(0, 0, s)
        .unsqueeze::<3>();
    let (shape, v) = to_vec(pos);
    let name = "model.decoder.embed_positions.out";
    c.check(name, &shape, &v, d.get(name), 0.0, 0.0);
    // proj_out (tied) -> logits.
    let (shape, v) = to_vec(
        m.net
            .proj_out(d.float("proj_out.in.0", &dev), &Scope::off()),
    );
    c.check(
        "logits (proj_out fed proj_out.in.0)",
        &shape,
        &v,
        d.get("logits"),
        ATOL,
        RTOL,
    );
    // Decoder self-attention blocks, fed their upstream input.
    for (i, layer) in m.net.model.decoder.layers.iter().enumerate() {
        let p = format!("model.decoder.layers.{i}.self_attn");
        let x = d.float(&format!("{p}.in.0"), &dev);
        let [_, s, _] = x.dims();
        let tracer = Tracer::in_memory(NameFilter::all());
        let scope = tracer.root().child("local");
        let (k, v) = layer.self_attn.key_values(x.clone(), &scope);
        let mask = causal_mask(0, s, s, &dev);
        let _ = layer.self_attn.attend(x, k, v, Some(mask), &scope);
        for cap in tracer.finish().unwrap() {
            let suffix = cap.name.strip_prefix("local.").unwrap();
            if suffix.starts_with("out.") {
                let up = format!("{p}.{suffix}");
                c.check(
                    &format!("{up} (block fed {p}.in.0)"),
                    &cap.shape,
                    &cap.data.to_f32(),
                    d.get(&up),
                    ATOL,
                    RTOL,
                );
            }
        }
    }
    c.finish(&format!("{clip} layer-local"), 107);
}

#[test]
fn layer_local_parity_goforward() {
    layer_local("goforward", &load_model());
}

#[test]
fn layer_local_parity_1272_128104_0000() {
    layer_local("1272-128104-0000", &load_model());
}

fn chained(clip: &str, m: &Whisper) {
    let d = dump(clip);
    let dev = device();
    let tracer = Tracer::in_memory(NameFilter::all());
    let logits = m
        .net
        .forward(
            d.float("input_features", &dev),
            d.ids("input_ids", &dev),
            &tracer.root(),
        )
        .unwrap();
    let captured = tracer.finish().unwrap();
    // CHAIN_ATOL, raised per tensor to twice upstream's own f32 error where that is larger.
    let base = voxtrace::compare::Tolerances::new(CHAIN_ATOL as f64, CHAIN_RTOL as f64).unwrap();
    let tol = lift_to_f32_error(base, clip);
    let mut c = Checker::new();
    let mut report = Vec::new();
    let mut ours = std::collections::HashSet::new();
    for cap in &captured {
        ours.insert(cap.name.clone());
        let Some(want) = d.tensors.get(&cap.name) else {
            c.failures
                .push(format!("{}: not in the upstream dump", cap.name));
            continue;
        };
        let data = cap.data.to_f32();
        let (shape, v) = d.gather_like(&cap.name, &cap.shape, &data);
        if shape == want.shape {
            let (_, max) = allclose(&v, &want.f32, 0.0, 0.0);
            report.push((max, cap.name.clone()));
        }
        let atol = tol.for_name(&cap.name).atol as f32;
        c.check(&cap.name, &shape, &v, want, atol, CHAIN_RTOL);
    }
    for name in &d.order {
        if !ours.contains(name) && name != "generated_ids" {
            c.failures.push(format!(
                "{name}: upstream capture not recorded by the Burn model"
            ));
        }
    }
    // Greedy next tokens of the teacher-forced pass equal upstream's generated ids.
    let (shape, v) = to_vec(logits);
    let generated = &d.get("generated_ids").i64;
    for pos in 0..shape[1] {
        let row = &v[pos * shape[2]..(pos + 1) * shape[2]];
        let mut best = 0;
        for (j, &x) in row.iter().enumerate() {
            if x > row[best] {
                best = j;
            }
        }
        // Suppression never changes the argmax here except at the first position (begin
        // suppression); the dump asserts argmax == next generated token at every position.
        if best as i64 != generated[pos + 1] {
            c.failures.push(format!(
                "argmax at position {pos}: {best} vs generated {}",
                generated[pos + 1]
            ));
        }
    }
    report.sort_by(|a, b| b.0.total_cmp(&a.0));
    eprintln!("{clip} chained: largest max |diff| per capture:");
    for (max, name) in report.iter().take(12) {
        eprintln!("  {max:.3e}  {name}");
    }
    c.finish(&format!("{clip} chained"), 270);
}

#[test]
fn chained_traced_forward_matches_dump() {
    let m = load_model();
    for clip in DUMP_CLIPS {
        chained(clip, &m);
    }
}
