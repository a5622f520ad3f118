//! The self-contained HTML report of an evaluation run (`reports/<run-id>/report.html`).
//!
//! One file, no network: inline CSS, a few lines of inline JS (table sorting, "errors only"
//! filter) and an inline SVG WER trend chart drawn from `history.jsonl`. Rendered with minijinja
//! under HTML autoescaping, so every string coming from a manifest, a transcript or a model
//! output is escaped (`<` `>` `&` `"` `'`). Layout after sclite's `pra` (aligned REF/HYP with
//! S/D/I marks) and `dtl` (confusion pairs, insertions, deletions) reports.

use std::path::Path;

use serde::Serialize;

use super::ReportError;
use super::check::CheckOutcome;
use super::history::HistoryRow;
use crate::eval::align::OpKind;
use crate::eval::results::{RunResults, UttStatus};

const TEMPLATE: &str = include_str!("report.html.j2");

/// Colours of the systems in the chart and legends, in order.
pub const PALETTE: [&str; 8] = [
    "#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#4b5563",
];

#[derive(Serialize)]
struct Word {
    class: &'static str,
    r: String,
    h: String,
}

#[derive(Serialize)]
struct UttView {
    id: String,
    status: &'static str,
    error: Option<String>,
    audio_s: String,
    audio_sort: f64,
    wer: String,
    wer_sort: f64,
    cer: String,
    s: u64,
    d: u64,
    i: u64,
    n: u64,
    rtf: String,
    /// Streaming figures of the clip (ms; "–" when none).
    first_token: String,
    finalization: String,
    has_errors: bool,
    reference: String,
    hypothesis: String,
    words: Vec<Word>,
}

#[derive(Serialize)]
struct Pair {
    a: String,
    b: String,
    count: u64,
}

#[derive(Serialize)]
struct SysView {
    name: String,
    anchor: String,
    color: &'static str,
    spec: String,
    kind: String,
    model_path: String,
    weights_file: String,
    weights_sha256: String,
    backend: String,
    wer: String,
    raw_wer: String,
    cer: String,
    ser: String,
    rtf: String,
    rtfx: String,
    audio_s: String,
    processing_s: String,
    n_clips: usize,
    n_scored: usize,
    n_ok: usize,
    n_failed: usize,
    n_missing: usize,
    s: u64,
    d: u64,
    i: u64,
    c: u64,
    n: u64,
    bar: f64,
    agreement: Option<AgreeView>,
    /// Some other system is scored against this one.
    is_reference: bool,
    confusions: Vec<Pair>,
    insertions: Vec<Pair>,
    deletions: Vec<Pair>,
    utts: Vec<UttView>,
    n_error_utts: usize,
    /// Streaming figures of a streaming system.
    latency: Option<LatView>,
}

#[derive(Serialize)]
struct LatRow {
    what: &'static str,
    n: usize,
    p50: String,
    p95: String,
    mean: String,
    max: String,
}

#[derive(Serialize)]
struct Dot {
    x: f64,
    y: f64,
    title: String,
}

#[derive(Serialize)]
struct LatChart {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    yticks: Vec<Tick>,
    xticks: Vec<Tick>,
    first: Vec<Dot>,
    last: Vec<Dot>,
}

#[derive(Serialize)]
struct LatView {
    n_clips: usize,
    delay_ms: String,
    rows: Vec<LatRow>,
    chart: LatChart,
}

#[derive(Serialize)]
struct AgreeView {
    reference_system: String,
    n: usize,
    word_agreement: String,
    exact: String,
    raw_exact: String,
    s: u64,
    d: u64,
    i: u64,
}

#[derive(Serialize)]
struct Point {
    x: f64,
    y: f64,
    title: String,
}

#[derive(Serialize)]
struct Series {
    name: String,
    color: &'static str,
    points: String,
    dots: Vec<Point>,
}

#[derive(Serialize)]
struct Tick {
    pos: f64,
    label: String,
}

