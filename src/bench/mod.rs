//! Benchmark workers: each does one measured job in this process and returns one JSON object
//! (as text) for the drivers in `reference/` (`bench_whisper.py`, `bench_voxtral.py`,
//! `bench_trace.py`), which run `voxtrace bench MODE` as a subprocess next to the upstream
//! systems, measure wall time and peak RSS from outside, and turn the figures into ratios.
//! Times are wall-clock seconds (`Instant`), medians over repetitions after one warm-up where a
//! mode repeats.
//!
//! * [`whisper`]: load Whisper once, transcribe a list of files (greedy, no timestamps), with
//!   the model load time reported apart from the transcription time.
//! * [`encoder_layer`] / [`decoder_step`]: one layer of the full-size Voxtral Mini 4B Realtime
//!   (`VoxtralConfig::mini_4b_realtime`), built by the model's own constructors and given random
//!   weights (Burn initialises parameters lazily, so only that layer is materialised), timed,
//!   with its weights, inputs and output exported to safetensors under upstream (transformers)
//!   names so the driver can load them into the PyTorch module and compare.
//! * [`stream`]: the whole full-size model with random weights, 80 ms streaming steps.
//! * [`bandwidth`]: memory read bandwidth (sum over a large array) for the bandwidth floor.
//! * [`trace`]: one forward pass with capture off, all-in-memory and all-to-file.
//! * [`qmatmul_bench`]: a Q8_0 / Q4_0 packed-weight product (`nn::qmatmul`, every kernel the
//!   CPU has) against the same shape in f32.

use crate::audio::{AudioConfig, AudioError, TARGET_SAMPLE_RATE};
use crate::io::{TensorBytes, WriteError, write_safetensors};
use crate::models::voxtral::decoder::DecoderLayer;
use crate::models::voxtral::encoder::{Embedder, EncoderLayer};
use crate::models::voxtral::streaming::StreamingSession;
use crate::models::voxtral::time_embedding::time_embedding;
use crate::models::voxtral::{PromptTokens, Voxtral, VoxtralConfig, streaming_prompt};
use crate::nn::attention::{KvCache, Step};
use crate::nn::{RopeStyle, RotaryEmbedding};
use crate::trace::{NameFilter, Scope, TraceError, Tracer};
use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An argument out of range, or a sanity check of the run failed; the message says which.
    #[error("{0}")]
    Check(String),
    /// A model or audio file could not be read or transcribed.
    #[error("{}: {cause}", path.display())]
    File {
        /// The file concerned.
        path: PathBuf,
        /// What went wrong.
        cause: String,
    },
    /// Audio front end or streaming failure.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// Capturing a trace failed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// An export file could not be written.
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// `return Err(BenchError::Check(format!(...)))` unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        let ok: bool = $cond;
        if !ok {
            return Err(BenchError::Check(format!($($fmt)+)));
        }
    };
}

/// Median of `v` (the upper one for an even count); NaN when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The build profile the figures came from, for the JSON.
pub fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev-like (debug assertions on)"
    } else {
        "optimised"
    }
}

/// Whisper worker: load once, transcribe every file; JSON with load time, transcription time
/// and every transcript.
///
/// # Errors
/// An unreadable model, tokenizer or audio file.
pub fn whisper(model_dir: &Path, audio: &[PathBuf], device: &Device) -> Result<String, BenchError> {
    use crate::models::whisper::Whisper;
    let t0 = Instant::now();
    let (model, tok) = Whisper::open(model_dir, None, device).map_err(|e| BenchError::File {
        path: model_dir.to_path_buf(),
        cause: e.to_string(),
    })?;
    let load_s = t0.elapsed().as_secs_f64();
    let mut files = Vec::new();
    let mut audio_s = 0.0;
    let t1 = Instant::now();
    for path in audio {
        let t = Instant::now();
        let samples = crate::audio::load_mono_16k(path)?;
        let tr = model
            .transcribe(&samples, &tok, device)
            .map_err(|e| BenchError::File {
                path: path.clone(),
                cause: format!("transcribing: {e}"),
            })?;
        let secs = samples.len() as f64 / f64::from(TARGET_SAMPLE_RATE);
        audio_s += secs;
        let encode_s: f64 = tr.windows.iter().map(|w| w.encode_s).sum();
        let decode_s: f64 = tr.windows.iter().map(|w| w.decode_s).sum();
        let tokens: usize = tr.windows.iter().map(|w| w.output.token_ids.len()).sum();
        files.push(json!({"file": path.display().to_string(), "text": tr.text,
            "audio_seconds": secs, "seconds": t.elapsed().as_secs_f64(),
            "encode_s": encode_s, "decode_s": decode_s, "tokens": tokens}));
    }
    let transcribe_s = t1.elapsed().as_secs_f64();
    Ok(
        json!({"system": "voxtrace", "load_s": load_s, "transcribe_s": transcribe_s,
        "audio_seconds": audio_s, "files": files, "build": build_profile()})
        .to_string(),
    )
}

