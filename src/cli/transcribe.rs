//! `voxtrace transcribe`: audio files to text with a Voxtral Realtime checkpoint.
//!
//! Default: the streaming schedule (80 ms steps, bounded memory: files are decoded, resampled to
//! 16 kHz and transcribed chunk by chunk), text printed as it is decoded.
//! `--offline`: the whole-file schedule. `--json`: one object per file with ids, text pieces,
//! audio time (80 ms per step), the real-time factor and where the time went (`load_s` once per
//! process; streaming: `encoder_s` = log-mel + encoder + adapter, `prefill_s`, `step_ms_p50` /
//! `step_ms_p95` over the decoder steps, wall clock). `--quant q8_0|q4_0`:
//! linear layers packed in GGUF blocks and multiplied by `nn::qmatmul`'s kernels.
//!
//! Whisper folders are transcribed long-form with timestamps
//! ([`crate::models::whisper::transcribe_long`], as openai-whisper / faster-whisper
//! `transcribe`), any length; `--format text|json|srt|vtt` renders the same segments.

use crate::audio::{AudioConfig, StreamResampler, TARGET_SAMPLE_RATE, open_chunks};
use crate::models::voxtral::pipeline::{prepare_offline, transcribe_offline};
use crate::models::voxtral::streaming::{StreamTimings, StreamingSession};
use crate::models::voxtral::{PromptTokens, Voxtral, streaming_prompt};
use crate::tokenizer::Tekken;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `voxtrace transcribe`.
#[derive(clap::Args, Debug)]
pub struct TranscribeArgs {
    /// Checkpoint: a Voxtral Realtime folder (Mistral or HF layout) or voxtral.cpp GGUF file,
    /// or a Whisper folder (CTranslate2 `model.bin` + `tokenizer.json` + `config.json`, or
    /// transformers).
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
    /// Print one JSON object per file: ids, text pieces with audio time, RTF (Voxtral); text
    /// and timestamped segments (Whisper). Same as `--format json`.
    #[arg(long)]
    pub json: bool,
    /// Output format: `text` (`FILE<TAB>TEXT` per file), `json` (as `--json`), or, Whisper
    /// only and one audio file, `srt` / `vtt` subtitles of the timestamped segments.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Whisper only: do not prompt each 30 s window with the previous windows' text
    /// (upstream's `condition_on_previous_text=False`).
    #[arg(long)]
    pub no_condition_on_previous_text: bool,
    /// Compute device: flex (default), ndarray or wgpu when compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Voxtral streaming: most audio tokens (80 ms each) the encoder takes in one call when
    /// that much audio is waiting (a file is read in pieces of this many tokens). 1 is the
    /// one-token (8 mel frames) schedule; tokens are identical either way.
    #[arg(long, default_value_t = crate::models::voxtral::streaming::DEFAULT_ENCODER_CHUNK as u64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub encoder_chunk: u64,
    /// Pack the linear layers as q8_0 or q4_0 (GGUF blocks, own kernels; see
    /// `nn::qlinear` for what stays f32). Default: f32 as stored.
    #[arg(long)]
    pub quant: Option<crate::nn::qmatmul::QuantKind>,
    /// Voxtral: how BF16 linear layers compute. `f32` (default) widens the weights and keeps
    /// the activations f32; `bf16` rounds the activations to bf16 and uses AVX-512 BF16 dot
    /// products (as PyTorch's BF16 model does on CPU; about 2x the multiply-adds of f32 in
    /// the batched encoder and the prefill). Needs BF16 weights and AVX512_BF16, else an
    /// error.
    #[arg(long, default_value = "f32")]
    pub compute: crate::nn::half::HalfCompute,
}

/// `voxtrace transcribe --format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// `FILE<TAB>TEXT` per file.
    Text,
    /// One JSON object per file.
    Json,
    /// SubRip subtitles (Whisper, one file).
    Srt,
    /// WebVTT subtitles (Whisper, one file).
    Vtt,
}

struct Outcome {
    sequence: Vec<i64>,
    prompt_len: usize,
    text: String,
    audio_seconds: f64,
    /// Largest (encoder, decoder) KV cache lengths seen, in positions (streaming only).
    max_caches: Option<(usize, usize)>,
    /// Wall time by phase (streaming only).
    timings: Option<StreamTimings>,
}

