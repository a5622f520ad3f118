//! `voxtrace eval` / `eval-check` on hostile or unlucky runs (issue 21), each test named after
//! the class of fault it covers.

mod common;

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::eval_corpus::{
    HEADER, command, manifest, manifest_text, ok, results, show, transcripts, voxtrace, write,
};
use voxtrace::report::history;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn eval_args<'a>(manifest: &'a str, systems: &'a [String], run: &'a str) -> Vec<&'a str> {
    let mut a = vec!["eval", "--manifest", manifest, "--run-id", run, "--quiet"];
    for s in systems {
        a.extend(["--system", s.as_str()]);
    }
    a
}

/// Class 1, `eval`: every clip missing, a header-only manifest, a system failing on every clip
/// (alone and next to a good one) each exit 1, say which system and why on stderr, and record
/// it in `results.json`, the `--json` output and `report.html`.
#[test]
fn eval_with_nothing_scored_exits_nonzero_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let t = transcripts(d, "t.json", &[("a", "one two"), ("b", "three")]);
    let good = format!("good=transcripts:{}", t.display());
    // Knows no clip of the corpus: fails on every clip ("no transcript for id").
    let none = transcripts(d, "none.json", &[("zzz", "x")]);
    let bad = format!("bad=transcripts:{}", none.display());
    let rows = [("a", "a.wav", "one two"), ("b", "b.wav", "three")];
    let m = manifest(d, &rows);
    let ms = m.to_str().unwrap();

    // 1. Every clip missing (no audio file written yet).
    let systems = [good.clone()];
    let o = voxtrace(d, &eval_args(ms, &systems, "all-missing"));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    let err = stderr(&o);
    assert!(
        err.contains("nothing was scored for system \"good\"")
            && err.contains("all 2 clips have no audio"),
        "{err}"
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("NOTHING SCORED"),
        "{}",
        show(&o)
    );
    let r = results(d, "all-missing");
    assert_eq!(r.nothing_scored.len(), 1);
    assert_eq!(r.nothing_scored[0].system, "good");
    let html = std::fs::read_to_string(d.join("reports/all-missing/report.html")).unwrap();
    assert!(
        html.contains("Nothing was scored for system good"),
        "report says so"
    );

    // 2. A header-only manifest (also with --json: the object says so too).
    let empty = d.join("empty.tsv");
    write(&empty, HEADER);
    let mut a = eval_args(empty.to_str().unwrap(), &systems, "header-only");
    a.push("--json");
    let o = voxtrace(d, &a);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o).contains("the manifest lists no clip"),
        "{}",
        show(&o)
    );
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["nothing_scored"][0]["system"], "good", "{j}");
    assert_eq!(results(d, "header-only").nothing_scored.len(), 1);

    // 3. Audio present; a system that fails on every clip, alone and next to a good one.
    for (id, _, _) in &rows {
        write(&d.join(format!("{id}.wav")), "audio");
    }
    let systems = [bad.clone()];
    let o = voxtrace(d, &eval_args(ms, &systems, "all-failed"));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stderr(&o)
            .contains("nothing was scored for system \"bad\": the system failed on all 2 clips"),
        "{}",
        show(&o)
    );
    let systems = [good.clone(), bad.clone()];
    let o = voxtrace(d, &eval_args(ms, &systems, "one-bad"));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(!stderr(&o).contains("system \"good\""), "{}", show(&o));
    let r = results(d, "one-bad");
    assert_eq!(
        r.nothing_scored
            .iter()
            .map(|n| n.system.as_str())
            .collect::<Vec<_>>(),
        ["bad"]
    );
    let html = std::fs::read_to_string(d.join("reports/one-bad/report.html")).unwrap();
    assert!(html.contains("Nothing was scored for system bad"));
    assert!(!html.contains("Nothing was scored for system good"));

    // 4. The good system alone: a usable run, exit 0, nothing flagged.
    let systems = [good];
    let o = voxtrace(d, &eval_args(ms, &systems, "fine"));
    ok(&o);
    assert!(results(d, "fine").nothing_scored.is_empty());
    let html = std::fs::read_to_string(d.join("reports/fine/report.html")).unwrap();
    assert!(!html.contains("Nothing was scored"));
}

