//! Model files cannot exhaust the machine (issue 21, class 9): params.json, config.json and
//! tekken.json values are range- and overflow-checked before anything is allocated from them,
//! and an .npz member that declares more than deflate can produce is refused before it is
//! inflated. Every case is a clean error naming the file; the property tests feed random values
//! and assert no panic (run with many more cases by `just fuzz`).

mod common;

use proptest::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use voxtrace::models::voxtral::VoxtralConfig;
use voxtrace::models::whisper::WhisperConfig;
use voxtrace::tokenizer::Tekken;

fn params_json() -> Value {
    let text = std::fs::read_to_string(common::voxtral_fixture("mistral/params.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn hf_config_json() -> Value {
    let text = std::fs::read_to_string(common::voxtral_fixture("hf/config.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn tekken_json() -> Value {
    let text =
        std::fs::read_to_string(common::fixtures().join("tokenizer/tekken_tiny.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Set `value` at the dotted `key` of `v`.
fn set(v: &mut Value, key: &str, value: Value) {
    let mut cur = v;
    let parts: Vec<&str> = key.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .get_mut(*p)
            .unwrap_or_else(|| panic!("no key {p} in {key}"));
    }
    cur[parts[parts.len() - 1]] = value;
}

fn write(dir: &Path, name: &str, v: &Value) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, serde_json::to_string(v).unwrap()).unwrap();
    p
}

#[track_caller]
fn assert_names(err: impl std::fmt::Display, file: &str, words: &[&str]) {
    let msg = err.to_string();
    assert!(msg.contains(file), "{msg:?} should name {file}");
    for w in words {
        assert!(msg.contains(w), "{msg:?} should mention {w:?}");
    }
}

#[test]
fn absurd_voxtral_params_are_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        VoxtralConfig::from_params_json(&write(dir.path(), "params.json", &params_json())).is_ok()
    );
    let e = "multimodal.whisper_model_args.encoder_args";
    for (key, value, word) in [
        ("n_layers", Value::from(1u64 << 40), "n_layers"),
        ("vocab_size", Value::from(1u64 << 40), "vocab_size"),
        ("dim", Value::from(0), "dim"),
        ("n_kv_heads", Value::from(3), "n_kv_heads"),
        ("norm_eps", Value::from(5.0), "norm_eps"),
        ("rope_theta", Value::from(-1.0), "rope_theta"),
        ("sliding_window", Value::from(u64::MAX), "sliding_window"),
        (
            &format!("{e}.hidden_dim") as &str,
            Value::from(1u64 << 33),
            "hidden_dim",
        ),
        (&format!("{e}.n_heads"), Value::from(0), "n_heads"),
    ] {
        let mut v = params_json();
        set(&mut v, key, value);
        let err =
            VoxtralConfig::from_params_json(&write(dir.path(), "params.json", &v)).expect_err(key);
        assert_names(err, "params.json", &[word]);
    }
    // HF config.json goes through the same checks.
    let mut v = hf_config_json();
    set(
        &mut v,
        "text_config.num_hidden_layers",
        Value::from(1u64 << 40),
    );
    let err =
        VoxtralConfig::from_hf_config_json(&write(dir.path(), "config.json", &v)).unwrap_err();
    assert_names(err, "config.json", &["n_layers"]);
}

#[test]
fn absurd_whisper_config_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = WhisperConfig::tiny_en().to_hf_json();
    assert!(WhisperConfig::from_hf_config_json(&write(dir.path(), "config.json", &good)).is_ok());
    for (key, value) in [
        ("vocab_size", Value::from(1u64 << 40)),
        ("decoder_layers", Value::from(1u64 << 20)),
        ("d_model", Value::from(1u64 << 30)),
    ] {
        let mut v = good.clone();
        set(&mut v, key, value);
        let err = WhisperConfig::from_hf_config_json(&write(dir.path(), "config.json", &v))
            .expect_err(key);
        assert_names(err, "config.json", &[key]);
    }
}

#[test]
fn absurd_tekken_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Tekken::from_file(write(dir.path(), "tekken.json", &tekken_json())).is_ok());
    // 4e9 control tokens would be 4e9 allocations of a name each.
    let mut v = tekken_json();
    set(
        &mut v,
        "config.default_num_special_tokens",
        Value::from(4_000_000_000u64),
    );
    set(
        &mut v,
        "config.default_vocab_size",
        Value::from(4_000_000_000u64),
    );
    let err = Tekken::from_file(write(dir.path(), "tekken.json", &v)).unwrap_err();
    assert_names(err, "tekken.json", &["default_num_special_tokens"]);
    // The audio section bounds the padding it asks for.
    for (key, value, word) in [
        (
            "audio.streaming_n_left_pad_tokens",
            Value::from(1u64 << 40),
            "streaming_n_left_pad_tokens",
        ),
        (
            "audio.transcription_delay_ms",
            Value::from(1e12),
            "transcription_delay_ms",
        ),
        (
            "audio.sampling_rate",
            Value::from(4_000_000_000u64),
            "sampling_rate",
        ),
    ] {
        let mut v = tekken_json();
        set(&mut v, key, value);
        let err = Tekken::from_file(write(dir.path(), "tekken.json", &v)).expect_err(key);
        assert_names(err, "tekken.json", &[word]);
    }
}

