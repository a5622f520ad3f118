//! Streaming latency of a system that decodes in steps (Voxtral Realtime: one 80 ms audio token
//! per step): what a live listener would see, computed from the step times measured during the
//! run ([`StreamTrace`]) by pure functions, so every figure is reproducible from `results.json`
//! and unit-testable on a synthetic timeline.
//!
//! The figures the field reports for streaming ASR (`../shared/docs/serving-and-scale.md`,
//! "Streaming metrics"; Open ASR Leaderboard for RTFx):
//!
//! * **Replay at real time.** The eval feeds a file as fast as the model goes; a live stream
//!   receives its audio at 1x. [`replay`] turns the measured step times into the times a live
//!   stream would have produced each step's output: the session starts with the audio (stream
//!   time 0) and first runs its setup (the left-padding steps), then step `i` starts when its
//!   audio has arrived and the previous step is done, `start_i = max(audio_i, end_{i-1})`, and
//!   ends `ms_i` later. A machine slower than real time falls behind and the backlog shows in
//!   every figure below; the eval itself never waits for the audio.
//! * **First-token latency** (`first_token_ms`): stream time, from the start of the audio, at
//!   which the first text (a non-blank character) is out.
//! * **Finalization delay** (`finalization_ms`): from the end of the audio to the final
//!   transcript, i.e. to the end of the stream's last step (the drain of the right padding after
//!   the audio, `transcription.done` in vLLM's realtime API). Negative when the model ended the
//!   stream (EOS) before the audio did.
//! * **Per-step time** (`step_ms` p50/p95): compute time of one audio step (encoder token,
//!   adapter, decoder step), every step after the setup, end-of-audio drain included (its
//!   padding tokens are encoded in one batch, timed with the drain's first step).
//! * **Per-word emission delay** (`word_delay_ms`): a word is emitted at the step whose text
//!   completes it (its last character is out: partial-result emission, as FastEmit's PR
//!   latency); its emission time is that step's end in the replay. The field's definition
//!   subtracts the word's end time in a reference (forced) alignment, "where word times are
//!   known": `reference_word_delay_ms`, for manifests with a [`WORD_END_COLUMN`] column, over
//!   the emitted words aligned to a reference word as correct. Without word times (none of the
//!   corpora here has them) there is `word_delay_ms`, always given: the delay against the
//!   audio position of the step that emitted the word ([`WordDelayBasis::StepAudioPosition`]),
//!   how long after the audio that step consumed had arrived the word was out. That is the
//!   port's own lag (compute and backlog); it leaves out the model's transcription delay,
//!   recorded beside it as `delay_ms` (480 ms for the release).
//! * **RTFx** (audio seconds / compute seconds) is the run's wall-clock figure of every system
//!   ([`super::results::Totals::rtfx`]); a non-streaming system (Whisper, `cmd:`, `http:`) has
//!   it and no streaming figures (`null`).
//!
//! Percentiles are numpy's default (linear interpolation between closest ranks); corpus
//! figures pool the clips: first-token and finalization over clips, step times over every step
//! of every clip, word delays over every emitted word.

use serde::{Deserialize, Serialize};

/// One audio step of a streaming decode as the run measured it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamStep {
    /// Seconds of the clip's audio the stream had received when the step could run (the step's
    /// input was there); the clip's duration for the steps of the end-of-audio drain.
    pub audio_s: f64,
    /// Compute time of the step, ms (measured).
    pub ms: f64,
    /// Text the step emitted (empty for none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub text: String,
}

/// The measured timeline of one clip's streaming decode: what [`clip_latency`] needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamTrace {
    /// Audio per step, seconds (0.08 for Voxtral Realtime).
    pub step_s: f64,
    /// The model's configured transcription delay, ms (480 for the release).
    pub delay_ms: f64,
    /// Clip duration, seconds.
    pub audio_s: f64,
    /// Compute time of the session start (prompt and left-padding steps, before any audio), ms.
    pub setup_ms: f64,
    /// Every step after the setup, in order.
    pub steps: Vec<StreamStep>,
}

