//! Audio file to model inputs and text, the offline way (whole file at once).
//!
//! Mirrors mistral-common's OFFLINE streaming request (mistralai/mistral-common v1.13.1
//! `AudioEncoder.pad` in
//! <https://github.com/mistralai/mistral-common/blob/v1.13.1/src/mistral_common/tokens/tokenizers/audio.py>,
//! `_encode_streaming_transcription` in
//! <https://github.com/mistralai/mistral-common/blob/v1.13.1/src/mistral_common/tokens/tokenizers/instruct.py>)
//! and transformers' `VoxtralRealtimeProcessor`
//! (<https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/processing_voxtral_realtime.py>): pad the
//! 16 kHz samples (`left_pad` tokens of zeros, alignment to 1280 samples, `delay + 1 + 10`
//! tokens on the right), compute the 128-bin log-mel with `center=True`, prompt
//! `[BOS] + [STREAMING_PAD] x (left_pad + delay)`.

use super::generate::{Generation, generate_offline};
use super::model::Voxtral;
use super::prompt::{PromptTokens, StreamingPrompt, streaming_prompt};
use crate::audio::{AudioConfig, AudioError, pad_offline};
use crate::tokenizer::{Tekken, TekkenError};
use burn::tensor::{Device, Tensor, TensorData};

/// Errors preparing inputs or decoding outputs.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Audio decoding, resampling, padding or log-mel failed.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The tokenizer lacks a needed token or id.
    #[error(transparent)]
    Tokenizer(#[from] TekkenError),
    /// The audio is too short to produce any token after the prompt.
    #[error("audio too short: {tokens} audio tokens for a {prompt}-token prompt")]
    TooShort {
        /// Audio tokens (80 ms each) after padding.
        tokens: usize,
        /// Prompt length in tokens.
        prompt: usize,
    },
}

/// Model inputs for one clip.
#[derive(Debug, Clone)]
pub struct OfflineInputs {
    /// Log-mel `[1, n_mels, frames]`, frames = 8 x `n_tokens`.
    pub features: Tensor<3>,
    /// `[BOS] + [STREAMING_PAD] x (left_pad + delay)` ids.
    pub prompt: Vec<i64>,
    /// Audio tokens (80 ms each) after padding.
    pub n_tokens: usize,
    /// Delay in tokens (480 ms = 6), the time-conditioning value.
    pub delay_tokens: usize,
}

/// Pad 16 kHz mono `samples`, compute the log-mel and build the prompt.
///
/// The audio settings come from `tokenizer.audio()` (tekken.json `audio` section) when present,
/// otherwise the released model's ([`AudioConfig::voxtral_realtime`]); `delay_ms` is the
/// transcription delay in ms (a multiple of 80; released default 480).
///
/// # Errors
/// Non-finite samples, a tokenizer without BOS/`[STREAMING_PAD]`, an invalid delay.
pub fn prepare_offline(
    samples: &[f32],
    tokenizer: &Tekken,
    delay_ms: f64,
    device: &Device,
) -> Result<OfflineInputs, PipelineError> {
    let cfg = tokenizer
        .audio()
        .cloned()
        .unwrap_or_else(AudioConfig::voxtral_realtime);
    let padded = pad_offline(&cfg, samples, Some(delay_ms))?;
    let mel = crate::audio::mel::voxtral_log_mel(&padded, true)?;
    let StreamingPrompt {
        ids: prompt,
        delay_tokens,
    } = streaming_prompt(&PromptTokens::from_tekken(tokenizer)?, &cfg, Some(delay_ms))?;
    let n_tokens = mel.n_frames / cfg.audio_length_per_tok();
    if n_tokens <= prompt.len() {
        return Err(PipelineError::TooShort {
            tokens: n_tokens,
            prompt: prompt.len(),
        });
    }
    let features = Tensor::from_data(
        TensorData::new(mel.data, [1, mel.n_mels, mel.n_frames]),
        device,
    );
    Ok(OfflineInputs {
        features,
        prompt,
        n_tokens,
        delay_tokens,
    })
}

/// Greedy offline transcription of prepared inputs; returns the generation and its text
/// (control ids dropped, byte pieces joined, UTF-8 decoded as mistral-common does).
///
/// # Errors
/// An id outside the tokenizer's vocabulary.
pub fn transcribe_offline(
    model: &Voxtral,
    tokenizer: &Tekken,
    inputs: &OfflineInputs,
) -> Result<(Generation, String), PipelineError> {
    let eos = tokenizer.eos_id()? as i64;
    let g = generate_offline(
        model,
        inputs.features.clone(),
        &inputs.prompt,
        inputs.delay_tokens as f32,
        Some(eos),
    );
    let ids: Vec<u32> = g.generated().iter().map(|&i| i as u32).collect();
    let text = tokenizer.decode(&ids)?;
    Ok((g, text))
}
