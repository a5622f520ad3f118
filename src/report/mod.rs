//! Corpus evaluation reports: the run history (`reports/history.jsonl`), regression checks
//! against a baseline (`voxtrace eval-check`), and the self-contained HTML report
//! (`reports/<run-id>/report.html`), all built from an [`crate::eval::results::RunResults`].
//!
//! * [`history`]: one JSON line per run, rewritten atomically (temp file + rename).
//! * [`check`]: corpus WER rise and pinned-utterance gates, newly broken / fixed utterances.
//! * [`html`]: the report page (minijinja with HTML autoescape; inline CSS, JS and SVG, no
//!   network), after the layout of sclite's `pra`/`dtl` reports and jiwer's alignment view.
//! * [`publish`]: what follows a finished run (history row, then `report.html`).

pub mod check;
mod error;
pub mod history;
pub mod html;

pub use error::ReportError;

use std::path::Path;

use crate::eval::results::RunResults;

/// File name of the run history inside the reports folder.
pub const HISTORY_FILE: &str = "history.jsonl";

/// File name of the HTML report inside a run folder.
pub const REPORT_FILE: &str = "report.html";

/// Publish a finished run: add (or replace) its row in `<reports>/history.jsonl`, then write
/// `<run_dir>/report.html` with the trend chart of the whole history and the run's `check.json`,
/// if one is there (a resumed run that was checked before).
///
/// # Errors
/// A malformed or unreadable `history.jsonl` or `check.json` (file and line named), an
/// unwritable folder.
///
/// A shard run ([`RunResults::shard`]) gets its `report.html` but no history row: its figures
/// cover part of the corpus, and `eval-check` must never compare them with whole-corpus runs
/// (`voxtrace eval-merge` publishes the merged run's row).
pub fn publish(reports: &Path, run_dir: &Path, run: &RunResults) -> Result<(), ReportError> {
    let history_path = reports.join(HISTORY_FILE);
    if run.shard.is_none() {
        history::append(&history_path, &history::HistoryRow::from_run(run))?;
    }
    let rows = history::read(&history_path)?;
    let check = check::load_check(run_dir)?;
    html::write_report(&run_dir.join(REPORT_FILE), run, &rows, check.as_ref())
}
