//! `voxtrace eval` / `eval-check` end to end on tiny corpora built in temp dirs: WER known by
//! construction, missing audio, failed utterances, resume, history, regression gate, the `cmd:`
//! and `http:` systems, and agreement with a reference system.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};

mod common;

use common::eval_corpus::{manifest, ok, results, transcripts, voxtrace, write};
use voxtrace::eval::results::UttStatus;
use voxtrace::report::history;

/// Corpus where the normalised WER is 3/13 by construction (each alignment is the unique
/// minimum-cost one):
/// * a: "the cat sat on the mat" vs "the cat sat on a mat": 1 S of 6;
/// * b: "Hello, World!" vs "hello world": 0 errors normalised, 2 S raw;
/// * c: "good morning everyone" vs "good everyone": 1 D of 3;
/// * d: "see you" vs "see you soon": 1 I of 2.
///
/// Raw WER: (1 + 2 + 1 + 1) / 13. The mean of per-utterance WERs would be
/// (1/6 + 0 + 1/3 + 1/2) / 4 = 1/4 ≠ 3/13.
fn known_corpus(dir: &Path) -> (PathBuf, PathBuf) {
    for f in ["a.wav", "b.wav", "c.wav", "d.wav"] {
        write(
            &dir.join(f),
            "not audio: the transcripts system does not read it",
        );
    }
    let m = manifest(
        dir,
        &[
            ("a", "a.wav", "the cat sat on the mat"),
            ("b", "b.wav", "Hello, World!"),
            ("c", "c.wav", "good morning everyone"),
            ("d", "d.wav", "see you"),
            ("gone", "gone.wav", "this clip has no audio"),
        ],
    );
    let t = transcripts(
        dir,
        "hyp.json",
        &[
            ("a", "the cat sat on a mat"),
            ("b", "hello world"),
            ("c", "good everyone"),
            ("d", "see you soon"),
            ("gone", "whatever"),
        ],
    );
    (m, t)
}

#[test]
fn transcripts_system_scores_known_wer_and_reports_missing_clip() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (m, t) = known_corpus(d);
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            m.to_str().unwrap(),
            "--system",
            &format!("up=transcripts:{}", t.display()),
            "--run-id",
            "r1",
            "--quiet",
            "--json",
        ],
    );
    ok(&o);
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["missing"], serde_json::json!(["gone"]));
    let r = results(d, "r1");
    assert_eq!(r.n_clips, 5);
    assert_eq!(r.missing_clips.len(), 1);
    assert_eq!(r.missing_clips[0].id, "gone");
    let s = &r.systems[0];
    let t = &s.totals;
    assert_eq!(
        (t.n_clips, t.n_scored, t.n_ok, t.n_failed, t.n_missing),
        (5, 4, 4, 0, 1)
    );
    assert_eq!(t.missing_ids, vec!["gone".to_string()]);
    assert_eq!(
        (
            t.counts.substitutions,
            t.counts.deletions,
            t.counts.insertions,
            t.counts.hits
        ),
        (1, 1, 1, 11)
    );
    assert!((t.wer - 3.0 / 13.0).abs() < 1e-12, "{}", t.wer);
    assert!((t.raw_wer - 5.0 / 13.0).abs() < 1e-12, "{}", t.raw_wer);
    assert!((t.ser - 3.0 / 4.0).abs() < 1e-12);
    assert_eq!(t.rtf, None, "precomputed transcripts are not timed");
    assert_eq!(t.top_confusions[0].reference, "the");
    assert_eq!(t.top_confusions[0].hypothesis, "a");
    assert_eq!(t.top_deletions[0].word, "morning");
    assert_eq!(t.top_insertions[0].word, "soon");
    let by = |id: &str| s.utterances.iter().find(|u| u.id == id).unwrap();
    assert_eq!(by("b").wer, Some(0.0));
    assert_eq!(by("b").raw.as_ref().unwrap().words.substitutions, 2);
    assert_eq!(
        by("b").hypothesis_normalized.as_deref(),
        Some("hello world")
    );
    assert_eq!(by("c").counts.unwrap().deletions, 1);
    assert_eq!(by("c").alignment.len(), 3);
    assert_eq!(by("d").counts.unwrap().insertions, 1);
    let gone = by("gone");
    assert_eq!(gone.status, UttStatus::Missing);
    assert!(gone.error.as_deref().unwrap().contains("gone.wav"));
    assert_eq!(gone.wer, None);
    // History row and report.
    let h = history::read(&d.join("reports/history.jsonl")).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].run_id, "r1");
    assert!((h[0].systems["up"].wer - 3.0 / 13.0).abs() < 1e-12);
    assert_eq!(h[0].systems["up"].n_missing, 1);
    assert_eq!(h[0].corpus_sha256, r.provenance.corpus_sha256);
    let html = std::fs::read_to_string(d.join("reports/r1/report.html")).unwrap();
    assert!(html.contains("23.08%"), "corpus WER shown");
    assert!(html.contains("1 of 5 clips have no audio"));
    assert!(html.contains(">gone</code>"));
    // Without --resume the same run id is refused.
    let o2 = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "manifest.tsv",
            "--system",
            "up=transcripts:hyp.json",
            "--run-id",
            "r1",
            "--quiet",
        ],
    );
    assert_eq!(o2.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o2.stderr).contains("--resume"));
}

