//! `GET /v1/realtime`: streaming Voxtral transcription over a websocket, in vLLM's realtime
//! protocol (vllm-project/vllm `vllm/entrypoints/openai/realtime/{protocol,connection}.py`).
//!
//! JSON text frames both ways:
//!
//! | from | event | fields |
//! |---|---|---|
//! | server | `session.created` | `id`, `created` (sent on connect) |
//! | client | `session.update` | `model` (a served Voxtral id; may be left out when one Voxtral model is served), `temperature` (0 only), `language` (ignored) |
//! | client | `input_audio_buffer.append` | `audio`: base64 of PCM16 little-endian mono samples at 16 kHz |
//! | client | `input_audio_buffer.commit` | `final` (default false): the first commit starts transcribing what was and will be appended; `final: true` ends the audio |
//! | server | `transcription.delta` | `delta`: text decoded since the last delta |
//! | server | `transcription.done` | `text` (every delta joined), `usage` (`prompt_tokens`, `completion_tokens`, `total_tokens`) |
//! | server | `error` | `error` (message), `code` (`invalid_json`, `unknown_event`, `model_not_found`, `unsupported_model`, `model_not_validated`, `invalid_audio`, `audio_too_large`, `unsupported_value`, `processing_error`) |
//!
//! After `transcription.done` the connection takes the next utterance (append, commit ...).
//! A `final` commit without an earlier commit starts and ends the utterance at once. The text
//! equals `voxtrace transcribe` on the same samples (the same [`VoxtralStream`]). One
//! utterance holds at most [`super::ServeConfig::max_upload_bytes`] of PCM16; the connection
//! counts as one admitted request while open (a 429 answer to the upgrade when none is free)
//! and takes a worker from its first commit to its `transcription.done`.

use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::{
    Message, WebSocket, WebSocketUpgrade, rejection::WebSocketUpgradeRejection,
};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

use super::models::{LoadedModel, VoxtralStream};
use super::openai::ApiError;
use super::{AppState, ModelFamily};

/// What the connection sends its transcription worker.
enum Cmd {
    /// 16 kHz samples.
    Audio(Vec<f32>),
    /// End of the utterance's audio.
    Finish,
}

/// What a worker sends back.
enum Event {
    Delta(String),
    Done {
        text: String,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Failed(String),
}

/// The upgrade: admitted like any request (429 when full), then [`session`].
pub async fn upgrade(
    State(state): State<Arc<AppState>>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::bad(
                None,
                "websocket_required",
                format!("/v1/realtime is a websocket endpoint: {}", e.body_text()),
            )
            .into_response();
        }
    };
    let Some(admission) = state.limits.try_admit() else {
        return ApiError::busy(&state.limits).into_response();
    };
    // base64 grows 4/3; one append message carries at most one utterance.
    let max_msg = state.config.max_upload_bytes / 3 * 4 + 4096;
    ws.max_message_size(max_msg)
        .on_upgrade(move |socket| async move {
            let _admission = admission;
            session(state, socket).await;
        })
}

fn error_event(message: &str, code: &str) -> String {
    json!({"type": "error", "error": message, "code": code}).to_string()
}

