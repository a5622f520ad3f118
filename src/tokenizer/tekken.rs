//! Reader and decoder for Mistral's Tekken tokenizer file (`tekken.json`).
//!
//! Mirrors mistralai/mistral-common `src/mistral_common/tokens/tokenizers/tekken.py` (`Tekkenizer.from_file`,
//! `_reload_mergeable_ranks`, `decode`, `_decode_all`, `id_to_byte_piece`), version 1.13.1:
//! <https://github.com/mistralai/mistral-common/blob/v1.13.1/src/mistral_common/tokens/tokenizers/tekken.py>.
//!
//! File layout: `config` {`pattern`, `num_vocab_tokens`, `default_vocab_size`, `default_num_special_tokens`,
//! `version`}, `vocab` [{`rank`, `token_bytes` (base64), `token_str`}], optional `special_tokens`
//! [{`rank`, `token_str`, `is_control`}], optional `audio` (see [`crate::audio::AudioConfig`]) and other sections
//! (`image`, ...), which are ignored here.
//!
//! Id space (`n_words = default_vocab_size` ids): ids `0 .. n_special` are control tokens
//! (`n_special = default_num_special_tokens`); id `>= n_special` is the text token of vocab rank `id - n_special`.
//! Only the first `n_words - n_special` vocab entries are used (mistral-common truncates the list).
//! When `special_tokens` is absent (files of version <= v7, e.g. mistral-common's `tekken_240718.json`) the 20
//! `Tekkenizer.DEPRECATED_SPECIAL_TOKENS` are used; missing ranks up to `n_special` get the filler name
//! `<SPECIAL_{rank}>`, as upstream.
//!
//! Decoding policy (same as mistral-common's default, `SpecialTokenPolicy.IGNORE`): control ids are dropped; each
//! maximal run of consecutive text ids is joined as bytes and decoded as UTF-8 **lossily**, every invalid or
//! incomplete sequence becoming one U+FFFD per maximal ill-formed subpart (tiktoken's `errors="replace"`, which is
//! the same rule as Rust's `String::from_utf8_lossy`); the runs' strings are concatenated. A multi-byte character
//! split by a control id therefore decodes to U+FFFD on both sides, as upstream.
//! The [`StreamingDecoder`] emits the same text incrementally, holding back an incomplete UTF-8 sequence at the
//! end of the current run until it is completed, broken, or the run ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;

use crate::audio::AudioConfig;

/// Names of the control tokens used by the Voxtral Realtime streaming protocol (mistral-common `SpecialTokens`).
pub mod names {
    /// Beginning of sequence.
    pub const BOS: &str = "<s>";
    /// End of sequence.
    pub const EOS: &str = "</s>";
    /// Streaming filler token (prompt padding; emitted while nothing new is spoken).
    pub const STREAMING_PAD: &str = "[STREAMING_PAD]";
    /// Emitted right before the text tokens of each new word.
    pub const STREAMING_WORD: &str = "[STREAMING_WORD]";
}

/// mistral-common `Tekkenizer.DEPRECATED_SPECIAL_TOKENS`, ranks 0..19, used when a file of version <= v7 has no
/// `special_tokens` list.
const DEPRECATED_SPECIAL_TOKENS: [&str; 20] = [
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
];