/// One `--json` line of the Voxtral path.
#[derive(serde::Serialize)]
struct JsonLine<'a> {
    file: String,
    schedule: &'static str,
    text: &'a str,
    ids: &'a [i64],
    prompt_len: usize,
    tokens: TokenPieces<'a>,
    audio_seconds: f64,
    seconds: f64,
    rtf: f64,
    /// Model load (once per process, before the first file), seconds.
    load_s: f64,
    /// Streaming phases: log-mel + encoder + adapter, the prompt prefill, decoder steps.
    encoder_s: Option<f64>,
    prefill_s: Option<f64>,
    step_ms_p50: Option<f64>,
    step_ms_p95: Option<f64>,
    steps: Option<usize>,
    /// Weight bytes a decoder step reads, as stored (`Voxtral::decoder_step_weight_bytes`).
    decoder_step_weight_bytes: usize,
    /// Storage of the decoder's linear weights and of the token table (`bf16`, `q4_0`, ...).
    precision: String,
    max_cache_positions: Option<CachePositions>,
}

/// Largest KV cache lengths seen in a streaming run, and the windows bounding them (positions).
#[derive(serde::Serialize)]
struct CachePositions {
    encoder: usize,
    decoder: usize,
    encoder_window: usize,
    decoder_window: usize,
}

/// Output tokens as `{"id", "piece", "audio_ms"}` objects, serialised lazily.
struct TokenPieces<'a> {
    tok: &'a Tekken,
    ids: &'a [i64],
    prompt_len: usize,
}

impl serde::Serialize for TokenPieces<'_> {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        #[derive(serde::Serialize)]
        struct Piece<'p> {
            id: i64,
            piece: std::borrow::Cow<'p, str>,
            audio_ms: usize,
        }
        let mut seq = ser.serialize_seq(Some(self.ids.len()))?;
        for (k, &id) in self.ids.iter().enumerate() {
            let piece = self
                .tok
                .token_bytes(id as u32)
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            // Output token k is decided after audio token prompt_len - 1 + k, i.e. after that
            // many 80 ms steps of the padded stream.
            let audio_ms = (self.prompt_len - 1 + k) * 80;
            seq.serialize_element(&Piece {
                id,
                piece,
                audio_ms,
            })?;
        }
        seq.end()
    }
}

