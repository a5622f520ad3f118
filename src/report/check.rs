//! Regression checks of an evaluation run against a baseline (what `voxtrace eval-check` runs).
//!
//! Contract: the check **fails** (exit code 1) when, for a compared system,
//! * its corpus WER (normalised) rose by more than `max_wer_increase` (absolute, as a fraction:
//!   0.005 = half a WER point), or
//! * a pinned utterance's hypothesis changed (raw text after trimming, or its status changed), or
//! * nothing was scored: the run transcribed no clip of the system (every clip missing or failed,
//!   or an empty manifest), the baseline transcribed none (it is no baseline), or the run scored
//!   fewer clips than the baseline (clips went missing, so its WER is over less), or a system of
//!   the baseline is absent from the run (none of its clips scored; pass `--system` to check
//!   only the others).
//!
//! Otherwise it passes (exit 0). It always lists **newly broken** utterances (word-error-free in
//! the baseline, not any more: errors, failed or missing) and **newly fixed** ones (the reverse).
//! The outcome is written to `reports/<run>/check.json` and shown in that run's `report.html`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::ReportError;
use crate::eval::results::{RunResults, SystemResult, UttResult, UttStatus, nothing_scored_reason};

/// File name of the check outcome inside a run folder.
pub const CHECK_FILE: &str = "check.json";

/// Options of [`check`].
#[derive(Clone, Debug)]
pub struct CheckOptions {
    /// Largest allowed corpus WER rise (fraction).
    pub max_wer_increase: f64,
    /// Pinned utterance ids.
    pub pins: Vec<String>,
    /// Only this system (default: every system present in both runs).
    pub system: Option<String>,
}

/// One utterance whose state changed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UttChange {
    /// Utterance id.
    pub id: String,
    /// Baseline status (`None`: absent from the baseline).
    pub baseline_status: Option<UttStatus>,
    /// Current status.
    pub status: Option<UttStatus>,
    /// Baseline WER.
    pub baseline_wer: Option<f64>,
    /// Current WER.
    pub wer: Option<f64>,
    /// Baseline hypothesis.
    pub baseline_hypothesis: Option<String>,
    /// Current hypothesis.
    pub hypothesis: Option<String>,
}

/// Comparison of one system.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SystemCheck {
    /// System name.
    pub system: String,
    /// Baseline corpus WER.
    pub baseline_wer: f64,
    /// Current corpus WER.
    pub wer: f64,
    /// wer − baseline_wer.
    pub delta: f64,
    /// True when `delta > max_wer_increase`.
    pub wer_regressed: bool,
    /// Newly broken utterances.
    pub newly_broken: Vec<UttChange>,
    /// Newly fixed utterances.
    pub newly_fixed: Vec<UttChange>,
    /// Pinned utterances whose hypothesis or status changed.
    pub pinned_changed: Vec<UttChange>,
    /// Clips scored (transcribed or failed) in the run.
    #[serde(default)]
    pub n_scored: usize,
    /// Clips scored in the baseline.
    #[serde(default)]
    pub baseline_n_scored: usize,
    /// Why the comparison proves nothing (nothing scored in the run or the baseline, fewer
    /// clips scored than the baseline); any makes the check fail.
    #[serde(default)]
    pub problems: Vec<String>,
}

/// Outcome of a check.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckOutcome {
    /// Checked run id.
    pub run_id: String,
    /// Baseline run id or file.
    pub baseline: String,
    /// Threshold used.
    pub max_wer_increase: f64,
    /// Pinned ids.
    pub pins: Vec<String>,
    /// True when nothing regressed.
    pub passed: bool,
    /// Per compared system.
    pub systems: Vec<SystemCheck>,
    /// Notes (a system new in the run, corpus hash changed).
    pub notes: Vec<String>,
    /// Failures not tied to a compared system: a baseline system absent from the run.
    #[serde(default)]
    pub problems: Vec<String>,
}

fn correct(u: Option<&UttResult>) -> bool {
    u.is_some_and(|u| u.status == UttStatus::Ok && u.wer == Some(0.0))
}