/// What `word_delay_ms` is measured against (named in `results.json` so the figure is never
/// read as the reference-based one, `reference_word_delay_ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordDelayBasis {
    /// The audio position of the step that emitted the word.
    StepAudioPosition,
}

/// Manifest column (voxtrace TSV) with the reference's word end times: one number of seconds
/// per whitespace-separated word of `reference`, separated by spaces (e.g. from a forced
/// alignment); an empty cell gives none. When present, streaming systems also get
/// `reference_word_delay_ms`.
pub const WORD_END_COLUMN: &str = "word_end_s";

/// One emitted word.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WordEmission {
    /// The word as emitted (raw text, whitespace-separated).
    pub word: String,
    /// Index of the emitting step in [`StreamTrace::steps`].
    pub step: usize,
    /// That step's audio position, seconds ([`StreamStep::audio_s`]).
    pub audio_s: f64,
    /// Stream time the word was out, ms from the start of the audio ([`replay`]).
    pub emitted_ms: f64,
    /// `emitted_ms` minus the step's audio position, ms ([`WordDelayBasis::StepAudioPosition`]).
    pub delay_ms: f64,
    /// End time of the reference word this word was aligned to as correct, seconds (with
    /// [`WORD_END_COLUMN`] only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_end_s: Option<f64>,
    /// `emitted_ms` minus `1000 ref_end_s`: the field's per-word emission delay, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ref_delay_ms: Option<f64>,
}

/// Count, mean and percentiles of a set of values (ms).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of values.
    pub n: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median (numpy `percentile(x, 50)`).
    pub p50: f64,
    /// 95th percentile (numpy `percentile(x, 95)`).
    pub p95: f64,
    /// Largest value.
    pub max: f64,
}

/// Streaming figures of one clip (all times in ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClipLatency {
    /// Stream time of the first text, from the start of the audio; `None` when no text came.
    pub first_token_ms: Option<f64>,
    /// Stream time of the final transcript (end of the last step), from the start of the audio.
    pub final_ms: f64,
    /// `final_ms` minus the audio duration: end of audio to final text.
    pub finalization_ms: f64,
    /// Compute time of the whole stream (setup + steps).
    pub compute_ms: f64,
    /// Step times; `None` for a stream without steps.
    pub step_ms: Option<Summary>,
    /// Per-word emission delays; `None` when no word was emitted.
    pub word_delay_ms: Option<Summary>,
    /// What `word_delay_ms` is measured against.
    pub word_delay_basis: WordDelayBasis,
    /// Per-word emission delays against the reference's word end times, over the words
    /// aligned to a reference word as correct; `None` without word times (or no such word).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_word_delay_ms: Option<Summary>,
    /// Every emitted word, in order.
    pub words: Vec<WordEmission>,
}

/// Streaming figures of a system over the corpus (clips with a trace), all times in ms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatencyTotals {
    /// Clips with a streaming trace.
    pub n_clips: usize,
    /// The configured transcription delay, ms (of the first clip; the same for a system).
    pub delay_ms: f64,
    /// First-token latency over clips that emitted text.
    pub first_token_ms: Option<Summary>,
    /// Finalization delay over clips.
    pub finalization_ms: Option<Summary>,
    /// Step time over every step of every clip.
    pub step_ms: Option<Summary>,
    /// Per-word emission delay over every emitted word.
    pub word_delay_ms: Option<Summary>,
    /// What `word_delay_ms` is measured against.
    pub word_delay_basis: WordDelayBasis,
    /// Per-word emission delay against reference word end times, over every word that has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_word_delay_ms: Option<Summary>,
}

/// `ms` rounded to whole microseconds (the figures are measured to the microsecond; this drops
/// the float noise of sums and differences from `results.json`).
pub fn round_us(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1000.0
}

