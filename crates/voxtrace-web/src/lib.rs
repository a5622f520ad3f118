//! voxtrace in the browser: Whisper and Voxtral Realtime over Burn's Flex backend, compiled to
//! `wasm32-unknown-unknown` (with `simd128`) and driven from JavaScript through wasm-bindgen
//! (`web/index.html`, `just web`, `just test-web`).
//!
//! Everything numeric is the native library's: the checkpoints come in as bytes (`fetch`)
//! through the same loaders the native build uses on files ([`Whisper::load_ct2_bytes`],
//! [`Voxtral::load_weights_bytes`], [`Voxtral::load_gguf_bytes`]), audio through the same
//! decoder and resampler ([`voxtrace::audio::load_mono_16k_bytes`]), and a trace is the
//! `trace-v1` safetensors file `voxtrace trace` writes for the same clip
//! ([`voxtrace::trace::trace_v1_bytes`]), so `voxtrace compare native.safetensors
//! browser.safetensors` measures the browser's drift layer by layer.
//!
//! Results cross to JavaScript as JSON strings (token ids, text, timings) and byte arrays
//! (traces); errors as `Error`s whose message names the file and the cause.

use std::path::Path;
use std::rc::Rc;

use burn::tensor::{Device, Int, Tensor, TensorData};
use voxtrace::audio::{AudioConfig, StreamResampler, TARGET_SAMPLE_RATE};
use voxtrace::models::checkpoint::ConfigJson;
use voxtrace::models::voxtral::generate::generate_offline;
use voxtrace::models::voxtral::pipeline::prepare_offline;
use voxtrace::models::voxtral::streaming::StreamingSession;
use voxtrace::models::voxtral::{
    PromptTokens, Voxtral, VoxtralConfig, WeightLayout, WeightStorage, streaming_prompt,
};
use voxtrace::models::whisper::Whisper;
use voxtrace::models::whisper::decode::{features, greedy_decode};
use voxtrace::tokenizer::{StreamingDecoder, Tekken, WhisperTokenizer};
use voxtrace::trace::{NameFilter, Scope, Tracer, trace_v1_bytes};
use wasm_bindgen::prelude::*;
use web_time::Instant;

/// A JavaScript `Error` carrying `e`'s message (which names the file and the cause).
fn js_err(e: impl std::fmt::Display) -> JsError {
    JsError::new(&e.to_string())
}

/// The Flex (CPU) device: in the browser, one thread with 128-bit SIMD.
fn flex() -> Result<Device, JsError> {
    voxtrace::backend::device("flex").map_err(js_err)
}

/// Seconds since `t0`.
fn secs(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}

/// The `voxtrace.source` string of a browser trace: as `voxtrace trace`'s, with `wasm32` for
/// the device.
fn trace_source(kind: &str) -> String {
    format!(
        "voxtrace-web {} burn 0.22.1 flex-wasm32-simd128 f32{kind}",
        env!("CARGO_PKG_VERSION")
    )
}

/// Decode a whole audio file's bytes (WAV, FLAC, MP3, OGG/Vorbis) to 16 kHz mono f32, as the
/// native `load_mono_16k` does for a file; `name` (its extension is the format hint) is named
/// in errors.
///
/// # Errors
/// Not audio, unsupported codec, truncated, empty.
#[wasm_bindgen]
pub fn decode_audio(bytes: Vec<u8>, name: &str) -> Result<Vec<f32>, JsError> {
    voxtrace::audio::load_mono_16k_bytes(bytes, name).map_err(js_err)
}

/// Resample mono f32 `samples` at `rate` Hz to 16 kHz (the microphone's rate is the audio
/// context's, often 48 kHz), with the native resampler.
///
/// # Errors
/// A zero rate, a non-finite sample.
#[wasm_bindgen]
pub fn resample_to_16k(samples: Vec<f32>, rate: u32) -> Result<Vec<f32>, JsError> {
    voxtrace::audio::resample_to_16k(&samples, rate).map_err(js_err)
}

/// Whisper (CTranslate2 folder: `model.bin`, `config.json`, `tokenizer.json`) loaded from bytes.
#[wasm_bindgen]
pub struct WhisperModel {
    model: Whisper,
    tok: WhisperTokenizer,
    device: Device,
    load_s: f64,
}

