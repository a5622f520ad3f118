//! `voxtrace eval --shard K/N` and `voxtrace eval-merge`: shards are disjoint and cover the
//! corpus whatever the ids and N (property test), and the merge of three shard runs is the
//! single run over the whole corpus (results.json, history row, report), while shards of
//! different runs, overlapping shards and a missing shard are refused by name.

use std::collections::BTreeSet;
use std::path::Path;

mod common;

use common::eval_corpus::{command, manifest, ok, results, show, voxtrace, write};
use proptest::prelude::*;
use voxtrace::eval::shard::{Shard, shard_of};
use voxtrace::report::history;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::proptest_cases(256)))]

    /// Every id is in exactly one of the N shards, whatever the ids, their order and N.
    #[test]
    fn shards_are_disjoint_and_cover(
        ids in prop::collection::btree_set("\\PC{0,12}", 0..60),
        n in 1usize..40,
        seed in any::<u64>(),
    ) {
        let ids: Vec<String> = ids.into_iter().collect();
        let mut shuffled = ids.clone();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        let mut seen = BTreeSet::new();
        for k in 1..=n {
            let shard = Shard::new(k, n).unwrap();
            let a: BTreeSet<&String> = ids.iter().filter(|i| shard.contains(i)).collect();
            let b: BTreeSet<&String> = shuffled.iter().filter(|i| shard.contains(i)).collect();
            prop_assert_eq!(&a, &b, "shard {} depends on the order", k);
            for id in a {
                prop_assert!(seen.insert(id.clone()), "{:?} in two shards", id);
            }
        }
        prop_assert_eq!(seen.len(), ids.len());
        for id in &ids {
            let k = shard_of(id, n);
            prop_assert!((1..=n).contains(&k));
        }
    }
}

/// 14 clips: `cat {audio}.txt` systems "a" and "b" (b scored for agreement against a), with
/// substitutions, deletions, insertions, a failed clip (no .txt for a) and a missing clip.
fn corpus(d: &Path) -> Vec<String> {
    let words = [
        "the cat sat on the mat",
        "hello world",
        "good morning everyone",
        "see you soon",
        "ten of clubs",
        "seven of hearts",
        "go forward now",
        "a quick brown fox",
        "jumps over the lazy dog",
        "one two three four",
        "it is raining today",
        "please call me later",
        "the end",
    ];
    let mut rows = Vec::new();
    let mut ids = Vec::new();
    for (i, r) in words.iter().enumerate() {
        let id = format!("utt{i:02}");
        let file = format!("{id}.wav");
        write(&d.join(&file), &format!("audio bytes {i}"));
        // a: drop the last word of every third clip, swap "the" for "a" elsewhere.
        let a = if i % 3 == 0 {
            r.rsplit_once(' ').map(|x| x.0).unwrap_or("").to_string()
        } else {
            r.replace("the", "a")
        };
        if i != 5 {
            write(&d.join(format!("{file}.txt")), &format!("{a}\n"));
        }
        // b: insert "really" on odd clips.
        let b = if i % 2 == 1 {
            format!("really {r}")
        } else {
            r.to_string()
        };
        write(&d.join(format!("{file}.b")), &format!("{b}\n"));
        ids.push(id.clone());
        rows.push((id, file, r.to_string()));
    }
    rows.push(("gone".into(), "gone.wav".into(), "no audio here".into()));
    ids.push("gone".into());
    let rows: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    manifest(d, &rows);
    ids
}

const SYSTEMS: [&str; 6] = [
    "--system",
    "a=cmd:cat {audio}.txt",
    "--system",
    "b=cmd:cat {audio}.b",
    "--reference-system",
    "b=a",
];

fn eval(d: &Path, run_id: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "eval",
        "--manifest",
        "manifest.tsv",
        "--run-id",
        run_id,
        "--quiet",
    ];
    args.extend(SYSTEMS);
    args.extend(extra);
    voxtrace(d, &args)
}

