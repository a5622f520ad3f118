//! `voxtrace transcribe`: audio files to text with a Voxtral Realtime checkpoint.
//!
//! Default: the streaming schedule (80 ms steps, bounded memory; 16 kHz files are decoded chunk
//! by chunk, other rates are decoded and resampled whole), text printed as it is decoded.
//! `--offline`: the whole-file schedule. `--json`: one object per file with ids, text pieces,
//! audio time (80 ms per step) and the real-time factor.

use crate::audio::{AudioConfig, TARGET_SAMPLE_RATE, open_chunks};
use crate::models::voxtral::Voxtral;
use crate::models::voxtral::pipeline::{prepare_offline, transcribe_offline};
use crate::models::voxtral::streaming::StreamingSession;
use crate::tokenizer::Tekken;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `voxtrace transcribe`.
#[derive(clap::Args, Debug)]
pub struct TranscribeArgs {
    /// Checkpoint folder: Voxtral Realtime (Mistral or HF layout) or Whisper (CTranslate2
    /// `model.bin` + `tokenizer.json` + `config.json`, or transformers).
    #[arg(long)]
    pub model: PathBuf,
    /// Audio files.
    #[arg(required = true)]
    pub audio: Vec<PathBuf>,
    /// Tekken tokenizer (default: MODEL/tekken.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Transcription delay in ms (multiple of 80).
    #[arg(long, default_value_t = 480.0)]
    pub delay_ms: f64,
    /// Whole-file schedule instead of streaming.
    #[arg(long)]
    pub offline: bool,
    /// Print one JSON object per file: ids, text pieces with audio time, RTF.
    #[arg(long)]
    pub json: bool,
    /// Compute device: flex (default), ndarray or wgpu when compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

struct Outcome {
    sequence: Vec<i64>,
    prompt_len: usize,
    text: String,
    audio_seconds: f64,
}

/// Run `voxtrace transcribe`.
///
/// # Errors
/// Unreadable model or tokenizer. A bad audio file is reported on stderr (naming the file) and
/// makes the exit code 2 after the other files were transcribed.
pub fn run(args: &TranscribeArgs) -> anyhow::Result<ExitCode> {
    let device = super::device(&args.device)?;
    if crate::models::whisper::is_whisper_dir(&args.model) {
        return run_whisper(args, &device);
    }
    let model = Voxtral::load(&args.model, &device)?;
    let tok_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| args.model.join("tekken.json"));
    let tok = Tekken::from_file(&tok_path)?;
    let mut failed = false;
    for path in &args.audio {
        let t0 = Instant::now();
        let result = if args.offline {
            offline(&model, &tok, path, args.delay_ms, &device)
        } else {
            streaming(&model, &tok, path, args.delay_ms, !args.json, &device)
        };
        match result {
            Err(e) => {
                failed = true;
                eprintln!("{}: {e:#}", path.display());
            }
            Ok(o) => {
                let secs = t0.elapsed().as_secs_f64();
                if args.json {
                    let pieces: Vec<serde_json::Value> = o.sequence[o.prompt_len..]
                        .iter()
                        .enumerate()
                        .map(|(k, &id)| {
                            let piece = tok
                                .token_bytes(id as u32)
                                .map(|b| String::from_utf8_lossy(b).into_owned())
                                .unwrap_or_default();
                            // Output token k is decided after audio token prompt_len - 1 + k,
                            // i.e. after that many 80 ms steps of the padded stream.
                            let step = o.prompt_len - 1 + k;
                            serde_json::json!({"id": id, "piece": piece, "audio_ms": step * 80})
                        })
                        .collect();
                    let obj = serde_json::json!({
                        "file": path.display().to_string(),
                        "schedule": if args.offline { "offline" } else { "streaming" },
                        "text": o.text,
                        "ids": o.sequence,
                        "prompt_len": o.prompt_len,
                        "tokens": pieces,
                        "audio_seconds": o.audio_seconds,
                        "seconds": secs,
                        "rtf": secs / o.audio_seconds.max(1e-9),
                    });
                    println!("{obj}");
                } else if args.offline {
                    println!("{}\t{}", path.display(), o.text.trim());
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

fn offline(
    model: &Voxtral,
    tok: &Tekken,
    path: &Path,
    delay_ms: f64,
    device: &burn::tensor::Device,
) -> anyhow::Result<Outcome> {
    let samples = crate::audio::load_mono_16k(path)?;
    let inp = prepare_offline(&samples, tok, delay_ms, device)?;
    let (g, text) = transcribe_offline(model, tok, &inp)?;
    Ok(Outcome {
        prompt_len: g.prompt_len,
        sequence: g.sequence,
        text,
        audio_seconds: samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE),
    })
}

fn streaming(
    model: &Voxtral,
    tok: &Tekken,
    path: &Path,
    delay_ms: f64,
    print: bool,
    device: &burn::tensor::Device,
) -> anyhow::Result<Outcome> {
    let cfg = tok
        .audio()
        .cloned()
        .unwrap_or_else(AudioConfig::voxtral_realtime);
    let delay = cfg.n_delay_tokens(Some(delay_ms))?;
    let mut prompt = vec![tok.bos_id()? as i64];
    prompt.extend(std::iter::repeat_n(
        tok.streaming_pad_id()? as i64,
        cfg.n_left_pad_tokens()? + delay,
    ));
    let mut session = StreamingSession::new(
        model,
        cfg,
        prompt,
        delay,
        Some(tok.eos_id()? as i64),
        device,
    )?;
    let mut decoder = tok.streaming_decoder();
    let mut text = String::new();
    let mut stdout = std::io::stdout();
    if print {
        print!("{}\t", path.display());
    }
    let mut emit = |ids: Vec<i64>, text: &mut String| -> anyhow::Result<()> {
        for id in ids {
            let piece = decoder.push(id as u32)?;
            if print {
                print!("{piece}");
                stdout.flush().ok();
            }
            text.push_str(&piece);
        }
        Ok(())
    };
    let mut n_samples = 0usize;
    let chunks = open_chunks(path, 1280)?;
    if chunks.sample_rate() == TARGET_SAMPLE_RATE {
        for chunk in chunks {
            let chunk = chunk?;
            n_samples += chunk.len();
            emit(session.push(&chunk)?, &mut text)?;
            if session.is_done() {
                break;
            }
        }
    } else {
        let samples = crate::audio::load_mono_16k(path)?;
        n_samples = samples.len();
        for chunk in samples.chunks(1280) {
            emit(session.push(chunk)?, &mut text)?;
        }
    }
    emit(session.finish(delay_ms)?, &mut text)?;
    let rest = decoder.finish();
    text.push_str(&rest);
    if print {
        println!("{rest}");
    }
    Ok(Outcome {
        sequence: session.sequence().to_vec(),
        prompt_len: session.prompt_len(),
        text,
        audio_seconds: n_samples as f64 / f64::from(TARGET_SAMPLE_RATE),
    })
}

/// Whisper tiny.en (CTranslate2 or transformers folder): greedy, 30 s windows.
fn run_whisper(args: &TranscribeArgs, device: &burn::tensor::Device) -> anyhow::Result<ExitCode> {
    use crate::models::whisper::{Whisper, WhisperTokenizer};
    let model = Whisper::load(&args.model, device)?;
    let tok_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| args.model.join("tokenizer.json"));
    let tok = WhisperTokenizer::from_file(&tok_path)?;
    let mut failed = false;
    for path in &args.audio {
        let t0 = Instant::now();
        let result = crate::audio::load_mono_16k(path)
            .map_err(anyhow::Error::from)
            .and_then(|s| Ok((s.len(), model.transcribe(&s, &tok, device)?)));
        match result {
            Err(e) => {
                failed = true;
                eprintln!("{}: {e:#}", path.display());
            }
            Ok((n, t)) => {
                let secs = t0.elapsed().as_secs_f64();
                let audio_s = n as f64 / f64::from(TARGET_SAMPLE_RATE);
                if args.json {
                    let windows: Vec<serde_json::Value> = t
                        .windows
                        .iter()
                        .map(|w| serde_json::json!({"start_s": w.start_s, "tokens": w.output.token_ids, "text": w.text}))
                        .collect();
                    let obj = serde_json::json!({
                        "file": path.display().to_string(),
                        "model": "whisper",
                        "text": t.text,
                        "windows": windows,
                        "audio_seconds": audio_s,
                        "seconds": secs,
                        "rtf": secs / audio_s.max(1e-9),
                    });
                    println!("{obj}");
                } else {
                    println!("{}\t{}", path.display(), t.text);
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
