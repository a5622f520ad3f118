//! `voxtrace eval`: transcribe a corpus with one or more systems side by side, score WER, write
//! `reports/<run-id>/{results.json, partial.jsonl}` ([`crate::eval::runner`]), then a
//! `reports/history.jsonl` row and `reports/<run-id>/report.html` ([`crate::report::publish`]).
//! See [`crate::eval::runner`] for the scoring conventions and [`crate::eval::systems`] for the
//! SPEC kinds.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::eval::results::{RunResults, headline};
use crate::eval::runner::{ReferenceArg, RunOptions, run_eval};
use crate::eval::shard::Shard;
use crate::eval::systems::{ExternalLimits, SystemSpec};

/// Arguments of `voxtrace eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Corpus manifest, layout detected from the path: a TSV file (id, file, reference; optional
    /// duration_s, source, license, ...), a NeMo JSON-lines file (audio_filepath, text,
    /// duration), a Kaldi data folder (wav.scp + text; piped entries refused) or a
    /// LibriSpeech-style folder (*.trans.txt beside the audio).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Folder the manifest's relative `file`s resolve against (default: the manifest file's
    /// folder; the Kaldi / LibriSpeech folder itself).
    #[arg(long)]
    pub audio_root: Option<PathBuf>,
    /// Also read audio outside the audio root: absolute `file`s, `..` climbing above it,
    /// symlinks leading out of it (refused by default, so no system, `http:` ones included,
    /// ever gets a file from elsewhere).
    #[arg(long)]
    pub allow_outside_root: bool,
    /// A system as NAME=SPEC; SPEC is voxtral:DIR, whisper:DIR (voxtral-q8_0:DIR,
    /// voxtral-q4_0:DIR, whisper-q8_0:DIR, whisper-q4_0:DIR: linear layers packed),
    /// transcripts:FILE.json, cmd:'COMMAND {audio}' or http:URL (OpenAI-compatible
    /// /v1/audio/transcriptions; per-system options as
    /// http[model_field=F,model=M,response_format=json|verbose_json|text]:URL). Repeat for
    /// several systems.
    #[arg(long = "system", required = true, value_parser = SystemSpec::parse)]
    pub systems: Vec<SystemSpec>,
    /// Score agreement against a reference system: `REF` (every other system against REF) or
    /// `SYS=REF` (SYS against REF, e.g. `whisper-burn=whisper-torch`); repeatable, explicit
    /// pairs win over the bare default.
    #[arg(long = "reference-system", value_parser = ReferenceArg::parse)]
    pub references: Vec<ReferenceArg>,
    /// Reports folder (holds <run-id>/ and history.jsonl).
    #[arg(long, default_value = "reports")]
    pub out: PathBuf,
    /// Run id (folder name); default the UTC time to the microsecond and a random suffix,
    /// e.g. 20261122T052000.123456Z-3f9a1c.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Continue an interrupted run: skip (system, clip) pairs already in partial.jsonl.
    #[arg(long)]
    pub resume: bool,
    /// No progress bars (they are also hidden when stderr is not a terminal).
    #[arg(long)]
    pub quiet: bool,
    /// Print the per-system headline figures as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// Compute device for model systems: flex (default), ndarray or wgpu when compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Model name sent to http: systems (unless their spec says model=...).
    #[arg(long, default_value = "mistralai/Voxtral-Mini-4B-Realtime-2602")]
    pub http_model: String,
    /// Time limit per clip for cmd: and http: systems, seconds (default max(60, 10 x the clip's
    /// duration_s)); a clip over it is a failed utterance and its command is killed.
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    pub system_timeout: Option<Duration>,
    /// Run one shard of the corpus: K/N (K = 1..N; a SHA-256 hash of the utterance id picks
    /// the shard, so shards are disjoint, cover the corpus and ignore line order), or `auto`:
    /// from SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT (Slurm array) or JOB_COMPLETION_INDEX
    /// (Kubernetes indexed Job, with --shard-count). Merge the runs with `voxtrace eval-merge`.
    #[arg(long, value_name = "K/N|auto")]
    pub shard: Option<String>,
    /// N for `--shard auto` when the scheduler does not give it (Kubernetes; or set
    /// VOXTRACE_SHARD_COUNT).
    #[arg(long, value_name = "N", requires = "shard")]
    pub shard_count: Option<usize>,
}

/// `--shard` (`K/N` or `auto`, reading the scheduler's environment) and `--shard-count`.
fn shard(args: &EvalArgs) -> anyhow::Result<Option<Shard>> {
    Ok(match args.shard.as_deref().map(str::trim) {
        None => None,
        Some("auto") => Some(Shard::from_env(
            |k| std::env::var(k).ok(),
            args.shard_count,
        )?),
        Some(s) => {
            if args.shard_count.is_some() {
                anyhow::bail!("--shard-count goes with --shard auto, not --shard {s}");
            }
            Some(Shard::parse(s)?)
        }
    })
}

/// `--system-timeout`: a finite number of seconds > 0 (at most a day).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