#[wasm_bindgen]
impl WhisperModel {
    /// Load from the bytes of a CTranslate2 Whisper folder's three files; `dir` names the
    /// folder in errors (e.g. the URL they were fetched from).
    ///
    /// # Errors
    /// A damaged or unexpected `model.bin` (byte offset named), bad `config.json` or
    /// `tokenizer.json`.
    #[wasm_bindgen(constructor)]
    pub fn new(
        model_bin: &[u8],
        config_json: &[u8],
        tokenizer_json: &[u8],
        dir: &str,
    ) -> Result<WhisperModel, JsError> {
        let t0 = Instant::now();
        let device = flex()?;
        let dir = Path::new(dir);
        let model =
            Whisper::load_ct2_bytes(model_bin, config_json, dir, &device).map_err(js_err)?;
        let tok = WhisperTokenizer::from_bytes(tokenizer_json, &dir.join("tokenizer.json"))
            .map_err(js_err)?;
        Ok(Self {
            model,
            tok,
            device,
            load_s: secs(t0),
        })
    }

    /// Seconds the constructor took (parse, f16 -> f32, module build).
    pub fn load_seconds(&self) -> f64 {
        self.load_s
    }

    /// Number of parameters (f32 each in memory).
    pub fn num_params(&self) -> f64 {
        use burn::module::Module;
        self.model.net.num_params() as f64
    }

    /// Transcribe 16 kHz mono `samples` (greedy, no timestamps, 30 s windows: the native
    /// [`Whisper::transcribe`]). JSON: `{"ids": [[...] per window, prompt and EOT included],
    /// "text", "audio_seconds", "encode_seconds", "decode_seconds", "seconds", "rtf"}`.
    ///
    /// # Errors
    /// Features, model or tokenizer errors.
    pub fn transcribe(&self, samples: &[f32]) -> Result<String, JsError> {
        let t0 = Instant::now();
        let t = self
            .model
            .transcribe(samples, &self.tok, &self.device)
            .map_err(js_err)?;
        let seconds = secs(t0);
        let audio_seconds = samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE);
        let ids: Vec<&[u32]> = t
            .windows
            .iter()
            .map(|w| w.output.token_ids.as_slice())
            .collect();
        Ok(serde_json::json!({
            "ids": ids,
            "text": t.text,
            "audio_seconds": audio_seconds,
            "encode_seconds": t.windows.iter().map(|w| w.encode_s).sum::<f64>(),
            "decode_seconds": t.windows.iter().map(|w| w.decode_s).sum::<f64>(),
            "seconds": seconds,
            "rtf": seconds / audio_seconds.max(1e-9),
        })
        .to_string())
    }

    /// The `trace-v1` dump `voxtrace trace --model WHISPER_DIR` writes for the same audio:
    /// greedy decoding of the first 30 s window, then one teacher-forced pass
    /// (`model(input_features, decoder_input_ids)`) on the generated sequence without its
    /// last token, every intermediate tensor recorded under transformers' names, with
    /// `generated_ids` first.
    ///
    /// # Errors
    /// Features or model errors; tracing errors.
    pub fn trace(&self, samples: &[f32]) -> Result<Vec<u8>, JsError> {
        let window = &samples[..samples.len().min(30 * 16_000)];
        let feats = features(window, &self.device).map_err(js_err)?;
        let net = &self.model.net;
        let enc = net
            .model
            .encoder
            .forward(feats.clone(), &Scope::off())
            .map_err(js_err)?;
        let g = greedy_decode(net, &enc, &self.model.generation).map_err(js_err)?;
        let generated: Vec<i64> = g.token_ids.iter().map(|&t| i64::from(t)).collect();
        let forced = generated[..generated.len() - 1].to_vec();
        let ids = int_tensor(forced, &self.device);
        let tracer = Tracer::in_memory(NameFilter::all());
        tracer
            .root()
            .record_int("generated_ids", &int_tensor(generated, &self.device));
        net.forward(feats, ids, &tracer.root()).map_err(js_err)?;
        let tensors = tracer.finish().map_err(js_err)?;
        trace_v1_bytes(&tensors, &trace_source(" whisper")).map_err(js_err)
    }
}

/// `[1, n]` int tensor of `ids`.
fn int_tensor(ids: Vec<i64>, device: &Device) -> Tensor<2, Int> {
    let n = ids.len();
    Tensor::from_data(TensorData::new(ids, [1, n]), device)
}

/// A loaded Voxtral Realtime model and its Tekken tokenizer (shared with the streams).
struct Loaded {
    model: Voxtral,
    tok: Tekken,
}