/// PCM16 little-endian bytes to samples in [-1, 1) (`x / 32768`, as the WAV decoder and vLLM
/// convert them).
///
/// # Errors
/// An odd or zero number of bytes.
pub fn pcm16_to_f32(bytes: &[u8]) -> Result<Vec<f32>, String> {
    if bytes.is_empty() {
        return Err("empty audio chunk".into());
    }
    if !bytes.len().is_multiple_of(2) {
        return Err(format!(
            "{} bytes is not a whole number of PCM16 samples",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32768.0)
        .collect())
}

/// The transcription worker of one utterance, on a blocking thread.
fn worker(model: &LoadedModel, mut rx: UnboundedReceiver<Cmd>, ev: &UnboundedSender<Event>) {
    let mut stream = match VoxtralStream::new(model) {
        Ok(s) => s,
        Err(e) => {
            let _ = ev.send(Event::Failed(e.to_string()));
            return;
        }
    };
    while let Some(cmd) = rx.blocking_recv() {
        match cmd {
            Cmd::Audio(a) => {
                if stream.is_done() {
                    continue;
                }
                match stream.push(&a) {
                    Ok(d) if d.is_empty() => {}
                    Ok(d) => {
                        let _ = ev.send(Event::Delta(d));
                    }
                    Err(e) => {
                        let _ = ev.send(Event::Failed(e.to_string()));
                        return;
                    }
                }
            }
            Cmd::Finish => {
                match stream.finish() {
                    Ok(d) => {
                        if !d.is_empty() {
                            let _ = ev.send(Event::Delta(d));
                        }
                        let _ = ev.send(Event::Done {
                            text: stream.text.clone(),
                            prompt_tokens: stream.prompt_len(),
                            completion_tokens: stream.generated().len(),
                        });
                    }
                    Err(e) => {
                        let _ = ev.send(Event::Failed(e.to_string()));
                    }
                }
                return;
            }
        }
    }
    // The connection went away: the utterance is dropped.
}

/// State of one connection.
struct Conn {
    state: Arc<AppState>,
    model: Option<Arc<LoadedModel>>,
    /// Audio appended before the first commit.
    pending: Vec<f32>,
    /// PCM16 bytes of the current utterance.
    utterance_bytes: usize,
    /// The running utterance's worker.
    generation: Option<UnboundedSender<Cmd>>,
    events: UnboundedSender<Event>,
}

impl Conn {
    /// Handle one client text frame; returns the frames to send back.
    fn handle(&mut self, text: &str) -> Vec<String> {
        let Ok(ev) = serde_json::from_str::<serde_json::Value>(text) else {
            return vec![error_event("Invalid JSON", "invalid_json")];
        };
        match ev.get("type").and_then(|t| t.as_str()) {
            Some("session.update") => self.session_update(&ev),
            Some("input_audio_buffer.append") => self.append(&ev),
            Some("input_audio_buffer.commit") => self.commit(&ev),
            other => vec![error_event(
                &format!("Unknown event type: {}", other.unwrap_or("(none)")),
                "unknown_event",
            )],
        }
    }

    fn session_update(&mut self, ev: &serde_json::Value) -> Vec<String> {
        if let Some(t) = ev.get("temperature").filter(|t| !t.is_null())
            && t.as_f64() != Some(0.0)
        {
            return vec![error_event(
                &format!("temperature {t} is not supported: decoding is greedy, only 0"),
                "unsupported_value",
            )];
        }
        if self.generation.is_some() {
            return vec![error_event(
                "session.update during an utterance; send it before the first commit",
                "processing_error",
            )];
        }
        let voxtral: Vec<_> = self
            .state
            .models
            .iter()
            .filter(|m| m.model.family() == ModelFamily::Voxtral)
            .collect();
        let entry = match ev.get("model").and_then(|m| m.as_str()) {
            Some(id) => match self.state.model(id) {
                Some(e) if e.model.family() == ModelFamily::Voxtral => e,
                Some(e) => {
                    return vec![error_event(
                        &format!(
                            "model {} is {}; /v1/realtime serves Voxtral Realtime models",
                            e.id,
                            e.model.family().name()
                        ),
                        "unsupported_model",
                    )];
                }
                None => {
                    return vec![error_event(
                        &format!("The model `{id}` does not exist."),
                        "model_not_found",
                    )];
                }
            },
            None if voxtral.len() == 1 => voxtral[0],
            None => {
                return vec![error_event(
                    "session.update needs a model (a served Voxtral model id)",
                    "model_not_found",
                )];
            }
        };
        self.model = Some(entry.model.clone());
        vec![]
    }

    fn append(&mut self, ev: &serde_json::Value) -> Vec<String> {
        let Some(b64) = ev.get("audio").and_then(|a| a.as_str()) else {
            return vec![error_event(
                "input_audio_buffer.append needs a string audio",
                "invalid_audio",
            )];
        };
        let bytes = match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(b) => b,
            Err(e) => {
                return vec![error_event(
                    &format!("Invalid audio data: not base64 ({e})"),
                    "invalid_audio",
                )];
            }
        };
        let samples = match pcm16_to_f32(&bytes) {
            Ok(s) => s,
            Err(e) => {
                return vec![error_event(
                    &format!("Invalid audio data: {e}"),
                    "invalid_audio",
                )];
            }
        };
        let limit = self.state.config.max_upload_bytes;
        if self.utterance_bytes + bytes.len() > limit {
            return vec![error_event(
                &format!(
                    "the utterance exceeds the limit of {limit} bytes of PCM16; chunk dropped"
                ),
                "audio_too_large",
            )];
        }
        self.utterance_bytes += bytes.len();
        match &self.generation {
            Some(tx) => {
                let _ = tx.send(Cmd::Audio(samples));
            }
            None => self.pending.extend_from_slice(&samples),
        }
        vec![]
    }

    fn commit(&mut self, ev: &serde_json::Value) -> Vec<String> {
        let last = ev.get("final").and_then(|f| f.as_bool()).unwrap_or(false);
        let Some(model) = self.model.clone() else {
            return vec![error_event(
                "Model not validated. Make sure to validate the model by sending a session.update event.",
                "model_not_validated",
            )];
        };
        if self.generation.is_none() {
            let (tx, rx) = unbounded_channel();
            let events = self.events.clone();
            let on_panic = self.events.clone();
            let state = self.state.clone();
            tokio::spawn(async move {
                let permit = state.limits.worker().await;
                let run = tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    worker(&model, rx, &events);
                })
                .await;
                if let Err(e) = run {
                    let _ =
                        on_panic.send(Event::Failed(format!("the transcription task failed: {e}")));
                }
            });
            let pending = std::mem::take(&mut self.pending);
            if !pending.is_empty() {
                let _ = tx.send(Cmd::Audio(pending));
            }
            self.generation = Some(tx);
        }
        if last && let Some(tx) = &self.generation {
            let _ = tx.send(Cmd::Finish);
        }
        vec![]
    }

    /// A worker event as a frame; ends the utterance on done or failure.
    fn event(&mut self, ev: Event) -> String {
        match ev {
            Event::Delta(d) => json!({"type": "transcription.delta", "delta": d}).to_string(),
            Event::Done {
                text,
                prompt_tokens,
                completion_tokens,
            } => {
                self.end_utterance();
                json!({
                    "type": "transcription.done",
                    "text": text,
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                })
                .to_string()
            }
            Event::Failed(msg) => {
                self.end_utterance();
                error_event(&msg, "processing_error")
            }
        }
    }

    fn end_utterance(&mut self) {
        self.generation = None;
        self.pending.clear();
        self.utterance_bytes = 0;
    }
}

