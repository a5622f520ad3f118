//! ASR metrics over aligned transcripts: per-utterance S/D/I/C/N, corpus WER and CER, sentence
//! error rate, confusion pairs, most inserted/deleted words, RTF and RTFx.
//!
//! Conventions (the field's standard, and jiwer 4.0's):
//! * **WER** = (S + D + I) / N over the *corpus*: counts are summed over utterances first, then
//!   divided (not a mean of per-utterance WERs). N = C + S + D is the number of reference words.
//!   When N = 0, jiwer's convention is kept: the "rate" is the insertion count.
//! * **CER** is the same on characters, tokenised as `jiwer.cer` does: leading/trailing whitespace
//!   stripped, then every character **including spaces** is a token.
//! * **SER** (sentence error rate) = utterances with at least one word error / utterances.
//! * Words are tokenised as jiwer's default transform ([`align::jiwer_words`]).
//! * Scores are computed twice: on the raw texts (only tokenised) and on the texts normalised by
//!   the Whisper English normaliser ([`normalize::EnglishTextNormalizer`]); the normalised
//!   figures are the headline ones (they are what published English WERs use).
//! * **RTF** = processing seconds / audio seconds (lower is faster; < 1 is faster than real
//!   time); **RTFx** = 1 / RTF = audio seconds / processing seconds (the Open ASR Leaderboard
//!   figure). Both are computed from corpus totals.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::align::{self, AlignedWord, ErrorCounts, OpKind, TieBreak};
use super::normalize::{self, NORMALIZER_VERSION};

/// One utterance to score.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreInput {
    /// Utterance id (manifest `id`).
    pub id: String,
    /// Reference transcript, as written in the manifest.
    pub reference: String,
    /// Hypothesis transcript produced by the model.
    pub hypothesis: String,
    /// Audio duration in seconds, if known.
    pub duration_s: Option<f64>,
    /// Wall-clock processing time in seconds, if measured.
    pub processing_s: Option<f64>,
}

/// Options of [`score_corpus_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScoreOptions {
    /// Alignment tie-break (default jiwer-compatible).
    pub tie_break: TieBreak,
    /// Length of the confusion / insertion / deletion lists.
    pub top_k: usize,
}

impl Default for ScoreOptions {
    fn default() -> Self {
        ScoreOptions {
            tie_break: TieBreak::Jiwer,
            top_k: 20,
        }
    }
}

/// Word and character scores of one text pair (raw or normalised).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TextScore {
    /// Word-level C/S/D/I.
    pub words: ErrorCounts,
    /// Character-level C/S/D/I (spaces count).
    pub chars: ErrorCounts,
    /// (S + D + I) / N on words (jiwer convention when N = 0).
    pub wer: f64,
    /// Same on characters.
    pub cer: f64,
}

impl TextScore {
    fn from_counts(words: ErrorCounts, chars: ErrorCounts) -> Self {
        TextScore {
            words,
            chars,
            wer: words.error_rate(),
            cer: chars.error_rate(),
        }
    }
}

/// Scores of one utterance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UtteranceScore {
    /// Utterance id.
    pub id: String,
    /// Raw reference text.
    pub reference: String,
    /// Raw hypothesis text.
    pub hypothesis: String,
    /// Reference after the Whisper English normaliser.
    pub reference_normalized: String,
    /// Hypothesis after the Whisper English normaliser.
    pub hypothesis_normalized: String,
    /// Scores of the raw texts.
    pub raw: TextScore,
    /// Scores of the normalised texts (headline).
    pub normalized: TextScore,
    /// Word alignment of the normalised texts, in order.
    pub alignment: Vec<AlignedWord>,
    /// Audio duration, seconds.
    pub duration_s: Option<f64>,
    /// Processing time, seconds.
    pub processing_s: Option<f64>,
}

/// A substitution pair and how often it occurred (sclite `dtl` "CONFUSION PAIRS").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// Reference word.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Hypothesis word it was replaced by.
    #[serde(rename = "hyp")]
    pub hypothesis: String,
    /// Occurrences.
    pub count: u64,
}

/// A word and a count (most inserted / deleted words).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WordCount {
    /// The word.
    pub word: String,
    /// Occurrences.
    pub count: u64,
}

