//! Greedy decoding as transformers' `WhisperForConditionalGeneration.generate` does it for an
//! English-only model without timestamps (huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/generation_whisper.py> with `num_beams = 1`,
//! `do_sample = False`):
//!
//! * the decoder is fed the prompt `[<|startoftranscript|>, <|notimestamps|>]`
//!   (`[50257, 50362]` for tiny.en);
//! * at every step the logits of `suppress_tokens` are set to `-inf`
//!   (`SuppressTokensLogitsProcessor`), and at the first generated position also those of
//!   `begin_suppress_tokens` (`SuppressTokensAtBeginLogitsProcessor`, `begin_index` = prompt
//!   length); the next token is the first arg-max;
//! * decoding stops after `<|endoftext|>` (50256) or when the sequence (prompt included)
//!   reaches `max_length` (448) tokens.
//!
//! The decoder runs incrementally with a key/value cache (the cross-attention keys/values of
//! the encoder output are computed once per window), which gives the same logits as the
//! uncached forward up to f32 rounding.
//!
//! Audio longer than 30 s is cut into consecutive 30 s windows
//! ([`WHISPER_N_SAMPLES`] = 480,000 samples) that are transcribed independently and joined;
//! this is not transformers' sequential long-form
//! algorithm (which needs timestamps), so only audio up to 30 s is comparable token by token.
//! Fixed windows cut words at their edges (WER 62.8% on a 3 min recording of corpus clips,
//! `tests/whisper_longform.rs`); long audio goes through [`super::longform::transcribe_long`].

use super::config::GenerationSettings;
use super::loader::Whisper;
use super::model::{ForwardError, WhisperForConditionalGeneration};
use crate::audio::mel::{WHISPER_N_SAMPLES, whisper_log_mel};
use crate::tokenizer::{WhisperTokenizer, WhisperTokenizerError};
use crate::trace::Scope;
use burn::tensor::{Device, Int, Tensor, TensorData};
use web_time::Instant;

/// Errors of transcription.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Forward pass refused its input.
    #[error(transparent)]
    Forward(#[from] ForwardError),
    /// Feature extraction failed.
    #[error("log-mel features: {0}")]
    Features(String),
    /// Decoding the generated ids failed (names the tokenizer file).
    #[error(transparent)]
    Tokenizer(#[from] WhisperTokenizerError),
    /// The model returned non-finite logits.
    #[error("non-finite logits at decoder position {position}")]
    NonFinite {
        /// Decoder position.
        position: usize,
    },
    /// The settings cannot be used (empty prompt, prompt longer than `max_length`).
    #[error("invalid generation settings: {0}")]
    Settings(String),
}

/// Greedy decoding of one window.
#[derive(Debug, Clone, PartialEq)]
pub struct GreedyOutput {
    /// Full sequence: prompt, generated tokens, and `<|endoftext|>` if it was emitted.
    pub token_ids: Vec<u32>,
    /// Whether decoding ended on `<|endoftext|>` (else on `max_length`).
    pub stopped_on_eos: bool,
}

/// First index of the largest value (ties keep the lowest index, like `torch.argmax`).
/// Returns `None` if any value is NaN.
pub fn argmax(values: &[f32]) -> Option<usize> {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v.is_nan() {
            return None;
        }
        if v > values[best] {
            best = i;
        }
    }
    Some(best)
}

/// Apply the suppression of [`GenerationSettings`] to `logits [vocab]` for the token at
/// sequence index `index` (the first generated token has index `prompt.len()`).
pub fn suppress(logits: &mut [f32], settings: &GenerationSettings, index: usize) {
    for &t in &settings.suppress_tokens {
        if let Some(x) = logits.get_mut(t as usize) {
            *x = f32::NEG_INFINITY;
        }
    }
    if index == settings.prompt.len() {
        for &t in &settings.begin_suppress_tokens {
            if let Some(x) = logits.get_mut(t as usize) {
                *x = f32::NEG_INFINITY;
            }
        }
    }
}

fn ids_tensor(ids: &[u32], device: &Device) -> Tensor<2, Int> {
    let v: Vec<i64> = ids.iter().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(v, [1, ids.len()]), device)
}

