//! The batched encoder on the full-size checkpoint (issue 28 item 2): streaming with the
//! encoder fed up to 256 audio tokens per call gives the one-token (8 mel frames) schedule's
//! ids, and logits within the f32 tolerance of the tiny-fixture test
//! (`tests/voxtral_streaming.rs`, 1e-4 on logits of magnitude ~1-10), at the real dimensions
//! (32 encoder layers, d_model 1280 / 3072, the 750-position encoder window) with the BF16
//! weights used as stored, in both compute modes (`HalfCompute::F32` and, where the CPU has
//! AVX512_BF16, `Bf16`).
//!
//! Ignored by default: it needs the ~8.9 GB checkpoint of `just full-size-checkpoint DIR`
//! (peak RSS ~9 GiB, a few minutes in the test profile). Run it with
//! `VOXTRACE_FULLSIZE_DIR=DIR cargo test --features ndarray --test voxtral_fullsize_streaming
//! -- --ignored --nocapture`, or `just fullsize-streaming DIR`. Without the variable the test
//! fails, naming it.

mod common;

use common::device;
use common::voxtral::{clip, stream_with};
use voxtrace::models::voxtral::Voxtral;
use voxtrace::nn::half::{HalfCompute, bf16_compute_available};

#[test]
#[ignore = "needs VOXTRACE_FULLSIZE_DIR (just full-size-checkpoint DIR; ~9 GiB RSS): just fullsize-streaming DIR"]
fn batched_encoder_gives_the_one_token_schedule_tokens_at_full_size() {
    let dir = std::env::var_os("VOXTRACE_FULLSIZE_DIR")
        .expect("VOXTRACE_FULLSIZE_DIR: the folder of `just full-size-checkpoint DIR`");
    let (mut model, tok) = Voxtral::open(std::path::Path::new(&dir), None, &device())
        .unwrap_or_else(|e| panic!("{}: {e}", dir.to_string_lossy()));
    // 001.wav, 1.1 s: the clip of `just parity-full-size`.
    let x = clip("001.wav");
    let mut modes = vec![HalfCompute::F32];
    if bf16_compute_available() {
        modes.push(HalfCompute::Bf16);
    }
    for mode in modes {
        let n = model.set_compute(mode);
        assert!(mode == HalfCompute::F32 || n > 0, "{mode:?}: no bf16 layer");
        let one = stream_with(&model, &tok, &x, x.len(), Some(1));
        let batched = stream_with(&model, &tok, &x, x.len(), Some(256));
        assert!(one.ids.len() > 40, "{mode:?}: {} ids", one.ids.len());
        assert_eq!(batched.ids, one.ids, "{mode:?}: encoder chunk 256 vs 1");
        let mut max = 0f32;
        for (p, q) in batched.logits.iter().zip(&one.logits) {
            for (a, c) in p.iter().zip(q) {
                max = max.max((a - c).abs());
            }
        }
        eprintln!(
            "{mode:?}: {} ids equal, {} generated positions, logits max |diff| {max:.3e}",
            one.ids.len(),
            one.logits.len()
        );
        assert!(max <= 1e-4, "{mode:?}: logits differ by {max}");
    }
}
