//! `voxtrace serve`: an OpenAI-compatible transcription server (axum on tokio).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/audio/transcriptions` | OpenAI's transcription endpoint ([`openai`]): multipart `file`, `model`, `response_format` (`json`, `text`, `verbose_json`, `srt`, `vtt`), `language`, `temperature` (0 only) |
//! | `GET /v1/models` | the served models in OpenAI's list format |
//! | `GET /health` | `{"status": "ok", ...}` with the admission counters |
//! | `GET /v1/realtime` | websocket, vLLM's realtime transcription protocol for Voxtral ([`realtime`]) |
//!
//! Every error answer is OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
//! with a 4xx status for a bad request and 5xx for a failure of the server.
//!
//! ## Limits ([`ServeConfig`])
//!
//! * **Upload size:** a request body above [`ServeConfig::max_upload_bytes`] is refused with
//!   413 (from its `Content-Length` before anything is read, else when the stream passes the
//!   limit). Uploads are streamed to a temporary file, not held in memory.
//! * **Admission:** at most [`ServeConfig::workers`] transcriptions run at once (each on a
//!   blocking thread of tokio's pool, never on the async executor) and at most
//!   [`ServeConfig::max_queue`] more wait; a request beyond that gets 429 at once. A realtime
//!   websocket counts as one admitted request for as long as it is open, and holds a worker
//!   while an utterance is being transcribed.
//! * **Time:** a transcription request (upload, wait and inference) that takes longer than
//!   [`ServeConfig::request_timeout`] gets 504. Inference cannot be interrupted: a timed-out
//!   computation runs to its end on its worker (which stays taken) and its result is dropped.
//! * **Shutdown:** SIGTERM or Ctrl-C stops accepting connections, lets requests in progress
//!   finish (for at most [`ServeConfig::shutdown_grace`]), then the process exits; open
//!   realtime websockets are closed.

pub mod limits;
pub mod models;
pub mod openai;
pub mod realtime;
pub mod subtitles;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};

use crate::audio::AudioError;
pub use models::{LoadedModel, ModelEntry, ModelFamily, ServedTranscript, parse_model_arg};

/// Errors of the server: loading, binding, and the failures of one request (mapped to HTTP
/// answers by [`openai::ApiError`]).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A `--model` argument is ill-formed.
    #[error("--model {arg:?}: {problem}")]
    BadModelArg {
        /// The argument as given.
        arg: String,
        /// What is wrong.
        problem: String,
    },
    /// Two models were given the same id.
    #[error("model id {0:?} is given twice; name them NAME=DIR")]
    DuplicateId(String),
    /// No model to serve.
    #[error("no --model given")]
    NoModels,
    /// A model folder could not be loaded.
    #[error("{path}: cannot load model: {cause}")]
    Load {
        /// Folder.
        path: PathBuf,
        /// Cause.
        cause: String,
    },
    /// The address cannot be bound or served.
    #[error("cannot serve on {addr}: {source}")]
    Bind {
        /// Address asked for.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
    /// The async runtime or the signal handlers could not start.
    #[error("cannot start the async runtime or its signal handlers: {0}")]
    Runtime(std::io::Error),
    /// An upload is not usable audio.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// The model failed on its input.
    #[error("inference failed: {0}")]
    Inference(String),
    /// A request needs another model family (e.g. realtime on Whisper).
    #[error("this needs {0}")]
    WrongFamily(&'static str),
}

/// What `voxtrace serve` runs with.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// `(id, folder)` of each model, in the order given.
    pub models: Vec<(String, PathBuf)>,
    /// Address to listen on (`127.0.0.1`).
    pub host: String,
    /// Port (0: any free port; the bound address is printed on stdout).
    pub port: u16,
    /// Burn device name (`flex`, `ndarray`, `wgpu`).
    pub device: String,
    /// Voxtral transcription delay, ms.
    pub delay_ms: f64,
    /// Largest request body (and realtime utterance of PCM16), bytes.
    pub max_upload_bytes: usize,
    /// Transcriptions run at once.
    pub workers: usize,
    /// Admitted requests waiting for a worker, beyond which requests get 429.
    pub max_queue: usize,
    /// Time limit of one transcription request.
    pub request_timeout: Duration,
    /// Longest wait for requests in progress after SIGTERM / Ctrl-C.
    pub shutdown_grace: Duration,
}

impl ServeConfig {
    /// Default upload limit: 100 MiB.
    pub const DEFAULT_MAX_UPLOAD: usize = 100 << 20;
}

