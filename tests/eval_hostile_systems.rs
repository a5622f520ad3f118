//! `voxtrace eval` with hostile external systems (issue 21, classes 2, 6 and 7): audio file names
//! that would run shell code if they became shell text, commands that never finish or print
//! without end, HTTP servers that fail, stall, stream forever or answer something that is not a
//! transcript. Every run must finish, record such clips as failed utterances, and score the
//! others.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::eval_corpus::{command, manifest, ok, results, write};
use voxtrace::eval::results::{RunResults, SystemResult, UttResult, UttStatus};

/// Safety net: an eval that runs longer than this is hung (the faults under test hang forever
/// or for many minutes; a correct run takes seconds).
const HANG: Duration = Duration::from_secs(90);

/// Run `voxtrace` in `dir`; panics (killing it) if it runs longer than [`HANG`].
fn voxtrace(dir: &Path, args: &[&str]) -> Output {
    let mut child = command(dir, args)
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

fn utt<'a>(s: &'a SystemResult, id: &str) -> &'a UttResult {
    s.utterances.iter().find(|u| u.id == id).unwrap()
}

/// At most 300 bytes of `s`, for assertion messages (a hypothesis may be megabytes).
fn short(s: Option<&str>) -> String {
    let s = s.unwrap_or("<none>");
    let mut end = s.len().min(300);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?} ({} bytes)", &s[..end], s.len())
}

/// The clip `id` was transcribed as exactly its reference.
fn assert_scored_right(s: &SystemResult, id: &str) {
    let u = utt(s, id);
    assert_eq!(
        u.status,
        UttStatus::Ok,
        "{id}: {}",
        short(u.error.as_deref())
    );
    assert!(
        u.hypothesis.as_deref() == Some(u.reference.as_str()),
        "{id}: {}",
        short(u.hypothesis.as_deref())
    );
    assert_eq!(u.wer, Some(0.0), "{id}");
}

/// The clip `id` is a failed utterance whose error contains `needle`; returns the error.
fn assert_failed<'a>(s: &'a SystemResult, id: &str, needle: &str) -> &'a str {
    let u = utt(s, id);
    assert_eq!(
        u.status,
        UttStatus::Failed,
        "{id}: {}",
        short(u.hypothesis.as_deref())
    );
    let e = u.error.as_deref().unwrap();
    assert!(e.contains(needle), "{id}: {needle:?} not in {e:?}");
    e
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

// ---------------------------------------------------------------------------------------------
// Class 6: time and size limits for cmd: systems.

/// A corpus of clips whose `cmd:sh {audio}.sh` behaviour is the script `(id, script)`; each
/// reference is `hello <id>`.
fn script_corpus(d: &Path, clips: &[(&str, &str)]) {
    let mut rows = Vec::new();
    for (id, script) in clips {
        write(&d.join(format!("{id}.wav")), "audio bytes");
        write(&d.join(format!("{id}.wav.sh")), script);
        rows.push((id.to_string(), format!("{id}.wav"), format!("hello {id}")));
    }
    let rows_ref: Vec<(&str, &str, &str)> = rows
        .iter()
        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
        .collect();
    manifest(d, &rows_ref);
}

