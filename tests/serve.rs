//! `voxtrace serve` end to end: the real binary on a free port (port 0, the bound address read
//! from its stdout), called with a real HTTP client (ureq) and a real websocket client
//! (tungstenite), then stopped. Transcripts must equal the port's on the same clip (Whisper
//! tiny.en from `VOXTRACE_WHISPER_DIR`: the short-form decode up to 30 s, `voxtrace transcribe`'s
//! long-form beyond; the tiny Voxtral fixture, as a folder and as a GGUF file: `voxtrace
//! transcribe`), bad requests must get OpenAI-shaped 4xx errors, the admission bound a 429, and
//! SIGTERM a graceful exit.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};
use voxtrace::eval::systems::multipart_body;

/// Safety net for anything that waits (never an assertion on time).
const PATIENCE: Duration = Duration::from_secs(300);

/// A running `voxtrace serve`; killed when dropped if still running.
struct Server {
    child: Child,
    addr: String,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_voxtrace"))
            .arg("serve")
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start voxtrace serve");
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = stderr.clone();
        let mut se = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = se.read(&mut buf) {
                if n == 0 {
                    break;
                }
                err.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let so = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(so).lines();
            if let Some(Ok(l)) = lines.next() {
                let _ = tx.send(l);
            }
            for _ in lines {}
        });
        let line = match rx.recv_timeout(PATIENCE) {
            Ok(l) => l,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "voxtrace serve printed no address; stderr: {}",
                    stderr.lock().unwrap()
                );
            }
        };
        let addr = line
            .strip_prefix("listening on http://")
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Server {
            child,
            addr,
            stderr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let mut r = agent().get(&self.url(path)).call().unwrap();
        let status = r.status().as_u16();
        let body = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
        )
    }

    fn admitted(&self) -> u64 {
        self.get("/health").1["admitted"].as_u64().unwrap()
    }

    /// Poll `/health` until `admitted` is `n` (safety net: [`PATIENCE`]).
    fn wait_admitted(&self, n: u64) {
        let t0 = Instant::now();
        while self.admitted() != n {
            assert!(t0.elapsed() < PATIENCE, "admitted never reached {n}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// POST a multipart form with `fields` and (when given) a file part.
    fn post(&self, fields: &[(&str, &str)], file: Option<(&str, impl AsRef<[u8]>)>) -> Answer {
        let (ct, body) = match file {
            Some((name, bytes)) => multipart_body(fields, name, bytes.as_ref()),
            None => {
                let (ct, b) = multipart_body(fields, "x", b"");
                // Drop the file part: keep everything before its boundary line.
                let boundary = ct.split("boundary=").nth(1).unwrap().to_string();
                let marker =
                    format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"");
                let cut = find(&b, marker.as_bytes()).unwrap();
                let mut b = b[..cut].to_vec();
                b.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
                (ct, b)
            }
        };
        self.post_raw(&ct, &body)
    }

    fn post_raw(&self, content_type: &str, body: &[u8]) -> Answer {
        let mut r = agent()
            .post(&self.url("/v1/audio/transcriptions"))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap();
        Answer {
            status: r.status().as_u16(),
            content_type: r
                .headers()
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default(),
            retry_after: r.headers().get("retry-after").is_some(),
            body: r.body_mut().read_to_string().unwrap(),
        }
    }

    /// Wait for the process to exit (safety net: [`PATIENCE`]); its exit status.
    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let t0 = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(t0.elapsed() < PATIENCE, "server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn sigterm(&self) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid (not yet reaped: the Child is held).
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

struct Answer {
    status: u16,
    content_type: String,
    retry_after: bool,
    body: String,
}

impl Answer {
    /// An HTTP/1.1 response read off a raw socket (a body of known length, not chunked).
    fn from_raw(resp: &str) -> Answer {
        let (head, body) = resp
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no end of headers: {resp:?}"));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.strip_prefix("HTTP/1.1 "))
            .and_then(|l| l.get(..3))
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {resp:?}"));
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
        };
        assert!(header("transfer-encoding").is_none(), "{resp:?}");
        Answer {
            status,
            content_type: header("content-type").unwrap_or_default(),
            retry_after: header("retry-after").is_some(),
            body: body.to_string(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{e}: status {} body {:?}", self.status, self.body))
    }

    /// Assert an OpenAI-shaped error with `status`, `param` and a message containing `needle`.
    fn assert_error(&self, status: u16, param: Option<&str>, needle: &str) {
        assert_eq!(self.status, status, "body: {}", self.body);
        let v = self.json();
        let e = &v["error"];
        assert!(e["message"].as_str().unwrap().contains(needle), "{v}");
        let kind = e["type"].as_str().unwrap();
        match status {
            429 => assert_eq!(kind, "rate_limit_error"),
            500.. => assert_eq!(kind, "server_error"),
            _ => assert_eq!(kind, "invalid_request_error"),
        }
        assert_eq!(e["param"].as_str(), param, "{v}");
        assert!(e["code"].is_string(), "{v}");
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(PATIENCE))
        .build()
        .into()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn clip(name: &str) -> PathBuf {
    let p = common::shared_audio().join(name);
    assert!(p.is_file(), "{}: missing shared clip", p.display());
    p
}

fn voxtral_dir() -> PathBuf {
    common::voxtral_fixture("mistral")
}

/// `voxtrace transcribe --format FORMAT --model DIR FILE` (Whisper: long-form with
/// timestamps, any length): its stdout.
fn transcribe_whisper(dir: &Path, file: &Path, format: &str) -> String {
    let o = common::voxtrace(&[
        "transcribe",
        "--format",
        format,
        "--model",
        common::s(dir),
        common::s(file),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap()
}

/// The short-form decode of `file` (what the eval's `whisper:` system gives up to 30 s):
/// [`voxtrace::models::whisper::Whisper::transcribe`] in process, trimmed.
fn short_form_whisper(dir: &Path, file: &Path) -> String {
    let model = common::whisper::load_model();
    let tok =
        voxtrace::tokenizer::WhisperTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let samples = voxtrace::audio::load_mono_16k(file).unwrap();
    let t = model.transcribe(&samples, &tok, &common::device()).unwrap();
    t.text.trim().to_string()
}

/// `voxtrace transcribe --json --model MODEL FILE` (Voxtral, streaming schedule): its `text`.
fn transcribe_voxtral_model(model: &Path, file: &Path) -> String {
    let o = common::voxtrace(&[
        "transcribe",
        "--json",
        "--model",
        common::s(model),
        common::s(file),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    v["text"].as_str().unwrap().to_string()
}

/// [`transcribe_voxtral_model`] on the tiny Voxtral fixture folder.
fn transcribe_voxtral(file: &Path) -> String {
    transcribe_voxtral_model(&voxtral_dir(), file)
}

/// The WebVTT this server writes for the cues of `srt` (SubRip): `WEBVTT` header, cue numbers
/// dropped, `.` before the milliseconds (hours always, as in the SubRip times).
fn srt_to_vtt(srt: &str) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for cue in srt.split_terminator("\n\n") {
        let mut lines = cue.lines();
        lines.next().unwrap(); // the cue number
        let timing = lines.next().unwrap();
        assert!(timing.contains(" --> "), "{timing}");
        out.push_str(&timing.replace(',', "."));
        for l in lines {
            out.push('\n');
            out.push_str(l);
        }
        out.push_str("\n\n");
    }
    out
}

/// A 16-bit PCM mono WAV of `samples` (already i16) at 16 kHz.
fn wav_bytes(samples: &[i16]) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + samples.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&16_000u32.to_le_bytes());
    b.extend_from_slice(&32_000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    b
}

/// The PCM16 samples of a 16 kHz 16-bit mono clip (the decoder gives `x / 32768` exactly).
fn pcm16(path: &Path) -> Vec<i16> {
    let d = voxtrace::audio::decode_file(path).unwrap();
    assert_eq!(
        (d.sample_rate, d.channels),
        (16_000, 1),
        "{}",
        path.display()
    );
    d.samples.iter().map(|&x| (x * 32768.0) as i16).collect()
}

/// Whisper over HTTP: up to 30 s the short-form decode (one segment for the whole clip); a
/// 33 s upload long-form with timestamps, every format equal to `voxtrace transcribe`'s
/// (text, segments with their times, tokens, seek and probabilities, SRT; VTT from the same
/// cues).
#[test]
fn whisper_answers_every_format_like_the_port() {
    let dir = common::whisper::require_weights();
    let tmp = tempfile::tempdir().unwrap();
    // 33 s: beyond one 30 s window, so long-form.
    let jfk = pcm16(&clip("jfk.wav"));
    let long: Vec<i16> = jfk.iter().chain(&jfk).chain(&jfk).copied().collect();
    let long_path = tmp.path().join("jfk3.wav");
    std::fs::write(&long_path, wav_bytes(&long)).unwrap();
    let want_short = short_form_whisper(&dir, &clip("jfk.wav"));
    assert!(!want_short.is_empty());
    let cli: Value = serde_json::from_str(
        transcribe_whisper(&dir, &long_path, "json")
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let want_long = cli["text"].as_str().unwrap();
    let want_segs = cli["segments"].as_array().unwrap();
    let want_srt = transcribe_whisper(&dir, &long_path, "srt");
    let dur = long.len() as f64 / 16_000.0;
    // Long-form segments reach past the first 30 s window.
    assert!(want_segs.len() >= 2, "{cli}");
    assert!(want_segs.last().unwrap()["end_s"].as_f64().unwrap() > 30.0);

    let arg = format!("tiny.en={}", dir.display());
    let srv = Server::start(&["--model", &arg]);
    let (st, models) = srv.get("/v1/models");
    assert_eq!(st, 200);
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny.en");
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(srv.get("/health").1["status"], "ok");

    let short = std::fs::read(clip("jfk.wav")).unwrap();
    let a = srv.post(&[("model", "tiny.en")], Some(("jfk.wav", &short)));
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("application/json"));
    assert_eq!(a.json(), json!({"text": want_short}));

    let a = srv.post(
        &[
            ("model", "tiny.en"),
            ("response_format", "text"),
            ("language", "en"),
            ("temperature", "0"),
        ],
        Some(("jfk.wav", &short)),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, format!("{want_short}\n"));

    // Short-form: one segment over the whole clip, no long-form probabilities.
    let a = srv.post(
        &[("model", "tiny.en"), ("response_format", "verbose_json")],
        Some(("jfk.wav", &short)),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    let segs = v["segments"].as_array().unwrap();
    assert_eq!(segs.len(), 1, "{v}");
    assert_eq!(segs[0]["text"], want_short);
    assert_eq!(segs[0]["start"].as_f64(), Some(0.0));
    assert_eq!(segs[0]["end"].as_f64(), Some(jfk.len() as f64 / 16_000.0));
    assert!(segs[0].get("avg_logprob").is_none(), "{v}");

    let long_bytes = std::fs::read(&long_path).unwrap();
    let a = srv.post(
        &[("model", "tiny.en"), ("response_format", "verbose_json")],
        Some(("jfk3.wav", &long_bytes)),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    let v = a.json();
    assert_eq!(v["text"], want_long);
    assert_eq!(v["task"], "transcribe");
    assert!((v["duration"].as_f64().unwrap() - dur).abs() < 1e-9);
    let segs = v["segments"].as_array().unwrap();
    assert_eq!(segs.len(), want_segs.len(), "{v}");
    for (i, (got, want)) in segs.iter().zip(want_segs).enumerate() {
        assert_eq!(got["id"], i, "{got}");
        for (g, w) in [
            ("start", "start_s"),
            ("end", "end_s"),
            ("text", "text"),
            ("tokens", "tokens"),
            ("avg_logprob", "avg_logprob"),
            ("no_speech_prob", "no_speech_prob"),
        ] {
            assert_eq!(got[g], want[w], "segment {i} {g}: {got} vs {want}");
        }
        let seek = (want["seek_s"].as_f64().unwrap() * 100.0).round() as u64;
        assert_eq!(got["seek"].as_u64(), Some(seek), "segment {i}");
    }

    let a = srv.post(
        &[("model", "tiny.en"), ("response_format", "srt")],
        Some(("jfk3.wav", &long_bytes)),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, want_srt);
    let a = srv.post(
        &[("model", "tiny.en"), ("response_format", "vtt")],
        Some(("jfk3.wav", &long_bytes)),
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.content_type.starts_with("text/vtt"));
    assert_eq!(a.body, srt_to_vtt(&want_srt));

    // English-only model: another language is a 400 naming the field.
    srv.post(
        &[("model", "tiny.en"), ("language", "fr")],
        Some(("jfk.wav", &short)),
    )
    .assert_error(400, Some("language"), "English only");
}

/// A Voxtral GGUF file (`voxtrace quantize`, Q8_0 linear layers) served by its path: the id is
/// the file name, the HTTP answer and a realtime utterance equal `voxtrace transcribe` on the
/// same file (tokenizer from the GGUF metadata).
#[test]
fn voxtral_gguf_file_is_served_like_transcribe() {
    let tmp = tempfile::tempdir().unwrap();
    let gguf = tmp.path().join("vox-q8_0.gguf");
    common::voxtrace_ok(&[
        "quantize",
        "--model",
        common::s(&voxtral_dir()),
        "--type",
        "q8_0",
        "--out",
        common::s(&gguf),
    ]);
    let file = clip("goforward.wav");
    let want = transcribe_voxtral_model(&gguf, &file);
    assert!(!want.trim().is_empty());
    let srv = Server::start(&["--model", common::s(&gguf)]);
    let (_, models) = srv.get("/v1/models");
    assert_eq!(models["data"][0]["id"], "vox-q8_0.gguf", "{models}");
    // One model served: `model` may be left out.
    let bytes = std::fs::read(&file).unwrap();
    let a = srv.post(&[], Some(("goforward.wav", &bytes)));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), json!({"text": want.trim()}));

    let mut ws = ws_connect(&srv);
    assert_eq!(next_event(&mut ws)["type"], "session.created");
    send(
        &mut ws,
        json!({"type": "session.update", "model": "vox-q8_0.gguf"}),
    );
    let pcm: Vec<u8> = pcm16(&file).iter().flat_map(|s| s.to_le_bytes()).collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(pcm);
    send(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "audio": b64}),
    );
    send(
        &mut ws,
        json!({"type": "input_audio_buffer.commit", "final": true}),
    );
    let (deltas, done) = read_utterance(&mut ws);
    assert_eq!(done["text"], want);
    assert_eq!(deltas.concat(), want);
    ws.close(None).unwrap();
}

/// Read websocket frames until `transcription.done`; returns (deltas, done event).
fn read_utterance(ws: &mut tungstenite::WebSocket<TcpStream>) -> (Vec<String>, Value) {
    let mut deltas = Vec::new();
    loop {
        let m = ws.read().unwrap();
        let v: Value = serde_json::from_str(m.to_text().unwrap()).unwrap();
        match v["type"].as_str().unwrap() {
            "transcription.delta" => deltas.push(v["delta"].as_str().unwrap().to_string()),
            "transcription.done" => return (deltas, v),
            other => panic!("unexpected event {other}: {v}"),
        }
    }
}

fn send(ws: &mut tungstenite::WebSocket<TcpStream>, v: Value) {
    ws.send(tungstenite::Message::Text(v.to_string().into()))
        .unwrap();
}

fn next_event(ws: &mut tungstenite::WebSocket<TcpStream>) -> Value {
    serde_json::from_str(ws.read().unwrap().to_text().unwrap()).unwrap()
}

fn ws_connect(srv: &Server) -> tungstenite::WebSocket<TcpStream> {
    let stream = TcpStream::connect(&srv.addr).unwrap();
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    let (ws, _) = tungstenite::client(format!("ws://{}/v1/realtime", srv.addr), stream).unwrap();
    ws
}

#[test]
fn voxtral_http_and_realtime_equal_transcribe() {
    let wdir = common::whisper::require_weights();
    let file = clip("goforward.wav");
    let want = transcribe_voxtral(&file);
    assert!(!want.trim().is_empty());
    let vox = format!("vox={}", voxtral_dir().display());
    let whisper = format!("whisper={}", wdir.display());
    let srv = Server::start(&["--model", &vox, "--model", &whisper]);

    let bytes = std::fs::read(&file).unwrap();
    let a = srv.post(&[("model", "vox")], Some(("goforward.wav", &bytes)));
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json(), json!({"text": want.trim()}));
    // Two models served: `model` is required.
    srv.post(&[], Some(("goforward.wav", &bytes))).assert_error(
        400,
        Some("model"),
        "model is required",
    );

    let mut ws = ws_connect(&srv);
    let hello = next_event(&mut ws);
    assert_eq!(hello["type"], "session.created");
    assert!(hello["id"].as_str().unwrap().starts_with("sess-"));
    // Errors first, each answered by an error event; the connection stays usable.
    ws.send(tungstenite::Message::Text("{not json".into()))
        .unwrap();
    assert_eq!(next_event(&mut ws)["code"], "invalid_json");
    send(&mut ws, json!({"type": "input_audio_buffer.commit"}));
    assert_eq!(next_event(&mut ws)["code"], "model_not_validated");
    send(
        &mut ws,
        json!({"type": "session.update", "model": "whisper"}),
    );
    assert_eq!(next_event(&mut ws)["code"], "unsupported_model");
    send(&mut ws, json!({"type": "session.update", "model": "nope"}));
    assert_eq!(next_event(&mut ws)["code"], "model_not_found");
    send(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "audio": "***"}),
    );
    assert_eq!(next_event(&mut ws)["code"], "invalid_audio");
    // Three bytes: not a whole number of PCM16 samples.
    send(
        &mut ws,
        json!({"type": "input_audio_buffer.append", "audio": "AAEC"}),
    );
    assert_eq!(next_event(&mut ws)["code"], "invalid_audio");
    send(&mut ws, json!({"type": "response.create"}));
    assert_eq!(next_event(&mut ws)["code"], "unknown_event");

    send(&mut ws, json!({"type": "session.update", "model": "vox"}));
    let samples = pcm16(&file);
    // Two utterances on one connection; the first appends before its first commit.
    for round in 0..2 {
        if round == 1 {
            send(&mut ws, json!({"type": "input_audio_buffer.commit"}));
        }
        for chunk in samples.chunks(3000) {
            let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
            let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
            send(
                &mut ws,
                json!({"type": "input_audio_buffer.append", "audio": b64}),
            );
        }
        send(
            &mut ws,
            json!({"type": "input_audio_buffer.commit", "final": true}),
        );
        let (deltas, done) = read_utterance(&mut ws);
        assert_eq!(done["text"], want, "round {round}");
        assert_eq!(deltas.concat(), want, "round {round}");
        let u = &done["usage"];
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );
        assert!(u["completion_tokens"].as_u64().unwrap() > 0);
    }
    ws.close(None).unwrap();
}

#[test]
fn bad_requests_get_openai_errors() {
    let vox = format!("vox={}", voxtral_dir().display());
    let srv = Server::start(&["--model", &vox, "--max-upload-mb", "1"]);
    let good = std::fs::read(clip("goforward.wav")).unwrap();

    srv.post(
        &[("model", "vox")],
        Some(("notes.wav", b"this is not audio at all")),
    )
    .assert_error(400, Some("file"), "notes.wav");
    srv.post(&[("model", "vox")], Some(("empty.wav", b"")))
        .assert_error(400, Some("file"), "empty");
    // A WAV whose data chunk declares more bytes than follow.
    let truncated = &good[..good.len() / 2];
    srv.post(&[("model", "vox")], Some(("cut.wav", truncated)))
        .assert_error(400, Some("file"), "cut.wav");
    // A WAV header and nothing else.
    srv.post(&[("model", "vox")], Some(("header.wav", &good[..20])))
        .assert_error(400, Some("file"), "header.wav");
    srv.post(
        &[("model", "vox"), ("temperature", "0.7")],
        Some(("a.wav", &good)),
    )
    .assert_error(400, Some("temperature"), "only 0");
    srv.post(
        &[("model", "vox"), ("response_format", "xml")],
        Some(("a.wav", &good)),
    )
    .assert_error(400, Some("response_format"), "xml");
    srv.post(
        &[("model", "vox"), ("prompt", "hello")],
        Some(("a.wav", &good)),
    )
    .assert_error(400, Some("prompt"), "not supported");
    srv.post(&[("model", "nope")], Some(("a.wav", &good)))
        .assert_error(404, Some("model"), "nope");
    srv.post(&[("model", "vox")], None::<(&str, &[u8])>)
        .assert_error(400, Some("file"), "no file");
    srv.post_raw("application/json", b"{\"file\": 1}")
        .assert_error(400, None, "multipart");
    let a = srv.post_raw("multipart/form-data; boundary=zz", b"--zz\r\ngarbage");
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");

    // Over the 1 MiB limit, declared in Content-Length: 413 before reading, so it comes
    // with no byte of the body sent (a client sending the body may see the connection
    // closed under it).
    let big = vec![0u8; (1 << 20) + 10];
    let (ct, body) = multipart_body(&[("model", "vox")], "big.wav", &big);
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    Answer::from_raw(&resp).assert_error(413, Some("file"), "limit");
    // The same without a Content-Length (chunked): 413 when the stream passes the limit.
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    for c in body.chunks(64 << 10) {
        if write!(s, "{:x}\r\n", c.len()).is_err()
            || s.write_all(c).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break; // the server may answer and close before the end
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    let a = Answer::from_raw(&resp);
    a.assert_error(413, Some("file"), "limit");
    assert_eq!(a.json()["error"]["code"], "file_too_large");

    let (st, v) = srv.get("/no/such/route");
    assert_eq!(st, 404);
    assert_eq!(v["error"]["code"], "not_found");
    // Still serving, nothing admitted any more.
    let ok = srv.post(
        &[("model", "vox"), ("response_format", "text")],
        Some(("a.wav", &good)),
    );
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(srv.admitted(), 0);
    let err = srv.stderr.lock().unwrap().clone();
    assert!(!err.contains("panicked"), "{err}");
}

/// Start an upload and stop half way: the request is admitted and waits for its body.
fn half_upload(srv: &Server, file: &[u8]) -> (TcpStream, Vec<u8>) {
    let (ct, body) = multipart_body(&[("model", "vox")], "a.wav", file);
    let mut s = TcpStream::connect(&srv.addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .unwrap();
    let half = body.len() / 2;
    s.write_all(&body[..half]).unwrap();
    s.flush().unwrap();
    (s, body[half..].to_vec())
}

fn finish_upload(mut s: TcpStream, rest: &[u8]) -> String {
    s.write_all(rest).unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    resp
}

#[test]
fn a_full_queue_answers_429_and_frees_up() {
    let vox = format!("vox={}", voxtral_dir().display());
    let srv = Server::start(&["--model", &vox, "--workers", "1", "--max-queue", "0"]);
    let file = clip("goforward.wav");
    let good = std::fs::read(&file).unwrap();
    let (s, rest) = half_upload(&srv, &good);
    srv.wait_admitted(1);
    let a = srv.post(&[("model", "vox")], Some(("a.wav", &good)));
    a.assert_error(429, None, "busy");
    assert!(a.retry_after);
    // The realtime upgrade is admitted the same way.
    let stream = TcpStream::connect(&srv.addr).unwrap();
    match tungstenite::client(format!("ws://{}/v1/realtime", srv.addr), stream) {
        Err(tungstenite::HandshakeError::Failure(tungstenite::Error::Http(r))) => {
            assert_eq!(r.status().as_u16(), 429);
        }
        Err(e) => panic!("expected a 429 handshake failure, got {e}"),
        Ok(_) => panic!("expected a 429 handshake failure, got a websocket"),
    }
    let resp = finish_upload(s, &rest);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let want = transcribe_voxtral(&file);
    assert!(
        resp.ends_with(&json!({"text": want.trim()}).to_string()),
        "{resp}"
    );
    srv.wait_admitted(0);
    let ok = srv.post(&[("model", "vox")], Some(("a.wav", &good)));
    assert_eq!(ok.status, 200, "{}", ok.body);
}

#[test]
fn sigterm_lets_the_request_in_progress_finish_then_exits() {
    let vox = format!("vox={}", voxtral_dir().display());
    let mut srv = Server::start(&["--model", &vox]);
    let good = std::fs::read(clip("goforward.wav")).unwrap();
    let (s, rest) = half_upload(&srv, &good);
    srv.wait_admitted(1);
    srv.sigterm();
    // The stderr line says the signal was seen; then the request still completes.
    let t0 = Instant::now();
    while !srv.stderr.lock().unwrap().contains("shutting down") {
        assert!(t0.elapsed() < PATIENCE, "no shutdown message");
        std::thread::sleep(Duration::from_millis(20));
    }
    let resp = finish_upload(s, &rest);
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("{\"text\":"), "{resp}");
    let status = srv.wait_exit();
    assert!(
        status.success(),
        "{status:?}: {}",
        srv.stderr.lock().unwrap()
    );
    assert!(TcpStream::connect(&srv.addr).is_err(), "still listening");
    assert!(srv.stderr.lock().unwrap().contains("stopped"));
}

/// The eval's `http[...]` options against `voxtrace serve` (two models served, so `model` is
/// required): `json`, `verbose_json` and `text` answers give the in-process port's transcripts;
/// the model under another field name (`model_name`, what faster-whisper-server 0.0.3 reads) is
/// refused by this server, and so is the global `--http-model` when a system does not override
/// it. faster-whisper-server itself is scored by `just eval-servers`, not here.
#[test]
fn eval_http_options_against_voxtrace_serve() {
    let wdir = common::whisper::require_weights();
    let w = format!("tiny.en={}", wdir.display());
    let v = format!("vox={}", voxtral_dir().display());
    let srv = Server::start(&["--model", &w, "--model", &v]);
    let url = srv.url("/v1/audio/transcriptions");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let root = common::shared_audio();
    let manifest = common::eval_corpus::manifest(
        d,
        &[
            (
                "jfk",
                "jfk.wav",
                "and so my fellow americans ask not what your country can do for you",
            ),
            ("goforward", "goforward.wav", "go forward"),
        ],
    );
    let systems = [
        format!("burn=whisper:{}", wdir.display()),
        format!("json=http[model=tiny.en]:{url}"),
        format!("verbose=http[model_field=model,model=tiny.en,response_format=verbose_json]:{url}"),
        format!("text=http[response_format=text,model=tiny.en]:{url}"),
        format!("fieldname=http[model_field=model_name,model=tiny.en]:{url}"),
        format!("global=http:{url}"),
    ];
    let mut args = vec![
        "eval".to_string(),
        "--manifest".into(),
        manifest.display().to_string(),
        "--audio-root".into(),
        root.display().to_string(),
        "--out".into(),
        "reports".into(),
        "--run-id".into(),
        "r".into(),
        "--quiet".into(),
        "--http-model".into(),
        "not-served".into(),
    ];
    for s in &systems {
        args.push("--system".into());
        args.push(s.clone());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = common::eval_corpus::voxtrace(d, &args);
    // Exit 1: nothing could be scored for `fieldname` and `global` (said on stderr).
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        common::eval_corpus::show(&o)
    );
    let r = common::eval_corpus::results(d, "r");
    let sys = |n: &str| r.systems.iter().find(|s| s.name == n).unwrap();
    let burn: Vec<String> = sys("burn")
        .utterances
        .iter()
        .map(|u| u.hypothesis.clone().unwrap())
        .collect();
    assert!(burn.iter().all(|t| !t.is_empty()));
    for n in ["json", "verbose", "text"] {
        let got: Vec<Option<String>> = sys(n)
            .utterances
            .iter()
            .map(|u| u.hypothesis.clone())
            .collect();
        let want: Vec<Option<String>> = burn.iter().cloned().map(Some).collect();
        assert_eq!(
            got,
            want,
            "{n}: {:?}",
            sys(n)
                .utterances
                .iter()
                .map(|u| &u.error)
                .collect::<Vec<_>>()
        );
        assert_eq!(sys(n).totals.n_failed, 0);
    }
    assert!(
        sys("verbose")
            .info
            .backend
            .contains("response_format=verbose_json")
    );
    for (n, status, needle) in [
        ("fieldname", "400", "model is required"),
        ("global", "404", "not-served"),
    ] {
        let s = sys(n);
        assert_eq!(s.totals.n_failed, 2, "{n}");
        for u in &s.utterances {
            let e = u.error.as_deref().unwrap();
            assert!(e.contains(status) && e.contains(needle), "{n}: {e}");
        }
    }
}
