//! `AudioConfig`: the `audio` section of a Tekken `tekken.json`, with mistral-common's derived quantities.
//!
//! Mirrors mistralai/mistral-common (`AudioConfig`, `AudioSpectrogramConfig`, `TranscriptionFormat`), version 1.13.1:
//! <https://github.com/mistralai/mistral-common/blob/v1.13.1/src/mistral_common/tokens/tokenizers/audio.py>. `Tekkenizer.from_file` builds it with
//! `AudioConfig(encoding_config=AudioSpectrogramConfig(**audio.pop("audio_encoding_config")), **audio)`, so the JSON
//! keys are exactly the dataclass fields (unknown keys are an error there and here).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::AudioError;

/// `OFFLINE_STREAMING_BUFFER_TOKENS` in mistral-common `audio.py`: extra right-pad tokens (80 ms each) so the last
/// word (guessed at <= 0.8 s) is transcribed before the audio runs out.
pub const OFFLINE_STREAMING_BUFFER_TOKENS: usize = 10;

/// Spectrogram settings, JSON key `audio_encoding_config` (mistral-common `AudioSpectrogramConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioSpectrogramConfig {
    /// Number of mel bins (128 for Voxtral Realtime).
    pub num_mel_bins: usize,
    /// STFT hop in samples (160 = 10 ms at 16 kHz).
    pub hop_length: usize,
    /// STFT window / FFT size in samples (400 = 25 ms at 16 kHz).
    pub window_size: usize,
}

/// `transcription_format` (mistral-common `TranscriptionFormat`, a `StrEnum` of lower-case names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TranscriptionFormat {
    /// Whole utterances (`[BEGIN_AUDIO]` + `[AUDIO]` tokens).
    #[default]
    Instruct,
    /// Streaming transcription (Voxtral Realtime).
    Streaming,
}

/// The `audio` section of `tekken.json` (mistral-common `AudioConfig`). Times are in ms, rates in Hz.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudioConfig {
    /// Sample rate of the model input, Hz (16 000).
    pub sampling_rate: u32,
    /// Audio tokens per second (12.5, i.e. one token per 80 ms).
    pub frame_rate: f64,
    /// Spectrogram settings.
    pub audio_encoding_config: AudioSpectrogramConfig,
    /// If set, (non-streaming) audio is zero-padded to a multiple of this many seconds.
    #[serde(default)]
    pub chunk_length_s: Option<f64>,
    /// Instruct or streaming.
    #[serde(default)]
    pub transcription_format: TranscriptionFormat,
    /// Delay between audio and text streams, ms (480 for Voxtral Realtime). Streaming only.
    #[serde(default)]
    pub transcription_delay_ms: Option<f64>,
    /// Streaming look-ahead, ms (2.5 = 40 samples). Streaming only.
    #[serde(default)]
    pub streaming_look_ahead_ms: Option<f64>,
    /// Streaming look-back, ms (52.5 = 840 samples). Streaming only.
    #[serde(default)]
    pub streaming_look_back_ms: Option<f64>,
    /// Number of all-zero audio tokens (1280 samples each) padded on the left (32). Streaming only.
    #[serde(default)]
    pub streaming_n_left_pad_tokens: Option<usize>,
    /// Text-to-speech voices (unused here).
    #[serde(default)]
    pub voice_num_audio_tokens: Option<BTreeMap<String, usize>>,
}

fn invalid(cause: String) -> AudioError {
    AudioError::InvalidInput {
        what: "audio config".into(),
        cause,
    }
}

impl AudioConfig {
    /// The Voxtral Mini 4B Realtime values (voxtral-realtime-spec.md section 8; antirez/voxtral.c `MODEL.md`):
    /// 16 kHz, 12.5 tokens/s, 128 mels / hop 160 / window 400, streaming, delay 480 ms, look-ahead 2.5 ms,
    /// look-back 52.5 ms, 32 left-pad tokens. Use the model's own `tekken.json` section when available.
    pub fn voxtral_realtime() -> Self {
        Self {
            sampling_rate: 16_000,
            frame_rate: 12.5,
            audio_encoding_config: AudioSpectrogramConfig {
                num_mel_bins: 128,
                hop_length: 160,
                window_size: 400,
            },
            chunk_length_s: None,
            transcription_format: TranscriptionFormat::Streaming,
            transcription_delay_ms: Some(480.0),
            streaming_look_ahead_ms: Some(2.5),
            streaming_look_back_ms: Some(52.5),
            streaming_n_left_pad_tokens: Some(32),
            voice_num_audio_tokens: None,
        }
    }

