//! Corpus evaluation reports: the run history (`reports/history.jsonl`), regression checks
//! against a baseline (`voxtrace eval-check`), and the self-contained HTML report
//! (`reports/<run-id>/report.html`).
//!
//! * [`history`]: one JSON line per run, rewritten atomically (temp file + rename).
//! * [`check`]: corpus WER rise and pinned-utterance gates, newly broken / fixed utterances.
//! * [`html`]: the report page (minijinja with HTML autoescape; inline CSS, JS and SVG, no
//!   network), after the layout of sclite's `pra`/`dtl` reports and jiwer's alignment view.

pub mod check;
pub mod history;
pub mod html;