/// Corpus-level totals of raw or normalised scoring.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CorpusTextScore {
    /// Summed word counts and corpus WER/CER (errors / reference tokens).
    #[serde(flatten)]
    pub score: TextScore,
    /// Utterances with at least one word error.
    pub sentence_errors: u64,
    /// Sentence error rate = `sentence_errors / n_utterances` (0 for an empty corpus).
    pub ser: f64,
}

/// Corpus scores: what a WER report and one `history.jsonl` row are built from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorpusScore {
    /// [`NORMALIZER_VERSION`] used for the normalised figures.
    pub normalizer: String,
    /// Scorer description (alignment tie-break and tokenisation).
    pub scorer: String,
    /// Number of utterances.
    pub n_utterances: usize,
    /// Raw-text totals.
    pub raw: CorpusTextScore,
    /// Normalised-text totals (headline WER).
    pub normalized: CorpusTextScore,
    /// Most frequent substitutions on normalised text, by count then alphabetically.
    pub top_confusions: Vec<Confusion>,
    /// Most frequently inserted normalised words.
    pub top_insertions: Vec<WordCount>,
    /// Most frequently deleted normalised words.
    pub top_deletions: Vec<WordCount>,
    /// Summed audio duration, seconds (`None` unless every utterance has one).
    pub audio_s: Option<f64>,
    /// Summed processing time, seconds (`None` unless every utterance has one).
    pub processing_s: Option<f64>,
    /// Real-time factor = processing_s / audio_s.
    pub rtf: Option<f64>,
    /// Inverse real-time factor = audio_s / processing_s.
    pub rtfx: Option<f64>,
    /// Per-utterance scores, in input order.
    pub utterances: Vec<UtteranceScore>,
}

/// Word counts of one pair with jiwer tokenisation.
pub fn word_counts(reference: &str, hypothesis: &str, tie_break: TieBreak) -> ErrorCounts {
    let (r, h) = (
        align::jiwer_words(reference),
        align::jiwer_words(hypothesis),
    );
    ErrorCounts::from_ops(&align::align(&r, &h, tie_break))
}

/// Character counts of one pair with `jiwer.cer` tokenisation (spaces count).
pub fn char_counts(reference: &str, hypothesis: &str, tie_break: TieBreak) -> ErrorCounts {
    let (r, h) = (
        align::jiwer_chars(reference),
        align::jiwer_chars(hypothesis),
    );
    ErrorCounts::from_ops(&align::align(&r, &h, tie_break))
}

/// Word error rate of one pair, no normalisation (jiwer `wer(reference, hypothesis)`).
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    word_counts(reference, hypothesis, TieBreak::Jiwer).error_rate()
}

/// Character error rate of one pair, no normalisation (jiwer `cer(reference, hypothesis)`).
pub fn cer(reference: &str, hypothesis: &str) -> f64 {
    char_counts(reference, hypothesis, TieBreak::Jiwer).error_rate()
}

/// Real-time factor: processing seconds / audio seconds. `None` if `audio_s <= 0` or an input
/// is not finite.
pub fn rtf(processing_s: f64, audio_s: f64) -> Option<f64> {
    (audio_s > 0.0 && processing_s.is_finite() && audio_s.is_finite())
        .then(|| processing_s / audio_s)
}

/// Inverse real-time factor: audio seconds / processing seconds (= 1 / RTF). `None` if
/// `processing_s <= 0` or an input is not finite.
pub fn rtfx(processing_s: f64, audio_s: f64) -> Option<f64> {
    (processing_s > 0.0 && processing_s.is_finite() && audio_s.is_finite())
        .then(|| audio_s / processing_s)
}

/// Score one utterance (raw and normalised).
pub fn score_utterance(input: &ScoreInput, tie_break: TieBreak) -> UtteranceScore {
    let norm = normalize::english_normalizer();
    let rn = norm.normalize(&input.reference);
    let hn = norm.normalize(&input.hypothesis);
    let raw = TextScore::from_counts(
        word_counts(&input.reference, &input.hypothesis, tie_break),
        char_counts(&input.reference, &input.hypothesis, tie_break),
    );
    let (rw, hw) = (align::jiwer_words(&rn), align::jiwer_words(&hn));
    let ops = align::align(&rw, &hw, tie_break);
    let normalized = TextScore::from_counts(
        ErrorCounts::from_ops(&ops),
        char_counts(&rn, &hn, tie_break),
    );
    UtteranceScore {
        id: input.id.clone(),
        reference: input.reference.clone(),
        hypothesis: input.hypothesis.clone(),
        reference_normalized: rn,
        hypothesis_normalized: hn,
        raw,
        normalized,
        alignment: align::aligned_words(&rw, &hw, &ops),
        duration_s: input.duration_s,
        processing_s: input.processing_s,
    }
}

