//! Offline (whole-file) padding for Voxtral Realtime.
//!
//! Mirrors mistralai/mistral-common `AudioEncoder.pad` (streaming branch) and `AudioEncoder._get_streaming_pad`,
//! version 1.13.1
//! (<https://github.com/mistralai/mistral-common/blob/v1.13.1/src/mistral_common/tokens/tokenizers/audio.py>):
//! - left: `n_left_pad_tokens x raw_audio_length_per_tok` zeros (32 x 1280 = 40 960);
//! - right: zeros up to the next multiple of `raw_audio_length_per_tok`, plus
//!   `n_right_pad_tokens x raw_audio_length_per_tok` (17 x 1280 = 21 760 at 480 ms).
//!
//! The padded length is a multiple of 1280 samples, so its mel has exactly `8 x tokens` frames.

use super::{AudioConfig, AudioError, check_finite};

/// Zero samples to add on each side of a signal (units: samples at `AudioConfig::sampling_rate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamingPad {
    /// Zeros before the signal.
    pub left: usize,
    /// Zeros after the signal.
    pub right: usize,
}

impl StreamingPad {
    /// Padded length for a signal of `num_samples` samples.
    pub fn padded_len(&self, num_samples: usize) -> usize {
        self.left + num_samples + self.right
    }
}

/// `_get_streaming_pad(num_samples, transcription_delay_ms)`: the left and right pad for `num_samples` samples.
/// `transcription_delay_ms = None` uses the config's delay (mistral-common's default).
///
/// # Errors
/// [`AudioError::InvalidInput`] if the config is not streaming, has no delay, or no `streaming_n_left_pad_tokens`.
pub fn streaming_pad(
    config: &AudioConfig,
    num_samples: usize,
    transcription_delay_ms: Option<f64>,
) -> Result<StreamingPad, AudioError> {
    let mult_of = config.raw_audio_length_per_tok();
    if mult_of == 0 {
        return Err(AudioError::InvalidInput {
            what: "audio config".into(),
            cause: "raw_audio_length_per_tok is 0".into(),
        });
    }
    let align = (mult_of - num_samples % mult_of) % mult_of;
    let right = align + mult_of * config.n_right_pad_tokens(transcription_delay_ms)?;
    let left = mult_of * config.n_left_pad_tokens()?;
    Ok(StreamingPad { left, right })
}

/// `AudioEncoder.pad` for a streaming config: returns `[left zeros, samples, right zeros]` as f32.
/// `samples` must already be mono at `config.sampling_rate`.
///
/// # Shapes
/// - `samples`: `[n]`
/// - returns `[left + n + right]` (see [`streaming_pad`]), a multiple of `raw_audio_length_per_tok`
///
/// # Errors
/// As [`streaming_pad`], and [`AudioError::InvalidInput`] for a non-finite sample.
pub fn pad_offline(
    config: &AudioConfig,
    samples: &[f32],
    transcription_delay_ms: Option<f64>,
) -> Result<Vec<f32>, AudioError> {
    check_finite("offline padding input", samples)?;
    let pad = streaming_pad(config, samples.len(), transcription_delay_ms)?;
    let mut out = Vec::with_capacity(pad.padded_len(samples.len()));
    out.resize(pad.left, 0.0);
    out.extend_from_slice(samples);
    out.resize(pad.padded_len(samples.len()), 0.0);
    Ok(out)
}
