//! `voxtrace features`: compute model input features for one audio file and write them as a trace-v1 file.
//!
//! Output: a safetensors file (format "voxtrace trace v1") holding one tensor, `input_features`,
//! `[1, n_mels, frames]` f32, with `voxtrace.format = trace-v1`, `voxtrace.order = ["input_features"]` and
//! `voxtrace.source` describing the recipe. It can be compared with the PyTorch reference's `input_features`.
//! The file is written to a temporary file in the target directory and renamed into place.
//!
//! Exit codes: 0 on success; errors (unreadable audio, bad tekken.json, unwritable output) are returned as
//! `anyhow::Error` for the binary to report (exit code 2).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::audio::{AudioConfig, LogMelExtractor, load_mono_16k, pad_offline};
use crate::io::{TensorBytes, write_safetensors};
use crate::tokenizer::Tekken;

/// Which upstream feature extractor to reproduce.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeatureModel {
    /// Voxtral Realtime: offline streaming padding (unless `--no-pad`), 128-bin log-mel, center=true.
    Voxtral,
    /// Whisper: pad / cut to 30 s, 80-bin log-mel, `[1, 80, 3000]`.
    Whisper,
}

/// Arguments of `voxtrace features`.
#[derive(clap::Args, Debug)]
pub struct FeaturesArgs {
    /// Input audio (WAV, FLAC, MP3, OGG/Vorbis; any rate and channel count: mixed to mono, resampled to 16 kHz).
    pub input: PathBuf,
    /// Output safetensors file (trace v1) with `input_features` [1, n_mels, frames] f32.
    #[arg(long, short)]
    pub out: PathBuf,
    /// Feature recipe.
    #[arg(long, value_enum, default_value_t = FeatureModel::Voxtral)]
    pub model: FeatureModel,
    /// Voxtral: do not apply the offline streaming padding (mistral-common `AudioEncoder.pad`).
    #[arg(long)]
    pub no_pad: bool,
    /// Voxtral: tekken.json whose `audio` section drives the padding (default: built-in Voxtral Realtime values).
    #[arg(long)]
    pub tekken: Option<PathBuf>,
    /// Voxtral: transcription delay in ms for the right padding (default: the config's, 480 ms).
    #[arg(long)]
    pub delay_ms: Option<f64>,
}

/// Runs `voxtrace features`; see the module doc for the output and exit codes.
///
/// # Errors
/// Decoding, tokenizer-file, feature or I/O errors, each naming the file concerned.
pub fn run(args: &FeaturesArgs) -> anyhow::Result<ExitCode> {
    let samples = load_mono_16k(&args.input)?;
    // Padding and log-mel errors (non-finite samples, bad delay) concern the input file.
    let input = || args.input.display().to_string();
    let (features, source) = match args.model {
        FeatureModel::Voxtral => {
            let signal = if args.no_pad {
                samples
            } else {
                let config = match &args.tekken {
                    Some(path) => Tekken::from_file(path)?.audio().cloned().with_context(|| {
                        format!("{}: tekken.json has no audio section", path.display())
                    })?,
                    None => AudioConfig::voxtral_realtime(),
                };
                pad_offline(&config, &samples, args.delay_ms).with_context(input)?
            };
            let mel = LogMelExtractor::voxtral_realtime()
                .compute(&signal, true)
                .with_context(input)?;
            let pad = if args.no_pad {
                "no padding"
            } else {
                "offline streaming padding"
            };
            (
                mel,
                format!("voxtrace rust audio front end: Voxtral Realtime log-mel, {pad}"),
            )
        }
        FeatureModel::Whisper => {
            let mel = LogMelExtractor::whisper(80)?
                .whisper_features(&samples)
                .with_context(input)?;
            (
                mel,
                "voxtrace rust audio front end: Whisper log-mel (30 s)".to_string(),
            )
        }
    };
    let metadata = HashMap::from([
        ("voxtrace.format".to_string(), "trace-v1".to_string()),
        (
            "voxtrace.order".to_string(),
            r#"["input_features"]"#.to_string(),
        ),
        ("voxtrace.source".to_string(), source),
        (
            "voxtrace.input".to_string(),
            args.input.display().to_string(),
        ),
    ]);
    let tensor = TensorBytes::f32(
        "input_features",
        vec![1, features.n_mels, features.n_frames],
        &features.data,
    );
    write_safetensors(&args.out, &[tensor], Some(metadata))?;
    eprintln!(
        "{}: input_features [1, {}, {}] -> {}",
        args.input.display(),
        features.n_mels,
        features.n_frames,
        args.out.display()
    );
    Ok(ExitCode::SUCCESS)
}