/// Random normal tensor; the seed is set once per mode.
fn randn<const D: usize>(shape: [usize; D], std: f64, device: &Device) -> Tensor<D> {
    Tensor::random(shape, Distribution::Normal(0.0, std), device)
}

/// Gives every float parameter of a module non-trivial random values, so that a port bug
/// shows against the PyTorch module loaded with the same weights: linear weights
/// (`[d_in, d_out]`, Burn's layout) N(0, 1/d_in), biases N(0, 0.1²), norm weights
/// 1 + N(0, 0.1²). In the Voxtral layers every rank-2 parameter is a linear weight.
struct RandomInit {
    path: Vec<String>,
    device: Device,
}

impl ModuleMapper for RandomInit {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims: [usize; D] = param.lazy_shape().dims();
        let bias = self.path.last().is_some_and(|n| n == "bias");
        let t = match (D, bias) {
            (2, _) => randn(dims, (dims[0] as f64).powf(-0.5), &self.device),
            (_, true) => randn(dims, 0.1, &self.device),
            _ => randn(dims, 0.1, &self.device) + 1.0,
        };
        Param::from_tensor(t)
    }
}

/// `module` with [`RandomInit`]'s values.
fn randomized<M: Module>(module: M, device: &Device) -> M {
    module.map(&mut RandomInit {
        path: Vec::new(),
        device: device.clone(),
    })
}

/// Collects a module's parameters under their module paths, which are the transformers
/// state-dict names, in PyTorch's layout (linear weights transposed to `[out, in]`).
#[derive(Default)]
struct StateDict {
    path: Vec<String>,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    /// Parameters whose values could not be read back, with the reason.
    unreadable: Vec<String>,
}

impl StateDict {
    /// Add one tensor under `name` (f32, row-major).
    fn add<const D: usize>(&mut self, name: &str, t: &Tensor<D>) -> Result<(), BenchError> {
        let data = t.clone().into_data();
        let shape = data.shape().to_vec();
        let v: Vec<f32> = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| BenchError::Check(format!("{name}: {e:?}")))?;
        self.tensors.push((name.to_string(), shape, v));
        Ok(())
    }

    /// Every parameter of `module` (see the type's doc).
    fn of<M: Module>(module: &M) -> Result<Self, BenchError> {
        let mut sd = Self::default();
        module.visit(&mut sd);
        if sd.unreadable.is_empty() {
            Ok(sd)
        } else {
            Err(BenchError::Check(sd.unreadable.join("; ")))
        }
    }

    /// Write through the crate's one safetensors writer.
    fn write(&self, path: &Path) -> Result<(), BenchError> {
        let tensors: Vec<TensorBytes<'_>> = self
            .tensors
            .iter()
            .map(|(n, s, v)| TensorBytes::f32(n.clone(), s.clone(), v))
            .collect();
        Ok(write_safetensors(path, &tensors, None)?)
    }
}

