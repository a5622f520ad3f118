//! Long-form transcription with timestamp tokens, as openai-whisper's `transcribe()`
//! (openai/whisper `whisper/transcribe.py`, `whisper/decoding.py` `ApplyTimestampRules`) and
//! faster-whisper's `WhisperModel.generate_segments` (SYSTRAN/faster-whisper 1.2.1
//! `faster_whisper/transcribe.py`) do it, greedy at temperature 0:
//!
//! * the log-mel of the whole audio is computed once (one `max - 8` floor over the whole
//!   file, as both upstreams do), `content_frames = samples / 160`;
//! * a window starts at frame `seek` and holds `min(3000, content_frames - seek)` frames,
//!   zero-padded to 3000 (upstream `pad_or_trim` pads the normalised log-mel with 0);
//! * the decoder prompt is `[<|startofprev|>, previous tokens (last 223)..., <|startoftranscript|>]`
//!   when conditioning on previous text, else `[<|startoftranscript|>]` (no
//!   `<|notimestamps|>`: timestamps are predicted);
//! * each step applies `begin_suppress_tokens` (first step, openai's `SuppressBlank`),
//!   `suppress_tokens` (every step) and then [`apply_timestamp_rules`] (openai's
//!   `ApplyTimestampRules`), and takes the arg-max; at most 224 tokens per window
//!   (`n_text_ctx / 2`, openai's `sample_len`);
//! * the tokens are cut into segments at every pair of consecutive timestamp tokens
//!   ([`split_segments`]); the next window starts at the end timestamp of the last complete
//!   segment, or after the whole window when the output ends on a single timestamp (no
//!   speech after it) or has no timestamp pair;
//! * a window is skipped (no segment) when the `<|nocaptions|>` probability at the
//!   `<|startoftranscript|>` position is above `no_speech_threshold` (0.6) and the average
//!   log-probability of the tokens is below `logprob_threshold` (-1.0);
//! * segments whose start equals their end or whose text is empty are dropped.
//!
//! Not implemented: the temperature fallback (sampling at 0.2, 0.4, ... when the compression
//! ratio or log-probability thresholds fail), beam search, word timestamps, initial prompts.
//! Decoding is greedy at temperature 0 only, so its result is deterministic.

use super::config::{EOT, SOT};
use super::decode::{DecodeError, argmax};
use super::loader::Whisper;
use crate::audio::mel::{HOP_LENGTH, LogMelExtractor};
use crate::tokenizer::WhisperTokenizer;
use crate::trace::Scope;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// `<|startofprev|>` of the English-only vocabulary (precedes the previous-text prompt).
pub const SOT_PREV: u32 = 50360;
/// `<|nocaptions|>` (openai's `no_speech` token) of the English-only vocabulary.
pub const NO_SPEECH: u32 = 50361;
/// `<|notimestamps|>` of the English-only vocabulary (suppressed by the timestamp rules).
pub const NO_TIMESTAMPS: u32 = super::config::NO_TIMESTAMPS;
/// `<|0.00|>`, the first timestamp token of the English-only vocabulary; token
/// `TIMESTAMP_BEGIN + i` is `i * 0.02` s from the window start.
pub const TIMESTAMP_BEGIN: u32 = 50363;
/// Seconds per timestamp step (openai `time_precision`, 0.02 s = 2 mel frames).
pub const TIME_PRECISION: f64 = 0.02;
/// Mel frames per timestamp step (openai `input_stride`: 3000 frames / 1500 positions).
pub const INPUT_STRIDE: usize = 2;
/// Mel frames of one window (30 s).
pub const N_FRAMES: usize = 3000;
/// Mel frames per second (16 kHz / hop 160).
pub const FRAMES_PER_SECOND: f64 = 100.0;

/// Options of [`transcribe_long`]; [`Default`] is upstream's default for greedy decoding.
#[derive(Debug, Clone, PartialEq)]
pub struct LongFormOptions {
    /// Prompt each window with the tokens of the previous segments (openai and faster-whisper
    /// default: `true`).
    pub condition_on_previous_text: bool,
    /// Latest allowed first timestamp, seconds (openai `max_initial_timestamp`, 1.0).
    pub max_initial_timestamp_s: f64,
    /// Skip a window whose `<|nocaptions|>` probability is above this (0.6) and whose average
    /// log-probability is below [`Self::logprob_threshold`]; `None` never skips.
    pub no_speech_threshold: Option<f32>,
    /// See [`Self::no_speech_threshold`] (-1.0).
    pub logprob_threshold: Option<f32>,
    /// Largest number of tokens generated per window (openai `sample_len` = 224).
    pub sample_len: usize,
}