/// `p`-th percentile (0..=100) of `sorted` (ascending, non-empty), numpy's default linear
/// interpolation: `x[lo] + (h - lo) (x[hi] - x[lo])` with `h = (n - 1) p / 100`.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * p / 100.0;
    let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// [`Summary`] of `values` (figures rounded with [`round_us`]); `None` when empty. Non-finite
/// values are dropped.
pub fn summarize(values: impl IntoIterator<Item = f64>) -> Option<Summary> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(Summary {
        n: v.len(),
        mean: round_us(v.iter().sum::<f64>() / v.len() as f64),
        p50: round_us(percentile(&v, 50.0)),
        p95: round_us(percentile(&v, 95.0)),
        max: round_us(v[v.len() - 1]),
    })
}

/// End time of every step of `trace` in a live stream (ms from the start of the audio; see
/// the module docs): the setup runs from 0, then `end_i = max(1000 audio_s_i, end_{i-1}) + ms_i`.
pub fn replay(trace: &StreamTrace) -> Vec<f64> {
    let mut t = trace.setup_ms;
    trace
        .steps
        .iter()
        .map(|s| {
            t = t.max(s.audio_s * 1000.0) + s.ms;
            t
        })
        .collect()
}

/// The words of the steps' concatenated text, each with the step whose text completes it, its
/// emission time (`ends[step]`, from [`replay`]) and its delay against that step's audio
/// position ([`WordDelayBasis::StepAudioPosition`]).
pub fn word_emissions(steps: &[StreamStep], ends: &[f64]) -> Vec<WordEmission> {
    let mut out = Vec::new();
    let mut word = String::new();
    // A word is complete at the last step that added one of its characters.
    let mut last_step = 0usize;
    let push = |word: &mut String, step: usize, out: &mut Vec<WordEmission>| {
        if !word.is_empty() {
            let s = &steps[step];
            out.push(WordEmission {
                word: std::mem::take(word),
                step,
                audio_s: s.audio_s,
                emitted_ms: round_us(ends[step]),
                delay_ms: round_us(ends[step] - s.audio_s * 1000.0),
                ref_end_s: None,
                ref_delay_ms: None,
            });
        }
    };
    for (i, s) in steps.iter().enumerate() {
        for c in s.text.chars() {
            if c.is_whitespace() {
                push(&mut word, last_step, &mut out);
            } else {
                word.push(c);
                last_step = i;
            }
        }
    }
    push(&mut word, last_step, &mut out);
    out
}

/// The streaming figures of one clip from its measured trace.
pub fn clip_latency(trace: &StreamTrace) -> ClipLatency {
    let ends = replay(trace);
    let first_token_ms = trace
        .steps
        .iter()
        .zip(&ends)
        .find(|(s, _)| s.text.chars().any(|c| !c.is_whitespace()))
        .map(|(_, &e)| round_us(e));
    let final_ms = ends.last().copied().unwrap_or(trace.setup_ms);
    let words = word_emissions(&trace.steps, &ends);
    ClipLatency {
        first_token_ms,
        final_ms: round_us(final_ms),
        finalization_ms: round_us(final_ms - trace.audio_s * 1000.0),
        compute_ms: round_us(trace.setup_ms + trace.steps.iter().map(|s| s.ms).sum::<f64>()),
        step_ms: summarize(trace.steps.iter().map(|s| s.ms)),
        word_delay_ms: summarize(words.iter().map(|w| w.delay_ms)),
        word_delay_basis: WordDelayBasis::StepAudioPosition,
        reference_word_delay_ms: None,
        words,
    }
}

