//! The models a server holds and the one place that calls their transcription functions.
//!
//! [`LoadedModel`] is a small enum over the model families voxtrace runs; every request path
//! (the OpenAI endpoint, the realtime websocket) goes through [`LoadedModel::transcribe_file`]
//! or [`VoxtralStream`]. Whisper's transcription calls are in [`whisper_transcript`]: up to
//! 30 s the short-form decode, longer audio long-form with timestamps, the choice the eval's
//! `whisper:` system makes, so the server answers the in-process port's transcripts.
//! Voxtral models are opened with [`Voxtral::open`]: a checkpoint folder or a voxtral.cpp
//! GGUF file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::tensor::Device;

use crate::audio::mel::WHISPER_N_SAMPLES;
use crate::audio::{AudioConfig, StreamResampler, TARGET_SAMPLE_RATE, open_chunks};
use crate::models::voxtral::streaming::StreamingSession;
use crate::models::voxtral::{PromptTokens, Voxtral, streaming_prompt};
use crate::models::whisper::decode::DecodeError;
use crate::models::whisper::{LongFormOptions, Whisper, segments_text, transcribe_long};
use crate::tokenizer::{Tekken, WhisperTokenizer};

use super::ServeError;

/// Which family a served model belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFamily {
    /// Whisper (tiny.en): greedy decoding, English-only prompt.
    Whisper,
    /// Voxtral Realtime: streaming schedule (80 ms steps); also served on `/v1/realtime`.
    Voxtral,
}

impl ModelFamily {
    /// `whisper` or `voxtral`.
    pub fn name(self) -> &'static str {
        match self {
            ModelFamily::Whisper => "whisper",
            ModelFamily::Voxtral => "voxtral",
        }
    }
}

/// A model loaded on a device with its tokenizer. Shared between requests behind an [`Arc`];
/// every method takes `&self`.
#[expect(
    clippy::large_enum_variant,
    reason = "one value per served model, built once and held behind an Arc"
)]
pub enum LoadedModel {
    /// Whisper tiny.en (CTranslate2 or transformers folder) and `tokenizer.json`.
    Whisper {
        /// The network and its generation settings.
        model: Whisper,
        /// Byte-level BPE tokenizer.
        tok: WhisperTokenizer,
        /// Device the weights live on.
        device: Device,
    },
    /// Voxtral Realtime (Mistral or HF folder with `tekken.json`, or a GGUF file with the
    /// tokenizer in its metadata).
    Voxtral {
        /// The network.
        model: Voxtral,
        /// Tekken tokenizer.
        tok: Tekken,
        /// Device the weights live on.
        device: Device,
        /// Transcription delay, ms (a multiple of 80; 480 is the released default).
        delay_ms: f64,
    },
}

/// One stretch of a transcript with its place in the audio.
#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    /// Start, seconds from the beginning of the audio.
    pub start_s: f64,
    /// End, seconds.
    pub end_s: f64,
    /// Text of the stretch, whitespace-trimmed.
    pub text: String,
    /// Generated token ids of the stretch (prompt and control tokens excluded where the model
    /// says which they are; Whisper long-form: the segment's tokens with its timestamp tokens,
    /// as openai-whisper's `segments[].tokens`).
    pub tokens: Vec<u32>,
    /// Start of the window the stretch was decoded from, seconds (openai-whisper's `seek`, in
    /// seconds); 0 for a single-window transcript.
    pub seek_s: f64,
    /// Average log-probability of the window's tokens (openai-whisper's `avg_logprob`), when
    /// the decode computes it (Whisper long-form).
    pub avg_logprob: Option<f64>,
    /// `<|nocaptions|>` probability of the window (openai-whisper's `no_speech_prob`), when the
    /// decode computes it (Whisper long-form).
    pub no_speech_prob: Option<f64>,
}

/// A transcription of one upload.
#[derive(Clone, Debug, PartialEq)]
pub struct ServedTranscript {
    /// The whole text, trimmed. Whisper: the eval's `whisper:` system's (the short-form text up
    /// to 30 s, the long-form segment texts joined with a space beyond); Voxtral: `voxtrace
    /// transcribe`'s.
    pub text: String,
    /// Audio length, seconds (16 kHz samples after resampling).
    pub duration_s: f64,
    /// Segments in time order. Whisper up to 30 s and Voxtral: one for the whole audio (no
    /// timestamps decoded); Whisper above 30 s: the long-form segments with their decoded
    /// timestamps.
    pub segments: Vec<Segment>,
}