/// Whether process `pid` is gone (or a zombie nobody reaped), polling for up to 30 s while
/// the kill is delivered.
fn process_gone(pid: u32) -> bool {
    let stat = format!("/proc/{pid}/stat");
    for _ in 0..600 {
        match std::fs::read_to_string(&stat) {
            Err(_) => return true,
            Ok(s) => {
                // State is the field after the parenthesised command name.
                let state = s
                    .rsplit_once(')')
                    .map(|(_, r)| r.trim_start().chars().next());
                if state == Some(Some('Z')) {
                    return true;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn cmd_that_never_finishes_is_killed_with_its_children_at_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    script_corpus(
        d,
        &[
            // A background child holding the output pipe, its pid noted, and a shell waiting.
            ("stuck", "sleep 1000 &\necho $! > \"$0.pid\"\nwait\n"),
            ("fine", "echo hello fine\n"),
        ],
    );
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "manifest.tsv",
            "--system",
            "s=cmd:sh {audio}.sh",
            "--system-timeout",
            "1",
            "--run-id",
            "t",
            "--quiet",
        ],
    );
    ok(&o);
    let r = results(d, "t");
    let s = &r.systems[0];
    assert_failed(s, "stuck", "timed out after 1 s");
    assert_scored_right(s, "fine");
    assert_eq!((s.totals.n_failed, s.totals.n_ok), (1, 1));
    let pid: u32 = std::fs::read_to_string(d.join("stuck.wav.sh.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        process_gone(pid),
        "the timed-out command's child {pid} still runs"
    );
}

#[test]
fn cmd_output_over_the_cap_is_a_failed_utterance() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    script_corpus(
        d,
        &[
            // 10 MB on stdout, exit 0.
            ("flood", "head -c 10000000 /dev/zero | tr '\\0' a\n"),
            // 10 MB on stderr, exit 1.
            (
                "flooderr",
                "head -c 10000000 /dev/zero | tr '\\0' e >&2\nexit 1\n",
            ),
            ("fine", "echo hello fine\n"),
        ],
    );
    let o = voxtrace(
        d,
        &[
            "eval",
            "--manifest",
            "manifest.tsv",
            "--system",
            "s=cmd:sh {audio}.sh",
            "--run-id",
            "big",
            "--quiet",
        ],
    );
    ok(&o);
    let r = results(d, "big");
    let s = &r.systems[0];
    assert_failed(s, "flood", "more than 1048576 bytes on stdout");
    let e = assert_failed(s, "flooderr", "stderr");
    assert!(e.len() < 10_000, "error message of {} bytes", e.len());
    assert_scored_right(s, "fine");
    assert!(
        utt(s, "flood")
            .hypothesis
            .as_deref()
            .unwrap_or("")
            .is_empty()
    );
}

// ---------------------------------------------------------------------------------------------
// Classes 6 and 7: http: systems against a loopback server.

/// What the test server does with one request.
enum Reply {
    /// Answer `status` with `content_type` and `body` (correct Content-Length).
    Answer(&'static str, &'static str, Vec<u8>),
    /// Declare a Content-Length of `body.len() + 100`, send `body`, close.
    Short(Vec<u8>),
    /// Never answer (hold the connection).
    Silent,
    /// Answer 200 without a length and stream bytes until the client goes away.
    Endless,
}

fn json200(v: serde_json::Value) -> Reply {
    Reply::Answer("200 OK", "application/json", v.to_string().into_bytes())
}

/// Read one HTTP request from `s`; returns the uploaded file's content (the multipart part
/// named `file`).
fn read_upload(s: &TcpStream) -> String {
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return String::new();
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap();
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    let text = String::from_utf8_lossy(&body).into_owned();
    let part = text.split("name=\"file\"").nth(1).unwrap_or("");
    part.split("\r\n\r\n")
        .nth(1)
        .unwrap_or("")
        .split("\r\n--")
        .next()
        .unwrap_or("")
        .to_string()
}

/// A loopback server answering each request with `reply(upload, n)`, where `upload` is the
/// uploaded file's content and `n` how many earlier requests uploaded the same content.
/// Returns the URL and the request count per upload. The server thread is left running.
fn server(reply: fn(&str, usize) -> Reply) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/audio/transcriptions", l.local_addr().unwrap());
    let counts = Arc::new(Mutex::new(HashMap::<String, usize>::new()));
    let c2 = counts.clone();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let key = read_upload(&s);
            let n = {
                let mut c = c2.lock().unwrap();
                let e = c.entry(key.clone()).or_insert(0);
                *e += 1;
                *e - 1
            };
            let head = |status: &str, ct: &str, len: Option<usize>| {
                let len = len.map_or(String::new(), |n| format!("Content-Length: {n}\r\n"));
                format!("HTTP/1.1 {status}\r\nContent-Type: {ct}\r\n{len}Connection: close\r\n\r\n")
            };
            match reply(&key, n) {
                Reply::Answer(status, ct, body) => {
                    let _ = s.write_all(head(status, ct, Some(body.len())).as_bytes());
                    let _ = s.write_all(&body);
                }
                Reply::Short(body) => {
                    let h = head("200 OK", "application/json", Some(body.len() + 100));
                    let _ = s.write_all(h.as_bytes());
                    let _ = s.write_all(&body);
                }
                Reply::Silent => {
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(300));
                        drop(s);
                    });
                    continue;
                }
                Reply::Endless => {
                    let _ = s.write_all(head("200 OK", "application/json", None).as_bytes());
                    let chunk = vec![b'a'; 64 * 1024];
                    // Until the client hangs up (bounded at 1 GiB as a safety net).
                    for _ in 0..16 * 1024 {
                        if s.write_all(&chunk).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = s.flush();
        }
    });
    (url, counts)
}

