//! `verify-real`: does the port reproduce a checkpoint's published outputs?
//!
//! A golden folder (format in [`golden`]; the default one holds the real Voxtral Mini 4B
//! Realtime's outputs on three LibriSpeech clips, from MrShitFox/voxtral.cpp `samples/`) is
//! checked clip by clip against the port's **streaming** decode (80 ms steps, as
//! `voxtrace transcribe`):
//!
//! * generated ids position by position: common prefix, both lengths, the first diverging
//!   position with both ids decoded and the port's logit margin there;
//! * the first generated position's logits against `first_logits_32` (max |diff|, pass with
//!   `allclose(atol 1e-2, rtol 1e-2)` as voxtral.cpp's harness), and the SHA-256 of the whole
//!   vector (reported: equal or not);
//! * the text against the `.txt` reference (WER, eval's Whisper English normaliser).
//!
//! A clip passes when its ids and first logits match. The golden records hold one id per audio
//! token from the prompt's last on ([`TokenBudget::EveryAudioToken`], `N - 38` ids for the
//! 39-token prompt), one more than transformers' `generate` returns; that is the default
//! budget here.
//!
//! Models: a Voxtral checkpoint folder in Mistral or HF layout, or a voxtral.cpp GGUF file
//! ([`load_model`]).

pub mod golden;

pub use golden::{ClipReport, GoldenClip, GoldenRecord, PortRun, Tolerance, read_golden_dir};

use crate::audio::{AudioConfig, AudioError};
use crate::models::checkpoint::CheckpointError;
use crate::models::voxtral::streaming::{StreamingSession, TokenBudget};
use crate::models::voxtral::{PromptTokens, Voxtral, streaming_prompt};
use crate::tokenizer::{Tekken, TekkenError};
use burn::tensor::Device;
use std::cell::RefCell;
use std::path::{Path, PathBuf};

/// Errors that stop a verification (the CLI's exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// A file or folder cannot be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A golden record or reference is malformed.
    #[error("{}: bad golden file: {cause}", path.display())]
    Golden {
        /// The file (or folder).
        path: PathBuf,
        /// What is wrong.
        cause: String,
    },
    /// A clip's audio is missing.
    #[error("clip {clip}: audio {} not found", path.display())]
    MissingAudio {
        /// Clip id.
        clip: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The model cannot be loaded.
    #[error(transparent)]
    Model(#[from] CheckpointError),
    /// A model format recognised but not loadable (yet).
    #[error("{}: {cause}", path.display())]
    Unsupported {
        /// The model path.
        path: PathBuf,
        /// Why.
        cause: String,
    },
    /// Tokenizer file or id problem.
    #[error(transparent)]
    Tokenizer(#[from] TekkenError),
    /// Audio decoding or streaming settings.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// Record and model disagree in shape (e.g. more golden logits than vocabulary).
    #[error("{0}")]
    Shape(String),
}

/// What a model path holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A checkpoint folder (Mistral or HF layout).
    Folder(PathBuf),
    /// A GGUF file (voxtral.cpp / llama.cpp style).
    Gguf(PathBuf),
}

impl ModelSource {
    /// Classify `path`: a folder, or a file ending in `.gguf`.
    ///
    /// # Errors
    /// [`VerifyError::Unsupported`] for any other file, [`VerifyError::Io`] when it does not exist.
    pub fn of(path: &Path) -> Result<Self, VerifyError> {
        let meta = std::fs::metadata(path).map_err(|e| VerifyError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        if meta.is_dir() {
            Ok(Self::Folder(path.to_path_buf()))
        } else if path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Ok(Self::Gguf(path.to_path_buf()))
        } else {
            Err(VerifyError::Unsupported {
                path: path.to_path_buf(),
                cause: "not a checkpoint folder (Mistral: consolidated.safetensors + params.json; \
                        HF: model.safetensors + config.json) nor a .gguf file"
                    .into(),
            })
        }
    }
}

/// Load the model at `path` (see [`ModelSource`]) with its tokenizer: a folder's
/// `tekken.json`, or the tokenizer a voxtral.cpp GGUF carries ([`Voxtral::open`]); `tokenizer`
/// overrides either.
///
/// # Errors
/// [`VerifyError::Model`] for a bad folder or GGUF file (naming the file and cause).
pub fn load_model(
    path: &Path,
    tokenizer: Option<&Path>,
    device: &Device,
) -> Result<(Voxtral, Tekken), VerifyError> {
    match ModelSource::of(path)? {
        ModelSource::Folder(dir) => Ok(Voxtral::open(&dir, tokenizer, device)?),
        ModelSource::Gguf(file) => Ok(Voxtral::open(&file, tokenizer, device)?),
    }
}

/// How to run the port on each clip.
#[derive(Debug, Clone, Copy)]
pub struct RunOptions {
    /// Transcription delay in ms (the released model's 480).
    pub delay_ms: f64,
    /// How many ids to generate at the end of the audio.
    pub budget: TokenBudget,
    /// Samples per `push` (the streaming chunk size; 1280 = one 80 ms step).
    pub chunk: usize,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            delay_ms: 480.0,
            budget: TokenBudget::EveryAudioToken,
            chunk: 1280,
        }
    }
}