#[derive(Serialize)]
struct Chart {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    yticks: Vec<Tick>,
    xticks: Vec<Tick>,
    series: Vec<Series>,
    n_runs: usize,
}

fn pct(x: f64) -> String {
    if x.is_finite() {
        format!("{:.2}%", x * 100.0)
    } else {
        "n/a".into()
    }
}

fn opt(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.digits$}"),
        _ => "–".into(),
    }
}

/// "Nice" tick step for a range of `span` split in about 5 (1, 2 or 5 times a power of 10).
fn tick_step(span: f64) -> f64 {
    let raw = (span / 5.0).max(1e-9);
    let p = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * p)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * p)
}

/// The streaming view of a system: corpus figures and a chart of each clip's first-token
/// latency and finalization delay against its duration.
fn latency_view(s: &crate::eval::results::SystemResult) -> Option<LatView> {
    use crate::eval::latency::Summary;
    let l = s.totals.latency.as_ref()?;
    let row = |what, x: Option<Summary>| {
        let f = |v: f64| format!("{v:.1}");
        LatRow {
            what,
            n: x.map_or(0, |x| x.n),
            p50: x.map_or("–".into(), |x| f(x.p50)),
            p95: x.map_or("–".into(), |x| f(x.p95)),
            mean: x.map_or("–".into(), |x| f(x.mean)),
            max: x.map_or("–".into(), |x| f(x.max)),
        }
    };
    let mut rows = vec![
        row(
            "first-token latency (ms from the start of the audio)",
            l.first_token_ms,
        ),
        row(
            "finalization delay (ms from the end of the audio to the final text)",
            l.finalization_ms,
        ),
        row("per-step time (ms of compute per 80 ms step)", l.step_ms),
        row(
            "per-word emission delay (ms after the emitting step's audio)",
            l.word_delay_ms,
        ),
    ];
    if l.reference_word_delay_ms.is_some() {
        rows.push(row(
            "per-word emission delay (ms after the reference word's end; correct words)",
            l.reference_word_delay_ms,
        ));
    }
    let pts: Vec<(&str, f64, Option<f64>, f64)> = s
        .utterances
        .iter()
        .filter_map(|u| {
            u.latency.as_ref().map(|c| {
                (
                    u.id.as_str(),
                    u.audio_s,
                    c.first_token_ms,
                    c.finalization_ms,
                )
            })
        })
        .collect();
    let (width, height, left, right, top, bottom) = (680.0, 260.0, 56.0, 664.0, 12.0, 224.0);
    let xmax = pts.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-3);
    let vals = pts.iter().flat_map(|p| p.2.into_iter().chain([p.3]));
    let (lo, hi) = vals.fold((0.0f64, 1.0f64), |(a, b), v| (a.min(v), b.max(v)));
    let ystep = tick_step(hi - lo);
    let (ylo, yhi) = ((lo / ystep).floor() * ystep, (hi / ystep).ceil() * ystep);
    let sx = |x: f64| left + x / xmax * (right - left);
    let sy = |y: f64| bottom - (y - ylo) / (yhi - ylo).max(1e-9) * (bottom - top);
    let yticks = (0..=((yhi - ylo) / ystep).round() as usize)
        .map(|i| ylo + i as f64 * ystep)
        .map(|v| Tick {
            pos: sy(v),
            label: format!("{v:.0}"),
        })
        .collect();
    let xstep = tick_step(xmax);
    let xticks = (0..=(xmax / xstep).floor() as usize)
        .map(|i| i as f64 * xstep)
        .map(|v| Tick {
            pos: sx(v),
            label: format!("{v} s"),
        })
        .collect();
    let dot = |id: &str, a: f64, v: f64, what: &str| Dot {
        x: sx(a),
        y: sy(v),
        title: format!("{id} ({a:.2} s): {what} {v:.1} ms"),
    };
    Some(LatView {
        n_clips: l.n_clips,
        delay_ms: format!("{:.0}", l.delay_ms),
        rows,
        chart: LatChart {
            width,
            height,
            left,
            right,
            top,
            bottom,
            yticks,
            xticks,
            first: pts
                .iter()
                .filter_map(|p| p.2.map(|v| dot(p.0, p.1, v, "first token")))
                .collect(),
            last: pts
                .iter()
                .map(|p| dot(p.0, p.1, p.3, "finalization"))
                .collect(),
        },
    })
}

