//! `voxtrace verify-real`: the golden-record check, proven on the tiny fixture.
//!
//! `fixtures/voxtral_tiny_golden` holds records in exactly the format of the real model's
//! golden folder, written by upstream transformers (`reference/voxtral_tiny_goldens.py`) for
//! three corpus clips whose audio stays in the shared folder (`--audio-dir`). The port passes
//! them in both checkpoint layouts; a copy of the checkpoint with one weight changed fails with
//! exit 1 and names the first diverging position; files that are missing or malformed stop the
//! run with exit 2. The real golden folder itself must parse.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn golden() -> PathBuf {
    fixtures().join("voxtral_tiny_golden")
}

/// Run verify-real with a JSON report; returns (exit code, stdout, stderr, report).
fn verify(model: &Path, extra: &[&str]) -> (i32, String, String, Option<serde_json::Value>) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let audio = shared_audio();
    let mut args = vec![
        "verify-real",
        "--model",
        s(model),
        "--golden",
        s(&golden()).to_owned().leak(),
        "--audio-dir",
        s(&audio).to_owned().leak(),
        "--json",
        s(&json).to_owned().leak(),
    ];
    args.extend_from_slice(extra);
    let o = voxtrace(&args);
    let report = std::fs::read(&json)
        .ok()
        .map(|b| serde_json::from_slice(&b).unwrap());
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
        report,
    )
}

fn golden_tokens(id: &str) -> Vec<i64> {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(golden().join(format!("{id}.json"))).unwrap())
            .unwrap();
    serde_json::from_value(v["tokens"].clone()).unwrap()
}

