//! Decoding audio files to mono `f32` with symphonia.
//!
//! Supported: WAV (PCM integer / float), FLAC, MP3, OGG/Vorbis (symphonia features `wav pcm flac mp3 ogg vorbis`).
//! Channels are mixed to mono by averaging (`(c0 + ... + c_{k-1}) / k` per frame, in f32), as transformers'
//! feature extractors and mistral-common (`Audio`, non-strict;
//! <https://github.com/mistralai/mistral-common/blob/v1.13.1/src/mistral_common/tokens/tokenizers/audio.py>) do. Samples are symphonia's conversion to f32 in
//! `[-1, 1]` (for 16-bit PCM: `i16 / 32768`, identical to soundfile/libsndfile's float read). No resampling and no
//! gain change happen here. Gapless decoding is on (symphonia's default), so MP3 / Vorbis encoder delay and
//! padding are trimmed where the file declares them.
//!
//! Truncation: a stream that ends inside a packet, or that yields fewer frames than its header declares (WAV
//! data size, FLAC STREAMINFO, OGG granule position, MP3 Xing/Info tag), is an [`AudioError::Truncated`]. For MPEG
//! audio a shortfall of up to 2 x 1152 samples is tolerated because symphonia estimates the length of an MP3
//! without a Xing/Info/VBRI tag from its bit rate; such an untagged MP3 cut at a frame boundary is not detected.
//!
//! Two entry points: [`decode_file`] (whole file in memory) and [`open_chunks`] (an iterator of fixed-size mono
//! chunks whose memory use is bounded by one chunk plus one codec packet, for long files).

use std::fs::File;
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::well_known::{
    CODEC_ID_AAC, CODEC_ID_AC3, CODEC_ID_ALAC, CODEC_ID_FLAC, CODEC_ID_MP1, CODEC_ID_MP2,
    CODEC_ID_MP3, CODEC_ID_OPUS, CODEC_ID_SPEEX, CODEC_ID_VORBIS, CODEC_ID_WMA,
};
use symphonia::core::codecs::audio::{AudioCodecId, AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;

use super::AudioError;

/// For MPEG audio, a header-declared length may be an estimate from the bit rate (no Xing/Info/VBRI tag), so a
/// shortfall of up to two MPEG-1 layer III frames (2 x 1152 samples) is not reported as truncation.
const MPEG_TRUNCATION_SLACK: u64 = 2 * 1152;

/// A whole decoded file.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Mono samples, `[n]`, f32 in `[-1, 1]`, at `sample_rate`.
    pub samples: Vec<f32>,
    /// Source sample rate, Hz.
    pub sample_rate: u32,
    /// Number of channels in the source (before the mono mix).
    pub channels: usize,
}