impl ModuleVisitor for StateDict {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let name = self.path.join(".");
        let t = param.val();
        // Burn linears store `[d_in, d_out]`; PyTorch `[d_out, d_in]`.
        let data = if D == 2 {
            t.transpose().into_data()
        } else {
            t.into_data()
        };
        let shape = data.shape().to_vec();
        match data.convert::<f32>().try_into_vec::<f32>() {
            Ok(v) => self.tensors.push((name, shape, v)),
            Err(e) => self.unreadable.push(format!("{name}: {e:?}")),
        }
    }
}

/// Time `f` `reps` times after one warm-up; returns (median, all) in seconds.
fn time_reps(reps: usize, mut f: impl FnMut() -> Tensor<3>) -> (f64, Vec<f64>) {
    let _ = f().into_data();
    let all: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            let _ = f().into_data();
            t.elapsed().as_secs_f64()
        })
        .collect();
    (median(all.clone()), all)
}

/// Full-size encoder layer over `seconds` of audio (`[1, 50 * seconds, 1280]`), `reps` timed
/// runs; with `export`, weights, input and output as safetensors under transformers names.
///
/// # Errors
/// `seconds` outside (0, 60]; an unwritable export file.
pub fn encoder_layer(
    seconds: f64,
    reps: usize,
    export: Option<&Path>,
    seed: u64,
    device: &Device,
) -> Result<String, BenchError> {
    ensure!(
        seconds > 0.0 && seconds <= 60.0,
        "--seconds must be in (0, 60], got {seconds}"
    );
    device.seed(seed);
    let cfg = VoxtralConfig::mini_4b_realtime().encoder;
    // 10 ms mel hop; the conv stem halves the frame rate. Check the count on the real stem.
    let mel_frames = (seconds * 100.0).round() as usize;
    let mel_frames = mel_frames + mel_frames % 2;
    let stem = Embedder::new(&cfg, device);
    let frames = stem
        .forward(
            randn([1, cfg.num_mel_bins, mel_frames], 1.0, device),
            &Scope::off(),
        )
        .dims()[1];
    let layer = randomized(EncoderLayer::new(&cfg, device), device);
    let x = randn([1, frames, cfg.d_model], 1.0, device);
    let rope = RotaryEmbedding {
        theta: cfg.rope_theta,
        head_dim: cfg.head_dim,
    };
    let (cos, sin) = rope.tables(0, frames, device);
    // Transformers' weights use half-split RoPE; run that layout so the exported weights load
    // into the upstream module unchanged.
    let step = Step {
        pos0: 0,
        cos: &cos,
        sin: &sin,
        style: RopeStyle::HalfSplit,
        window: cfg.sliding_window,
        traced: None,
    };
    let (med, all) = time_reps(reps, || {
        layer.forward(x.clone(), &step, None, &Scope::off())
    });
    if let Some(path) = export {
        let y = layer.forward(x.clone(), &step, None, &Scope::off());
        let mut e = StateDict::of(&layer)?;
        e.add("input", &x)?;
        e.add("output", &y)?;
        e.write(path)?;
    }
    let params = layer.num_params();
    Ok(
        json!({"mode": "voxtral-encoder-layer", "seconds_audio": seconds,
        "mel_frames": mel_frames, "encoder_frames": frames, "median_s": med, "all_s": all,
        "params": params, "build": build_profile()})
        .to_string(),
    )
}

