//! The one place that builds Voxtral Realtime's transcription prompt:
//! `[BOS] + [STREAMING_PAD] x (n_left_pad_tokens + n_delay_tokens)` (39 tokens for the released
//! model at 480 ms), with the token ids and audio settings it depends on.
//!
//! Mirrors mistralai/mistral-common `InstructTokenizerBase.encode_transcription` for
//! `StreamingMode` transcription (v1.13.1,
//! <https://github.com/mistralai/mistral-common/blob/v1.13.1/src/mistral_common/tokens/tokenizers/instruct.py>)
//! and `VoxtralRealtimeProcessor` in huggingface/transformers v5.23.0
//! (<https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/processing_voxtral_realtime.py>).

use crate::audio::{AudioConfig, AudioError};
use crate::tokenizer::{Tekken, TekkenError};

/// The control-token ids the prompt and the stopping rule use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PromptTokens {
    /// `<s>`, the first prompt token.
    pub bos: i64,
    /// `[STREAMING_PAD]`, the prompt filler (also emitted while nothing new is spoken).
    pub streaming_pad: i64,
    /// `</s>`, end of transcription.
    pub eos: i64,
}

impl PromptTokens {
    /// The ids of the released Voxtral Mini 4B Realtime tekken.json (BOS 1, EOS 2,
    /// `[STREAMING_PAD]` 32; `../shared/docs/voxtral-realtime-spec.md`, special tokens), for
    /// runs without a tokenizer file such as random full-size checkpoints in benchmarks.
    pub const MINI_4B_REALTIME: PromptTokens = PromptTokens {
        bos: 1,
        streaming_pad: 32,
        eos: 2,
    };

    /// The ids as a tekken.json defines them.
    ///
    /// # Errors
    /// [`TekkenError`] when the file lacks BOS, EOS or `[STREAMING_PAD]`.
    pub fn from_tekken(tok: &Tekken) -> Result<Self, TekkenError> {
        Ok(Self {
            bos: tok.bos_id()? as i64,
            streaming_pad: tok.streaming_pad_id()? as i64,
            eos: tok.eos_id()? as i64,
        })
    }
}

/// A transcription prompt and the delay it encodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamingPrompt {
    /// `[BOS] + [STREAMING_PAD] x (left_pad + delay_tokens)` ids, `[prompt_len]`.
    pub ids: Vec<i64>,
    /// Transcription delay in tokens (80 ms each): the time conditioning's `t`.
    pub delay_tokens: usize,
}

/// Build the prompt for audio settings `cfg` (tekken.json `audio`) and a transcription delay of
/// `delay_ms` (a multiple of 80 ms; `None` = the config's default, 480 ms for the release).
///
/// # Errors
/// [`AudioError::InvalidInput`] for a delay that is not a whole number of tokens or settings
/// that give no whole left pad.
pub fn streaming_prompt(
    tokens: &PromptTokens,
    cfg: &AudioConfig,
    delay_ms: Option<f64>,
) -> Result<StreamingPrompt, AudioError> {
    let delay_tokens = cfg.n_delay_tokens(delay_ms)?;
    let left = cfg.n_left_pad_tokens()?;
    let mut ids = Vec::with_capacity(1 + left + delay_tokens);
    ids.push(tokens.bos);
    ids.extend(std::iter::repeat_n(
        tokens.streaming_pad,
        left + delay_tokens,
    ));
    Ok(StreamingPrompt { ids, delay_tokens })
}
