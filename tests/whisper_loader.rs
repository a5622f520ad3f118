//! Whisper loader: both layouts give the same network, and broken checkpoints give errors
//! that name the file and the tensor (with expected and found shape), never a panic.

mod common;

use common::whisper::*;
use common::{allclose, device, to_vec};
use std::path::Path;
use voxtrace::models::CheckpointError;
use voxtrace::models::whisper::ct2::{Ct2Model, HfTensor, save_hf_safetensors, to_hf_state_dict};
use voxtrace::models::whisper::loader::detect_layout;
use voxtrace::models::whisper::{Whisper, WhisperConfig, WhisperLayout, is_whisper_dir};
use voxtrace::trace::Scope;

fn state_dict() -> Vec<HfTensor> {
    let dir = require_weights();
    let m = Ct2Model::load(dir.join("model.bin")).unwrap();
    to_hf_state_dict(&m).unwrap()
}

/// A transformers-layout folder holding `tensors`.
fn write_hf_dir(dir: &Path, tensors: &[HfTensor]) {
    save_hf_safetensors(tensors, dir.join("model.safetensors")).unwrap();
    let cfg = WhisperConfig::tiny_en();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&cfg.to_hf_json()).unwrap(),
    )
    .unwrap();
    let ct2: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(require_weights().join("config.json")).unwrap(),
    )
    .unwrap();
    let generation = serde_json::json!({
        "decoder_start_token_id": 50257,
        "no_timestamps_token_id": 50362,
        "eos_token_id": 50256,
        "max_length": 448,
        "suppress_tokens": ct2["suppress_ids"],
        "begin_suppress_tokens": ct2["suppress_ids_begin"],
    });
    std::fs::write(dir.join("generation_config.json"), generation.to_string()).unwrap();
}

#[test]
fn hf_safetensors_via_burn_store_equals_ct2_load() {
    let tmp = tempfile::tempdir().unwrap();
    write_hf_dir(tmp.path(), &state_dict());
    assert_eq!(detect_layout(tmp.path()).unwrap(), WhisperLayout::Hf);
    assert!(is_whisper_dir(tmp.path()));
    let hf = Whisper::load(tmp.path(), &device()).unwrap_or_else(|e| panic!("{e}"));
    let ct2 = load_model();
    assert_eq!(hf.config, ct2.config);
    assert_eq!(hf.generation, ct2.generation);
    let d = dump("goforward");
    let dev = device();
    let run = |m: &Whisper| {
        to_vec(
            m.net
                .forward(
                    d.float("input_features", &dev),
                    d.ids("input_ids", &dev),
                    &Scope::off(),
                )
                .unwrap(),
        )
    };
    let (sa, a) = run(&hf);
    let (sb, b) = run(&ct2);
    assert_eq!(sa, sb);
    let (ok, max) = allclose(&a, &b, 0.0, 0.0);
    assert!(
        ok,
        "HF-loaded vs CT2-loaded logits differ: max |diff| {max:e}"
    );
}

#[test]
fn truncated_model_bin_is_an_error_naming_the_file() {
    let src = require_weights();
    let tmp = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(src.join("model.bin")).unwrap();
    std::fs::write(tmp.path().join("model.bin"), &bytes[..bytes.len() / 2]).unwrap();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(src.join(f), tmp.path().join(f)).unwrap();
    }
    assert!(is_whisper_dir(tmp.path()));
    let err = Whisper::load(tmp.path(), &device()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::Ct2(_)), "{msg}");
    assert!(msg.contains("truncated"), "{msg}");
    assert!(
        msg.contains(&tmp.path().join("model.bin").display().to_string()),
        "{msg}"
    );
}

#[test]
fn missing_tensor_in_safetensors_is_named_with_expected_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let tensors: Vec<HfTensor> = state_dict()
        .into_iter()
        .filter(|t| t.name != "model.decoder.layers.2.fc1.bias")
        .collect();
    write_hf_dir(tmp.path(), &tensors);
    let err = Whisper::load(tmp.path(), &device()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::Tensors { .. }), "{msg}");
    assert!(
        msg.contains("missing tensor model.decoder.layers.2.fc1.bias: expected shape [1536]"),
        "{msg}"
    );
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn misshaped_and_extra_tensors_are_named() {
    let mut tensors = state_dict();
    let t = tensors
        .iter_mut()
        .find(|t| t.name == "model.encoder.conv1.weight")
        .unwrap();
    t.shape = vec![384, 240];
    tensors.push(HfTensor {
        name: "model.encoder.extra.weight".into(),
        shape: vec![2],
        data: vec![0.0, 0.0],
        source: "test".into(),
    });
    let cfg = WhisperConfig::tiny_en();
    let err =
        Whisper::from_state_dict(&cfg, tensors, Path::new("x/model.bin"), &device()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains(
            "tensor model.encoder.conv1.weight: expected shape [384, 80, 3], found [384, 240]"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("unexpected tensor model.encoder.extra.weight [2]"),
        "{msg}"
    );
    assert!(msg.starts_with("x/model.bin"), "{msg}");
}

#[test]
fn truncated_safetensors_is_a_file_error() {
    let tmp = tempfile::tempdir().unwrap();
    write_hf_dir(tmp.path(), &state_dict());
    let p = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() - 1000]).unwrap();
    let err = Whisper::load(tmp.path(), &device()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CheckpointError::File { .. }), "{msg}");
    assert!(msg.contains("model.safetensors"), "{msg}");
}

#[test]
fn layout_detection() {
    assert!(is_whisper_dir(&require_weights()));
    assert_eq!(
        detect_layout(&require_weights()).unwrap(),
        WhisperLayout::Ct2
    );
    let tmp = tempfile::tempdir().unwrap();
    assert!(!is_whisper_dir(tmp.path()));
    std::fs::write(
        tmp.path().join("config.json"),
        r#"{"model_type": "voxtral"}"#,
    )
    .unwrap();
    std::fs::write(tmp.path().join("model.safetensors"), b"x").unwrap();
    assert!(!is_whisper_dir(tmp.path()));
    assert!(matches!(
        Whisper::load(tmp.path(), &device()).unwrap_err(),
        CheckpointError::NotFound { .. }
    ));
}
