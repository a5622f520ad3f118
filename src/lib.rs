//! voxtrace: port speech-to-text transformers to Burn and prove the port right, layer by layer.
//!
//! Layers, lowest first; a module uses only its own layer or lower ones (`tests/architecture.rs`
//! checks it, and that nothing imports the CLI):
//! 1. Files and devices: [`io`] (atomic writes, the safetensors writer), [`backend`] (device
//!    selection by name).
//! 2. Numerics and inputs: [`audio`] (decoding, resampling, log-mel, padding), [`tokenizer`]
//!    (Tekken, Whisper's BPE), [`nn`] (layers shared by the models), [`quant`] (GGUF files and
//!    block quantizers), [`trace`] (recording intermediate tensors under upstream names).
//! 3. [`models`]: Voxtral Realtime and Whisper, each mirroring its upstream module tree.
//! 4. Tools: [`compare`] (per-tensor drift between two dumps), [`export`] (ONNX and Model
//!    Explorer graphs), [`eval`] (corpus transcription and WER), [`report`] (eval history,
//!    regression check, HTML), [`mod@bench`] (benchmark workers), [`verify`] (a checkpoint
//!    against golden records of its published outputs), [`serve`] (the OpenAI-compatible
//!    transcription server).
//! 5. [`cli`]: the `voxtrace` command, all argument parsing; `anyhow` lives only here.
//!
//! The `native` feature (on by default) adds what needs an operating system: memory-mapped
//! checkpoint files and all the tools of layers 4 and 5. Without it the library is layers 1-3
//! (the whole transcription and tracing pipeline), builds for `wasm32-unknown-unknown` (the
//! browser build, `crates/voxtrace-web`) and loads checkpoints from bytes through the same
//! loaders.

pub mod audio;
pub mod backend;
#[cfg(feature = "native")]
pub mod bench;
#[cfg(feature = "native")]
pub mod cli;
#[cfg(feature = "native")]
pub mod compare;
#[cfg(feature = "native")]
pub mod eval;
#[cfg(feature = "native")]
pub mod export;
pub mod io;
pub mod models;
pub mod nn;
pub mod quant;
#[cfg(feature = "native")]
pub mod report;
#[cfg(feature = "native")]
pub mod serve;
pub mod tokenizer;
pub mod trace;
#[cfg(feature = "native")]
pub mod verify;