impl Default for LongFormOptions {
    fn default() -> Self {
        Self {
            condition_on_previous_text: true,
            max_initial_timestamp_s: 1.0,
            no_speech_threshold: Some(0.6),
            logprob_threshold: Some(-1.0),
            sample_len: 224,
        }
    }
}

/// One transcribed segment: what openai-whisper's `transcribe()` returns per segment.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Segment {
    /// Start in the audio, seconds (window start + first timestamp).
    pub start_s: f64,
    /// End in the audio, seconds (window start + last timestamp).
    pub end_s: f64,
    /// Text of the segment's text tokens, whitespace-trimmed.
    pub text: String,
    /// Tokens of the segment, timestamp tokens included (upstream's `tokens`).
    pub tokens: Vec<u32>,
    /// Window start the segment was decoded from, seconds (upstream's `seek`, in seconds).
    pub seek_s: f64,
    /// Average log-probability of the window's tokens (upstream `avg_logprob`).
    pub avg_logprob: f64,
    /// `<|nocaptions|>` probability of the window (upstream `no_speech_prob`).
    pub no_speech_prob: f64,
}

/// Texts of `segments` joined with one space (empty texts skipped).
pub fn segments_text(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| s.text.as_str())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// openai-whisper's `ApplyTimestampRules.apply` for one sequence, in place on `logits [vocab]`.
///
/// `sampled` are the tokens generated so far in this window (after the prompt);
/// `max_initial_timestamp_index` is `round(max_initial_timestamp / 0.02)` (50 for 1 s), `None`
/// for no limit. Rules, in upstream order:
/// 1. `<|notimestamps|>` is suppressed;
/// 2. timestamps come in pairs: after a timestamp preceded by a timestamp (or at the start)
///    only text may follow; after a timestamp preceded by text only a timestamp or EOT;
/// 3. timestamps never decrease, and a segment is never empty: timestamps below the last one
///    are suppressed (below the last + 1 unless the last token closed a segment);
/// 4. the first token is a timestamp no later than the initial limit;
/// 5. if the total probability of the timestamps exceeds that of the most likely text
///    token, text is suppressed.
pub fn apply_timestamp_rules(
    logits: &mut [f32],
    sampled: &[u32],
    max_initial_timestamp_index: Option<usize>,
) {
    let tb = TIMESTAMP_BEGIN as usize;
    let vocab = logits.len();
    if tb >= vocab {
        return;
    }
    let neg = f32::NEG_INFINITY;
    if let Some(x) = logits.get_mut(NO_TIMESTAMPS as usize) {
        *x = neg;
    }
    let is_ts = |t: u32| t >= TIMESTAMP_BEGIN;
    let n = sampled.len();
    let last_was_timestamp = n >= 1 && is_ts(sampled[n - 1]);
    let penultimate_was_timestamp = n < 2 || is_ts(sampled[n - 2]);
    if last_was_timestamp {
        if penultimate_was_timestamp {
            logits[tb..].fill(neg);
        } else {
            logits[..EOT as usize].fill(neg);
        }
    }
    if let Some(&last_ts) = sampled.iter().rev().find(|&&t| is_ts(t)) {
        let last = if last_was_timestamp && !penultimate_was_timestamp {
            last_ts
        } else {
            last_ts + 1
        } as usize;
        logits[tb..last.min(vocab)].fill(neg);
    }
    if n == 0 {
        logits[..tb].fill(neg);
        if let Some(i) = max_initial_timestamp_index {
            let last_allowed = tb + i;
            if last_allowed + 1 < vocab {
                logits[last_allowed + 1..].fill(neg);
            }
        }
    }
    // log_softmax, then logsumexp over timestamps vs the best text token.
    let max = logits.iter().copied().fold(neg, f32::max);
    if max == neg || max.is_nan() {
        return;
    }
    let lse = |xs: &[f32]| -> f64 {
        let m = xs.iter().copied().fold(neg, f32::max);
        if m == neg {
            return f64::NEG_INFINITY;
        }
        let s: f64 = xs.iter().map(|&x| f64::from(x - m).exp()).sum();
        f64::from(m) + s.ln()
    };
    // Comparing log-probabilities is comparing logits shifted by one constant.
    let timestamp_lse = lse(&logits[tb..]);
    let max_text = logits[..tb].iter().copied().fold(neg, f32::max);
    if timestamp_lse > f64::from(max_text) {
        logits[..tb].fill(neg);
    }
}

