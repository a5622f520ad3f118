//! OpenAI's audio transcription API (`POST /v1/audio/transcriptions`), `GET /v1/models`,
//! `GET /health`, and the error shape every route answers with.
//!
//! The transcription form, as OpenAI defines it
//! (<https://platform.openai.com/docs/api-reference/audio/createTranscription>):
//!
//! | field | accepted |
//! |---|---|
//! | `file` | required: audio in any format voxtrace decodes (WAV, FLAC, MP3, OGG/Vorbis) |
//! | `model` | a served model id (`GET /v1/models`); may be left out when one model is served |
//! | `response_format` | `json` (default: `{"text": ...}`), `text`, `verbose_json`, `srt`, `vtt` |
//! | `language` | Whisper: `en` / `english` only (the port decodes with the English-only prompt); Voxtral: any (the model does not take one, it is echoed in `verbose_json`) |
//! | `temperature` | `0` only (greedy decoding); anything else is a 400 |
//! | `prompt` | empty only; a prompt is a 400 (not supported) |
//! | `stream` | `false` only |
//! | `timestamp_granularities[]` | `segment` only |
//!
//! Other fields are ignored. `verbose_json`, `srt` and `vtt` come from the transcript's
//! segments: Whisper above 30 s is decoded long-form with timestamps, one segment per decoded
//! segment; Whisper up to 30 s (short-form decode, no timestamps) and Voxtral give one segment
//! for the whole audio. `verbose_json` segments carry `id`, `seek` (start of the window the
//! segment was decoded from, in 10 ms mel frames), `start`, `end`, `text`, `tokens` and
//! `temperature`, plus `avg_logprob` and `no_speech_prob` where the decode computes them
//! (Whisper long-form); OpenAI's `compression_ratio` is left out (not computed).

use std::path::Path;
use std::sync::Arc;

use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::models::ServedTranscript;
use super::{AppState, ModelFamily, ServeError};
use crate::audio::AudioError;

/// An error answer in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human-readable cause.
    pub message: String,
    /// The request field concerned, if any.
    pub param: Option<&'static str>,
    /// Machine-readable code (`invalid_file`, `model_not_found`, ...).
    pub code: &'static str,
}

impl ApiError {
    /// A 400 about `param`.
    pub fn bad(
        param: Option<&'static str>,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            param,
            code,
        }
    }

    /// A 429: every admission place is taken.
    pub fn busy(limits: &super::limits::Limits) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            message: format!(
                "server busy: {} requests are running or queued (at most {} at once, {} worker(s)); retry later",
                limits.admitted(),
                limits.max_admitted(),
                limits.workers()
            ),
            param: None,
            code: "rate_limit_exceeded",
        }
    }

    /// OpenAI's `type`: `invalid_request_error` for 4xx, `rate_limit_error` for 429,
    /// `server_error` for 5xx.
    pub fn kind(&self) -> &'static str {
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            "rate_limit_error"
        } else if self.status.is_server_error() {
            "server_error"
        } else {
            "invalid_request_error"
        }
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        if self.status == StatusCode::TOO_MANY_REQUESTS {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        r
    }
}

/// `GET /health`: `{"status": "ok", "models", "admitted", "max_admitted", "busy_workers",
/// "workers"}`.
pub async fn health(State(state): State<Arc<AppState>>) -> Response {
    let l = &state.limits;
    axum::Json(json!({
        "status": "ok",
        "models": state.models.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        "admitted": l.admitted(),
        "max_admitted": l.max_admitted(),
        "busy_workers": l.busy_workers(),
        "workers": l.workers(),
    }))
    .into_response()
}

/// `GET /v1/models`: `{"object": "list", "data": [{"id", "object": "model", "created",
/// "owned_by": "voxtrace", "family"}]}`.
pub async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let data: Vec<serde_json::Value> = state
        .models
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "object": "model",
                "created": m.created,
                "owned_by": "voxtrace",
                "family": m.model.family().name(),
            })
        })
        .collect();
    axum::Json(json!({"object": "list", "data": data})).into_response()
}

/// Any other route: 404 in the error shape.
pub async fn not_found(uri: axum::http::Uri) -> Response {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: format!("no route {}", uri.path()),
        param: None,
        code: "not_found",
    }
    .into_response()
}

/// Response formats of the transcription endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseFormat {
    /// `{"text": ...}`.
    Json,
    /// The text and a newline, `text/plain`.
    Text,
    /// `{"task", "language", "duration", "text", "segments"}`.
    VerboseJson,
    /// SubRip.
    Srt,
    /// WebVTT.
    Vtt,
}