/// Run `voxtrace eval`. Exit code 0 when the run completed (failed or missing clips are
/// reported, not fatal); 1 when it completed but nothing could be scored for some system
/// (every clip missing or failed, or no clip at all: [`crate::eval::results::nothing_scored`]),
/// said on stderr and in `results.json` / `report.html`, which are still written; errors
/// (exit 2 from `main`) when it could not run.
///
/// # Errors
/// Bad manifest, a manifest entry outside the audio root (without `--allow-outside-root`),
/// system that cannot be opened, unwritable reports folder.
pub fn run(args: &EvalArgs) -> anyhow::Result<ExitCode> {
    let opts = RunOptions {
        manifest: args.manifest.clone(),
        audio_root: args.audio_root.clone(),
        systems: args.systems.clone(),
        references: args.references.clone(),
        out: args.out.clone(),
        run_id: args.run_id.clone(),
        resume: args.resume,
        quiet: args.quiet,
        device: args.device.clone(),
        http_model: args.http_model.clone(),
        allow_outside_root: args.allow_outside_root,
        limits: ExternalLimits {
            timeout: args.system_timeout,
            ..ExternalLimits::default()
        },
        shard: shard(args)?,
    };
    let (run, dir) = run_eval(&opts)?;
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    if let Some(s) = run.shard.as_ref().filter(|_| run.n_clips == 0) {
        eprintln!(
            "note: shard {}/{} holds no clip of the {}-clip manifest",
            s.index, s.count, s.n_manifest_clips
        );
    }
    crate::report::publish(&args.out, &dir, &run)?;
    print_run(&run, &dir, args.json);
    nothing_scored_exit(&run)
}

/// Exit 0, or 1 naming on stderr each system for which nothing was scored.
pub fn nothing_scored_exit(run: &RunResults) -> anyhow::Result<ExitCode> {
    if run.nothing_scored.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for n in &run.nothing_scored {
        eprintln!(
            "error: nothing was scored for system {:?}: {}; this run says nothing about its accuracy",
            n.system, n.reason
        );
    }
    Ok(ExitCode::from(1))
}

/// The terminal line of a streaming system's latency figures (ms, p50/p95; see
/// [`crate::eval::latency`]).
fn latency_line(l: &crate::eval::latency::LatencyTotals) -> String {
    let f = |s: Option<crate::eval::latency::Summary>| {
        s.map_or("n/a".to_string(), |s| format!("{:.0}/{:.0}", s.p50, s.p95))
    };
    let step = l
        .step_ms
        .map_or("n/a".to_string(), |s| format!("{:.1}/{:.1}", s.p50, s.p95));
    let reference = l
        .reference_word_delay_ms
        .map(|s| {
            format!(
                "  word delay vs reference word ends {:.0}/{:.0}",
                s.p50, s.p95
            )
        })
        .unwrap_or_default();
    format!(
        "  {:<16} streaming (ms, p50/p95): first token {}  finalization {}  step {step}  word delay {} (vs the step's audio; model delay {:.0} ms){reference}  {} clips",
        "",
        f(l.first_token_ms),
        f(l.finalization_ms),
        f(l.word_delay_ms),
        l.delay_ms,
        l.n_clips
    )
}

/// Print a finished run's headline figures: one JSON object (`json`) or a table.
pub fn print_run(run: &RunResults, dir: &Path, json: bool) {
    if json {
        let obj = serde_json::json!({
            "run_id": run.run_id,
            "results": dir.join("results.json"),
            "report": dir.join("report.html"),
            "corpus_sha256": run.provenance.corpus_sha256,
            "n_clips": run.n_clips,
            "missing": run.missing_clips.iter().map(|m| &m.id).collect::<Vec<_>>(),
            "systems": headline(run),
            "nothing_scored": run.nothing_scored,
            "shard": run.shard,
        });
        println!("{obj}");
    } else {
        let shard = run
            .shard
            .as_ref()
            .map(|s| {
                format!(
                    " · shard {}/{} of {} clips",
                    s.index, s.count, s.n_manifest_clips
                )
            })
            .unwrap_or_default();
        println!(
            "run {} · {} clips ({} missing audio){shard}",
            run.run_id,
            run.n_clips,
            run.missing_clips.len()
        );
        for s in &run.systems {
            let t = &s.totals;
            let mut line = format!(
                "  {:<16} WER {:>7.2}%  raw WER {:>7.2}%  CER {:>7.2}%  SER {:>6.1}%  scored {}/{}  failed {}  missing {}",
                s.name,
                t.wer * 100.0,
                t.raw_wer * 100.0,
                t.cer * 100.0,
                t.ser * 100.0,
                t.n_scored,
                t.n_clips,
                t.n_failed,
                t.n_missing
            );
            if run.nothing_scored.iter().any(|n| n.system == s.name) {
                line.push_str("  NOTHING SCORED");
            }
            if let (Some(rtf), Some(rtfx)) = (t.rtf, t.rtfx) {
                line.push_str(&format!("  RTF {rtf:.3}  RTFx {rtfx:.2}"));
            }
            if let Some(a) = &s.agreement {
                line.push_str(&format!(
                    "  agreement with {} {:.2}% (exact {:.1}%)",
                    a.reference_system,
                    a.word_agreement * 100.0,
                    a.exact_match_rate * 100.0
                ));
            }
            println!("{line}");
            if let Some(l) = &t.latency {
                println!("{}", latency_line(l));
            }
        }
        for m in &run.missing_clips {
            println!("  missing audio: {} ({})", m.id, m.path);
        }
        println!("report: {}", dir.join("report.html").display());
    }
}
