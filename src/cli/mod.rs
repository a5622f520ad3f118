//! The `voxtrace` command line: one subcommand per job, each in its own file.

mod bench;
pub mod compare;
mod eval;
mod eval_check;
mod export;
pub mod features;
mod serve;
mod trace;
mod transcribe;

use burn::tensor::Device;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Port speech-to-text transformers to Burn and prove the port right, layer by layer.
#[derive(Parser, Debug)]
#[command(name = "voxtrace", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a model on audio and record every intermediate tensor under its upstream name.
    Trace(trace::TraceArgs),
    /// Per-tensor drift between two dumps (safetensors, .npz, folder of .npy): table, JSON, HTML.
    Compare(compare::CompareArgs),
    /// Transcribe audio files: Voxtral streams 80 ms steps (or `--offline`), Whisper decodes 30 s windows greedily.
    Transcribe(transcribe::TranscribeArgs),
    /// Compute model input features (padded log-mel) of an audio file to a safetensors dump.
    Features(features::FeaturesArgs),
    /// Transcribe a corpus with several systems, score WER, write reports/<run-id>/report.html.
    Eval(eval::EvalArgs),
    /// Compare an eval run with a baseline; exit 1 on a WER rise, a pinned-utterance change or fewer clips scored.
    EvalCheck(eval_check::EvalCheckArgs),
    /// Export a model part's forward graph to ONNX (and a Model Explorer JSON graph).
    Export(export::ExportArgs),
    /// Serve models over HTTP: OpenAI's /v1/audio/transcriptions, /v1/models, /health, and vLLM's /v1/realtime websocket (Voxtral).
    Serve(serve::ServeArgs),
    /// Benchmark worker modes (run by `just bench` through the drivers in reference/).
    Bench(bench::BenchArgs),
}

/// Compute device by name (see [`crate::backend::device`]), as an `anyhow` error for the
/// subcommands.
///
/// # Errors
/// An unknown name or a backend not compiled in.
pub fn device(name: &str) -> anyhow::Result<Device> {
    Ok(crate::backend::device(name)?)
}

/// Parse the command line and run; exit codes: 0 success, 1 a check failed (compare,
/// eval-check) or an eval run scored nothing for some system, 2 could not run (bad input,
/// missing file).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Trace(a) => trace::run(a),
        Command::Compare(a) => compare::run(a),
        Command::Transcribe(a) => transcribe::run(a),
        Command::Features(a) => features::run(a),
        Command::Eval(a) => eval::run(a),
        Command::EvalCheck(a) => eval_check::run(a),
        Command::Export(a) => export::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