/// Errors reading or using a Tekken file. File errors name the file.
#[derive(Debug, thiserror::Error)]
pub enum TekkenError {
    /// The file could not be read.
    #[error("{path}: cannot read tokenizer file: {source}")]
    Io {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// Not valid JSON, truncated, or a field of the wrong type (serde's message gives line and column).
    #[error("{path}: malformed tekken.json: {source}")]
    Json {
        /// File concerned.
        path: PathBuf,
        /// Underlying error.
        source: serde_json::Error,
    },
    /// Valid JSON that breaks a rule of the format.
    #[error("{path}: invalid tekken.json: {reason}")]
    Invalid {
        /// File concerned.
        path: PathBuf,
        /// Rule broken.
        reason: String,
    },
    /// A control token name that the file does not define.
    #[error("{path}: unknown control token {name:?}")]
    UnknownSpecialToken {
        /// File concerned.
        path: PathBuf,
        /// Name looked up.
        name: String,
    },
    /// An id outside `0 .. n_words`.
    #[error("{path}: token id {id} is out of range (vocabulary has {n_words} ids)")]
    IdOutOfRange {
        /// File concerned.
        path: PathBuf,
        /// Offending id.
        id: u32,
        /// Number of ids.
        n_words: usize,
    },
    /// A control token met under [`SpecialTokenPolicy::Raise`].
    #[error("{path}: decoding control token id {id} is not allowed by the special-token policy")]
    SpecialTokenNotAllowed {
        /// File concerned.
        path: PathBuf,
        /// Offending id.
        id: u32,
    },
}

/// What decoding does with control ids (mistral-common `SpecialTokenPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpecialTokenPolicy {
    /// Drop them (the default).
    #[default]
    Ignore,
    /// Emit their names, e.g. `<s>`.
    Keep,
    /// Fail with [`TekkenError::SpecialTokenNotAllowed`].
    Raise,
}

/// Most control tokens a tekken.json may declare (`default_num_special_tokens`; the released
/// files have 1 000): a bound on what the file can make us allocate.
pub const MAX_SPECIAL_TOKENS: usize = 1 << 16;

/// `config` section.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct TekkenConfig {
    /// tiktoken pre-tokenisation regex (`pat_str`); kept, not used for decoding.
    pub pattern: String,
    /// Number of entries in the file's `vocab` list.
    pub num_vocab_tokens: usize,
    /// Total ids, control + text (`n_words`; 131 072 for Voxtral Realtime).
    pub default_vocab_size: usize,
    /// Number of control ids (1000).
    pub default_num_special_tokens: usize,
    /// Format version, e.g. `v3`, `v7`, `v13`.
    pub version: String,
}

/// One control token.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SpecialToken {
    /// Its id.
    pub rank: u32,
    /// Its name, e.g. `[STREAMING_PAD]`.
    pub token_str: String,
    /// Whether it is a control token (always true in practice).
    pub is_control: bool,
}

#[derive(Deserialize)]
struct RawVocabEntry {
    rank: usize,
    token_bytes: String,
    #[serde(default, rename = "token_str")]
    _token_str: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct RawFile {
    config: TekkenConfig,
    vocab: Vec<RawVocabEntry>,
    #[serde(default)]
    special_tokens: Option<Vec<SpecialToken>>,
    #[serde(default)]
    audio: Option<AudioConfig>,
}

/// A loaded Tekken tokenizer (decode side).
#[derive(Clone)]
pub struct Tekken {
    path: PathBuf,
    config: TekkenConfig,
    /// Bytes of each used vocab rank, `[n_words - n_special]`.
    vocab: Vec<Vec<u8>>,
    /// All control tokens incl. fillers, `[n_special]`, index = id.
    specials: Vec<SpecialToken>,
    special_by_name: HashMap<String, u32>,
    audio: Option<AudioConfig>,
}

impl std::fmt::Debug for Tekken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tekken")
            .field("path", &self.path)
            .field("version", &self.config.version)
            .field("n_words", &self.n_words())
            .field("num_special_tokens", &self.num_special_tokens())
            .field("audio", &self.audio)
            .finish_non_exhaustive()
    }
}

fn version_number(v: &str) -> Option<u32> {
    v.strip_prefix('v')?.parse().ok()
}