/// [`clip_latency`], plus the delays against the reference's word end times when `reference`
/// gives them (the reference text and one end time per word, [`parse_word_ends`]; see
/// [`reference_word_delays`]).
pub fn clip_latency_with_reference(
    trace: &StreamTrace,
    reference: Option<(&str, &[f64])>,
) -> ClipLatency {
    let mut l = clip_latency(trace);
    if let Some((text, ends)) = reference {
        reference_word_delays(&mut l.words, text, ends);
        l.reference_word_delay_ms = summarize(l.words.iter().filter_map(|w| w.ref_delay_ms));
    }
    l
}

/// Parse a [`WORD_END_COLUMN`] value: one end time per whitespace-separated word of
/// `reference`, seconds, finite, >= 0 and non-decreasing.
///
/// # Errors
/// A message naming the problem (count, the bad value and its position).
pub fn parse_word_ends(value: &str, reference: &str) -> Result<Vec<f64>, String> {
    let n = reference.split_whitespace().count();
    let mut out: Vec<f64> = Vec::with_capacity(n.min(1 << 16));
    for (i, v) in value.split_whitespace().enumerate() {
        let x: f64 = v
            .parse()
            .map_err(|_| format!("word {}: {v:?} is not a number of seconds", i + 1))?;
        if !x.is_finite() || x < 0.0 {
            return Err(format!("word {}: {v:?} is not a time >= 0", i + 1));
        }
        if out.last().is_some_and(|&p| x < p) {
            return Err(format!(
                "word {}: {v} is before the previous end time",
                i + 1
            ));
        }
        out.push(x);
    }
    if out.len() != n {
        return Err(format!(
            "{} end times for the {n} words of the reference",
            out.len()
        ));
    }
    Ok(out)
}