impl ResponseFormat {
    /// Parse OpenAI's name.
    ///
    /// # Errors
    /// A 400 naming the accepted values.
    pub fn parse(s: &str) -> Result<Self, ApiError> {
        Ok(match s {
            "json" => ResponseFormat::Json,
            "text" => ResponseFormat::Text,
            "verbose_json" => ResponseFormat::VerboseJson,
            "srt" => ResponseFormat::Srt,
            "vtt" => ResponseFormat::Vtt,
            other => {
                return Err(ApiError::bad(
                    Some("response_format"),
                    "invalid_value",
                    format!(
                        "response_format {other:?} is not one of json, text, verbose_json, srt, vtt"
                    ),
                ));
            }
        })
    }
}

/// Most bytes of a text form field.
const MAX_TEXT_FIELD: usize = 64 << 10;

/// The parsed form (the file already on disk).
struct Form {
    upload: Option<Upload>,
    model: Option<String>,
    response_format: Option<String>,
    language: Option<String>,
    temperature: Option<String>,
    prompt: Option<String>,
    stream: Option<String>,
    granularities: Vec<String>,
}

/// The uploaded file in a private temporary folder (removed when dropped).
struct Upload {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    /// The client's file name (for messages).
    name: String,
    bytes: u64,
}

/// A multipart error: 413 when the body passed the upload limit, else 400.
fn multipart_error(e: axum::extract::multipart::MultipartError, limit: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!("request body exceeds the upload limit of {limit} bytes"),
            param: Some("file"),
            code: "file_too_large",
        }
    } else {
        ApiError::bad(
            None,
            "invalid_multipart",
            format!("malformed multipart/form-data body: {}", e.body_text()),
        )
    }
}

/// Read a text field, at most [`MAX_TEXT_FIELD`] bytes.
async fn text_field(
    mut field: Field<'_>,
    name: &'static str,
    limit: usize,
) -> Result<String, ApiError> {
    let mut buf = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        buf.extend_from_slice(&chunk);
        if buf.len() > MAX_TEXT_FIELD {
            return Err(ApiError::bad(
                Some(name),
                "invalid_value",
                format!("field {name} is longer than {MAX_TEXT_FIELD} bytes"),
            ));
        }
    }
    String::from_utf8(buf)
        .map(|s| s.trim().to_string())
        .map_err(|_| {
            ApiError::bad(
                Some(name),
                "invalid_value",
                format!("field {name} is not UTF-8"),
            )
        })
}

/// A file extension kept from the client's file name for the decoder's format hint: ASCII
/// letters and digits, at most 8; anything else is dropped (the name never reaches a path).
fn safe_extension(name: &str) -> Option<String> {
    let ext = Path::new(name).extension()?.to_str()?;
    (!ext.is_empty() && ext.len() <= 8 && ext.chars().all(|c| c.is_ascii_alphanumeric()))
        .then(|| ext.to_ascii_lowercase())
}

/// Stream the `file` part to a temporary file.
async fn save_upload(mut field: Field<'_>, limit: usize) -> Result<Upload, ApiError> {
    use tokio::io::AsyncWriteExt;
    let io_err = |e: std::io::Error| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: format!("cannot store the upload: {e}"),
        param: None,
        code: "server_error",
    };
    let name = field.file_name().unwrap_or("audio").to_string();
    let dir = tempfile::Builder::new()
        .prefix("voxtrace-serve-")
        .tempdir()
        .map_err(io_err)?;
    let fname = match safe_extension(&name) {
        Some(ext) => format!("upload.{ext}"),
        None => "upload".to_string(),
    };
    let path = dir.path().join(fname);
    let mut f = tokio::fs::File::create(&path).await.map_err(io_err)?;
    let mut bytes = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| multipart_error(e, limit))? {
        bytes += chunk.len() as u64;
        f.write_all(&chunk).await.map_err(io_err)?;
    }
    f.flush().await.map_err(io_err)?;
    Ok(Upload {
        _dir: dir,
        path,
        name,
        bytes,
    })
}