    /// The checks of mistral-common `AudioConfig.__post_init__` (positive rates and sizes, streaming fields set
    /// exactly when streaming, delay a positive multiple of the token duration, no chunking in streaming).
    ///
    /// # Errors
    /// [`AudioError::InvalidInput`] naming the first violated rule.
    pub fn validate(&self) -> Result<(), AudioError> {
        let enc = &self.audio_encoding_config;
        if enc.num_mel_bins == 0 || enc.hop_length == 0 || enc.window_size == 0 {
            return Err(invalid(format!(
                "audio_encoding_config has a zero field: {enc:?}"
            )));
        }
        if !(self.frame_rate.is_finite() && self.frame_rate > 0.0) || self.sampling_rate == 0 {
            return Err(invalid(format!(
                "sampling_rate ({}) and frame_rate ({}) must be > 0",
                self.sampling_rate, self.frame_rate
            )));
        }
        // Bounds on what a tekken.json can make us allocate (padding, windows, mel banks), far
        // above the released model's values.
        let bounded = [
            ("sampling_rate", f64::from(self.sampling_rate), 384_000.0),
            ("num_mel_bins", enc.num_mel_bins as f64, 1024.0),
            ("hop_length", enc.hop_length as f64, 65_536.0),
            ("window_size", enc.window_size as f64, 65_536.0),
            ("chunk_length_s", self.chunk_length_s.unwrap_or(0.0), 3600.0),
            (
                "transcription_delay_ms",
                self.transcription_delay_ms.unwrap_or(0.0),
                60_000.0,
            ),
            (
                "streaming_look_ahead_ms",
                self.streaming_look_ahead_ms.unwrap_or(0.0),
                60_000.0,
            ),
            (
                "streaming_look_back_ms",
                self.streaming_look_back_ms.unwrap_or(0.0),
                60_000.0,
            ),
            (
                "streaming_n_left_pad_tokens",
                self.streaming_n_left_pad_tokens.unwrap_or(0) as f64,
                4096.0,
            ),
        ];
        for (name, v, max) in bounded {
            if !(v.is_finite() && v <= max) {
                return Err(invalid(format!("{name} is {v}, expected at most {max}")));
            }
        }
        if f64::from(self.sampling_rate) < self.frame_rate {
            return Err(invalid("sampling_rate must be >= frame_rate".into()));
        }
        if self.audio_length_per_tok() == 0 {
            return Err(invalid(format!(
                "sampling_rate / frame_rate ({}) must be >= hop_length ({})",
                self.raw_audio_length_per_tok(),
                enc.hop_length
            )));
        }
        if let Some(c) = self.chunk_length_s
            && !(c > 0.0 && (c * f64::from(self.sampling_rate)) as i64 > 0)
        {
            return Err(invalid(format!("chunk_length_s must be > 0, got {c}")));
        }
        let streaming_fields = [
            (
                "transcription_delay_ms",
                self.transcription_delay_ms.is_some(),
            ),
            (
                "streaming_look_ahead_ms",
                self.streaming_look_ahead_ms.is_some(),
            ),
            (
                "streaming_look_back_ms",
                self.streaming_look_back_ms.is_some(),
            ),
            (
                "streaming_n_left_pad_tokens",
                self.streaming_n_left_pad_tokens.is_some(),
            ),
        ];
        for (name, set) in streaming_fields {
            if set != self.is_streaming() {
                return Err(invalid(format!(
                    "{name} must be {} when transcription_format is {:?}",
                    if self.is_streaming() { "set" } else { "unset" },
                    self.transcription_format
                )));
            }
        }
        if let Some(delay) = self.transcription_delay_ms {
            let frame_ms = 1000.0 / self.frame_rate;
            if delay.is_nan() || delay <= 0.0 || delay % frame_ms != 0.0 {
                return Err(invalid(format!(
                    "transcription_delay_ms ({delay}) must be a positive multiple of {frame_ms} ms"
                )));
            }
            if self.chunk_length_s.is_some() {
                return Err(invalid("chunk_length_s cannot be set in streaming".into()));
            }
        }
        Ok(())
    }

