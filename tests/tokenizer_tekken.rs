//! Tekken reader and decoder against mistral-common's own decoding
//! (fixtures from `reference/tekken_decode_cases.py` and `reference/make_tiny_tekken.py`).

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use base64::Engine as _;
use common::fixtures;
use proptest::prelude::*;
use serde::Deserialize;
use voxtrace::audio::AudioConfig;
use voxtrace::tokenizer::{SpecialTokenPolicy, Tekken, TekkenError};

#[derive(Deserialize)]
struct Case {
    ids: Vec<u32>,
    decoded: String,
    decoded_keep: String,
}

#[derive(Deserialize)]
struct Cases240718 {
    n_words: usize,
    num_special_tokens: usize,
    bos_id: u32,
    eos_id: u32,
    hello_world_ids: Vec<u32>,
    cases: Vec<Case>,
    byte_pieces_b64: BTreeMap<String, String>,
}

/// mistral-common's shipped tekken_240718.json; the path comes from `VOXTRACE_TEKKEN_240718`.
fn tekken_240718_path() -> PathBuf {
    let var = std::env::var_os("VOXTRACE_TEKKEN_240718").unwrap_or_else(|| {
        panic!(
            "VOXTRACE_TEKKEN_240718 is not set: point it at mistral-common's data/tekken_240718.json, e.g. \
             .venv/lib/python3.11/site-packages/mistral_common/data/tekken_240718.json (`just test` sets it)"
        )
    });
    let path = PathBuf::from(var);
    assert!(
        path.is_file(),
        "VOXTRACE_TEKKEN_240718={} does not name a file",
        path.display()
    );
    path
}

fn stream_decode(tok: &Tekken, ids: &[u32]) -> String {
    let mut dec = tok.streaming_decoder();
    let mut out = String::new();
    for &id in ids {
        out.push_str(&dec.push(id).unwrap());
        assert!(dec.pending_bytes().len() <= 3);
    }
    out + &dec.finish()
}