/// Read the whole form.
async fn read_form(mut mp: Multipart, limit: usize) -> Result<Form, ApiError> {
    let mut form = Form {
        upload: None,
        model: None,
        response_format: None,
        language: None,
        temperature: None,
        prompt: None,
        stream: None,
        granularities: Vec::new(),
    };
    while let Some(field) = mp
        .next_field()
        .await
        .map_err(|e| multipart_error(e, limit))?
    {
        let name = field.name().unwrap_or("").to_string();
        match name.as_str() {
            "file" => {
                if form.upload.is_some() {
                    return Err(ApiError::bad(
                        Some("file"),
                        "invalid_value",
                        "more than one file part",
                    ));
                }
                form.upload = Some(save_upload(field, limit).await?);
            }
            "model" => form.model = Some(text_field(field, "model", limit).await?),
            "response_format" => {
                form.response_format = Some(text_field(field, "response_format", limit).await?);
            }
            "language" => form.language = Some(text_field(field, "language", limit).await?),
            "temperature" => {
                form.temperature = Some(text_field(field, "temperature", limit).await?);
            }
            "prompt" => form.prompt = Some(text_field(field, "prompt", limit).await?),
            "stream" => form.stream = Some(text_field(field, "stream", limit).await?),
            "timestamp_granularities[]" | "timestamp_granularities" => form
                .granularities
                .push(text_field(field, "timestamp_granularities[]", limit).await?),
            // Other fields are read and ignored (drained by the next `next_field`).
            _ => {}
        }
    }
    Ok(form)
}

/// An [`ServeError`] of one transcription as an answer: bad audio is the client's (400,
/// `param: file`, the message naming the upload by the client's file name), the rest is the
/// server's (500).
fn transcription_error(e: ServeError, upload: &Upload) -> ApiError {
    let tmp = upload.path.display().to_string();
    let msg = e.to_string().replace(&tmp, &upload.name);
    match e {
        ServeError::Audio(AudioError::Io { .. }) => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: msg,
            param: None,
            code: "server_error",
        },
        ServeError::Audio(_) => ApiError::bad(Some("file"), "invalid_file", msg),
        _ => ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: msg,
            param: None,
            code: "server_error",
        },
    }
}

/// The answer for `t` in `format`; `language` is echoed in `verbose_json`.
pub fn render(t: &ServedTranscript, format: ResponseFormat, language: Option<&str>) -> Response {
    let plain =
        |body: String, ct: &'static str| ([(header::CONTENT_TYPE, ct)], body).into_response();
    match format {
        ResponseFormat::Json => axum::Json(json!({"text": t.text})).into_response(),
        ResponseFormat::Text => plain(format!("{}\n", t.text), "text/plain; charset=utf-8"),
        ResponseFormat::Srt => plain(
            super::subtitles::srt(&t.segments),
            "text/plain; charset=utf-8",
        ),
        ResponseFormat::Vtt => plain(
            super::subtitles::vtt(&t.segments),
            "text/vtt; charset=utf-8",
        ),
        ResponseFormat::VerboseJson => {
            let segments: Vec<serde_json::Value> = t
                .segments
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut seg = json!({
                        "id": i,
                        "seek": (s.seek_s * 100.0).round() as u64,
                        "start": s.start_s,
                        "end": s.end_s,
                        "text": s.text,
                        "tokens": s.tokens,
                        "temperature": 0.0,
                    });
                    for (key, value) in [
                        ("avg_logprob", s.avg_logprob),
                        ("no_speech_prob", s.no_speech_prob),
                    ] {
                        if let Some(v) = value {
                            seg[key] = json!(v);
                        }
                    }
                    seg
                })
                .collect();
            axum::Json(json!({
                "task": "transcribe",
                "language": language,
                "duration": t.duration_s,
                "text": t.text,
                "segments": segments,
            }))
            .into_response()
        }
    }
}

/// Whether `language` is English as OpenAI and Whisper name it.
fn is_english(language: &str) -> bool {
    matches!(language.to_ascii_lowercase().as_str(), "en" | "english")
}

/// `POST /v1/audio/transcriptions` (see the module docs).
pub async fn transcriptions(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let limit = state.config.max_upload_bytes;
    // A declared body above the limit is refused before anything is read or admitted.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return ApiError {
            status: StatusCode::PAYLOAD_TOO_LARGE,
            message: format!(
                "request body of {} bytes exceeds the upload limit of {limit} bytes",
                declared.unwrap_or(0)
            ),
            param: Some("file"),
            code: "file_too_large",
        }
        .into_response();
    }
    let Some(_admission) = state.limits.try_admit() else {
        return ApiError::busy(&state.limits).into_response();
    };
    let timeout = state.config.request_timeout;
    match tokio::time::timeout(timeout, handle(state.clone(), multipart)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(_) => ApiError {
            status: StatusCode::GATEWAY_TIMEOUT,
            message: format!(
                "the request took longer than the server's limit of {:.0} s",
                timeout.as_secs_f64()
            ),
            param: None,
            code: "timeout",
        }
        .into_response(),
    }
}

