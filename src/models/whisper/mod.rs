//! Whisper tiny.en (OpenAI), second model: real trained weights.

pub mod ct2;