/// Class 1, `eval-check` (with a WER threshold so large that only the scored-clip gate can
/// fail): a run with fewer scored clips than its baseline, a run with none, a baseline with
/// none, and a baseline system absent from the run all fail (exit 1) and say why; the same
/// runs compared on what they share pass.
#[test]
fn eval_check_never_passes_with_fewer_or_no_scored_clips() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let rows = [
        ("a", "a.wav", "one small step"),
        ("b", "b.wav", "for a man"),
        ("c", "c.wav", "giant leap"),
    ];
    let m = manifest(d, &rows);
    let ms = m.to_str().unwrap();
    for (id, _, _) in &rows {
        write(&d.join(format!("{id}.wav")), "audio");
    }
    // c is wrong: dropping it lowers the WER.
    let t = transcripts(
        d,
        "t.json",
        &[
            ("a", "one small step"),
            ("b", "for a man"),
            ("c", "giant leaf"),
        ],
    );
    let sys = format!("sys=transcripts:{}", t.display());
    let other = format!("other=transcripts:{}", t.display());
    let check = |extra: &[&str]| {
        let mut a = vec![
            "eval-check",
            "--history",
            "reports/history.jsonl",
            "--max-wer-increase",
            "1",
        ];
        a.extend_from_slice(extra);
        voxtrace(d, &a)
    };
    let stdout = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();

    // run0: the baseline, two systems, every clip scored.
    ok(&voxtrace(
        d,
        &eval_args(ms, &[sys.clone(), other.clone()], "run0"),
    ));
    // run1: c's audio went missing: 2 scored clips instead of 3, lower WER.
    std::fs::remove_file(d.join("c.wav")).unwrap();
    ok(&voxtrace(
        d,
        &eval_args(ms, &[sys.clone(), other.clone()], "run1"),
    ));
    let o = check(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stdout(&o).contains("2 clips scored, fewer than the baseline's 3 (missing: c)"),
        "{}",
        show(&o)
    );
    let cj: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("reports/run1/check.json")).unwrap())
            .unwrap();
    assert_eq!(cj["passed"], false);
    let html = std::fs::read_to_string(d.join("reports/run1/report.html")).unwrap();
    assert!(html.contains("fewer than the baseline"), "report shows why");

    // run2: every clip missing: eval exits 1, and eval-check fails it against run1 and run0.
    for id in ["a", "b"] {
        std::fs::remove_file(d.join(format!("{id}.wav"))).unwrap();
    }
    let o = voxtrace(d, &eval_args(ms, &[sys.clone(), other.clone()], "run2"));
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    for base in ["run1", "run0"] {
        let o = check(&["--baseline-run", base]);
        assert_eq!(o.status.code(), Some(1), "{base}: {}", show(&o));
        assert!(
            stdout(&o).contains("nothing scored in this run: all 3 clips have no audio"),
            "{}",
            show(&o)
        );
    }
    // A baseline that scored nothing is no baseline.
    let o = check(&["--run", "run0", "--baseline-run", "run2"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stdout(&o).contains("nothing scored in the baseline"),
        "{}",
        show(&o)
    );

    // run3: all audio back, but only one of the baseline's two systems.
    for (id, _, _) in &rows {
        write(&d.join(format!("{id}.wav")), "audio");
    }
    ok(&voxtrace(
        d,
        &eval_args(ms, std::slice::from_ref(&sys), "run3"),
    ));
    let o = check(&["--baseline-run", "run0"]);
    assert_eq!(o.status.code(), Some(1), "{}", show(&o));
    assert!(
        stdout(&o).contains("baseline system \"other\" is not in this run"),
        "{}",
        show(&o)
    );
    // Checking only the system both runs have passes: the gate is on scored clips, not noise.
    let o = check(&["--baseline-run", "run0", "--system", "sys"]);
    assert_eq!(o.status.code(), Some(0), "{}", show(&o));
    assert!(stdout(&o).contains("PASS"), "{}", show(&o));
}

/// A loopback HTTP server answering every request `200 {"text": "uploaded"}`, for as long as
/// the test runs; returns the URL and the number of connections it accepted so far.
fn counting_server() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/audio/transcriptions", l.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let payload = r#"{"text":"uploaded"}"#;
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{payload}",
                payload.len()
            );
        }
    });
    (url, hits)
}

