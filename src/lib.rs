//! voxtrace: port speech-to-text transformers to Burn and prove the port right, layer by layer.
//!
//! Modules, one per concept: [`nn`] (layers shared by the models), [`models`] (Voxtral
//! Realtime, Whisper), [`trace`] (recording intermediate tensors under upstream names).

pub mod models;
pub mod nn;
pub mod trace;