/// Build the trend chart over the last `max_runs` history rows (one polyline per system).
fn chart(history: &[HistoryRow], systems: &[String], max_runs: usize) -> Chart {
    let rows = &history[history.len().saturating_sub(max_runs)..];
    let (width, height, left, right, top, bottom) = (1000.0, 280.0, 60.0, 150.0, 16.0, 56.0);
    let pw = width - left - right;
    let ph = height - top - bottom;
    let max = rows
        .iter()
        .flat_map(|r| r.systems.values().map(|s| s.wer))
        .filter(|w| w.is_finite())
        .fold(0.0f64, f64::max);
    // A "nice" upper bound: 1, 2 or 5 times a power of ten, at least 1%.
    let raw = (max * 1.1).max(0.01);
    let mag = 10f64.powf(raw.log10().floor());
    let ymax = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|v| *v >= raw)
        .unwrap_or(10.0 * mag);
    let n = rows.len();
    let x_of = |i: usize| {
        if n <= 1 {
            left + pw / 2.0
        } else {
            left + pw * i as f64 / (n - 1) as f64
        }
    };
    let y_of = |w: f64| top + ph * (1.0 - (w / ymax).clamp(0.0, 1.0));
    let yticks = (0..=4)
        .map(|k| {
            let v = ymax * k as f64 / 4.0;
            Tick {
                pos: y_of(v),
                label: format!("{:.1}%", v * 100.0),
            }
        })
        .collect();
    let step = n.div_ceil(8).max(1);
    let xticks = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i + 1 == n)
        .map(|(i, r)| Tick {
            pos: x_of(i),
            // Default ids are `YYYYMMDDTHHMMSS.ffffffZ-xxxxxx`: label to the second.
            label: r
                .run_id
                .split('.')
                .next()
                .unwrap_or_default()
                .chars()
                .take(16)
                .collect(),
        })
        .collect();
    let series = systems
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let pts: Vec<(f64, f64, String)> = rows
                .iter()
                .enumerate()
                .filter_map(|(i, r)| {
                    // A run that scored nothing for a system has no WER to plot (its 0 is 0 over
                    // no words).
                    r.systems
                        .get(name)
                        .filter(|s| s.wer.is_finite() && s.n_scored > s.n_failed)
                        .map(|s| {
                            (
                                x_of(i),
                                y_of(s.wer),
                                format!(
                                    "{} · {} · WER {}{}",
                                    name,
                                    r.run_id,
                                    pct(s.wer),
                                    r.commit
                                        .as_deref()
                                        .map(|c| format!(" · {}", &c[..c.len().min(10)]))
                                        .unwrap_or_default()
                                ),
                            )
                        })
                })
                .collect();
            Series {
                name: name.clone(),
                color: PALETTE[k % PALETTE.len()],
                points: pts
                    .iter()
                    .map(|(x, y, _)| format!("{x:.1},{y:.1}"))
                    .collect::<Vec<_>>()
                    .join(" "),
                dots: pts
                    .into_iter()
                    .map(|(x, y, title)| Point { x, y, title })
                    .collect(),
            }
        })
        .collect();
    Chart {
        width,
        height,
        left,
        right: width - right,
        top,
        bottom: height - bottom,
        yticks,
        xticks,
        series,
        n_runs: n,
    }
}

fn anchor(name: &str) -> String {
    format!(
        "sys-{}",
        name.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>()
    )
}