/// Write one clip per `(id, upload)` (the clip's audio bytes are `upload`, which the server
/// keys its answer on), references `hello there`, and run the `http:` system at `url`.
fn http_run(d: &Path, url: &str, clips: &[(&str, &str)], extra: &[&str]) -> RunResults {
    let mut rows = Vec::new();
    for (id, upload) in clips {
        write(&d.join(format!("{id}.wav")), upload);
        rows.push((
            *id,
            Box::leak(format!("{id}.wav").into_boxed_str()) as &str,
            "hello there",
        ));
    }
    manifest(d, &rows);
    let sys = format!("web=http:{url}");
    let mut args = vec![
        "eval",
        "--manifest",
        "manifest.tsv",
        "--system",
        &sys,
        "--run-id",
        "h",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    ok(&voxtrace(d, &args));
    results(d, "h")
}

#[test]
fn http_5xx_is_retried_with_backoff_then_scored() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (url, counts) = server(|key, n| match (key, n) {
        ("flaky", 0 | 1) => Reply::Answer(
            "503 Service Unavailable",
            "application/json",
            b"{\"error\":\"busy\"}".to_vec(),
        ),
        ("broken", _) => Reply::Answer(
            "500 Internal Server Error",
            "application/json",
            b"{\"error\":\"model crashed\"}".to_vec(),
        ),
        _ => json200(serde_json::json!({"text": "hello there"})),
    });
    let r = http_run(d, &url, &[("flaky", "flaky"), ("broken", "broken")], &[]);
    let s = &r.systems[0];
    assert_scored_right(s, "flaky");
    assert_failed(s, "broken", "model crashed");
    let c = counts.lock().unwrap();
    assert_eq!(c["flaky"], 3, "two 503s, then the answer");
    assert_eq!(c["broken"], 4, "the first try and three retries");
}

#[test]
fn http_server_that_never_answers_is_a_failed_utterance_after_the_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (url, counts) = server(|key, _| match key {
        "mute" => Reply::Silent,
        _ => json200(serde_json::json!({"text": "hello there"})),
    });
    let r = http_run(
        d,
        &url,
        &[("mute", "mute"), ("fine", "fine")],
        &["--system-timeout", "2"],
    );
    let s = &r.systems[0];
    assert_failed(s, "mute", "no complete answer within 2 s");
    assert_scored_right(s, "fine");
    assert_eq!(
        counts.lock().unwrap()["mute"],
        1,
        "a timeout is not retried"
    );
}

#[test]
fn http_answer_over_the_cap_is_a_failed_utterance() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (url, _) = server(|key, _| match key {
        "endless" => Reply::Endless,
        // Valid JSON, but a 5 MB "transcript".
        "huge" => json200(serde_json::json!({"text": "hello there ".repeat(420_000)})),
        _ => json200(serde_json::json!({"text": "hello there"})),
    });
    let r = http_run(
        d,
        &url,
        &[("endless", "endless"), ("huge", "huge"), ("fine", "fine")],
        &[],
    );
    let s = &r.systems[0];
    assert_failed(s, "endless", "larger than 1048576 bytes");
    assert_failed(s, "huge", "larger than 1048576 bytes");
    assert_scored_right(s, "fine");
}

#[test]
fn http_answers_that_are_not_json_with_a_string_text_are_failed_utterances() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (url, _) = server(|key, _| match key {
        "truncated" => Reply::Answer(
            "200 OK",
            "application/json",
            b"{\"text\": \"hello there".to_vec(),
        ),
        "cut" => Reply::Short(b"{\"text\": \"hello there\"".to_vec()),
        "number" => json200(serde_json::json!({"text": 42})),
        "missing" => json200(serde_json::json!({"transcript": "hello there"})),
        "array" => json200(serde_json::json!(["hello there"])),
        "trailing" => Reply::Answer(
            "200 OK",
            "application/json",
            b"{\"text\": \"hello there\"} and more".to_vec(),
        ),
        "html" => Reply::Answer(
            "200 OK",
            "text/html",
            b"<html><body><h1>hello there</h1>proxy error</body></html>".to_vec(),
        ),
        "plain" => Reply::Answer("200 OK", "text/plain", b"hello there".to_vec()),
        _ => json200(serde_json::json!({"text": "hello there", "language": "en"})),
    });
    let bad = [
        ("truncated", "not JSON"),
        ("cut", "POST"),
        ("number", "no string \"text\""),
        ("missing", "no string \"text\""),
        ("array", "not an object"),
        ("trailing", "not JSON"),
        ("html", "not JSON"),
        ("plain", "not JSON"),
    ];
    let mut clips: Vec<(&str, &str)> = bad.iter().map(|(k, _)| (*k, *k)).collect();
    clips.push(("good", "good"));
    let r = http_run(d, &url, &clips, &["--system-timeout", "20"]);
    let s = &r.systems[0];
    for (id, needle) in bad {
        assert_failed(s, id, needle);
        assert_eq!(utt(s, id).hypothesis.as_deref(), Some(""), "{id}");
    }
    assert_scored_right(s, "good");
    assert_eq!(s.totals.n_failed, bad.len());
}