/// Shared state of the handlers.
pub struct AppState {
    /// Served models by id, in the order given.
    pub models: Vec<ModelEntry>,
    /// Admission and worker limits.
    pub limits: limits::Limits,
    /// The configuration.
    pub config: ServeConfig,
}

impl AppState {
    /// The model named `id`.
    pub fn model(&self, id: &str) -> Option<&ModelEntry> {
        self.models.iter().find(|m| m.id == id)
    }
}

/// Load every model of `config` on its device.
///
/// # Errors
/// No models, a duplicate id, an unknown device, a folder that cannot be loaded.
pub fn load_models(config: &ServeConfig) -> Result<Vec<ModelEntry>, ServeError> {
    if config.models.is_empty() {
        return Err(ServeError::NoModels);
    }
    let device = crate::backend::device(&config.device).map_err(|e| ServeError::Load {
        path: PathBuf::from(&config.device),
        cause: e.to_string(),
    })?;
    let mut out: Vec<ModelEntry> = Vec::new();
    for (id, dir) in &config.models {
        if out.iter().any(|m| &m.id == id) {
            return Err(ServeError::DuplicateId(id.clone()));
        }
        let model = LoadedModel::load(dir, &device, config.delay_ms)?;
        let created = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        out.push(ModelEntry {
            id: id.clone(),
            dir: dir.clone(),
            created,
            model: Arc::new(model),
        });
    }
    Ok(out)
}

/// The router over `state` (every route of the module table).
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_upload_bytes;
    Router::new()
        .route("/health", get(openai::health))
        .route("/v1/models", get(openai::list_models))
        .route(
            "/v1/audio/transcriptions",
            post(openai::transcriptions)
                // Applied to the multipart stream as it is read (413 past it).
                .layer(axum::extract::DefaultBodyLimit::max(limit)),
        )
        .route("/v1/realtime", get(realtime::upgrade))
        .fallback(openai::not_found)
        .with_state(state)
}

/// SIGTERM and SIGINT (Ctrl-C) handlers, installed when made (so a signal that comes before
/// [`Signals::recv`] is polled is not lost, nor does it kill the process).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Signals {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals {})
    }

    /// Resolves on the first SIGTERM or SIGINT.
    async fn recv(mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => {},
                _ = self.int.recv() => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Load the models, bind, print `listening on http://ADDR` on stdout (one line, flushed; with
/// port 0 this is how a caller learns the port), serve until SIGTERM / Ctrl-C, then shut down
/// gracefully (see the module docs). Returns once the server has stopped.
///
/// # Errors
/// [`load_models`]' errors, an address that cannot be bound, a runtime that cannot start.
pub fn run(config: ServeConfig) -> Result<(), ServeError> {
    let models = load_models(&config)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(ServeError::Runtime)?;
    let grace = config.shutdown_grace;
    let result = rt.block_on(serve(config, models));
    // Computations still running after the grace period are abandoned with the process.
    rt.shutdown_timeout(grace);
    result
}

async fn serve(config: ServeConfig, models: Vec<ModelEntry>) -> Result<(), ServeError> {
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local: SocketAddr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let signals = Signals::install().map_err(ServeError::Runtime)?;
    let grace = config.shutdown_grace;
    let state = Arc::new(AppState {
        limits: limits::Limits::new(config.workers, config.max_queue),
        models,
        config,
    });
    {
        use std::io::Write;
        let ids: Vec<&str> = state.models.iter().map(|m| m.id.as_str()).collect();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "listening on http://{local} (models: {})",
            ids.join(", ")
        );
        let _ = out.flush();
    }
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let stop = state.limits.shutdown.clone();
    tokio::spawn(async move {
        signals.recv().await;
        eprintln!("voxtrace serve: shutting down (signal received)");
        stop.cancel();
        let _ = tx.send(true);
    });
    let mut rx2 = rx.clone();
    let server = axum::serve(listener, router(state.clone())).with_graceful_shutdown(async move {
        let _ = rx.wait_for(|v| *v).await;
    });
    let bounded = async {
        let _ = rx2.wait_for(|v| *v).await;
        tokio::time::sleep(grace).await;
    };
    tokio::select! {
        r = server => r.map_err(|source| ServeError::Bind { addr: local.to_string(), source })?,
        () = bounded => {
            eprintln!(
                "voxtrace serve: {} request(s) still in progress after {:.0} s; exiting",
                state.limits.admitted(),
                grace.as_secs_f64()
            );
        }
    }
    eprintln!("voxtrace serve: stopped");
    Ok(())
}
