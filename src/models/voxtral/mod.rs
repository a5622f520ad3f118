//! Voxtral Mini 4B Realtime (mistralai/Voxtral-Mini-4B-Realtime-2602) in Burn.
//!
//! The module tree mirrors transformers' `VoxtralRealtimeForConditionalGeneration`
//! (huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>),
//! so parameter paths equal HF state-dict keys and capture names equal forward-hook names:
//!
//! ```text
//! model.audio_tower            causal conv stem + 32 encoder layers + norm   [b, frames/2, 1280]
//!   .embedder.conv1 / conv2    CausalConv1d k=3, stride 1 then 2, GELU
//!   .layers.N                  RMSNorm -> attention (RoPE, window 750) -> RMSNorm -> SwiGLU
//! model.multi_modal_projector  group 4 frames, Linear 5120->3072, GELU, Linear 3072->3072
//! model.time_embedding         sinusoidal t_cond (cos first), no weights
//! model.language_model         26 GQA layers, ADA RMSNorm on the FFN norm, norm    [b, n, 3072]
//! lm_head                      tied to embed_tokens                                 [b, n, vocab]
//! ```

pub mod adapter;
pub mod config;
pub mod decoder;
pub mod encoder;
pub mod generate;
pub mod gguf;
pub mod loader;
pub mod model;
pub mod pipeline;
pub mod prompt;
pub mod streaming;
pub mod time_embedding;

pub use config::{DecoderConfig, EncoderConfig, VoxtralConfig};
pub use loader::{WeightLayout, WeightStorage};
pub use model::{Voxtral, VoxtralRealtime};
pub use prompt::{PromptTokens, StreamingPrompt, streaming_prompt};
