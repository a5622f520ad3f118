//! Evaluation systems: anything that turns one corpus clip into text.
//!
//! A system is named on the command line as `NAME=SPEC` ([`SystemSpec::parse`]); the SPEC kinds
//! are:
//!
//! | SPEC                    | what runs                                                                 |
//! |-------------------------|---------------------------------------------------------------------------|
//! | `voxtral:DIR`           | the Burn Voxtral Realtime port, streaming greedy in 80 ms steps (timed: [`super::latency`]), 480 ms delay |
//! | `voxtral-q8_0:DIR`      | the same with its linear layers packed as Q8_0 (`nn::qlinear`; conv stem, norms, ADA-norm conditioning, embeddings, tied LM head f32) |
//! | `voxtral-q4_0:DIR`      | the same, packed as Q4_0                                                   |
//! | `whisper:DIR`           | the Burn Whisper tiny.en port, greedy; up to 30 s without timestamps (transformers short-form), longer long-form with timestamps (`models::whisper::longform`) |
//! | `whisper-q8_0:DIR`      | the same with its linear layers packed as Q8_0 (`nn::qlinear`; conv stem, norms, embeddings, LM head f32) |
//! | `whisper-q4_0:DIR`      | the same, packed as Q4_0                                                   |
//! | `transcripts:FILE.json` | precomputed transcripts (e.g. `reference/whisper_reference.py` output)     |
//! | `cmd:COMMAND`           | `sh -c COMMAND sh PATH`, each `{audio}` in COMMAND rewritten to a quoted `$1` (rules below); stdout is the transcript, a non-zero exit is a failed utterance carrying its stderr |
//! | `http:URL`              | an OpenAI-compatible `POST URL` (`/v1/audio/transcriptions`, as vLLM serves Voxtral): multipart `file` + `model` fields, JSON `{"text": ...}` answer |
//! | `http[OPTIONS]:URL`     | the same with per-system options ([`HttpOptions`], below)                  |
//!
//! ## `http:` options ([`HttpOptions`])
//!
//! `http[KEY=VALUE,...]:URL`, e.g.
//! `fws=http[model_field=model_name,response_format=verbose_json]:http://127.0.0.1:8001/v1/audio/transcriptions`:
//!
//! | key               | values                                     | default                         |
//! |-------------------|--------------------------------------------|---------------------------------|
//! | `model_field`     | form field name of the model (`model`; faster-whisper-server 0.0.3 wants `model_name`) | `model` |
//! | `model`           | the model value sent                       | `voxtrace eval --http-model`    |
//! | `response_format` | `json` or `verbose_json` (the answer's `text` is the transcript) or `text` (the whole body is) | `json` |
//!
//! Values are ASCII letters, digits and `-_./:`; no key twice; an unknown key or value is
//! refused when the system is parsed.
//! Adding a kind means one new [`SystemKind`] variant, one arm in [`SystemSpec::parse`] and one
//! in [`SystemSpec::open`]. Errors are [`EvalError`]s naming the file, command or URL.
//!
//! ## `cmd:` and file names ([`cmd_script`])
//!
//! The audio path never becomes shell text. COMMAND runs as `sh -c SCRIPT sh PATH`: the path is
//! the positional parameter `$1`, and SCRIPT is COMMAND with each `{audio}` rewritten to a
//! reference to it that expands to exactly one word, whatever the path holds (quotes, `$( )`,
//! backticks, spaces, newlines, globs):
//!
//! | where `{audio}` is written in COMMAND             | rewritten to    | e.g.                                    |
//! |---------------------------------------------------|-----------------|-----------------------------------------|
//! | unquoted (also in `$( )` or backticks)             | `"${1}"`        | `cat {audio}.txt` → `cat "${1}".txt`     |
//! | inside `"..."`                                    | `${1}`          | `cat "{audio}.txt"` → `cat "${1}.txt"`   |
//! | inside `'...'`                                    | `'"${1}"'` (closes and reopens the quote) | `cat '{audio}.txt'` → `cat ''"${1}"'.txt'` |
//! | after a backslash (`\{audio}`)                    | left as written |                                         |
//!
//! A relative path starting with `-` is passed as `./-...`, so it is never read as an option.
//! Since the path is only ever expanded from `$1`, a wrong guess about quoting (a construct the
//! rewriter does not model, e.g. a here-document) can at worst split or glob the path, never run
//! it; only a COMMAND that itself hands `$1` to `eval` or `sh -c` would.
//!
//! ## Limits of `cmd:` and `http:` systems ([`ExternalLimits`])
//!
//! * **Time:** each clip gets [`ExternalLimits::timeout_for`] its duration: `--system-timeout
//!   SECONDS` when given, else max(60 s, 10 × the manifest `duration_s`). A command still running
//!   then is killed with its whole process group (`sh -c` runs in a new group, so its children
//!   go too); an HTTP request is abandoned. Either way the clip is a failed utterance and the run
//!   goes on.
//! * **Size:** stdout and stderr of a command and an HTTP answer's body are each capped at
//!   [`ExternalLimits::DEFAULT_MAX_OUTPUT`] (1 MiB); a larger answer is a failed utterance (the
//!   command is killed at the cap). Error messages quote at most [`ERROR_EXCERPT`] bytes of it.
//! * **Retries:** an `http:` request that cannot connect (refused, reset) or gets a 5xx answer
//!   is retried [`ExternalLimits::DEFAULT_RETRIES`] (3) times after 0.5, 1 and 2 s, within the
//!   clip's time limit. Other errors (4xx, a timeout, a malformed answer) are not retried.
//! * **Answers:** an `http:` answer counts only when its body is one complete JSON object with a
//!   string `text`; anything else (truncated JSON, an HTML error page with status 200, `text`
//!   missing or not a string) is a failed utterance naming what was wrong.

use crate::io::FileError;
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::EvalError;
use super::manifest::ManifestEntry;
use crate::nn::qmatmul::QuantKind;

/// [`EvalError::BadSystem`] for the argument `arg`.
fn bad_system(arg: &str, problem: impl Into<String>) -> EvalError {
    EvalError::BadSystem {
        arg: arg.to_string(),
        problem: problem.into(),
    }
}

/// [`EvalError::Load`]: `what` failed on `path` because of `source`.
fn load_err<E: Into<super::Cause>>(path: &Path, what: &'static str) -> impl FnOnce(E) -> EvalError {
    let path = path.to_path_buf();
    move |source| EvalError::Load {
        path,
        what,
        source: source.into(),
    }
}

/// [`EvalError::BadFile`]: `path` is well-formed but `problem`.
fn bad_file(path: &Path, problem: String) -> EvalError {
    EvalError::BadFile {
        path: path.to_path_buf(),
        problem,
    }
}