    /// `is_streaming`: `transcription_format == streaming`.
    pub fn is_streaming(&self) -> bool {
        self.transcription_format == TranscriptionFormat::Streaming
    }

    /// `raw_audio_length_per_tok = int(sampling_rate // frame_rate)`: samples per audio token (1280).
    pub fn raw_audio_length_per_tok(&self) -> usize {
        (f64::from(self.sampling_rate) / self.frame_rate).floor() as usize
    }

    /// `audio_length_per_tok = int(raw_audio_length_per_tok / hop_length)`: mel frames per token (8).
    pub fn audio_length_per_tok(&self) -> usize {
        (self.raw_audio_length_per_tok() as f64 / self.audio_encoding_config.hop_length as f64)
            as usize
    }

    /// `num_audio_tokens(audio_len)`: tokens covering `audio_len` samples. Frames are
    /// `ceil(len / hop - 1)` when `len % hop != 0`, else `len / hop`; tokens = `ceil(frames / audio_length_per_tok)`.
    pub fn num_audio_tokens(&self, audio_len: usize) -> usize {
        let hop = self.audio_encoding_config.hop_length;
        let frames = if !audio_len.is_multiple_of(hop) {
            (audio_len as f64 / hop as f64 - 1.0).ceil() as usize
        } else {
            audio_len / hop
        };
        (frames as f64 / self.audio_length_per_tok() as f64).ceil() as usize
    }

    /// `delay_len(ms) = int(ms / 1000 * sampling_rate)`: the delay in samples (480 ms -> 7680).
    pub fn delay_len(&self, transcription_delay_ms: f64) -> usize {
        (transcription_delay_ms / 1000.0 * f64::from(self.sampling_rate)) as usize
    }

    fn delay_or_default(&self, transcription_delay_ms: Option<f64>) -> Result<f64, AudioError> {
        if !self.is_streaming() {
            return Err(invalid(
                "delay tokens and streaming padding need transcription_format streaming".into(),
            ));
        }
        let d = transcription_delay_ms
            .or(self.transcription_delay_ms)
            .ok_or_else(|| invalid("no transcription delay given and none in the config".into()))?;
        if !(d.is_finite() && d >= 0.0) {
            return Err(invalid(format!(
                "transcription delay must be finite and >= 0 ms, got {d}"
            )));
        }
        Ok(d)
    }

    /// `get_num_delay_tokens(ms)`: `num_audio_tokens(delay_len(ms))` (480 ms -> 6). `None` uses the config's delay.
    ///
    /// # Errors
    /// Not streaming, no delay available, or a negative / non-finite delay.
    pub fn n_delay_tokens(&self, transcription_delay_ms: Option<f64>) -> Result<usize, AudioError> {
        let d = self.delay_or_default(transcription_delay_ms)?;
        Ok(self.num_audio_tokens(self.delay_len(d)))
    }

    /// `n_right_pad_tokens(ms) = (n_delay_tokens + 1) + OFFLINE_STREAMING_BUFFER_TOKENS` (480 ms -> 17).
    ///
    /// # Errors
    /// As [`AudioConfig::n_delay_tokens`].
    pub fn n_right_pad_tokens(
        &self,
        transcription_delay_ms: Option<f64>,
    ) -> Result<usize, AudioError> {
        Ok(self.n_delay_tokens(transcription_delay_ms)? + 1 + OFFLINE_STREAMING_BUFFER_TOKENS)
    }

    /// `n_left_pad_tokens = streaming_n_left_pad_tokens` (32).
    ///
    /// # Errors
    /// Not streaming, or `streaming_n_left_pad_tokens` missing.
    pub fn n_left_pad_tokens(&self) -> Result<usize, AudioError> {
        if !self.is_streaming() {
            return Err(invalid(
                "n_left_pad_tokens needs transcription_format streaming".into(),
            ));
        }
        self.streaming_n_left_pad_tokens
            .ok_or_else(|| invalid("streaming_n_left_pad_tokens is not set".into()))
    }
}