/// Whisper's transcription of 16 kHz mono `samples`, as the eval's `whisper:` system makes it:
/// up to [`WHISPER_N_SAMPLES`] (30 s) transformers' short-form decode
/// ([`Whisper::transcribe`], no timestamps, token-exact with upstream), one segment over the
/// whole audio; longer audio long-form with timestamps ([`transcribe_long`] with upstream's
/// defaults, as openai-whisper's and faster-whisper's `transcribe`), one segment per decoded
/// segment and the text their texts joined with a space.
///
/// # Errors
/// [`ServeError::Inference`] from the decoder.
fn whisper_transcript(
    model: &Whisper,
    tok: &WhisperTokenizer,
    device: &Device,
    samples: &[f32],
) -> Result<ServedTranscript, ServeError> {
    let duration_s = samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE);
    let inf = |e: DecodeError| ServeError::Inference(e.to_string());
    if samples.len() > WHISPER_N_SAMPLES {
        let segs = transcribe_long(model, tok, samples, &LongFormOptions::default(), device)
            .map_err(inf)?;
        return Ok(ServedTranscript {
            text: segments_text(&segs),
            duration_s,
            segments: segs
                .into_iter()
                .map(|s| Segment {
                    start_s: s.start_s,
                    end_s: s.end_s,
                    text: s.text,
                    tokens: s.tokens,
                    seek_s: s.seek_s,
                    avg_logprob: Some(s.avg_logprob),
                    no_speech_prob: Some(s.no_speech_prob),
                })
                .collect(),
        });
    }
    let t = model.transcribe(samples, tok, device).map_err(inf)?;
    let prompt_len = model.generation.prompt.len();
    let text = t.text.trim().to_string();
    let segments = match t.windows.first() {
        Some(w) if !text.is_empty() => vec![Segment {
            start_s: 0.0,
            end_s: duration_s,
            text: text.clone(),
            tokens: w
                .output
                .token_ids
                .get(prompt_len..)
                .unwrap_or_default()
                .iter()
                .copied()
                .filter(|&id| id != model.generation.eos_token_id)
                .collect(),
            seek_s: 0.0,
            avg_logprob: None,
            no_speech_prob: None,
        }],
        _ => Vec::new(),
    };
    Ok(ServedTranscript {
        text,
        duration_s,
        segments,
    })
}

impl LoadedModel {
    /// Load `dir`: Whisper (a folder or a Whisper GGUF file) when
    /// [`crate::models::whisper::is_whisper_model`] says so,
    /// else Voxtral Realtime through [`Voxtral::open`] (a checkpoint folder with `tekken.json`,
    /// or a voxtral.cpp GGUF file); `delay_ms` is Voxtral's transcription delay.
    ///
    /// # Errors
    /// [`ServeError::Load`] naming the folder or file and the cause.
    pub fn load(dir: &Path, device: &Device, delay_ms: f64) -> Result<Self, ServeError> {
        let load = |what: &str, e: &dyn std::fmt::Display| ServeError::Load {
            path: dir.to_path_buf(),
            cause: format!("{what}: {e}"),
        };
        if crate::models::whisper::is_whisper_model(dir) {
            let (model, tok) =
                Whisper::open(dir, None, device).map_err(|e| load("Whisper checkpoint", &e))?;
            Ok(LoadedModel::Whisper {
                model,
                tok,
                device: device.clone(),
            })
        } else {
            let (model, tok) =
                Voxtral::open(dir, None, device).map_err(|e| load("Voxtral checkpoint", &e))?;
            // Refuse a bad delay now rather than on every request.
            let cfg = tok
                .audio()
                .cloned()
                .unwrap_or_else(AudioConfig::voxtral_realtime);
            let tokens = PromptTokens::from_tekken(&tok).map_err(|e| load("tekken.json", &e))?;
            streaming_prompt(&tokens, &cfg, Some(delay_ms))
                .map_err(|e| load("transcription delay", &e))?;
            Ok(LoadedModel::Voxtral {
                model,
                tok,
                device: device.clone(),
                delay_ms,
            })
        }
    }

