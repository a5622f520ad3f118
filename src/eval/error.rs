//! [`EvalError`]: everything that can stop a corpus evaluation, each naming the file, system,
//! command or URL involved and the cause.

use std::path::PathBuf;

/// A boxed cause from a lower layer (audio decoding, model loading, tokenizer, decoding).
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An evaluation error. The message names what was being read, run or written; the underlying
/// cause, if any, is the [`std::error::Error::source`] ([`error_chain`] prints the whole chain).
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A file could not be read, created or appended to, or its JSON does not parse.
    #[error(transparent)]
    File(#[from] crate::io::FileError),
    /// A line of a JSON-lines file (`partial.jsonl`) does not parse.
    #[error("{}:{line}: malformed record: {cause}", path.display())]
    MalformedRecord {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The parser's error (shown in the message).
        cause: serde_json::Error,
    },
    /// A file whose content is well-formed JSON but not the expected shape.
    #[error("{}: {problem}", path.display())]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// A file could not be written (atomic write).
    #[error(transparent)]
    Write(#[from] crate::io::WriteError),
    /// The corpus manifest is unreadable or malformed (file and line named).
    #[error(transparent)]
    Manifest(#[from] super::manifest::ManifestError),
    /// An unknown or not compiled-in compute device.
    #[error(transparent)]
    Device(#[from] crate::backend::BackendError),
    /// A bad `--system NAME=SPEC` argument.
    #[error("--system {arg:?}: {problem}")]
    BadSystem {
        /// The argument as given.
        arg: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A bad `--reference-system` argument or pairing.
    #[error("{0}")]
    BadReference(String),
    /// A bad run setup: no system, a system named twice, a bad run id.
    #[error("{0}")]
    BadRun(String),
    /// The run folder already holds results or an interrupted run (and `--resume` is not set).
    #[error("{}: {problem}", path.display())]
    RunExists {
        /// `results.json`'s folder or `partial.jsonl`.
        path: PathBuf,
        /// What is there and what to do.
        problem: &'static str,
    },
    /// A system could not be opened.
    #[error("system {name:?} ({spec})")]
    OpenSystem {
        /// The system's name.
        name: String,
        /// Its SPEC.
        spec: String,
        /// Why.
        #[source]
        source: Box<EvalError>,
    },
    /// A model, tokenizer or audio file could not be loaded or decoded.
    #[error("{}: {what}", path.display())]
    Load {
        /// The folder or file.
        path: PathBuf,
        /// What failed, e.g. `cannot load the Whisper checkpoint`.
        what: &'static str,
        /// The lower layer's error.
        #[source]
        source: Cause,
    },
    /// A model failed while transcribing (preparing inputs or decoding).
    #[error(transparent)]
    Model(Cause),
    /// A `transcripts:` file has no transcript for a clip.
    #[error("no transcript for id {id:?} in {file}")]
    NoTranscript {
        /// The clip id.
        id: String,
        /// The transcripts file.
        file: String,
    },
    /// A `cmd:` command could not be started or waited for.
    #[error("cannot run sh -c {cmd:?}")]
    CmdStart {
        /// The command line.
        cmd: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// A `cmd:` command exited with a failure status.
    #[error("command {cmd:?} failed ({status}): {stderr}")]
    CmdFailed {
        /// The command line.
        cmd: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed (at most [`super::systems::ERROR_EXCERPT`] bytes of it).
        stderr: String,
    },
    /// A `cmd:` command printed something that is not UTF-8.
    #[error("command {cmd:?}: stdout is not UTF-8")]
    CmdUtf8 {
        /// The command line.
        cmd: String,
        /// The decoding error.
        #[source]
        source: std::string::FromUtf8Error,
    },
    /// An `http:` request could not be sent or got no answer (connection, timeout).
    #[error("POST {url}")]
    HttpSend {
        /// The endpoint.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// An `http:` answer's body could not be read.
    #[error("POST {url}: cannot read the response body")]
    HttpBody {
        /// The endpoint.
        url: String,
        /// The HTTP client's error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// An `http:` endpoint answered with an error status.
    #[error("POST {url} returned HTTP {status}: {body}")]
    HttpStatus {
        /// The endpoint.
        url: String,
        /// The status it answered.
        status: ureq::http::StatusCode,
        /// The answer's body, trimmed (at most [`super::systems::ERROR_EXCERPT`] bytes of it).
        body: String,
    },
    /// An `http:` endpoint answered JSON without a string `text`.
    #[error("POST {url}: JSON answer has no string \"text\": {body}")]
    HttpNoText {
        /// The endpoint.
        url: String,
        /// The answer's body (at most [`super::systems::ERROR_EXCERPT`] bytes of it).
        body: String,
    },
    /// An `http:` endpoint answered a body that is not one complete JSON object (truncated
    /// JSON, an HTML error page, plain text).
    #[error("POST {url}: answer is {problem}: {body}")]
    HttpNotJson {
        /// The endpoint.
        url: String,
        /// What is wrong, with the parser's message.
        problem: String,
        /// The answer's body (at most [`super::systems::ERROR_EXCERPT`] bytes of it).
        body: String,
    },
    /// A `cmd:` command was still running at the clip's time limit; it was killed with its
    /// process group.
    #[error("command {cmd:?} timed out after {seconds} s and was killed (see --system-timeout)")]
    CmdTimeout {
        /// The command line.
        cmd: String,
        /// The limit, seconds.
        seconds: f64,
    },
    /// A `cmd:` command printed more than the cap on stdout or stderr; it was killed.
    #[error("command {cmd:?} printed more than {limit} bytes on {stream}; killed")]
    CmdOutputTooLarge {
        /// The command line.
        cmd: String,
        /// `stdout` or `stderr`.
        stream: &'static str,
        /// The cap, bytes.
        limit: usize,
    },
    /// An `http:` request got no complete answer within the clip's time limit.
    #[error("POST {url}: no complete answer within {seconds} s (see --system-timeout)")]
    HttpTimeout {
        /// The endpoint.
        url: String,
        /// The limit, seconds.
        seconds: f64,
    },
    /// An `http:` answer's body is larger than the cap.
    #[error("POST {url}: answer body larger than {limit} bytes")]
    HttpBodyTooLarge {
        /// The endpoint.
        url: String,
        /// The cap, bytes.
        limit: usize,
    },
}

/// `e` and its chain of causes ([`std::error::Error::source`]) joined by `": "`: the text
/// recorded as a failed utterance's error, and what the command line prints.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