/// Full-size decoder layer, one token (`[1, 1, 3072]`) at position `pos` with a random KV
/// cache of `pos` entries; with `export`, weights, inputs, cache and output as safetensors.
///
/// # Errors
/// `pos` outside the sliding window; an unwritable export file.
pub fn decoder_step(
    pos: usize,
    reps: usize,
    export: Option<&Path>,
    seed: u64,
    device: &Device,
) -> Result<String, BenchError> {
    let full = VoxtralConfig::mini_4b_realtime();
    let cfg = &full.decoder;
    ensure!(
        pos >= 1 && pos < cfg.sliding_window,
        "--pos must be in 1..{} (inside the sliding window), got {pos}",
        cfg.sliding_window
    );
    device.seed(seed);
    let layer = randomized(DecoderLayer::new(cfg, device), device);
    let x = randn([1, 1, cfg.d_model], 1.0, device);
    let t_cond = time_embedding(6.0, cfg.d_model, device).unsqueeze::<2>();
    let cache_k = randn([1, cfg.n_kv_heads, pos, cfg.head_dim], 1.0, device);
    let cache_v = randn([1, cfg.n_kv_heads, pos, cfg.head_dim], 1.0, device);
    let rope = RotaryEmbedding {
        theta: cfg.rope_theta,
        head_dim: cfg.head_dim,
    };
    let (cos, sin) = rope.tables(pos, 1, device);
    let step = Step {
        pos0: pos,
        cos: &cos,
        sin: &sin,
        style: RopeStyle::HalfSplit,
        window: cfg.sliding_window,
        traced: None,
    };
    let fresh = || KvCache {
        k: Some(cache_k.clone()),
        v: Some(cache_v.clone()),
        start: 0,
    };
    let (med, all) = time_reps(reps, || {
        let mut c = fresh();
        layer.forward(x.clone(), &t_cond, &step, Some(&mut c), &Scope::off())
    });
    if let Some(path) = export {
        let mut c = fresh();
        let y = layer.forward(x.clone(), &t_cond, &step, Some(&mut c), &Scope::off());
        let mut e = StateDict::of(&layer)?;
        e.add("input", &x)?;
        e.add("t_cond", &t_cond)?;
        e.add("cache_k", &cache_k)?;
        e.add("cache_v", &cache_v)?;
        e.add("output", &y)?;
        e.write(path)?;
    }
    let params = layer.num_params();
    let kv_bytes = 2 * cfg.n_kv_heads * cfg.head_dim * pos * 4;
    Ok(
        json!({"mode": "voxtral-decoder-step", "pos": pos, "median_s": med, "all_s": all,
        "params": params, "weight_bytes": params * 4, "kv_cache_bytes": kv_bytes,
        "build": build_profile()})
        .to_string(),
    )
}

/// Whole full-size model with random weights: time per 80 ms streaming step over `steps`
/// steps after the prompt prefill, with the weight bytes each step reads.
///
/// # Errors
/// `steps` of 0; a step that does not give exactly one token.
pub fn stream(steps: usize, device: &Device) -> Result<String, BenchError> {
    ensure!(steps >= 1, "--steps must be at least 1");
    let cfg = VoxtralConfig::mini_4b_realtime();
    let t0 = Instant::now();
    let model = Voxtral::random(cfg, device);
    // Burn counts parameters from their shapes, without materialising lazy ones.
    let m = &model.net.model;
    let enc_params = m.audio_tower.num_params();
    let proj_params = m.multi_modal_projector.num_params();
    let head_params = m.language_model.embed_tokens.num_params();
    let dec_params = m.language_model.num_params() - head_params;
    let audio = AudioConfig::voxtral_realtime();
    let per_tok = audio.raw_audio_length_per_tok();
    // A random checkpoint has no tokenizer: the released model's control-token ids.
    let prompt = streaming_prompt(&PromptTokens::MINI_4B_REALTIME, &audio, Some(480.0))?;
    let mut session =
        StreamingSession::new(&model, audio, prompt.ids, prompt.delay_tokens, None, device)?;
    let build_s = t0.elapsed().as_secs_f64();
    // Audio until the prompt's last audio token exists: the prefill happens here.
    let t1 = Instant::now();
    let noise = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|i| ((i as f32) * 0.37).sin() * 0.1)
            .collect::<Vec<_>>()
    };
    let mut prefill_tokens = 0;
    while session.sequence().len() == session.prompt_len() {
        prefill_tokens += 1;
        ensure!(prefill_tokens < 64, "the prompt was never prefilled");
        let _ = session.push(&noise(per_tok))?;
    }
    let prefill_s = t1.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for _ in 0..steps {
        let t = Instant::now();
        let out = session.push(&noise(per_tok))?;
        times.push(t.elapsed().as_secs_f64());
        ensure!(
            out.len() == 1,
            "expected one token per step, got {}",
            out.len()
        );
    }
    Ok(json!({"mode": "voxtral-stream", "build_and_first_tokens_s": build_s,
        "prefill_s": prefill_s, "prefill_pushes": prefill_tokens, "step_median_s": median(times.clone()),
        "steps_s": times, "encoder_params": enc_params, "projector_params": proj_params,
        "decoder_params": dec_params, "lm_head_params": head_params,
        "weight_bytes_per_step": (enc_params + proj_params + dec_params + head_params) * 4,
        "decoder_weight_bytes_per_token": (dec_params + head_params) * 4,
        "build": build_profile()})
    .to_string())
}

