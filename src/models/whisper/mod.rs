//! Whisper tiny.en (OpenAI), second model: real trained weights.
//!
//! The module tree mirrors transformers' `WhisperForConditionalGeneration`
//! (huggingface/transformers <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/modeling_whisper.py>), so
//! parameter paths equal HF state-dict keys and capture names equal forward-hook names:
//!
//! ```text
//! model.encoder                 log-mel [b, 80, 3000] -> [b, 1500, 384]
//!   .conv1 / .conv2             Conv1d k=3 pad 1 (stride 1, then 2), GELU after each
//!   .embed_positions            sinusoidal table stored as weights [1500, 384], added
//!   .layers.N                   LayerNorm -> self_attn (6 heads, no mask) -> + ;
//!                               final_layer_norm -> fc1 -> GELU (activation_fn) -> fc2 -> +
//!   .layer_norm
//! model.decoder                 token ids [b, s] -> [b, s, 384]
//!   .embed_tokens               [51864, 384]
//!   .embed_positions            learned [448, 384]
//!   .layers.N                   self_attn (causal) ; encoder_attn (cross, k/v from encoder) ; FFN
//!   .layer_norm
//! proj_out                      tied to embed_tokens -> logits [b, s, 51864]
//! ```
//!
//! * [`ct2`]: CTranslate2 `model.bin` reader and mapping to transformers names.
//! * [`config`]: [`WhisperConfig`] (shape) and [`GenerationSettings`] (greedy settings).
//! * [`model`]: the Burn modules; attention maths from [`crate::nn::attention`].
//! * [`loader`]: [`Whisper::load`] from a CTranslate2 or a transformers folder;
//!   [`is_whisper_dir`] for the CLI.
//! * [`gguf`]: one self-contained GGUF file (weights in f32, f16, bf16, q8_0 or q4_0,
//!   configuration, generation settings, tokenizer): [`gguf::write_gguf`] (`voxtrace quantize`),
//!   [`Whisper::load_gguf`] (packed matrices used in place), [`Whisper::open`] (folder or file,
//!   with the tokenizer) and [`is_whisper_model`] for the CLI.
//! * [`decode`]: greedy decoding exactly as transformers `generate` for tiny.en without
//!   timestamps (token-exact on clips up to 30 s; longer audio in fixed 30 s windows).
//! * [`longform`]: [`transcribe_long`], audio of any length into timestamped [`Segment`]s as
//!   openai-whisper's and faster-whisper's `transcribe` (timestamp tokens, seek to the last
//!   complete segment); [`subtitles`] renders segments as text, SRT or WebVTT. The `tokenizer.json` wrapper is [`crate::tokenizer::WhisperTokenizer`]
//!   (re-exported here).
//!
//! Loading errors are the shared [`crate::models::CheckpointError`].
//!
//! ```no_run
//! use voxtrace::models::whisper::Whisper;
//! use voxtrace::tokenizer::WhisperTokenizer;
//! let device = burn::tensor::Device::flex();
//! let dir = std::path::Path::new("models-cache/whisper-tiny.en");
//! let model = Whisper::load(dir, &device)?;
//! let tok = WhisperTokenizer::from_file(&dir.join("tokenizer.json"))?;
//! let samples = voxtrace::audio::load_mono_16k("clip.wav")?;
//! println!("{}", model.transcribe(&samples, &tok, &device)?.text);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod ct2;
pub mod decode;
pub mod gguf;
pub mod loader;
pub mod longform;
pub mod model;
pub mod subtitles;

pub use config::{GenerationSettings, WhisperConfig};
pub use decode::{GreedyOutput, Transcript, greedy_decode};
pub use gguf::{is_whisper_gguf, is_whisper_model};
pub use loader::{Whisper, WhisperLayout, is_whisper_dir};
pub use longform::{LongFormOptions, Segment, segments_text, transcribe_long};
pub use model::WhisperForConditionalGeneration;