/// How emitted and reference words are compared: lowercase letters and digits only.
fn word_key(w: &str) -> String {
    w.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Set `ref_end_s` and `ref_delay_ms` of the `words` that align as correct to a word of
/// `reference` (jiwer's word alignment on lowercase letters and digits; substituted and
/// inserted words get none): delay = emission time - the reference word's end time
/// (`ends_s[i]` for the `i`-th whitespace-separated word of `reference`).
pub fn reference_word_delays(words: &mut [WordEmission], reference: &str, ends_s: &[f64]) {
    let r: Vec<String> = reference.split_whitespace().map(word_key).collect();
    let h: Vec<String> = words.iter().map(|w| word_key(&w.word)).collect();
    for op in super::align::align(&r, &h, super::align::TieBreak::Jiwer) {
        if let (super::align::OpKind::Correct, Some(ri), Some(hi)) =
            (op.kind, op.ref_index, op.hyp_index)
            && let Some(&end) = ends_s.get(ri)
        {
            let w = &mut words[hi];
            w.ref_end_s = Some(end);
            w.ref_delay_ms = Some(round_us(w.emitted_ms - end * 1000.0));
        }
    }
}

/// Corpus figures of a system from its clips' traces (with their [`clip_latency`]); `None`
/// when no clip has a trace (a non-streaming system).
pub fn latency_totals<'a>(
    clips: impl IntoIterator<Item = (&'a StreamTrace, &'a ClipLatency)>,
) -> Option<LatencyTotals> {
    let clips: Vec<_> = clips.into_iter().collect();
    let (first, _) = clips.first()?;
    Some(LatencyTotals {
        n_clips: clips.len(),
        delay_ms: first.delay_ms,
        first_token_ms: summarize(clips.iter().filter_map(|(_, l)| l.first_token_ms)),
        finalization_ms: summarize(clips.iter().map(|(_, l)| l.finalization_ms)),
        step_ms: summarize(clips.iter().flat_map(|(t, _)| t.steps.iter().map(|s| s.ms))),
        word_delay_ms: summarize(
            clips
                .iter()
                .flat_map(|(_, l)| l.words.iter().map(|w| w.delay_ms)),
        ),
        word_delay_basis: WordDelayBasis::StepAudioPosition,
        reference_word_delay_ms: summarize(
            clips
                .iter()
                .flat_map(|(_, l)| l.words.iter().filter_map(|w| w.ref_delay_ms)),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(audio_s: f64, ms: f64, text: &str) -> StreamStep {
        StreamStep {
            audio_s,
            ms,
            text: text.into(),
        }
    }

    /// A 0.24 s clip in 80 ms steps and a 2-step drain; faster than real time.
    fn fast() -> StreamTrace {
        StreamTrace {
            step_s: 0.08,
            delay_ms: 160.0,
            audio_s: 0.24,
            setup_ms: 30.0,
            steps: vec![
                step(0.08, 10.0, ""),
                step(0.16, 20.0, " he"),
                step(0.24, 10.0, "llo"),
                step(0.24, 5.0, " big"),
                step(0.24, 5.0, " world"),
            ],
        }
    }

    #[test]
    fn replay_waits_for_the_audio_and_for_the_previous_step() {
        // Faster than real time: each step starts when its audio is there.
        assert_eq!(replay(&fast()), [90.0, 180.0, 250.0, 255.0, 260.0]);
        // Slower: a backlog builds up (step 2 starts at 100, not 80).
        let slow = StreamTrace {
            setup_ms: 0.0,
            steps: vec![
                step(0.08, 100.0, ""),
                step(0.16, 100.0, ""),
                step(0.16, 1.0, ""),
            ],
            ..fast()
        };
        assert_eq!(replay(&slow), [180.0, 280.0, 281.0]);
        // Setup longer than the first audio step delays it.
        let late = StreamTrace {
            setup_ms: 500.0,
            steps: vec![step(0.08, 10.0, "")],
            ..fast()
        };
        assert_eq!(replay(&late), [510.0]);
    }

    #[test]
    fn words_are_emitted_at_the_step_that_completes_them() {
        let t = fast();
        let ends = replay(&t);
        let w = word_emissions(&t.steps, &ends);
        let got: Vec<(&str, usize, f64, f64)> = w
            .iter()
            .map(|w| (w.word.as_str(), w.step, w.emitted_ms, w.delay_ms))
            .collect();
        // "hello" spans steps 1-2: complete at step 2 (ends 250, audio 240 ms).
        assert_eq!(
            got,
            [
                ("hello", 2, 250.0, 10.0),
                ("big", 3, 255.0, 15.0),
                ("world", 4, 260.0, 20.0)
            ]
        );
        // A word whose text ends at a step with a trailing space: still that step.
        let steps = vec![
            step(0.08, 1.0, "a "),
            step(0.16, 1.0, ""),
            step(0.24, 1.0, "b"),
        ];
        let t = StreamTrace {
            setup_ms: 0.0,
            steps,
            ..fast()
        };
        let w = word_emissions(&t.steps, &replay(&t));
        assert_eq!(
            w.iter()
                .map(|w| (w.word.as_str(), w.step))
                .collect::<Vec<_>>(),
            [("a", 0), ("b", 2)]
        );
        assert!(word_emissions(&[], &[]).is_empty());
    }

    #[test]
    fn clip_figures_of_a_synthetic_timeline() {
        let l = clip_latency(&fast());
        assert_eq!(l.first_token_ms, Some(180.0));
        assert_eq!(l.final_ms, 260.0);
        assert_eq!(l.finalization_ms, 20.0);
        assert_eq!(l.compute_ms, 80.0);
        let s = l.step_ms.unwrap();
        // Steps 10, 20, 10, 5, 5 ms: sorted 5 5 10 10 20.
        assert_eq!((s.n, s.mean, s.p50, s.max), (5, 10.0, 10.0, 20.0));
        assert_eq!(s.p95, 18.0);
        let w = l.word_delay_ms.unwrap();
        assert_eq!((w.n, w.p50, w.max), (3, 15.0, 20.0));
        assert_eq!(l.word_delay_basis, WordDelayBasis::StepAudioPosition);
        // Nothing emitted: no first token, no words; the stream still ends.
        let mut quiet = fast();
        for s in &mut quiet.steps {
            s.text = " ".into();
        }
        let l = clip_latency(&quiet);
        assert_eq!((l.first_token_ms, l.word_delay_ms), (None, None));
        assert!(l.words.is_empty());
        // EOS before the end of the audio: finalization is negative, not clamped.
        let early = StreamTrace {
            audio_s: 10.0,
            ..fast()
        };
        assert!(clip_latency(&early).finalization_ms < 0.0);
    }

    #[test]
    fn reference_delays_go_to_correct_words_only() {
        let t = fast();
        // Emitted "hello big world" (ends 250, 255, 260 ms) against "Hello, small world."
        let refs = "Hello, small world.";
        let ends = parse_word_ends("0.2 0.21 0.245", refs).unwrap();
        let l = clip_latency_with_reference(&t, Some((refs, &ends)));
        let got: Vec<(Option<f64>, Option<f64>)> = l
            .words
            .iter()
            .map(|w| (w.ref_end_s, w.ref_delay_ms))
            .collect();
        assert_eq!(
            got,
            [
                (Some(0.2), Some(50.0)),
                (None, None),
                (Some(0.245), Some(15.0))
            ]
        );
        let s = l.reference_word_delay_ms.unwrap();
        assert_eq!((s.n, s.p50, s.max), (2, 32.5, 50.0));
        // The step-based figure is unchanged.
        assert_eq!(l.word_delay_ms, clip_latency(&t).word_delay_ms);
        let tot = latency_totals([(&t, &l)]).unwrap();
        assert_eq!(tot.reference_word_delay_ms.unwrap().n, 2);
        // No word times: no reference figure.
        assert_eq!(clip_latency_with_reference(&t, None), clip_latency(&t));
    }

    #[test]
    fn word_ends_are_checked() {
        assert_eq!(parse_word_ends(" 0.5  1 ", "a b"), Ok(vec![0.5, 1.0]));
        for (v, why) in [
            ("0.5", "1 end times for the 2 words"),
            ("0.5 1 2", "3 end times"),
            ("0.5 x", "word 2: \"x\" is not a number"),
            ("-1 2", "word 1: \"-1\" is not a time"),
            ("NaN 2", "not a time"),
            ("inf 2", "not a time"),
            ("2 1", "word 2: 1 is before the previous"),
        ] {
            let e = parse_word_ends(v, "a b").unwrap_err();
            assert!(e.contains(why), "{v}: {e}");
        }
    }

    #[test]
    fn percentiles_follow_numpy() {
        // numpy.percentile([1, 2, 3, 4], [50, 95]) = [2.5, 3.85]
        let s = summarize([4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(s.p50, 2.5);
        assert_eq!(s.p95, 3.85);
        let one = summarize([7.0]).unwrap();
        assert_eq!((one.p50, one.p95, one.mean), (7.0, 7.0, 7.0));
        assert_eq!(summarize([]), None);
        assert_eq!(summarize([f64::NAN]), None);
    }

    #[test]
    fn corpus_figures_pool_clips() {
        let a = fast();
        let b = StreamTrace {
            steps: vec![step(0.08, 40.0, " x")],
            audio_s: 0.08,
            ..fast()
        };
        let (la, lb) = (clip_latency(&a), clip_latency(&b));
        let t = latency_totals([(&a, &la), (&b, &lb)]).unwrap();
        assert_eq!(t.n_clips, 2);
        assert_eq!(t.step_ms.unwrap().n, 6);
        assert_eq!(t.word_delay_ms.unwrap().n, 4);
        assert_eq!(t.first_token_ms.unwrap().n, 2);
        // b: step ends at max(30, 80) + 40 = 120.
        assert_eq!(lb.first_token_ms, Some(120.0));
        assert_eq!(t.first_token_ms.unwrap().p50, 150.0);
        assert_eq!(latency_totals([]), None);
    }
}
