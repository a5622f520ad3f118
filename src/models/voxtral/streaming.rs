//! Streaming transcription: audio in 80 ms steps (1280 samples), one decoder token per step,
//! bounded memory.
//!
//! The schedule of vLLM's `VoxtralRealtimeBuffer` (vllm-project/vllm
//! `vllm/model_executor/models/voxtral_realtime.py`) and transformers' streaming path
//! (`VoxtralRealtimeConv1dPaddingCache`, encoder/decoder caches in
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>;
//! chunks of `8 * 160 + 400 = 1680` samples with `center=False` in
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/processing_voxtral_realtime.py>):
//!
//! * the stream starts with `left_pad` tokens of zeros (32 x 1280 samples);
//! * audio token `k` is computed as soon as samples up to `1280 (k + 1) + 40` exist (the 2.5 ms
//!   look-ahead): the log-mel of the window `[1280 k - 200, 1280 k + 1480)` without centring
//!   gives frames `8k .. 8k+7` (the look-back only provides STFT context), identical to the
//!   offline centred log-mel of the whole padded file;
//! * the conv stem keeps its left context between steps (2 mel frames for conv1, 1 frame for
//!   conv2), the encoder keeps a KV cache bounded by its sliding window (750 frames), the 4 new
//!   encoder frames become one adapter vector;
//! * the decoder prefills the prompt when its last audio token exists, then takes one step per
//!   audio token with the previous token, keeping a KV cache bounded by its window (8192);
//! * `finish` appends the right padding (alignment + `delay + 1 + 10` tokens of zeros) and
//!   drains. Tokens equal the offline schedule's (tested).

use super::adapter::group_frames;
use super::model::Voxtral;
use crate::audio::mel::LogMelExtractor;
use crate::audio::{AudioConfig, AudioError};
use crate::nn::RotaryEmbedding;
use crate::nn::attention::KvCache;
use crate::nn::attention::Step;
use crate::nn::gelu;
use crate::trace::Scope;
use burn::tensor::{Device, Int, Tensor, TensorData};

/// STFT look-back in samples: half a 400-sample window.
const LOOK_BACK: usize = 200;
/// Samples past a step's end that its last kept frame needs (2.5 ms at 16 kHz).
const LOOK_AHEAD: usize = 40;

/// How many tokens a stream generates once the audio has ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TokenBudget {
    /// As upstream transformers `generate` (`max_length` = the number of audio tokens `N`): the
    /// sequence (prompt included) holds at most `N` ids, so the last audio token is never
    /// decoded and a `L`-token prompt gives `N - L` generated ids.
    #[default]
    Generate,
    /// One generated id for every audio token from the prompt's last one on, `N - L + 1` ids:
    /// the schedule of vLLM's realtime buffer, antirez/voxtral.c and MrShitFox/voxtral.cpp,
    /// whose golden records (`samples/*.json`) hold `N - 38` ids for the 39-token prompt.
    EveryAudioToken,
}

/// Called with (index of the generated id, 0-based; that position's logits `[vocab]`) for every
/// generated id, before the id is appended.
pub type LogitsObserver<'a> = Box<dyn FnMut(usize, &[f32]) + 'a>;

/// Called at the end of every audio step (one per 80 ms audio token, prompt steps and the
/// end-of-audio drain included) with (audio token index `k`, the id that step generated, if
/// any). A step's work is done when it is called, so a clock read here times the step. When
/// several audio tokens are waiting (the drain of [`StreamingSession::finish`], a large push),
/// their encoder runs in one call ([`StreamingSession::set_encoder_chunk`]) before the first
/// of their steps, whose reading then carries the whole batch's encoder time.
pub type StepObserver<'a> = Box<dyn FnMut(usize, Option<i64>) + 'a>;

/// Where a stream's time went, measured with the wall clock as it runs (seconds and
/// milliseconds of wall time, not of audio).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StreamTimings {
    /// Log-mel, conv stem, encoder and adapter over every audio token, seconds.
    pub encoder_s: f64,
    /// The decoder prefill of the prompt (one batched pass, last logits only), seconds.
    pub prefill_s: f64,
    /// Each decoder step after the prefill (one token each), milliseconds.
    pub steps_ms: Vec<f64>,
}

impl StreamTimings {
    /// The `q`-quantile (0..=1, nearest rank) of [`Self::steps_ms`]; `None` without steps.
    pub fn step_ms_quantile(&self, q: f64) -> Option<f64> {
        if self.steps_ms.is_empty() {
            return None;
        }
        let mut v = self.steps_ms.clone();
        v.sort_by(f64::total_cmp);
        let rank = ((q.clamp(0.0, 1.0) * v.len() as f64).ceil() as usize).clamp(1, v.len());
        Some(v[rank - 1])
    }
}

