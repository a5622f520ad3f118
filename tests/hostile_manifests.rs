//! Property tests (issue 21): malformed corpus manifests given to the manifest parser give a
//! manifest or an error naming the file: never a panic. Lines are built from hostile pieces
//! (absolute paths, `..`, quotes, shell syntax, control characters, BOMs, huge and non-finite
//! numbers, missing and extra fields, CRLF). `PROPTEST_CASES` raises the case count
//! (`just fuzz`).

mod common;

use proptest::prelude::*;
use std::path::Path;
use voxtrace::eval::manifest::Manifest;

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
                    prop_assert!(e.duration_s.is_finite() && e.duration_s > 0.0, "{e:?}");
                    prop_assert!(!e.id.is_empty());
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("manifest.tsv"), "{e}"),
        }
    }
}
