//! `reports/history.jsonl`: one line per evaluation run (run id, time, commit, corpus hash,
//! per-system corpus WER/CER/RTF), the input of the WER trend chart and of `eval-check`.
//!
//! The file is never appended in place: [`append`] reads it, replaces any row with the same run
//! id (a resumed run), adds the new row and writes the whole text with
//! [`crate::io::write_atomic`] (temporary file in the same folder, renamed over the old one), so
//! a reader or a crash never sees a half-written line. The whole cycle holds the folder's
//! [`crate::io::FolderLock`], so runs finishing at the same time each add their row (none is
//! lost to another's rewrite).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ReportError;
use crate::eval::results::RunResults;

/// Headline figures of one system in one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemFigures {
    /// Corpus WER on normalised text (fraction, not percent).
    pub wer: f64,
    /// Corpus WER on raw text.
    pub raw_wer: f64,
    /// Corpus CER on normalised text.
    pub cer: f64,
    /// Sentence error rate.
    pub ser: f64,
    /// Real-time factor (processing / audio seconds), if timed.
    pub rtf: Option<f64>,
    /// Inverse real-time factor.
    pub rtfx: Option<f64>,
    /// Clips scored.
    pub n_scored: usize,
    /// Clips failed.
    pub n_failed: usize,
    /// Clips whose audio was missing.
    pub n_missing: usize,
    /// Word agreement with the reference system, if any.
    pub word_agreement: Option<f64>,
    /// Streaming latency of a streaming system (absent for the others and in older rows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<LatencyFigures>,
}

/// Headline streaming figures of one system in one run, ms
/// ([`crate::eval::latency::LatencyTotals`]; `None` where the run had none, e.g. no word).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyFigures {
    /// Median first-token latency over clips.
    pub first_token_ms_p50: Option<f64>,
    /// Median finalization delay over clips.
    pub finalization_ms_p50: Option<f64>,
    /// Median step time over all steps.
    pub step_ms_p50: Option<f64>,
    /// 95th percentile step time over all steps.
    pub step_ms_p95: Option<f64>,
    /// Median per-word emission delay over all words (against the emitting step's audio).
    pub word_delay_ms_p50: Option<f64>,
    /// Median per-word emission delay against reference word end times, where known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_word_delay_ms_p50: Option<f64>,
}

impl LatencyFigures {
    /// The headline figures of `t`.
    pub fn from_totals(t: &crate::eval::latency::LatencyTotals) -> Self {
        Self {
            first_token_ms_p50: t.first_token_ms.map(|s| s.p50),
            finalization_ms_p50: t.finalization_ms.map(|s| s.p50),
            step_ms_p50: t.step_ms.map(|s| s.p50),
            step_ms_p95: t.step_ms.map(|s| s.p95),
            word_delay_ms_p50: t.word_delay_ms.map(|s| s.p50),
            reference_word_delay_ms_p50: t.reference_word_delay_ms.map(|s| s.p50),
        }
    }
}

/// One line of `history.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryRow {
    /// Run id.
    pub run_id: String,
    /// UTC time, RFC 3339.
    pub time: String,
    /// Git commit, if known.
    pub commit: Option<String>,
    /// Corpus hash ([`crate::eval::runner::corpus_hash`]).
    pub corpus_sha256: String,
    /// Manifest path.
    pub manifest: String,
    /// Normaliser version.
    pub normalizer: String,
    /// `results.json` path relative to the history file's folder.
    pub results: String,
    /// Figures per system name.
    pub systems: BTreeMap<String, SystemFigures>,
}

impl HistoryRow {
    /// The history row of a finished run.
    pub fn from_run(run: &RunResults) -> Self {
        HistoryRow {
            run_id: run.run_id.clone(),
            time: run.time.clone(),
            commit: run.provenance.git_commit.clone(),
            corpus_sha256: run.provenance.corpus_sha256.clone(),
            manifest: run.provenance.manifest.clone(),
            normalizer: run.provenance.normalizer.clone(),
            results: format!("{}/results.json", run.run_id),
            systems: run
                .systems
                .iter()
                .map(|s| {
                    (
                        s.name.clone(),
                        SystemFigures {
                            wer: s.totals.wer,
                            raw_wer: s.totals.raw_wer,
                            cer: s.totals.cer,
                            ser: s.totals.ser,
                            rtf: s.totals.rtf,
                            rtfx: s.totals.rtfx,
                            n_scored: s.totals.n_scored,
                            n_failed: s.totals.n_failed,
                            n_missing: s.totals.n_missing,
                            word_agreement: s.agreement.as_ref().map(|a| a.word_agreement),
                            latency: s.totals.latency.as_ref().map(LatencyFigures::from_totals),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Read a history file; a missing file is an empty history.
///
/// # Errors
/// [`crate::io::FileError::Io`] (as [`ReportError::File`]) for an unreadable file; [`ReportError::MalformedRow`] for a malformed line
/// (message names file and 1-based line).
pub fn read(path: &Path) -> Result<Vec<HistoryRow>, ReportError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => {
            return Err(crate::io::FileError::Io {
                path: path.to_path_buf(),
                what: "cannot read",
                source,
            }
            .into());
        }
    };
    let mut rows = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let row: HistoryRow =
            serde_json::from_str(l).map_err(|source| ReportError::MalformedRow {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?;
        rows.push(row);
    }
    Ok(rows)
}

/// Add `row` to the history at `path` (creating it), replacing an earlier row with the same run
/// id, by writing the whole new file with [`crate::io::write_atomic`], under the folder's lock
/// ([`crate::io::lock_folder_of`]; waits while another run appends).
///
/// # Errors
/// The existing file is malformed or unreadable (see [`read`]); the folder is missing, cannot
/// be locked or is not writable ([`ReportError::Write`]).
pub fn append(path: &Path, row: &HistoryRow) -> Result<(), ReportError> {
    let _lock = crate::io::lock_folder_of(path)?;
    let old = read(path)?;
    let mut text = String::new();
    for r in old.iter().filter(|r| r.run_id != row.run_id).chain([row]) {
        let line = serde_json::to_string(r).map_err(|source| crate::io::FileError::Json {
            path: path.to_path_buf(),
            what: "cannot serialise a history row",
            source,
        })?;
        text.push_str(&line);
        text.push('\n');
    }
    crate::io::write_atomic(path, text.as_bytes())?;
    Ok(())
}
