//! Tokenizers, one per model family, both decoding generated ids to text:
//!
//! * [`tekken`]: Mistral's Tekken `tekken.json` (Voxtral), batch and streaming.
//! * [`whisper`]: Whisper's `tokenizer.json` (Hugging Face `tokenizers`, byte-level BPE).
pub mod tekken;
pub mod whisper;

pub use tekken::{SpecialTokenPolicy, StreamingDecoder, Tekken, TekkenError};
pub use whisper::{WhisperTokenizer, WhisperTokenizerError};
