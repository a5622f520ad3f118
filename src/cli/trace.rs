//! `voxtrace trace`: record every intermediate tensor of one forward pass to a `trace-v1`
//! safetensors file.
//!
//! Like `reference/voxtral_tiny.py`: greedy offline generation first, then one teacher-forced
//! forward pass on the generated sequence with capture on, so the dump joins name by name with
//! the upstream dump. Top-level entries `input_features`, `input_ids`, `generated_ids`,
//! `logits` are recorded too. `--no-generate` skips the generation (the full-size parity run:
//! `just parity-full-size`), `--names-from DUMP` records exactly a reference dump's names.
//!
//! Whisper folders (CTranslate2 or transformers layout, see [`crate::models::whisper`]) are
//! traced the way `reference/whisper_reference.py` dumps transformers' Whisper: greedy decoding
//! of the first 30 s window, then one teacher-forced `model(input_features, decoder_input_ids)`
//! pass on the generated sequence without its last token.

use crate::models::voxtral::generate::generate_offline;
use crate::models::voxtral::pipeline::prepare_offline;
use crate::models::voxtral::{PromptTokens, StreamingPrompt, Voxtral, streaming_prompt};
use crate::trace::{NameFilter, Tracer};
use anyhow::Context;
use burn::tensor::{Int, Tensor, TensorData};
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `voxtrace trace`.
#[derive(clap::Args, Debug)]
pub struct TraceArgs {
    /// Checkpoint folder: Voxtral Realtime in Mistral (consolidated.safetensors + params.json +
    /// tekken.json) or HF layout (model.safetensors + config.json, tekken.json for audio input),
    /// a voxtral.cpp GGUF file, or Whisper (CTranslate2 model.bin + config.json + tokenizer.json, or transformers).
    #[arg(long)]
    pub model: PathBuf,
    /// Audio file (WAV, FLAC, MP3, OGG/Vorbis; any rate, mixed to mono, resampled to 16 kHz).
    #[arg(required_unless_present = "inputs")]
    pub audio: Option<PathBuf>,
    /// Take `input_features` and `input_ids` from this dump instead of computing them from
    /// audio (replays an upstream run exactly).
    #[arg(long, conflicts_with = "audio")]
    pub inputs: Option<PathBuf>,
    /// Tekken tokenizer (default: MODEL/tekken.json); gives BOS, [STREAMING_PAD], EOS and the
    /// audio settings (left pad, delay).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Output dump (safetensors, `trace-v1`); written atomically.
    #[arg(long)]
    pub out: PathBuf,
    /// Record only names matching these patterns (glob, or `re:REGEX`); repeatable.
    #[arg(long)]
    pub filter: Vec<String>,
    /// Transcription delay in ms (multiple of 80).
    #[arg(long, default_value_t = 480.0)]
    pub delay_ms: f64,
    /// Compute device: flex (default), ndarray or wgpu when compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
    /// Run each block (transformer layer, adapter, final norm, LM head) on the input this
    /// reference dump recorded for it (`<block>.in.0`, same shape) instead of its own, so that
    /// comparing with the reference shows each block's own error, not what earlier blocks
    /// accumulated (onnxruntime's `qdq_err` vs `xmodel_err`). Use with `--inputs` of the same
    /// dump so the shapes agree.
    #[arg(long, value_name = "REF_DUMP")]
    pub feed: Option<PathBuf>,
    /// Pack the linear layers as q8_0 or q4_0 before tracing (`nn::qlinear`); a trace of the f32
    /// model compared with this one is the per-layer quantization drift (`just quant-report`).
    #[arg(long)]
    pub quant: Option<crate::nn::qmatmul::QuantKind>,
    /// Skip the greedy generation (Voxtral only; no `generated_ids` in the dump): the
    /// teacher-forced pass takes the `--inputs` dump's ids, or with an audio file the prompt
    /// followed by [STREAMING_PAD] up to one id per audio token (as
    /// `reference/voxtral_fullsize_parity.py` feeds upstream). For the full-size model, where
    /// generating first would cost one decoder step per audio token.
    #[arg(long)]
    pub no_generate: bool,
    /// Record exactly the names this dump holds (on top of `--filter`, which then has to match
    /// too): traces what a reference dump recorded, no more.
    #[arg(long, value_name = "DUMP")]
    pub names_from: Option<PathBuf>,
}