/// One websocket connection (see the module docs).
async fn session(state: Arc<AppState>, mut socket: WebSocket) {
    let (events, mut rx) = unbounded_channel();
    let shutdown = state.limits.shutdown.clone();
    let mut conn = Conn {
        state,
        model: None,
        pending: Vec::new(),
        utterance_bytes: 0,
        generation: None,
        events,
    };
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let hello = json!({
        "type": "session.created",
        "id": format!("sess-{:016x}", fastrand::u64(..)),
        "created": created,
    });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        let out: Vec<String> = tokio::select! {
            msg = socket.recv() => match msg {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(Message::Text(t))) => conn.handle(t.as_str()),
                Some(Ok(Message::Binary(_))) => vec![error_event(
                    "binary frames are not part of the protocol; send JSON text events",
                    "unknown_event",
                )],
                Some(Ok(_)) => vec![],
            },
            Some(ev) = rx.recv() => vec![conn.event(ev)],
            () = shutdown.wait() => {
                let _ = socket.send(Message::Close(None)).await;
                break;
            }
        };
        for frame in out {
            if socket.send(Message::Text(frame.into())).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm16() {
        assert_eq!(
            pcm16_to_f32(&[0, 0, 0, 0x80, 0xff, 0x7f]).unwrap(),
            vec![0.0, -1.0, 32767.0 / 32768.0]
        );
        assert!(pcm16_to_f32(&[]).is_err());
        assert!(pcm16_to_f32(&[1, 2, 3]).is_err());
    }
}
