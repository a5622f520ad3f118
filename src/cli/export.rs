//! `voxtrace export --model DIR --part encoder|adapter|decoder-step|all --out FILE.onnx
//! [--graph-json FILE] [--opset 18|23] [--frames N] [--tokens N] [--past N] [--intermediates]`
//!
//! Captures the part's forward graph on Burn's capture device with capture names (see
//! [`crate::export`]) and writes ONNX (weights as initializers; external data in
//! `FILE.onnx.data` above `--external-threshold` bytes, default 2e9).

use crate::export::{self, ExportOptions, Part};
use crate::models::voxtral::{
    Voxtral,
    loader::{WeightStorage, detect_layout},
};
use crate::tokenizer::Tekken;
use anyhow::Context;
use burn::tensor::Device;
use std::path::PathBuf;
use std::process::ExitCode;

/// `--part` values (the library's [`Part`]).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartArg {
    /// Audio encoder.
    Encoder,
    /// Voxtral adapter (multi-modal projector).
    Adapter,
    /// Decoder over `tokens` positions from position 0 (no KV-cache inputs).
    DecoderStep,
    /// The whole teacher-forced forward pass.
    All,
}

impl From<PartArg> for Part {
    fn from(p: PartArg) -> Self {
        match p {
            PartArg::Encoder => Part::Encoder,
            PartArg::Adapter => Part::Adapter,
            PartArg::DecoderStep => Part::DecoderStep,
            PartArg::All => Part::All,
        }
    }
}

/// Arguments of `voxtrace export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Model folder, as for `voxtrace trace`: Voxtral Realtime (Mistral or HF layout) or Whisper
    /// (CTranslate2 or transformers).
    #[arg(long)]
    pub model: PathBuf,
    /// Which part to export.
    #[arg(long, value_enum, default_value_t = PartArg::All)]
    pub part: PartArg,
    /// Output ONNX file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the graph as Google Model Explorer JSON here.
    #[arg(long)]
    pub graph_json: Option<PathBuf>,
    /// ONNX opset: 18 (elementary ops) or 23 (Gelu, RMSNormalization and Attention nodes).
    #[arg(long, default_value_t = 18)]
    pub opset: u32,
    /// Log-mel frames of the audio input (Voxtral; a multiple of 8). Whisper always uses 3000.
    #[arg(long, default_value_t = 504)]
    pub frames: usize,
    /// Decoder positions (default: frames / 8 for Voxtral, 4 for Whisper).
    #[arg(long)]
    pub tokens: Option<usize>,
    /// Voxtral decoder-step with a KV cache of this many past positions as graph inputs
    /// (`past_key_values.{layer}.key|value`) and the updated cache as outputs (`present.*`);
    /// 0 = a pass from position 0 without cache.
    #[arg(long, default_value_t = 0)]
    pub past: usize,
    /// Tekken tokenizer for the audio settings (default: MODEL/tekken.json when present).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Transcription delay in ms (Voxtral time conditioning; multiple of 80).
    #[arg(long, default_value_t = 480.0)]
    pub delay_ms: f64,
    /// List every traced intermediate tensor as an extra graph output (for parity runs).
    #[arg(long)]
    pub intermediates: bool,
    /// Move weights to FILE.onnx.data when they exceed this many bytes.
    #[arg(long, hide = true, default_value_t = export::DEFAULT_EXTERNAL_THRESHOLD)]
    pub external_threshold: u64,
}

/// Run `voxtrace export`.
///
/// # Errors
/// Unreadable model; unsupported op (named, with its trace scope); unwritable output; a build
/// without the `record` feature.
pub fn run(args: &ExportArgs) -> anyhow::Result<ExitCode> {
    if !cfg!(feature = "record") {
        anyhow::bail!(
            "this voxtrace was built without the `record` feature: the exporter names ONNX nodes \
             through the tracer's capture points; rebuild with default features"
        );
    }
    let device = Device::flex();
    let opts = ExportOptions {
        opset: args.opset,
        intermediates: args.intermediates,
        external_threshold: args.external_threshold,
    };
    let (graph, label) = if crate::models::whisper::is_whisper_dir(&args.model) {
        let model = crate::models::whisper::Whisper::load(&args.model, &device)
            .with_context(|| format!("loading {}", args.model.display()))?;
        anyhow::ensure!(args.past == 0, "--past is implemented for Voxtral only");
        let tokens = args.tokens.unwrap_or(4);
        (
            export::capture_whisper(&model, args.part.into(), tokens)?,
            format!("whisper {:?}", args.part),
        )
    } else {
        let layout = detect_layout(&args.model)?;
        let model = Voxtral::load_layout_as(&args.model, layout, WeightStorage::F32, &device)?;
        let tok_path = args
            .tokenizer
            .clone()
            .unwrap_or_else(|| args.model.join("tekken.json"));
        let audio_cfg = if tok_path.exists() {
            Tekken::from_file(&tok_path)?
                .audio()
                .cloned()
                .unwrap_or_else(crate::audio::AudioConfig::voxtral_realtime)
        } else {
            crate::audio::AudioConfig::voxtral_realtime()
        };
        let delay = audio_cfg.n_delay_tokens(Some(args.delay_ms))? as f32;
        let tokens = args.tokens.unwrap_or(args.frames / 8);
        (
            export::capture_voxtral(
                &model,
                args.part.into(),
                args.frames,
                tokens,
                delay,
                args.past,
            )?,
            format!("voxtral {:?}", args.part),
        )
    };
    let exported = export::to_onnx(&graph, &opts, &label)?;
    let nodes = exported.node_count;
    let external = export::write(exported, &args.out, args.graph_json.as_deref(), &opts)?;
    eprintln!(
        "wrote {} ({nodes} nodes, opset {}{})",
        args.out.display(),
        args.opset,
        if external {
            ", weights in external data"
        } else {
            ""
        }
    );
    Ok(ExitCode::SUCCESS)
}