/// Run `voxtrace trace`.
///
/// # Errors
/// Unreadable model, tokenizer, audio or dump; an output that cannot be written.
pub fn run(args: &TraceArgs) -> anyhow::Result<ExitCode> {
    if !cfg!(feature = "record") {
        anyhow::bail!(
            "this voxtrace was built without the `record` feature, so it cannot capture \
             tensors; rebuild with default features (`cargo build`, or `--features record`)"
        );
    }
    let device = super::device(&args.device)?;
    let filter = NameFilter::parse(&args.filter).map_err(anyhow::Error::msg)?;
    let filter = match &args.names_from {
        Some(dump) => filter.and_names(names_of(dump)?),
        None => filter,
    };
    if crate::models::whisper::is_whisper_dir(&args.model) {
        anyhow::ensure!(
            !args.no_generate,
            "--no-generate is for Voxtral checkpoints (a Whisper trace needs the decoded ids)"
        );
        return run_whisper(args, filter, &device);
    }
    let (mut model, tok) = Voxtral::open(&args.model, args.tokenizer.as_deref(), &device)?;
    if let Some(q) = args.quant {
        model
            .quantize(q)
            .map_err(|e| anyhow::anyhow!("{}: --quant {}: {e}", args.model.display(), q.name()))?;
    }
    let audio_cfg = tok
        .audio()
        .cloned()
        .unwrap_or_else(crate::audio::AudioConfig::voxtral_realtime);
    let tokens = PromptTokens::from_tekken(&tok)?;
    let StreamingPrompt {
        ids: prompt,
        delay_tokens,
    } = streaming_prompt(&tokens, &audio_cfg, Some(args.delay_ms))?;
    let (features, dump_ids) = match (&args.audio, &args.inputs) {
        (Some(audio), _) => {
            let samples = crate::audio::load_mono_16k(audio)?;
            (
                prepare_offline(&samples, &tok, args.delay_ms, &device)?.features,
                None,
            )
        }
        (None, Some(dump)) => {
            let (f, i) = read_inputs(dump)?;
            (
                Tensor::<3>::from_data(f, &device),
                Some(Tensor::<2, Int>::from_data(i, &device)),
            )
        }
        (None, None) => anyhow::bail!("give an AUDIO file or --inputs DUMP"),
    };
    let n_tokens = features.dims()[2] / audio_cfg.audio_length_per_tok();
    let pad = tokens.streaming_pad;
    // The teacher-forced pass needs one id per audio token: replay the dump's ids, or our own
    // generated sequence (the prompt with --no-generate) padded with [STREAMING_PAD] after an
    // early EOS.
    let (generated, mut seq) = if args.no_generate {
        (None, prompt.clone())
    } else {
        let g = generate_offline(
            &model,
            features.clone(),
            &prompt,
            delay_tokens as f32,
            Some(tokens.eos),
        );
        (Some(g.sequence.clone()), g.sequence)
    };
    let ids = match dump_ids {
        Some(ids) => ids,
        None => {
            seq.resize(n_tokens.max(seq.len()), pad);
            let n = seq.len();
            Tensor::<2, Int>::from_data(TensorData::new(seq, [1, n]), &device)
        }
    };
    let delay = delay_tokens as f32;
    let tracer = start_trace(args, "", filter, generated, &device)?;
    let root = tracer.root();
    root.record("input_features", &features);
    root.record_int("input_ids", &ids);
    let _ = model.forward(features, ids, delay, &root);
    finish_trace(tracer, args)
}

/// A file tracer for `args.out` with `generated_ids [1, n]` recorded first (when given).
fn start_trace(
    args: &TraceArgs,
    model_kind: &str,
    filter: NameFilter,
    generated: Option<Vec<i64>>,
    device: &burn::tensor::Device,
) -> anyhow::Result<Tracer> {
    let source = format!(
        "voxtrace {} burn 0.22.1 {} f32{model_kind}",
        env!("CARGO_PKG_VERSION"),
        args.device
    );
    let mut tracer = Tracer::to_file(filter, &args.out, &source)?;
    if let Some(dump) = &args.feed {
        tracer = tracer.with_feed(read_feed(dump)?);
    }
    if let Some(generated) = generated {
        let n = generated.len();
        tracer.root().record_int(
            "generated_ids",
            &Tensor::<2, Int>::from_data(TensorData::new(generated, [1, n]), device),
        );
    }
    Ok(tracer)
}

