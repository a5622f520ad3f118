//! Voxtral helpers shared by the integration tests: the streaming schedule as
//! `voxtrace transcribe` runs it, and the test clips.

use super::{device, shared_audio, voxtral_fixture};
use voxtrace::audio::AudioConfig;
use voxtrace::models::voxtral::Voxtral;
use voxtrace::models::voxtral::streaming::StreamingSession;
use voxtrace::tokenizer::Tekken;

/// Stream `samples` (16 kHz) through `model` in pushes of `chunk` samples with the released
/// 480 ms delay: the whole id sequence (prompt included) and the largest (encoder, decoder) KV
/// cache lengths seen, in positions.
pub fn stream(
    model: &Voxtral,
    tok: &Tekken,
    samples: &[f32],
    chunk: usize,
) -> (Vec<i64>, (usize, usize)) {
    let s = stream_with(model, tok, samples, chunk, None);
    (s.ids, s.max_caches)
}

/// What [`stream_with`] returns.
#[allow(dead_code)]
pub struct Streamed {
    /// Prompt and generated ids.
    pub ids: Vec<i64>,
    /// Largest (encoder, decoder) KV cache lengths seen after a push, in positions.
    pub max_caches: (usize, usize),
    /// Each generated position's logits `[vocab]`.
    pub logits: Vec<Vec<f32>>,
}

/// [`stream`] with an encoder chunk (`StreamingSession::set_encoder_chunk`; `None`: the
/// default) and every generated position's logits.
#[allow(dead_code)]
pub fn stream_with(
    model: &Voxtral,
    tok: &Tekken,
    samples: &[f32],
    chunk: usize,
    encoder_chunk: Option<usize>,
) -> Streamed {
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
    let logits = std::cell::RefCell::new(Vec::new());
    let (ids, max_caches) = {
        let mut s = StreamingSession::new(
            model,
            cfg,
            prompt,
            delay,
            Some(tok.eos_id().unwrap() as i64),
            &device(),
        )
        .unwrap();
        if let Some(n) = encoder_chunk {
            s.set_encoder_chunk(n);
        }
        s.observe_logits(Box::new(|_, l: &[f32]| {
            logits.borrow_mut().push(l.to_vec())
        }));
        let mut max_caches = (0, 0);
        for c in samples.chunks(chunk) {
            s.push(c).unwrap();
            let (e, d) = s.cache_lengths();
            max_caches = (max_caches.0.max(e), max_caches.1.max(d));
        }
        s.finish(480.0).unwrap();
        (s.sequence().to_vec(), max_caches)
    };
    Streamed {
        ids,
        max_caches,
        logits: logits.into_inner(),
    }
}

/// A test clip as 16 kHz mono: `synthetic` is the fixture's own, any other name a file of the
/// shared audio folder.
pub fn clip(name: &str) -> Vec<f32> {
    let path = if name == "synthetic" {
        voxtral_fixture("synthetic.wav")
    } else {
        shared_audio().join(name)
    };
    voxtrace::audio::load_mono_16k(&path).unwrap()
}

/// Largest `|a - b|` over two runs' per-position logits (positions zipped).
#[allow(dead_code)]
pub fn max_logit_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    a.iter()
        .zip(b)
        .flat_map(|(p, q)| p.iter().zip(q).map(|(x, y)| (x - y).abs()))
        .fold(0f32, f32::max)
}