/// Greedy decoding over the encoder output of one window.
///
/// # Shapes
/// `encoder_hidden_states [1, frames, d_model]` -> token ids (prompt included).
///
/// # Errors
/// [`DecodeError::Settings`] for an empty prompt or one not shorter than `max_length`,
/// [`DecodeError::NonFinite`] on NaN logits, [`DecodeError::Forward`] from the decoder.
pub fn greedy_decode(
    net: &WhisperForConditionalGeneration,
    encoder_hidden_states: &Tensor<3>,
    settings: &GenerationSettings,
) -> Result<GreedyOutput, DecodeError> {
    let prompt = &settings.prompt;
    if prompt.is_empty() || prompt.len() >= settings.max_length {
        return Err(DecodeError::Settings(format!(
            "prompt of {} tokens with max_length {}",
            prompt.len(),
            settings.max_length
        )));
    }
    let decoder = &net.model.decoder;
    let device = encoder_hidden_states.device();
    let mut cache = decoder.new_cache(encoder_hidden_states);
    let mut tokens = prompt.clone();
    let mut feed = prompt.clone();
    let mut pos0 = 0;
    loop {
        let hidden = decoder.forward(
            ids_tensor(&feed, &device),
            encoder_hidden_states,
            pos0,
            Some(&mut cache),
            &Scope::off(),
        )?;
        let [_, s, d] = hidden.dims();
        let last = hidden.narrow(1, s - 1, 1).reshape([1, 1, d]);
        let logits = net.proj_out(last, &Scope::off());
        let mut logits: Vec<f32> = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec()
            .map_err(|e| DecodeError::Settings(format!("logits readback: {e:?}")))?;
        suppress(&mut logits, settings, tokens.len());
        let next = argmax(&logits).ok_or(DecodeError::NonFinite {
            position: tokens.len() - 1,
        })? as u32;
        tokens.push(next);
        if next == settings.eos_token_id {
            return Ok(GreedyOutput {
                token_ids: tokens,
                stopped_on_eos: true,
            });
        }
        if tokens.len() >= settings.max_length {
            return Ok(GreedyOutput {
                token_ids: tokens,
                stopped_on_eos: false,
            });
        }
        pos0 += feed.len();
        feed = vec![next];
    }
}

/// One transcribed 30 s window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowTranscript {
    /// Start of the window in the audio, seconds.
    pub start_s: f64,
    /// Greedy output (prompt and EOT included).
    pub output: GreedyOutput,
    /// Text of the generated tokens, special tokens skipped, whitespace-trimmed.
    pub text: String,
    /// Wall time of the encoder forward, seconds.
    pub encode_s: f64,
    /// Wall time of the greedy decoder loop, seconds.
    pub decode_s: f64,
}

/// A transcription: windows and the joined text.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// Windows in time order.
    pub windows: Vec<WindowTranscript>,
    /// Window texts joined with a space.
    pub text: String,
}

/// Log-mel features of up to 30 s of 16 kHz mono `samples` (WhisperFeatureExtractor:
/// zero-padded or cut to [`WHISPER_N_SAMPLES`]).
///
/// # Shapes
/// `samples [n]` -> `[1, 80, 3000]` (`[1, n_mels, frames]`).
///
/// # Errors
/// [`DecodeError::Features`] from the feature extractor.
pub fn features(samples: &[f32], device: &Device) -> Result<Tensor<3>, DecodeError> {
    let mel = whisper_log_mel(samples).map_err(|e| DecodeError::Features(e.to_string()))?;
    let [m, f] = mel.shape();
    Ok(Tensor::from_data(
        TensorData::new(mel.data, [1, m, f]),
        device,
    ))
}

impl Whisper {
    /// Transcribe 16 kHz mono `samples` (any length; see the module docs for > 30 s, and
    /// [`super::longform::transcribe_long`] for long audio).
    /// Empty input gives one window of silence.
    ///
    /// # Errors
    /// [`DecodeError`] from features, model or tokenizer.
    pub fn transcribe(
        &self,
        samples: &[f32],
        tokenizer: &WhisperTokenizer,
        device: &Device,
    ) -> Result<Transcript, DecodeError> {
        let mut windows = Vec::new();
        let mut start = 0;
        loop {
            let end = (start + WHISPER_N_SAMPLES).min(samples.len());
            let feats = features(&samples[start..end], device)?;
            let t0 = Instant::now();
            let enc = self.net.model.encoder.forward(feats, &Scope::off())?;
            // Force the encoder to finish before timing the decoder.
            let enc = Tensor::from_data(enc.into_data(), device);
            let t1 = Instant::now();
            let output = greedy_decode(&self.net, &enc, &self.generation)?;
            let t2 = Instant::now();
            let generated = &output.token_ids[self.generation.prompt.len()..];
            let text = tokenizer.decode(generated)?;
            windows.push(WindowTranscript {
                start_s: start as f64 / 16_000.0,
                output,
                text,
                encode_s: (t1 - t0).as_secs_f64(),
                decode_s: (t2 - t1).as_secs_f64(),
            });
            start = end;
            if start >= samples.len() {
                break;
            }
        }
        let text = windows
            .iter()
            .map(|w| w.text.as_str())
            .filter(|t| !t.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        Ok(Transcript { windows, text })
    }
}