/// Class 3: manifest entries that leave the audio root (`..`, an absolute path, a symlink to a
/// file or a folder outside it; with the default root and with `--audio-root`) are refused
/// with an error naming the manifest line, before any system runs: the `http:` system never
/// sees a connection and no run folder is made. `--allow-outside-root` opts in.
#[test]
fn manifest_paths_outside_the_audio_root_are_refused_before_any_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let root = d.join("corpus");
    write(&d.join("secret.wav"), "SECRET bytes outside the corpus");
    write(&root.join("ok.wav"), "fine");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    std::os::unix::fs::symlink(d.join("secret.wav"), root.join("link.wav")).unwrap();
    std::os::unix::fs::symlink(d, root.join("up")).unwrap();
    let (url, hits) = counting_server();
    let http = format!("up=http:{url}");
    let abs = d.join("secret.wav");
    let cases = [
        ("../secret.wav", "climbs out of it"),
        ("sub/../../secret.wav", "climbs out of it"),
        (abs.to_str().unwrap(), "is an absolute path"),
        ("link.wav", "resolves (through a symlink) to"),
        ("up/secret.wav", "resolves (through a symlink) to"),
    ];
    for (k, (file, why)) in cases.iter().enumerate() {
        let text = manifest_text(&[("ok", "ok.wav", "fine"), ("evil", file, "secret")]);
        // Manifest in the corpus folder (the default root), and elsewhere with --audio-root.
        write(&root.join("manifest.tsv"), &text);
        write(&d.join("elsewhere.tsv"), &text);
        for (m, extra, label) in [
            ("corpus/manifest.tsv", vec![], "corpus/manifest.tsv:3: file"),
            (
                "elsewhere.tsv",
                vec!["--audio-root", "corpus"],
                "elsewhere.tsv:3: file",
            ),
        ] {
            let run = format!("r{k}{}", extra.len());
            let mut a = vec![
                "eval",
                "--manifest",
                m,
                "--system",
                http.as_str(),
                "--run-id",
                run.as_str(),
            ];
            a.extend(extra);
            a.push("--quiet");
            let o = voxtrace(d, &a);
            assert_eq!(o.status.code(), Some(2), "{file}: {}", show(&o));
            let err = stderr(&o);
            assert!(
                err.contains(label) && err.contains(why) && err.contains("--allow-outside-root"),
                "{file}: {err}"
            );
            assert_eq!(hits.load(Ordering::SeqCst), 0, "{file}: nothing uploaded");
            assert!(
                !d.join("reports").join(&run).exists(),
                "{file}: no run folder"
            );
        }
    }
    // Paths that stay inside are fine, and so is everything with --allow-outside-root.
    write(
        &root.join("manifest.tsv"),
        &manifest_text(&[
            ("ok", "sub/../ok.wav", "fine"),
            ("evil", "../secret.wav", "secret"),
        ]),
    );
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "corpus/manifest.tsv",
            "--system",
            &http,
            "--run-id",
            "allowed",
            "--allow-outside-root",
            "--quiet",
        ],
    );
    ok(&o);
    assert_eq!(
        hits.load(Ordering::SeqCst),
        2,
        "both clips uploaded once allowed"
    );
}

/// Class 5: ten `voxtrace eval` processes started at once into one reports folder, with default
/// run ids, all succeed and leave ten history rows with ten distinct run ids, each with its
/// run folder.
#[test]
fn ten_concurrent_evals_leave_ten_history_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(&d.join("a.wav"), "audio");
    write(&d.join("b.wav"), "audio");
    manifest(d, &[("a", "a.wav", "one two"), ("b", "b.wav", "three")]);
    transcripts(d, "t.json", &[("a", "one two"), ("b", "three four")]);
    let children: Vec<_> = (0..10)
        .map(|_| {
            command(
                d,
                &[
                    "eval",
                    "--manifest",
                    "manifest.tsv",
                    "--system",
                    "t=transcripts:t.json",
                    "--quiet",
                ],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
        })
        .collect();
    for c in children {
        ok(&c.wait_with_output().unwrap());
    }
    let rows = history::read(&d.join("reports/history.jsonl")).unwrap();
    let ids: HashSet<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!(rows.len(), 10, "{ids:?}");
    assert_eq!(ids.len(), 10, "{ids:?}");
    for id in &ids {
        assert!(!id.starts_with('.') && !id.contains('/'), "{id}");
        let r = results(d, id);
        assert_eq!(&r.run_id, id);
        assert_eq!(r.systems[0].totals.n_ok, 2);
    }
}

/// Class 5, in one process: history rows appended from many threads at once are all kept.
#[test]
fn concurrent_history_appends_lose_no_row() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("history.jsonl");
    let row = |id: String| history::HistoryRow {
        results: format!("{id}/results.json"),
        run_id: id,
        time: "2026-11-22T05:00:00Z".into(),
        commit: None,
        corpus_sha256: "00".into(),
        manifest: "m.tsv".into(),
        normalizer: "n".into(),
        systems: Default::default(),
    };
    std::thread::scope(|s| {
        for t in 0..8 {
            let p = &p;
            s.spawn(move || {
                for k in 0..10 {
                    history::append(p, &row(format!("t{t}-{k}"))).unwrap();
                }
            });
        }
    });
    let rows = history::read(&p).unwrap();
    let ids: HashSet<&str> = rows.iter().map(|r| r.run_id.as_str()).collect();
    assert_eq!((rows.len(), ids.len()), (80, 80));
}