/// Memory read bandwidth through the backend: best time of `sum` over `mib` MiB of f32, in
/// GB/s.
///
/// # Errors
/// `mib` outside 1..=16384.
pub fn bandwidth(mib: usize, reps: usize, device: &Device) -> Result<String, BenchError> {
    ensure!((1..=16384).contains(&mib), "--mib must be in 1..=16384");
    let n = mib * 1024 * 1024 / 4;
    let x = Tensor::<1>::ones([n], device);
    let _: f32 = x.clone().sum().into_scalar();
    let mut all = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let s: f32 = x.clone().sum().into_scalar();
        all.push(t.elapsed().as_secs_f64());
        ensure!(s > 0.0, "sum is {s}");
    }
    let best = all.iter().cloned().fold(f64::INFINITY, f64::min);
    let bytes = (n * 4) as f64;
    Ok(
        json!({"mode": "bandwidth", "bytes": n * 4, "best_s": best, "all_s": all,
        "gb_per_s": bytes / best / 1e9, "build": build_profile()})
        .to_string(),
    )
}

/// Capture off / all in memory / all to file on a random mid-size Voxtral, `reps` interleaved
/// runs per mode (`modes`: comma-separated `off`, `memory`, `file`).
///
/// # Errors
/// An unknown mode, a capture mode without the `record` feature, a trace that cannot be
/// written.
pub fn trace(modes: &str, reps: usize, device: &Device) -> Result<String, BenchError> {
    let modes: Vec<&str> = modes.split(',').map(str::trim).collect();
    for m in &modes {
        ensure!(
            ["off", "memory", "file"].contains(m),
            "unknown mode {m:?} (off, memory, file)"
        );
        ensure!(
            *m == "off" || cfg!(feature = "record"),
            "mode {m} needs the `record` feature (this build has none)"
        );
    }
    device.seed(7);
    let mut cfg = VoxtralConfig::mini_4b_realtime();
    cfg.encoder.d_model = 512;
    cfg.encoder.intermediate_size = 2048;
    cfg.encoder.n_heads = 8;
    cfg.encoder.head_dim = 64;
    cfg.encoder.n_layers = 2;
    cfg.decoder.d_model = 512;
    cfg.decoder.intermediate_size = 1536;
    cfg.decoder.n_heads = 8;
    cfg.decoder.n_kv_heads = 2;
    cfg.decoder.head_dim = 64;
    cfg.decoder.n_layers = 2;
    cfg.decoder.vocab_size = 8192;
    let model = Voxtral::random(cfg, device);
    let feats = randn([1, 128, 400], 1.0, device);
    let pad = PromptTokens::MINI_4B_REALTIME.streaming_pad;
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![pad; 50], [1, 50]), device);
    let dir = tempfile::tempdir()
        .map_err(|e| BenchError::Check(format!("creating a temporary folder: {e}")))?;
    let run = |mode: &str| -> Result<(f64, usize), BenchError> {
        let t0 = Instant::now();
        let n = match mode {
            "off" => {
                let l = model.forward(feats.clone(), ids.clone(), 6.0, &Scope::off());
                let _ = l.into_data();
                0
            }
            "memory" => {
                let tr = Tracer::in_memory(NameFilter::all());
                let l = model.forward(feats.clone(), ids.clone(), 6.0, &tr.root());
                let _ = l.into_data();
                tr.finish()?.len()
            }
            _ => {
                let tr = Tracer::to_file(
                    NameFilter::all(),
                    &dir.path().join("t.safetensors"),
                    "bench",
                )?;
                let l = model.forward(feats.clone(), ids.clone(), 6.0, &tr.root());
                let _ = l.into_data();
                let n = tr.len();
                tr.finish()?;
                n
            }
        };
        Ok((t0.elapsed().as_secs_f64(), n))
    };
    for m in &modes {
        run(m)?;
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    let mut counts = vec![0; modes.len()];
    // Interleaved so drift in machine load hits every mode alike.
    for _ in 0..reps.max(1) {
        for (i, m) in modes.iter().enumerate() {
            let (t, n) = run(m)?;
            times[i].push(t);
            counts[i] = n;
        }
    }
    let res: serde_json::Map<String, serde_json::Value> = modes
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                m.to_string(),
                json!({"median_s": median(times[i].clone()), "all_s": times[i], "tensors": counts[i]}),
            )
        })
        .collect();
    Ok(json!({"mode": "trace", "model": "random Voxtral, d_model 512, 2+2 layers, 4 s (400 mel frames, 50 tokens)",
        "record_feature": cfg!(feature = "record"), "reps": reps, "results": res,
        "build": build_profile()})
    .to_string())
}

