//! Corpus evaluation: transcribe a manifest's clips with one or more systems, score them
//! (Whisper normalisation, word alignment, WER/CER/SER, RTF) and record the results.
//!
//! * [`manifest`]: the corpus manifest (voxtrace TSV, NeMo JSON lines, Kaldi data folder,
//!   LibriSpeech tree; [`corpus_formats`] reads the last three).
//! * [`normalize`]: a faithful port of Whisper's `EnglishTextNormalizer` / `BasicTextNormalizer`.
//! * [`align`]: word (or character) Levenshtein alignment with jiwer- and sclite-compatible
//!   tie-breaking.
//! * [`latency`]: streaming latency (first token, finalization, per-step time, per-word
//!   emission delay) from a measured step timeline, by pure functions; [`stream`] runs and
//!   times the streaming decode of a streaming model.
//! * [`metrics`]: per-utterance and corpus scores ([`metrics::UtteranceScore`],
//!   [`metrics::CorpusScore`], [`metrics::score_corpus`]).
//! * [`systems`]: what turns a clip into text (`voxtral:`, `whisper:`, `transcripts:`, `cmd:`,
//!   `http:`).
//! * [`runner`]: the crash-safe corpus run (`partial.jsonl`, `--resume`) that writes
//!   `results.json`.
//! * [`results`]: the types of `results.json` and reading it back.
//! * [`shard`]: `--shard K/N` (a stable hash of the utterance id picks the shard; Slurm and
//!   Kubernetes indices for `--shard auto`).
//! * [`merge`]: shard runs merged into the run a single pass over the corpus gives.
//!
//! The run history and the HTML report built from these results belong to the report layer
//! above; this module knows nothing of them.

pub mod align;
pub mod corpus_formats;
mod error;
pub mod latency;
pub mod manifest;
pub mod merge;
pub mod metrics;
pub mod normalize;
pub mod results;
pub mod runner;
pub mod shard;
pub mod stream;
pub mod systems;

pub use error::{Cause, EvalError, error_chain};