/// results.json as JSON without what differs between two runs of the same corpus: run id,
/// time, command line, wall-clock seconds (per clip and totals: seconds, rtf, rtfx,
/// processing_s) and the merge's list of shard runs. Streaming figures are measured times too:
/// only what the schedule fixes is kept ([`deterministic_latency`]).
fn comparable(d: &Path, run: &str) -> serde_json::Value {
    let p = d.join("reports").join(run).join("results.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    let o = v.as_object_mut().unwrap();
    for k in ["run_id", "time", "merged_from"] {
        o.remove(k);
    }
    o["provenance"].as_object_mut().unwrap().remove("command");
    for s in o["systems"].as_array_mut().unwrap() {
        let t = s["totals"].as_object_mut().unwrap();
        for k in ["processing_s", "rtf", "rtfx"] {
            t.remove(k);
        }
        deterministic_latency(t);
        for u in s["utterances"].as_array_mut().unwrap() {
            let u = u.as_object_mut().unwrap();
            for k in ["seconds", "rtf", "rtfx"] {
                u.remove(k);
            }
            deterministic_latency(u);
        }
    }
    v
}

/// Replace the streaming figures of a clip or of a system's totals (`latency`, `stream`) by
/// what two runs of the same corpus share: the steps' audio positions and texts, the emitted
/// words and their steps, the counts behind every summary, the delay and the basis; `null`
/// stays `null`.
fn deterministic_latency(o: &mut serde_json::Map<String, serde_json::Value>) {
    use serde_json::{Value, json};
    let n = |s: &Value| s.get("n").cloned().unwrap_or(Value::Null);
    if let Some(t) = o.get_mut("stream").filter(|t| !t.is_null()) {
        let steps: Vec<Value> = t["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| json!([s["audio_s"], s.get("text")]))
            .collect();
        *t = json!({"step_s": t["step_s"], "delay_ms": t["delay_ms"], "audio_s": t["audio_s"], "steps": steps});
    }
    if let Some(l) = o.get_mut("latency").filter(|l| !l.is_null()) {
        *l = match l.get("words") {
            // Per clip.
            Some(w) => json!({
                "words": w.as_array().unwrap().iter().map(|w| json!([w["word"], w["step"], w["audio_s"]])).collect::<Vec<_>>(),
                "first_token": !l["first_token_ms"].is_null(),
                "steps": n(&l["step_ms"]),
                "basis": l["word_delay_basis"],
            }),
            // Totals.
            None => json!({
                "n_clips": l["n_clips"], "delay_ms": l["delay_ms"], "basis": l["word_delay_basis"],
                "n": [n(&l["first_token_ms"]), n(&l["finalization_ms"]), n(&l["step_ms"]), n(&l["word_delay_ms"])],
            }),
        };
    }
}

#[test]
fn three_shards_merge_to_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let ids = corpus(d);
    // Every shard holds at least one clip (so the check is not vacuous).
    for k in 1..=3 {
        assert!(ids.iter().any(|i| shard_of(i, 3) == k), "shard {k} empty");
    }
    let o = eval(d, "single", &[]);
    ok(&o);
    for k in 1..=3 {
        let o = eval(d, &format!("s{k}"), &["--shard", &format!("{k}/3")]);
        ok(&o);
        let r = results(d, &format!("s{k}"));
        let s = r.shard.as_ref().expect("shard recorded");
        assert_eq!((s.index, s.count, s.n_manifest_clips), (k, 3, ids.len()));
        assert!(r.provenance.manifest_sha256.is_some());
        let want: Vec<&String> = ids.iter().filter(|i| shard_of(i, 3) == k).collect();
        for sys in &r.systems {
            let have: Vec<&String> = sys.utterances.iter().map(|u| &u.id).collect();
            assert_eq!(have, want, "shard {k} system {}", sys.name);
        }
        assert!(d.join(format!("reports/s{k}/report.html")).is_file());
    }
    // Shard runs add no history row; the single run did.
    let h = history::read(&d.join("reports/history.jsonl")).unwrap();
    assert_eq!(
        h.iter().map(|r| r.run_id.as_str()).collect::<Vec<_>>(),
        ["single"]
    );
    // Shards in any order.
    let o = voxtrace(
        d,
        &[
            "eval-merge",
            "reports/s3",
            "reports/s1",
            "reports/s2/results.json",
            "--out",
            "reports",
            "--run-id",
            "merged",
        ],
    );
    ok(&o);
    let single = results(d, "single");
    let merged = results(d, "merged");
    assert_eq!(merged.merged_from.len(), 3);
    assert_eq!(merged.shard, None);
    // The run is not trivial: errors of every kind, a failure, a missing clip, agreement.
    let a = &single.systems[0].totals;
    assert!(
        a.counts.substitutions > 0 && a.counts.deletions > 0,
        "{a:?}"
    );
    assert_eq!((a.n_failed, a.n_missing), (1, 1));
    assert!(single.systems[1].totals.counts.insertions > 0);
    assert!(single.systems[1].agreement.is_some());
    assert!(!a.top_confusions.is_empty());
    assert_eq!(comparable(d, "merged"), comparable(d, "single"));
    assert_eq!(
        merged.provenance.corpus_sha256,
        single.provenance.corpus_sha256
    );
    // History row: the single run's, but for run id, time, results path and timings.
    let h = history::read(&d.join("reports/history.jsonl")).unwrap();
    assert_eq!(h.len(), 2);
    let strip = |r: &history::HistoryRow| {
        let mut r = r.clone();
        r.run_id.clear();
        r.time.clear();
        r.results.clear();
        for f in r.systems.values_mut() {
            f.rtf = None;
            f.rtfx = None;
            // Measured: present or absent alike, values differ.
            f.latency = f.latency.as_ref().map(|_| Default::default());
        }
        r
    };
    assert_eq!(h[1].run_id, "merged");
    assert_eq!(strip(&h[1]), strip(&h[0]));
    let html = std::fs::read_to_string(d.join("reports/merged/report.html")).unwrap();
    let wer = format!("{:.2}%", a.wer * 100.0);
    assert!(html.contains(&wer), "merged report shows WER {wer}");
    assert!(html.contains("merged from"));
    // The merged run is an ordinary run: eval-check takes it against the single one.
    let o = voxtrace(
        d,
        &[
            "eval-check",
            "--history",
            "reports/history.jsonl",
            "--baseline-run",
            "single",
        ],
    );
    ok(&o);
}

/// A streaming system's figures survive the merge: each merged clip keeps its shard's measured
/// timeline and figures exactly, the merged corpus figures are the pure aggregate of the merged
/// clips (not of one shard), and everything the schedule fixes equals the single run's.
#[test]
fn merge_keeps_streaming_latency() {
    use voxtrace::eval::latency::latency_totals;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let clips = ["LJ002-0020", "goforward", "001", "002", "003"];
    let mut m = String::from("id\tfile\treference\n");
    for c in clips {
        m.push_str(&format!("{c}\t{c}.wav\tgo forward\n"));
    }
    write(&d.join("manifest.tsv"), &m);
    for k in 1..=2 {
        assert!(clips.iter().any(|c| shard_of(c, 2) == k), "shard {k} empty");
    }
    let model = format!(
        "tiny=voxtral:{}",
        common::voxtral_fixture("mistral").display()
    );
    let root = common::shared_audio().display().to_string();
    let run = |id: &str, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--manifest",
            "manifest.tsv",
            "--audio-root",
            &root,
            "--system",
            &model,
            "--system",
            "echo=cmd:test -f {audio} && echo go forward",
            "--run-id",
            id,
            "--quiet",
        ];
        args.extend(extra);
        ok(&voxtrace(d, &args));
    };
    run("single", &[]);
    run("s1", &["--shard", "1/2"]);
    run("s2", &["--shard", "2/2"]);
    ok(&voxtrace(
        d,
        &[
            "eval-merge",
            "reports/s1",
            "reports/s2",
            "--run-id",
            "merged",
        ],
    ));
    let merged = results(d, "merged");
    let shards = [results(d, "s1"), results(d, "s2")];
    let tiny = &merged.systems[0];
    for u in &tiny.utterances {
        let from = shards
            .iter()
            .flat_map(|r| &r.systems[0].utterances)
            .find(|s| s.id == u.id)
            .unwrap();
        assert!(u.stream.is_some() && u.latency.is_some(), "{}", u.id);
        assert_eq!((&u.stream, &u.latency), (&from.stream, &from.latency));
    }
    let lt = tiny.totals.latency.as_ref().expect("merged corpus latency");
    assert_eq!(lt.n_clips, clips.len());
    assert_eq!(
        Some(lt),
        latency_totals(
            tiny.utterances
                .iter()
                .map(|u| (u.stream.as_ref().unwrap(), u.latency.as_ref().unwrap()))
        )
        .as_ref()
    );
    assert!(merged.systems[1].totals.latency.is_none());
    assert!(merged.systems[1].totals.rtfx.is_some());
    // The deterministic part (steps, audio positions, texts, words, counts) is the single run's.
    assert_eq!(comparable(d, "merged"), comparable(d, "single"));
    let h = history::read(&d.join("reports/history.jsonl")).unwrap();
    assert_eq!(h.len(), 2);
    assert!(h.iter().all(|r| r.systems["tiny"].latency.is_some()));
    let html = std::fs::read_to_string(d.join("reports/merged/report.html")).unwrap();
    assert!(html.contains("Streaming latency"));
}