/// Run `voxtrace transcribe`.
///
/// # Errors
/// Unreadable model or tokenizer. A bad audio file is reported on stderr (naming the file) and
/// makes the exit code 2 after the other files were transcribed.
pub fn run(args: &TranscribeArgs) -> anyhow::Result<ExitCode> {
    let device = super::device(&args.device)?;
    let format = if args.json {
        OutputFormat::Json
    } else {
        args.format
    };
    if crate::models::whisper::is_whisper_dir(&args.model) {
        return run_whisper(args, format, &device);
    }
    if matches!(format, OutputFormat::Srt | OutputFormat::Vtt) {
        anyhow::bail!(
            "{}: --format srt/vtt needs timestamped segments, which only Whisper gives (this is not a Whisper folder)",
            args.model.display()
        );
    }
    let json = format == OutputFormat::Json;
    let t_load = Instant::now();
    let (mut model, tok) = Voxtral::open(&args.model, args.tokenizer.as_deref(), &device)?;
    if let Some(q) = args.quant {
        model
            .quantize(q)
            .map_err(|e| anyhow::anyhow!("{}: --quant {}: {e}", args.model.display(), q.name()))?;
    }
    if args.compute == crate::nn::half::HalfCompute::Bf16 && model.set_compute(args.compute) == 0 {
        anyhow::bail!(
            "{}: --compute bf16 needs BF16 linear weights (this model's are {}) and a CPU with \
             AVX512_BF16 (present: {})",
            args.model.display(),
            model
                .net
                .model
                .language_model
                .layers
                .first()
                .map_or("none", |l| l.self_attn.q_proj.precision()),
            crate::nn::half::bf16_compute_available()
        );
    }
    let load_s = t_load.elapsed().as_secs_f64();
    let precision = {
        let lm = &model.net.model.language_model;
        let linear = lm
            .layers
            .first()
            .map_or("none", |l| l.self_attn.q_proj.precision());
        format!(
            "linears {linear}, token table {}, compute {}",
            lm.embed_tokens.precision(),
            args.compute.name()
        )
    };
    let mut failed = false;
    for path in &args.audio {
        let t0 = Instant::now();
        // Whether a streaming `FILE<TAB>` line was started on stdout (text mode).
        let mut line_open = false;
        let result = if args.offline {
            offline(&model, &tok, path, args.delay_ms, &device)
        } else {
            let print = (!json).then_some(&mut line_open);
            streaming(&model, &tok, path, args, print, &device)
        };
        match result {
            Err(e) => {
                failed = true;
                if line_open {
                    // End the partial line so the next file's starts a line of its own.
                    println!();
                }
                report_error(path, &e);
            }
            Ok(o) => {
                let secs = t0.elapsed().as_secs_f64();
                if json {
                    let line = JsonLine {
                        file: path.display().to_string(),
                        schedule: if args.offline { "offline" } else { "streaming" },
                        text: &o.text,
                        ids: &o.sequence,
                        prompt_len: o.prompt_len,
                        tokens: TokenPieces {
                            tok: &tok,
                            ids: &o.sequence[o.prompt_len..],
                            prompt_len: o.prompt_len,
                        },
                        audio_seconds: o.audio_seconds,
                        seconds: secs,
                        rtf: secs / o.audio_seconds.max(1e-9),
                        load_s,
                        encoder_s: o.timings.as_ref().map(|t| t.encoder_s),
                        prefill_s: o.timings.as_ref().map(|t| t.prefill_s),
                        step_ms_p50: o.timings.as_ref().and_then(|t| t.step_ms_quantile(0.5)),
                        step_ms_p95: o.timings.as_ref().and_then(|t| t.step_ms_quantile(0.95)),
                        steps: o.timings.as_ref().map(|t| t.steps_ms.len()),
                        decoder_step_weight_bytes: model.decoder_step_weight_bytes(),
                        precision: precision.clone(),
                        max_cache_positions: o.max_caches.map(|(e, d)| CachePositions {
                            encoder: e,
                            decoder: d,
                            encoder_window: model.config.encoder.sliding_window,
                            decoder_window: model.config.decoder.sliding_window,
                        }),
                    };
                    // Serialised straight to stdout: a 2-hour file has ~90 000 tokens, and a
                    // `serde_json::Value` tree of them would cost ~1.5 kB each.
                    let mut out = std::io::stdout().lock();
                    serde_json::to_writer(&mut out, &line)?;
                    writeln!(out)?;
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
        max_caches: None,
        timings: None,
    })
}

/// Streaming transcription of one file. With `line_open` (text mode), text is printed as it is
/// decoded on a `FILE<TAB>` line, started once the file opened and set to `true` then; the line
/// is ended here on success, by the caller on an error.
fn streaming(
    model: &Voxtral,
    tok: &Tekken,
    path: &Path,
    args: &TranscribeArgs,
    line_open: Option<&mut bool>,
    device: &burn::tensor::Device,
) -> anyhow::Result<Outcome> {
    let cfg = tok
        .audio()
        .cloned()
        .unwrap_or_else(AudioConfig::voxtral_realtime);
    let delay_ms = args.delay_ms;
    let tokens = PromptTokens::from_tekken(tok)?;
    let prompt = streaming_prompt(&tokens, &cfg, Some(delay_ms))?;
    let mut session = StreamingSession::new(
        model,
        cfg,
        prompt.ids,
        prompt.delay_tokens,
        Some(tokens.eos),
        device,
    )?;
    session.set_encoder_chunk(args.encoder_chunk as usize);
    let mut decoder = tok.streaming_decoder();
    let mut text = String::new();
    let mut stdout = std::io::stdout();
    let print = line_open.is_some();
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
    // Decode, resample and transcribe chunk by chunk: memory stays bounded for any file length.
    // At most 4096 (checked by clap).
    let encoder_chunk = args.encoder_chunk as usize;
    let chunks = open_chunks(path, 1280 * encoder_chunk)?;
    let mut resampler = StreamResampler::new(chunks.sample_rate(), TARGET_SAMPLE_RATE)?;
    if let Some(open) = line_open {
        print!("{}\t", path.display());
        *open = true;
    }
    let mut n_samples = 0usize;
    let mut max_caches = (0usize, 0usize);
    let mut feed = |samples: &[f32],
                    session: &mut StreamingSession,
                    text: &mut String|
     -> anyhow::Result<()> {
        n_samples += samples.len();
        emit(session.push(samples)?, text)?;
        let (e, d) = session.cache_lengths();
        max_caches = (max_caches.0.max(e), max_caches.1.max(d));
        Ok(())
    };
    for chunk in chunks {
        let chunk = resampler.push(&chunk?)?;
        feed(&chunk, &mut session, &mut text)?;
        if session.is_done() {
            break;
        }
    }
    if !session.is_done() {
        let rest = resampler.finish()?;
        feed(&rest, &mut session, &mut text)?;
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
        max_caches: Some(max_caches),
        timings: Some(session.timings().clone()),
    })
}

/// Prints a per-file error on stderr as `FILE: cause`, without repeating the file when the
/// cause already starts with it.
fn report_error(path: &Path, e: &anyhow::Error) {
    let msg = format!("{e:#}");
    let p = path.display().to_string();
    if msg.starts_with(&p) {
        eprintln!("{msg}");
    } else {
        eprintln!("{p}: {msg}");
    }
}

/// Whisper tiny.en (CTranslate2 or transformers folder): long-form greedy decoding with
/// timestamps ([`crate::models::whisper::transcribe_long`]), rendered as `format`.
fn run_whisper(
    args: &TranscribeArgs,
    format: OutputFormat,
    device: &burn::tensor::Device,
) -> anyhow::Result<ExitCode> {
    use crate::models::whisper::{
        LongFormOptions, Whisper, segments_text, subtitles, transcribe_long,
    };
    use crate::tokenizer::WhisperTokenizer;
    if matches!(format, OutputFormat::Srt | OutputFormat::Vtt) && args.audio.len() != 1 {
        anyhow::bail!(
            "--format srt/vtt writes the subtitles of one audio file; {} files given",
            args.audio.len()
        );
    }
    let mut model = Whisper::load(&args.model, device)?;
    if let Some(q) = args.quant {
        model
            .quantize(q)
            .map_err(|e| anyhow::anyhow!("{}: --quant {}: {e}", args.model.display(), q.name()))?;
    }
    let tok_path = args
        .tokenizer
        .clone()
        .unwrap_or_else(|| args.model.join("tokenizer.json"));
    let tok = WhisperTokenizer::from_file(&tok_path)?;
    let opts = LongFormOptions {
        condition_on_previous_text: !args.no_condition_on_previous_text,
        ..LongFormOptions::default()
    };
    let mut failed = false;
    for path in &args.audio {
        let t0 = Instant::now();
        let result = crate::audio::load_mono_16k(path)
            .map_err(anyhow::Error::from)
            .and_then(|s| Ok((s.len(), transcribe_long(&model, &tok, &s, &opts, device)?)));
        match result {
            Err(e) => {
                failed = true;
                report_error(path, &e);
            }
            Ok((n, segments)) => {
                let secs = t0.elapsed().as_secs_f64();
                let audio_s = n as f64 / f64::from(TARGET_SAMPLE_RATE);
                let text = segments_text(&segments);
                let mut out = std::io::stdout().lock();
                match format {
                    OutputFormat::Json => {
                        let obj = serde_json::json!({
                            "file": path.display().to_string(),
                            "model": "whisper",
                            "quant": args.quant.map_or("f32", |q| q.name()),
                            "condition_on_previous_text": opts.condition_on_previous_text,
                            "text": text,
                            "segments": segments,
                            "audio_seconds": audio_s,
                            "seconds": secs,
                            "rtf": secs / audio_s.max(1e-9),
                        });
                        writeln!(out, "{obj}")?;
                    }
                    OutputFormat::Text => writeln!(out, "{}\t{text}", path.display())?,
                    OutputFormat::Srt => write!(out, "{}", subtitles::to_srt(&segments))?,
                    OutputFormat::Vtt => write!(out, "{}", subtitles::to_vtt(&segments))?,
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