impl DecodedAudio {
    /// Duration in seconds (`samples.len() / sample_rate`).
    pub fn duration_s(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// Decodes a whole file (see the module doc for formats and the mono mix).
///
/// # Errors
/// [`AudioError::Io`], [`AudioError::NotRegularFile`] (a folder, FIFO, socket or device),
/// [`AudioError::EmptyFile`] (0 bytes), [`AudioError::UnrecognizedFormat`] (not audio),
/// [`AudioError::NoAudioTrack`], [`AudioError::UnsupportedCodec`], [`AudioError::Truncated`],
/// [`AudioError::Corrupt`], [`AudioError::ZeroLength`] (no samples), [`AudioError::NoSampleRate`];
/// every variant names `path`.
pub fn decode_file(path: impl AsRef<Path>) -> Result<DecodedAudio, AudioError> {
    collect(open_chunks(path, 1 << 16)?)
}

/// [`decode_file`] of a whole file's bytes already in memory (a browser's `fetch` or file
/// picker); `name` names it in errors and its extension is the format hint, as a path's is.
///
/// # Errors
/// As [`decode_file`] ([`AudioError::EmptyFile`] for no bytes), every variant naming `name`.
pub fn decode_bytes(bytes: Vec<u8>, name: impl AsRef<Path>) -> Result<DecodedAudio, AudioError> {
    let path = name.as_ref().to_path_buf();
    if bytes.is_empty() {
        return Err(AudioError::EmptyFile { path });
    }
    collect(chunks_of(
        Box::new(std::io::Cursor::new(bytes)),
        path,
        1 << 16,
    )?)
}

fn collect(mut chunks: AudioChunks) -> Result<DecodedAudio, AudioError> {
    let mut samples = Vec::new();
    if let Some(n) = chunks.declared_frames {
        samples.reserve(n.min(1 << 28) as usize);
    }
    for chunk in chunks.by_ref() {
        samples.extend_from_slice(&chunk?);
    }
    Ok(DecodedAudio {
        samples,
        sample_rate: chunks.sample_rate,
        channels: chunks.channels,
    })
}

/// Opens `path` for streaming decode. The iterator yields mono chunks of exactly `chunk_frames` samples (the last
/// one may be shorter, never empty); at most one chunk plus one codec packet is held in memory.
/// `chunk_frames == 0` is treated as 1.
///
/// # Errors
/// The open-time errors of [`decode_file`]. Errors met while decoding are yielded as `Some(Err(_))`, after which
/// the iterator ends.
pub fn open_chunks(path: impl AsRef<Path>, chunk_frames: usize) -> Result<AudioChunks, AudioError> {
    let path = path.as_ref().to_path_buf();
    let meta = std::fs::metadata(&path).map_err(|source| AudioError::Io {
        path: path.clone(),
        source,
    })?;
    if let Some(kind) = crate::io::special_file_kind(&meta) {
        return Err(AudioError::NotRegularFile { path, kind });
    }
    let file = File::open(&path).map_err(|source| AudioError::Io {
        path: path.clone(),
        source,
    })?;
    let len = file
        .metadata()
        .map_err(|source| AudioError::Io {
            path: path.clone(),
            source,
        })?
        .len();
    if len == 0 {
        return Err(AudioError::EmptyFile { path });
    }
    chunks_of(Box::new(file), path, chunk_frames)
}

/// [`open_chunks`] of an opened, non-empty source; `path` names it in errors.
fn chunks_of(
    source: Box<dyn symphonia::core::io::MediaSource>,
    path: PathBuf,
    chunk_frames: usize,
) -> Result<AudioChunks, AudioError> {
    let mss = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let format = symphonia::default::get_probe()
        .probe(
            &hint,
            mss,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(|e| probe_error(&path, e))?;
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| AudioError::NoAudioTrack { path: path.clone() })?;
    let track_id = track.id;
    let declared_frames = track.num_frames;
    let params = track
        .codec_params
        .as_ref()
        .and_then(|p| p.audio())
        .ok_or_else(|| AudioError::NoAudioTrack { path: path.clone() })?
        .clone();
    let decoder = symphonia::default::get_codecs()
        .make_audio_decoder(&params, &AudioDecoderOptions::default())
        .map_err(|e| AudioError::UnsupportedCodec {
            path: path.clone(),
            cause: format!("{}: {e}", codec_name(params.codec)),
        })?;
    let is_mpeg = [CODEC_ID_MP1, CODEC_ID_MP2, CODEC_ID_MP3].contains(&params.codec);
    let mut chunks = AudioChunks {
        truncation_slack: if is_mpeg { MPEG_TRUNCATION_SLACK } else { 0 },
        path,
        format,
        decoder,
        track_id,
        sample_rate: params.sample_rate.unwrap_or(0),
        channels: params.channels.as_ref().map(|c| c.count()).unwrap_or(0),
        declared_frames,
        chunk_frames: chunk_frames.max(1),
        pending: Vec::new(),
        pending_start: 0,
        scratch: Vec::new(),
        decoded_frames: 0,
        state: State::Running,
    };
    // A stream whose header does not give the rate (or channel count) reveals it in its first decoded buffer.
    if chunks.sample_rate == 0 || chunks.channels == 0 {
        chunks.decode_next_packet()?;
        if chunks.sample_rate == 0 {
            return Err(AudioError::NoSampleRate { path: chunks.path });
        }
    }
    Ok(chunks)
}

/// Maps a probe failure to an [`AudioError`] naming `path`.
fn probe_error(path: &Path, e: SymError) -> AudioError {
    let path = path.to_path_buf();
    match e {
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::UnrecognizedFormat {
                path,
                cause:
                    "the file ends before a complete audio header (truncated, or not an audio file)"
                        .into(),
            }
        }
        SymError::IoError(source) => AudioError::Io { path, source },
        // symphonia reports "no suitable format reader" for unknown containers; any other `Unsupported` at probe
        // time comes from a recognised container holding a codec its reader cannot handle.
        SymError::Unsupported(what) if what.contains("no suitable format reader") => {
            AudioError::UnrecognizedFormat {
                path,
                cause: what.to_string(),
            }
        }
        SymError::Unsupported(what) => AudioError::UnsupportedCodec {
            path,
            cause: what.to_string(),
        },
        other => AudioError::UnrecognizedFormat {
            path,
            cause: other.to_string(),
        },
    }
}

/// A readable name for the codecs a user is likely to meet; others as their symphonia id.
fn codec_name(id: AudioCodecId) -> String {
    let known = [
        (CODEC_ID_OPUS, "Opus"),
        (CODEC_ID_AAC, "AAC"),
        (CODEC_ID_ALAC, "ALAC"),
        (CODEC_ID_SPEEX, "Speex"),
        (CODEC_ID_AC3, "AC-3"),
        (CODEC_ID_WMA, "WMA"),
        (CODEC_ID_VORBIS, "Vorbis"),
        (CODEC_ID_FLAC, "FLAC"),
        (CODEC_ID_MP3, "MP3"),
    ];
    match known.iter().find(|(k, _)| *k == id) {
        Some((_, name)) => format!("{name} (symphonia codec id {id})"),
        None => format!("symphonia codec id {id}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Running,
    EndOfStream,
    Done,
}

/// Streaming decoder: an iterator of mono `f32` chunks (see [`open_chunks`]).
pub struct AudioChunks {
    path: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    sample_rate: u32,
    channels: usize,
    declared_frames: Option<u64>,
    truncation_slack: u64,
    chunk_frames: usize,
    pending: Vec<f32>,
    pending_start: usize,
    scratch: Vec<f32>,
    decoded_frames: u64,
    state: State,
}

impl std::fmt::Debug for AudioChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioChunks")
            .field("path", &self.path)
            .field("sample_rate", &self.sample_rate)
            .field("channels", &self.channels)
            .field("chunk_frames", &self.chunk_frames)
            .field("decoded_frames", &self.decoded_frames)
            .finish_non_exhaustive()
    }
}

impl AudioChunks {
    /// Source sample rate, Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Source channel count (before the mono mix).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Frame count declared by the container, if any (may be an estimate for MP3 without a Xing/Info header).
    pub fn declared_frames(&self) -> Option<u64> {
        self.declared_frames
    }

