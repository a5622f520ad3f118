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

/// `--no-generate` with `--inputs` replays the dump's ids without generating (no
/// `generated_ids` in the output) and `--names-from` records exactly the dump's names: the
/// full-size parity run (`just parity-full-size`) in miniature, on the tiny fixture.
#[test]
fn no_generate_and_names_from_trace_exactly_a_reference_dumps_names() {
    let dir = tempfile::tempdir().unwrap();
    let keep = [
        "input_features",
        "input_ids",
        "model.audio_tower.layers.1.out",
        "model.multi_modal_projector.out",
        "model.language_model.layers.0.out",
        "model.language_model.norm.out",
        "logits",
    ];
    let subset = dir.path().join("subset.safetensors");
    let owned: Vec<_> = read_tensors(&voxtral_fixture("dumps/cards-001.safetensors"))
        .into_iter()
        .filter(|t| keep.contains(&t.0.as_str()))
        .collect();
    assert_eq!(owned.len(), keep.len());
    write_tensors(&subset, &owned);
    let run = dir.path().join("run.safetensors");
    let tok = voxtral_fixture("mistral/tekken.json");
    let o = voxtrace(&[
        "trace",
        "--model",
        s(&voxtral_fixture("mistral")),
        "--tokenizer",
        s(&tok),
        "--inputs",
        s(&subset),
        "--no-generate",
        "--names-from",
        s(&subset),
        "--out",
        s(&run),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut names: Vec<String> = read_tensors(&run).into_iter().map(|t| t.0).collect();
    names.sort();
    let mut want: Vec<String> = keep.iter().map(|k| k.to_string()).collect();
    want.sort();
    assert_eq!(
        names, want,
        "exactly the reference's names, no generated_ids"
    );
    let o = voxtrace(&["compare", s(&subset), s(&run), "--quiet"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );

    // From audio: the prompt, then [STREAMING_PAD] up to one id per audio token.
    let ids_run = dir.path().join("ids.safetensors");
    let audio = common::shared_audio().join("001.wav");
    let o = voxtrace(&[
        "trace",
        "--model",
        s(&voxtral_fixture("mistral")),
        "--tokenizer",
        s(&tok),
        s(&audio),
        "--no-generate",
        "--filter",
        "input_ids",
        "--out",
        s(&ids_run),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let t = read_tensors(&ids_run);
    assert_eq!(t.len(), 1, "only input_ids (no generated_ids)");
    let ids: Vec<i64> = t[0]
        .3
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let up = read_tensors(&voxtral_fixture("dumps/cards-001.safetensors"));
    let up_ids: Vec<i64> = up
        .iter()
        .find(|t| t.0 == "input_ids")
        .unwrap()
        .3
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(ids.len(), up_ids.len(), "one id per audio token");
    assert_eq!(ids[..39], up_ids[..39], "the upstream prompt");
    assert!(ids[39..].iter().all(|&i| i == up_ids[1]), "{ids:?}");
}
