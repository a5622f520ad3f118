//! Whisper's tokenizer: the `tokenizer.json` of a Whisper model (Hugging Face `tokenizers`,
//! byte-level BPE), decoding generated ids to text as transformers'
//! `WhisperTokenizer.decode(ids, skip_special_tokens=True)` does
//! (huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/tokenization_whisper.py>).

use std::path::{Path, PathBuf};

/// The tokenizer file cannot be read or parsed, or an id cannot be decoded. The message names
/// the file.
#[derive(Debug, thiserror::Error)]
#[error("{}: tokenizer: {message}", path.display())]
pub struct WhisperTokenizerError {
    /// `tokenizer.json` path.
    pub path: PathBuf,
    /// Cause.
    pub message: String,
}

/// The `tokenizer.json` of a Whisper model (Hugging Face `tokenizers`, byte-level BPE).
pub struct WhisperTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
}

impl std::fmt::Debug for WhisperTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WhisperTokenizer")
            .field("path", &self.path)
            .finish()
    }
}

impl WhisperTokenizer {
    /// Read `tokenizer.json`.
    ///
    /// # Errors
    /// [`WhisperTokenizerError`] naming the file.
    pub fn from_file(path: &Path) -> Result<Self, WhisperTokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| WhisperTokenizerError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(Self {
            inner,
            path: path.to_owned(),
        })
    }

    /// Parse the bytes of a `tokenizer.json` (embedded in a Whisper GGUF file, or a browser's
    /// `fetch`): [`WhisperTokenizer::from_file`] without the file; `source` names where they
    /// came from in errors.
    ///
    /// # Errors
    /// [`WhisperTokenizerError`] naming `source`: not a valid `tokenizer.json`.
    pub fn from_bytes(bytes: &[u8], source: &Path) -> Result<Self, WhisperTokenizerError> {
        let inner =
            tokenizers::Tokenizer::from_bytes(bytes).map_err(|e| WhisperTokenizerError {
                path: source.to_owned(),
                message: e.to_string(),
            })?;
        Ok(Self {
            inner,
            path: source.to_owned(),
        })
    }

    /// Text of `ids` with special tokens skipped, trimmed (as the reference
    /// `tokenizer.decode(ids, skip_special_tokens=True).strip()`).
    ///
    /// # Errors
    /// [`WhisperTokenizerError`] if decoding fails (unknown id).
    pub fn decode(&self, ids: &[u32]) -> Result<String, WhisperTokenizerError> {
        self.inner
            .decode(ids, true)
            .map(|s| s.trim().to_string())
            .map_err(|e| WhisperTokenizerError {
                path: self.path.clone(),
                message: e.to_string(),
            })
    }
}