fn change(id: &str, b: Option<&UttResult>, c: Option<&UttResult>) -> UttChange {
    UttChange {
        id: id.to_string(),
        baseline_status: b.map(|u| u.status),
        status: c.map(|u| u.status),
        baseline_wer: b.and_then(|u| u.wer),
        wer: c.and_then(|u| u.wer),
        baseline_hypothesis: b.and_then(|u| u.hypothesis.clone()),
        hypothesis: c.and_then(|u| u.hypothesis.clone()),
    }
}

fn compare_system(cur: &SystemResult, base: &SystemResult, opts: &CheckOptions) -> SystemCheck {
    let bmap: HashMap<&str, &UttResult> =
        base.utterances.iter().map(|u| (u.id.as_str(), u)).collect();
    let cmap: HashMap<&str, &UttResult> =
        cur.utterances.iter().map(|u| (u.id.as_str(), u)).collect();
    let mut newly_broken = Vec::new();
    let mut newly_fixed = Vec::new();
    for u in &cur.utterances {
        let Some(b) = bmap.get(u.id.as_str()) else {
            continue;
        };
        match (correct(Some(b)), correct(Some(u))) {
            (true, false) => newly_broken.push(change(&u.id, Some(b), Some(u))),
            (false, true) => newly_fixed.push(change(&u.id, Some(b), Some(u))),
            _ => {}
        }
    }
    let mut pinned_changed = Vec::new();
    for p in &opts.pins {
        let (b, c) = (bmap.get(p.as_str()).copied(), cmap.get(p.as_str()).copied());
        let same = match (b, c) {
            (Some(b), Some(c)) => {
                b.status == c.status
                    && b.hypothesis.as_deref().map(str::trim)
                        == c.hypothesis.as_deref().map(str::trim)
            }
            (None, None) => true,
            _ => false,
        };
        if !same {
            pinned_changed.push(change(p, b, c));
        }
    }
    let delta = cur.totals.wer - base.totals.wer;
    let mut problems = Vec::new();
    if let Some(why) = nothing_scored_reason(&cur.totals) {
        problems.push(format!("nothing scored in this run: {why}"));
    }
    if let Some(why) = nothing_scored_reason(&base.totals) {
        problems.push(format!(
            "nothing scored in the baseline ({why}): it is no baseline (pass --baseline-run \
             or --baseline to compare with another)"
        ));
    }
    if cur.totals.n_scored < base.totals.n_scored {
        problems.push(format!(
            "{} clips scored, fewer than the baseline's {} (missing: {})",
            cur.totals.n_scored,
            base.totals.n_scored,
            if cur.totals.missing_ids.is_empty() {
                "none; the corpus has fewer clips".to_string()
            } else {
                cur.totals.missing_ids.join(", ")
            }
        ));
    }
    SystemCheck {
        system: cur.name.clone(),
        baseline_wer: base.totals.wer,
        wer: cur.totals.wer,
        delta,
        wer_regressed: delta > opts.max_wer_increase,
        newly_broken,
        newly_fixed,
        pinned_changed,
        n_scored: cur.totals.n_scored,
        baseline_n_scored: base.totals.n_scored,
        problems,
    }
}