/// Voxtral Realtime (a Mistral-layout folder: `params.json`, `tekken.json`,
/// `consolidated.safetensors`; or a voxtral.cpp GGUF file) loaded from bytes.
#[wasm_bindgen]
pub struct VoxtralModel {
    loaded: Rc<Loaded>,
    device: Device,
    load_s: f64,
}

#[wasm_bindgen]
impl VoxtralModel {
    /// Load a Mistral-layout folder from its three files' bytes; `dir` names it in errors.
    /// BF16 / F16 matrices are used as stored, as natively ([`WeightStorage::AsStored`]).
    ///
    /// # Errors
    /// Bad `params.json` or `tekken.json`, a damaged safetensors file, tensors missing or
    /// mis-shaped (all listed).
    #[wasm_bindgen(constructor)]
    pub fn new(
        params_json: &[u8],
        tekken_json: &[u8],
        consolidated: Vec<u8>,
        dir: &str,
    ) -> Result<VoxtralModel, JsError> {
        let t0 = Instant::now();
        let device = flex()?;
        let dir = Path::new(dir);
        let params_path = dir.join("params.json");
        let value = serde_json::from_slice(params_json)
            .map_err(|e| js_err(format!("{}: not valid JSON: {e}", params_path.display())))?;
        let cfg = VoxtralConfig::from_params_value(ConfigJson::from_value(&params_path, value))
            .map_err(js_err)?;
        let tok = Tekken::from_json_bytes(tekken_json, dir.join("tekken.json")).map_err(js_err)?;
        let model = Voxtral::load_weights_bytes(
            cfg,
            bytes::Bytes::from(consolidated),
            &dir.join("consolidated.safetensors"),
            WeightLayout::Mistral,
            WeightStorage::AsStored,
            &device,
        )
        .map_err(js_err)?;
        Ok(Self {
            loaded: Rc::new(Loaded { model, tok }),
            device,
            load_s: secs(t0),
        })
    }

    /// Load a voxtral.cpp GGUF file (F32, F16, BF16, Q8_0, Q4_0 tensors; the tokenizer from
    /// its metadata) from its bytes; `name` names it in errors. Packed matrices stay packed.
    ///
    /// # Errors
    /// Not GGUF or damaged, not `voxtral_realtime`, keys or tensors missing.
    pub fn from_gguf(bytes: Vec<u8>, name: &str) -> Result<VoxtralModel, JsError> {
        let t0 = Instant::now();
        let device = flex()?;
        let (model, tok) =
            Voxtral::load_gguf_bytes(bytes::Bytes::from(bytes), Path::new(name), &device)
                .map_err(js_err)?;
        Ok(Self {
            loaded: Rc::new(Loaded { model, tok }),
            device,
            load_s: secs(t0),
        })
    }

    /// [`VoxtralModel::from_gguf`] of a file that came in shards ([`ShardedFile`], complete):
    /// its one buffer becomes the model's weight storage without another copy.
    ///
    /// # Errors
    /// Fewer bytes pushed than announced; the errors of [`VoxtralModel::from_gguf`].
    pub fn from_gguf_shards(file: ShardedFile) -> Result<VoxtralModel, JsError> {
        if file.buf.len() != file.total {
            return Err(js_err(format!(
                "{}: {} of {} bytes received",
                file.name,
                file.buf.len(),
                file.total
            )));
        }
        Self::from_gguf(file.buf, &file.name)
    }

    /// Seconds the loader took.
    pub fn load_seconds(&self) -> f64 {
        self.load_s
    }

    /// Start a streaming transcription of mono audio at `sample_rate` Hz (resampled to 16 kHz
    /// as it arrives) with a transcription delay of `delay_ms` (a multiple of 80; 480 as the
    /// native default).
    ///
    /// # Errors
    /// A delay the tokenizer's audio settings refuse, a zero sample rate.
    pub fn stream(&self, delay_ms: f64, sample_rate: u32) -> Result<VoxtralStream, JsError> {
        let resampler = StreamResampler::new(sample_rate, TARGET_SAMPLE_RATE).map_err(js_err)?;
        let device = self.device.clone();
        let cell = StreamCell::try_new(self.loaded.clone(), |l| {
            let cfg = audio_config(&l.tok);
            let tokens = PromptTokens::from_tekken(&l.tok).map_err(js_err)?;
            let prompt = streaming_prompt(&tokens, &cfg, Some(delay_ms)).map_err(js_err)?;
            let session = StreamingSession::new(
                &l.model,
                cfg,
                prompt.ids,
                prompt.delay_tokens,
                Some(tokens.eos),
                &device,
            )
            .map_err(js_err)?;
            Ok::<_, JsError>(Session {
                session,
                decoder: l.tok.streaming_decoder(),
            })
        })?;
        Ok(VoxtralStream {
            cell,
            resampler: Some(resampler),
            delay_ms,
            samples: 0,
            t0: Instant::now(),
            busy_s: 0.0,
        })
    }