/// BF16 weight product [`crate::nn::half`]: `x [m, n_in]` times a random BF16 weight
/// `[n_out, n_in]` (values in [-1, 1]), median seconds over `reps` after one warm-up, for f32
/// compute ([`crate::nn::half::half_matmul`]) and bf16 compute on each path this CPU has
/// ([`crate::nn::half::bf16_matmul_on`]: AVX-512 BF16, AMX). GFLOP/s counts `2 m n_out n_in`;
/// GB/s the weight bytes read once per product. Each bf16 path's output is checked against
/// the first one's (max abs difference in the JSON).
///
/// # Errors
/// `m`, `n_out` or `n_in` zero, more than 2^31 weights.
pub fn half_bench(
    (m, n_out, n_in): (usize, usize, usize),
    reps: usize,
) -> Result<String, BenchError> {
    use crate::nn::half::{Bf16Path, HalfKind, HalfMatrix, bf16_matmul_on, half_matmul};
    ensure!(
        m > 0 && n_out > 0 && n_in > 0,
        "--m, --n-out and --n-in must be positive"
    );
    ensure!(n_out * n_in <= 1 << 31, "at most 2^31 weights");
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let wv: Vec<f32> = (0..n_out * n_in).map(|_| next()).collect();
    let x: Vec<f32> = (0..m * n_in).map(|_| next()).collect();
    let w = HalfMatrix::from_f32(HalfKind::Bf16, n_out, n_in, &wv)
        .map_err(|e| BenchError::Check(e.to_string()))?;
    drop(wv);
    let flops = 2.0 * (m * n_out * n_in) as f64;
    let weight_bytes = (n_out * n_in * 2) as f64;
    let time =
        |f: &dyn Fn() -> Result<Vec<f32>, BenchError>| -> Result<(Vec<f64>, Vec<f32>), BenchError> {
            let y = f()?;
            let mut all = Vec::new();
            for _ in 0..reps.max(1) {
                let t = Instant::now();
                let _ = f()?;
                all.push(t.elapsed().as_secs_f64());
            }
            Ok((all, y))
        };
    let entry = |all: Vec<f64>| {
        let med = median(all.clone());
        json!({"median_s": med, "all_s": all, "gflop_per_s": flops / med / 1e9,
            "weight_gb_per_s": weight_bytes / med / 1e9})
    };
    let mut paths = serde_json::Map::new();
    let (all, _) = time(&|| half_matmul(&x, m, &w).map_err(|e| BenchError::Check(e.to_string())))?;
    paths.insert("f32_compute".into(), entry(all));
    let mut first: Option<Vec<f32>> = None;
    for (name, path) in [
        ("bf16_avx512", Bf16Path::Avx512Bf16),
        ("bf16_amx", Bf16Path::Amx),
    ] {
        let run = || -> Result<Option<Vec<f32>>, BenchError> {
            bf16_matmul_on(&x, m, &w, path).map_err(|e| BenchError::Check(e.to_string()))
        };
        if run()?.is_none() {
            paths.insert(name.into(), json!(null));
            continue;
        }
        let (all, y) = time(&|| Ok(run()?.unwrap_or_default()))?;
        let mut e = entry(all);
        if let Some(f) = &first {
            let d = f
                .iter()
                .zip(&y)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            e["max_abs_diff_vs_bf16_avx512"] = json!(d);
        } else {
            first = Some(y);
        }
        paths.insert(name.into(), e);
    }
    Ok(
        json!({"mode": "half", "m": m, "n_out": n_out, "n_in": n_in, "reps": reps,
        "weight_bytes": n_out * n_in * 2, "paths": paths,
        "threads": rayon::current_num_threads(), "build": build_profile()})
        .to_string(),
    )
}

