//! Rust port of the Whisper normalisers vs the real Python implementation
//! (fixture: `fixtures/eval/normalizer_cases.json`, regenerate with
//! `reference/eval_normalizer_cases.py`).

use voxtrace::eval::normalize::{BasicTextNormalizer, EnglishTextNormalizer, NORMALIZER_VERSION};

#[derive(serde::Deserialize)]
struct Case {
    input: String,
    english: String,
    basic: String,
    basic_remove_diacritics: String,
}

#[derive(serde::Deserialize)]
struct Fixture {
    cases: Vec<Case>,
}

fn fixture() -> Fixture {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/eval/normalizer_cases.json"
    );
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn english_normalizer_matches_python_on_every_case() {
    let fx = fixture();
    assert!(
        fx.cases.len() >= 150,
        "fixture too small: {}",
        fx.cases.len()
    );
    let n = EnglishTextNormalizer::new();
    let mut bad = Vec::new();
    for c in &fx.cases {
        let got = n.normalize(&c.input);
        if got != c.english {
            bad.push(format!(
                "{:?}: python {:?} rust {:?}",
                c.input, c.english, got
            ));
        }
    }
    eprintln!(
        "{NORMALIZER_VERSION}: {}/{} cases match",
        fx.cases.len() - bad.len(),
        fx.cases.len()
    );
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn basic_normalizer_matches_python_on_every_case() {
    let fx = fixture();
    let keep = BasicTextNormalizer {
        remove_diacritics: false,
    };
    let strip = BasicTextNormalizer {
        remove_diacritics: true,
    };
    let mut bad = Vec::new();
    for c in &fx.cases {
        let (a, b) = (keep.normalize(&c.input), strip.normalize(&c.input));
        if a != c.basic {
            bad.push(format!(
                "basic {:?}: python {:?} rust {:?}",
                c.input, c.basic, a
            ));
        }
        if b != c.basic_remove_diacritics {
            bad.push(format!(
                "basic(remove_diacritics) {:?}: python {:?} rust {:?}",
                c.input, c.basic_remove_diacritics, b
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} mismatches:\n{}",
        bad.len(),
        bad.join("\n")
    );
}