    /// The `trace-v1` dump `voxtrace trace --model VOXTRAL_DIR` writes for the same 16 kHz
    /// `samples`: greedy offline generation, then one teacher-forced forward pass on the
    /// generated sequence (padded with `[STREAMING_PAD]` to one id per audio token), with
    /// `generated_ids`, `input_features`, `input_ids` and every intermediate tensor.
    ///
    /// # Errors
    /// Audio settings or tokenizer errors; tracing errors.
    pub fn trace(&self, samples: &[f32], delay_ms: f64) -> Result<Vec<u8>, JsError> {
        let (model, tok) = (&self.loaded.model, &self.loaded.tok);
        let cfg = audio_config(tok);
        let tokens = PromptTokens::from_tekken(tok).map_err(js_err)?;
        let prompt = streaming_prompt(&tokens, &cfg, Some(delay_ms)).map_err(js_err)?;
        let feats = prepare_offline(samples, tok, delay_ms, &self.device)
            .map_err(js_err)?
            .features;
        let n_tokens = feats.dims()[2] / cfg.audio_length_per_tok();
        let delay = prompt.delay_tokens as f32;
        let g = generate_offline(model, feats.clone(), &prompt.ids, delay, Some(tokens.eos));
        let generated = g.sequence.clone();
        let mut seq = g.sequence;
        seq.resize(n_tokens.max(seq.len()), tokens.streaming_pad);
        let ids = int_tensor(seq, &self.device);
        let tracer = Tracer::in_memory(NameFilter::all());
        let root = tracer.root();
        root.record_int("generated_ids", &int_tensor(generated, &self.device));
        root.record("input_features", &feats);
        root.record_int("input_ids", &ids);
        let _ = model.forward(feats, ids, delay, &root);
        let tensors = tracer.finish().map_err(js_err)?;
        trace_v1_bytes(&tensors, &trace_source("")).map_err(js_err)
    }
}

/// One large file (a Q4_0 GGUF of the full-size model: ~2.4 GB) assembled in wasm memory from
/// shards fetched one at a time (e.g. 512 MB each, `split -b 512M`), so the JavaScript heap
/// never holds more than one shard and the wasm heap holds the file once: its buffer is
/// reserved whole up front (no doubling as it grows) and handed to the loader as is.
#[wasm_bindgen]
pub struct ShardedFile {
    buf: Vec<u8>,
    total: usize,
    name: String,
}

#[wasm_bindgen]
impl ShardedFile {
    /// Reserve `total` bytes (the file's size) for the file `name` (named in errors).
    ///
    /// # Errors
    /// The reservation fails (a 32-bit wasm memory holds at most 4 GiB, less what is in use).
    #[wasm_bindgen(constructor)]
    pub fn new(total: f64, name: &str) -> Result<ShardedFile, JsError> {
        if !(total.is_finite() && total >= 0.0 && total <= usize::MAX as f64) {
            return Err(js_err(format!("{name}: size {total} is not a byte count")));
        }
        let total = total as usize;
        let mut buf = Vec::new();
        buf.try_reserve_exact(total)
            .map_err(|e| js_err(format!("{name}: cannot reserve {total} bytes: {e}")))?;
        Ok(Self {
            buf,
            total,
            name: name.to_string(),
        })
    }

    /// Append the next shard.
    ///
    /// # Errors
    /// More bytes than announced.
    pub fn push(&mut self, shard: &[u8]) -> Result<(), JsError> {
        if self.buf.len() + shard.len() > self.total {
            return Err(js_err(format!(
                "{}: shards exceed the announced {} bytes",
                self.name, self.total
            )));
        }
        self.buf.extend_from_slice(shard);
        Ok(())
    }

    /// Bytes received so far.
    pub fn received(&self) -> f64 {
        self.buf.len() as f64
    }
}