/// Class 8: a crash cut `partial.jsonl` in the middle of a line (or just before a line's
/// newline). `--resume` drops (or completes) the torn line with a warning and finishes; a
/// second and a third `--resume` work too; the results equal an uninterrupted run's.
#[test]
fn resume_after_a_torn_partial_line_works_again_and_again() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let rows = [
        ("u1", "u1.wav", "hyp of u1"),
        ("u2", "u2.wav", "hyp of u2"),
        ("u3", "u3.wav", "hyp of three"),
    ];
    for (id, _, _) in &rows {
        write(&d.join(format!("{id}.wav")), "audio");
    }
    let m = manifest(d, &rows);
    let t = transcripts(
        d,
        "t.json",
        &[
            ("u1", "hyp of u1"),
            ("u2", "hyp of u2"),
            ("u3", "hyp of one"),
        ],
    );
    let systems = [format!("s=transcripts:{}", t.display())];
    let ms = m.to_str().unwrap();
    for (run, cut_in_line) in [("torn", true), ("no-newline", false)] {
        ok(&voxtrace(d, &eval_args(ms, &systems, run)));
        let first = results(d, run);
        let dir = d.join("reports").join(run);
        let partial = std::fs::read_to_string(dir.join("partial.jsonl")).unwrap();
        let lines: Vec<&str> = partial.lines().collect();
        assert_eq!(lines.len(), 3);
        let cut = if cut_in_line {
            &lines[1][..lines[1].len() / 2]
        } else {
            lines[1]
        };
        std::fs::write(dir.join("partial.jsonl"), format!("{}\n{cut}", lines[0])).unwrap();
        std::fs::remove_file(dir.join("results.json")).unwrap();
        let mut a = eval_args(ms, &systems, run);
        a.push("--resume");
        for attempt in 0..3 {
            let o = voxtrace(d, &a);
            assert!(o.status.success(), "{run} resume {attempt}: {}", show(&o));
            if attempt == 0 {
                let err = stderr(&o);
                let want = if cut_in_line {
                    "partial.jsonl:2: dropped a torn last line"
                } else {
                    "partial.jsonl:2: the last record had no newline"
                };
                assert!(err.contains("warning: ") && err.contains(want), "{err}");
            }
            let text = std::fs::read_to_string(dir.join("partial.jsonl")).unwrap();
            assert!(text.ends_with('\n'), "{text}");
            for l in text.lines() {
                serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{l}: {e}"));
            }
            assert_eq!(text.lines().count(), 3, "one record per clip: {text}");
            let again = results(d, run);
            assert_eq!(again.systems, first.systems, "{run} resume {attempt}");
            assert_eq!(again.systems[0].totals.n_ok, 3);
        }
    }
}

/// Class 11: a manifest saved with a UTF-8 byte-order mark (and CRLF line ends, as spreadsheet
/// programs write it) is read like any other.
#[test]
fn manifest_with_a_byte_order_mark_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(&d.join("a.wav"), "audio");
    write(&d.join("b.wav"), "audio");
    let t = transcripts(d, "t.json", &[("a", "good day"), ("b", "fine words")]);
    let systems = [format!("s=transcripts:{}", t.display())];
    for (k, eol) in ["\n", "\r\n"].iter().enumerate() {
        let text = manifest_text(&[("a", "a.wav", "good day"), ("b", "b.wav", "fine")]);
        let p = d.join(format!("bom{k}.tsv"));
        write(&p, &format!("\u{feff}{}", text.replace('\n', eol)));
        let run = format!("bom{k}");
        let o = voxtrace(d, &eval_args(p.to_str().unwrap(), &systems, &run));
        ok(&o);
        let r = results(d, &run);
        assert_eq!(r.n_clips, 2);
        let s = &r.systems[0];
        assert_eq!(s.utterances[0].id, "a");
        assert_eq!(s.totals.n_ok, 2);
        // "fine" vs "fine words": one insertion over 3 reference words.
        assert!((s.totals.wer - 1.0 / 3.0).abs() < 1e-12, "{}", s.totals.wer);
    }
}

/// Per-clip failures and missing audio reach stderr when it is not a terminal (a log file, CI)
/// and with `--quiet`, where the progress bars are hidden: a run's failures are never silent.
#[test]
fn per_clip_failures_are_printed_without_a_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let none = transcripts(d, "none.json", &[("zzz", "x")]);
    let bad = format!("bad=transcripts:{}", none.display());
    let rows = [("a", "a.wav", "one two"), ("b", "b.wav", "three")];
    let m = manifest(d, &rows);
    write(&d.join("a.wav"), "audio");
    let systems = [bad];
    // eval_args passes --quiet; stderr is a pipe here.
    let o = voxtrace(d, &eval_args(m.to_str().unwrap(), &systems, "piped"));
    let err = stderr(&o);
    assert!(err.contains("missing audio: b ("), "{err}");
    assert!(err.contains("bad failed on a:"), "{err}");
}