#[test]
fn tekken_240718_decodes_like_mistral_common() {
    let tok = Tekken::from_file(tekken_240718_path()).unwrap();
    let path = fixtures().join("tokenizer/tekken_240718_cases.json");
    let doc: Cases240718 = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(tok.n_words(), doc.n_words);
    assert_eq!(tok.num_special_tokens(), doc.num_special_tokens);
    assert_eq!(tok.bos_id().unwrap(), doc.bos_id);
    assert_eq!(tok.eos_id().unwrap(), doc.eos_id);
    assert!(tok.audio().is_none());
    // This 2024 file has no streaming tokens: looking them up is an error naming the file, not a made-up id.
    let err = tok.streaming_pad_id().unwrap_err();
    assert!(
        matches!(err, TekkenError::UnknownSpecialToken { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("tekken_240718.json"), "{err}");
    assert_eq!(
        tok.decode(&doc.hello_world_ids).unwrap(),
        "Hello world, this is a test."
    );
    assert!(doc.cases.len() >= 300);
    let mut with_replacement = 0;
    for c in &doc.cases {
        assert_eq!(tok.decode(&c.ids).unwrap(), c.decoded, "ids {:?}", c.ids);
        assert_eq!(
            tok.decode_with(&c.ids, SpecialTokenPolicy::Keep).unwrap(),
            c.decoded_keep,
            "ids {:?}",
            c.ids
        );
        assert_eq!(
            stream_decode(&tok, &c.ids),
            c.decoded,
            "streaming, ids {:?}",
            c.ids
        );
        with_replacement += usize::from(c.decoded.contains('\u{FFFD}'));
    }
    assert!(
        with_replacement >= 20,
        "the cases must exercise invalid UTF-8 ({with_replacement})"
    );
    let b64 = base64::engine::general_purpose::STANDARD;
    for (id, want) in &doc.byte_pieces_b64 {
        let id: u32 = id.parse().unwrap();
        assert_eq!(
            tok.token_bytes(id).unwrap(),
            b64.decode(want).unwrap().as_slice(),
            "id {id}"
        );
    }
    let err = tok.decode(&[doc.n_words as u32]).unwrap_err();
    assert!(matches!(err, TekkenError::IdOutOfRange { .. }), "{err}");
}

#[derive(Deserialize)]
struct TinyAudio {
    raw_audio_length_per_tok: usize,
    audio_length_per_tok: usize,
    n_delay_tokens: usize,
    n_left_pad_tokens: usize,
    n_right_pad_tokens: usize,
    streaming_pad_56032: [usize; 2],
    streaming_prefix: Vec<u32>,
}

#[derive(Deserialize)]
struct TinyCases {
    n_words: usize,
    num_special_tokens: usize,
    special_ids: BTreeMap<String, u32>,
    audio: TinyAudio,
    cases: Vec<Case>,
}

fn tiny() -> Tekken {
    Tekken::from_file(fixtures().join("tokenizer/tekken_tiny.json")).unwrap()
}

#[test]
fn tiny_tekken_matches_mistral_common() {
    let tok = tiny();
    let path = fixtures().join("tokenizer/tekken_tiny_cases.json");
    let doc: TinyCases = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(tok.n_words(), doc.n_words);
    assert_eq!(tok.num_special_tokens(), doc.num_special_tokens);
    for (name, id) in &doc.special_ids {
        assert_eq!(tok.special_id(name).unwrap(), *id, "{name}");
    }
    assert_eq!(tok.streaming_pad_id().unwrap(), 32);
    assert_eq!(tok.streaming_word_id().unwrap(), 33);
    assert_eq!(tok.special_tokens()[500].token_str, "<SPECIAL_500>");
    for c in &doc.cases {
        assert_eq!(tok.decode(&c.ids).unwrap(), c.decoded, "ids {:?}", c.ids);
        assert_eq!(
            tok.decode_with(&c.ids, SpecialTokenPolicy::Keep).unwrap(),
            c.decoded_keep
        );
        assert_eq!(stream_decode(&tok, &c.ids), c.decoded);
    }
    let audio: &AudioConfig = tok.audio().expect("audio section");
    assert_eq!(audio, &AudioConfig::voxtral_realtime());
    let a = &doc.audio;
    assert_eq!(audio.raw_audio_length_per_tok(), a.raw_audio_length_per_tok);
    assert_eq!(audio.audio_length_per_tok(), a.audio_length_per_tok);
    assert_eq!(audio.n_delay_tokens(None).unwrap(), a.n_delay_tokens);
    assert_eq!(audio.n_left_pad_tokens().unwrap(), a.n_left_pad_tokens);
    assert_eq!(
        audio.n_right_pad_tokens(None).unwrap(),
        a.n_right_pad_tokens
    );
    let pad = voxtrace::audio::streaming_pad(audio, 56_032, None).unwrap();
    assert_eq!([pad.left, pad.right], a.streaming_pad_56032);
    // mistral-common's streaming prefix (after BOS): [STREAMING_PAD] x (left pad + delay tokens).
    let pad_id = tok.streaming_pad_id().unwrap();
    let prefix =
        vec![pad_id; audio.n_left_pad_tokens().unwrap() + audio.n_delay_tokens(None).unwrap()];
    assert_eq!(prefix, a.streaming_prefix);
}

#[test]
fn raise_policy_rejects_control_ids() {
    let tok = tiny();
    let err = tok
        .decode_with(&[1000, 1], SpecialTokenPolicy::Raise)
        .unwrap_err();
    assert!(
        matches!(err, TekkenError::SpecialTokenNotAllowed { id: 1, .. }),
        "{err}"
    );
}

#[test]
fn streaming_decoder_holds_back_split_characters() {
    let tok = tiny();
    // "é" = C3 A9, "€" = E2 82 AC as raw byte ids (1000 + byte).
    let mut dec = tok.streaming_decoder();
    assert_eq!(dec.push(1000 + 0xC3).unwrap(), "");
    assert_eq!(dec.pending_bytes(), &[0xC3]);
    assert_eq!(dec.push(1000 + 0xA9).unwrap(), "é");
    assert_eq!(dec.push(1000 + 0xE2).unwrap(), "");
    assert_eq!(dec.push(1000 + 0x82).unwrap(), "");
    assert_eq!(dec.push(1000 + 0xAC).unwrap(), "€");
    // A broken sequence is emitted as U+FFFD as soon as it is known to be broken.
    assert_eq!(dec.push(1000 + 0xE2).unwrap(), "");
    assert_eq!(dec.push(1000 + u32::from(b'a')).unwrap(), "\u{FFFD}a");
    // A control id ends the run: an incomplete sequence before it becomes U+FFFD, as in mistral-common.
    assert_eq!(dec.push(1000 + 0xC3).unwrap(), "");
    assert_eq!(dec.push(33).unwrap(), "\u{FFFD}");
    assert_eq!(dec.push(1000 + 0xA9).unwrap(), "\u{FFFD}");
    assert_eq!(dec.push(1000 + 0xF0).unwrap(), "");
    assert!(dec.push(5000).is_err());
    assert_eq!(dec.finish(), "\u{FFFD}");
}

proptest! {
    #[test]
    fn streaming_equals_batch_decode(ids in proptest::collection::vec(
        prop_oneof![0u32..40, 1000u32..1256, 1256u32..2048], 0..64)) {
        let tok = tiny();
        prop_assert_eq!(stream_decode(&tok, &ids), tok.decode(&ids).unwrap());
    }
}

fn load_str(text: &str) -> Result<Tekken, TekkenError> {
    Tekken::from_json_bytes(text.as_bytes(), "/models/bad/tekken.json")
}

fn tiny_json() -> serde_json::Value {
    serde_json::from_str(
        &std::fs::read_to_string(fixtures().join("tokenizer/tekken_tiny.json")).unwrap(),
    )
    .unwrap()
}

#[test]
fn malformed_files_are_clear_errors() {
    let err = Tekken::from_file("/nonexistent/tekken.json").unwrap_err();
    assert!(
        matches!(err, TekkenError::Io { .. })
            && err.to_string().contains("/nonexistent/tekken.json"),
        "{err}"
    );

    // Truncated file: a JSON error naming the file and the position.
    let text = std::fs::read_to_string(fixtures().join("tokenizer/tekken_tiny.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("tekken_cut.json");
    std::fs::write(&cut, &text[..text.len() / 2]).unwrap();
    let err = Tekken::from_file(&cut).unwrap_err();
    assert!(matches!(err, TekkenError::Json { .. }), "{err}");
    assert!(
        err.to_string().contains("tekken_cut.json") && err.to_string().contains("EOF"),
        "{err}"
    );

    let check = |v: serde_json::Value, want: &str| {
        let err = load_str(&v.to_string()).unwrap_err().to_string();
        assert!(
            err.contains("/models/bad/tekken.json") && err.contains(want),
            "wanted {want:?} in: {err}"
        );
    };
    let mut v = tiny_json();
    v["config"]["version"] = "13".into();
    check(v, "unknown config.version");
    let mut v = tiny_json();
    v["config"]["default_vocab_size"] = 999_999.into();
    check(v, "default_vocab_size");
    let mut v = tiny_json();
    v["vocab"][7]["rank"] = 8.into();
    check(v, "rank 8");
    let mut v = tiny_json();
    v["vocab"][65]["token_bytes"] = "Qg==".into(); // "B" at rank 65 ("A")
    check(v, "single byte");
    let mut v = tiny_json();
    v["vocab"][300]["token_bytes"] = "not base64!".into();
    check(v, "base64");
    let mut v = tiny_json();
    v["vocab"][301]["token_bytes"] = v["vocab"][300]["token_bytes"].clone();
    check(v, "same bytes");
    let mut v = tiny_json();
    v["special_tokens"][40]["token_str"] = "[STREAMING_PAD]".into();
    check(v, "appears twice");
    let mut v = tiny_json();
    v["special_tokens"][5]["rank"] = 6.into();
    check(v, "rank 6");
    let mut v = tiny_json();
    v.as_object_mut().unwrap().remove("special_tokens");
    check(v, "no special_tokens");
    let mut v = tiny_json();
    v["audio"]["transcription_delay_ms"] = 500.into();
    check(v, "audio section");
    let mut v = tiny_json();
    v["config"].as_object_mut().unwrap().remove("pattern");
    check(v, "pattern");
    let err = load_str("[1, 2, 3]").unwrap_err();
    assert!(matches!(err, TekkenError::Json { .. }), "{err}");
}

#[test]
fn only_the_first_vocab_entries_are_used() {
    // default_vocab_size 1500 -> 500 text ids; ids >= 1500 are out of range even though the file has more entries.
    let mut v = tiny_json();
    v["config"]["default_vocab_size"] = 1500.into();
    let tok = load_str(&v.to_string()).unwrap();
    assert_eq!(tok.n_words(), 1500);
    assert!(tok.decode(&[1499]).is_ok());
    assert!(matches!(
        tok.decode(&[1500]).unwrap_err(),
        TekkenError::IdOutOfRange { id: 1500, .. }
    ));
}
