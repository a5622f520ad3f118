//! The instrument end to end, through the real binary: `voxtrace trace` on a fixture clip, then
//! `voxtrace compare` against the upstream PyTorch dump passes; with one weight perturbed the
//! comparison fails (exit 1) and names the first layer the perturbation reaches.
// Needs tensor capture (the default `record` feature).
#![cfg(feature = "record")]

mod common;

use common::{read_tensors, s, voxtrace, voxtral_fixture, whisper, write_tensors};
use std::path::{Path, PathBuf};

fn trace(model: &Path, out: &Path) {
    let dump = voxtral_fixture("dumps/cards-001.safetensors");
    let tok = voxtral_fixture("mistral/tekken.json");
    let o = voxtrace(&[
        "trace",
        "--model",
        s(model),
        "--tokenizer",
        s(&tok),
        "--inputs",
        s(&dump),
        "--out",
        s(out),
    ]);
    assert!(
        o.status.success(),
        "trace failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

fn compare(actual: &Path, json: &Path) -> (i32, serde_json::Value) {
    let dump = voxtral_fixture("dumps/cards-001.safetensors");
    let o = voxtrace(&["compare", s(&dump), s(actual), "--json", s(json)]);
    let code = o.status.code().unwrap();
    let text = std::fs::read_to_string(json).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}); stderr: {}",
            String::from_utf8_lossy(&o.stderr)
        )
    });
    (code, serde_json::from_str(&text).unwrap())
}

#[test]
fn trace_then_compare_passes_against_the_upstream_dump() {
    let dir = tempfile::tempdir().unwrap();
    for layout in ["hf", "mistral"] {
        let run = dir.path().join(format!("{layout}.safetensors"));
        trace(&voxtral_fixture(layout), &run);
        let (code, report) = compare(&run, &dir.path().join(format!("{layout}.json")));
        assert_eq!(
            code, 0,
            "{layout}: compare failed, first failure {}",
            report["summary"]["first_failure"]
        );
    }
}

/// Rewrite a safetensors file with `delta` added to element 0 of tensor `name`.
fn perturb(src: &Path, dst: &Path, name: &str, delta: f32) {
    let mut owned = read_tensors(src);
    let t = owned
        .iter_mut()
        .find(|t| t.0 == name)
        .expect("tensor to perturb");
    assert_eq!(t.1, safetensors::Dtype::F32);
    let x = f32::from_le_bytes(t.3[0..4].try_into().unwrap()) + delta;
    t.3[0..4].copy_from_slice(&x.to_le_bytes());
    write_tensors(dst, &owned);
}

#[test]
fn a_perturbed_weight_fails_and_names_the_first_layer_it_reaches() {
    let dir = tempfile::tempdir().unwrap();
    let model: PathBuf = dir.path().join("hf");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(voxtral_fixture("hf/config.json"), model.join("config.json")).unwrap();
    perturb(
        &voxtral_fixture("hf/model.safetensors"),
        &model.join("model.safetensors"),
        "model.audio_tower.layers.1.mlp.up_proj.weight",
        0.05,
    );
    let run = dir.path().join("run.safetensors");
    trace(&model, &run);
    let (code, report) = compare(&run, &dir.path().join("r.json"));
    assert_eq!(code, 1, "a perturbed model must fail the comparison");
    assert_eq!(
        report["summary"]["first_failure"],
        "model.audio_tower.layers.1.mlp.up_proj.out"
    );
}

/// Whisper through the same two commands: `voxtrace trace` on a Whisper folder replays the
/// transformers dump's inputs, and `voxtrace compare` joins every capture name, gathering the
/// full-length encoder tensors the way the dump's `voxtrace.sliced` metadata says, and passes at
/// the chained tolerance documented in tests/whisper_parity.rs (atol 5e-4, rtol 1e-4). From the
/// audio file itself (our own log-mel and greedy decoding) the same generated ids come out.
#[test]
fn whisper_trace_then_compare_passes_against_the_transformers_dump() {
    let dir = tempfile::tempdir().unwrap();
    // The weights folder: the test fails, not skips, when they are absent (`just models`).
    let model = whisper::require_model_bin();
    let dump = whisper::dump_path("goforward");
    let out = dir.path().join("whisper.safetensors");
    let o = voxtrace(&[
        "trace",
        "--model",
        s(&model),
        "--inputs",
        s(&dump),
        "--out",
        s(&out),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json = dir.path().join("w.json");
    let o = voxtrace(&[
        "compare",
        s(&dump),
        s(&out),
        "--atol",
        "5e-4",
        "--rtol",
        "1e-4",
        "--json",
        s(&json),
    ]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", report["summary"]);
    let tensors = report["tensors"].as_array().unwrap();
    assert!(tensors.len() > 250, "{}", tensors.len());
    let gathered: Vec<&str> = tensors
        .iter()
        .filter(|t| t.get("gathered").is_some())
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        gathered.contains(&"model.encoder.layers.0.self_attn.q_proj.out"),
        "{gathered:?}"
    );
    assert!(gathered.contains(&"model.out.encoder_last_hidden_state"));
    assert!(tensors.iter().all(|t| t["status"] == "pass"));

    // From audio: our own features and greedy decoding give the dump's generated ids.
    let audio = std::env::var_os("VOXTRACE_AUDIO_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/audio"))
        .join("goforward.wav");
    let out2 = dir.path().join("from_audio.safetensors");
    let o = voxtrace(&[
        "trace",
        "--model",
        s(&model),
        s(&audio),
        "--out",
        s(&out2),
        "--filter",
        "generated_ids",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = voxtrace(&["compare", s(&dump), s(&out2), "--json", s(&json)]);
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let ids = report["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "generated_ids")
        .unwrap();
    assert_eq!(ids["status"], "pass", "{ids}");
    assert_eq!(ids["metrics"]["max_abs_err"], 0.0, "{ids}");
    assert_eq!(
        o.status.code(),
        Some(1),
        "the other tensors are missing: not a pass"
    );
}
