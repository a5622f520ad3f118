//! The corpus layouts `voxtrace eval --manifest` reads (voxtrace TSV with all or only the
//! required columns, NeMo JSON lines, Kaldi data folder, LibriSpeech tree): the same clips give
//! identical totals in every layout, durations missing from a layout are read from the audio,
//! and a piped Kaldi `wav.scp` entry is refused without being run.

use std::path::Path;

mod common;

use common::eval_corpus::{ok, results, show, voxtrace, write};

/// A 16-bit mono PCM WAV of `frames` silent samples at 16 kHz.
fn wav(path: &Path, frames: u32) {
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + 2 * frames).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    for v in [16u32, 0x0001_0001, 16_000, 32_000] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b.extend_from_slice(&[2, 0, 16, 0]);
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(2 * frames).to_le_bytes());
    b.resize(b.len() + 2 * frames as usize, 0);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b).unwrap();
}

/// (id, chapter folder, frames at 16 kHz or None for a clip without audio, reference, hypothesis)
const CLIPS: [(&str, &str, Option<u32>, &str, &str); 6] = [
    (
        "19-198-0000",
        "19/198",
        Some(16_000),
        "NORTHANGER ABBEY",
        "northanger abbey",
    ),
    (
        "19-198-0001",
        "19/198",
        Some(24_000),
        "THIS LITTLE WORK WAS FINISHED",
        "this little work was finish",
    ),
    (
        "19-198-0002",
        "19/198",
        Some(8_000),
        "THE END",
        "the the end",
    ),
    (
        "26-495-0000",
        "26/495",
        Some(40_000),
        "GOOD MORNING EVERYONE",
        "good everyone",
    ),
    (
        "26-495-0001",
        "26/495",
        Some(12_000),
        "SEE YOU SOON",
        "see you soon",
    ),
    ("26-495-0002", "26/495", None, "NO AUDIO FOR THIS ONE", ""),
];

/// The clips as a LibriSpeech tree under `d/corpus`, with `cat {audio}.txt` hypotheses beside
/// the audio; returns each clip's `file` relative to `d`.
fn tree(d: &Path) -> Vec<String> {
    let mut files = vec![];
    let mut trans: std::collections::BTreeMap<&str, String> = Default::default();
    for (id, ch, frames, r, h) in CLIPS {
        let ext = if frames.is_some() { "wav" } else { "flac" };
        let file = format!("corpus/{ch}/{id}.{ext}");
        if let Some(n) = frames {
            wav(&d.join(&file), n);
            write(&d.join(format!("{file}.txt")), &format!("{h}\n"));
        }
        trans
            .entry(ch)
            .or_default()
            .push_str(&format!("{id} {r}\n"));
        files.push(file);
    }
    for (ch, t) in trans {
        let name = ch.replace('/', "-");
        write(&d.join(format!("corpus/{ch}/{name}.trans.txt")), &t);
    }
    files
}

fn eval(d: &Path, run: &str, manifest: &str, extra: &[&str]) {
    let mut args = vec![
        "eval",
        "--manifest",
        manifest,
        "--run-id",
        run,
        "--quiet",
        "--system",
        "s=cmd:cat {audio}.txt",
    ];
    args.extend(extra);
    ok(&voxtrace(d, &args));
}

/// The run's totals (and clip counts) without wall-clock figures.
fn totals(d: &Path, run: &str) -> serde_json::Value {
    let r = results(d, run);
    let mut t = serde_json::to_value(&r.systems[0].totals).unwrap();
    for k in ["processing_s", "rtf", "rtfx"] {
        t.as_object_mut().unwrap().remove(k);
    }
    serde_json::json!({
        "n_clips": r.n_clips,
        "missing": r.missing_clips.iter().map(|m| &m.id).collect::<Vec<_>>(),
        "totals": t,
    })
}

#[test]
fn every_layout_gives_identical_totals() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let files = tree(d);
    let (mut full, mut minimal, mut nemo, mut scp, mut text) = (
        String::from("id\tfile\tduration_s\treference\tsource\tlicense\n"),
        String::from("file\treference\tid\n"),
        String::new(),
        String::new(),
        String::new(),
    );
    for ((id, _, frames, r, _), file) in CLIPS.iter().zip(&files) {
        let dur = frames.map_or(3.0, |n| f64::from(n) / 16_000.0);
        full.push_str(&format!(
            "{id}\t{file}\t{dur}\t{r}\tLibriSpeech-like\tCC-BY-4.0\n"
        ));
        minimal.push_str(&format!("{file}\t{r}\t{id}\n"));
        // NeMo: a duration on some lines only.
        let mut o = serde_json::json!({"audio_filepath": file, "text": r});
        if id.ends_with('1') {
            o["duration"] = dur.into();
        }
        nemo.push_str(&format!("{o}\n"));
        scp.push_str(&format!("{id} {file}\n"));
        text.push_str(&format!("{id} {r}\n"));
    }
    write(&d.join("full.tsv"), &full);
    write(&d.join("minimal.tsv"), &minimal);
    write(&d.join("nemo.jsonl"), &nemo);
    write(&d.join("kaldi/wav.scp"), &scp);
    write(&d.join("kaldi/text"), &text);
    eval(d, "full", "full.tsv", &[]);
    eval(d, "minimal", "minimal.tsv", &[]);
    eval(d, "nemo", "nemo.jsonl", &[]);
    eval(d, "kaldi", "kaldi", &["--audio-root", "."]);
    eval(d, "kaldi-scp", "kaldi/wav.scp", &["--audio-root", "."]);
    eval(d, "libri", "corpus", &[]);
    let want = totals(d, "full");
    // Not vacuous: errors of each kind, a missing clip, durations summed from the audio.
    let t = &want["totals"];
    assert_eq!(want["n_clips"], 6);
    assert_eq!(want["missing"], serde_json::json!(["26-495-0002"]));
    for k in ["substitutions", "deletions", "insertions"] {
        assert!(t["counts"][k].as_u64().unwrap() > 0, "{k}: {t}");
    }
    assert_eq!(t["audio_s"], serde_json::json!(100_000.0 / 16_000.0));
    for run in ["minimal", "nemo", "kaldi", "kaldi-scp", "libri"] {
        assert_eq!(totals(d, run), want, "{run}");
    }
    let r = results(d, "minimal");
    let u = &r.systems[0].utterances[1];
    assert_eq!(
        (u.id.as_str(), u.audio_s),
        ("19-198-0001", 1.5),
        "duration read from the audio"
    );
}

#[test]
fn piped_kaldi_entry_is_refused_and_never_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    wav(&d.join("data/a.wav"), 16_000);
    write(&d.join("data/text"), "a hello\nb world\n");
    write(&d.join("data/wav.scp"), "a a.wav\nb touch pwned |\n");
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "data",
            "--quiet",
            "--system",
            "s=cmd:cat {audio}",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("data/wav.scp:2:") && e.contains("piped entry"),
        "{e}"
    );
    assert!(!d.join("pwned").exists() && !d.join("data/pwned").exists());
    // A folder that is neither layout.
    std::fs::create_dir_all(d.join("empty")).unwrap();
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "empty",
            "--quiet",
            "--system",
            "s=cmd:cat {audio}",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("found neither"));
}