/// A stored-then-deflated .npz whose member declares a huge uncompressed size in both the
/// local header and the central directory.
#[test]
fn npz_member_declaring_more_than_deflate_can_give_is_refused() {
    use npyz::WriterBuilder;
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.npz");
    {
        let file = std::fs::File::create(&path).unwrap();
        let mut zip = npyz::zip::ZipWriter::new(file);
        let opts = npyz::zip::write::FileOptions::default()
            .compression_method(npyz::zip::CompressionMethod::Deflated);
        zip.start_file("x.npy", opts).unwrap();
        let mut bytes = Vec::new();
        let mut w = npyz::WriteOptions::new()
            .default_dtype()
            .shape(&[4096])
            .writer(&mut bytes)
            .begin_nd()
            .unwrap();
        for _ in 0..4096 {
            w.push(&0.0f32).unwrap();
        }
        w.finish().unwrap();
        zip.write_all(&bytes).unwrap();
        zip.finish().unwrap();
    }
    // The honest archive reads.
    assert!(voxtrace::compare::Dump::open(&path).is_ok());
    // Now make both size fields lie: 3 GB from a few hundred compressed bytes.
    let mut raw = std::fs::read(&path).unwrap();
    let huge = 3_000_000_000u32.to_le_bytes();
    let local = raw.windows(4).position(|w| w == b"PK\x03\x04").unwrap();
    raw[local + 22..local + 26].copy_from_slice(&huge);
    let central = raw.windows(4).position(|w| w == b"PK\x01\x02").unwrap();
    raw[central + 24..central + 28].copy_from_slice(&huge);
    std::fs::write(&path, &raw).unwrap();
    let err = voxtrace::compare::Dump::open(&path).unwrap_err();
    assert_names(err, "bomb.npz", &["zip bomb"]);
}

fn any_json_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        (0u64..4096).prop_map(Value::from),
        Just(Value::Null),
        Just(Value::from("x")),
    ]
}

const PARAMS_KEYS: [&str; 12] = [
    "dim",
    "n_layers",
    "head_dim",
    "hidden_dim",
    "n_heads",
    "n_kv_heads",
    "vocab_size",
    "rope_theta",
    "norm_eps",
    "sliding_window",
    "ada_rms_norm_t_cond_dim",
    "multimodal.whisper_model_args.encoder_args.n_layers",
];

proptest! {
    /// Random values in params.json: the parser returns (Ok or a clean error naming the file)
    /// and never panics; an accepted config is within the documented bounds.
    #[test]
    fn params_json_never_panics(values in proptest::collection::vec(any_json_number(), PARAMS_KEYS.len())) {
        let dir = tempfile::tempdir().unwrap();
        let mut v = params_json();
        for (k, x) in PARAMS_KEYS.iter().zip(values) {
            set(&mut v, k, x);
        }
        let p = write(dir.path(), "params.json", &v);
        match VoxtralConfig::from_params_json(&p) {
            Ok(cfg) => prop_assert!(cfg.validate().is_ok()),
            Err(e) => prop_assert!(e.to_string().contains("params.json"), "{e}"),
        }
    }

    /// Random counts in tekken.json's config and audio sections: no panic, no runaway
    /// allocation (the test would abort or time out), errors name the file.
    #[test]
    fn tekken_json_never_panics(
        specials in any_json_number(),
        words in any_json_number(),
        left in any_json_number(),
        delay in any_json_number(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut v = tekken_json();
        set(&mut v, "config.default_num_special_tokens", specials);
        set(&mut v, "config.default_vocab_size", words);
        set(&mut v, "audio.streaming_n_left_pad_tokens", left);
        set(&mut v, "audio.transcription_delay_ms", delay);
        let p = write(dir.path(), "tekken.json", &v);
        if let Err(e) = Tekken::from_file(&p) {
            prop_assert!(e.to_string().contains("tekken.json"), "{e}");
        }
    }
}

/// `voxtrace export` sizes are bounded before anything is allocated (issue 21, class 9): a
/// `--frames`, `--tokens` or `--past` of 10^12 is exit 2 naming the option, not an attempt to
/// allocate a 512 TB input.
#[test]
fn absurd_export_sizes_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.onnx");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/voxtral_tiny/mistral");
    for (part, opt) in [
        ("encoder", "--frames"),
        ("decoder-step", "--tokens"),
        ("decoder-step", "--past"),
    ] {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_voxtrace"))
            .arg("export")
            .arg("--model")
            .arg(&model)
            .args(["--part", part, "--out"])
            .arg(&out)
            .args([opt, "1000000000000"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{opt}: {err}");
        assert!(err.contains(opt) && err.contains("outside"), "{opt}: {err}");
        assert!(!out.exists());
    }
}