    /// The model's family.
    pub fn family(&self) -> ModelFamily {
        match self {
            LoadedModel::Whisper { .. } => ModelFamily::Whisper,
            LoadedModel::Voxtral { .. } => ModelFamily::Voxtral,
        }
    }

    /// Transcribe the audio file at `path` (any format [`crate::audio::decode_file`] reads).
    /// Whisper: decoded and resampled whole, then [`whisper_transcript`]; Voxtral: decoded,
    /// resampled and transcribed chunk by chunk on the streaming schedule (bounded memory),
    /// the same steps as `voxtrace transcribe`.
    ///
    /// # Errors
    /// [`ServeError::Audio`] for a file that is not usable audio, [`ServeError::Inference`]
    /// for a failure of the model.
    pub fn transcribe_file(&self, path: &Path) -> Result<ServedTranscript, ServeError> {
        match self {
            LoadedModel::Whisper { model, tok, device } => {
                let samples = crate::audio::load_mono_16k(path)?;
                whisper_transcript(model, tok, device, &samples)
            }
            LoadedModel::Voxtral { .. } => {
                let mut stream = VoxtralStream::new(self)?;
                let chunks = open_chunks(path, 1280)?;
                let mut resampler = StreamResampler::new(chunks.sample_rate(), TARGET_SAMPLE_RATE)?;
                for chunk in chunks {
                    let chunk = resampler.push(&chunk?)?;
                    stream.push(&chunk)?;
                    if stream.is_done() {
                        break;
                    }
                }
                if !stream.is_done() {
                    let rest = resampler.finish()?;
                    stream.push(&rest)?;
                }
                stream.finish()?;
                let duration_s = stream.samples as f64 / f64::from(TARGET_SAMPLE_RATE);
                let text = stream.text.trim().to_string();
                let tokens = stream.generated().iter().map(|&i| i as u32).collect();
                Ok(ServedTranscript {
                    segments: vec![Segment {
                        start_s: 0.0,
                        end_s: duration_s,
                        text: text.clone(),
                        tokens,
                        seek_s: 0.0,
                        avg_logprob: None,
                        no_speech_prob: None,
                    }],
                    text,
                    duration_s,
                })
            }
        }
    }
}

/// Voxtral's streaming transcription of pushed 16 kHz samples, text out as it is decoded: the
/// [`StreamingSession`] and Tekken's streaming decoder together. Used by the HTTP endpoint
/// (pushing a decoded file) and by `/v1/realtime` (pushing websocket audio).
pub struct VoxtralStream<'a> {
    session: StreamingSession<'a>,
    /// `None` once [`VoxtralStream::finish`] flushed it.
    decoder: Option<crate::tokenizer::StreamingDecoder<'a>>,
    delay_ms: f64,
    /// Text decoded so far (untrimmed).
    pub text: String,
    /// Real samples pushed so far.
    pub samples: usize,
}

impl<'a> VoxtralStream<'a> {
    /// Start a stream on `model`, which must be [`LoadedModel::Voxtral`].
    ///
    /// # Errors
    /// [`ServeError::WrongFamily`] for a Whisper model; [`ServeError::Inference`] when the
    /// prompt cannot be built.
    pub fn new(model: &'a LoadedModel) -> Result<Self, ServeError> {
        let LoadedModel::Voxtral {
            model,
            tok,
            device,
            delay_ms,
        } = model
        else {
            return Err(ServeError::WrongFamily("a Voxtral Realtime model"));
        };
        let cfg = tok
            .audio()
            .cloned()
            .unwrap_or_else(AudioConfig::voxtral_realtime);
        let inf = |e: &dyn std::fmt::Display| ServeError::Inference(e.to_string());
        let tokens = PromptTokens::from_tekken(tok).map_err(|e| inf(&e))?;
        let prompt = streaming_prompt(&tokens, &cfg, Some(*delay_ms)).map_err(|e| inf(&e))?;
        let session = StreamingSession::new(
            model,
            cfg,
            prompt.ids,
            prompt.delay_tokens,
            Some(tokens.eos),
            device,
        )?;
        Ok(VoxtralStream {
            session,
            decoder: Some(tok.streaming_decoder()),
            delay_ms: *delay_ms,
            text: String::new(),
            samples: 0,
        })
    }