#[test]
fn corpus_hash_changes_with_audio_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (m, t) = known_corpus(d);
    let spec = format!("up=transcripts:{}", t.display());
    let args = |id: &'static str| {
        vec![
            "eval",
            "--manifest",
            m.to_str().unwrap(),
            "--system",
            &spec,
            "--run-id",
            id,
            "--quiet",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let a1 = args("h1");
    ok(&voxtrace(
        d,
        &a1.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    write(&d.join("a.wav"), "different bytes");
    let a2 = args("h2");
    ok(&voxtrace(
        d,
        &a2.iter().map(String::as_str).collect::<Vec<_>>(),
    ));
    let (r1, r2) = (results(d, "h1"), results(d, "h2"));
    assert_ne!(r1.provenance.corpus_sha256, r2.provenance.corpus_sha256);
    assert_eq!(r1.provenance.corpus_sha256.len(), 64);
}

/// `cmd:` system: `cat {audio}.txt`; a clip without its .txt makes `cat` fail: a failed
/// utterance carrying cat's stderr, scored as an empty hypothesis (all deletions). Two systems
/// run side by side and the second is scored for agreement against the first.
#[test]
fn cmd_system_side_by_side_with_failures_and_agreement() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let clips = [
        ("x1", "the quick brown fox", Some("the quick brown fox")),
        ("x2", "jumps over the dog", Some("jumps over a dog")),
        ("x3", "lazy afternoon", None),
    ];
    for (id, _, hyp) in &clips {
        write(&d.join(format!("{id} q'uote.wav")), "audio bytes");
        if let Some(h) = hyp {
            write(&d.join(format!("{id} q'uote.wav.txt")), &format!("{h}\n"));
        }
    }
    let m = manifest(
        d,
        &clips
            .iter()
            .map(|(id, r, _)| {
                (
                    *id,
                    Box::leak(format!("{id} q'uote.wav").into_boxed_str()) as &str,
                    *r,
                )
            })
            .collect::<Vec<_>>(),
    );
    // The reference system is right on everything.
    let up = transcripts(
        d,
        "up.json",
        &clips.iter().map(|(id, r, _)| (*id, *r)).collect::<Vec<_>>(),
    );
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            m.to_str().unwrap(),
            "--system",
            &format!("up=transcripts:{}", up.display()),
            "--system",
            "stub=cmd:cat {audio}.txt",
            "--reference-system",
            "up",
            "--run-id",
            "c1",
            "--quiet",
        ],
    );
    ok(&o);
    let r = results(d, "c1");
    assert_eq!(r.systems.len(), 2);
    let up = &r.systems[0];
    assert_eq!(up.totals.wer, 0.0);
    assert!(
        up.agreement.is_none(),
        "the reference system has no agreement with itself"
    );
    let stub = &r.systems[1];
    assert_eq!(stub.info.kind, "cmd");
    let x3 = stub.utterances.iter().find(|u| u.id == "x3").unwrap();
    assert_eq!(x3.status, UttStatus::Failed);
    assert!(
        x3.error.as_deref().unwrap().contains("No such file"),
        "{:?}",
        x3.error
    );
    assert_eq!(x3.counts.unwrap().deletions, 2);
    assert_eq!(stub.totals.n_failed, 1);
    assert_eq!(stub.totals.failed_ids, vec!["x3".to_string()]);
    // 1 S (the -> a) + 2 D (failed x3) over 4 + 4 + 2 words.
    assert!(
        (stub.totals.wer - 3.0 / 10.0).abs() < 1e-12,
        "{}",
        stub.totals.wer
    );
    assert!(stub.totals.rtf.is_some(), "cmd systems are timed");
    // Agreement over the clips both transcribed (x1, x2): 1 S of 8 words.
    let a = stub.agreement.as_ref().unwrap();
    assert_eq!(a.reference_system, "up");
    assert_eq!(a.n_utterances, 2);
    assert!((a.word_agreement - (1.0 - 1.0 / 8.0)).abs() < 1e-12);
    assert!((a.exact_match_rate - 0.5).abs() < 1e-12);
    assert_eq!(a.differing_ids, vec!["x2".to_string()]);
    let html = std::fs::read_to_string(d.join("reports/c1/report.html")).unwrap();
    assert!(html.contains("agreement with its reference"));
    assert!(
        html.contains("with up: S 1"),
        "the cell names the reference"
    );
    assert_eq!(
        r.reference_pairs,
        vec![("stub".to_string(), "up".to_string())]
    );
    assert!(html.contains("87.50%"));
}