/// The kind of a system and its argument.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "arg", rename_all = "snake_case")]
pub enum SystemKind {
    /// Burn Voxtral Realtime checkpoint folder (Mistral or HF layout, with `tekken.json`).
    Voxtral(PathBuf),
    /// Burn Whisper tiny.en folder (CTranslate2 `model.bin` + `tokenizer.json` + `config.json`,
    /// or transformers layout), or a Whisper GGUF file from `voxtrace quantize` (its linear
    /// layers in the file's precision).
    Whisper(PathBuf),
    /// Burn Whisper tiny.en folder as [`SystemKind::Whisper`], linear layers packed as Q8_0.
    #[serde(rename = "whisper_q8_0")]
    WhisperQ8(PathBuf),
    /// Burn Whisper tiny.en folder as [`SystemKind::Whisper`], linear layers packed as Q4_0.
    #[serde(rename = "whisper_q4_0")]
    WhisperQ4(PathBuf),
    /// Burn Voxtral Realtime folder as [`SystemKind::Voxtral`], linear layers packed as Q8_0.
    #[serde(rename = "voxtral_q8_0")]
    VoxtralQ8(PathBuf),
    /// Burn Voxtral Realtime folder as [`SystemKind::Voxtral`], linear layers packed as Q4_0.
    #[serde(rename = "voxtral_q4_0")]
    VoxtralQ4(PathBuf),
    /// Precomputed transcripts JSON file (see [`load_transcripts`]).
    Transcripts(PathBuf),
    /// Shell command template containing `{audio}`.
    Cmd(String),
    /// An OpenAI-compatible transcription endpoint and how to talk to it.
    Http {
        /// Full URL of the endpoint.
        url: String,
        /// Form field name, model, response format.
        options: HttpOptions,
    },
}

/// How an `http:` system is asked (see the module documentation for the spec syntax).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOptions {
    /// Form field carrying the model name (`model`; faster-whisper-server 0.0.3: `model_name`).
    pub model_field: String,
    /// Model name sent; `None` sends `voxtrace eval --http-model`.
    pub model: Option<String>,
    /// `response_format` asked for, which decides how the answer is read.
    pub response_format: HttpFormat,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            model_field: "model".into(),
            model: None,
            response_format: HttpFormat::Json,
        }
    }
}

/// The `response_format` an `http:` system asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    /// `{"text": ...}`.
    Json,
    /// `{"text": ..., "segments": ...}`; the `text` is the transcript.
    VerboseJson,
    /// The body is the transcript (UTF-8, trimmed).
    Text,
}

impl HttpFormat {
    /// The form value.
    pub fn name(self) -> &'static str {
        match self {
            HttpFormat::Json => "json",
            HttpFormat::VerboseJson => "verbose_json",
            HttpFormat::Text => "text",
        }
    }
}

impl HttpOptions {
    /// Parse the `KEY=VALUE,...` between `http[` and `]:`.
    ///
    /// # Errors
    /// A problem description: an item without `=`, an unknown key, a key given twice, an
    /// empty value or one with other characters than ASCII letters, digits and `-_./:`, an
    /// unknown `response_format`.
    pub fn parse(opts: &str) -> Result<Self, String> {
        let mut o = HttpOptions::default();
        let mut seen: Vec<&str> = Vec::new();
        for item in opts.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let Some((k, v)) = item.split_once('=') else {
                return Err(format!("http option {item:?} is not KEY=VALUE"));
            };
            let (k, v) = (k.trim(), v.trim());
            if seen.contains(&k) {
                return Err(format!("http option {k} is given twice"));
            }
            seen.push(k);
            if v.is_empty()
                || !v
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':'))
            {
                return Err(format!(
                    "http option {k}={v:?}: the value must be ASCII letters, digits or -_./:"
                ));
            }
            match k {
                "model_field" => o.model_field = v.to_string(),
                "model" => o.model = Some(v.to_string()),
                "response_format" => {
                    o.response_format = match v {
                        "json" => HttpFormat::Json,
                        "verbose_json" => HttpFormat::VerboseJson,
                        "text" => HttpFormat::Text,
                        other => {
                            return Err(format!(
                                "http option response_format={other:?}: expected json, verbose_json or text"
                            ));
                        }
                    }
                }
                other => {
                    return Err(format!(
                        "unknown http option {other:?} (known: model_field, model, response_format)"
                    ));
                }
            }
        }
        Ok(o)
    }
}

/// A named system as given on the command line (`NAME=SPEC`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemSpec {
    /// Display name, unique in a run (letters, digits, `-`, `_`, `.`).
    pub name: String,
    /// The SPEC as written.
    pub spec: String,
    /// Parsed kind.
    pub kind: SystemKind,
}

/// Provenance of a system, recorded in `results.json` and the report header.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SystemInfo {
    /// `voxtral`, `voxtral-q8_0`, `voxtral-q4_0`, `whisper`, `whisper-q8_0`, `whisper-q4_0`,
    /// `transcripts`, `cmd` or `http`.
    pub kind: String,
    /// Model folder or transcripts file, if any.
    pub model_path: Option<String>,
    /// Weights file that was hashed (e.g. `consolidated.safetensors`), if any.
    pub weights_file: Option<String>,
    /// sha256 (hex) of [`SystemInfo::weights_file`] (for `transcripts:`, of the JSON file).
    pub weights_sha256: Option<String>,
    /// Compute backend, e.g. `burn 0.22.1 flex`; `external` for cmd/http; the `source` field of a
    /// transcripts file.
    pub backend: String,
}

/// What a system returned for one clip.
#[derive(Clone, Debug, PartialEq)]
pub struct Transcription {
    /// Transcript text (trimmed).
    pub text: String,
    /// Decoded audio length in seconds when the system decoded the audio itself (voxtral,
    /// whisper), else
    /// `None` (the manifest `duration_s` is used).
    pub audio_s: Option<f64>,
}

/// A running system.
pub trait System {
    /// Provenance (computed once when opened).
    fn info(&self) -> &SystemInfo;
    /// Transcribe one clip whose audio exists at `entry.path`.
    ///
    /// # Errors
    /// Any failure of this clip (decode error, command exit status, HTTP error, id absent from a
    /// transcripts file); the message is recorded as the utterance's error.
    fn transcribe(&mut self, entry: &ManifestEntry) -> Result<Transcription, EvalError>;
    /// Whether [`System::transcribe`] needs the audio file (false for `transcripts:`). Clips
    /// whose audio is missing are reported as missing for every system regardless.
    fn needs_audio(&self) -> bool {
        true
    }
    /// The step timeline of the last [`System::transcribe`] of a streaming system (taken: a
    /// second call gives `None`); `None` for a system that does not stream.
    fn take_stream_trace(&mut self) -> Option<super::latency::StreamTrace> {
        None
    }
}

