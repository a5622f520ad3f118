//! `voxtrace bench`: worker modes for the benchmark drivers (`just bench`).
//!
//! Each mode does one measured job in this process and prints one JSON object on stdout; the
//! Python drivers in `reference/` (`bench_whisper.py`, `bench_voxtral.py`, `bench_trace.py`) run
//! it as a subprocess next to the upstream systems, measure wall time and peak RSS from outside,
//! and turn the figures into ratios. Times are wall-clock seconds (`Instant`), medians over
//! repetitions after one warm-up where a mode repeats.
//!
//! * `whisper`: load Whisper once, transcribe a list of files (greedy, no timestamps), with the
//!   model load time reported apart from the transcription time.
//! * `voxtral-encoder-layer` / `voxtral-decoder-step`: one layer of the full-size Voxtral Mini
//!   4B Realtime (`VoxtralConfig::mini_4b_realtime`) with random weights (Burn initialises
//!   parameters lazily, so only that layer is materialised), timed, with its weights, inputs
//!   and output exported to safetensors under upstream (transformers) names so the driver can
//!   load them into the PyTorch module and compare.
//! * `voxtral-stream`: the whole full-size model with random weights, 80 ms streaming steps.
//! * `bandwidth`: memory read bandwidth (sum over a large array) for the bandwidth floor.
//! * `trace`: one forward pass with capture off, all-in-memory and all-to-file.

