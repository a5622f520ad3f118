//! Log-mel features and mel filter banks against transformers' own outputs
//! (fixtures from `reference/audio_features.py`).

mod common;

use common::audio::{CLIPS, max_abs_diff};
use common::{Fixture, fixtures};
use voxtrace::audio::mel::{self, LogMelExtractor, mel_filter_bank};

/// Tolerance on the `(log10 + 4) / 4` scale. Upstream computes in f32 (STFT, matmul, log10); we compute in f64.
const TOL: f32 = 1e-4;

fn waveform(fx: &Fixture) -> Vec<f32> {
    let (_, pcm) = fx.i16("waveform_i16");
    pcm.iter().map(|&s| f32::from(s) / 32768.0).collect()
}

#[test]
fn mel_filter_banks_match_transformers() {
    let fx = Fixture::open(fixtures().join("audio/mel_filters.safetensors"));
    for (name, n_mels) in [("mel_filters_128", 128usize), ("mel_filters_80", 80)] {
        let (shape, want) = fx.f64(name);
        assert_eq!(shape, vec![201, n_mels]);
        let got = mel_filter_bank(201, n_mels, 0.0, 8000.0, 16_000).unwrap();
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        let scale = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        eprintln!("{name}: max abs error {err:.3e} (max weight {scale:.3e})");
        assert!(err <= 1e-12 * scale.max(1.0), "{name}: max abs error {err}");
        // Every filter has some weight (no empty triangles).
        for m in 0..n_mels {
            assert!(
                (0..201).any(|f| got[f * n_mels + m] > 0.0),
                "{name}: filter {m} is empty"
            );
        }
    }
}

#[test]
fn voxtral_log_mel_matches_transformers_on_real_clips() {
    let ex = LogMelExtractor::voxtral_realtime();
    let mut worst = 0.0f32;
    for (name, _, _) in CLIPS {
        let fx = Fixture::open(fixtures().join(format!("audio/{name}.safetensors")));
        let x = waveform(&fx);
        // center = true: the full clip.
        let (shape, want) = fx.f32("voxtral_center");
        let got = ex.compute(&x, true).unwrap();
        assert_eq!(got.shape().to_vec(), shape, "{name}: center shape");
        assert_eq!(got.n_frames, x.len() / 160);
        let err_c = max_abs_diff(name, &got.data, &want);
        // center = false: the fixture holds only the first F frames of each mel row.
        let (shape_nc, want_nc) = fx.f32("voxtral_nocenter");
        let got_nc = ex.compute(&x, false).unwrap();
        assert_eq!(
            got_nc.n_frames,
            (x.len() - 400) / 160,
            "{name}: center=false frames"
        );
        let f = shape_nc[1];
        let got_slice: Vec<f32> = (0..128)
            .flat_map(|m| got_nc.data[m * got_nc.n_frames..m * got_nc.n_frames + f].to_vec())
            .collect();
        let err_nc = max_abs_diff(name, &got_slice, &want_nc);
        eprintln!(
            "{name}: voxtral center=true max abs err {err_c:.3e} over {shape:?}, center=false {err_nc:.3e} over {shape_nc:?}"
        );
        assert!(
            err_c <= TOL,
            "{name}: voxtral center=true max abs error {err_c}"
        );
        assert!(
            err_nc <= TOL,
            "{name}: voxtral center=false max abs error {err_nc}"
        );
        worst = worst.max(err_c).max(err_nc);
    }
    eprintln!("voxtral worst max abs error over all clips: {worst:.3e}");
}

#[test]
fn whisper_log_mel_matches_transformers_on_real_clips() {
    let ex = LogMelExtractor::whisper(80).unwrap();
    let mut worst = 0.0f32;
    for (name, _, _) in CLIPS {
        let fx = Fixture::open(fixtures().join(format!("audio/{name}.safetensors")));
        let x = waveform(&fx);
        let got = ex.whisper_features(&x).unwrap();
        assert_eq!(got.shape(), [80, 3000]);
        let (shape, head) = fx.f32("whisper_head");
        let (_, tail) = fx.f32("whisper_tail");
        let w = shape[1];
        let got_head: Vec<f32> = (0..80)
            .flat_map(|m| got.data[m * 3000..m * 3000 + w].to_vec())
            .collect();
        let err_head = max_abs_diff(name, &got_head, &head);
        // Upstream's frames w..3000 all hold one value (the floor); compare every one of ours with it.
        let err_tail = (0..80)
            .flat_map(|m| got.data[m * 3000 + w..(m + 1) * 3000].to_vec())
            .map(|v| (v - tail[0]).abs())
            .fold(0.0f32, f32::max);
        eprintln!(
            "{name}: whisper max abs err head {err_head:.3e} ({w} frames), tail {err_tail:.3e}"
        );
        assert!(
            err_head <= TOL && err_tail <= TOL,
            "{name}: whisper error head {err_head} tail {err_tail}"
        );
        worst = worst.max(err_head).max(err_tail);
    }
    eprintln!("whisper worst max abs error over all clips: {worst:.3e}");
}

