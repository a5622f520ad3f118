//! `voxtrace eval`: transcribe a corpus with one or more systems side by side, score WER, write
//! `reports/<run-id>/{results.json, partial.jsonl}` ([`crate::eval::runner`]), then a
//! `reports/history.jsonl` row and `reports/<run-id>/report.html` ([`crate::report::publish`]).
//! See [`crate::eval::runner`] for the scoring conventions and [`crate::eval::systems`] for the
//! SPEC kinds.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::eval::results::headline;
use crate::eval::runner::{ReferenceArg, RunOptions, run_eval};
use crate::eval::systems::{ExternalLimits, SystemSpec};

/// Arguments of `voxtrace eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Corpus manifest (TSV: id, file, duration_s, reference, source, license, ...).
    #[arg(long)]
    pub manifest: PathBuf,
    /// Folder the manifest's relative `file`s resolve against (default: the manifest's folder).
    #[arg(long)]
    pub audio_root: Option<PathBuf>,
    /// Also read audio outside the audio root: absolute `file`s, `..` climbing above it,
    /// symlinks leading out of it (refused by default, so no system, `http:` ones included,
    /// ever gets a file from elsewhere).
    #[arg(long)]
    pub allow_outside_root: bool,
    /// A system as NAME=SPEC; SPEC is voxtral:DIR, whisper:DIR (whisper-q8_0:DIR /
    /// whisper-q4_0:DIR: linear layers packed), transcripts:FILE.json, cmd:'COMMAND {audio}' or
    /// http:URL (OpenAI-compatible /v1/audio/transcriptions; per-system options as
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
    };
    let (run, dir) = run_eval(&opts)?;
    for w in &run.warnings {
        eprintln!("warning: {w}");
    }
    crate::report::publish(&args.out, &dir, &run)?;
    if args.json {
        let obj = serde_json::json!({
            "run_id": run.run_id,
            "results": dir.join("results.json"),
            "report": dir.join("report.html"),
            "corpus_sha256": run.provenance.corpus_sha256,
            "n_clips": run.n_clips,
            "missing": run.missing_clips.iter().map(|m| &m.id).collect::<Vec<_>>(),
            "systems": headline(&run),
            "nothing_scored": run.nothing_scored,
        });
        println!("{obj}");
    } else {
        println!(
            "run {} · {} clips ({} missing audio)",
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
        }
        for m in &run.missing_clips {
            println!("  missing audio: {} ({})", m.id, m.path);
        }
        println!("report: {}", dir.join("report.html").display());
    }
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