/// Simulate a crash: a full run, then results.json removed and partial.jsonl cut after its
/// first record plus half a line. `--resume` reruns only the clips not in partial.jsonl (a
/// log kept by the command shows which) and ends with the same results.
#[test]
fn resume_skips_finished_utterances() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ids = ["u1", "u2", "u3"];
    for id in ids {
        write(&d.join(format!("{id}.wav")), "audio");
        write(&d.join(format!("{id}.wav.txt")), &format!("hyp of {id}"));
    }
    let m = manifest(
        d,
        &[
            ("u1", "u1.wav", "hyp of u1"),
            ("u2", "u2.wav", "hyp of u2"),
            ("u3", "u3.wav", "hyp of one"),
        ],
    );
    let spec = format!(
        "s=cmd:echo {{audio}} >> {}; cat {{audio}}.txt",
        d.join("log").display()
    );
    let args = [
        "eval",
        "--manifest",
        m.to_str().unwrap(),
        "--system",
        &spec,
        "--run-id",
        "rr",
        "--quiet",
    ];
    ok(&voxtrace(d, &args));
    let first = results(d, "rr");
    let log = std::fs::read_to_string(d.join("log")).unwrap();
    assert_eq!(log.lines().count(), 3);
    let run_dir = d.join("reports/rr");
    let partial = std::fs::read_to_string(run_dir.join("partial.jsonl")).unwrap();
    let lines: Vec<&str> = partial.lines().collect();
    assert_eq!(lines.len(), 3);
    std::fs::remove_file(run_dir.join("results.json")).unwrap();
    std::fs::write(
        run_dir.join("partial.jsonl"),
        format!("{}\n{}", lines[0], &lines[1][..lines[1].len() / 2]),
    )
    .unwrap();
    std::fs::remove_file(d.join("log")).unwrap();
    // Without --resume: refused.
    let o = voxtrace(d, &args);
    assert_eq!(o.status.code(), Some(2));
    let mut rargs = args.to_vec();
    rargs.push("--resume");
    ok(&voxtrace(d, &rargs));
    let log = std::fs::read_to_string(d.join("log")).unwrap();
    assert!(
        !log.contains("u1.wav"),
        "u1 was finished and must be skipped: {log}"
    );
    assert!(log.contains("u2.wav") && log.contains("u3.wav"), "{log}");
    let second = results(d, "rr");
    assert_eq!(
        first.systems[0].totals.counts,
        second.systems[0].totals.counts
    );
    assert_eq!(second.systems[0].totals.n_scored, 3);
    let h = history::read(&d.join("reports/history.jsonl")).unwrap();
    assert_eq!(h.len(), 1, "a resumed run replaces its history row");
}