fn merge_err(d: &Path, runs: &[&str], id: &str) -> String {
    let mut args = vec!["eval-merge"];
    args.extend(runs);
    args.extend(["--run-id", id]);
    let o = voxtrace(d, &args);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(
        !d.join("reports").join(id).join("results.json").exists(),
        "nothing written on refusal"
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn merge_refuses_missing_overlapping_and_foreign_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    corpus(d);
    for k in 1..=3 {
        ok(&eval(d, &format!("s{k}"), &["--shard", &format!("{k}/3")]));
    }
    let e = merge_err(d, &["reports/s1", "reports/s3"], "m1");
    assert!(e.contains("missing shard 2/3"), "{e}");
    let e = merge_err(
        d,
        &["reports/s1", "reports/s2", "reports/s3", "reports/s2"],
        "m2",
    );
    assert!(
        e.contains("overlapping shards: shard 2/3 given twice"),
        "{e}"
    );
    // A shard of another N.
    ok(&eval(d, "q1", &["--shard", "1/2"]));
    let e = merge_err(d, &["reports/s1", "reports/s2", "reports/q1"], "m3");
    assert!(e.contains("different shard counts"), "{e}");
    // A shard run with other systems.
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "manifest.tsv",
            "--run-id",
            "other2",
            "--quiet",
            "--shard",
            "2/3",
            "--system",
            "a=cmd:cat {audio}.txt",
        ],
    );
    ok(&o);
    let e = merge_err(d, &["reports/s1", "reports/other2", "reports/s3"], "m4");
    assert!(e.contains("different systems"), "{e}");
    // Another voxtrace version (results.json edited as another build would have written it).
    std::fs::create_dir_all(d.join("reports/v2")).unwrap();
    let text = std::fs::read_to_string(d.join("reports/s2/results.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["provenance"]["voxtrace_version"] = "9.9.9".into();
    write(&d.join("reports/v2/results.json"), &v.to_string());
    let e = merge_err(d, &["reports/s1", "reports/v2", "reports/s3"], "m5");
    assert!(e.contains("different voxtrace versions"), "{e}");
    // A clip moved into the wrong shard's results: overlap at the clip level.
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let s1: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("reports/s1/results.json")).unwrap())
            .unwrap();
    let stolen = s1["systems"][0]["utterances"][0].clone();
    v["systems"][0]["utterances"]
        .as_array_mut()
        .unwrap()
        .push(stolen.clone());
    write(&d.join("reports/x2/results.json"), &v.to_string());
    let e = merge_err(d, &["reports/s1", "reports/x2", "reports/s3"], "m6");
    assert!(
        e.contains("overlapping shards") && e.contains(stolen["id"].as_str().unwrap()),
        "{e}"
    );
    // Not a shard run.
    ok(&eval(d, "whole", &[]));
    let e = merge_err(d, &["reports/whole"], "m7");
    assert!(e.contains("is not a shard run"), "{e}");
    // Another manifest (one reference changed after the shards ran).
    let m = std::fs::read_to_string(d.join("manifest.tsv")).unwrap();
    write(
        &d.join("manifest.tsv"),
        &m.replace("the end", "the very end"),
    );
    ok(&eval(d, "n2", &["--shard", "2/3"]));
    let e = merge_err(d, &["reports/s1", "reports/n2", "reports/s3"], "m8");
    assert!(e.contains("different manifests"), "{e}");
    let e = merge_err(d, &["reports/s1", "reports/s2", "reports/s3"], "m9");
    assert!(
        e.contains("is not the") && e.contains("changed since"),
        "{e}"
    );
}

