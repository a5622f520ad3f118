//! The `voxtrace` command line: one subcommand per job, each in its own file.

mod bench;
pub mod compare;
mod eval;
mod eval_check;
mod eval_merge;
mod export;
pub mod features;
mod quantize;
mod serve;
mod trace;
mod transcribe;
mod verify_real;

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
    /// Merge the shard runs of `eval --shard K/N` into the run a single pass over the corpus gives.
    EvalMerge(eval_merge::EvalMergeArgs),
    /// Export a model part's forward graph to ONNX (and a Model Explorer JSON graph).
    Export(export::ExportArgs),
    /// Serve models over HTTP: OpenAI's /v1/audio/transcriptions, /v1/models, /health, and vLLM's /v1/realtime websocket (Voxtral).
    Serve(serve::ServeArgs),
    /// Check a Voxtral checkpoint against golden records of its outputs (ids, first logits, WER); exit 1 on a mismatch.
    VerifyReal(verify_real::VerifyRealArgs),
    /// Benchmark worker modes (run by `just bench` through the drivers in reference/).
    Bench(bench::BenchArgs),
    /// Write a checkpoint as GGUF (f32, f16, bf16, q8_0, q4_0) in voxtral.cpp's naming.
    Quantize(quantize::QuantizeArgs),
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
/// eval-check, verify-real) or an eval run scored nothing for some system, 2 could not run (bad input,
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
        Command::EvalMerge(a) => eval_merge::run(a),
        Command::Export(a) => export::run(a),
        Command::VerifyReal(a) => verify_real::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Quantize(a) => quantize::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