/// Segments of one window's generated `tokens` (EOT excluded), as openai-whisper's
/// `transcribe()` / faster-whisper's `_split_segments_by_timestamps`.
///
/// Returns `(segments as (start_s, end_s, tokens), frames to advance seek by)`. `offset_s` is
/// the window start, `segment_frames` the window's content frames (at most 3000).
pub fn split_segments(
    tokens: &[u32],
    offset_s: f64,
    segment_frames: usize,
) -> (Vec<(f64, f64, Vec<u32>)>, usize) {
    let is_ts = |t: u32| t >= TIMESTAMP_BEGIN;
    let pos = |t: u32| f64::from(t - TIMESTAMP_BEGIN);
    let n = tokens.len();
    let single_timestamp_ending = n >= 2 && !is_ts(tokens[n - 2]) && is_ts(tokens[n - 1]);
    let consecutive: Vec<usize> = (1..n)
        .filter(|&i| is_ts(tokens[i]) && is_ts(tokens[i - 1]))
        .collect();
    let mut out = Vec::new();
    if !consecutive.is_empty() {
        let mut slices = consecutive;
        if single_timestamp_ending {
            slices.push(n);
        }
        let mut last_slice = 0;
        for &cur in &slices {
            let sl = &tokens[last_slice..cur];
            out.push((
                offset_s + pos(sl[0]) * TIME_PRECISION,
                offset_s + pos(sl[sl.len() - 1]) * TIME_PRECISION,
                sl.to_vec(),
            ));
            last_slice = cur;
        }
        let advance = if single_timestamp_ending {
            segment_frames
        } else {
            (tokens[last_slice - 1] - TIMESTAMP_BEGIN) as usize * INPUT_STRIDE
        };
        (out, advance)
    } else {
        let mut duration = segment_frames as f64 / FRAMES_PER_SECOND;
        if let Some(&last) = tokens.iter().rev().find(|&&t| is_ts(t))
            && last != TIMESTAMP_BEGIN
        {
            duration = pos(last) * TIME_PRECISION;
        }
        out.push((offset_s, offset_s + duration, tokens.to_vec()));
        (out, segment_frames)
    }
}

/// Greedy decoding of one window with timestamps.
struct WindowResult {
    /// Generated tokens, EOT excluded.
    tokens: Vec<u32>,
    avg_logprob: f64,
    no_speech_prob: f64,
}

fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), device)
}

fn log_softmax_at(logits: &[f32], index: usize) -> f64 {
    let m = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let s: f64 = logits.iter().map(|&x| f64::from(x - m).exp()).sum();
    f64::from(logits[index] - m) - s.ln()
}