#[test]
fn history_append_is_atomic_and_rejects_a_malformed_file() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("history.jsonl");
    let row = |id: &str, wer: f64| history::HistoryRow {
        run_id: id.into(),
        time: "2026-11-22T05:00:00Z".into(),
        commit: None,
        corpus_sha256: "00".into(),
        manifest: "m.tsv".into(),
        normalizer: "n".into(),
        results: format!("{id}/results.json"),
        systems: [(
            "s".to_string(),
            history::SystemFigures {
                wer,
                ..Default::default()
            },
        )]
        .into_iter()
        .collect(),
    };
    history::append(&p, &row("a", 0.1)).unwrap();
    history::append(&p, &row("b", 0.2)).unwrap();
    history::append(&p, &row("a", 0.3)).unwrap();
    let rows = history::read(&p).unwrap();
    assert_eq!(
        rows.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );
    assert_eq!(rows[1].systems["s"].wer, 0.3);
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["history.jsonl"], "no temporary file left behind");
    // A malformed history is an error naming file and line, and is left untouched.
    let mut text = std::fs::read_to_string(&p).unwrap();
    text.push_str("{not json\n");
    std::fs::write(&p, &text).unwrap();
    let err = history::append(&p, &row("c", 0.0)).unwrap_err();
    assert!(format!("{err:#}").contains("history.jsonl:3"), "{err:#}");
    assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
}

