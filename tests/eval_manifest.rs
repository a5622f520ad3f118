//! Manifests of the real speech clips: `../shared/audio/{manifest.tsv,tts/manifest.tsv}` and
//! the project's `audio_samples/manifest.tsv` (written by `reference/eval_make_audio_manifest.py`).

use std::path::Path;

use voxtrace::eval::manifest::Manifest;
use voxtrace::eval::metrics::{ScoreInput, score_corpus};

/// The shared speech clips: `$VOXTRACE_AUDIO_DIR` if set, else `<crate>/../shared/audio`.
fn shared_dir() -> String {
    std::env::var("VOXTRACE_AUDIO_DIR")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/audio").to_string())
}
const PROJECT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/audio_samples/manifest.tsv");

fn shared() -> (Manifest, Manifest) {
    let dir = shared_dir();
    let main = Manifest::load(format!("{dir}/manifest.tsv")).expect("shared manifest");
    let tts = Manifest::load(format!("{dir}/tts/manifest.tsv")).expect("shared tts manifest");
    (main, tts)
}

#[test]
fn shared_manifests_parse_and_files_exist() {
    let (main, tts) = shared();
    assert_eq!(main.len(), 24);
    assert_eq!(tts.len(), 6);
    for e in main.entries.iter().chain(&tts.entries) {
        assert!(e.path.is_file(), "{}: {} missing", e.id, e.path.display());
        assert!(!e.reference.is_empty(), "{}", e.id);
    }
    let jfk = main.get("jfk").unwrap();
    assert_eq!(jfk.duration_s, Some(11.0));
    assert!(jfk.reference.starts_with("And so my fellow Americans"));
}

#[test]
fn project_manifest_is_the_union_with_debian_columns() {
    let (main, tts) = shared();
    let project = Manifest::load_with_root(PROJECT, Some(Path::new(&shared_dir())))
        .expect("project manifest");
    assert_eq!(project.len(), main.len() + tts.len());
    assert_eq!(
        project.columns,
        [
            "id",
            "file",
            "duration_s",
            "reference",
            "source",
            "license",
            "debian_package",
            "debian_path"
        ]
    );
    for (p, s) in project
        .entries
        .iter()
        .zip(main.entries.iter().chain(&tts.entries))
    {
        assert_eq!(
            (&p.id, &p.reference, p.duration_s),
            (&s.id, &s.reference, s.duration_s)
        );
        assert_eq!(
            p.path, s.path,
            "{}: resolves to the same clip through audio_root",
            p.id
        );
        let pkg = &p.extra["debian_package"];
        let path = &p.extra["debian_path"];
        if let Some(rest) = s.source.strip_prefix("debian:") {
            assert!(
                rest.starts_with(&format!("{pkg} ")),
                "{}: {pkg} vs {}",
                p.id,
                s.source
            );
            assert!(
                path.starts_with("/usr/share/") && s.source.contains(&path[1..]),
                "{}",
                p.id
            );
        } else {
            assert!(pkg.is_empty() && path.is_empty(), "{}", p.id);
        }
    }
    let mut pkgs: Vec<&str> = project
        .entries
        .iter()
        .map(|e| e.extra["debian_package"].as_str())
        .filter(|p| !p.is_empty())
        .collect();
    pkgs.sort();
    pkgs.dedup();
    assert_eq!(
        pkgs,
        [
            "alsa-utils",
            "asterisk-core-sounds-en-g722",
            "pocketsphinx-testdata"
        ]
    );
}

#[test]
fn references_scored_against_themselves_give_zero() {
    let (main, tts) = shared();
    let pairs: Vec<ScoreInput> = main
        .entries
        .iter()
        .chain(&tts.entries)
        .map(|e| ScoreInput {
            id: e.id.clone(),
            reference: e.reference.clone(),
            hypothesis: e.reference.clone(),
            duration_s: e.duration_s,
            processing_s: e.duration_s.map(|d| d / 2.0),
        })
        .collect();
    let s = score_corpus(&pairs);
    assert_eq!(s.raw.score.words.errors(), 0);
    assert_eq!(s.normalized.score.words.errors(), 0);
    assert_eq!(s.normalized.sentence_errors, 0);
    assert!(s.normalized.score.words.ref_len() > 150);
    assert!((s.rtfx.unwrap() - 2.0).abs() < 1e-12);
}