fn assert_all_pass(code: i32, out: &str, err: &str, report: &serde_json::Value) {
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let clips = report["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 3, "{out}");
    for c in clips {
        let id = c["id"].as_str().unwrap();
        let port: Vec<i64> = serde_json::from_value(c["port_tokens"].clone()).unwrap();
        assert_eq!(port, golden_tokens(id), "{id}");
        assert_eq!(c["ids_match"], true, "{id}");
        assert_eq!(c["logits"]["pass"], true, "{id}");
        assert_eq!(c["logits"]["compared"], 32, "{id}");
        assert!(c["divergence"].is_null(), "{id}");
    }
    assert!(out.contains("result: 3/3 clips match: PASS"), "{out}");
}

#[test]
fn tiny_goldens_pass_in_the_mistral_layout() {
    let (code, out, err, report) = verify(&voxtral_fixture("mistral"), &[]);
    let report = report.unwrap_or_else(|| panic!("no report: {out}\n{err}"));
    assert_all_pass(code, &out, &err, &report);
    eprintln!("{out}");
}

#[test]
fn tiny_goldens_pass_in_the_hf_layout() {
    let tok = voxtral_fixture("mistral/tekken.json");
    let (code, out, err, report) = verify(
        &voxtral_fixture("hf"),
        &["--tokenizer", s(&tok).to_owned().leak()],
    );
    let report = report.unwrap_or_else(|| panic!("no report: {out}\n{err}"));
    assert_all_pass(code, &out, &err, &report);
}

/// The same goldens pass on the fixture written as a voxtral.cpp GGUF (f32: the exact weights;
/// tokenizer from the file's metadata), and a Q4_0 GGUF of it fails with exit 1 (random tiny
/// weights are not token-exact at 4 bits: `tests/voxtral_quant.rs`).
#[test]
fn tiny_goldens_pass_on_the_f32_gguf_and_q4_0_fails() {
    let tmp = tempfile::tempdir().unwrap();
    for (ty, want) in [("f32", 0), ("q4_0", 1)] {
        let file = tmp.path().join(format!("tiny-{ty}.gguf"));
        voxtrace_ok(&[
            "quantize",
            "--model",
            s(&voxtral_fixture("mistral")),
            "--type",
            ty,
            "--out",
            s(&file),
        ]);
        let (code, out, err, report) = verify(&file, &[]);
        if want == 0 {
            let report = report.unwrap_or_else(|| panic!("no report: {out}\n{err}"));
            assert_all_pass(code, &out, &err, &report);
        } else {
            assert_eq!(code, 1, "{ty}: {out}\n{err}");
        }
    }
}

/// A copy of the Mistral fixture with one weight changed: decoder layer 1's FFN down
/// projection, element [0, 0], set to 4.0 (from 0.039; exactly representable in BF16).
fn perturbed_copy(dir: &Path) -> PathBuf {
    use safetensors::tensor::TensorView;
    let src = voxtral_fixture("mistral");
    let out = dir.join("mistral-perturbed");
    std::fs::create_dir(&out).unwrap();
    for f in ["params.json", "tekken.json"] {
        std::fs::copy(src.join(f), out.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("consolidated.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let target = "layers.1.feed_forward.w2.weight";
    let mut owned: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)> = st
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    let t = owned.iter_mut().find(|t| t.0 == target).unwrap();
    assert_eq!(t.1, safetensors::Dtype::BF16);
    let four = half::bf16::from_f32(4.0).to_le_bytes();
    assert_ne!(&t.3[0..2], &four);
    t.3[0..2].copy_from_slice(&four);
    let views: Vec<(String, TensorView)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let data = safetensors::serialize(views, None).unwrap();
    std::fs::write(out.join("consolidated.safetensors"), data).unwrap();
    out
}

#[test]
fn perturbed_checkpoint_fails_naming_the_first_diverging_position() {
    let dir = tempfile::tempdir().unwrap();
    let model = perturbed_copy(dir.path());
    let (code, out, err, report) = verify(&model, &[]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    let report = report.unwrap();
    assert_eq!(report["pass"], false);
    let mut diverged = 0;
    for c in report["clips"].as_array().unwrap() {
        let id = c["id"].as_str().unwrap();
        let port: Vec<i64> = serde_json::from_value(c["port_tokens"].clone()).unwrap();
        let gold = golden_tokens(id);
        // The first index where the sequences differ, computed here independently.
        let k = port
            .iter()
            .zip(&gold)
            .position(|(a, b)| a != b)
            .unwrap_or(port.len().min(gold.len()));
        if port == gold {
            assert!(c["divergence"].is_null(), "{id}");
            continue;
        }
        diverged += 1;
        let d = &c["divergence"];
        assert_eq!(d["index"], k, "{id}");
        assert_eq!(c["common_prefix"], k, "{id}");
        assert_eq!(d["decoder_position"], 38 + k, "{id}");
        assert_eq!(d["golden_id"], gold[k], "{id}");
        assert_eq!(d["port_id"], port[k], "{id}");
        // The port chose its own id, so its margin over the golden id is positive.
        assert!(d["margin"].as_f64().unwrap() > 0.0, "{id}: {d}");
        assert_eq!(c["pass"], false, "{id}");
        let line = format!(
            "first divergence at generated id {k} (decoder position {}): golden {} \"",
            38 + k,
            gold[k]
        );
        assert!(out.contains(&line), "{id}: no {line:?} in\n{out}");
    }
    assert!(diverged >= 1, "{out}");
    assert!(out.contains("FAIL"), "{out}");
}

#[test]
fn generate_budget_is_one_id_short_of_the_records() {
    // transformers' `generate` schedule stops one audio token earlier than the records
    // (N - 39 ids, not N - 38): the ids agree on the whole shorter run and the report says the
    // port ended.
    let (code, out, _, report) = verify(&voxtral_fixture("mistral"), &["--budget", "generate"]);
    assert_eq!(code, 1, "{out}");
    for c in report.unwrap()["clips"].as_array().unwrap() {
        let n = c["golden_len"].as_u64().unwrap();
        assert_eq!(c["port_len"].as_u64().unwrap(), n - 1);
        assert_eq!(c["common_prefix"].as_u64().unwrap(), n - 1);
        assert!(c["divergence"]["port_id"].is_null());
        assert_eq!(c["logits"]["pass"], true);
    }
    assert!(out.contains("vs port (ended)"), "{out}");
}

#[test]
fn missing_or_malformed_inputs_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = voxtral_fixture("mistral");
    // Audio not found (the golden folder itself holds no wav).
    let o = voxtrace(&[
        "verify-real",
        "--model",
        s(&model),
        "--golden",
        s(&golden()),
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("1272-128104-0000.wav"), "{err}");
    // Not a model folder.
    let (code, _, err, _) = verify(dir.path(), &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no Voxtral checkpoint found"), "{err}");
    // A damaged GGUF file (the magic alone) is refused, naming the file and the cause.
    let gguf = dir.path().join("model.gguf");
    std::fs::write(&gguf, b"GGUF").unwrap();
    let (code, _, err, _) = verify(&gguf, &[]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("model.gguf") && err.contains("truncated"),
        "{err}"
    );
    // A malformed record.
    let bad = dir.path().join("golden");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("a.json"), br#"{"text": "x", "tokens": [1, -5], "first_logits_32": [0.0], "first_logits_sha256": "00"}"#).unwrap();
    std::fs::write(bad.join("a.txt"), b"X\n").unwrap();
    let o = voxtrace(&["verify-real", "--model", s(&model), "--golden", s(&bad)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("a.json") && err.contains("tokens[1]"), "{err}");
    // An empty folder.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let o = voxtrace(&["verify-real", "--model", s(&model), "--golden", s(&empty)]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no `<id>.json` record"), "{err}");
}

#[test]
fn the_real_golden_folder_parses() {
    // ../shared/golden/voxtral-mini-4b-realtime (or $VOXTRACE_GOLDEN_DIR): the records the
    // real checkpoint must reproduce. Without the checkpoint only their format is checked.
    let dir = match std::env::var_os("VOXTRACE_GOLDEN_DIR") {
        Some(d) => PathBuf::from(d),
        None => root().join("../shared/golden/voxtral-mini-4b-realtime"),
    };
    let clips = voxtrace::verify::read_golden_dir(&dir, None)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let lens: Vec<(String, usize)> = clips
        .iter()
        .map(|c| (c.id.clone(), c.record.tokens.len()))
        .collect();
    assert_eq!(
        lens,
        [
            ("8297-275156-0000".to_string(), 56),
            ("8297-275156-0001".to_string(), 69),
            ("8297-275156-0002".to_string(), 111)
        ]
    );
    for c in &clips {
        assert_eq!(c.record.first_logits_32.len(), 32);
        // N - 38 ids: N audio tokens of the offline padding (32 left, 17 right + alignment).
        let samples = voxtrace::audio::load_mono_16k(&c.audio).unwrap().len();
        let n = (40_960 + samples.div_ceil(1280) * 1280 + 21_760) / 1280;
        assert_eq!(c.record.tokens.len(), n - 38, "{}", c.id);
    }
}
