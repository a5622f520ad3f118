//! End-to-end scoring core: corpus manifests, Whisper text normalisation, word alignment and
//! ASR metrics (WER, CER, SER, RTF/RTFx).
//!
//! * [`manifest`]: the corpus TSV (`id file duration_s reference source license ...`).
//! * [`normalize`]: a faithful port of Whisper's `EnglishTextNormalizer` / `BasicTextNormalizer`.
//! * [`align`]: word (or character) Levenshtein alignment with jiwer- and sclite-compatible
//!   tie-breaking.
//! * [`metrics`]: per-utterance and corpus scores ([`metrics::UtteranceScore`],
//!   [`metrics::CorpusScore`], [`metrics::score_corpus`]).

pub mod align;
pub mod manifest;
pub mod metrics;
pub mod normalize;
pub mod runner;
pub mod systems;