fn decode_window(
    model: &Whisper,
    enc: &Tensor<3>,
    prompt: &[u32],
    opts: &LongFormOptions,
) -> Result<WindowResult, DecodeError> {
    let settings = &model.generation;
    let max_pos = settings.max_length;
    if prompt.is_empty() || prompt.len() >= max_pos {
        return Err(DecodeError::Settings(format!(
            "prompt of {} tokens with max_length {max_pos}",
            prompt.len()
        )));
    }
    let max_initial = (opts.max_initial_timestamp_s >= 0.0)
        .then(|| (opts.max_initial_timestamp_s / TIME_PRECISION).round() as usize);
    // The last sampled token is never fed back: fed tokens stay within max_length positions.
    let sample_len = opts.sample_len.min(max_pos + 1 - prompt.len());
    let decoder = &model.net.model.decoder;
    let device = enc.device();
    let mut cache = decoder.new_cache(enc);
    let mut sampled: Vec<u32> = Vec::new();
    let mut feed = prompt.to_vec();
    let mut pos0 = 0;
    let mut sum_logprob = 0.0f64;
    let mut no_speech_prob = 0.0f64;
    while sampled.len() < sample_len {
        let hidden = decoder.forward(
            ids_tensor(&feed, &device),
            enc,
            pos0,
            Some(&mut cache),
            &Scope::off(),
        )?;
        let [_, s, d] = hidden.dims();
        let last = hidden.narrow(1, s - 1, 1).reshape([1, 1, d]);
        let logits = model.net.proj_out(last, &Scope::off());
        let mut logits: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| DecodeError::Settings(format!("logits readback: {e:?}")))?;
        let position = pos0 + feed.len() - 1;
        if logits.iter().any(|x| x.is_nan()) {
            return Err(DecodeError::NonFinite { position });
        }
        if sampled.is_empty() {
            // The last prompt token is <|startoftranscript|>: openai's `sot_index`.
            if (NO_SPEECH as usize) < logits.len() {
                no_speech_prob = log_softmax_at(&logits, NO_SPEECH as usize).exp();
            }
            for &t in &settings.begin_suppress_tokens {
                if let Some(x) = logits.get_mut(t as usize) {
                    *x = f32::NEG_INFINITY;
                }
            }
        }
        for &t in &settings.suppress_tokens {
            if let Some(x) = logits.get_mut(t as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
        apply_timestamp_rules(&mut logits, &sampled, max_initial);
        let next = argmax(&logits).ok_or(DecodeError::NonFinite { position })? as u32;
        sum_logprob += log_softmax_at(&logits, next as usize);
        if next == settings.eos_token_id {
            break;
        }
        sampled.push(next);
        pos0 += feed.len();
        feed = vec![next];
    }
    Ok(WindowResult {
        avg_logprob: sum_logprob / (sampled.len() + 1) as f64,
        tokens: sampled,
        no_speech_prob,
    })
}

/// Whole-file Whisper log-mel as openai-whisper's `log_mel_spectrogram(audio, padding=N_SAMPLES)`:
/// `[80, content_frames]` with `content_frames = samples.len() / 160`, the `max - 8` floor taken
/// over the whole file. Only the first `content_frames` frames are kept (they see the zero
/// padding after the end exactly as upstream's 30 s of padding; later frames are never used).
fn whole_log_mel(samples: &[f32], n_mels: usize) -> Result<(Vec<f32>, usize), DecodeError> {
    let content = samples.len() / HOP_LENGTH;
    let mut x = Vec::with_capacity(samples.len() + 3 * HOP_LENGTH);
    x.extend_from_slice(samples);
    x.resize(samples.len() + 3 * HOP_LENGTH, 0.0);
    let ext = LogMelExtractor::whisper(n_mels).map_err(|e| DecodeError::Features(e.to_string()))?;
    let mel = ext
        .compute(&x, true)
        .map_err(|e| DecodeError::Features(e.to_string()))?;
    drop(x);
    let [m, f] = mel.shape();
    // Keep the first `content` frames of each row, in place.
    let mut data = mel.data;
    for row in 0..m {
        data.copy_within(row * f..row * f + content, row * content);
    }
    data.truncate(m * content);
    data.shrink_to_fit();
    Ok((data, content))
}

/// Transcribe 16 kHz mono `samples` of any length into timestamped segments, as
/// openai-whisper's `transcribe()` / faster-whisper's `transcribe()` with greedy decoding at
/// temperature 0 (the module docs list the steps and what is not implemented).
///
/// Segment times are seconds from the start of `samples`, non-decreasing, within
/// `[0, samples.len() / 16000]`: a timestamp of the last window may point into its zero
/// padding, past the end of the audio (upstream keeps such times); here they are clamped to
/// the end of the audio. Empty or sub-10 ms input gives no segment.
///
/// # Errors
/// [`DecodeError`] from features, model or tokenizer.
pub fn transcribe_long(
    model: &Whisper,
    tokenizer: &WhisperTokenizer,
    samples: &[f32],
    opts: &LongFormOptions,
    device: &Device,
) -> Result<Vec<Segment>, DecodeError> {
    let n_mels = model.config.num_mel_bins;
    let (mel, content_frames) = whole_log_mel(samples, n_mels)?;
    let duration_s = samples.len() as f64 / 16_000.0;
    let mut seek = 0usize;
    let mut all_tokens: Vec<u32> = Vec::new();
    let mut prompt_reset_since = 0usize;
    let mut segments = Vec::new();
    let n_ctx_half = model.generation.max_length / 2;
    while seek < content_frames {
        let offset_s = seek as f64 / FRAMES_PER_SECOND;
        let segment_frames = N_FRAMES.min(content_frames - seek);
        let mut window = vec![0.0f32; n_mels * N_FRAMES];
        for m in 0..n_mels {
            let src = &mel[m * content_frames + seek..m * content_frames + seek + segment_frames];
            window[m * N_FRAMES..m * N_FRAMES + segment_frames].copy_from_slice(src);
        }
        let feats = Tensor::from_data(TensorData::new(window, [1, n_mels, N_FRAMES]), device);
        let enc = model.net.model.encoder.forward(feats, &Scope::off())?;
        let mut prompt = Vec::new();
        let previous = if opts.condition_on_previous_text {
            &all_tokens[prompt_reset_since..]
        } else {
            &[][..]
        };
        if !previous.is_empty() {
            prompt.push(SOT_PREV);
            let keep = previous.len().min(n_ctx_half.saturating_sub(1));
            prompt.extend_from_slice(&previous[previous.len() - keep..]);
        }
        prompt.push(SOT);
        let r = decode_window(model, &enc, &prompt, opts)?;
        if let Some(th) = opts.no_speech_threshold {
            let mut skip = r.no_speech_prob > f64::from(th);
            if let Some(lp) = opts.logprob_threshold
                && r.avg_logprob > f64::from(lp)
            {
                skip = false;
            }
            if skip {
                seek += segment_frames;
                continue;
            }
        }
        let (pieces, advance) = split_segments(&r.tokens, offset_s, segment_frames);
        for (start_s, end_s, tokens) in pieces {
            let text_tokens: Vec<u32> = tokens.iter().copied().filter(|&t| t < EOT).collect();
            let text = tokenizer.decode(&text_tokens)?;
            if start_s == end_s || text.is_empty() {
                continue;
            }
            all_tokens.extend_from_slice(&tokens);
            segments.push(Segment {
                start_s: start_s.min(duration_s),
                end_s: end_s.min(duration_s),
                text,
                tokens,
                seek_s: offset_s,
                avg_logprob: r.avg_logprob,
                no_speech_prob: r.no_speech_prob,
            });
        }
        if !opts.condition_on_previous_text {
            prompt_reset_since = all_tokens.len();
        }
        seek += advance;
    }
    Ok(segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V: usize = 51864;
    const TB: usize = TIMESTAMP_BEGIN as usize;
    const NEG: f32 = f32::NEG_INFINITY;

    fn ts(i: u32) -> u32 {
        TIMESTAMP_BEGIN + i
    }

    /// Logits favouring text token 100 strongly (timestamps cannot win rule 5).
    fn text_favoured() -> Vec<f32> {
        let mut l = vec![0.0f32; V];
        l[100] = 50.0;
        l
    }

    #[test]
    fn first_token_is_a_timestamp_no_later_than_one_second() {
        let mut l = text_favoured();
        apply_timestamp_rules(&mut l, &[], Some(50));
        assert!(l[..TB].iter().all(|&x| x == NEG), "text allowed first");
        assert!(l[TB..=TB + 50].iter().all(|&x| x == 0.0));
        assert!(
            l[TB + 51..].iter().all(|&x| x == NEG),
            "timestamp > 1.0 s allowed first"
        );
        // Without the limit every timestamp stays allowed.
        let mut l = text_favoured();
        apply_timestamp_rules(&mut l, &[], None);
        assert!(l[TB..].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn notimestamps_is_always_suppressed() {
        let mut l = vec![0.0f32; V];
        l[NO_TIMESTAMPS as usize] = 100.0;
        apply_timestamp_rules(&mut l, &[ts(0), 100], Some(50));
        assert_eq!(l[NO_TIMESTAMPS as usize], NEG);
    }

    #[test]
    fn after_an_opening_timestamp_only_text() {
        // [<|0.00|>]: penultimate counts as a timestamp (start), so only text may follow.
        let mut l = text_favoured();
        apply_timestamp_rules(&mut l, &[ts(0)], Some(50));
        assert!(l[TB..].iter().all(|&x| x == NEG));
        assert_eq!(l[100], 50.0);
        // A pair [.., <|2.00|>, <|2.00|>] is closed and reopened: text next.
        let mut l = text_favoured();
        apply_timestamp_rules(&mut l, &[ts(0), 100, ts(100), ts(100)], Some(50));
        assert!(l[TB..].iter().all(|&x| x == NEG));
    }

    /// Logits 0 for text and EOT, -30 for timestamps (rule 5 does not fire).
    fn text_level() -> Vec<f32> {
        let mut l = vec![0.0f32; V];
        l[TB..].fill(-30.0);
        l
    }

    #[test]
    fn after_text_then_timestamp_only_timestamp_or_eot() {
        // [<|0.00|>, text, <|1.00|>]: a timestamp (>= 1.00, may equal it) or EOT.
        let mut l = text_level();
        apply_timestamp_rules(&mut l, &[ts(0), 100, ts(50)], Some(50));
        assert!(l[..EOT as usize].iter().all(|&x| x == NEG), "text allowed");
        assert_eq!(l[EOT as usize], 0.0, "EOT must stay allowed");
        assert!(
            l[TB..TB + 50].iter().all(|&x| x == NEG),
            "decreasing timestamp"
        );
        assert_eq!(
            l[TB + 50],
            -30.0,
            "the closing timestamp may be reused to open"
        );
    }

    #[test]
    fn timestamps_never_decrease_and_segments_are_never_empty() {
        // [<|0.00|>, text]: next timestamp must be > 0.00 (a segment has nonzero length).
        let mut l = text_level();
        apply_timestamp_rules(&mut l, &[ts(0), 100], Some(50));
        assert_eq!(l[TB], NEG);
        assert_eq!(l[TB + 1], -30.0);
        // [<|0.00|>, text, <|3.00|>, <|3.00|>, text]: next timestamp > 3.00.
        let mut l = text_level();
        apply_timestamp_rules(&mut l, &[ts(0), 100, ts(150), ts(150), 7], Some(50));
        assert!(l[TB..=TB + 150].iter().all(|&x| x == NEG));
        assert_eq!(l[TB + 151], -30.0);
        assert_eq!(l[100], 0.0, "text allowed mid-segment");
    }

    #[test]
    fn timestamp_mass_above_best_text_forces_a_timestamp() {
        // Each timestamp alone is less likely than text token 100, but their sum is not.
        let mut l = vec![-30.0f32; V];
        l[100] = 2.0;
        for x in &mut l[TB..] {
            *x = 0.0; // 1501 x e^0 = e^7.3 > e^2
        }
        apply_timestamp_rules(&mut l, &[ts(0), 100], Some(50));
        assert!(l[..TB].iter().all(|&x| x == NEG));
        // And not when the best text token dominates.
        let mut l = vec![-30.0f32; V];
        l[100] = 10.0;
        for x in &mut l[TB..] {
            *x = 0.0;
        }
        apply_timestamp_rules(&mut l, &[ts(0), 100], Some(50));
        assert_eq!(l[100], 10.0);
    }

    #[test]
    fn split_seeks_to_the_last_complete_segment() {
        // <|0.00|> a <|2.00|><|2.00|> b <|4.00|><|4.00|> c (unfinished): seek to 4.00 s.
        let t = [ts(0), 1, ts(100), ts(100), 2, ts(200), ts(200), 3];
        let (segs, adv) = split_segments(&t, 10.0, 3000);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].0, segs[0].1), (10.0, 12.0));
        assert_eq!(segs[0].2, vec![ts(0), 1, ts(100)]);
        assert_eq!((segs[1].0, segs[1].1), (12.0, 14.0));
        assert_eq!(adv, 400);
    }

    #[test]
    fn split_single_timestamp_ending_consumes_the_window() {
        // <|0.00|> a <|2.00|><|2.00|> b <|5.00|> EOT: the window is done.
        let t = [ts(0), 1, ts(100), ts(100), 2, ts(250)];
        let (segs, adv) = split_segments(&t, 0.0, 2500);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[1].0, segs[1].1), (2.0, 5.0));
        assert_eq!(segs[1].2, vec![ts(100), 2, ts(250)]);
        assert_eq!(adv, 2500);
    }

    #[test]
    fn split_without_pairs_is_one_segment_over_the_window() {
        // <|0.00|> a <|3.00|> EOT: one segment ending at the last timestamp.
        let (segs, adv) = split_segments(&[ts(0), 1, ts(150)], 30.0, 3000);
        assert_eq!(segs, vec![(30.0, 33.0, vec![ts(0), 1, ts(150)])]);
        assert_eq!(adv, 3000);
        // No timestamp at all (max length hit): the whole window.
        let (segs, adv) = split_segments(&[1, 2], 0.0, 1234);
        assert_eq!(segs, vec![(0.0, 12.34, vec![1, 2])]);
        assert_eq!(adv, 1234);
    }
}
