//! `voxtrace serve`: argument parsing for the OpenAI-compatible server in [`crate::serve`].

use std::process::ExitCode;
use std::time::Duration;

use crate::serve::{ServeConfig, parse_model_arg};

/// Arguments of `voxtrace serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// A model to serve: PATH (its id is the folder or file name) or NAME=PATH; Whisper
    /// (CTranslate2 or transformers folder, or a Whisper GGUF file) or Voxtral Realtime (folder
    /// with tekken.json, or a voxtral.cpp GGUF file). Repeat for several.
    #[arg(long = "model", required = true)]
    pub models: Vec<String>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port; 0 picks a free one (the bound address is printed on stdout).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// Compute device: flex (default), ndarray or wgpu when compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Voxtral transcription delay in ms (multiple of 80).
    #[arg(long, default_value_t = 480.0)]
    pub delay_ms: f64,
    /// Largest request body (and realtime utterance of PCM16), MiB.
    #[arg(long, default_value_t = 100)]
    pub max_upload_mb: usize,
    /// Transcriptions run at once (each on its own blocking thread).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Admitted requests that may wait for a worker; beyond them requests get 429.
    #[arg(long, default_value_t = 8)]
    pub max_queue: usize,
    /// Time limit of one transcription request (upload, wait and inference), seconds.
    #[arg(long, default_value_t = 600.0, value_parser = parse_seconds)]
    pub request_timeout: f64,
    /// After SIGTERM / Ctrl-C, longest wait for requests in progress, seconds.
    #[arg(long, default_value_t = 30.0, value_parser = parse_seconds)]
    pub shutdown_grace: f64,
}

/// A finite number of seconds in (0, 86400].
fn parse_seconds(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(v),
        _ => Err(format!("{s:?} is not a number of seconds in (0, 86400]")),
    }
}

/// Run `voxtrace serve` until SIGTERM / Ctrl-C.
///
/// # Errors
/// A bad `--model`, a model that cannot be loaded, an address that cannot be bound.
pub fn run(args: &ServeArgs) -> anyhow::Result<ExitCode> {
    let models = args
        .models
        .iter()
        .map(|m| parse_model_arg(m))
        .collect::<Result<Vec<_>, _>>()?;
    let max_upload_bytes = args
        .max_upload_mb
        .checked_mul(1 << 20)
        .filter(|&b| b > 0)
        .ok_or_else(|| anyhow::anyhow!("--max-upload-mb {} is out of range", args.max_upload_mb))?;
    crate::serve::run(ServeConfig {
        models,
        host: args.host.clone(),
        port: args.port,
        device: args.device.clone(),
        delay_ms: args.delay_ms,
        max_upload_bytes,
        workers: args.workers.max(1),
        max_queue: args.max_queue,
        request_timeout: Duration::from_secs_f64(args.request_timeout),
        shutdown_grace: Duration::from_secs_f64(args.shutdown_grace),
    })?;
    Ok(ExitCode::SUCCESS)
}