#[derive(Default)]
struct Recorder {
    first: Vec<f32>,
    golden: Vec<Option<f32>>,
    top: Vec<f32>,
}

/// Streaming decode of 16 kHz mono `samples`, recording what [`golden::compare_clip`] needs:
/// the whole first-position logits, and per position the port's top logit and its logit of
/// `golden_tokens[i]`.
///
/// # Errors
/// Tokenizer without the prompt's control tokens, bad audio settings, non-finite samples.
pub fn run_port(
    model: &Voxtral,
    tok: &Tekken,
    samples: &[f32],
    golden_tokens: &[i64],
    opts: RunOptions,
    device: &Device,
) -> Result<PortRun, VerifyError> {
    let cfg = tok
        .audio()
        .cloned()
        .unwrap_or_else(AudioConfig::voxtral_realtime);
    let tokens = PromptTokens::from_tekken(tok)?;
    let prompt = streaming_prompt(&tokens, &cfg, Some(opts.delay_ms))?;
    let prompt_len = prompt.ids.len();
    let rec = RefCell::new(Recorder::default());
    let mut session = StreamingSession::new(
        model,
        cfg,
        prompt.ids,
        prompt.delay_tokens,
        Some(tokens.eos),
        device,
    )?;
    session.set_token_budget(opts.budget);
    session.observe_logits(Box::new(|i, logits: &[f32]| {
        let mut r = rec.borrow_mut();
        if i == 0 {
            r.first = logits.to_vec();
        }
        let g = golden_tokens
            .get(i)
            .and_then(|&id| usize::try_from(id).ok())
            .and_then(|id| logits.get(id).copied());
        r.golden.push(g);
        r.top
            .push(logits.iter().copied().fold(f32::NEG_INFINITY, f32::max));
    }));
    for c in samples.chunks(opts.chunk.max(1)) {
        session.push(c)?;
        if session.is_done() {
            break;
        }
    }
    session.finish(opts.delay_ms)?;
    let generated = session.sequence()[prompt_len..].to_vec();
    drop(session);
    let r = rec.into_inner();
    Ok(PortRun {
        tokens: generated,
        first_logits: r.first,
        golden_logits: r.golden,
        top_logits: r.top,
        prompt_len,
    })
}

/// Load `clip`'s audio, run the port and compare.
///
/// # Errors
/// Unreadable audio, see [`run_port`] and [`golden::compare_clip`].
pub fn verify_clip(
    model: &Voxtral,
    tok: &Tekken,
    clip: &GoldenClip,
    opts: RunOptions,
    tol: Tolerance,
    device: &Device,
) -> Result<ClipReport, VerifyError> {
    let samples = crate::audio::load_mono_16k(&clip.audio)?;
    let run = run_port(model, tok, &samples, &clip.record.tokens, opts, device)?;
    golden::compare_clip(clip, &run, tok, tol)
}