/// One streaming transcription.
pub struct StreamingSession<'a> {
    model: &'a Voxtral,
    device: Device,
    mel: LogMelExtractor,
    cfg: AudioConfig,
    t_cond: Tensor<2>,
    /// Samples not yet consumed beyond the STFT look-back; `buf[0]` is absolute sample `buf_start`.
    buf: Vec<f32>,
    buf_start: usize,
    /// Absolute number of samples pushed so far (left padding included).
    pushed: usize,
    /// Number of real (unpadded) audio samples pushed.
    real_samples: usize,
    /// Next audio token to compute.
    next_audio: usize,
    conv1_ctx: Tensor<3>,
    conv2_ctx: Tensor<3>,
    enc_caches: Vec<KvCache>,
    dec_caches: Vec<KvCache>,
    prompt: Vec<i64>,
    prompt_embeds: Vec<Tensor<3>>,
    sequence: Vec<i64>,
    eos: Option<i64>,
    done: bool,
    /// Total tokens (prompt + generated) allowed: from the number of audio tokens, known at
    /// finish, and `budget`.
    max_len: Option<usize>,
    budget: TokenBudget,
    observer: Option<LogitsObserver<'a>>,
    step_observer: Option<StepObserver<'a>>,
    timings: StreamTimings,
    /// Most audio tokens encoded in one call when more audio is available than one step needs.
    encoder_chunk: usize,
}

/// Default for [`StreamingSession::set_encoder_chunk`]: up to 256 audio tokens (20.48 s of
/// audio, 1024 encoder frames) encoded in one call.
pub const DEFAULT_ENCODER_CHUNK: usize = 256;

impl<'a> StreamingSession<'a> {
    /// Start a stream: `prompt` = `[BOS] + [STREAMING_PAD] x (left_pad + delay)`, audio settings
    /// `cfg` (tekken.json `audio`), `delay_tokens` for the time conditioning, `eos` to stop.
    pub fn new(
        model: &'a Voxtral,
        cfg: AudioConfig,
        prompt: Vec<i64>,
        delay_tokens: usize,
        eos: Option<i64>,
        device: &Device,
    ) -> Result<Self, AudioError> {
        let e = &model.config.encoder;
        let mut s = Self {
            model,
            device: device.clone(),
            mel: LogMelExtractor::voxtral_realtime(),
            t_cond: model.t_cond(delay_tokens as f32, &Scope::off(), device),
            buf: Vec::new(),
            buf_start: 0,
            pushed: 0,
            real_samples: 0,
            next_audio: 0,
            conv1_ctx: Tensor::zeros([1, e.num_mel_bins, 2], device),
            conv2_ctx: Tensor::zeros([1, e.d_model, 1], device),
            enc_caches: vec![KvCache::default(); e.n_layers],
            dec_caches: vec![KvCache::default(); model.config.decoder.n_layers],
            sequence: prompt.clone(),
            prompt,
            prompt_embeds: Vec::new(),
            eos,
            done: false,
            max_len: None,
            budget: TokenBudget::Generate,
            observer: None,
            step_observer: None,
            timings: StreamTimings::default(),
            encoder_chunk: DEFAULT_ENCODER_CHUNK,
            cfg,
        };
        let left = s.cfg.n_left_pad_tokens()? * s.cfg.raw_audio_length_per_tok();
        s.feed(&vec![0.0; left]);
        Ok(s)
    }

    /// Set how many ids the stream generates at its end (default [`TokenBudget::Generate`]).
    pub fn set_token_budget(&mut self, budget: TokenBudget) {
        self.budget = budget;
    }

    /// Call `observer` with the logits of every generated position (see [`LogitsObserver`]).
    /// Costs one copy of the `[vocab]` logits per step.
    pub fn observe_logits(&mut self, observer: LogitsObserver<'a>) {
        self.observer = Some(observer);
    }

    /// Call `observer` at the end of every audio step from now on (see [`StepObserver`]); the
    /// steps of the left padding run in [`Self::new`], before any observer can be set.
    pub fn observe_steps(&mut self, observer: StepObserver<'a>) {
        self.step_observer = Some(observer);
    }

    /// The prompt followed by the tokens generated so far.
    pub fn sequence(&self) -> &[i64] {
        &self.sequence
    }

    /// Number of prompt tokens at the start of [`Self::sequence`].
    pub fn prompt_len(&self) -> usize {
        self.prompt.len()
    }