/// The most bytes [`qmatmul_bench`]'s `rotate` copies may take (8 GiB).
pub const ROTATE_MAX_BYTES: usize = 8 << 30;

/// Packed-weight product [`crate::nn::qmatmul`] against f32: `x [m, n_in]` times a random
/// `kind` weight `[n_out, n_in]` (random integers, f16 scales near 0.01: any bytes are valid
/// blocks, so no quantizer is needed), median seconds over `reps` after one warm-up, for every
/// kernel this CPU has (the scalar one over at most 3 repetitions), and the same shape in f32
/// through [`crate::nn::linear::matmul_transposed`] (the few-rows kernel up to
/// [`crate::nn::linear::SMALL_ROWS_MAX`] rows on Flex, Burn's matmul above). GB/s counts the
/// weight bytes read once per product. `(m, n_out, n_in)` is the shape. With `dump`, the
/// packed weight (`weight.bin`), `x` (`x.bin`) and the detected kernel's `y [m, n_out]`
/// (`y.bin`, f32 little-endian) are written there, so that a peer can multiply the same bytes
/// and check its output (`peers/candle-qmatmul`). With `rotate > 0`, one pass over `rotate`
/// copies of the weight (at most [`ROTATE_MAX_BYTES`] in all) is timed `reps` times with the
/// detected kernel, the products split over [`crate::nn::spin_pool`] and over Rayon
/// (`"rotate"` in the JSON: µs per product, GB/s).
///
/// # Errors
/// `n_in` not a positive multiple of 32, `m` or `n_out` zero, more than 2^31 weights, copies
/// over [`ROTATE_MAX_BYTES`]; a dump file that cannot be written.
pub fn qmatmul_bench(
    kind: crate::nn::qmatmul::QuantKind,
    (m, n_out, n_in): (usize, usize, usize),
    (reps, rotate): (usize, usize),
    dump: Option<&Path>,
    device: &Device,
) -> Result<String, BenchError> {
    use crate::nn::qmatmul::{BLOCK, PackedMatrix, QKernel, qmatmul_with};
    ensure!(
        n_in > 0 && n_in.is_multiple_of(BLOCK),
        "--n-in must be a positive multiple of {BLOCK}"
    );
    ensure!(m > 0 && n_out > 0, "--m and --n-out must be positive");
    ensure!(n_out * n_in <= 1 << 31, "at most 2^31 weights");
    let blocks = n_out * n_in / BLOCK;
    let bb = kind.block_bytes();
    let mut bytes = vec![0u8; blocks * bb];
    let mut s: u64 = 0x2545_F491_4F6C_DD1D;
    let scale = half::f16::from_f32(0.01).to_le_bytes();
    for blk in bytes.chunks_exact_mut(bb) {
        blk[..2].copy_from_slice(&scale);
        for b in &mut blk[2..] {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            *b = (s >> 32) as u8;
        }
    }
    let w = PackedMatrix::new(kind, n_out, n_in, bytes.as_slice())
        .map_err(|e| BenchError::Check(e.to_string()))?;
    let x: Vec<f32> = (0..m * n_in)
        .map(|i| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0)
        .collect();
    let weight_bytes = bytes.len() as f64;
    if let Some(dir) = dump {
        let y = qmatmul_with(&x, m, &w, QKernel::detect())
            .map_err(|e| BenchError::Check(e.to_string()))?;
        let f32s = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|f| f.to_le_bytes()).collect() };
        std::fs::create_dir_all(dir).map_err(|e| BenchError::File {
            path: dir.to_path_buf(),
            cause: e.to_string(),
        })?;
        crate::io::write_atomic(&dir.join("weight.bin"), &bytes)?;
        crate::io::write_atomic(&dir.join("x.bin"), &f32s(&x))?;
        crate::io::write_atomic(&dir.join("y.bin"), &f32s(&y))?;
    }
    let rotated = if rotate > 0 {
        ensure!(
            bytes.len().saturating_mul(rotate) <= ROTATE_MAX_BYTES,
            "--rotate {rotate} copies of {} bytes exceed {ROTATE_MAX_BYTES} bytes",
            bytes.len()
        );
        let copies: Vec<u8> = bytes.repeat(rotate);
        let ws = copies
            .chunks_exact(bytes.len())
            .map(|c| PackedMatrix::new(kind, n_out, n_in, c))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BenchError::Check(e.to_string()))?;
        let mut by = serde_json::Map::new();
        for (name, spin) in [("spin_pool", true), ("rayon", false)] {
            crate::nn::spin_pool::set_enabled(spin);
            let mut all = Vec::new();
            for _ in 0..reps.max(1) {
                let t = Instant::now();
                for w in &ws {
                    qmatmul_with(&x, m, w, QKernel::detect())
                        .map_err(|e| BenchError::Check(e.to_string()))?;
                }
                all.push(t.elapsed().as_secs_f64());
            }
            let med = median(all.clone());
            by.insert(
                name.into(),
                json!({"pass_s": all, "median_us_per_product": med / rotate as f64 * 1e6,
                    "weight_gb_per_s": copies.len() as f64 / med / 1e9}),
            );
        }
        crate::nn::spin_pool::set_enabled(true);
        json!({"copies": rotate, "bytes": copies.len(), "kernel": format!("{:?}", QKernel::detect()), "by": by})
    } else {
        serde_json::Value::Null
    };
    let mut kernels = serde_json::Map::new();
    for kernel in QKernel::ALL.into_iter().filter(|k| k.available()) {
        let n = if kernel == QKernel::Scalar {
            reps.clamp(1, 3)
        } else {
            reps.max(1)
        };
        let run = || qmatmul_with(&x, m, &w, kernel).map_err(|e| BenchError::Check(e.to_string()));
        run()?;
        let mut all = Vec::new();
        for _ in 0..n {
            let t = Instant::now();
            let y = run()?;
            all.push(t.elapsed().as_secs_f64());
            ensure!(y.len() == m * n_out, "output length {}", y.len());
        }
        let med = median(all.clone());
        kernels.insert(
            format!("{kernel:?}"),
            json!({"median_s": med, "all_s": all, "weight_gb_per_s": weight_bytes / med / 1e9}),
        );
    }
    // The same shape in f32, weight `[n_out, n_in]` as PyTorch stores it.
    let wf = Tensor::<2>::from_data(TensorData::new(w.dequantize(), [n_out, n_in]), device);
    let xf = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, n_in]), device);
    let f32_run = || crate::nn::linear::matmul_transposed(xf.clone(), wf.clone());
    let _ = f32_run().into_data();
    let mut all = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let _ = f32_run().into_data();
        all.push(t.elapsed().as_secs_f64());
    }
    let f32_med = median(all.clone());
    let f32_bytes = (n_out * n_in * 4) as f64;
    Ok(json!({"mode": "qmatmul", "kind": kind.name(), "m": m, "n_out": n_out, "n_in": n_in,
        "reps": reps, "weight_bytes": bytes.len(), "detected_kernel": format!("{:?}", QKernel::detect()),
        "kernels": kernels, "rotate": rotated,
        "f32": {"median_s": f32_med, "all_s": all, "weight_bytes": n_out * n_in * 4,
            "weight_gb_per_s": f32_bytes / f32_med / 1e9},
        "threads": rayon::current_num_threads(), "build": build_profile()})
    .to_string())
}
