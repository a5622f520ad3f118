//! Streaming latency in `voxtrace eval` (`src/eval/latency.rs`, `src/eval/stream.rs`): the
//! timed streaming decode of a Voxtral system records every step with the injected clock and
//! gives the offline transcript; `results.json` (per clip and corpus), the history row, the HTML
//! report and the terminal summary carry the figures for the streaming system and `null` for a
//! non-streaming one. No time is asserted: the checks are presence, units and the invariants
//! the definitions imply (p50 <= p95 <= max, first token <= final, finalization = final - audio,
//! word delays >= 0, corpus figures = the pure functions over the clips).

mod common;

use common::eval_corpus::{ok, results, show, voxtrace, write};
use common::{device, shared_audio, voxtral_fixture};
use voxtrace::eval::latency::{Summary, WordDelayBasis, clip_latency, latency_totals};
use voxtrace::eval::stream::{Clock, transcribe_streaming};
use voxtrace::models::voxtral::Voxtral;
use voxtrace::models::voxtral::pipeline::{prepare_offline, transcribe_offline};
use voxtrace::report::history;
use voxtrace::tokenizer::Tekken;

/// A clock that advances 1 ms at every reading: every timed interval is exactly one reading
/// apart, so each step must measure 1 ms.
struct Ticks(u64);

impl Clock for Ticks {
    fn now_s(&mut self) -> f64 {
        self.0 += 1;
        self.0 as f64 / 1000.0
    }
}

#[test]
fn streaming_decode_times_every_step_with_the_injected_clock() {
    let dev = device();
    let (model, tok) =
        Voxtral::open(&voxtral_fixture("mistral"), None, &dev).expect("tiny fixture loads");
    let tok: Tekken = tok;
    for clip in ["LJ002-0020.wav", "goforward.wav"] {
        let samples = voxtrace::audio::load_mono_16k(shared_audio().join(clip)).unwrap();
        let (text, trace) =
            transcribe_streaming(&model, &tok, &samples, 480.0, &mut Ticks(0), &dev).unwrap();
        // The transcript is the offline schedule's.
        let inp = prepare_offline(&samples, &tok, 480.0, &dev).unwrap();
        let (_, offline) = transcribe_offline(&model, &tok, &inp).unwrap();
        assert_eq!(text, offline.trim(), "{clip}");
        let joined: String = trace.steps.iter().map(|s| s.text.as_str()).collect();
        assert_eq!(
            joined.trim(),
            text,
            "{clip}: step texts make the transcript"
        );
        // Units and schedule: 80 ms steps; one step per 1280-sample chunk of audio (the first
        // 31 of the 32 left-padding tokens run in the setup) and 18 for the right padding.
        assert_eq!((trace.step_s, trace.delay_ms), (0.08, 480.0));
        assert_eq!(trace.audio_s, samples.len() as f64 / 16000.0);
        assert_eq!(
            trace.steps.len(),
            samples.len().div_ceil(1280) + 18,
            "{clip}"
        );
        assert_eq!(trace.setup_ms, 1.0);
        assert!(trace.steps.iter().all(|s| s.ms == 1.0), "{clip}: {trace:?}");
        assert!(trace.steps.windows(2).all(|w| w[0].audio_s <= w[1].audio_s));
        for (i, s) in trace.steps.iter().enumerate() {
            let want = (((i + 1) * 1280).min(samples.len())) as f64 / 16000.0;
            assert_eq!(s.audio_s, want, "{clip} step {i}");
        }
        // With 1 ms steps, far faster than real time, a step ends 1 ms after its audio, or
        // after the steps before it with the same audio (the last chunk's and the drain's).
        let l = clip_latency(&trace);
        assert!(!l.words.is_empty(), "{clip}: the tiny model emits text");
        for w in &l.words {
            let a = trace.steps[w.step].audio_s;
            let queued = trace.steps[..w.step]
                .iter()
                .filter(|s| s.audio_s == a)
                .count();
            assert_eq!(w.delay_ms, 1.0 + queued as f64, "{clip}: {w:?}");
        }
        assert_eq!(
            l.finalization_ms, 19.0,
            "{clip}: last chunk + 18 drain steps"
        );
        assert_eq!(l.compute_ms, 1.0 + trace.steps.len() as f64);
    }
}