async fn handle(
    state: Arc<AppState>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Response, ApiError> {
    let limit = state.config.max_upload_bytes;
    let mp = multipart.map_err(|e| {
        ApiError::bad(
            None,
            "invalid_multipart",
            format!(
                "expected a multipart/form-data body with a file part: {}",
                e.body_text()
            ),
        )
    })?;
    let form = read_form(mp, limit).await?;
    let entry = match &form.model {
        Some(id) if !id.is_empty() => state.model(id).ok_or_else(|| ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "the model {id:?} does not exist; served: {}",
                state
                    .models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            param: Some("model"),
            code: "model_not_found",
        })?,
        _ if state.models.len() == 1 => &state.models[0],
        _ => {
            return Err(ApiError::bad(
                Some("model"),
                "missing_required_parameter",
                "field model is required when more than one model is served",
            ));
        }
    };
    let format = ResponseFormat::parse(form.response_format.as_deref().unwrap_or("json"))?;
    if let Some(t) = form.temperature.as_deref().filter(|t| !t.is_empty()) {
        match t.parse::<f64>() {
            Ok(0.0) => {}
            _ => {
                return Err(ApiError::bad(
                    Some("temperature"),
                    "unsupported_value",
                    format!(
                        "temperature {t:?} is not supported: decoding is greedy, only 0 is accepted"
                    ),
                ));
            }
        }
    }
    if form.prompt.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(ApiError::bad(
            Some("prompt"),
            "unsupported_parameter",
            "prompt is not supported by this server",
        ));
    }
    if form
        .stream
        .as_deref()
        .is_some_and(|s| !s.is_empty() && !s.eq_ignore_ascii_case("false"))
    {
        return Err(ApiError::bad(
            Some("stream"),
            "unsupported_parameter",
            "stream is not supported on this endpoint (use the /v1/realtime websocket)",
        ));
    }
    if let Some(g) = form.granularities.iter().find(|g| g.as_str() != "segment") {
        return Err(ApiError::bad(
            Some("timestamp_granularities[]"),
            "unsupported_value",
            format!("timestamp granularity {g:?} is not supported (only segment)"),
        ));
    }
    let language = form.language.as_deref().filter(|l| !l.is_empty());
    if entry.model.family() == ModelFamily::Whisper && language.is_some_and(|l| !is_english(l)) {
        return Err(ApiError::bad(
            Some("language"),
            "unsupported_value",
            format!(
                "model {} decodes English only; language {:?} is not supported",
                entry.id,
                language.unwrap_or_default()
            ),
        ));
    }
    let Some(upload) = form.upload else {
        return Err(ApiError::bad(
            Some("file"),
            "missing_required_parameter",
            "no file part in the form",
        ));
    };
    if upload.bytes == 0 {
        return Err(ApiError::bad(
            Some("file"),
            "invalid_file",
            format!("{}: the uploaded file is empty (0 bytes)", upload.name),
        ));
    }
    let permit = state.limits.worker().await;
    let model = entry.model.clone();
    // The upload moves into the computation, so its file outlives a timed-out request.
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let r = model.transcribe_file(&upload.path);
        (r, upload)
    })
    .await;
    let t = match result {
        Ok((Ok(t), _)) => t,
        Ok((Err(e), upload)) => return Err(transcription_error(e, &upload)),
        Err(e) => {
            return Err(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("the transcription task failed: {e}"),
                param: None,
                code: "server_error",
            });
        }
    };
    let language = language
        .map(str::to_string)
        .or_else(|| (entry.model.family() == ModelFamily::Whisper).then(|| "english".to_string()));
    Ok(render(&t, format, language.as_deref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_sanitised() {
        assert_eq!(safe_extension("a.WAV").as_deref(), Some("wav"));
        assert_eq!(safe_extension("a.tar.gz").as_deref(), Some("gz"));
        assert_eq!(safe_extension("x.w/v"), None);
        assert_eq!(safe_extension("../../etc/passwd"), None);
        assert_eq!(safe_extension("a.$(rm)"), None);
        assert_eq!(safe_extension("noext"), None);
    }

    #[test]
    fn formats_and_error_shape() {
        assert_eq!(ResponseFormat::parse("srt").unwrap(), ResponseFormat::Srt);
        let e = ResponseFormat::parse("xml").unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        let b = e.body();
        assert_eq!(b["error"]["type"], "invalid_request_error");
        assert_eq!(b["error"]["param"], "response_format");
    }
}