impl Tekken {
    /// Reads and validates `path`.
    ///
    /// # Errors
    /// [`TekkenError::Io`], [`TekkenError::Json`] (malformed or truncated JSON, wrong field types),
    /// [`TekkenError::Invalid`] (bad version string, `default_vocab_size` larger than vocab + specials, a vocab
    /// rank out of order, ranks 0..255 not the single bytes, duplicate token bytes, bad base64, duplicate or
    /// out-of-order special tokens, more specials than `default_num_special_tokens`, missing `special_tokens` in a
    /// file newer than v7, an invalid `audio` section). All name `path`.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TekkenError> {
        let path = path.as_ref().to_path_buf();
        let bytes = std::fs::read(&path).map_err(|source| TekkenError::Io {
            path: path.clone(),
            source,
        })?;
        Self::from_json_bytes(&bytes, path)
    }

    /// Parses tokenizer JSON already in memory; `label` is used as the path in errors.
    ///
    /// # Errors
    /// As [`Tekken::from_file`] (except `Io`).
    pub fn from_json_bytes(bytes: &[u8], label: impl Into<PathBuf>) -> Result<Self, TekkenError> {
        let path = label.into();
        let raw: RawFile = serde_json::from_slice(bytes).map_err(|source| TekkenError::Json {
            path: path.clone(),
            source,
        })?;
        let invalid = |reason: String| TekkenError::Invalid {
            path: path.clone(),
            reason,
        };
        let cfg = raw.config;
        let version = version_number(&cfg.version).ok_or_else(|| {
            invalid(format!(
                "unknown config.version {:?} (expected v<N>)",
                cfg.version
            ))
        })?;
        let n_special = cfg.default_num_special_tokens;
        let n_words = cfg.default_vocab_size;
        if n_special > MAX_SPECIAL_TOKENS {
            return Err(invalid(format!(
                "default_num_special_tokens {n_special} is above {MAX_SPECIAL_TOKENS}"
            )));
        }
        if n_words < n_special {
            return Err(invalid(format!(
                "default_vocab_size {n_words} is smaller than default_num_special_tokens {n_special}"
            )));
        }
        if n_words > raw.vocab.len() + n_special {
            return Err(invalid(format!(
                "default_vocab_size {n_words} > {} vocab entries + {n_special} special tokens",
                raw.vocab.len()
            )));
        }
        if u32::try_from(n_words).is_err() {
            return Err(invalid(format!(
                "default_vocab_size {n_words} does not fit in u32 ids"
            )));
        }
        let inner = n_words - n_special;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut vocab = Vec::with_capacity(inner);
        let mut seen: HashMap<&[u8], usize> = HashMap::with_capacity(inner);
        let mut decoded_all = Vec::with_capacity(inner);
        for (i, entry) in raw.vocab.iter().take(inner).enumerate() {
            if entry.rank != i {
                return Err(invalid(format!(
                    "vocab entry {i} has rank {} (ranks must be 0, 1, 2, ...)",
                    entry.rank
                )));
            }
            let bytes = b64
                .decode(&entry.token_bytes)
                .map_err(|e| invalid(format!("vocab rank {i}: token_bytes is not base64: {e}")))?;
            if i < 256 && bytes.as_slice() != [i as u8] {
                return Err(invalid(format!(
                    "vocab rank {i} must be the single byte {i:#04x}, got {bytes:?}"
                )));
            }
            decoded_all.push(bytes);
        }
        for (i, b) in decoded_all.iter().enumerate() {
            if let Some(prev) = seen.insert(b.as_slice(), i) {
                return Err(invalid(format!(
                    "vocab ranks {prev} and {i} have the same bytes {b:?}"
                )));
            }
        }
        drop(seen);
        vocab.extend(decoded_all);

        let given = match raw.special_tokens {
            Some(list) => list,
            None if version <= 7 => DEPRECATED_SPECIAL_TOKENS
                .iter()
                .enumerate()
                .map(|(i, s)| SpecialToken {
                    rank: i as u32,
                    token_str: (*s).to_string(),
                    is_control: true,
                })
                .collect(),
            None => {
                return Err(invalid(format!(
                    "no special_tokens list (required for version {} > v7)",
                    cfg.version
                )));
            }
        };
        if given.len() > n_special {
            return Err(invalid(format!(
                "{} special tokens but default_num_special_tokens is {n_special}",
                given.len()
            )));
        }
        let mut specials = given;
        for i in specials.len()..n_special {
            specials.push(SpecialToken {
                rank: i as u32,
                token_str: format!("<SPECIAL_{i}>"),
                is_control: true,
            });
        }
        let mut special_by_name = HashMap::with_capacity(n_special);
        for (i, s) in specials.iter().enumerate() {
            if s.rank as usize != i {
                return Err(invalid(format!(
                    "special token {:?} is listed at position {i} but has rank {}",
                    s.token_str, s.rank
                )));
            }
            if special_by_name
                .insert(s.token_str.clone(), s.rank)
                .is_some()
            {
                return Err(invalid(format!(
                    "special token name {:?} appears twice",
                    s.token_str
                )));
            }
        }
        if let Some(audio) = &raw.audio {
            audio
                .validate()
                .map_err(|e| invalid(format!("audio section: {e}")))?;
        }
        Ok(Self {
            path,
            config: cfg,
            vocab,
            specials,
            special_by_name,
            audio: raw.audio,
        })
    }

    /// The file this was read from (or the label given to [`Tekken::from_json_bytes`]).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `config` section.
    pub fn config(&self) -> &TekkenConfig {
        &self.config
    }

    /// Total ids (`n_words`): control + text.
    pub fn n_words(&self) -> usize {
        self.specials.len() + self.vocab.len()
    }

    /// Number of control ids (`num_special_tokens`); text ids start here.
    pub fn num_special_tokens(&self) -> usize {
        self.specials.len()
    }

    /// The `audio` section, if the file has one.
    pub fn audio(&self) -> Option<&AudioConfig> {
        self.audio.as_ref()
    }

    /// All control tokens, index = id (fillers included).
    pub fn special_tokens(&self) -> &[SpecialToken] {
        &self.specials
    }

    /// Whether `id` is a control id (`id < num_special_tokens`).
    pub fn is_special(&self, id: u32) -> bool {
        (id as usize) < self.specials.len()
    }

    /// Id of the control token called `name` (e.g. `[STREAMING_PAD]`), read from the file.
    ///
    /// # Errors
    /// [`TekkenError::UnknownSpecialToken`] if the file does not define it.
    pub fn special_id(&self, name: &str) -> Result<u32, TekkenError> {
        self.special_by_name
            .get(name)
            .copied()
            .ok_or_else(|| TekkenError::UnknownSpecialToken {
                path: self.path.clone(),
                name: name.to_string(),
            })
    }

    /// `<s>` id. # Errors: as [`Tekken::special_id`].
    pub fn bos_id(&self) -> Result<u32, TekkenError> {
        self.special_id(names::BOS)
    }

    /// `</s>` id. # Errors: as [`Tekken::special_id`].
    pub fn eos_id(&self) -> Result<u32, TekkenError> {
        self.special_id(names::EOS)
    }

    /// `[STREAMING_PAD]` id. # Errors: as [`Tekken::special_id`].
    pub fn streaming_pad_id(&self) -> Result<u32, TekkenError> {
        self.special_id(names::STREAMING_PAD)
    }

    /// `[STREAMING_WORD]` id. # Errors: as [`Tekken::special_id`].
    pub fn streaming_word_id(&self) -> Result<u32, TekkenError> {
        self.special_id(names::STREAMING_WORD)
    }

    fn check_id(&self, id: u32) -> Result<(), TekkenError> {
        if (id as usize) < self.n_words() {
            Ok(())
        } else {
            Err(TekkenError::IdOutOfRange {
                path: self.path.clone(),
                id,
                n_words: self.n_words(),
            })
        }
    }

    /// Raw bytes of text id `id` (`id_to_byte_piece` with the IGNORE policy): empty for a control id.
    ///
    /// # Errors
    /// [`TekkenError::IdOutOfRange`].
    pub fn token_bytes(&self, id: u32) -> Result<&[u8], TekkenError> {
        self.check_id(id)?;
        Ok(match (id as usize).checked_sub(self.specials.len()) {
            Some(rank) => &self.vocab[rank],
            None => &[],
        })
    }

    /// Decodes `ids` with the default policy (control ids dropped); see the module doc for the UTF-8 rule.
    ///
    /// # Errors
    /// [`TekkenError::IdOutOfRange`].
    pub fn decode(&self, ids: &[u32]) -> Result<String, TekkenError> {
        self.decode_with(ids, SpecialTokenPolicy::Ignore)
    }

    /// Decodes `ids` with an explicit [`SpecialTokenPolicy`] (mistral-common `decode(tokens, policy)`).
    ///
    /// # Errors
    /// [`TekkenError::IdOutOfRange`]; [`TekkenError::SpecialTokenNotAllowed`] under `Raise`.
    pub fn decode_with(
        &self,
        ids: &[u32],
        policy: SpecialTokenPolicy,
    ) -> Result<String, TekkenError> {
        let mut out = String::new();
        let mut run: Vec<u8> = Vec::new();
        for &id in ids {
            self.check_id(id)?;
            if self.is_special(id) {
                if !run.is_empty() {
                    out.push_str(&String::from_utf8_lossy(&run));
                    run.clear();
                }
                match policy {
                    SpecialTokenPolicy::Ignore => {}
                    SpecialTokenPolicy::Keep => out.push_str(&self.specials[id as usize].token_str),
                    SpecialTokenPolicy::Raise => {
                        return Err(TekkenError::SpecialTokenNotAllowed {
                            path: self.path.clone(),
                            id,
                        });
                    }
                }
            } else {
                run.extend_from_slice(&self.vocab[id as usize - self.specials.len()]);
            }
        }
        out.push_str(&String::from_utf8_lossy(&run));
        Ok(out)
    }

    /// A [`StreamingDecoder`] over this tokenizer (control ids dropped).
    pub fn streaming_decoder(&self) -> StreamingDecoder<'_> {
        StreamingDecoder {
            tok: self,
            pending: Vec::new(),
        }
    }
}