    /// The file being decoded.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, e: SymError) -> AudioError {
        let path = self.path.clone();
        match e {
            SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                AudioError::Truncated {
                    path,
                    cause: io.to_string(),
                }
            }
            SymError::IoError(source) => AudioError::Io { path, source },
            SymError::Unsupported(what) => AudioError::UnsupportedCodec {
                path,
                cause: what.to_string(),
            },
            SymError::ResetRequired => AudioError::UnsupportedCodec {
                path,
                cause: "the track list changes mid-stream (e.g. chained OGG streams)".into(),
            },
            other => AudioError::Corrupt {
                path,
                cause: other.to_string(),
            },
        }
    }

    /// Reads and decodes the next packet of the track into `pending`. Returns `Ok(false)` at the end of stream.
    fn decode_next_packet(&mut self) -> Result<bool, AudioError> {
        loop {
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) => return Ok(false),
                Err(e) => return Err(self.corrupt(e)),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let buf = match self.decoder.decode(&packet) {
                Ok(buf) => buf,
                Err(e) => return Err(self.corrupt(e)),
            };
            let spec = buf.spec();
            let channels = spec.channels().count();
            let rate = spec.rate();
            if channels == 0 {
                return Err(AudioError::Corrupt {
                    path: self.path.clone(),
                    cause: "decoded buffer has 0 channels".into(),
                });
            }
            buf.copy_to_vec_interleaved(&mut self.scratch);
            if self.sample_rate == 0 {
                self.sample_rate = rate;
            } else if rate != 0 && rate != self.sample_rate {
                return Err(AudioError::UnsupportedCodec {
                    path: self.path.clone(),
                    cause: format!(
                        "sample rate changes mid-stream ({} Hz -> {rate} Hz)",
                        self.sample_rate
                    ),
                });
            }
            if self.channels == 0 {
                self.channels = channels;
            } else if channels != self.channels {
                return Err(AudioError::UnsupportedCodec {
                    path: self.path.clone(),
                    cause: format!(
                        "channel count changes mid-stream ({} -> {channels})",
                        self.channels
                    ),
                });
            }
            let frames = self.scratch.len() / channels;
            self.decoded_frames += frames as u64;
            if channels == 1 {
                self.pending.extend_from_slice(&self.scratch);
            } else {
                let inv = channels as f32;
                self.pending.extend(
                    self.scratch
                        .chunks_exact(channels)
                        .map(|frame| frame.iter().sum::<f32>() / inv),
                );
            }
            return Ok(true);
        }
    }
}

impl Iterator for AudioChunks {
    type Item = Result<Vec<f32>, AudioError>;

    /// Next mono chunk, `[<= chunk_frames]` samples.
    fn next(&mut self) -> Option<Self::Item> {
        if self.state == State::Done {
            return None;
        }
        while self.state == State::Running
            && self.pending.len() - self.pending_start < self.chunk_frames
        {
            // Compact the buffer so that memory stays bounded by one chunk plus one packet.
            if self.pending_start > 0 {
                self.pending.drain(..self.pending_start);
                self.pending_start = 0;
            }
            match self.decode_next_packet() {
                Ok(true) => {}
                Ok(false) => {
                    self.state = State::EndOfStream;
                    if let Some(declared) = self.declared_frames
                        && self.decoded_frames + self.truncation_slack < declared
                    {
                        self.state = State::Done;
                        return Some(Err(AudioError::Truncated {
                            path: self.path.clone(),
                            cause: format!(
                                "decoded {} frames but the header declares {declared}",
                                self.decoded_frames
                            ),
                        }));
                    }
                }
                Err(e) => {
                    self.state = State::Done;
                    return Some(Err(e));
                }
            }
        }
        let available = self.pending.len() - self.pending_start;
        if available == 0 {
            self.state = State::Done;
            if self.decoded_frames == 0 {
                return Some(Err(AudioError::ZeroLength {
                    path: self.path.clone(),
                }));
            }
            return None;
        }
        let take = available.min(self.chunk_frames);
        let chunk = self.pending[self.pending_start..self.pending_start + take].to_vec();
        self.pending_start += take;
        Some(Ok(chunk))
    }
}
