//! Streaming transcription (80 ms steps, carried conv context, bounded KV caches) gives the same
//! tokens as the offline schedule, which equals upstream `generate()`, and upstream's own
//! streaming run; caches never exceed their sliding windows.

mod common;

use common::*;
use voxtrace::audio::AudioConfig;
use voxtrace::models::voxtral::streaming::StreamingSession;
use voxtrace::models::voxtral::{Voxtral, WeightLayout};
use voxtrace::tokenizer::Tekken;

fn setup() -> (Voxtral, Tekken) {
    let device = device();
    let model =
        Voxtral::load_layout(&voxtral_fixture("mistral"), WeightLayout::Mistral, &device).unwrap();
    let tok = Tekken::from_file(voxtral_fixture("mistral/tekken.json")).unwrap();
    (model, tok)
}

fn stream(
    model: &Voxtral,
    tok: &Tekken,
    samples: &[f32],
    chunk: usize,
) -> (Vec<i64>, (usize, usize)) {
    let cfg = tok
        .audio()
        .cloned()
        .unwrap_or_else(AudioConfig::voxtral_realtime);
    let delay = cfg.n_delay_tokens(Some(480.0)).unwrap();
    let mut prompt = vec![tok.bos_id().unwrap() as i64];
    let pad = tok.streaming_pad_id().unwrap() as i64;
    prompt.extend(std::iter::repeat_n(
        pad,
        cfg.n_left_pad_tokens().unwrap() + delay,
    ));
    let mut s = StreamingSession::new(
        model,
        cfg,
        prompt,
        delay,
        Some(tok.eos_id().unwrap() as i64),
        &device(),
    )
    .unwrap();
    let mut max_caches = (0, 0);
    for c in samples.chunks(chunk) {
        s.push(c).unwrap();
        let (e, d) = s.cache_lengths();
        max_caches = (max_caches.0.max(e), max_caches.1.max(d));
    }
    s.finish(480.0).unwrap();
    (s.sequence().to_vec(), max_caches)
}

fn clip(name: &str) -> Vec<f32> {
    let path = if name == "synthetic" {
        voxtral_fixture("synthetic.wav")
    } else {
        std::env::var_os("VOXTRACE_AUDIO_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| root().join("../shared/audio"))
            .join(name)
    };
    voxtrace::audio::load_mono_16k(&path).unwrap()
}

#[test]
fn streaming_tokens_equal_upstream_offline_generate() {
    let (model, tok) = setup();
    for (wav, dump) in [
        ("001.wav", "cards-001.safetensors"),
        ("goforward.wav", "goforward.e2e.safetensors"),
        ("LJ002-0020.wav", "LJ002-0020.e2e.safetensors"),
        ("synthetic", "synthetic.e2e.safetensors"),
        // Features not in the fixture: this one runs entirely on our own decode + log-mel.
        ("1272-128104-0000.wav", "1272-128104-0000.ids.safetensors"),
    ] {
        let expected = read_dump(&voxtral_fixture(&format!("dumps/{dump}")))
            .get("generated_ids")
            .i64
            .clone();
        // Odd chunk sizes: the schedule must not depend on how audio arrives.
        let (seq, (enc, dec)) = stream(&model, &tok, &clip(wav), 1000);
        assert_eq!(
            seq, expected,
            "{wav}: streaming tokens differ from upstream generate()"
        );
        let w_enc = model.config.encoder.sliding_window;
        let w_dec = model.config.decoder.sliding_window;
        assert!(
            enc <= w_enc && dec <= w_dec + 38,
            "{wav}: caches {enc}/{dec} exceed windows {w_enc}/{w_dec}"
        );
    }
}

#[test]
fn streaming_equals_upstream_streaming_run() {
    let (model, tok) = setup();
    let expected = read_dump(&voxtral_fixture("dumps/LJ002-0020.stream.safetensors"))
        .get("generated_ids")
        .i64
        .clone();
    let (seq, _) = stream(&model, &tok, &clip("LJ002-0020.wav"), 1280);
    assert_eq!(seq, expected);
}

#[test]
fn caches_stay_bounded_on_long_audio() {
    let (model, tok) = setup();
    // 40 s of noise: 500 steps, far beyond both tiny windows (96 encoder frames, 48 tokens).
    let mut x = 1u32;
    let samples: Vec<f32> = (0..640_000)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 8) as f32 / (1u32 << 24) as f32 * 0.2 - 0.1
        })
        .collect();
    let (seq, (enc, dec)) = stream(&model, &tok, &samples, 16_000);
    assert!(seq.len() > 500, "{}", seq.len());
    assert!(
        enc <= model.config.encoder.sliding_window,
        "encoder cache {enc}"
    );
    assert!(
        dec <= model.config.decoder.sliding_window,
        "decoder cache {dec}"
    );
}