/// Render the report page.
///
/// `history` are the rows of `history.jsonl` (for the trend chart; rows after this run are
/// ignored), `check` an `eval-check` outcome to show, if any.
///
/// # Errors
/// [`ReportError::Template`]: template errors (a bug), never the data.
pub fn render(
    run: &RunResults,
    history: &[HistoryRow],
    check: Option<&CheckOutcome>,
) -> Result<String, ReportError> {
    let max_wer = run
        .systems
        .iter()
        .map(|s| s.totals.wer)
        .filter(|w| w.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let systems: Vec<SysView> = run
        .systems
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let t = &s.totals;
            let utts: Vec<UttView> = s
                .utterances
                .iter()
                .map(|u| {
                    let c = u.counts.unwrap_or_default();
                    let words = u
                        .alignment
                        .iter()
                        .map(|w| Word {
                            class: match w.kind {
                                OpKind::Correct => "c",
                                OpKind::Substitution => "s",
                                OpKind::Deletion => "d",
                                OpKind::Insertion => "i",
                            },
                            r: w.reference.clone().unwrap_or_default(),
                            h: w.hypothesis.clone().unwrap_or_default(),
                        })
                        .collect();
                    UttView {
                        id: u.id.clone(),
                        status: match u.status {
                            UttStatus::Ok => "ok",
                            UttStatus::Failed => "failed",
                            UttStatus::Missing => "missing",
                        },
                        error: u.error.clone(),
                        audio_s: format!("{:.2}", u.audio_s),
                        audio_sort: u.audio_s,
                        wer: u.wer.map(pct).unwrap_or_else(|| "–".into()),
                        wer_sort: u.wer.unwrap_or(f64::INFINITY).min(1e9),
                        cer: u.cer.map(pct).unwrap_or_else(|| "–".into()),
                        s: c.substitutions,
                        d: c.deletions,
                        i: c.insertions,
                        n: c.ref_len(),
                        rtf: opt(u.rtf, 3),
                        first_token: opt(u.latency.as_ref().and_then(|l| l.first_token_ms), 1),
                        finalization: opt(u.latency.as_ref().map(|l| l.finalization_ms), 1),
                        has_errors: u.status != UttStatus::Ok || c.errors() > 0,
                        reference: u.reference.clone(),
                        hypothesis: u.hypothesis.clone().unwrap_or_default(),
                        words,
                    }
                })
                .collect();
            SysView {
                is_reference: run.reference_pairs.iter().any(|(_, r)| r == &s.name),
                name: s.name.clone(),
                anchor: anchor(&s.name),
                color: PALETTE[k % PALETTE.len()],
                spec: s.spec.clone(),
                kind: s.info.kind.clone(),
                model_path: s.info.model_path.clone().unwrap_or_default(),
                weights_file: s.info.weights_file.clone().unwrap_or_default(),
                weights_sha256: s.info.weights_sha256.clone().unwrap_or_default(),
                backend: s.info.backend.clone(),
                wer: pct(t.wer),
                raw_wer: pct(t.raw_wer),
                cer: pct(t.cer),
                ser: pct(t.ser),
                rtf: opt(t.rtf, 3),
                rtfx: opt(t.rtfx, 2),
                audio_s: opt(t.audio_s, 1),
                processing_s: opt(t.processing_s, 1),
                n_clips: t.n_clips,
                n_scored: t.n_scored,
                n_ok: t.n_ok,
                n_failed: t.n_failed,
                n_missing: t.n_missing,
                s: t.counts.substitutions,
                d: t.counts.deletions,
                i: t.counts.insertions,
                c: t.counts.hits,
                n: t.counts.ref_len(),
                bar: if t.wer.is_finite() {
                    (t.wer / max_wer * 100.0).clamp(0.0, 100.0)
                } else {
                    0.0
                },
                agreement: s.agreement.as_ref().map(|a| AgreeView {
                    reference_system: a.reference_system.clone(),
                    n: a.n_utterances,
                    word_agreement: pct(a.word_agreement),
                    exact: pct(a.exact_match_rate),
                    raw_exact: pct(a.raw_exact_match_rate),
                    s: a.counts.substitutions,
                    d: a.counts.deletions,
                    i: a.counts.insertions,
                }),
                confusions: t
                    .top_confusions
                    .iter()
                    .map(|c| Pair {
                        a: c.reference.clone(),
                        b: c.hypothesis.clone(),
                        count: c.count,
                    })
                    .collect(),
                insertions: t
                    .top_insertions
                    .iter()
                    .map(|w| Pair {
                        a: w.word.clone(),
                        b: String::new(),
                        count: w.count,
                    })
                    .collect(),
                deletions: t
                    .top_deletions
                    .iter()
                    .map(|w| Pair {
                        a: w.word.clone(),
                        b: String::new(),
                        count: w.count,
                    })
                    .collect(),
                n_error_utts: utts.iter().filter(|u| u.has_errors).count(),
                latency: latency_view(s),
                utts,
            }
        })
        .collect();
    // History up to and including this run.
    let upto = history
        .iter()
        .position(|r| r.run_id == run.run_id)
        .map(|i| i + 1)
        .unwrap_or(history.len());
    let mut names: Vec<String> = run.systems.iter().map(|s| s.name.clone()).collect();
    for r in &history[..upto] {
        for k in r.systems.keys() {
            if !names.contains(k) {
                names.push(k.clone());
            }
        }
    }
    let chart = chart(&history[..upto], &names, 40);
    let p = &run.provenance;
    let mut env = minijinja::Environment::new();
    let template_err = |what| move |source| ReportError::Template { what, source };
    env.add_template("report.html", TEMPLATE)
        .map_err(template_err("report template"))?;
    let tmpl = env
        .get_template("report.html")
        .map_err(template_err("report template"))?;
    let html = tmpl
        .render(minijinja::context! {
            run_id => run.run_id,
            time => run.time,
            commit => p.git_commit.clone().unwrap_or_else(|| "unknown (not a git checkout)".into()),
            version => p.voxtrace_version,
            normalizer => p.normalizer,
            scorer => p.scorer,
            manifest => p.manifest,
            audio_root => p.audio_root,
            corpus_sha256 => p.corpus_sha256,
            hostname => p.machine.hostname.clone().unwrap_or_default(),
            cpu => p.machine.cpu.clone().unwrap_or_default(),
            cores => p.machine.cores,
            os => p.machine.os,
            command => p.command.join(" "),
            n_clips => run.n_clips,
            shard => run.shard.as_ref().map(|s| format!("{}/{} ({} of the manifest's {} clips; {})", s.index, s.count, run.n_clips, s.n_manifest_clips, s.hash)),
            merged_from => run.merged_from.iter().map(|m| format!("{}/{} {}", m.index, run.merged_from.len(), m.run_id)).collect::<Vec<_>>(),
            missing => run.missing_clips,
            nothing_scored => run.nothing_scored,
            any_agreement => !run.reference_pairs.is_empty(),
            reference_pairs => run.reference_pairs.iter().map(|(a, b)| format!("{a} → {b}")).collect::<Vec<_>>(),
            any_latency => systems.iter().any(|s| s.latency.is_some()),
            systems => systems,
            chart => chart,
            check => check,
        })
        .map_err(template_err("rendering report.html"))?;
    Ok(html)
}

/// Render and write the report atomically to `path`.
///
/// # Errors
/// Rendering errors (see [`render`]) or [`ReportError::Write`] (path named).
pub fn write_report(
    path: &Path,
    run: &RunResults,
    history: &[HistoryRow],
    check: Option<&CheckOutcome>,
) -> Result<(), ReportError> {
    let html = render(run, history, check)?;
    crate::io::write_atomic(path, html.as_bytes())?;
    Ok(())
}