fn check_summary(s: &Summary, what: &str) {
    assert!(s.n > 0, "{what}");
    assert!(
        s.p50 <= s.p95 && s.p95 <= s.max && s.mean <= s.max,
        "{what}: {s:?}"
    );
    assert!([s.mean, s.p50, s.p95, s.max].iter().all(|x| x.is_finite()));
}

#[test]
fn eval_reports_streaming_latency_for_voxtral_and_null_for_others() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let clips = ["LJ002-0020", "goforward", "001"];
    let mut m = String::from("id\tfile\treference\n");
    for c in clips {
        m.push_str(&format!("{c}\t{c}.wav\tgo forward\n"));
    }
    write(&d.join("manifest.tsv"), &m);
    let model = format!("voxtral:{}", voxtral_fixture("mistral").display());
    let audio_root = shared_audio().display().to_string();
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "manifest.tsv",
            "--audio-root",
            &audio_root,
            "--system",
            &format!("tiny={model}"),
            "--system",
            "echo=cmd:test -f {audio} && echo go forward",
            "--run-id",
            "r",
        ],
    );
    ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("streaming (ms, p50/p95): first token"),
        "{}",
        show(&o)
    );
    assert_eq!(stdout.matches("streaming (ms").count(), 1, "{stdout}");
    let r = results(d, "r");
    let (tiny, echo) = (&r.systems[0], &r.systems[1]);
    // The non-streaming system: RTFx, no streaming figures.
    assert!(echo.totals.rtfx.is_some() && echo.totals.latency.is_none());
    for u in &echo.utterances {
        assert!(u.rtfx.is_some() && u.latency.is_none() && u.stream.is_none());
    }
    // The streaming system: every clip, figures consistent with their definitions.
    assert_eq!(tiny.totals.n_ok, clips.len());
    let mut n_steps = 0;
    for u in &tiny.utterances {
        let (t, l) = (u.stream.as_ref().unwrap(), u.latency.as_ref().unwrap());
        assert_eq!(l, &clip_latency(t), "{}: stored = recomputed", u.id);
        assert_eq!(t.audio_s, u.audio_s);
        let rtfx = u.audio_s / u.seconds.unwrap();
        assert!(
            (u.rtfx.unwrap() - rtfx).abs() <= 1e-12 * rtfx,
            "{:?} {rtfx}",
            u.rtfx
        );
        check_summary(l.step_ms.as_ref().unwrap(), "step_ms");
        assert!(
            t.steps
                .iter()
                .all(|s| s.ms >= 0.0 && s.audio_s <= t.audio_s)
        );
        n_steps += t.steps.len();
        let first = l.first_token_ms.expect("text emitted");
        assert!(first <= l.final_ms, "{}: {l:?}", u.id);
        assert!((l.finalization_ms - (l.final_ms - u.audio_s * 1000.0)).abs() < 2e-3);
        // The stream ends after the audio, with the right padding drained.
        assert!(l.finalization_ms > 0.0, "{l:?}");
        assert!(l.final_ms >= l.compute_ms.min(u.audio_s * 1000.0));
        let words: Vec<&str> = l.words.iter().map(|w| w.word.as_str()).collect();
        let hyp = u.hypothesis.as_deref().unwrap();
        assert_eq!(words, hyp.split_whitespace().collect::<Vec<_>>());
        for w in &l.words {
            // Out no earlier than the audio of the step that emitted it.
            assert!(w.delay_ms >= 0.0 && w.emitted_ms <= l.final_ms, "{w:?}");
            assert_eq!(w.audio_s, t.steps[w.step].audio_s);
        }
        assert_eq!(l.word_delay_basis, WordDelayBasis::StepAudioPosition);
    }
    let lt = tiny.totals.latency.as_ref().expect("corpus latency");
    assert_eq!(
        Some(lt),
        latency_totals(
            tiny.utterances
                .iter()
                .map(|u| (u.stream.as_ref().unwrap(), u.latency.as_ref().unwrap()))
        )
        .as_ref()
    );
    assert_eq!((lt.n_clips, lt.delay_ms), (clips.len(), 480.0));
    assert_eq!(lt.step_ms.unwrap().n, n_steps);
    for (s, what) in [
        (lt.first_token_ms, "first token"),
        (lt.finalization_ms, "finalization"),
        (lt.step_ms, "step"),
        (lt.word_delay_ms, "word delay"),
    ] {
        check_summary(&s.unwrap(), what);
    }
    // History row and report.
    let h = history::read(&d.join("reports/history.jsonl")).unwrap();
    let fig = h[0].systems["tiny"].latency.as_ref().expect("tracked");
    assert_eq!(fig.step_ms_p95, lt.step_ms.map(|s| s.p95));
    assert_eq!(fig.first_token_ms_p50, lt.first_token_ms.map(|s| s.p50));
    assert!(h[0].systems["echo"].latency.is_none());
    let html = std::fs::read_to_string(d.join("reports/r/report.html")).unwrap();
    assert!(html.contains("Streaming latency"), "report section");
    let p50 = format!("{:.1}", lt.first_token_ms.unwrap().p50);
    assert!(html.contains(&p50), "report shows first-token p50 {p50}");
    assert!(html.contains("id=\"latency-chart-"), "report chart");
}

