//! Screenshot test: the report of a run over the real corpus (upstream Whisper tiny.en
//! transcripts as systems) renders in Debian's headless Chromium with its table and chart.
//! Needs chromium (`just setup`); without it the test FAILS, it does not skip.

use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn eval(dir: &Path, run: &str, systems: &[String], extra: &[&str]) {
    let mut args: Vec<String> = vec![
        "eval".into(),
        "--manifest".into(),
        format!("{ROOT}/audio_samples/manifest.tsv"),
        "--audio-root".into(),
        std::env::var("VOXTRACE_AUDIO_DIR").unwrap_or_else(|_| format!("{ROOT}/../shared/audio")),
        "--run-id".into(),
        run.into(),
        "--quiet".into(),
    ];
    for s in systems {
        args.push("--system".into());
        args.push(s.clone());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let o = Command::new(env!("CARGO_BIN_EXE_voxtrace"))
        .current_dir(dir)
        .args(&args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// Report of two runs (so the trend chart has a line) over the 30-clip corpus.
fn make_report(dir: &Path) -> PathBuf {
    let hf =
        format!("hf=transcripts:{ROOT}/fixtures/whisper_tiny_en/transformers_transcripts.json");
    let fw =
        format!("ct2=transcripts:{ROOT}/fixtures/whisper_tiny_en/faster_whisper_transcripts.json");
    eval(dir, "20261122T000000Z", std::slice::from_ref(&hf), &[]);
    eval(
        dir,
        "20261122T010000Z",
        &[hf, fw],
        &["--reference-system", "hf"],
    );
    dir.join("reports/20261122T010000Z/report.html")
}

#[test]
fn report_renders_in_headless_chromium() {
    let has_chromium = ["chromium", "chromium-browser"].iter().any(|c| {
        Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(
        has_chromium,
        "chromium is not installed: run `just setup` (apt-get install -y chromium) to enable the screenshot test"
    );
    let tmp = tempfile::tempdir().unwrap();
    let report = make_report(tmp.path());
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(
        html.contains("<svg") && html.contains("<polyline"),
        "trend chart with a line"
    );
    assert!(html.contains("class=\"utts\""), "per-utterance table");
    // Self-contained: no external resources.
    for bad in ["http://", "https://", "src=\"//"] {
        assert!(!html.contains(bad), "report references {bad}");
    }
    let out = std::env::var("VOXTRACE_SCREENSHOT_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| tmp.path().join("report.png"));
    let o = Command::new(format!("{ROOT}/reference/report_screenshot.sh"))
        .arg(&report)
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "report_screenshot.sh failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&out).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1400, 2000));
    let ch = info.color_type.samples();
    assert!(ch >= 3, "colour PNG, got {:?}", info.color_type);
    let px: Vec<&[u8]> = buf[..info.buffer_size()].chunks(ch).collect();
    let non_white = px
        .iter()
        .filter(|p| p[..3].iter().any(|&c| c < 240))
        .count();
    let frac = non_white as f64 / px.len() as f64;
    assert!(frac > 0.05, "screenshot looks blank: {:.3} non-white", frac);
    let distinct: std::collections::HashSet<[u8; 3]> =
        px.iter().map(|p| [p[0], p[1], p[2]]).collect();
    assert!(
        distinct.len() > 50,
        "screenshot has only {} colours",
        distinct.len()
    );
    // The dark header band is at the top, the page background below it.
    let at = |x: usize, y: usize| px[y * info.width as usize + x];
    assert!(
        at(5, 5)[..3].iter().all(|&c| c < 60),
        "header: {:?}",
        at(5, 5)
    );
}