    /// Encoder and decoder KV cache lengths (positions held), for memory checks.
    pub fn cache_lengths(&self) -> (usize, usize) {
        (
            self.enc_caches.iter().map(KvCache::len).max().unwrap_or(0),
            self.dec_caches.iter().map(KvCache::len).max().unwrap_or(0),
        )
    }

    /// Encode up to `tokens` audio tokens (80 ms each; at least 1) in one call when that much
    /// audio is waiting (a file, or a live stream that fell behind): the log-mel, the conv stem
    /// and the sliding-window encoder then run over `8 * tokens` mel frames at once, with the
    /// state the one-token schedule keeps (conv context, encoder KV cache), so every weight is
    /// read once per call instead of once per token. `1` is the one-token (8-frame) schedule.
    /// Tokens are identical either way (tested); the decoder still takes one step per token.
    pub fn set_encoder_chunk(&mut self, tokens: usize) {
        self.encoder_chunk = tokens.max(1);
    }

    /// Wall time spent so far, by phase.
    pub fn timings(&self) -> &StreamTimings {
        &self.timings
    }

    /// Whether EOS was generated (later audio is ignored).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Push 16 kHz mono samples; returns the tokens generated by this push.
    ///
    /// # Errors
    /// A non-finite sample.
    pub fn push(&mut self, samples: &[f32]) -> Result<Vec<i64>, AudioError> {
        if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
            return Err(AudioError::InvalidInput {
                what: "streaming audio".into(),
                cause: format!("sample {i} is {} (non-finite)", samples[i]),
            });
        }
        self.real_samples += samples.len();
        Ok(self.feed(samples))
    }

    /// End of audio: append the right padding and drain; returns the last tokens.
    ///
    /// # Errors
    /// Invalid audio settings (delay).
    pub fn finish(&mut self, delay_ms: f64) -> Result<Vec<i64>, AudioError> {
        let per_tok = self.cfg.raw_audio_length_per_tok();
        let align = (per_tok - self.real_samples % per_tok) % per_tok;
        let right = align + per_tok * self.cfg.n_right_pad_tokens(Some(delay_ms))?;
        // As upstream `generate`: the sequence holds at most one id per audio token.
        let n = (self.pushed + right) / per_tok;
        self.max_len = Some(match self.budget {
            TokenBudget::Generate => n,
            TokenBudget::EveryAudioToken => n + 1,
        });
        let mut out = self.feed(&vec![0.0; right]);
        // The last token's look-ahead reaches past the padded end; the centred offline log-mel
        // reflects zeros there, so zeros complete it exactly.
        out.extend(self.feed(&[0.0; LOOK_AHEAD]));
        Ok(out)
    }

    fn feed(&mut self, samples: &[f32]) -> Vec<i64> {
        self.buf.extend_from_slice(samples);
        self.pushed += samples.len();
        let per_tok = self.cfg.raw_audio_length_per_tok();
        let mut out = Vec::new();
        // Audio token k is ready once samples up to per_tok * (k + 1) + LOOK_AHEAD exist.
        while !self.done {
            let ready = self.pushed.saturating_sub(LOOK_AHEAD) / per_tok;
            if ready <= self.next_audio {
                break;
            }
            let k0 = self.next_audio;
            let n = (ready - k0).min(self.encoder_chunk);
            let audio = self.audio_tokens(n);
            for i in 0..n {
                if self.done {
                    break;
                }
                let t = self.decode(audio.clone().narrow(1, i, 1), k0 + i);
                if let Some(observe) = self.step_observer.as_mut() {
                    observe(k0 + i, t);
                }
                if let Some(t) = t {
                    out.push(t);
                }
            }
        }
        out
    }

    /// Compute audio tokens `next_audio .. next_audio + n` (their samples exist): the log-mel of
    /// their window, then [`Self::encode_tokens`]. Returns `[1, n, d_dec]`.
    fn audio_tokens(&mut self, n: usize) -> Tensor<3> {
        let t0 = web_time::Instant::now();
        let per_tok = self.cfg.raw_audio_length_per_tok();
        let k = self.next_audio;
        let win_start = (per_tok * k) as isize - LOOK_BACK as isize;
        let win_len = per_tok * n + 400;
        let mut window = vec![0.0f32; win_len];
        for (j, w) in window.iter_mut().enumerate() {
            let abs = win_start + j as isize;
            if abs >= self.buf_start as isize {
                let i = (abs - self.buf_start as isize) as usize;
                if i < self.buf.len() {
                    *w = self.buf[i];
                }
            }
        }
        let mel = self
            .mel
            .compute(&window, false)
            .expect("finite samples of the right length");
        let feats = Tensor::<3>::from_data(
            TensorData::new(mel.data, [1, mel.n_mels, mel.n_frames]),
            &self.device,
        );
        let audio = self.encode_tokens(feats, k);
        self.next_audio += n;
        // Drop samples no later window needs.
        let keep_from = (per_tok * self.next_audio).saturating_sub(LOOK_BACK);
        if keep_from > self.buf_start {
            let drop = (keep_from - self.buf_start).min(self.buf.len());
            self.buf.drain(..drop);
            self.buf_start += drop;
        }
        self.timings.encoder_s += t0.elapsed().as_secs_f64();
        audio
    }

    /// Conv stem with carried context, encoder with KV cache, adapter: `8 n` mel frames
    /// `[1, mels, 8 n]` of audio tokens `k .. k + n` -> audio embeddings `[1, n, d_dec]`.
    fn encode_tokens(&mut self, feats: Tensor<3>, k: usize) -> Tensor<3> {
        let m = &self.model.net.model;
        let e = &self.model.config.encoder;
        let frames = feats.dims()[2];
        let x = Tensor::cat(vec![self.conv1_ctx.clone(), feats.clone()], 2);
        self.conv1_ctx = feats.narrow(2, frames - 2, 2);
        let h = gelu(m.audio_tower.embedder.conv1.forward_padded(x));
        let n1 = h.dims()[2];
        let x = Tensor::cat(vec![self.conv2_ctx.clone(), h.clone()], 2);
        self.conv2_ctx = h.narrow(2, n1 - 1, 1);
        let h = gelu(m.audio_tower.embedder.conv2.forward_padded(x)).swap_dims(1, 2);
        // Encoder frames per audio token (4): positions continue from token k's first frame.
        let n = h.dims()[1];
        let pos0 = k * self.model.config.downsample_factor;
        let rope = RotaryEmbedding {
            theta: e.rope_theta,
            head_dim: e.head_dim,
        };
        let (cos, sin) = rope.tables(pos0, n, &self.device);
        let step = Step {
            pos0,
            cos: &cos,
            sin: &sin,
            style: self.model.config.rope_style,
            window: e.sliding_window,
            traced: None,
        };
        let off = Scope::off();
        let mut h = h;
        for (layer, cache) in m.audio_tower.layers.iter().zip(self.enc_caches.iter_mut()) {
            h = layer.forward(h, &step, Some(cache), &off);
        }
        let h = m.audio_tower.norm.forward(h);
        let grouped = group_frames(h, self.model.config.downsample_factor);
        m.multi_modal_projector.forward(grouped, &off)
    }

    /// Decoder work for audio token `k` with embedding `audio [1, 1, d]`.
    fn decode(&mut self, audio: Tensor<3>, k: usize) -> Option<i64> {
        let l = self.prompt.len();
        let off = Scope::off();
        let ids = |v: Vec<i64>, dev: &Device| {
            let n = v.len();
            Tensor::<2, Int>::from_data(TensorData::new(v, [1, n]), dev)
        };
        if self.max_len.is_some_and(|m| self.sequence.len() >= m) {
            self.done = true;
            return None;
        }
        let t0 = web_time::Instant::now();
        let prefill = k + 1 == l;
        let logits = if k + 1 < l {
            self.prompt_embeds.push(audio);
            return None;
        } else if k + 1 == l {
            self.prompt_embeds.push(audio);
            let audio = Tensor::cat(std::mem::take(&mut self.prompt_embeds), 1);
            let emb = self
                .model
                .embed(ids(self.prompt.clone(), &self.device), &off)
                + audio;
            self.model
                .decode_step_last(emb, &self.t_cond, 0, &mut self.dec_caches)
        } else {
            let last = *self.sequence.last().expect("non-empty sequence");
            let emb = self.model.embed(ids(vec![last], &self.device), &off) + audio;
            self.model
                .decode_step_last(emb, &self.t_cond, k, &mut self.dec_caches)
        };
        if let Some(observe) = self.observer.as_mut() {
            let [_, s, v] = logits.dims();
            let last: Vec<f32> = logits
                .clone()
                .narrow(1, s - 1, 1)
                .reshape([v])
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .expect("f32 logits");
            observe(self.sequence.len() - self.prompt.len(), &last);
        }
        let next = super::generate::argmax_last(logits);
        let dt = t0.elapsed().as_secs_f64();
        if prefill {
            self.timings.prefill_s += dt;
        } else {
            self.timings.steps_ms.push(dt * 1e3);
        }
        self.sequence.push(next);
        if Some(next) == self.eos {
            self.done = true;
        }
        Some(next)
    }
}