#[test]
fn frame_counts_and_short_inputs() {
    let ex = LogMelExtractor::voxtral_realtime();
    assert_eq!(ex.n_frames(1680, false), Some(8)); // a later HF streaming chunk: 8 frames = 1 token
    assert_eq!(ex.n_frames(120_320, true), Some(752)); // the spec's worked example
    assert_eq!(ex.n_frames(200, true), None);
    assert_eq!(ex.n_frames(399, false), None);
    let err = ex.compute(&[0.0; 200], true).unwrap_err().to_string();
    assert!(err.contains("200 samples"), "{err}");
    let err = ex.compute(&[0.0; 399], false).unwrap_err().to_string();
    assert!(err.contains("n_fft"), "{err}");
    let mut x = vec![0.1f32; 1000];
    x[17] = f32::NAN;
    let err = ex.compute(&x, true).unwrap_err().to_string();
    assert!(err.contains("sample 17"), "{err}");
    // Silence: every value is the floor (1.5 - 8 + 4) / 4.
    let silent = ex.compute(&[0.0; 1600], true).unwrap();
    assert!(silent.data.iter().all(|&v| v == (1.5 - 8.0 + 4.0) / 4.0));
    // Whisper accepts an empty signal (all padding) and cuts long ones to 30 s.
    let w = mel::whisper_log_mel(&[]).unwrap();
    assert_eq!(w.shape(), [80, 3000]);
    let long = vec![0.01f32; 500_000];
    assert_eq!(mel::whisper_log_mel(&long).unwrap().shape(), [80, 3000]);
}

#[test]
fn voxtral_streaming_chunk_equals_slice_of_whole_signal() {
    // With center=false, frame t of a chunk starting at sample s equals frame s/160 + t of the whole
    // signal with center=false (same samples under the window).
    let fx = Fixture::open(fixtures().join("audio/goforward.safetensors"));
    let x = waveform(&fx);
    let ex = LogMelExtractor::voxtral_realtime();
    let whole = ex.compute(&x, false).unwrap();
    let start = 160 * 100;
    let chunk = ex.compute(&x[start..start + 1680], false).unwrap();
    assert_eq!(chunk.n_frames, 8);
    for m in 0..128 {
        for t in 0..8 {
            assert!((chunk.get(m, t) - whole.get(m, 100 + t)).abs() <= 1e-6);
        }
    }
}

#[test]
fn features_command_writes_a_trace_file() {
    use voxtrace::cli::features::{FeatureModel, FeaturesArgs, run};
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("features.safetensors");
    let input = common::shared_audio().join("goforward.wav");
    let args = FeaturesArgs {
        input: input.clone(),
        out: out.clone(),
        model: FeatureModel::Voxtral,
        no_pad: false,
        tekken: Some(fixtures().join("tokenizer/tekken_tiny.json")),
        delay_ms: None,
    };
    run(&args).unwrap();
    let fx = Fixture::open(out.clone());
    let meta = fx.metadata();
    assert_eq!(meta["voxtrace.format"], "trace-v1");
    assert_eq!(meta["voxtrace.order"], r#"["input_features"]"#);
    let (shape, data) = fx.f32("input_features");
    // Offline padding: 32 x 1280 left, alignment to 1280 plus 17 x 1280 right (mistral-common).
    // 44 580 = 34 x 1280 + 1060, so 220 zeros align it; 107 520 samples = 672 frames = 84 tokens.
    let padded = 40_960 + 44_580 + 220 + 17 * 1280;
    assert_eq!(shape, vec![1, 128, padded / 160]);
    assert_eq!((padded / 160) % 8, 0);
    // Without padding the features equal the reference fixture.
    let args = FeaturesArgs {
        no_pad: true,
        tekken: None,
        ..args
    };
    run(&args).unwrap();
    let (shape, data_np) = Fixture::open(out).f32("input_features");
    let (_, want) =
        Fixture::open(fixtures().join("audio/goforward.safetensors")).f32("voxtral_center");
    assert_eq!(shape, vec![1, 128, 278]);
    assert!(max_abs_diff("cli", &data_np, &want) <= TOL);
    assert_ne!(data.len(), data_np.len());
    // A non-audio input is an error naming it.
    let bad = FeaturesArgs {
        input: fixtures().join("audio/pad_cases.json"),
        ..args
    };
    let err = run(&bad).unwrap_err().to_string();
    assert!(err.contains("pad_cases.json"), "{err}");
}