/// eval-check: identical run passes (0); a changed pinned hypothesis at equal WER fails only
/// when pinned; a WER rise fails; newly broken / fixed utterances are listed and shown in the
/// newest report.
#[test]
fn eval_check_gates_on_wer_rise_and_pinned_change() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for f in ["a", "b", "c"] {
        write(&d.join(format!("{f}.wav")), "audio");
    }
    let m = manifest(
        d,
        &[
            ("a", "a.wav", "one small step"),
            ("b", "b.wav", "for a man"),
            ("c", "c.wav", "giant leap for mankind"),
        ],
    );
    let hyps: [&[(&str, &str)]; 4] = [
        &[
            ("a", "one small step"),
            ("b", "for a man"),
            ("c", "giant leap for man"),
        ],
        &[
            ("a", "one small step"),
            ("b", "for a man"),
            ("c", "giant leap for man"),
        ],
        // Same WER, different wrong word on c.
        &[
            ("a", "one small step"),
            ("b", "for a man"),
            ("c", "giant leap for men"),
        ],
        // b breaks, c is fixed, and WER rises: 1 S + 1 D on b.
        &[
            ("a", "one small step"),
            ("b", "four man"),
            ("c", "giant leap for mankind"),
        ],
    ];
    for (k, h) in hyps.iter().enumerate() {
        let t = transcripts(d, &format!("h{k}.json"), h);
        ok(&voxtrace(
            d,
            &[
                "eval",
                "--manifest",
                m.to_str().unwrap(),
                "--system",
                &format!("sys=transcripts:{}", t.display()),
                "--run-id",
                &format!("run{k}"),
                "--quiet",
            ],
        ));
        let check = |extra: &[&str]| {
            let mut a = vec!["eval-check", "--history", "reports/history.jsonl"];
            a.extend_from_slice(extra);
            voxtrace(d, &a)
        };
        match k {
            0 => {
                let o = check(&[]);
                assert_eq!(o.status.code(), Some(2), "no baseline yet");
                assert!(String::from_utf8_lossy(&o.stderr).contains("no earlier run"));
            }
            1 => {
                let o = check(&["--pin", "c"]);
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "{}",
                    String::from_utf8_lossy(&o.stdout)
                );
                assert!(String::from_utf8_lossy(&o.stdout).contains("PASS"));
            }
            2 => {
                let o = check(&[]);
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "{}",
                    String::from_utf8_lossy(&o.stdout)
                );
                let o = check(&["--pin", "c"]);
                assert_eq!(
                    o.status.code(),
                    Some(1),
                    "{}",
                    String::from_utf8_lossy(&o.stdout)
                );
                let out = String::from_utf8_lossy(&o.stdout);
                assert!(out.contains("pinned utterance changed: c"), "{out}");
                let o = check(&["--pin", "a"]);
                assert_eq!(o.status.code(), Some(0));
                let o = check(&["--pin", "nope"]);
                assert_eq!(o.status.code(), Some(2), "unknown pinned id");
            }
            3 => {
                let o = check(&[]);
                assert_eq!(
                    o.status.code(),
                    Some(1),
                    "{}",
                    String::from_utf8_lossy(&o.stdout)
                );
                let out = String::from_utf8_lossy(&o.stdout);
                assert!(out.contains("REGRESSION"), "{out}");
                assert!(out.contains("newly broken: b"), "{out}");
                assert!(out.contains("newly fixed: c"), "{out}");
                // A large enough threshold passes; an explicit older baseline too.
                let o = check(&["--max-wer-increase", "0.5"]);
                assert_eq!(
                    o.status.code(),
                    Some(0),
                    "{}",
                    String::from_utf8_lossy(&o.stdout)
                );
                let o = check(&["--baseline-run", "run0", "--max-wer-increase", "0.5"]);
                assert_eq!(o.status.code(), Some(0));
                let o = check(&["--baseline", "reports/run0/results.json"]);
                assert_eq!(o.status.code(), Some(1));
                let o = check(&["--run", "run1", "--baseline-run", "run0"]);
                assert_eq!(o.status.code(), Some(0));
                let o = check(&["--system", "other"]);
                assert_eq!(o.status.code(), Some(2));
                // The newest report shows the outcome of the last check on it (run3 vs run0 file).
                let html = std::fs::read_to_string(d.join("reports/run3/report.html")).unwrap();
                assert!(html.contains("Regression check against"), "check section");
                assert!(html.contains("FAIL"));
                assert!(html.contains(">b</code>"));
                let cj: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(d.join("reports/run3/check.json")).unwrap(),
                )
                .unwrap();
                assert_eq!(cj["passed"], false);
                assert_eq!(cj["systems"][0]["newly_broken"][0]["id"], "b");
                // Run folders are not committed: a history row whose results are absent is
                // skipped for the default baseline (and named), an explicit one is an error,
                // and with no earlier results at all the check cannot run.
                std::fs::rename(d.join("reports/run2"), d.join("run2-moved")).unwrap();
                let o = check(&[]);
                assert_eq!(o.status.code(), Some(1), "run3 vs run1 still regresses");
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(
                    err.contains("baseline \"run1\"") && err.contains("run2 ("),
                    "{err}"
                );
                assert!(String::from_utf8_lossy(&o.stdout).contains("run1"));
                let o = check(&["--baseline-run", "run2"]);
                assert_eq!(o.status.code(), Some(2));
                for r in ["run0", "run1"] {
                    std::fs::rename(d.join("reports").join(r), d.join(format!("{r}-moved")))
                        .unwrap();
                }
                let o = check(&[]);
                assert_eq!(o.status.code(), Some(2));
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(
                    err.contains("no earlier run") && err.contains("run0 ("),
                    "{err}"
                );
            }
            _ => unreachable!(),
        }
    }
    let h = history::read(&d.join("reports/history.jsonl")).unwrap();
    assert_eq!(h.len(), 4);
}

