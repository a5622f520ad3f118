//! `voxtrace eval-check`: gate on regressions between an evaluation run and a baseline (see
//! [`crate::report::check`] for the contract). Exit codes: 0 pass, 1 regression, 2 could not run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::eval::results::load_results;
use crate::report::check::{self, CHECK_FILE, CheckOptions};
use crate::report::{REPORT_FILE, history};

/// Arguments of `voxtrace eval-check`.
#[derive(clap::Args, Debug)]
pub struct EvalCheckArgs {
    /// History file written by `voxtrace eval`.
    #[arg(long, default_value = "reports/history.jsonl")]
    pub history: PathBuf,
    /// Baseline: a run id of the history (default: the newest run before --run whose
    /// `results.json` is on disk; run folders are not committed, so runs recorded elsewhere
    /// are skipped, and named on stderr).
    #[arg(long, conflicts_with = "baseline")]
    pub baseline_run: Option<String>,
    /// Baseline: a results.json file.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Run to check (default: the newest in the history).
    #[arg(long)]
    pub run: Option<String>,
    /// Largest allowed corpus WER rise, as a fraction (0.005 = 0.5 WER points).
    #[arg(long, default_value_t = 0.005)]
    pub max_wer_increase: f64,
    /// Utterance id whose hypothesis must not change (repeatable).
    #[arg(long = "pin")]
    pub pins: Vec<String>,
    /// Only check this system.
    #[arg(long)]
    pub system: Option<String>,
    /// Print the outcome as JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Run `voxtrace eval-check`: prints newly broken / fixed utterances, writes
/// `<run>/check.json` and re-renders `<run>/report.html` with the outcome.
///
/// # Errors
/// Missing or malformed history/results, no baseline available, unknown run or system.
pub fn run(args: &EvalCheckArgs) -> anyhow::Result<ExitCode> {
    let rows = history::read(&args.history)?;
    if rows.is_empty() {
        bail!(
            "{}: no runs in the history (run `voxtrace eval` first)",
            args.history.display()
        )
    }
    let cur_idx = match &args.run {
        Some(id) => rows
            .iter()
            .rposition(|r| &r.run_id == id)
            .with_context(|| format!("{}: no run {id:?}", args.history.display()))?,
        None => rows.len() - 1,
    };
    let cur_row = &rows[cur_idx];
    let cur_path = check::results_path(&args.history, &cur_row.results);
    let current = load_results(&cur_path)?;
    let (baseline, label) = match (&args.baseline, &args.baseline_run) {
        (Some(f), _) => (load_results(f)?, f.display().to_string()),
        (None, Some(id)) => {
            let row = rows
                .iter()
                .rfind(|r| &r.run_id == id)
                .with_context(|| format!("{}: no baseline run {id:?}", args.history.display()))?;
            (
                load_results(&check::results_path(&args.history, &row.results))?,
                id.clone(),
            )
        }
        (None, None) => {
            if cur_idx == 0 {
                bail!(
                    "{}: run {:?} has no earlier run to compare with; pass --baseline-run or --baseline",
                    args.history.display(),
                    cur_row.run_id
                )
            }
            // The newest earlier run whose results are on disk: run folders are git-ignored,
            // so a fresh clone holds the committed history rows but not their results.
            let mut skipped = Vec::new();
            let mut found = None;
            for row in rows[..cur_idx].iter().rev() {
                let path = check::results_path(&args.history, &row.results);
                if path.is_file() {
                    found = Some((row, path));
                    break;
                }
                skipped.push(format!("{} ({} absent)", row.run_id, path.display()));
            }
            let Some((row, path)) = found else {
                bail!(
                    "{}: no earlier run of {:?} has its results on disk ({}); run `voxtrace eval` \
                     for a baseline or pass --baseline FILE",
                    args.history.display(),
                    cur_row.run_id,
                    skipped.join(", ")
                )
            };
            if !skipped.is_empty() {
                eprintln!(
                    "eval-check: baseline {:?}; skipped newer runs without results: {}",
                    row.run_id,
                    skipped.join(", ")
                );
            }
            (load_results(&path)?, row.run_id.clone())
        }
    };
    let outcome = check::check(
        &current,
        &baseline,
        &label,
        &CheckOptions {
            max_wer_increase: args.max_wer_increase,
            pins: args.pins.clone(),
            system: args.system.clone(),
        },
    )?;
    let run_dir = cur_path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    crate::eval::metrics::write_json_atomic(&run_dir.join(CHECK_FILE), &outcome)?;
    crate::report::html::write_report(&run_dir.join(REPORT_FILE), &current, &rows, Some(&outcome))?;
    if args.json {
        println!("{}", serde_json::to_string(&outcome)?);
    } else {
        print!("{}", check::summary(&outcome));
    }
    Ok(if outcome.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