impl SystemSpec {
    /// Parse `NAME=SPEC`.
    ///
    /// # Errors
    /// No `=`, an empty or ill-formed name, an unknown kind, an empty argument, a `cmd:` without
    /// `{audio}`, an `http:` URL that does not start with `http://` or `https://`.
    pub fn parse(s: &str) -> Result<Self, EvalError> {
        let Some((name, spec)) = s.split_once('=') else {
            return Err(bad_system(
                s,
                "expected NAME=SPEC (e.g. burn=voxtral:fixtures/voxtral_tiny/mistral)",
            ));
        };
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad_system(
                s,
                format!("name {name:?} must be non-empty ASCII letters, digits, '-', '_' or '.'"),
            ));
        }
        // `http[OPTIONS]:URL`: the options end at the first `]:` (their values hold no `]`).
        let http_opts = match spec.strip_prefix("http[") {
            Some(rest) => {
                let Some((opts, url)) = rest.split_once("]:") else {
                    return Err(bad_system(s, "http[OPTIONS] must be followed by :URL"));
                };
                Some((HttpOptions::parse(opts).map_err(|p| bad_system(s, p))?, url))
            }
            None => None,
        };
        let (kind, arg) = match &http_opts {
            Some((_, url)) => ("http", *url),
            None => match spec.split_once(':') {
                Some(ka) => ka,
                None => {
                    return Err(bad_system(
                        s,
                        "SPEC must be voxtral[-q8_0|-q4_0]:DIR, whisper[-q8_0|-q4_0]:DIR, transcripts:FILE.json, cmd:COMMAND or http[OPTIONS]:URL",
                    ));
                }
            },
        };
        if arg.trim().is_empty() {
            return Err(bad_system(s, format!("empty argument after {kind}:")));
        }
        let kind = match kind {
            "voxtral" => SystemKind::Voxtral(PathBuf::from(arg)),
            "whisper" => SystemKind::Whisper(PathBuf::from(arg)),
            "whisper-q8_0" => SystemKind::WhisperQ8(PathBuf::from(arg)),
            "whisper-q4_0" => SystemKind::WhisperQ4(PathBuf::from(arg)),
            "voxtral-q8_0" => SystemKind::VoxtralQ8(PathBuf::from(arg)),
            "voxtral-q4_0" => SystemKind::VoxtralQ4(PathBuf::from(arg)),
            "transcripts" => SystemKind::Transcripts(PathBuf::from(arg)),
            "cmd" => {
                if cmd_script(arg).1 == 0 {
                    return Err(bad_system(
                        s,
                        "a cmd: system needs the placeholder {audio} (not after a backslash)",
                    ));
                }
                SystemKind::Cmd(arg.to_string())
            }
            "http" => {
                if !(arg.starts_with("http://") || arg.starts_with("https://")) {
                    return Err(bad_system(
                        s,
                        "http: needs a full URL, e.g. http:http://127.0.0.1:8000/v1/audio/transcriptions",
                    ));
                }
                SystemKind::Http {
                    url: arg.to_string(),
                    options: http_opts.map(|(o, _)| o).unwrap_or_default(),
                }
            }
            other => {
                return Err(bad_system(
                    s,
                    format!(
                        "unknown system kind {other:?} (known: voxtral, voxtral-q8_0, voxtral-q4_0, whisper, whisper-q8_0, whisper-q4_0, transcripts, cmd, http)"
                    ),
                ));
            }
        };
        Ok(SystemSpec {
            name: name.to_string(),
            spec: spec.to_string(),
            kind,
        })
    }

    /// Open the system (load the model, read the transcripts file).
    ///
    /// `device` is the Burn device name for model systems (see [`crate::backend::device`]);
    /// `http_model` is the `model` form field sent to `http:` systems; `limits` bound the time
    /// and output of `cmd:` and `http:` systems.
    ///
    /// # Errors
    /// Unreadable model folder, tokenizer or transcripts file; an unknown device.
    pub fn open(
        &self,
        device: &str,
        http_model: &str,
        limits: ExternalLimits,
    ) -> Result<Box<dyn System>, EvalError> {
        Ok(match &self.kind {
            SystemKind::Voxtral(dir) => Box::new(VoxtralSystem::open(dir, device, None)?),
            SystemKind::VoxtralQ8(dir) => {
                Box::new(VoxtralSystem::open(dir, device, Some(QuantKind::Q8_0))?)
            }
            SystemKind::VoxtralQ4(dir) => {
                Box::new(VoxtralSystem::open(dir, device, Some(QuantKind::Q4_0))?)
            }
            SystemKind::Whisper(dir) => Box::new(WhisperSystem::open(dir, device, None)?),
            SystemKind::WhisperQ8(dir) => {
                Box::new(WhisperSystem::open(dir, device, Some(QuantKind::Q8_0))?)
            }
            SystemKind::WhisperQ4(dir) => {
                Box::new(WhisperSystem::open(dir, device, Some(QuantKind::Q4_0))?)
            }
            SystemKind::Transcripts(f) => Box::new(TranscriptsSystem::open(f)?),
            SystemKind::Cmd(c) => Box::new(CmdSystem::new(c, limits)),
            SystemKind::Http { url, options } => {
                Box::new(HttpSystem::new(url, http_model, options, limits))
            }
        })
    }
}

/// Time, size and retry limits of the external (`cmd:`, `http:`) systems, per clip (see the
/// module documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ExternalLimits {
    /// Fixed per-clip time limit (`--system-timeout`); `None` scales it with the clip's
    /// duration ([`ExternalLimits::timeout_for`]).
    pub timeout: Option<Duration>,
    /// Most bytes accepted from a command's stdout, from its stderr, or in an HTTP answer body.
    pub max_output: usize,
    /// Retries of an `http:` request after a connection error or a 5xx answer.
    pub retries: u32,
    /// Wait before the first retry; doubled before each further one.
    pub backoff: Duration,
}

impl ExternalLimits {
    /// Shortest default per-clip time limit.
    pub const MIN_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default per-clip time limit per second of audio (10: a system ten times slower than real
    /// time is considered stuck).
    pub const TIMEOUT_PER_AUDIO_SECOND: f64 = 10.0;
    /// Default cap on stdout, stderr and HTTP bodies: 1 MiB.
    pub const DEFAULT_MAX_OUTPUT: usize = 1 << 20;
    /// Default number of `http:` retries.
    pub const DEFAULT_RETRIES: u32 = 3;
    /// Default wait before the first retry (then 1 s, 2 s).
    pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);

