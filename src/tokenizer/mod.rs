//! Tokenizers. [`tekken`] reads Mistral's Tekken `tekken.json` and decodes ids to text (batch and streaming).
pub mod tekken;

pub use tekken::{SpecialTokenPolicy, StreamingDecoder, Tekken, TekkenError};
