//! Property tests (issue 21): malformed corpus manifests given to the manifest parser give a
//! manifest or an error naming the file: never a panic. Lines are built from hostile pieces
//! (absolute paths, `..`, quotes, shell syntax, control characters, BOMs, huge and non-finite
//! numbers, missing and extra fields, CRLF). `PROPTEST_CASES` raises the case count
//! (`just fuzz`).

mod common;

use proptest::prelude::*;
use std::path::Path;
use voxtrace::eval::manifest::{Manifest, ManifestError};

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("id".to_string()),
        Just("file".to_string()),
        Just("duration_s".to_string()),
        Just("reference".to_string()),
        Just("source".to_string()),
        Just("license".to_string()),
        Just("/etc/passwd".to_string()),
        Just("../../outside.wav".to_string()),
        Just("a/./b/../../../c.wav".to_string()),
        Just("$(touch pwned).wav".to_string()),
        Just("`id`'\"; rm -rf x".to_string()),
        Just("\u{feff}".to_string()),
        Just("\r".to_string()),
        Just("\u{1b}[2J".to_string()),
        Just("NaN".to_string()),
        Just("inf".to_string()),
        Just("-1".to_string()),
        Just("1e400".to_string()),
        Just("0".to_string()),
        Just("3.5".to_string()),
        Just("18446744073709551616".to_string()),
        "[ -~]{0,12}",
        "\\PC{0,6}",
    ]
}

fn line() -> impl Strategy<Value = String> {
    proptest::collection::vec(piece(), 0..9).prop_map(|f| f.join("\t"))
}

fn manifest_text() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        any::<bool>(),
        proptest::collection::vec(line(), 0..12),
    )
        .prop_map(|(bom, good_header, lines)| {
            let mut s = String::new();
            if bom {
                s.push('\u{feff}');
            }
            if good_header {
                s.push_str("id\tfile\tduration_s\treference\tsource\tlicense\n");
            }
            s.push_str(&lines.join("\n"));
            s
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::proptest_cases(512)))]

    #[test]
    fn manifest_never_panics(text in manifest_text()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.tsv");
        std::fs::write(&path, &text).unwrap();
        match Manifest::load_with_root(&path, Some(Path::new(dir.path()))) {
            Ok(m) => {
                for e in &m.entries {
                    prop_assert!(e.duration_s.is_none_or(|d| d.is_finite() && d > 0.0), "{e:?}");
                    prop_assert!(!e.id.is_empty());
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("manifest.tsv"), "{e}"),
        }
    }
}

/// A NeMo line: a JSON object of hostile keys and values, or hostile text.
fn nemo_line() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("audio_filepath".to_string()),
        Just("text".to_string()),
        Just("duration".to_string()),
        Just("offset".to_string()),
        Just("id".to_string()),
        "[a-z]{1,6}",
    ];
    let value = prop_oneof![
        piece().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        any::<i64>().prop_map(serde_json::Value::from),
        Just(serde_json::Value::Null),
        Just(serde_json::json!([1, "a"])),
        Just(serde_json::json!({"x": 1})),
    ];
    prop_oneof![
        proptest::collection::btree_map(key, value, 0..6)
            .prop_map(|m| serde_json::to_string(&m).unwrap()),
        line(),
    ]
}

/// A Kaldi table line: `utt rest` from hostile pieces (pipes included).
fn kaldi_line() -> impl Strategy<Value = String> {
    (
        piece(),
        proptest::collection::vec(piece(), 0..4),
        any::<bool>(),
    )
        .prop_map(|(k, rest, pipe)| {
            let mut l = format!("{k} {}", rest.join(" "));
            if pipe {
                l.push_str(" |");
            }
            l
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::proptest_cases(256)))]

    /// NeMo JSON lines: a manifest or an error naming the file, never a panic.
    #[test]
    fn nemo_manifest_never_panics(lines in proptest::collection::vec(nemo_line(), 0..10)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, lines.join("\n")).unwrap();
        match Manifest::load_with_root(&path, Some(dir.path())) {
            Ok(m) => {
                for e in &m.entries {
                    prop_assert!(e.duration_s.is_none_or(|d| d.is_finite() && d > 0.0), "{e:?}");
                    prop_assert!(!e.id.trim().is_empty() && !e.file.trim().is_empty());
                }
            }
            Err(e) => {
                prop_assert!(e.to_string().contains("m.jsonl"), "{e}");
                // Read as NeMo JSON lines, never as a TSV.
                prop_assert!(
                    !matches!(
                        e,
                        ManifestError::BadHeader { .. }
                            | ManifestError::ColumnCount { .. }
                            | ManifestError::Empty { .. }
                    ),
                    "{e}"
                );
            }
        }
    }

    /// Kaldi data folders: a manifest or an error naming a file of the folder, never a panic,
    /// and no piped entry ever accepted (let alone run).
    #[test]
    fn kaldi_dir_never_panics(
        scp in proptest::collection::vec(kaldi_line(), 0..8),
        text in proptest::collection::vec(kaldi_line(), 0..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(data.join("wav.scp"), scp.join("\n")).unwrap();
        std::fs::write(data.join("text"), text.join("\n")).unwrap();
        match Manifest::load_with_root(&data, Some(dir.path())) {
            Ok(m) => {
                for e in &m.entries {
                    prop_assert!(!e.file.trim_end().ends_with('|'), "{e:?}");
                }
            }
            Err(e) => {
                // Read as a Kaldi folder: the error names one of its files, never the folder
                // read as a file.
                let s = e.to_string();
                prop_assert!(!matches!(e, ManifestError::Io { .. }), "{s}");
                prop_assert!(s.contains("wav.scp") || s.contains("text"), "{s}");
            }
        }
    }
}
