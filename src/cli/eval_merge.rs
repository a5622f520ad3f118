//! `voxtrace eval-merge`: merge the shard runs of one corpus (`voxtrace eval --shard K/N`) into
//! the run a single pass gives ([`crate::eval::merge`]), then write its history row and
//! `report.html` ([`crate::report::publish`]), as `voxtrace eval` does.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::eval::merge::{MergeOptions, merge_runs};

/// Arguments of `voxtrace eval-merge`.
#[derive(clap::Args, Debug)]
pub struct EvalMergeArgs {
    /// The shard runs: run folders (reports/<run-id>) or their results.json files, one per
    /// shard K = 1..N, in any order.
    #[arg(required = true, value_name = "RUN_DIR")]
    pub runs: Vec<PathBuf>,
    /// Reports folder of the merged run (holds <run-id>/ and history.jsonl).
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// The merged run's id (folder name).
    #[arg(long)]
    pub run_id: String,
    /// The manifest, when it is no longer at the path the shards recorded.
    #[arg(long)]
    pub manifest: Option<PathBuf>,
    /// The audio root, when it is no longer the one the shards recorded.
    #[arg(long)]
    pub audio_root: Option<PathBuf>,
    /// Print the per-system headline figures as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Run `voxtrace eval-merge`. Exit codes as `voxtrace eval`: 0 merged, 1 merged but nothing
/// was scored for some system, 2 could not merge (the error names the shard runs involved).
///
/// # Errors
/// Shards of different runs, overlapping or missing shards, a changed manifest or audio,
/// unreadable results, an unwritable reports folder.
pub fn run(args: &EvalMergeArgs) -> anyhow::Result<ExitCode> {
    let (run, dir) = merge_runs(&MergeOptions {
        runs: args.runs.clone(),
        out: args.out.clone(),
        run_id: args.run_id.clone(),
        manifest: args.manifest.clone(),
        audio_root: args.audio_root.clone(),
    })?;
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    crate::report::publish(&args.out, &dir, &run)?;
    super::eval::print_run(&run, &dir, args.json);
    super::eval::nothing_scored_exit(&run)
}