    /// The time limit for a clip of `duration_s` seconds (the manifest's, or the audio's; 0 when
    /// unknown, which gives the minimum): the fixed
    /// [`ExternalLimits::timeout`] if set, else max([`ExternalLimits::MIN_TIMEOUT`],
    /// [`ExternalLimits::TIMEOUT_PER_AUDIO_SECOND`] × `duration_s`), at most one day.
    pub fn timeout_for(&self, duration_s: f64) -> Duration {
        if let Some(t) = self.timeout {
            return t;
        }
        let scaled = Self::TIMEOUT_PER_AUDIO_SECOND * duration_s;
        let scaled = if scaled.is_finite() {
            scaled.clamp(0.0, 86_400.0)
        } else {
            0.0
        };
        Self::MIN_TIMEOUT.max(Duration::from_secs_f64(scaled))
    }
}

impl Default for ExternalLimits {
    fn default() -> Self {
        ExternalLimits {
            timeout: None,
            max_output: Self::DEFAULT_MAX_OUTPUT,
            retries: Self::DEFAULT_RETRIES,
            backoff: Self::DEFAULT_BACKOFF,
        }
    }
}

/// Most bytes of a command's stderr or an HTTP answer quoted in an error message.
pub const ERROR_EXCERPT: usize = 4096;

/// `bytes` as lossy UTF-8, trimmed, cut to [`ERROR_EXCERPT`] bytes (on a character boundary)
/// with a note of the full length when longer.
fn excerpt(bytes: &[u8]) -> String {
    let s = String::from_utf8_lossy(bytes);
    let s = s.trim();
    if s.len() <= ERROR_EXCERPT {
        return s.to_string();
    }
    let mut end = ERROR_EXCERPT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &s[..end], s.len())
}