    /// Push 16 kHz mono samples; returns the text decoded by this push (may be empty).
    ///
    /// # Errors
    /// A non-finite sample, a token outside the vocabulary.
    pub fn push(&mut self, samples: &[f32]) -> Result<String, ServeError> {
        self.samples += samples.len();
        let ids = self.session.push(samples)?;
        self.decode(ids)
    }

    /// Whether the model emitted its end-of-stream token (later audio is ignored).
    pub fn is_done(&self) -> bool {
        self.session.is_done()
    }

    /// End of audio: pad, drain and flush the decoder; returns the last text.
    ///
    /// # Errors
    /// As [`VoxtralStream::push`].
    pub fn finish(&mut self) -> Result<String, ServeError> {
        if self.decoder.is_none() {
            return Err(ServeError::Inference("stream already finished".into()));
        }
        let ids = self.session.finish(self.delay_ms)?;
        let mut out = self.decode(ids)?;
        let rest = self.decoder.take().map(|d| d.finish()).unwrap_or_default();
        self.text.push_str(&rest);
        out.push_str(&rest);
        Ok(out)
    }

    /// Prompt length in tokens.
    pub fn prompt_len(&self) -> usize {
        self.session.prompt_len()
    }

    /// The ids generated after the prompt.
    pub fn generated(&self) -> &[i64] {
        &self.session.sequence()[self.session.prompt_len()..]
    }

    fn decode(&mut self, ids: Vec<i64>) -> Result<String, ServeError> {
        let mut out = String::new();
        for id in ids {
            let Some(decoder) = self.decoder.as_mut() else {
                return Err(ServeError::Inference("stream already finished".into()));
            };
            let piece = decoder
                .push(id as u32)
                .map_err(|e| ServeError::Inference(e.to_string()))?;
            out.push_str(&piece);
        }
        self.text.push_str(&out);
        Ok(out)
    }
}

/// A served model: its id (what clients send as `model`), its folder or file and the loaded
/// weights.
pub struct ModelEntry {
    /// Id clients name it by.
    pub id: String,
    /// Checkpoint folder (or Voxtral GGUF file).
    pub dir: PathBuf,
    /// Unix time it was loaded (the `created` of `/v1/models`).
    pub created: u64,
    /// The weights.
    pub model: Arc<LoadedModel>,
}

/// Parse a `--model` argument: `NAME=PATH`, or `PATH` (a folder or a GGUF file) with its file
/// name as the id.
///
/// # Errors
/// [`ServeError::BadModelArg`]: an empty or ill-formed id (ASCII letters, digits, `-`, `_`,
/// `.`, `/`, `:`), or a folder without a name.
pub fn parse_model_arg(arg: &str) -> Result<(String, PathBuf), ServeError> {
    let bad = |problem: String| ServeError::BadModelArg {
        arg: arg.to_string(),
        problem,
    };
    let (id, dir) = match arg.split_once('=') {
        Some((id, dir)) => (id.trim().to_string(), PathBuf::from(dir)),
        None => {
            let dir = PathBuf::from(arg);
            let id = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    bad("the folder has no name to use as model id; give NAME=DIR".into())
                })?;
            (id, dir)
        }
    };
    if id.is_empty()
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
    {
        return Err(bad(format!(
            "model id {id:?} must be non-empty ASCII letters, digits, '-', '_', '.', '/' or ':'"
        )));
    }
    if dir.as_os_str().is_empty() {
        return Err(bad("empty folder".into()));
    }
    Ok((id, dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_args() {
        assert_eq!(
            parse_model_arg("models-cache/whisper-tiny.en").unwrap(),
            (
                "whisper-tiny.en".into(),
                PathBuf::from("models-cache/whisper-tiny.en")
            )
        );
        assert_eq!(
            parse_model_arg("tiny=fixtures/voxtral_tiny/mistral").unwrap(),
            (
                "tiny".into(),
                PathBuf::from("fixtures/voxtral_tiny/mistral")
            )
        );
        assert!(parse_model_arg("=dir").is_err());
        assert!(parse_model_arg("a b=dir").is_err());
        assert!(parse_model_arg("x=").is_err());
        assert!(parse_model_arg("/").is_err());
    }
}