/// Incremental decoder: feed ids one at a time, get the text that is final so far.
///
/// The concatenation of every [`StreamingDecoder::push`] result and the final [`StreamingDecoder::finish`] equals
/// [`Tekken::decode`] of the whole id sequence. Only an incomplete-but-valid-so-far UTF-8 sequence at the end of
/// the current text run (at most 3 bytes) is held back; a control id or `finish` ends the run and flushes it
/// (as U+FFFD, like the batch decoder).
#[derive(Debug, Clone)]
pub struct StreamingDecoder<'a> {
    tok: &'a Tekken,
    pending: Vec<u8>,
}

impl StreamingDecoder<'_> {
    /// Adds one id; returns the newly final text (possibly empty).
    ///
    /// # Errors
    /// [`TekkenError::IdOutOfRange`] (the decoder state is unchanged).
    pub fn push(&mut self, id: u32) -> Result<String, TekkenError> {
        self.tok.check_id(id)?;
        if self.tok.is_special(id) {
            return Ok(self.flush());
        }
        self.pending
            .extend_from_slice(&self.tok.vocab[id as usize - self.tok.specials.len()]);
        let mut out = String::new();
        let mut start = 0;
        loop {
            match std::str::from_utf8(&self.pending[start..]) {
                Ok(s) => {
                    out.push_str(s);
                    start = self.pending.len();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // `valid_up_to` bytes are valid UTF-8 by definition, so this conversion cannot fail.
                    out.push_str(
                        std::str::from_utf8(&self.pending[start..start + valid])
                            .unwrap_or_default(),
                    );
                    match e.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            start += valid + bad;
                        }
                        None => {
                            // Incomplete sequence at the end: keep it for the next id.
                            start += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..start);
        Ok(out)
    }

    /// Bytes held back (an incomplete UTF-8 sequence), at most 3.
    pub fn pending_bytes(&self) -> &[u8] {
        &self.pending
    }

    fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }

    /// Ends the stream: returns the held-back bytes decoded lossily (U+FFFD for an incomplete sequence).
    pub fn finish(mut self) -> String {
        self.flush()
    }
}
