//! Audio front end: decoding, resampling to 16 kHz, offline streaming padding and log-mel features.
//!
//! Pipeline for one file (every step is its own module):
//! 1. [`decode`]: any WAV / FLAC / MP3 / OGG-Vorbis file to mono `f32` samples in `[-1, 1]` plus the source
//!    sample rate (Hz); channels are averaged.
//! 2. [`mod@resample`]: to 16 000 Hz with a windowed-sinc resampler (pass-through when already 16 kHz).
//! 3. [`pad`]: Voxtral Realtime offline padding (mistral-common `AudioEncoder.pad`), driven by [`AudioConfig`].
//! 4. [`mel`]: log-mel features exactly as transformers' `VoxtralRealtimeFeatureExtractor` and
//!    `WhisperFeatureExtractor`, `[n_mels, frames]` row-major.
//!
//! All failures are an [`AudioError`] naming the file (or the input) and the cause; nothing here panics on bad input.

pub mod config;
pub mod decode;
pub mod mel;
pub mod pad;
pub mod resample;

use std::path::PathBuf;

pub use config::{AudioConfig, AudioSpectrogramConfig, TranscriptionFormat};
pub use decode::{AudioChunks, DecodedAudio, decode_bytes, decode_file, open_chunks};
pub use mel::{LogMel, LogMelExtractor, LogMelFloor};
pub use pad::{StreamingPad, pad_offline, streaming_pad};
pub use resample::{StreamResampler, TARGET_SAMPLE_RATE, resample, resample_to_16k, resampled_len};

/// Errors of the audio front end. File errors carry the path; the message always says what went wrong.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// The file could not be opened or read.
    #[error("{path}: cannot read audio file: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying I/O error.
        source: std::io::Error,
    },
    /// The path is a folder, FIFO, socket or device, not a regular file: refused before
    /// opening (opening a FIFO with no writer would block forever).
    #[error("{path}: not a regular audio file: it is {kind}")]
    NotRegularFile {
        /// Path given.
        path: PathBuf,
        /// What it is instead ([`crate::io::special_file_kind`]).
        kind: &'static str,
    },
    /// The file has zero bytes.
    #[error("{path}: audio file is empty (0 bytes)")]
    EmptyFile {
        /// File that failed.
        path: PathBuf,
    },
    /// No enabled container reader recognised the file (not audio, or an unsupported container).
    #[error("{path}: not a supported audio file (WAV, FLAC, MP3, OGG/Vorbis): {cause}")]
    UnrecognizedFormat {
        /// File that failed.
        path: PathBuf,
        /// Message from the demuxer probe.
        cause: String,
    },
    /// The container has no audio track.
    #[error("{path}: no audio track in file")]
    NoAudioTrack {
        /// File that failed.
        path: PathBuf,
    },
    /// The audio track uses a codec that is not enabled / not supported.
    #[error("{path}: unsupported audio codec: {cause}")]
    UnsupportedCodec {
        /// File that failed.
        path: PathBuf,
        /// Codec description or decoder message.
        cause: String,
    },
    /// The stream ends in the middle of a packet or a declared data chunk.
    #[error("{path}: audio stream is truncated: {cause}")]
    Truncated {
        /// File that failed.
        path: PathBuf,
        /// Underlying message.
        cause: String,
    },
    /// A packet could not be decoded (corrupt data).
    #[error("{path}: corrupt audio data: {cause}")]
    Corrupt {
        /// File that failed.
        path: PathBuf,
        /// Underlying message.
        cause: String,
    },
    /// The file is well formed but holds no samples.
    #[error("{path}: audio file decodes to zero samples")]
    ZeroLength {
        /// File that failed.
        path: PathBuf,
    },
    /// Neither the container nor the decoded buffers give a sample rate.
    #[error("{path}: audio stream has no sample rate")]
    NoSampleRate {
        /// File that failed.
        path: PathBuf,
    },
    /// Bad in-memory input to a processing step (NaN sample, too-short signal, bad parameters, ...).
    #[error("{what}: {cause}")]
    InvalidInput {
        /// The step and input concerned, e.g. `log-mel input`.
        what: String,
        /// What is wrong with it.
        cause: String,
    },
}

/// Decodes `path` (any supported format, mixed to mono) and resamples it to 16 kHz: `[n]` f32 samples ready for
/// [`pad`] and [`mel`]. 16 kHz files are returned exactly as decoded.
///
/// # Errors
/// The errors of [`decode_file`] and [`resample_to_16k`].
pub fn load_mono_16k(path: impl AsRef<std::path::Path>) -> Result<Vec<f32>, AudioError> {
    let path = path.as_ref();
    mono_16k(decode_file(path)?, path)
}

/// [`load_mono_16k`] of a whole audio file's bytes (a browser's `fetch` or file picker);
/// `name` names it in errors and its extension is the format hint.
///
/// # Errors
/// As [`load_mono_16k`], naming `name`.
pub fn load_mono_16k_bytes(
    bytes: Vec<u8>,
    name: impl AsRef<std::path::Path>,
) -> Result<Vec<f32>, AudioError> {
    let name = name.as_ref();
    mono_16k(decode_bytes(bytes, name)?, name)
}

fn mono_16k(decoded: DecodedAudio, path: &std::path::Path) -> Result<Vec<f32>, AudioError> {
    resample_to_16k(&decoded.samples, decoded.sample_rate).map_err(|e| match e {
        // Resampling errors concern the samples of this file: name it.
        AudioError::InvalidInput { what, cause } => AudioError::InvalidInput {
            what: format!("{}: {what}", path.display()),
            cause,
        },
        other => other,
    })
}

/// Returns an [`AudioError::InvalidInput`] naming the first non-finite sample, if any.
pub(crate) fn check_finite(what: &str, samples: &[f32]) -> Result<(), AudioError> {
    match samples.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(AudioError::InvalidInput {
            what: what.to_string(),
            cause: format!("sample {i} is {} (non-finite)", samples[i]),
        }),
    }
}
