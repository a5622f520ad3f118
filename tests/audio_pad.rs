//! Offline streaming padding and the AudioConfig arithmetic against mistral-common's own numbers
//! (fixture from `reference/pad_cases.py`).

mod common;

use common::fixtures;
use serde::Deserialize;
use voxtrace::audio::config::OFFLINE_STREAMING_BUFFER_TOKENS;
use voxtrace::audio::{AudioConfig, pad_offline, streaming_pad};

#[derive(Deserialize)]
struct Case {
    num_samples: usize,
    transcription_delay_ms: f64,
    streaming_n_left_pad_tokens: usize,
    raw_audio_length_per_tok: usize,
    audio_length_per_tok: usize,
    n_delay_tokens: usize,
    n_right_pad_tokens: usize,
    left_pad: usize,
    right_pad: usize,
    padded_len: usize,
    num_audio_tokens_padded: usize,
    num_audio_tokens_unpadded: usize,
}

#[derive(Deserialize)]
struct Doc {
    cases: Vec<Case>,
}

fn cases() -> Vec<Case> {
    let path = fixtures().join("audio/pad_cases.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str::<Doc>(&text).unwrap().cases
}

#[test]
fn padding_matches_mistral_common() {
    let cases = cases();
    assert!(cases.len() >= 100);
    for c in &cases {
        let mut cfg = AudioConfig::voxtral_realtime();
        cfg.streaming_n_left_pad_tokens = Some(c.streaming_n_left_pad_tokens);
        cfg.transcription_delay_ms = Some(c.transcription_delay_ms);
        cfg.validate().unwrap();
        let ctx = format!(
            "n={} delay={} left_tokens={}",
            c.num_samples, c.transcription_delay_ms, c.streaming_n_left_pad_tokens
        );
        assert_eq!(
            cfg.raw_audio_length_per_tok(),
            c.raw_audio_length_per_tok,
            "{ctx}"
        );
        assert_eq!(cfg.audio_length_per_tok(), c.audio_length_per_tok, "{ctx}");
        assert_eq!(cfg.n_delay_tokens(None).unwrap(), c.n_delay_tokens, "{ctx}");
        assert_eq!(
            cfg.n_right_pad_tokens(None).unwrap(),
            c.n_right_pad_tokens,
            "{ctx}"
        );
        let pad = streaming_pad(&cfg, c.num_samples, None).unwrap();
        assert_eq!((pad.left, pad.right), (c.left_pad, c.right_pad), "{ctx}");
        assert_eq!(pad.padded_len(c.num_samples), c.padded_len, "{ctx}");
        assert_eq!(
            cfg.num_audio_tokens(c.padded_len),
            c.num_audio_tokens_padded,
            "{ctx}"
        );
        assert_eq!(
            cfg.num_audio_tokens(c.num_samples),
            c.num_audio_tokens_unpadded,
            "{ctx}"
        );
        // The explicit-delay path gives the same numbers from a config with another default delay.
        let mut other = cfg.clone();
        other.transcription_delay_ms = Some(80.0);
        assert_eq!(
            streaming_pad(&other, c.num_samples, Some(c.transcription_delay_ms)).unwrap(),
            pad,
            "{ctx}"
        );
        // The padded signal: zeros, then the samples unchanged, then zeros.
        let x: Vec<f32> = (1..=c.num_samples).map(|i| i as f32).collect();
        let y = pad_offline(&cfg, &x, None).unwrap();
        assert_eq!(y.len(), c.padded_len, "{ctx}");
        assert!(y[..c.left_pad].iter().all(|&v| v == 0.0));
        assert_eq!(&y[c.left_pad..c.left_pad + c.num_samples], &x[..]);
        assert!(y[c.left_pad + c.num_samples..].iter().all(|&v| v == 0.0));
    }
}

#[test]
fn voxtral_defaults_and_spec_examples() {
    let cfg = AudioConfig::voxtral_realtime();
    cfg.validate().unwrap();
    assert_eq!(cfg.n_delay_tokens(None).unwrap(), 6); // 480 ms
    assert_eq!(cfg.n_left_pad_tokens().unwrap(), 32);
    assert_eq!(
        cfg.n_right_pad_tokens(None).unwrap(),
        6 + 1 + OFFLINE_STREAMING_BUFFER_TOKENS
    );
    // voxtral-realtime-spec.md section 3: 57 280 samples -> 120 320 padded, 94 tokens.
    let pad = streaming_pad(&cfg, 57_280, None).unwrap();
    assert_eq!((pad.left, pad.right), (40_960, 320 + 21_760));
    assert_eq!(cfg.num_audio_tokens(pad.padded_len(57_280)), 94);
}

#[test]
fn non_streaming_and_invalid_configs_are_errors() {
    let mut cfg = AudioConfig::voxtral_realtime();
    cfg.streaming_n_left_pad_tokens = None;
    assert!(cfg.validate().is_err());
    assert!(
        streaming_pad(&cfg, 100, None)
            .unwrap_err()
            .to_string()
            .contains("streaming_n_left_pad_tokens")
    );
    let mut cfg = AudioConfig::voxtral_realtime();
    cfg.transcription_delay_ms = Some(500.0); // not a multiple of 80 ms
    assert!(cfg.validate().unwrap_err().to_string().contains("multiple"));
    let mut cfg = AudioConfig::voxtral_realtime();
    cfg.transcription_format = voxtrace::audio::TranscriptionFormat::Instruct;
    assert!(streaming_pad(&cfg, 100, None).is_err());
    let cfg = AudioConfig::voxtral_realtime();
    assert!(
        pad_offline(&cfg, &[0.0, f32::NAN], None)
            .unwrap_err()
            .to_string()
            .contains("sample 1")
    );
    assert!(streaming_pad(&cfg, 10, Some(-80.0)).is_err());
}

#[test]
fn config_parses_from_tekken_json_audio_section() {
    let text = r#"{"sampling_rate": 16000, "frame_rate": 12.5,
        "audio_encoding_config": {"num_mel_bins": 128, "hop_length": 160, "window_size": 400},
        "transcription_format": "streaming", "transcription_delay_ms": 480,
        "streaming_look_ahead_ms": 2.5, "streaming_look_back_ms": 52.5, "streaming_n_left_pad_tokens": 32}"#;
    let cfg: AudioConfig = serde_json::from_str(text).unwrap();
    assert_eq!(cfg, AudioConfig::voxtral_realtime());
    let bad = text.replace("\"frame_rate\"", "\"frame_rat\"");
    assert!(serde_json::from_str::<AudioConfig>(&bad).is_err());
}

proptest::proptest! {
    /// For any length and allowed delay, the padded signal is a whole number of 1280-sample tokens, so the mel
    /// has exactly 8 frames per token and neither of vLLM's left truncations (odd frame count, conv frames not a
    /// multiple of 4) fires (voxtral-realtime-spec.md section 3).
    #[test]
    fn padded_length_is_whole_tokens(n in 0usize..2_000_000, delay_tokens in 1usize..=15) {
        let cfg = AudioConfig::voxtral_realtime();
        let delay = delay_tokens as f64 * 80.0;
        let pad = streaming_pad(&cfg, n, Some(delay)).unwrap();
        let len = pad.padded_len(n);
        proptest::prop_assert_eq!(len % 1280, 0);
        proptest::prop_assert_eq!(pad.left, 32 * 1280);
        proptest::prop_assert!(pad.right >= (delay_tokens + 11) * 1280 && pad.right < (delay_tokens + 12) * 1280);
        proptest::prop_assert_eq!(cfg.num_audio_tokens(len), len / 1280);
        proptest::prop_assert_eq!((len / 160) % 8, 0);
    }
}
