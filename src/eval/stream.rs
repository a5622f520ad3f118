//! The streaming decode an eval runs for a streaming model, timed step by step: the clip is
//! pushed into a [`StreamingSession`] in 80 ms chunks (as `voxtrace transcribe` and a live
//! client do), each audio step is timed with an injectable [`Clock`], and the result is the
//! transcript and its [`StreamTrace`] (the input of [`super::latency`]).
//!
//! The streaming schedule's ids equal the offline schedule's (`tests/voxtral_streaming.rs`), so
//! the transcript is the one the offline decode gives.

use std::cell::RefCell;
use std::time::Instant;

use burn::tensor::Device;

use super::latency::{StreamStep, StreamTrace, round_us};
use crate::audio::AudioConfig;
use crate::models::voxtral::Voxtral;
use crate::models::voxtral::pipeline::PipelineError;
use crate::models::voxtral::prompt::{PromptTokens, streaming_prompt};
use crate::models::voxtral::streaming::StreamingSession;
use crate::tokenizer::Tekken;

/// A monotonic clock, seconds from an arbitrary origin. The eval uses [`WallClock`]; tests
/// inject a scripted one so the timing plumbing is checked without timing anything.
pub trait Clock {
    /// The current time, seconds.
    fn now_s(&mut self) -> f64;
}

/// [`Clock`] of [`Instant`], from its creation.
#[derive(Clone, Copy, Debug)]
pub struct WallClock(Instant);

impl Default for WallClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for WallClock {
    fn now_s(&mut self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

#[derive(Default)]
struct Recorder {
    /// Clock reading when the current step started (the push, or the previous step's end).
    mark: f64,
    /// Audio seconds received so far.
    audio_s: f64,
    /// (audio_s, ms, generated id) per step.
    steps: Vec<(f64, f64, Option<i64>)>,
}

/// Stream 16 kHz mono `samples` through `model` with a transcription delay of `delay_ms`
/// (greedy, EOS stops; the schedule of `voxtrace transcribe`): the transcript (trimmed) and the
/// trace of every step, timed with `clock`.
///
/// Chunks of one audio step (1280 samples) are pushed, so each push runs at most one step,
/// whose audio position is the samples pushed so far; the steps [`StreamingSession::finish`]
/// runs (right padding) have the clip's duration. The setup is [`StreamingSession::new`]
/// (left-padding steps). Decoding ids to text happens after the stream, outside the timing.
///
/// # Errors
/// A tokenizer without the prompt's control tokens or with an id out of range, bad audio
/// settings or delay, non-finite samples.
pub fn transcribe_streaming(
    model: &Voxtral,
    tok: &Tekken,
    samples: &[f32],
    delay_ms: f64,
    clock: &mut dyn Clock,
    device: &Device,
) -> Result<(String, StreamTrace), PipelineError> {
    let cfg = tok
        .audio()
        .cloned()
        .unwrap_or_else(AudioConfig::voxtral_realtime);
    let per_tok = cfg.raw_audio_length_per_tok();
    let rate = f64::from(cfg.sampling_rate);
    let tokens = PromptTokens::from_tekken(tok)?;
    let prompt = streaming_prompt(&tokens, &cfg, Some(delay_ms))?;
    let clock = RefCell::new(clock);
    let rec = RefCell::new(Recorder::default());
    let t0 = clock.borrow_mut().now_s();
    let mut session = StreamingSession::new(
        model,
        cfg,
        prompt.ids,
        prompt.delay_tokens,
        Some(tokens.eos),
        device,
    )?;
    let setup_ms = (clock.borrow_mut().now_s() - t0) * 1000.0;
    session.observe_steps(Box::new(|_, id| {
        let now = clock.borrow_mut().now_s();
        let mut r = rec.borrow_mut();
        let ms = (now - r.mark) * 1000.0;
        r.mark = now;
        let audio_s = r.audio_s;
        r.steps.push((audio_s, ms, id));
    }));
    let start = |audio_s: f64| {
        let now = clock.borrow_mut().now_s();
        let mut r = rec.borrow_mut();
        r.mark = now;
        r.audio_s = audio_s;
    };
    let mut pushed = 0usize;
    for chunk in samples.chunks(per_tok.max(1)) {
        pushed += chunk.len();
        start(pushed as f64 / rate);
        session.push(chunk)?;
        if session.is_done() {
            break;
        }
    }
    start(pushed as f64 / rate);
    session.finish(delay_ms)?;
    drop(session);
    let steps = rec.into_inner().steps;
    let mut decoder = tok.streaming_decoder();
    let mut out = Vec::with_capacity(steps.len());
    for (audio_s, ms, id) in steps {
        let text = match id {
            Some(id) => decoder.push(u32::try_from(id).unwrap_or(u32::MAX))?,
            None => String::new(),
        };
        out.push(StreamStep {
            audio_s,
            ms: round_us(ms),
            text,
        });
    }
    let rest = decoder.finish();
    if let Some(last) = out.last_mut() {
        last.text.push_str(&rest);
    }
    let text: String = out.iter().map(|s| s.text.as_str()).collect();
    Ok((
        text.trim().to_string(),
        StreamTrace {
            step_s: per_tok as f64 / rate,
            delay_ms,
            audio_s: samples.len() as f64 / rate,
            setup_ms: round_us(setup_ms),
            steps: out,
        },
    ))
}
