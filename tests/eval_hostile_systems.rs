//! `voxtrace eval` with hostile external systems (issue 21, class 2): audio file names that
//! would run shell code if they became shell text.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use voxtrace::eval::results::{RunResults, SystemResult, UttResult, UttStatus};

/// Safety net: an eval that runs longer than this is hung (the faults under test hang forever
/// or for many minutes; a correct run takes seconds).
const HANG: Duration = Duration::from_secs(90);

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

/// Write `dir/manifest.tsv` with `(id, file, reference)` rows, 2 s each.
fn manifest(dir: &Path, rows: &[(&str, &str, &str)]) -> PathBuf {
    let mut s = String::from("id\tfile\tduration_s\treference\tsource\tlicense\n");
    for (id, file, r) in rows {
        s.push_str(&format!("{id}\t{file}\t2.0\t{r}\ttest\tCC0\n"));
    }
    let p = dir.join("manifest.tsv");
    write(&p, &s);
    p
}

/// Run `voxtrace` in `dir`; panics (killing it) if it runs longer than [`HANG`].
fn voxtrace(dir: &Path, args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_voxtrace"))
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("voxtrace {args:?} hung: killed after {HANG:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn ok(o: &Output) {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn results(dir: &Path, run: &str) -> RunResults {
    let p = dir.join("reports").join(run).join("results.json");
    serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap()
}

fn utt<'a>(s: &'a SystemResult, id: &str) -> &'a UttResult {
    s.utterances.iter().find(|u| u.id == id).unwrap()
}

/// The clip `id` was transcribed as exactly its reference.
fn assert_scored_right(s: &SystemResult, id: &str) {
    let u = utt(s, id);
    assert_eq!(u.status, UttStatus::Ok, "{id}: {:?}", u.error);
    assert_eq!(u.hypothesis.as_deref(), Some(u.reference.as_str()), "{id}");
    assert_eq!(u.wer, Some(0.0), "{id}");
}

// ---------------------------------------------------------------------------------------------
// Class 2: no shell injection through file names.

/// Audio file names that run `touch pwned-*` (in the eval's working folder) if they ever become
/// shell text, whichever way `{audio}` is quoted; plus spaces, a glob, `$VAR`s, a backslash and
/// a leading dash.
const HOSTILE_NAMES: &[&str] = &[
    "sq'; touch pwned-sq; '.wav",
    "dq\"; touch pwned-dq; \".wav",
    "sub $(touch pwned-sub).wav",
    "tick `touch pwned-tick`.wav",
    "mix '$(touch pwned-mix1)' \"`touch pwned-mix2`\".wav",
    "spaces  and * glob.wav",
    "vars $HOME ${IFS} $1.wav",
    "back\\slash.wav",
    "-n leading dash.wav",
];

/// The `cmd:` spellings a user may write: `{audio}` unquoted, in single quotes, in double
/// quotes, and inside a command substitution within double quotes.
const QUOTINGS: &[&str] = &[
    "cmd:cat {audio}.txt",
    "cmd:cat '{audio}.txt'",
    "cmd:cat \"{audio}.txt\"",
    "cmd:cat \"$(printf %s {audio}).txt\"",
];

/// No `pwned-*` file anywhere under `dir`.
fn assert_no_marker(dir: &Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with("pwned"),
            "a file name ran shell code: {name}"
        );
        if e.file_type().unwrap().is_dir() {
            assert_no_marker(&e.path());
        }
    }
}

