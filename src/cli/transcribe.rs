//! `voxtrace transcribe`: audio files to text with a Voxtral Realtime checkpoint (offline
//! greedy schedule; text printed per file, `--json` for ids, pieces, audio time and RTF).

use crate::models::voxtral::Voxtral;
use crate::models::voxtral::pipeline::{prepare_offline, transcribe_offline};
use crate::tokenizer::Tekken;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `voxtrace transcribe`.
#[derive(clap::Args, Debug)]
pub struct TranscribeArgs {
    /// Checkpoint folder with tekken.json (Mistral or HF layout).
    #[arg(long)]
    pub model: PathBuf,
    /// Audio files.
    #[arg(required = true)]
    pub audio: Vec<PathBuf>,
    /// Transcription delay in ms (multiple of 80).
    #[arg(long, default_value_t = 480.0)]
    pub delay_ms: f64,
    /// Print one JSON object per file: ids, text pieces with audio time (80 ms per step), RTF.
    #[arg(long)]
    pub json: bool,
    /// Compute device: flex (default), ndarray or wgpu when compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// Run `voxtrace transcribe`.
///
/// # Errors
/// Unreadable model or tokenizer. A bad audio file is reported on stderr and makes the exit
/// code 2 after the other files were transcribed.
pub fn run(args: &TranscribeArgs) -> anyhow::Result<ExitCode> {
    let device = super::device(&args.device)?;
    let model = Voxtral::load(&args.model, &device)?;
    let tok = Tekken::from_file(args.model.join("tekken.json"))?;
    let mut failed = false;
    for path in &args.audio {
        let t0 = Instant::now();
        let result = crate::audio::load_mono_16k(path)
            .map_err(anyhow::Error::from)
            .and_then(|s| {
                let inp = prepare_offline(&s, &tok, args.delay_ms, &device)?;
                let (g, text) = transcribe_offline(&model, &tok, &inp)?;
                Ok((s.len(), inp, g, text))
            });
        match result {
            Err(e) => {
                failed = true;
                eprintln!("{}: {e:#}", path.display());
            }
            Ok((n_samples, inp, g, text)) => {
                let secs = t0.elapsed().as_secs_f64();
                let audio_s = n_samples as f64 / 16_000.0;
                if args.json {
                    let pieces: Vec<serde_json::Value> = g
                        .generated()
                        .iter()
                        .enumerate()
                        .map(|(k, &id)| {
                            let piece = tok
                                .token_bytes(id as u32)
                                .map(|b| String::from_utf8_lossy(b).into_owned())
                                .unwrap_or_default();
                            // Token k of the output is decided at position prompt_len - 1 + k,
                            // i.e. after that many 80 ms steps of (padded) audio.
                            let pos = g.prompt_len - 1 + k;
                            serde_json::json!({"id": id, "piece": piece, "audio_ms": pos * 80})
                        })
                        .collect();
                    let obj = serde_json::json!({
                        "file": path.display().to_string(),
                        "text": text,
                        "tokens": pieces,
                        "audio_tokens": inp.n_tokens,
                        "audio_seconds": audio_s,
                        "seconds": secs,
                        "rtf": secs / audio_s.max(1e-9),
                    });
                    println!("{obj}");
                } else {
                    println!("{}\t{}", path.display(), text.trim());
                }
            }
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