#[test]
fn shard_auto_reads_slurm_and_kubernetes_indices() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    corpus(d);
    let run = |id: &str, env: &[(&str, &str)], extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--manifest",
            "manifest.tsv",
            "--run-id",
            id,
            "--quiet",
            "--system",
            "a=cmd:cat {audio}.txt",
            "--shard",
            "auto",
        ];
        args.extend(extra);
        let mut c = command(d, &args);
        for v in [
            "SLURM_ARRAY_TASK_ID",
            "SLURM_ARRAY_TASK_COUNT",
            "SLURM_ARRAY_TASK_MIN",
            "SLURM_ARRAY_TASK_STEP",
            "JOB_COMPLETION_INDEX",
            "VOXTRACE_SHARD_COUNT",
        ] {
            c.env_remove(v);
        }
        c.envs(env.iter().copied());
        c.output().unwrap()
    };
    let o = run(
        "slurm",
        &[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ],
        &[],
    );
    ok(&o);
    let s = results(d, "slurm").shard.unwrap();
    assert_eq!((s.index, s.count), (2, 3));
    let o = run(
        "k8s",
        &[("JOB_COMPLETION_INDEX", "2")],
        &["--shard-count", "3"],
    );
    ok(&o);
    let s = results(d, "k8s").shard.unwrap();
    assert_eq!((s.index, s.count), (3, 3));
    let o = run("none", &[], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("SLURM_ARRAY_TASK_ID") && e.contains("JOB_COMPLETION_INDEX"),
        "{e}"
    );
    let o = run("k8s-nocount", &[("JOB_COMPLETION_INDEX", "0")], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", show(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shard-count"));
}
