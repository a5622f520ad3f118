//! Streaming transcription (80 ms steps, carried conv context, bounded KV caches) gives the same
//! tokens as the offline schedule, which equals upstream `generate()`, and upstream's own
//! streaming run; caches never exceed their sliding windows.

mod common;

use common::voxtral::{clip, max_logit_diff, stream, stream_with};
use common::*;
use voxtrace::models::voxtral::{Voxtral, WeightLayout};
use voxtrace::tokenizer::Tekken;

fn setup() -> (Voxtral, Tekken) {
    let device = device();
    let model =
        Voxtral::load_layout(&voxtral_fixture("mistral"), WeightLayout::Mistral, &device).unwrap();
    let tok = Tekken::from_file(voxtral_fixture("mistral/tekken.json")).unwrap();
    (model, tok)
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

/// The batched encoder (whole clip pushed at once, up to 256 or 7 audio tokens per encoder call)
/// gives the one-token (8-frame) schedule's ids, and logits equal within f32 rounding of the
/// different product shapes (atol 1e-4 on logits of magnitude ~1-10: the parity tolerance of
/// the tests against upstream), on three corpus clips and the synthetic one, both layouts.
#[test]
fn batched_encoder_gives_the_one_token_schedule_tokens() {
    let device = device();
    for (dir, layout) in [("mistral", WeightLayout::Mistral), ("hf", WeightLayout::Hf)] {
        let model = Voxtral::load_layout(&voxtral_fixture(dir), layout, &device).unwrap();
        let tok = Tekken::from_file(voxtral_fixture("mistral/tekken.json")).unwrap();
        for name in ["001.wav", "goforward.wav", "LJ002-0020.wav", "synthetic"] {
            let x = clip(name);
            let one = stream_with(&model, &tok, &x, x.len(), Some(1));
            assert!(one.ids.len() > 40, "{dir} {name}: {} ids", one.ids.len());
            for enc_chunk in [7, 256] {
                let b = stream_with(&model, &tok, &x, x.len(), Some(enc_chunk));
                assert_eq!(b.ids, one.ids, "{dir} {name}: encoder chunk {enc_chunk}");
                assert_eq!(b.logits.len(), one.logits.len());
                let max = max_logit_diff(&b.logits, &one.logits);
                assert!(
                    max <= 1e-4,
                    "{dir} {name}: chunk {enc_chunk}: logits differ by {max}"
                );
            }
        }
    }
}

/// `HalfCompute::Bf16` (activations rounded to bf16; AMX tiles from two rows, AVX-512 BF16
/// for one, each summing a row independently of the others): the batched encoder still gives
/// the one-token schedule's ids and logits within the same 1e-4 as in f32, on the BF16 fixture
/// (Mistral layout). The drift against f32 compute is printed (ids agreement, largest logit
/// change), not bounded: it is what `--compute bf16` trades. Without AVX512_BF16 the setter
/// must report no bf16 layer and the results must equal f32 compute's exactly.
#[test]
fn bf16_compute_keeps_batched_and_one_token_schedules_equal() {
    use voxtrace::nn::half::{HalfCompute, bf16_compute_available};
    let device = device();
    let f32_model =
        Voxtral::load_layout(&voxtral_fixture("mistral"), WeightLayout::Mistral, &device).unwrap();
    let mut model =
        Voxtral::load_layout(&voxtral_fixture("mistral"), WeightLayout::Mistral, &device).unwrap();
    let n = model.set_compute(HalfCompute::Bf16);
    let tok = Tekken::from_file(voxtral_fixture("mistral/tekken.json")).unwrap();
    if bf16_compute_available() {
        assert!(n > 0, "BF16 fixture: no layer runs in bf16");
    } else {
        assert_eq!(n, 0);
    }
    for name in ["001.wav", "goforward.wav", "LJ002-0020.wav", "synthetic"] {
        let x = clip(name);
        let one = stream_with(&model, &tok, &x, x.len(), Some(1));
        let b = stream_with(&model, &tok, &x, x.len(), Some(256));
        assert_eq!(
            b.ids, one.ids,
            "{name}: bf16 compute, encoder chunk 256 vs 1"
        );
        let max = max_logit_diff(&b.logits, &one.logits);
        assert!(
            max <= 1e-4,
            "{name}: bf16 compute, chunk 256 vs 1: logits differ by {max}"
        );
        let f = stream_with(&f32_model, &tok, &x, x.len(), Some(256));
        let common = f.ids.iter().zip(&b.ids).take_while(|(a, c)| a == c).count();
        let drift = max_logit_diff(&b.logits[..1], &f.logits[..1]);
        eprintln!(
            "{name}: bf16 vs f32 compute: {common} of {} / {} ids in common prefix, first logits max diff {drift:.3e}",
            b.ids.len(),
            f.ids.len()
        );
        if n == 0 {
            assert_eq!(
                b.ids, f.ids,
                "{name}: without bf16 layers the run is the f32 run"
            );
        } else {
            assert!(drift > 0.0, "{name}: bf16 compute changed nothing");
        }
    }
}
