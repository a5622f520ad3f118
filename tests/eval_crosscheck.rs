//! Alignment counts vs jiwer 4.0 and NIST sclite on every pair of
//! `fixtures/eval/crosscheck.json` (regenerate with `reference/eval_crosscheck.py`).

use voxtrace::eval::align::{ErrorCounts, TieBreak};
use voxtrace::eval::metrics::{char_counts, word_counts};

#[derive(serde::Deserialize, Debug, Clone, Copy, PartialEq)]
struct Counts {
    hits: u64,
    substitutions: u64,
    deletions: u64,
    insertions: u64,
}

impl From<ErrorCounts> for Counts {
    fn from(c: ErrorCounts) -> Self {
        Counts {
            hits: c.hits,
            substitutions: c.substitutions,
            deletions: c.deletions,
            insertions: c.insertions,
        }
    }
}

#[derive(serde::Deserialize)]
struct Pair {
    id: String,
    reference: String,
    hypothesis: String,
    jiwer: Counts,
    jiwer_chars: Counts,
    sclite: Option<Counts>,
}

#[derive(serde::Deserialize)]
struct ScliteCorpus {
    sentences: u64,
    ref_words: u64,
    hits: u64,
    substitutions: u64,
    deletions: u64,
    insertions: u64,
    sentence_errors: u64,
}

#[derive(serde::Deserialize)]
struct Group {
    pairs: Vec<Pair>,
    jiwer_corpus_wer: f64,
    jiwer_corpus_cer: f64,
    sclite_corpus: Option<ScliteCorpus>,
}

#[derive(serde::Deserialize)]
struct Fixture {
    sclite: Option<String>,
    groups: std::collections::BTreeMap<String, Group>,
}

fn fixture() -> Fixture {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/eval/crosscheck.json");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn word_counts_equal_jiwer_on_every_pair() {
    let fx = fixture();
    let mut n = 0;
    let mut bad = Vec::new();
    for (g, group) in &fx.groups {
        for p in &group.pairs {
            n += 1;
            let got = Counts::from(word_counts(&p.reference, &p.hypothesis, TieBreak::Jiwer));
            if got != p.jiwer {
                bad.push(format!("{g}/{}: jiwer {:?} ours {:?}", p.id, p.jiwer, got));
            }
        }
    }
    eprintln!("jiwer word counts: {}/{n} pairs equal", n - bad.len());
    assert!(n >= 60);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn char_counts_equal_jiwer_on_every_pair() {
    let fx = fixture();
    let mut bad = Vec::new();
    for (g, group) in &fx.groups {
        for p in &group.pairs {
            let got = Counts::from(char_counts(&p.reference, &p.hypothesis, TieBreak::Jiwer));
            if got != p.jiwer_chars {
                bad.push(format!(
                    "{g}/{}: jiwer {:?} ours {:?}",
                    p.id, p.jiwer_chars, got
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn corpus_wer_and_cer_equal_jiwer() {
    let fx = fixture();
    for (g, group) in &fx.groups {
        let mut w = ErrorCounts::default();
        let mut c = ErrorCounts::default();
        for p in &group.pairs {
            w += word_counts(&p.reference, &p.hypothesis, TieBreak::Jiwer);
            c += char_counts(&p.reference, &p.hypothesis, TieBreak::Jiwer);
        }
        // same f64 division as jiwer; tolerance only covers JSON float parsing
        assert!(
            (w.error_rate() - group.jiwer_corpus_wer).abs() < 1e-12,
            "{g} WER"
        );
        assert!(
            (c.error_rate() - group.jiwer_corpus_cer).abs() < 1e-12,
            "{g} CER"
        );
    }
}

#[test]
fn word_counts_equal_sclite_on_every_pair() {
    let fx = fixture();
    assert!(
        fx.sclite.is_some(),
        "fixture was generated without sclite; regenerate with sctk installed"
    );
    let mut n = 0;
    let mut bad = Vec::new();
    let mut differs_from_jiwer = Vec::new();
    for (g, group) in &fx.groups {
        let mut total = ErrorCounts::default();
        let mut sentence_errors = 0;
        for p in &group.pairs {
            let want = p
                .sclite
                .unwrap_or_else(|| panic!("{g}/{}: no sclite counts", p.id));
            n += 1;
            let c = word_counts(&p.reference, &p.hypothesis, TieBreak::Sclite);
            total += c;
            sentence_errors += u64::from(c.errors() > 0);
            if Counts::from(c) != want {
                bad.push(format!(
                    "{g}/{}: sclite {want:?} ours {:?}",
                    p.id,
                    Counts::from(c)
                ));
            }
            if want != p.jiwer {
                differs_from_jiwer.push(format!(
                    "{g}/{} ({:?} -> {:?}): jiwer {:?} sclite {want:?}",
                    p.id, p.reference, p.hypothesis, p.jiwer
                ));
            }
        }
        let sc = group.sclite_corpus.as_ref().expect("sclite corpus totals");
        assert_eq!(sc.sentences, group.pairs.len() as u64);
        assert_eq!(
            (
                sc.ref_words,
                sc.hits,
                sc.substitutions,
                sc.deletions,
                sc.insertions
            ),
            (
                total.ref_len(),
                total.hits,
                total.substitutions,
                total.deletions,
                total.insertions
            ),
            "{g}: sclite corpus totals"
        );
        assert_eq!(sc.sentence_errors, sentence_errors, "{g}: sclite S.Err");
    }
    eprintln!(
        "sclite: {}/{n} pairs equal; jiwer and sclite disagree on {} pairs:\n{}",
        n - bad.len(),
        differs_from_jiwer.len(),
        differs_from_jiwer.join("\n")
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