/// [`score_corpus_with`] with default options (jiwer tie-break, top 20).
pub fn score_corpus(pairs: &[ScoreInput]) -> CorpusScore {
    score_corpus_with(pairs, ScoreOptions::default())
}

fn top<K: Ord + Clone>(map: HashMap<K, u64>, k: usize) -> Vec<(K, u64)> {
    let mut v: Vec<(K, u64)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v.truncate(k);
    v
}

fn corpus_text(scores: &[&TextScore]) -> CorpusTextScore {
    let mut words = ErrorCounts::default();
    let mut chars = ErrorCounts::default();
    let mut sentence_errors = 0;
    for s in scores {
        words += s.words;
        chars += s.chars;
        sentence_errors += u64::from(s.words.errors() > 0);
    }
    let n = scores.len();
    CorpusTextScore {
        score: TextScore::from_counts(words, chars),
        sentence_errors,
        ser: if n == 0 {
            0.0
        } else {
            sentence_errors as f64 / n as f64
        },
    }
}

fn sum_all(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let mut total = 0.0;
    let mut any = false;
    for v in values {
        total += v?;
        any = true;
    }
    any.then_some(total)
}

/// Score a corpus: per-utterance raw and normalised scores, corpus totals (errors summed, then
/// divided), SER, confusions and RTF/RTFx. Never fails; an empty corpus gives zero counts.
pub fn score_corpus_with(pairs: &[ScoreInput], opts: ScoreOptions) -> CorpusScore {
    let utterances: Vec<UtteranceScore> = pairs
        .iter()
        .map(|p| score_utterance(p, opts.tie_break))
        .collect();
    let raw = corpus_text(&utterances.iter().map(|u| &u.raw).collect::<Vec<_>>());
    let normalized = corpus_text(&utterances.iter().map(|u| &u.normalized).collect::<Vec<_>>());

    let mut conf: HashMap<(String, String), u64> = HashMap::new();
    let mut ins: HashMap<String, u64> = HashMap::new();
    let mut del: HashMap<String, u64> = HashMap::new();
    for u in &utterances {
        for a in &u.alignment {
            match (a.kind, &a.reference, &a.hypothesis) {
                (OpKind::Substitution, Some(r), Some(h)) => {
                    *conf.entry((r.clone(), h.clone())).or_default() += 1
                }
                (OpKind::Insertion, _, Some(h)) => *ins.entry(h.clone()).or_default() += 1,
                (OpKind::Deletion, Some(r), _) => *del.entry(r.clone()).or_default() += 1,
                _ => {}
            }
        }
    }
    let audio_s = sum_all(utterances.iter().map(|u| u.duration_s));
    let processing_s = sum_all(utterances.iter().map(|u| u.processing_s));
    let (rtf_v, rtfx_v) = match (audio_s, processing_s) {
        (Some(a), Some(p)) => (rtf(p, a), rtfx(p, a)),
        _ => (None, None),
    };
    CorpusScore {
        normalizer: NORMALIZER_VERSION.to_string(),
        scorer: format!(
            "voxtrace eval::align ({:?} tie-break), jiwer 4.0 tokenisation",
            opts.tie_break
        ),
        n_utterances: utterances.len(),
        raw,
        normalized,
        top_confusions: top(conf, opts.top_k)
            .into_iter()
            .map(|((r, h), count)| Confusion {
                reference: r,
                hypothesis: h,
                count,
            })
            .collect(),
        top_insertions: top(ins, opts.top_k)
            .into_iter()
            .map(|(word, count)| WordCount { word, count })
            .collect(),
        top_deletions: top(del, opts.top_k)
            .into_iter()
            .map(|(word, count)| WordCount { word, count })
            .collect(),
        audio_s,
        processing_s,
        rtf: rtf_v,
        rtfx: rtfx_v,
        utterances,
    }
}