/// A one-shot loopback HTTP server for `n` requests; the transcript it answers is the uploaded
/// file's content, except for files containing `FAIL`, answered with HTTP 500. Returns the URL
/// and a handle yielding the raw requests.
fn server(n: usize) -> (String, std::thread::JoinHandle<Vec<Vec<u8>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/audio/transcriptions", l.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let mut reqs = Vec::new();
        for _ in 0..n {
            let (mut s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut head = Vec::new();
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                head.extend_from_slice(line.as_bytes());
                if line == "\r\n" {
                    break;
                }
            }
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            let text = String::from_utf8_lossy(&body).into_owned();
            // The file part's content is between the part headers' blank line and the boundary.
            let file_part = text.split("name=\"file\"").nth(1).unwrap_or("");
            let content = file_part
                .split("\r\n\r\n")
                .nth(1)
                .unwrap_or("")
                .split("\r\n--")
                .next()
                .unwrap_or("");
            let (status, payload) = if content.contains("FAIL") {
                (
                    "500 Internal Server Error",
                    "{\"error\":\"model crashed\"}".to_string(),
                )
            } else {
                ("200 OK", serde_json::json!({"text": content}).to_string())
            };
            write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                payload.len()
            )
            .unwrap();
            s.flush().unwrap();
            head.extend_from_slice(&body);
            reqs.push(head);
        }
        reqs
    });
    (url, h)
}

#[test]
fn http_system_against_a_loopback_server() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(&d.join("h1.wav"), "hello there");
    write(&d.join("h2.wav"), "FAIL please");
    let m = manifest(
        d,
        &[
            ("h1", "h1.wav", "hello there"),
            ("h2", "h2.wav", "general kenobi"),
        ],
    );
    // h1, then h2's HTTP 500 and its three retries (eval::systems, ExternalLimits).
    let (url, srv) = server(5);
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            m.to_str().unwrap(),
            "--system",
            &format!("vllm=http:{url}"),
            "--http-model",
            "my-model",
            "--run-id",
            "h",
            "--quiet",
        ],
    );
    ok(&o);
    let reqs = srv.join().unwrap();
    let r0 = String::from_utf8_lossy(&reqs[0]);
    assert!(
        r0.starts_with("POST /v1/audio/transcriptions HTTP/1.1"),
        "{r0}"
    );
    assert!(
        r0.to_ascii_lowercase()
            .contains("content-type: multipart/form-data; boundary=")
    );
    assert!(r0.contains("name=\"model\"\r\n\r\nmy-model\r\n"), "{r0}");
    assert!(r0.contains("name=\"file\"; filename=\"h1.wav\""), "{r0}");
    let r = results(d, "h");
    let s = &r.systems[0];
    assert_eq!(s.info.kind, "http");
    assert_eq!(s.utterances[0].hypothesis.as_deref(), Some("hello there"));
    assert_eq!(s.utterances[0].wer, Some(0.0));
    assert_eq!(s.utterances[1].status, UttStatus::Failed);
    let e = s.utterances[1].error.as_deref().unwrap();
    assert!(e.contains("500") && e.contains("model crashed"), "{e}");
    assert!((s.totals.wer - 2.0 / 4.0).abs() < 1e-12);
}

#[test]
fn bad_system_specs_and_manifest_lines_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(&d.join("a.wav"), "x");
    let m = manifest(d, &[("a", "a.wav", "x")]);
    for (spec, msg) in [
        ("noequals", "NAME=SPEC"),
        ("x=cmd:cat file", "{audio}"),
        ("x=foo:bar", "unknown system kind"),
        ("x=http:localhost:1", "full URL"),
        ("x=transcripts:nope.json", "nope.json"),
    ] {
        let o = voxtrace(
            d,
            &[
                "eval",
                "--manifest",
                m.to_str().unwrap(),
                "--system",
                spec,
                "--quiet",
            ],
        );
        assert_ne!(o.status.code(), Some(0), "{spec}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(msg), "{spec}: {err}");
    }
    write(
        &d.join("bad.tsv"),
        "id\tfile\tduration_s\treference\tsource\tlicense\na\ta.wav\tnot-a-number\tx\ts\tl\n",
    );
    let t = transcripts(d, "t.json", &[("a", "x")]);
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "bad.tsv",
            "--system",
            &format!("t=transcripts:{}", t.display()),
            "--quiet",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bad.tsv:2"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The upstream Whisper transcripts fixture loads as a system and covers the project corpus.
#[test]
fn upstream_whisper_transcripts_fixture_is_a_valid_system() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (map, source) = voxtrace::eval::systems::load_transcripts(
        &root.join("fixtures/whisper_tiny_en/transformers_transcripts.json"),
    )
    .unwrap();
    assert!(source.unwrap().contains("transformers"));
    let m =
        voxtrace::eval::manifest::Manifest::load(root.join("audio_samples/manifest.tsv")).unwrap();
    for e in &m.entries {
        assert!(
            map.contains_key(&e.id),
            "{} has no upstream transcript",
            e.id
        );
    }
}