/// The tokenizer's audio settings (tekken.json `audio`), Voxtral Realtime's when absent.
fn audio_config(tok: &Tekken) -> AudioConfig {
    tok.audio()
        .cloned()
        .unwrap_or_else(AudioConfig::voxtral_realtime)
}

/// A streaming session and its text decoder, both borrowing the loaded model and tokenizer.
struct Session<'a> {
    session: StreamingSession<'a>,
    decoder: StreamingDecoder<'a>,
}

self_cell::self_cell!(
    struct StreamCell {
        owner: Rc<Loaded>,
        #[not_covariant]
        dependent: Session,
    }
);

/// One streaming Voxtral transcription: push audio as it arrives (a file in pieces, or the
/// microphone), read the text as it grows.
#[wasm_bindgen]
pub struct VoxtralStream {
    cell: StreamCell,
    /// `None` once finished.
    resampler: Option<StreamResampler>,
    delay_ms: f64,
    /// 16 kHz samples pushed.
    samples: usize,
    t0: Instant,
    /// Seconds spent inside `push` / `finish` (compute, not waiting for audio).
    busy_s: f64,
}

#[wasm_bindgen]
impl VoxtralStream {
    /// Push mono samples at the stream's rate; returns the text decoded from them (possibly
    /// empty: the model emits `[STREAMING_PAD]` while it waits, and a multi-byte character
    /// waits for its last byte).
    ///
    /// # Errors
    /// A non-finite sample; a token the tokenizer cannot decode.
    pub fn push(&mut self, samples: &[f32]) -> Result<String, JsError> {
        let t = Instant::now();
        let resampler = self
            .resampler
            .as_mut()
            .ok_or_else(|| js_err("push after finish"))?;
        let chunk = resampler.push(samples).map_err(js_err)?;
        self.samples += chunk.len();
        let text = self.cell.with_dependent_mut(|_, s| {
            if s.session.is_done() {
                return Ok(String::new());
            }
            let ids = s.session.push(&chunk).map_err(js_err)?;
            pieces(&mut s.decoder, ids)
        });
        self.busy_s += secs(t);
        text
    }

    /// End of audio: flush the resampler, append the right padding and drain. Returns the
    /// last text.
    ///
    /// # Errors
    /// As [`VoxtralStream::push`].
    pub fn finish(&mut self) -> Result<String, JsError> {
        let t = Instant::now();
        let resampler = self
            .resampler
            .take()
            .ok_or_else(|| js_err("finish called twice"))?;
        let rest = resampler.finish().map_err(js_err)?;
        self.samples += rest.len();
        let delay_ms = self.delay_ms;
        let text = self.cell.with_dependent_mut(|owner, s| {
            let mut text = String::new();
            if !s.session.is_done() {
                let ids = s.session.push(&rest).map_err(js_err)?;
                text += &pieces(&mut s.decoder, ids)?;
            }
            let ids = s.session.finish(delay_ms).map_err(js_err)?;
            text += &pieces(&mut s.decoder, ids)?;
            let decoder = std::mem::replace(&mut s.decoder, owner.tok.streaming_decoder());
            text += &decoder.finish();
            Ok::<_, JsError>(text)
        });
        self.busy_s += secs(t);
        text
    }

    /// JSON: `{"ids": [prompt and generated ids], "prompt_len", "audio_seconds",
    /// "compute_seconds" (inside push/finish), "wall_seconds" (since the stream started),
    /// "rtf" (compute / audio)}`.
    pub fn summary(&self) -> String {
        let audio_seconds = self.samples as f64 / f64::from(TARGET_SAMPLE_RATE);
        self.cell.with_dependent(|_, s| {
            serde_json::json!({
                "ids": s.session.sequence(),
                "prompt_len": s.session.prompt_len(),
                "audio_seconds": audio_seconds,
                "compute_seconds": self.busy_s,
                "wall_seconds": secs(self.t0),
                "rtf": self.busy_s / audio_seconds.max(1e-9),
            })
            .to_string()
        })
    }
}

/// The text of `ids` through the streaming decoder.
fn pieces(decoder: &mut StreamingDecoder<'_>, ids: Vec<i64>) -> Result<String, JsError> {
    let mut text = String::new();
    for id in ids {
        let id = u32::try_from(id).map_err(|_| js_err(format!("token id {id} out of range")))?;
        text += &decoder.push(id).map_err(js_err)?;
    }
    Ok(text)
}