/// Write `value` as pretty JSON (and a final newline) to `path` atomically through
/// [`crate::io::write_atomic`], so readers never see a partial file. Used for `results.json` and
/// `check.json`.
///
/// # Errors
/// [`crate::io::FileError::Json`] when serialisation fails (non-finite floats are written as `null`
/// by serde_json, so in practice it does not), [`super::EvalError::Write`] when the folder does
/// not exist or is not writable; both name `path`.
pub fn write_json_atomic<T: Serialize>(
    path: &std::path::Path,
    value: &T,
) -> Result<(), super::EvalError> {
    let mut bytes =
        serde_json::to_vec_pretty(value).map_err(|source| crate::io::FileError::Json {
            path: path.to_path_buf(),
            what: "cannot serialise JSON",
            source,
        })?;
    bytes.push(b'\n');
    crate::io::write_atomic(path, &bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(id: &str, r: &str, h: &str) -> ScoreInput {
        ScoreInput {
            id: id.into(),
            reference: r.into(),
            hypothesis: h.into(),
            duration_s: Some(2.0),
            processing_s: Some(0.5),
        }
    }

    #[test]
    fn corpus_wer_is_total_errors_over_total_words_not_mean() {
        // utterance WERs 1/1 and 0/9: mean 0.5, corpus 1/10
        let pairs = [
            input("a", "yes", "no"),
            input("b", "a b c d e f g h i", "a b c d e f g h i"),
        ];
        let s = score_corpus(&pairs);
        assert_eq!(s.raw.score.words.errors(), 1);
        assert_eq!(s.raw.score.words.ref_len(), 10);
        assert!((s.raw.score.wer - 0.1).abs() < 1e-12);
        assert!((s.raw.ser - 0.5).abs() < 1e-12);
    }

    #[test]
    fn normalisation_removes_formatting_errors() {
        let pairs = [input("q", "MISTER QUILTER is here.", "Mr. Quilter is here")];
        let s = score_corpus(&pairs);
        assert_eq!(s.raw.score.words.errors(), 3);
        assert_eq!(s.normalized.score.words.errors(), 0);
        assert_eq!(
            s.utterances[0].reference_normalized,
            "mister quilter is here"
        );
    }

    #[test]
    fn confusions_insertions_deletions() {
        let pairs = [
            input("1", "ten of clubs", "tan of club"),
            input("2", "seven of clubs", "seven of club"),
            input("3", "go forward now", "please go now"),
        ];
        let s = score_corpus(&pairs);
        assert_eq!(
            s.top_confusions[0],
            Confusion {
                reference: "clubs".into(),
                hypothesis: "club".into(),
                count: 2
            }
        );
        assert_eq!(s.top_insertions[0].word, "please");
        assert_eq!(s.top_deletions[0].word, "forward");
        assert_eq!(s.top_confusions[1].reference, "10");
    }

    #[test]
    fn rtf_and_rtfx() {
        let pairs = [input("1", "a", "a"), input("2", "b", "b")];
        let s = score_corpus(&pairs);
        assert_eq!(s.audio_s, Some(4.0));
        assert_eq!(s.processing_s, Some(1.0));
        assert_eq!(s.rtf, Some(0.25));
        assert_eq!(s.rtfx, Some(4.0));
        assert_eq!(rtf(1.0, 0.0), None);
        let mut p = pairs.to_vec();
        p[1].processing_s = None;
        assert_eq!(score_corpus(&p).rtf, None);
    }

    #[test]
    fn empty_reference_follows_jiwer() {
        assert_eq!(wer("", "a b"), 2.0);
        assert_eq!(wer("", ""), 0.0);
        assert_eq!(cer("ab", ""), 1.0);
    }

    #[test]
    fn atomic_json_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("score.json");
        let s = score_corpus(&[input("1", "a b", "a c")]);
        write_json_atomic(&path, &s).unwrap();
        let back: CorpusScore =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, s);
        let e = write_json_atomic(&dir.path().join("missing/x.json"), &s).unwrap_err();
        assert!(format!("{e:#}").contains("missing/x.json"), "{e:#}");
    }

    #[test]
    fn serde_round_trip() {
        let s = score_corpus(&[input("1", "a b", "a c")]);
        let j = serde_json::to_string(&s).unwrap();
        let back: CorpusScore = serde_json::from_str(&j).unwrap();
        assert_eq!(back, s);
    }
}
