//! Model loader and `features` errors name the file and say what is wrong (issue 21, class
//! 11): each broken checkpoint file, given to the real `voxtrace` binary, gives exit code 2 and
//! one error naming that file (and the key, for configuration files), never a panic.
//! Voxtral: a copy of the tiny fixture (Mistral layout) with one file broken per case. Whisper:
//! the CTranslate2 tiny.en folder (`VOXTRACE_WHISPER_DIR`) with one file replaced per case.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::voxtral_fixture;
use common::whisper::require_weights;

/// Copies (or, for the big `model.bin`, links) every file of `src` into a new folder `dst`.
fn clone_dir(src: &Path, dst: &Path) {
    std::fs::create_dir(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        if e.file_name() == "model.bin" {
            std::os::unix::fs::symlink(e.path(), &to).unwrap();
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Runs `voxtrace ARGS`; returns (exit code, stderr).
fn run(args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_voxtrace"))
        .args(args)
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Transcribes the tiny fixture's clip with model folder `dir`; asserts exit 2, no panic, and
/// an error naming `file` and containing each of `words` (case-insensitive).
#[track_caller]
fn assert_load_error(dir: &Path, file: &str, words: &[&str]) {
    let clip = voxtral_fixture("synthetic.wav");
    let (code, err) = run(&[
        "transcribe".as_ref(),
        "--model".as_ref(),
        dir.as_os_str(),
        clip.as_os_str(),
    ]);
    assert_eq!(code, Some(2), "{file}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    let named = dir.join(file).display().to_string();
    assert!(err.contains(&named), "error should name {named}: {err}");
    for w in words {
        assert!(
            err.to_lowercase().contains(&w.to_lowercase()),
            "error should say {w:?}: {err}"
        );
    }
}

/// A fresh copy of the tiny Voxtral fixture in `tmp` named `name`.
fn voxtral_copy(tmp: &Path, name: &str) -> PathBuf {
    let d = tmp.join(name);
    clone_dir(&voxtral_fixture("mistral"), &d);
    d
}

#[test]
fn broken_voxtral_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();

    let d = voxtral_copy(t, "params_not_json");
    std::fs::write(d.join("params.json"), "{\"dim\": 64,").unwrap();
    assert_load_error(&d, "params.json", &["json"]);

    let d = voxtral_copy(t, "params_missing_key");
    let mut p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("params.json")).unwrap()).unwrap();
    p.as_object_mut().unwrap().remove("n_heads");
    std::fs::write(d.join("params.json"), p.to_string()).unwrap();
    assert_load_error(&d, "params.json", &["n_heads"]);

    let d = voxtral_copy(t, "weights_truncated");
    let w = d.join("consolidated.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    assert_load_error(&d, "consolidated.safetensors", &[]);

    let d = voxtral_copy(t, "tekken_corrupt");
    std::fs::write(d.join("tekken.json"), "[1, 2").unwrap();
    assert_load_error(&d, "tekken.json", &[]);

    let d = voxtral_copy(t, "tekken_missing");
    std::fs::remove_file(d.join("tekken.json")).unwrap();
    assert_load_error(&d, "tekken.json", &[]);
}

/// A copy of the Whisper CTranslate2 folder whose `config.json` is `config`.
fn whisper_with_config(tmp: &Path, name: &str, config: &str) -> PathBuf {
    let d = tmp.join(name);
    clone_dir(&require_weights(), &d);
    std::fs::write(d.join("config.json"), config).unwrap();
    d
}

#[test]
fn broken_whisper_ct2_files_say_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let good: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(require_weights().join("config.json")).unwrap(),
    )
    .unwrap();
    let with = |key: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[key] = v;
        c.to_string()
    };

    let d = whisper_with_config(t, "config_not_json", "{\"suppress_ids\": [1,");
    assert_load_error(&d, "config.json", &["json"]);

    let d = whisper_with_config(
        t,
        "config_bad_type",
        &with("suppress_ids", serde_json::json!([1, "two", 3])),
    );
    assert_load_error(&d, "config.json", &["suppress_ids[1]", "invalid type"]);

    let mut c = good.clone();
    c.as_object_mut().unwrap().remove("suppress_ids_begin");
    let d = whisper_with_config(t, "config_missing", &c.to_string());
    assert_load_error(&d, "config.json", &["suppress_ids_begin", "missing"]);

    let d = whisper_with_config(
        t,
        "config_id_outside_vocab",
        &with("suppress_ids", serde_json::json!([220, 99_999_999])),
    );
    assert_load_error(
        &d,
        "config.json",
        &["suppress_ids", "99999999", "vocabulary"],
    );

    // model.bin cut short (a real file, not the link).
    let d = t.join("model_truncated");
    clone_dir(&require_weights(), &d);
    let bin = d.join("model.bin");
    let bytes = std::fs::read(&bin).unwrap();
    std::fs::remove_file(&bin).unwrap();
    std::fs::write(&bin, &bytes[..bytes.len() / 3]).unwrap();
    assert_load_error(&d, "model.bin", &[]);

    let d = t.join("tokenizer_corrupt");
    clone_dir(&require_weights(), &d);
    std::fs::write(d.join("tokenizer.json"), "{\"model\": ").unwrap();
    assert_load_error(&d, "tokenizer.json", &[]);
}

/// `voxtrace features` names the input file when the samples themselves are bad (a NaN
/// sample fails in the log-mel, after decoding succeeded), and the tekken file when it is.
#[test]
fn features_errors_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let wav = tmp.path().join("nan.wav");
    // 32-bit float WAV, 16 kHz, 0.5 s with one NaN.
    let mut samples = vec![0.1f32; 8_000];
    samples[4_000] = f32::NAN;
    let data_len = (samples.len() * 4) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&16_000u32.to_le_bytes());
    b.extend_from_slice(&64_000u32.to_le_bytes());
    b.extend_from_slice(&4u16.to_le_bytes());
    b.extend_from_slice(&32u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for x in &samples {
        b.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(&wav, b).unwrap();
    let out = tmp.path().join("f.safetensors");
    for model in ["voxtral", "whisper"] {
        let (code, err) = run(&[
            "features".as_ref(),
            wav.as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
            "--model".as_ref(),
            model.as_ref(),
        ]);
        assert_eq!(code, Some(2), "{model}: {err}");
        assert!(err.contains(&wav.display().to_string()), "{model}: {err}");
        assert!(err.to_lowercase().contains("finite"), "{model}: {err}");
        assert!(!out.exists(), "{model}: no output on error");
    }
    let tekken = tmp.path().join("tekken.json");
    std::fs::write(&tekken, "not json").unwrap();
    let good = voxtral_fixture("synthetic.wav");
    let (code, err) = run(&[
        "features".as_ref(),
        good.as_os_str(),
        "--out".as_ref(),
        out.as_os_str(),
        "--tekken".as_ref(),
        tekken.as_os_str(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&tekken.display().to_string()), "{err}");
}