/// sha256 (lower-case hex) of a file, streamed.
///
/// # Errors
/// The file cannot be read; the message names it.
pub fn sha256_file(path: &Path) -> Result<String, EvalError> {
    let mut f = std::fs::File::open(path).map_err(FileError::io(path, "cannot open"))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(FileError::io(path, "cannot read"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The weights file of a checkpoint folder: `consolidated.safetensors` (Mistral layout), else
/// `model.safetensors` (HF), else the first `*.safetensors` by name; a single-file model
/// (GGUF) is its own weights file.
pub fn weights_file(dir: &Path) -> Option<PathBuf> {
    if dir.is_file() {
        // A single-file model (GGUF): the file itself.
        return Some(dir.to_path_buf());
    }
    for n in ["consolidated.safetensors", "model.safetensors"] {
        let p = dir.join(n);
        if p.is_file() {
            return Some(p);
        }
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    v.sort();
    v.into_iter().next()
}

// ---------------------------------------------------------------------------------------------
// voxtral:DIR

/// The Burn Voxtral Realtime port, streaming greedy in 80 ms steps
/// ([`super::stream::transcribe_streaming`]; the offline schedule's ids), with a 480 ms
/// transcription delay (the released default); each clip's steps are timed.
pub struct VoxtralSystem {
    info: SystemInfo,
    device: burn::tensor::Device,
    model: crate::models::voxtral::Voxtral,
    tok: crate::tokenizer::Tekken,
    trace: Option<super::latency::StreamTrace>,
}

impl VoxtralSystem {
    /// Transcription delay used, ms.
    pub const DELAY_MS: f64 = 480.0;

    /// Load `dir` (with `tekken.json`) on `device`; with `quant`, pack its linear layers
    /// ([`crate::models::voxtral::Voxtral::quantize`]).
    ///
    /// # Errors
    /// Unknown device, unreadable checkpoint or tokenizer, weights that cannot be packed.
    pub fn open(dir: &Path, device: &str, quant: Option<QuantKind>) -> Result<Self, EvalError> {
        let dev = crate::backend::device(device)?;
        let (mut model, tok) = crate::models::voxtral::Voxtral::open(dir, None, &dev)
            .map_err(load_err(dir, "cannot load the Voxtral checkpoint"))?;
        if let Some(q) = quant {
            model
                .quantize(q)
                .map_err(load_err(dir, "cannot pack the Voxtral linear layers"))?;
        }
        let wf = weights_file(dir);
        let sha = match &wf {
            Some(p) => Some(sha256_file(p)?),
            None => None,
        };
        Ok(VoxtralSystem {
            info: SystemInfo {
                kind: match quant {
                    None => "voxtral".into(),
                    Some(q) => format!("voxtral-{}", q.name()),
                },
                model_path: Some(dir.display().to_string()),
                weights_file: wf.map(|p| p.display().to_string()),
                weights_sha256: sha,
                backend: format!(
                    "burn 0.22.1 {device}, streaming greedy (80 ms steps), delay {} ms, linear layers {}",
                    Self::DELAY_MS,
                    quant.map_or("f32", |q| q.name())
                ),
            },
            device: dev,
            model,
            tok,
            trace: None,
        })
    }
}

impl System for VoxtralSystem {
    fn info(&self) -> &SystemInfo {
        &self.info
    }
    fn transcribe(&mut self, entry: &ManifestEntry) -> Result<Transcription, EvalError> {
        self.trace = None;
        let s = crate::audio::load_mono_16k(&entry.path)
            .map_err(load_err(&entry.path, "cannot decode audio"))?;
        let (text, trace) = super::stream::transcribe_streaming(
            &self.model,
            &self.tok,
            &s,
            Self::DELAY_MS,
            &mut super::stream::WallClock::default(),
            &self.device,
        )
        .map_err(|e| EvalError::Model(e.into()))?;
        self.trace = Some(trace);
        Ok(Transcription {
            text,
            audio_s: Some(s.len() as f64 / 16_000.0),
        })
    }
    fn take_stream_trace(&mut self) -> Option<super::latency::StreamTrace> {
        self.trace.take()
    }
}

// ---------------------------------------------------------------------------------------------
// whisper:DIR

/// The Burn Whisper tiny.en port ([`crate::models::whisper`]): greedy, English-only prompt;
/// clips up to 30 s without timestamps (transformers' short-form `generate`), longer audio
/// long-form with timestamps ([`crate::models::whisper::transcribe_long`], upstream defaults).
pub struct WhisperSystem {
    info: SystemInfo,
    device: burn::tensor::Device,
    model: crate::models::whisper::Whisper,
    tok: crate::tokenizer::WhisperTokenizer,
}

impl WhisperSystem {
    /// Load `dir` (with `tokenizer.json`) on `device`; with `quant`, pack its linear layers
    /// ([`crate::models::whisper::Whisper::quantize`]).
    ///
    /// # Errors
    /// Unknown device, unreadable checkpoint or tokenizer, weights that cannot be packed.
    pub fn open(dir: &Path, device: &str, quant: Option<QuantKind>) -> Result<Self, EvalError> {
        let dev = crate::backend::device(device)?;
        let (mut model, tok) = crate::models::whisper::Whisper::open(dir, None, &dev)
            .map_err(load_err(dir, "cannot load the Whisper checkpoint"))?;
        if let Some(q) = quant {
            model
                .quantize(q)
                .map_err(load_err(dir, "cannot pack the Whisper linear layers"))?;
        }
        // The linear layers' storage: the --quant kind, or what a GGUF file holds.
        let precision = model
            .net
            .model
            .encoder
            .layers
            .first()
            .map_or("f32", |l| l.fc1.precision());
        let wf = if dir.is_file() {
            Some(dir.to_path_buf())
        } else {
            ["model.bin", "model.safetensors"]
                .iter()
                .map(|f| dir.join(f))
                .find(|p| p.is_file())
        };
        let sha = match &wf {
            Some(p) => Some(sha256_file(p)?),
            None => None,
        };
        Ok(WhisperSystem {
            info: SystemInfo {
                kind: match quant {
                    None => "whisper".into(),
                    Some(q) => format!("whisper-{}", q.name()),
                },
                model_path: Some(dir.display().to_string()),
                weights_file: wf.map(|p| p.display().to_string()),
                weights_sha256: sha,
                backend: match precision {
                    "f32" => format!("burn 0.22.1 {device}, greedy, f32"),
                    p => format!(
                        "burn 0.22.1 {device}, greedy, linear layers {p} (voxtrace {})",
                        if p.starts_with('q') {
                            "qmatmul"
                        } else {
                            "nn::half"
                        }
                    ),
                },
            },
            device: dev,
            model,
            tok,
        })
    }
}

impl System for WhisperSystem {
    fn info(&self) -> &SystemInfo {
        &self.info
    }
    fn transcribe(&mut self, entry: &ManifestEntry) -> Result<Transcription, EvalError> {
        let s = crate::audio::load_mono_16k(&entry.path)
            .map_err(load_err(&entry.path, "cannot decode audio"))?;
        // Up to 30 s: transformers' short-form generate (no timestamps, token-exact with
        // upstream). Longer: long-form with timestamps, as upstream's `transcribe`.
        let text = if s.len() <= crate::audio::mel::WHISPER_N_SAMPLES {
            self.model
                .transcribe(&s, &self.tok, &self.device)
                .map_err(|e| EvalError::Model(e.into()))?
                .text
        } else {
            let segments = crate::models::whisper::transcribe_long(
                &self.model,
                &self.tok,
                &s,
                &crate::models::whisper::LongFormOptions::default(),
                &self.device,
            )
            .map_err(|e| EvalError::Model(e.into()))?;
            crate::models::whisper::segments_text(&segments)
        };
        Ok(Transcription {
            text: text.trim().to_string(),
            audio_s: Some(s.len() as f64 / 16_000.0),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// transcripts:FILE.json

/// Read a transcripts file into `id -> text`.
///
/// Accepted shapes: `{"clips": [{"id": ..., "text": ...}, ...], "source": ...}` (the format of
/// `reference/whisper_reference.py` and `reference/whisper_faster_whisper.py`), a bare array of
/// `{"id", "text"}` objects, or a flat object `{"id": "text", ...}`. Returns the map and the
/// `source` string if present.
///
/// # Errors
/// Unreadable file, invalid JSON, an entry without string `id`/`text`, a duplicate id.
pub fn load_transcripts(
    path: &Path,
) -> Result<(HashMap<String, String>, Option<String>), EvalError> {
    let text = std::fs::read_to_string(path)
        .map_err(FileError::io(path, "cannot read transcripts file"))?;
    let v: serde_json::Value = serde_json::from_str(&text).map_err(|source| FileError::Json {
        path: path.to_path_buf(),
        what: "invalid JSON",
        source,
    })?;
    let source = v.get("source").and_then(|s| s.as_str()).map(String::from);
    let list = match &v {
        serde_json::Value::Array(a) => Some(a),
        serde_json::Value::Object(o) => match o.get("clips") {
            Some(serde_json::Value::Array(a)) => Some(a),
            Some(_) => return Err(bad_file(path, "\"clips\" is not an array".into())),
            None => None,
        },
        _ => return Err(bad_file(path, "expected a JSON object or array".into())),
    };
    let mut map = HashMap::new();
    let mut insert = |id: &str, t: &str| -> Result<(), EvalError> {
        if map.insert(id.to_string(), t.to_string()).is_some() {
            return Err(bad_file(path, format!("duplicate id {id:?}")));
        }
        Ok(())
    };
    match list {
        Some(a) => {
            for (i, c) in a.iter().enumerate() {
                let id = c.get("id").and_then(|x| x.as_str());
                let t = c.get("text").and_then(|x| x.as_str());
                match (id, t) {
                    (Some(id), Some(t)) => insert(id, t)?,
                    _ => {
                        return Err(bad_file(
                            path,
                            format!("clip #{i} lacks a string \"id\" or \"text\""),
                        ));
                    }
                }
            }
        }
        None => {
            for (k, val) in v.as_object().into_iter().flatten() {
                if k == "source" || k == "command" {
                    continue;
                }
                match val.as_str() {
                    Some(t) => insert(k, t)?,
                    None => {
                        return Err(bad_file(path, format!("value of {k:?} is not a string")));
                    }
                }
            }
        }
    }
    Ok((map, source))
}

/// Precomputed transcripts scored as a system.
pub struct TranscriptsSystem {
    info: SystemInfo,
    texts: HashMap<String, String>,
}

impl TranscriptsSystem {
    /// Read `path` ([`load_transcripts`]).
    ///
    /// # Errors
    /// See [`load_transcripts`].
    pub fn open(path: &Path) -> Result<Self, EvalError> {
        let (texts, source) = load_transcripts(path)?;
        Ok(TranscriptsSystem {
            info: SystemInfo {
                kind: "transcripts".into(),
                model_path: Some(path.display().to_string()),
                weights_file: Some(path.display().to_string()),
                weights_sha256: Some(sha256_file(path)?),
                backend: source.unwrap_or_else(|| "precomputed transcripts".into()),
            },
            texts,
        })
    }
}

impl System for TranscriptsSystem {
    fn info(&self) -> &SystemInfo {
        &self.info
    }
    fn transcribe(&mut self, entry: &ManifestEntry) -> Result<Transcription, EvalError> {
        match self.texts.get(&entry.id) {
            Some(t) => Ok(Transcription {
                text: t.trim().to_string(),
                audio_s: None,
            }),
            None => Err(EvalError::NoTranscript {
                id: entry.id.clone(),
                file: self.info.model_path.clone().unwrap_or_default(),
            }),
        }
    }
    fn needs_audio(&self) -> bool {
        false
    }
}

// ---------------------------------------------------------------------------------------------
// cmd:COMMAND

/// Shell quoting context while scanning a `cmd:` template ([`cmd_script`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    /// Unquoted text; `sub` when it is the inside of a `$( )`, `depth` its open `(`s.
    Plain { sub: bool, depth: u32 },
    /// Inside `"..."`.
    Double,
    /// Inside `'...'`.
    Single,
    /// Inside `` `...` ``.
    Backtick,
}

/// The `sh -c` script for a `cmd:` template: each `{audio}` rewritten to a quoted reference to
/// the positional parameter `$1` (`"${1}"` unquoted, `${1}` inside double quotes, `'"${1}"'`
/// inside single quotes), following POSIX quoting through `"..."`, `'...'`, backslashes, `$( )`
/// and backticks. Returns the script and the number of placeholders rewritten (`{audio}` after
/// a backslash is text, not a placeholder). The audio path itself never enters the script; it
/// is passed as `$1` (see the module documentation).
pub fn cmd_script(template: &str) -> (String, usize) {
    const PLACEHOLDER: &str = "{audio}";
    let mut out = String::with_capacity(template.len() + 16);
    let mut stack = vec![Ctx::Plain {
        sub: false,
        depth: 0,
    }];
    let mut n = 0usize;
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        let top = *stack.last().unwrap_or(&Ctx::Plain {
            sub: false,
            depth: 0,
        });
        if rest.starts_with(PLACEHOLDER) {
            out.push_str(match top {
                Ctx::Plain { .. } | Ctx::Backtick => "\"${1}\"",
                Ctx::Double => "${1}",
                Ctx::Single => "'\"${1}\"'",
            });
            n += 1;
            rest = &rest[PLACEHOLDER.len()..];
            continue;
        }
        let mut take = c.len_utf8();
        match (top, c) {
            (Ctx::Single, '\'') => {
                stack.pop();
            }
            (Ctx::Single, _) => {}
            // A backslash quotes the next character (outside single quotes).
            (_, '\\') => {
                take += rest[take..].chars().next().map_or(0, char::len_utf8);
            }
            (Ctx::Double, '"') | (Ctx::Backtick, '`') => {
                stack.pop();
            }
            (Ctx::Plain { .. } | Ctx::Backtick, '\'') => stack.push(Ctx::Single),
            (Ctx::Plain { .. } | Ctx::Backtick, '"') => stack.push(Ctx::Double),
            (Ctx::Plain { .. } | Ctx::Double, '`') => stack.push(Ctx::Backtick),
            (_, '$') if rest[1..].starts_with('(') => {
                take += 1;
                stack.push(Ctx::Plain {
                    sub: true,
                    depth: 0,
                });
            }
            (Ctx::Plain { sub, depth }, '(') => {
                stack.pop();
                stack.push(Ctx::Plain {
                    sub,
                    depth: depth + 1,
                });
            }
            (Ctx::Plain { sub, depth }, ')') => {
                stack.pop();
                if depth > 0 {
                    stack.push(Ctx::Plain {
                        sub,
                        depth: depth - 1,
                    });
                } else if !sub {
                    // An unbalanced `)` at top level (e.g. a `case` pattern): stay unquoted.
                    stack.push(Ctx::Plain { sub, depth });
                }
            }
            _ => {}
        }
        if stack.is_empty() {
            stack.push(Ctx::Plain {
                sub: false,
                depth: 0,
            });
        }
        out.push_str(&rest[..take]);
        rest = &rest[take..];
    }
    (out, n)
}

/// The path handed to a command as `$1`: `path` itself, with `./` in front of a relative path
/// starting with `-` (so no program reads it as an option).
fn cmd_arg(path: &Path) -> std::ffi::OsString {
    let s = path.as_os_str();
    if path.is_relative() && s.as_encoded_bytes().first() == Some(&b'-') {
        let mut o = std::ffi::OsString::from("./");
        o.push(s);
        o
    } else {
        s.to_os_string()
    }
}

/// What a command printed and how it ended ([`run_limited`]).
struct Captured {
    status: std::process::ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Why [`run_limited`] gave up on a command.
enum LimitFail {
    /// It could not be started or waited for.
    Io(std::io::Error),
    /// Still running (or its pipes still open) at the deadline; killed.
    Timeout,
    /// Printed more than the cap on this stream (`stdout` or `stderr`); killed.
    TooLarge(&'static str),
}

/// Read `r` to its end, at most `cap` bytes; past that, set `over` and stop reading.
fn read_capped<R: Read + Send + 'static>(
    r: R,
    cap: usize,
    over: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<std::io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
        r.take(limit).read_to_end(&mut buf)?;
        if buf.len() > cap {
            over.store(true, std::sync::atomic::Ordering::SeqCst);
            buf.clear();
        }
        Ok(buf)
    })
}

/// SIGKILL `child`'s process group (it leads one: [`run_limited`] starts it with
/// `process_group(0)`), then `child` itself.
fn kill_tree(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) takes plain integers and touches no memory of this process. `-pid`
        // names the process group `child` leads, which cannot have been recycled: `child` has
        // not been reaped by the time this is called (or, after it was, group members still
        // hold its pipes, so the group still exists).
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
}

/// Run `cmd` with stdin closed, capturing stdout and stderr (each at most `cap` bytes) for at
/// most `timeout`. On a timeout or an oversized stream the command and its process group are
/// killed; the reader threads are then left to end when the pipes close.
fn run_limited(
    cmd: &mut std::process::Command,
    timeout: Duration,
    cap: usize,
) -> Result<Captured, LimitFail> {
    use std::process::Stdio;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    const POLL: Duration = Duration::from_millis(5);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(cmd, 0);
    let deadline = std::time::Instant::now() + timeout;
    let mut child = cmd.spawn().map_err(LimitFail::Io)?;
    let (out_over, err_over) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    );
    let (Some(so), Some(se)) = (child.stdout.take(), child.stderr.take()) else {
        kill_tree(&mut child);
        let _ = child.wait();
        return Err(LimitFail::Io(std::io::Error::other(
            "no stdout/stderr pipe",
        )));
    };
    let out_h = read_capped(so, cap, out_over.clone());
    let err_h = read_capped(se, cap, err_over.clone());
    let mut status = None;
    loop {
        let fail = if out_over.load(Ordering::SeqCst) {
            Some(LimitFail::TooLarge("stdout"))
        } else if err_over.load(Ordering::SeqCst) {
            Some(LimitFail::TooLarge("stderr"))
        } else if std::time::Instant::now() >= deadline {
            Some(LimitFail::Timeout)
        } else {
            None
        };
        if let Some(f) = fail {
            kill_tree(&mut child);
            let _ = child.wait();
            return Err(f);
        }
        if status.is_none() {
            match child.try_wait() {
                Ok(s) => status = s,
                Err(e) => {
                    kill_tree(&mut child);
                    let _ = child.wait();
                    return Err(LimitFail::Io(e));
                }
            }
        }
        // Done when the shell has exited and every holder of its pipes (background children
        // included) has closed them.
        if let Some(st) = status
            && out_h.is_finished()
            && err_h.is_finished()
        {
            let join = |h: std::thread::JoinHandle<std::io::Result<Vec<u8>>>| {
                h.join()
                    .unwrap_or_else(|_| Err(std::io::Error::other("output reader panicked")))
            };
            let stdout = join(out_h).map_err(LimitFail::Io)?;
            let stderr = join(err_h).map_err(LimitFail::Io)?;
            if out_over.load(Ordering::SeqCst) {
                return Err(LimitFail::TooLarge("stdout"));
            }
            if err_over.load(Ordering::SeqCst) {
                return Err(LimitFail::TooLarge("stderr"));
            }
            return Ok(Captured {
                status: st,
                stdout,
                stderr,
            });
        }
        std::thread::sleep(POLL);
    }
}

/// An external command run through `sh -c` per clip (see the module documentation for how the
/// audio path reaches it and the limits that apply).
pub struct CmdSystem {
    info: SystemInfo,
    template: String,
    script: String,
    limits: ExternalLimits,
}

impl CmdSystem {
    /// `template` must contain `{audio}` ([`SystemSpec::parse`] checks); `limits` bound each
    /// clip's run.
    pub fn new(template: &str, limits: ExternalLimits) -> Self {
        CmdSystem {
            info: SystemInfo {
                kind: "cmd".into(),
                backend: format!("external command: {template}"),
                ..Default::default()
            },
            template: template.to_string(),
            script: cmd_script(template).0,
            limits,
        }
    }
}

impl System for CmdSystem {
    fn info(&self) -> &SystemInfo {
        &self.info
    }
    fn transcribe(&mut self, entry: &ManifestEntry) -> Result<Transcription, EvalError> {
        let cmd = self.template.clone();
        let timeout = self.limits.timeout_for(entry.duration_s.unwrap_or(0.0));
        let mut command = std::process::Command::new("sh");
        command
            .arg("-c")
            .arg(&self.script)
            .arg("sh")
            .arg(cmd_arg(&entry.path));
        let out = match run_limited(&mut command, timeout, self.limits.max_output) {
            Ok(o) => o,
            Err(LimitFail::Io(source)) => return Err(EvalError::CmdStart { cmd, source }),
            Err(LimitFail::Timeout) => {
                return Err(EvalError::CmdTimeout {
                    cmd,
                    seconds: timeout.as_secs_f64(),
                });
            }
            Err(LimitFail::TooLarge(stream)) => {
                return Err(EvalError::CmdOutputTooLarge {
                    cmd,
                    stream,
                    limit: self.limits.max_output,
                });
            }
        };
        if !out.status.success() {
            return Err(EvalError::CmdFailed {
                cmd,
                status: out.status,
                stderr: excerpt(&out.stderr),
            });
        }
        let text =
            String::from_utf8(out.stdout).map_err(|source| EvalError::CmdUtf8 { cmd, source })?;
        Ok(Transcription {
            text: text.trim().to_string(),
            audio_s: None,
        })
    }
}

// ---------------------------------------------------------------------------------------------
// http:URL

/// An OpenAI-compatible `/v1/audio/transcriptions` endpoint (vLLM serves Voxtral this way).
/// Sends `multipart/form-data` with the audio as `file`, the model name under
/// [`HttpOptions::model_field`] and [`HttpOptions::response_format`]; for `json` and
/// `verbose_json` expects one JSON object with a string `text`, for `text` takes the body.
/// Time, size and retry limits: see the module documentation.
pub struct HttpSystem {
    info: SystemInfo,
    url: String,
    model: String,
    options: HttpOptions,
    agent: ureq::Agent,
    limits: ExternalLimits,
}

impl HttpSystem {
    /// `url` is the full endpoint URL; `default_model` the model value sent unless
    /// `options.model` names one; `limits` bound each clip's requests.
    pub fn new(
        url: &str,
        default_model: &str,
        options: &HttpOptions,
        limits: ExternalLimits,
    ) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let model = options.model.as_deref().unwrap_or(default_model);
        HttpSystem {
            info: SystemInfo {
                kind: "http".into(),
                model_path: Some(model.to_string()),
                backend: format!(
                    "OpenAI-compatible endpoint {url} ({}={model}, response_format={})",
                    options.model_field,
                    options.response_format.name()
                ),
                ..Default::default()
            },
            url: url.to_string(),
            model: model.to_string(),
            options: options.clone(),
            agent,
            limits,
        }
    }

    /// One POST of `body` with at most `budget` for the whole exchange; returns the status and
    /// the body (at most [`ExternalLimits::max_output`] bytes).
    fn post_once(
        &self,
        ct: &str,
        body: &[u8],
        budget: Duration,
    ) -> Result<(ureq::http::StatusCode, Vec<u8>), ureq::Error> {
        let mut resp = self
            .agent
            .post(&self.url)
            .config()
            .timeout_global(Some(budget))
            .build()
            .header("Content-Type", ct)
            .send(body)?;
        let status = resp.status();
        let limit = u64::try_from(self.limits.max_output).unwrap_or(u64::MAX);
        let bytes = resp.body_mut().with_config().limit(limit).read_to_vec()?;
        Ok((status, bytes))
    }

    /// Map a client error to an [`EvalError`] (`timeout` is the clip's time limit).
    fn send_error(&self, e: ureq::Error, timeout: Duration) -> EvalError {
        match e {
            ureq::Error::Timeout(_) => EvalError::HttpTimeout {
                url: self.url.clone(),
                seconds: timeout.as_secs_f64(),
            },
            ureq::Error::BodyExceedsLimit(_) => EvalError::HttpBodyTooLarge {
                url: self.url.clone(),
                limit: self.limits.max_output,
            },
            e => EvalError::HttpSend {
                url: self.url.clone(),
                source: Box::new(e),
            },
        }
    }
}

/// Whether a failed request is worth retrying: the connection could not be made or was dropped
/// before an answer.
fn retryable(e: &ureq::Error) -> bool {
    use std::io::ErrorKind as K;
    match e {
        ureq::Error::ConnectionFailed => true,
        ureq::Error::Io(io) => matches!(
            io.kind(),
            K::ConnectionRefused
                | K::ConnectionReset
                | K::ConnectionAborted
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::NotConnected
        ),
        _ => false,
    }
}

/// The transcript in an `http:` answer `body`: one complete JSON object with a string `text`.
///
/// # Errors
/// [`EvalError::HttpNotJson`] (not UTF-8, not JSON, truncated JSON, trailing text, not an
/// object) or [`EvalError::HttpNoText`] (no `text`, or `text` not a string), quoting at most
/// [`ERROR_EXCERPT`] bytes of the body.
pub fn parse_http_answer(url: &str, body: &[u8]) -> Result<String, EvalError> {
    let not_json = |problem: String| EvalError::HttpNotJson {
        url: url.to_string(),
        problem,
        body: excerpt(body),
    };
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| not_json(format!("not JSON ({e})")))?;
    let Some(obj) = v.as_object() else {
        return Err(not_json("JSON but not an object".into()));
    };
    match obj.get("text") {
        Some(serde_json::Value::String(t)) => Ok(t.clone()),
        _ => Err(EvalError::HttpNoText {
            url: url.to_string(),
            body: excerpt(body),
        }),
    }
}

/// The transcript in an `http:` answer asked for with `response_format=text`: the body,
/// UTF-8.
///
/// # Errors
/// [`EvalError::HttpNotJson`] (the body is not UTF-8) quoting at most
/// [`ERROR_EXCERPT`] bytes of the body.
pub fn parse_text_answer(url: &str, body: &[u8]) -> Result<String, EvalError> {
    String::from_utf8(body.to_vec()).map_err(|e| EvalError::HttpNotJson {
        url: url.to_string(),
        problem: format!("not UTF-8 text (asked for response_format=text; {e})"),
        body: excerpt(body),
    })
}

/// Build a `multipart/form-data` body with text `fields` and one file part `file`
/// (`application/octet-stream`); returns `(content_type, body)`.
pub fn multipart_body(fields: &[(&str, &str)], filename: &str, file: &[u8]) -> (String, Vec<u8>) {
    let boundary = format!("voxtrace-{}", hex(&Sha256::digest(file)[..12]));
    let mut b = Vec::with_capacity(file.len() + 512);
    for (k, v) in fields {
        b.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
                .as_bytes(),
        );
    }
    let fname = filename.replace(['"', '\r', '\n'], "_");
    b.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{fname}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    b.extend_from_slice(file);
    b.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), b)
}

