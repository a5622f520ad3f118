//! voxtrace: port speech-to-text transformers to Burn and prove the port right, layer by layer.
//!
//! One module per concept: [`audio`] (decoding, resampling, log-mel, padding), [`tokenizer`]
//! (Tekken), [`nn`] (layers shared by the models), [`models`] (Voxtral Realtime, Whisper),
//! [`trace`] (recording intermediate tensors under upstream names), [`compare`] (per-tensor
//! drift between two dumps), [`eval`] (WER scoring), [`export`] (ONNX and Model Explorer graph export),
//! [`cli`] (the `voxtrace` command).

pub mod audio;
pub mod backend;
pub mod cli;
pub mod compare;
pub mod eval;
pub mod export;
pub mod io;
pub mod models;
pub mod nn;
pub mod report;
pub mod tokenizer;
pub mod trace;