/// Run `spec` on the hostile names (manifest given relatively, so a leading dash reaches the
/// command as is) and on one clip under an audio root whose name holds a newline and a payload;
/// every clip must be read right and no payload run.
fn assert_cmd_safe(spec: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut rows = Vec::new();
    for (i, name) in HOSTILE_NAMES.iter().enumerate() {
        write(&d.join(name), "audio bytes");
        let text = format!("transcript number {i}");
        write(&d.join(format!("{name}.txt")), &format!("{text}\n"));
        rows.push((format!("h{i}"), name.to_string(), text));
    }
    let rows_ref: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    manifest(d, &rows_ref);
    let sys = format!("s={spec}");
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "manifest.tsv",
            "--system",
            &sys,
            "--run-id",
            "names",
            "--quiet",
        ],
    );
    ok(&o);
    assert_no_marker(d);
    let r = results(d, "names");
    for (id, _, _) in &rows {
        assert_scored_right(&r.systems[0], id);
    }

    // A newline and a payload in the audio root's name.
    let root = d.join("root\n$(touch pwned-root)'`touch pwned-root2`'");
    write(&root.join("a.wav"), "audio bytes");
    write(&root.join("a.wav.txt"), "under a strange root\n");
    let sub = d.join("nl");
    manifest(&sub, &[("a", "a.wav", "under a strange root")]);
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            sub.join("manifest.tsv").to_str().unwrap(),
            "--audio-root",
            root.to_str().unwrap(),
            "--system",
            &sys,
            "--run-id",
            "root",
            "--quiet",
        ],
    );
    ok(&o);
    assert_no_marker(d);
    assert_scored_right(&results(d, "root").systems[0], "a");
}

#[test]
fn cmd_unquoted_placeholder_is_safe_for_hostile_file_names() {
    assert_cmd_safe(QUOTINGS[0]);
}

#[test]
fn cmd_single_quoted_placeholder_is_safe_for_hostile_file_names() {
    assert_cmd_safe(QUOTINGS[1]);
}

#[test]
fn cmd_double_quoted_placeholder_is_safe_for_hostile_file_names() {
    assert_cmd_safe(QUOTINGS[2]);
}

#[test]
fn cmd_placeholder_in_command_substitution_is_safe_for_hostile_file_names() {
    assert_cmd_safe(QUOTINGS[3]);
}

/// The rewriting itself, context by context (the module documentation's table).
#[test]
fn cmd_script_rewrites_each_quoting_context() {
    use voxtrace::eval::systems::cmd_script;
    for (template, script, n) in [
        ("cat {audio}.txt", "cat \"${1}\".txt", 1),
        ("cat '{audio}.txt'", "cat ''\"${1}\"'.txt'", 1),
        ("cat \"{audio}.txt\"", "cat \"${1}.txt\"", 1),
        (
            "cat \"$(basename {audio})\"",
            "cat \"$(basename \"${1}\")\"",
            1,
        ),
        ("echo `cat {audio}`", "echo `cat \"${1}\"`", 1),
        (
            "echo \"it's\" '{audio}' {audio}",
            "echo \"it's\" ''\"${1}\"'' \"${1}\"",
            2,
        ),
        ("echo \\'{audio}", "echo \\'\"${1}\"", 1),
        ("echo \\{audio}", "echo \\{audio}", 0),
        ("echo $((1+2)) {audio}", "echo $((1+2)) \"${1}\"", 1),
        (
            "case {audio} in *x) echo '{audio}';; esac",
            "case \"${1}\" in *x) echo ''\"${1}\"'';; esac",
            2,
        ),
    ] {
        assert_eq!(cmd_script(template), (script.to_string(), n), "{template}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    /// Whatever the path holds, `sh -c SCRIPT sh PATH` hands it to the program as one
    /// unchanged word in every quoting context.
    #[test]
    fn cmd_script_passes_any_path_as_one_word(path in "[ -~\n\t\u{e9}]{0,24}") {
        use voxtrace::eval::systems::cmd_script;
        for (template, expect) in [
            ("printf '%s|' {audio}", format!("{path}|")),
            ("printf '%s|' '{audio}'", format!("{path}|")),
            ("printf '%s|' \"{audio}\"", format!("{path}|")),
            ("printf '%s|' pre-{audio}-post", format!("pre-{path}-post|")),
            ("printf '%s|' 'pre-{audio}-post'", format!("pre-{path}-post|")),
            ("printf '%s|' \"pre-{audio}-post\"", format!("pre-{path}-post|")),
            ("printf '%s|' \"$(printf %s {audio}.)\"", format!("{path}.|")),
        ] {
            let (script, _) = cmd_script(template);
            let o = Command::new("sh").arg("-c").arg(&script).arg("sh").arg(&path).output().unwrap();
            proptest::prop_assert!(o.status.success(), "{template}: {}", String::from_utf8_lossy(&o.stderr));
            proptest::prop_assert_eq!(String::from_utf8_lossy(&o.stdout), expect, "{}", template);
        }
    }
}