/// Compare `current` with `baseline` (labelled `baseline_label` in the outcome).
///
/// # Errors
/// [`ReportError::Check`]: a negative or non-finite `max_wer_increase`; `opts.system` absent
/// from either run; a pinned id in neither run; no system in common.
pub fn check(
    current: &RunResults,
    baseline: &RunResults,
    baseline_label: &str,
    opts: &CheckOptions,
) -> Result<CheckOutcome, ReportError> {
    if !opts.max_wer_increase.is_finite() || opts.max_wer_increase < 0.0 {
        return Err(ReportError::Check(format!(
            "--max-wer-increase must be a finite number >= 0, got {}",
            opts.max_wer_increase
        )));
    }
    let mut notes = Vec::new();
    let mut problems = Vec::new();
    if current.provenance.corpus_sha256 != baseline.provenance.corpus_sha256 {
        notes.push(format!(
            "corpus changed: baseline corpus sha256 {} != current {}; WERs are over different clips",
            baseline.provenance.corpus_sha256, current.provenance.corpus_sha256
        ));
    }
    for p in &opts.pins {
        let known = |r: &RunResults| {
            r.systems
                .iter()
                .any(|s| s.utterances.iter().any(|u| &u.id == p))
        };
        if !known(current) && !known(baseline) {
            return Err(ReportError::Check(format!(
                "pinned utterance {p:?} is in neither run"
            )));
        }
    }
    let mut systems = Vec::new();
    for cur in &current.systems {
        if opts.system.as_ref().is_some_and(|s| s != &cur.name) {
            continue;
        }
        match baseline.systems.iter().find(|b| b.name == cur.name) {
            Some(b) => systems.push(compare_system(cur, b, opts)),
            None => notes.push(format!("system {:?} is not in the baseline", cur.name)),
        }
    }
    for b in &baseline.systems {
        if opts.system.as_ref().is_some_and(|s| s != &b.name) {
            continue;
        }
        if !current.systems.iter().any(|c| c.name == b.name) {
            problems.push(format!(
                "baseline system {:?} is not in this run: none of its {} baseline clips scored \
                 (pass --system to check only the other systems)",
                b.name, b.totals.n_scored
            ));
        }
    }
    if let Some(s) = &opts.system
        && systems.is_empty()
    {
        return Err(ReportError::Check(format!(
            "--system {s:?} is not in both the run and the baseline"
        )));
    }
    if systems.is_empty() {
        return Err(ReportError::Check(
            "the run and the baseline have no system in common".into(),
        ));
    }
    let passed = problems.is_empty()
        && systems
            .iter()
            .all(|s| !s.wer_regressed && s.pinned_changed.is_empty() && s.problems.is_empty());
    Ok(CheckOutcome {
        run_id: current.run_id.clone(),
        baseline: baseline_label.to_string(),
        max_wer_increase: opts.max_wer_increase,
        pins: opts.pins.clone(),
        passed,
        systems,
        notes,
        problems,
    })
}

/// The check outcome stored in a run folder, if any.
///
/// # Errors
/// A `check.json` that exists but is unreadable or malformed
/// ([`ReportError::File`]).
pub fn load_check(run_dir: &Path) -> Result<Option<CheckOutcome>, ReportError> {
    let path = run_dir.join(CHECK_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => match serde_json::from_str(&t) {
            Ok(c) => Ok(Some(c)),
            Err(source) => Err(crate::io::FileError::Json {
                path,
                what: "malformed",
                source,
            }
            .into()),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(crate::io::FileError::Io {
            path,
            what: "cannot read",
            source,
        }
        .into()),
    }
}

/// Where the results of a history run live: `<history folder>/<row.results>`.
pub fn results_path(history: &Path, results: &str) -> PathBuf {
    history
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(results)
}

/// Human-readable summary of an outcome (what `eval-check` prints).
pub fn summary(o: &CheckOutcome) -> String {
    let mut s = format!(
        "eval-check: run {} vs baseline {} (max WER increase {:.4}): {}\n",
        o.run_id,
        o.baseline,
        o.max_wer_increase,
        if o.passed { "PASS" } else { "FAIL" }
    );
    for sc in &o.systems {
        s.push_str(&format!(
            "  {}: WER {:.2}% -> {:.2}% ({:+.2} points){}\n",
            sc.system,
            sc.baseline_wer * 100.0,
            sc.wer * 100.0,
            sc.delta * 100.0,
            if sc.wer_regressed { "  REGRESSION" } else { "" }
        ));
        for p in &sc.problems {
            s.push_str(&format!("    FAIL: {p}\n"));
        }
        for (label, list) in [
            ("newly broken", &sc.newly_broken),
            ("newly fixed", &sc.newly_fixed),
            ("pinned utterance changed", &sc.pinned_changed),
        ] {
            for c in list {
                s.push_str(&format!(
                    "    {label}: {} ({:?} -> {:?})\n",
                    c.id,
                    c.baseline_hypothesis.as_deref().unwrap_or("<absent>"),
                    c.hypothesis.as_deref().unwrap_or("<absent>")
                ));
            }
        }
    }
    for p in &o.problems {
        s.push_str(&format!("  FAIL: {p}\n"));
    }
    for n in &o.notes {
        s.push_str(&format!("  note: {n}\n"));
    }
    s
}