/// Two ports side by side, each scored against its own upstream (`SYS=REF`), plus a bare default
/// for a third system: agreement is computed within each pair only, so a Whisper row is never
/// scored against Voxtral's transcripts.
#[test]
fn reference_pairs_score_each_port_against_its_own_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (m, _) = known_corpus(d);
    let refs = [
        ("a", "the cat sat on the mat"),
        ("b", "hello world"),
        ("c", "good morning everyone"),
        ("d", "see you"),
    ];
    let up_a = transcripts(d, "up_a.json", &refs);
    // Port A differs from its upstream in one word of clip a.
    let mut a_rows = refs;
    a_rows[0].1 = "the cat sat on a mat";
    let port_a = transcripts(d, "port_a.json", &a_rows);
    // Upstream B is a different model: it differs from the references on clip d.
    let mut b_up_rows = refs;
    b_up_rows[3].1 = "see you later";
    let up_b = transcripts(d, "up_b.json", &b_up_rows);
    let port_b = transcripts(d, "port_b.json", &b_up_rows);
    let other = transcripts(d, "other.json", &refs);
    let sys = |n: &str, p: &Path| format!("{n}=transcripts:{}", p.display());
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            m.to_str().unwrap(),
            "--system",
            &sys("up_a", &up_a),
            "--system",
            &sys("port_a", &port_a),
            "--system",
            &sys("up_b", &up_b),
            "--system",
            &sys("port_b", &port_b),
            "--system",
            &sys("other", &other),
            "--reference-system",
            "port_a=up_a",
            "--reference-system",
            "port_b=up_b",
            "--reference-system",
            "up_a",
            "--run-id",
            "pairs",
            "--quiet",
        ],
    );
    ok(&o);
    let r = results(d, "pairs");
    let pairs: Vec<(&str, &str)> = r
        .reference_pairs
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        pairs,
        vec![("port_a", "up_a"), ("port_b", "up_b"), ("other", "up_a")],
        "explicit pairs win; the default skips itself and the references of explicit pairs"
    );
    let get = |n: &str| r.systems.iter().find(|s| s.name == n).unwrap();
    let a = get("port_a").agreement.as_ref().unwrap();
    assert_eq!(a.reference_system, "up_a");
    assert_eq!(a.counts.substitutions, 1);
    // 1 S over 6 + 2 + 3 + 2 = 13 words of up_a's output.
    assert!((a.word_agreement - (1.0 - 1.0 / 13.0)).abs() < 1e-12);
    let b = get("port_b").agreement.as_ref().unwrap();
    assert_eq!(b.reference_system, "up_b");
    assert_eq!(b.word_agreement, 1.0, "port_b equals its own upstream");
    assert!(get("up_a").agreement.is_none());
    assert!(get("up_b").agreement.is_none());
    assert_eq!(
        get("other").agreement.as_ref().unwrap().reference_system,
        "up_a"
    );
    let html = std::fs::read_to_string(d.join("reports/pairs/report.html")).unwrap();
    assert!(html.contains("port_a → up_a, port_b → up_b, other → up_a"));

    // Bad pairings are errors naming the problem.
    for (arg, msg) in [
        ("port_a=nope", "\"nope\" is not one of the --system names"),
        ("port_a=port_a", "cannot be its own reference"),
        ("=up_a", "expected REF or SYSTEM=REF"),
    ] {
        let o = voxtrace(
            d,
            &[
                "eval",
                "--manifest",
                m.to_str().unwrap(),
                "--system",
                &sys("up_a", &up_a),
                "--system",
                &sys("port_a", &port_a),
                "--reference-system",
                arg,
                "--quiet",
            ],
        );
        assert_ne!(o.status.code(), Some(0), "{arg}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(msg), "{arg}: {err}");
    }
}