/// The block inputs (`*.in.0`, float) of a dump, for [`Tracer::with_feed`].
fn read_feed(path: &std::path::Path) -> anyhow::Result<crate::trace::FeedMap> {
    use crate::compare::dump::{DType, Dump};
    let dump = Dump::open(path)?;
    let mut feed = crate::trace::FeedMap::new();
    for name in dump.names_in_storage_order() {
        let Some(info) = dump.info(name) else {
            continue;
        };
        if !name.ends_with(".in.0")
            || !matches!(
                info.dtype,
                DType::F32 | DType::F16 | DType::BF16 | DType::F64
            )
        {
            continue;
        }
        let values = dump.read_f32(name)?;
        feed.insert(name.to_string(), (info.shape.clone(), values));
    }
    anyhow::ensure!(
        !feed.is_empty(),
        "{}: --feed: no block inputs (float `….in.0` tensors) in this dump",
        path.display()
    );
    Ok(feed)
}

/// Every tensor name of a dump (for `--names-from`).
fn names_of(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let dump = crate::compare::dump::Dump::open(path)?;
    let names: Vec<String> = dump
        .names_in_storage_order()
        .into_iter()
        .map(str::to_string)
        .collect();
    anyhow::ensure!(
        !names.is_empty(),
        "{}: --names-from: the dump holds no tensors",
        path.display()
    );
    Ok(names)
}

/// Writes the dump (atomic rename) and reports the count.
fn finish_trace(tracer: Tracer, args: &TraceArgs) -> anyhow::Result<ExitCode> {
    if args.feed.is_some() {
        let fed = tracer.fed();
        anyhow::ensure!(
            !fed.is_empty(),
            "--feed: no block input of the dump matched this run's shapes (trace with --inputs of the same dump)"
        );
        eprintln!("fed {} block inputs from the reference dump", fed.len());
    }
    let count = tracer.len();
    tracer
        .finish()
        .with_context(|| format!("writing {}", args.out.display()))?;
    eprintln!("recorded {count} tensors to {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `voxtrace trace` on a Whisper folder (see the module docs).
fn run_whisper(
    args: &TraceArgs,
    filter: NameFilter,
    device: &burn::tensor::Device,
) -> anyhow::Result<ExitCode> {
    use crate::models::whisper::{Whisper, decode::features, decode::greedy_decode};
    use crate::trace::Scope;
    let mut model = Whisper::load(&args.model, device)?;
    if let Some(q) = args.quant {
        model
            .quantize(q)
            .map_err(|e| anyhow::anyhow!("{}: --quant {}: {e}", args.model.display(), q.name()))?;
    }
    let (feats, dump_ids) = match (&args.audio, &args.inputs) {
        (Some(audio), _) => {
            let samples = crate::audio::load_mono_16k(audio)?;
            let window = &samples[..samples.len().min(30 * 16_000)];
            (features(window, device)?, None)
        }
        (None, Some(dump)) => {
            let (f, i) = read_inputs(dump)?;
            (
                Tensor::<3>::from_data(f, device),
                Some(Tensor::<2, Int>::from_data(i, device)),
            )
        }
        (None, None) => anyhow::bail!("give an AUDIO file or --inputs DUMP"),
    };
    let enc = model
        .net
        .model
        .encoder
        .forward(feats.clone(), &Scope::off())?;
    let g = greedy_decode(&model.net, &enc, &model.generation)?;
    let generated: Vec<i64> = g.token_ids.iter().map(|&t| i64::from(t)).collect();
    let ids = match dump_ids {
        Some(ids) => ids,
        None => {
            let forced = generated[..generated.len() - 1].to_vec();
            let n = forced.len();
            Tensor::<2, Int>::from_data(TensorData::new(forced, [1, n]), device)
        }
    };
    let tracer = start_trace(args, " whisper", filter, Some(generated), device)?;
    model.net.forward(feats, ids, &tracer.root())?;
    finish_trace(tracer, args)
}

/// Read `input_features` (f32) and `input_ids` (i64) from a safetensors dump.
fn read_inputs(path: &std::path::Path) -> anyhow::Result<(TensorData, TensorData)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .with_context(|| format!("{}: not a valid safetensors file", path.display()))?;
    let get = |name: &str| {
        st.tensor(name)
            .with_context(|| format!("{}: no tensor {name}", path.display()))
    };
    let f = get("input_features")?;
    let i = get("input_ids")?;
    anyhow::ensure!(
        f.dtype() == safetensors::Dtype::F32 && i.dtype() == safetensors::Dtype::I64,
        "{}: input_features must be F32 and input_ids I64 (found {:?}, {:?})",
        path.display(),
        f.dtype(),
        i.dtype()
    );
    let fv: Vec<f32> = f
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let iv: Vec<i64> = i
        .data()
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect();
    Ok((
        TensorData::new(fv, f.shape().to_vec()),
        TensorData::new(iv, i.shape().to_vec()),
    ))
}