impl System for HttpSystem {
    fn info(&self) -> &SystemInfo {
        &self.info
    }
    fn transcribe(&mut self, entry: &ManifestEntry) -> Result<Transcription, EvalError> {
        let timeout = self.limits.timeout_for(entry.duration_s.unwrap_or(0.0));
        let deadline = std::time::Instant::now() + timeout;
        let bytes =
            std::fs::read(&entry.path).map_err(FileError::io(&entry.path, "cannot read audio"))?;
        let fname = entry
            .path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| "audio.wav".into());
        let (ct, body) = multipart_body(
            &[
                (&self.options.model_field, &self.model),
                ("response_format", self.options.response_format.name()),
            ],
            &fname,
            &bytes,
        );
        let mut wait = self.limits.backoff;
        let mut attempt = 0u32;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(EvalError::HttpTimeout {
                    url: self.url.clone(),
                    seconds: timeout.as_secs_f64(),
                });
            }
            let retry_err = match self.post_once(&ct, &body, left) {
                Ok((status, text)) if status.is_success() => {
                    let t = match self.options.response_format {
                        HttpFormat::Json | HttpFormat::VerboseJson => {
                            parse_http_answer(&self.url, &text)?
                        }
                        HttpFormat::Text => parse_text_answer(&self.url, &text)?,
                    };
                    return Ok(Transcription {
                        text: t.trim().to_string(),
                        audio_s: None,
                    });
                }
                Ok((status, text)) => {
                    let e = EvalError::HttpStatus {
                        url: self.url.clone(),
                        status,
                        body: excerpt(&text),
                    };
                    if !status.is_server_error() {
                        return Err(e);
                    }
                    e
                }
                Err(e) if retryable(&e) => self.send_error(e, timeout),
                Err(e) => return Err(self.send_error(e, timeout)),
            };
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if attempt >= self.limits.retries || wait >= left {
                return Err(retry_err);
            }
            std::thread::sleep(wait);
            wait = wait.saturating_mul(2);
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_specs_with_options() {
        let s = SystemSpec::parse("a=http:http://h:1/v1/audio/transcriptions").unwrap();
        assert_eq!(
            s.kind,
            SystemKind::Http {
                url: "http://h:1/v1/audio/transcriptions".into(),
                options: HttpOptions::default(),
            }
        );
        let s = SystemSpec::parse(
            "fws=http[model_field=model_name, model=Systran/faster-whisper-tiny.en,response_format=verbose_json]:http://h:1/x",
        )
        .unwrap();
        assert_eq!(
            s.kind,
            SystemKind::Http {
                url: "http://h:1/x".into(),
                options: HttpOptions {
                    model_field: "model_name".into(),
                    model: Some("Systran/faster-whisper-tiny.en".into()),
                    response_format: HttpFormat::VerboseJson,
                },
            }
        );
        let t = SystemSpec::parse("t=http[response_format=text]:https://h/x").unwrap();
        assert!(matches!(
            t.kind,
            SystemKind::Http {
                options: HttpOptions {
                    response_format: HttpFormat::Text,
                    ..
                },
                ..
            }
        ));
        for (bad, needle) in [
            (
                "a=http[model_field=model_name]http://h/x",
                "followed by :URL",
            ),
            ("a=http[format=json]:http://h/x", "unknown http option"),
            (
                "a=http[response_format=srt]:http://h/x",
                "expected json, verbose_json or text",
            ),
            ("a=http[model=a,model=b]:http://h/x", "twice"),
            ("a=http[model_field=]:http://h/x", "must be ASCII"),
            ("a=http[model_field=a b]:http://h/x", "must be ASCII"),
            ("a=http[model]:http://h/x", "KEY=VALUE"),
            ("a=http[model=m]:ftp://h/x", "full URL"),
        ] {
            let e = SystemSpec::parse(bad).unwrap_err().to_string();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn text_answers() {
        assert_eq!(parse_text_answer("u", b" hello\n").unwrap(), " hello\n");
        assert!(parse_text_answer("u", &[0xff, 0xfe]).is_err());
    }
}