use crate::audio::{AudioConfig, TARGET_SAMPLE_RATE};
use crate::models::voxtral::decoder::{AdaRmsNorm, DecoderLayer};
use crate::models::voxtral::encoder::{Embedder, EncoderLayer, Step};
use crate::models::voxtral::streaming::StreamingSession;
use crate::models::voxtral::time_embedding::time_embedding;
use crate::models::voxtral::{Voxtral, VoxtralConfig};
use crate::nn::attention::{Attention, AttentionConfig, KvCache};
use crate::nn::{CausalConv1d, RMSNorm, RopeStyle, RotaryEmbedding, SwiGluMlp};
use crate::trace::{NameFilter, Scope, Tracer};
use anyhow::Context;
use burn::module::Param;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Device, Distribution, Int, Tensor, TensorData};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `voxtrace bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub mode: BenchMode,
    /// Compute device: flex (default), ndarray or wgpu when compiled in.
    #[arg(long, default_value = "flex", global = true)]
    pub device: String,
}

/// One benchmark job.
#[derive(clap::Subcommand, Debug)]
pub enum BenchMode {
    /// Load Whisper once and transcribe files (greedy, no timestamps); JSON with load time,
    /// transcription time and every transcript.
    Whisper {
        /// Whisper folder (CTranslate2 `model.bin` + `tokenizer.json` + `config.json`).
        #[arg(long)]
        model: PathBuf,
        /// Audio files.
        #[arg(required = true)]
        audio: Vec<PathBuf>,
    },
    /// One full-size Voxtral encoder layer over `seconds` of audio (random weights).
    VoxtralEncoderLayer {
        /// Audio length in seconds (100 mel frames, 50 encoder frames per second).
        #[arg(long, default_value_t = 1.0)]
        seconds: f64,
        /// Timed repetitions (median reported).
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Write weights, input and output here (safetensors, transformers names).
        #[arg(long)]
        export: Option<PathBuf>,
        /// Random seed.
        #[arg(long, default_value_t = 1234)]
        seed: u64,
    },
    /// One full-size Voxtral decoder layer step (one token) at position `pos` with a KV cache
    /// of `pos` entries (random weights and cache).
    VoxtralDecoderStep {
        /// Position of the new token = KV cache length.
        #[arg(long, default_value_t = 64)]
        pos: usize,
        /// Timed repetitions (median reported).
        #[arg(long, default_value_t = 10)]
        reps: usize,
        /// Write weights, inputs, cache and output here (safetensors, transformers names).
        #[arg(long)]
        export: Option<PathBuf>,
        /// Random seed.
        #[arg(long, default_value_t = 1234)]
        seed: u64,
    },
    /// The whole full-size model (random weights): time per 80 ms streaming step.
    VoxtralStream {
        /// Timed steps after the prompt prefill.
        #[arg(long, default_value_t = 5)]
        steps: usize,
    },
    /// Memory read bandwidth: sum of a large f32 array, GB/s (best of `reps`).
    Bandwidth {
        /// Array size in MiB.
        #[arg(long, default_value_t = 1024)]
        mib: usize,
        /// Repetitions.
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// Forward pass of a random Voxtral (d_model 512, 2+2 layers, 4 s) with capture off,
    /// every capture point in memory and streamed to a file.
    Trace {
        /// Modes, comma-separated: off, memory, file.
        #[arg(long, default_value = "off,memory,file")]
        modes: String,
        /// Timed repetitions per mode, interleaved (median reported).
        #[arg(long, default_value_t = 10)]
        reps: usize,
    },
}

/// Run `voxtrace bench`.
///
/// # Errors
/// Unreadable model or audio, bad arguments, unwritable export file.
pub fn run(args: &BenchArgs) -> anyhow::Result<ExitCode> {
    let device = super::device(&args.device)?;
    let out = match &args.mode {
        BenchMode::Whisper { model, audio } => whisper(model, audio, &device)?,
        BenchMode::VoxtralEncoderLayer {
            seconds,
            reps,
            export,
            seed,
        } => encoder_layer(*seconds, *reps, export.as_deref(), *seed, &device)?,
        BenchMode::VoxtralDecoderStep {
            pos,
            reps,
            export,
            seed,
        } => decoder_step(*pos, *reps, export.as_deref(), *seed, &device)?,
        BenchMode::VoxtralStream { steps } => stream(*steps, &device)?,
        BenchMode::Bandwidth { mib, reps } => bandwidth(*mib, *reps, &device)?,
        BenchMode::Trace { modes, reps } => trace(modes, *reps, &device)?,
    };
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev-like (debug assertions on)"
    } else {
        "optimised"
    }
}

/// Whisper worker: load once, transcribe every file.
fn whisper(model_dir: &Path, audio: &[PathBuf], device: &Device) -> anyhow::Result<String> {
    use crate::models::whisper::{Whisper, WhisperTokenizer};
    let t0 = Instant::now();
    let model = Whisper::load(model_dir, device)?;
    let tok = WhisperTokenizer::from_file(&model_dir.join("tokenizer.json"))?;
    let load_s = t0.elapsed().as_secs_f64();
    let mut files = Vec::new();
    let mut audio_s = 0.0;
    let t1 = Instant::now();
    for path in audio {
        let t = Instant::now();
        let samples = crate::audio::load_mono_16k(path)
            .with_context(|| format!("reading {}", path.display()))?;
        let tr = model
            .transcribe(&samples, &tok, device)
            .with_context(|| format!("transcribing {}", path.display()))?;
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

/// A linear layer with N(0, 1/fan_in) weights and N(0, 0.1²) biases (non-trivial values so a
/// port bug shows), `[d_in] -> [d_out]`.
fn lin(d_in: usize, d_out: usize, bias: bool, device: &Device) -> Linear {
    let mut l = LinearConfig::new(d_in, d_out).with_bias(bias).init(device);
    l.weight = Param::from_tensor(randn([d_in, d_out], (d_in as f64).powf(-0.5), device));
    if bias {
        l.bias = Some(Param::from_tensor(randn([d_out], 0.1, device)));
    }
    l
}

fn norm(d: usize, eps: f64, device: &Device) -> RMSNorm {
    let mut n = RMSNorm::new(d, eps, device);
    n.weight = Param::from_tensor(randn([d], 0.1, device) + 1.0);
    n
}

fn attention(cfg: &AttentionConfig, device: &Device) -> Attention {
    let q = cfg.n_heads * cfg.head_dim;
    let kv = cfg.n_kv_heads * cfg.head_dim;
    let [bq, bk, bv, bo] = cfg.biases;
    Attention {
        q_proj: lin(cfg.d_model, q, bq, device),
        k_proj: lin(cfg.d_model, kv, bk, device),
        v_proj: lin(cfg.d_model, kv, bv, device),
        o_proj: lin(q, cfg.d_model, bo, device),
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        head_dim: cfg.head_dim,
    }
}

fn mlp(d: usize, ffn: usize, down_bias: bool, device: &Device) -> SwiGluMlp {
    SwiGluMlp {
        gate_proj: lin(d, ffn, false, device),
        up_proj: lin(d, ffn, false, device),
        down_proj: lin(ffn, d, down_bias, device),
    }
}

/// Collects named tensors and writes them as one safetensors file (f32, row-major).
#[derive(Default)]
struct Export {
    tensors: Vec<(String, Vec<usize>, Vec<u8>)>,
}

impl Export {
    fn add<const D: usize>(&mut self, name: &str, t: &Tensor<D>) -> anyhow::Result<()> {
        let data = t.clone().into_data();
        let shape = data.shape().to_vec();
        let v: Vec<f32> = data
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
        let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensors.push((name.to_string(), shape, bytes));
        Ok(())
    }

    /// A Burn linear (`weight [in, out]`) under the PyTorch names (`weight [out, in]`, `bias`).
    fn linear(&mut self, prefix: &str, l: &Linear) -> anyhow::Result<()> {
        self.add(&format!("{prefix}.weight"), &l.weight.val().transpose())?;
        if let Some(b) = &l.bias {
            self.add(&format!("{prefix}.bias"), &b.val())?;
        }
        Ok(())
    }

    fn attention(&mut self, prefix: &str, a: &Attention) -> anyhow::Result<()> {
        self.linear(&format!("{prefix}.q_proj"), &a.q_proj)?;
        self.linear(&format!("{prefix}.k_proj"), &a.k_proj)?;
        self.linear(&format!("{prefix}.v_proj"), &a.v_proj)?;
        self.linear(&format!("{prefix}.o_proj"), &a.o_proj)
    }

    fn mlp(&mut self, prefix: &str, m: &SwiGluMlp) -> anyhow::Result<()> {
        self.linear(&format!("{prefix}.gate_proj"), &m.gate_proj)?;
        self.linear(&format!("{prefix}.up_proj"), &m.up_proj)?;
        self.linear(&format!("{prefix}.down_proj"), &m.down_proj)
    }

    fn write(&self, path: &Path) -> anyhow::Result<()> {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = self
            .tensors
            .iter()
            .map(|(n, s, b)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .map(|v| (n.clone(), v))
            })
            .collect::<Result<_, _>>()?;
        safetensors::serialize_to_file(views, None, path)
            .with_context(|| format!("writing {}", path.display()))
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

/// Full-size encoder layer over `seconds` of audio.
fn encoder_layer(
    seconds: f64,
    reps: usize,
    export: Option<&Path>,
    seed: u64,
    device: &Device,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        seconds > 0.0 && seconds <= 60.0,
        "--seconds must be in (0, 60], got {seconds}"
    );
    device.seed(seed);
    let cfg = VoxtralConfig::mini_4b_realtime().encoder;
    // 10 ms mel hop; the conv stem halves the frame rate. Check the count on the real stem.
    let mel_frames = (seconds * 100.0).round() as usize;
    let mel_frames = mel_frames + mel_frames % 2;
    let stem = Embedder {
        conv1: CausalConv1d::new(cfg.num_mel_bins, cfg.d_model, 3, 1, device),
        conv2: CausalConv1d::new(cfg.d_model, cfg.d_model, 3, 2, device),
    };
    let frames = stem
        .forward(
            randn([1, cfg.num_mel_bins, mel_frames], 1.0, device),
            &Scope::off(),
        )
        .dims()[1];
    let layer = EncoderLayer {
        self_attn_layer_norm: norm(cfg.d_model, cfg.norm_eps, device),
        self_attn: attention(
            &AttentionConfig {
                d_model: cfg.d_model,
                n_heads: cfg.n_heads,
                n_kv_heads: cfg.n_heads,
                head_dim: cfg.head_dim,
                biases: [true, false, true, true],
            },
            device,
        ),
        final_layer_norm: norm(cfg.d_model, cfg.norm_eps, device),
        mlp: mlp(cfg.d_model, cfg.intermediate_size, true, device),
    };
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
        let mut e = Export::default();
        e.add(
            "self_attn_layer_norm.weight",
            &layer.self_attn_layer_norm.weight.val(),
        )?;
        e.attention("self_attn", &layer.self_attn)?;
        e.add(
            "final_layer_norm.weight",
            &layer.final_layer_norm.weight.val(),
        )?;
        e.mlp("mlp", &layer.mlp)?;
        e.add("input", &x)?;
        e.add("output", &y)?;
        e.write(path)?;
    }
    let params = layer_params_encoder(&VoxtralConfig::mini_4b_realtime());
    Ok(
        json!({"mode": "voxtral-encoder-layer", "seconds_audio": seconds,
        "mel_frames": mel_frames, "encoder_frames": frames, "median_s": med, "all_s": all,
        "params": params, "build": build_profile()})
        .to_string(),
    )
}

/// Parameters of one encoder layer.
fn layer_params_encoder(c: &VoxtralConfig) -> usize {
    let e = &c.encoder;
    let a = e.n_heads * e.head_dim;
    // q (+bias), k, v (+bias), o (+bias), 2 norms, gate, up, down (+bias).
    2 * e.d_model * a
        + a
        + 2 * a
        + e.d_model * a
        + e.d_model
        + e.d_model
        + 2 * e.d_model
        + 3 * e.d_model * e.intermediate_size
        + e.d_model
}

/// Parameters of one decoder layer.
fn layer_params_decoder(c: &VoxtralConfig) -> usize {
    let d = &c.decoder;
    let q = d.n_heads * d.head_dim;
    let kv = d.n_kv_heads * d.head_dim;
    2 * d.d_model * q
        + 2 * d.d_model * kv
        + 2 * d.d_model
        + 2 * d.d_model * d.ada_t_cond_dim
        + 3 * d.d_model * d.intermediate_size
}

/// Full-size decoder layer, one token at position `pos` with a cache of `pos` entries.
fn decoder_step(
    pos: usize,
    reps: usize,
    export: Option<&Path>,
    seed: u64,
    device: &Device,
) -> anyhow::Result<String> {
    let full = VoxtralConfig::mini_4b_realtime();
    let cfg = &full.decoder;
    anyhow::ensure!(
        pos >= 1 && pos < cfg.sliding_window,
        "--pos must be in 1..{} (inside the sliding window), got {pos}",
        cfg.sliding_window
    );
    device.seed(seed);
    let layer = DecoderLayer {
        input_layernorm: norm(cfg.d_model, cfg.norm_eps, device),
        self_attn: attention(
            &AttentionConfig {
                d_model: cfg.d_model,
                n_heads: cfg.n_heads,
                n_kv_heads: cfg.n_kv_heads,
                head_dim: cfg.head_dim,
                biases: [false; 4],
            },
            device,
        ),
        post_attention_layernorm: norm(cfg.d_model, cfg.norm_eps, device),
        ada_rms_norm: AdaRmsNorm {
            linear1: lin(cfg.d_model, cfg.ada_t_cond_dim, false, device),
            linear2: lin(cfg.ada_t_cond_dim, cfg.d_model, false, device),
        },
        mlp: mlp(cfg.d_model, cfg.intermediate_size, false, device),
    };
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
        let mut e = Export::default();
        e.add(
            "input_layernorm.weight",
            &layer.input_layernorm.weight.val(),
        )?;
        e.attention("self_attn", &layer.self_attn)?;
        e.add(
            "post_attention_layernorm.weight",
            &layer.post_attention_layernorm.weight.val(),
        )?;
        e.linear("ada_rms_norm.linear1", &layer.ada_rms_norm.linear1)?;
        e.linear("ada_rms_norm.linear2", &layer.ada_rms_norm.linear2)?;
        e.mlp("mlp", &layer.mlp)?;
        e.add("input", &x)?;
        e.add("t_cond", &t_cond)?;
        e.add("cache_k", &cache_k)?;
        e.add("cache_v", &cache_v)?;
        e.add("output", &y)?;
        e.write(path)?;
    }
    let params = layer_params_decoder(&full);
    let kv_bytes = 2 * cfg.n_kv_heads * cfg.head_dim * pos * 4;
    Ok(
        json!({"mode": "voxtral-decoder-step", "pos": pos, "median_s": med, "all_s": all,
        "params": params, "weight_bytes": params * 4, "kv_cache_bytes": kv_bytes,
        "build": build_profile()})
        .to_string(),
    )
}

/// Whole full-size model with random weights: time per 80 ms streaming step.
fn stream(steps: usize, device: &Device) -> anyhow::Result<String> {
    anyhow::ensure!(steps >= 1, "--steps must be at least 1");
    let cfg = VoxtralConfig::mini_4b_realtime();
    let d = &cfg.decoder;
    let e = &cfg.encoder;
    let enc_params = cfg.encoder.n_layers * layer_params_encoder(&cfg) + e.d_model;
    let proj_params = e.d_model * cfg.downsample_factor * d.d_model + d.d_model * d.d_model;
    let dec_params = d.n_layers * layer_params_decoder(&cfg) + d.d_model;
    let head_params = d.vocab_size * d.d_model;
    let t0 = Instant::now();
    let model = Voxtral::random(cfg.clone(), device);
    let audio = AudioConfig::voxtral_realtime();
    let per_tok = audio.raw_audio_length_per_tok();
    let delay = audio.n_delay_tokens(Some(480.0))?;
    let left = audio.n_left_pad_tokens()?;
    let mut prompt = vec![1i64];
    prompt.extend(std::iter::repeat_n(32i64, left + delay));
    let mut session = StreamingSession::new(&model, audio, prompt, delay, None, device)?;
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
        anyhow::ensure!(prefill_tokens < 64, "the prompt was never prefilled");
        let _ = session.push(&noise(per_tok))?;
    }
    let prefill_s = t1.elapsed().as_secs_f64();
    let mut times = Vec::new();
    for _ in 0..steps {
        let t = Instant::now();
        let out = session.push(&noise(per_tok))?;
        times.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
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

/// Memory read bandwidth through the backend: best time of `sum` over `mib` MiB of f32.
fn bandwidth(mib: usize, reps: usize, device: &Device) -> anyhow::Result<String> {
    anyhow::ensure!((1..=16384).contains(&mib), "--mib must be in 1..=16384");
    let n = mib * 1024 * 1024 / 4;
    let x = Tensor::<1>::ones([n], device);
    let _: f32 = x.clone().sum().into_scalar();
    let mut all = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let s: f32 = x.clone().sum().into_scalar();
        all.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(s > 0.0, "sum is {s}");
    }
    let best = all.iter().cloned().fold(f64::INFINITY, f64::min);
    let bytes = (n * 4) as f64;
    Ok(
        json!({"mode": "bandwidth", "bytes": n * 4, "best_s": best, "all_s": all,
        "gb_per_s": bytes / best / 1e9, "build": build_profile()})
        .to_string(),
    )
}

/// Capture off / all in memory / all to file on a random mid-size Voxtral.
fn trace(modes: &str, reps: usize, device: &Device) -> anyhow::Result<String> {
    let modes: Vec<&str> = modes.split(',').map(str::trim).collect();
    for m in &modes {
        anyhow::ensure!(
            ["off", "memory", "file"].contains(m),
            "unknown mode {m:?} (off, memory, file)"
        );
        anyhow::ensure!(
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
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![32i64; 50], [1, 50]), device);
    let dir = tempfile::tempdir()?;
    let run = |mode: &str| -> anyhow::Result<(f64, usize)> {
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