/// With reference word end times (`word_end_s` column) every correctly emitted word gets the
/// field's delay, emission time minus the reference word's end, in `results.json`, the corpus
/// figures, the history row and the terminal line; a malformed column stops the run naming the
/// manifest and line.
#[test]
fn reference_word_times_give_the_fields_word_delay() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let model = format!("tiny=voxtral:{}", voxtral_fixture("mistral").display());
    let audio_root = shared_audio().display().to_string();
    let run = |id: &str| {
        voxtrace(
            d,
            &[
                "eval",
                "--manifest",
                "manifest.tsv",
                "--audio-root",
                &audio_root,
                "--system",
                &model,
                "--run-id",
                id,
            ],
        )
    };
    write(
        &d.join("manifest.tsv"),
        "id\tfile\treference\njfk\tjfk.wav\tgo forward\n",
    );
    ok(&run("plain"));
    let plain = results(d, "plain");
    let u = &plain.systems[0].utterances[0];
    assert!(
        u.latency
            .as_ref()
            .unwrap()
            .reference_word_delay_ms
            .is_none()
    );
    assert!(
        plain.systems[0]
            .totals
            .latency
            .as_ref()
            .unwrap()
            .reference_word_delay_ms
            .is_none()
    );
    // The model's own words as the reference, ending every 0.1 s: all of them correct.
    let words: Vec<&str> = u
        .hypothesis
        .as_deref()
        .unwrap()
        .split_whitespace()
        .collect();
    assert!(words.len() >= 2, "{words:?}");
    let ends: Vec<String> = (1..=words.len())
        .map(|i| format!("{:.1}", i as f64 / 10.0))
        .collect();
    write(
        &d.join("manifest.tsv"),
        &format!(
            "id\tfile\treference\tword_end_s\njfk\tjfk.wav\t{}\t{}\n",
            words.join(" "),
            ends.join(" ")
        ),
    );
    let o = run("timed");
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stdout).contains("word delay vs reference word ends"));
    let timed = results(d, "timed");
    let l = timed.systems[0].utterances[0].latency.as_ref().unwrap();
    assert_eq!(l.words.len(), words.len());
    for (i, w) in l.words.iter().enumerate() {
        let end = (i + 1) as f64 / 10.0;
        assert_eq!(w.ref_end_s, Some(end), "{w:?}");
        let want = w.emitted_ms - end * 1000.0;
        assert!((w.ref_delay_ms.unwrap() - want).abs() < 1.5e-3, "{w:?}");
    }
    let s = l.reference_word_delay_ms.unwrap();
    assert_eq!(s.n, words.len());
    assert!(s.p50 <= s.p95 && s.p95 <= s.max);
    let t = timed.systems[0].totals.latency.as_ref().unwrap();
    assert_eq!(t.reference_word_delay_ms, Some(s));
    let h = history::read(&d.join("reports/history.jsonl")).unwrap();
    let fig = h[1].systems["tiny"].latency.as_ref().unwrap();
    assert_eq!(fig.reference_word_delay_ms_p50, Some(s.p50));
    // One end time short: refused before anything runs.
    write(
        &d.join("manifest.tsv"),
        &format!(
            "id\tfile\treference\tword_end_s\njfk\tjfk.wav\t{}\t{}\n",
            words.join(" "),
            ends[1..].join(" ")
        ),
    );
    let o = run("bad");
    assert!(!o.status.success(), "{}", show(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("manifest.tsv") && err.contains("line 2: word_end_s:"),
        "{err}"
    );
    assert!(!d.join("reports/bad/results.json").exists());
}
