//! `voxtrace quantize`: write a checkpoint as GGUF (f32, f16, bf16, q8_0, q4_0).
//!
//! Voxtral Realtime (a Mistral folder, or an HF folder written back in Mistral's order) is
//! written in voxtral.cpp's names and metadata ([`crate::models::voxtral::gguf`]); Whisper (CTranslate2 folder) in transformers' names with
//! its configuration and tokenizer ([`crate::models::whisper::gguf`]). The file loads in every
//! command that takes `--model`.

use crate::models::voxtral::gguf::{OutType, write_gguf};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

/// Arguments of `voxtrace quantize`.
#[derive(clap::Args, Debug)]
pub struct QuantizeArgs {
    /// Checkpoint folder: Voxtral Realtime in the Mistral layout (`consolidated.safetensors`,
    /// `params.json`, `tekken.json`) or the HF layout (`model.safetensors`, `config.json`, and
    /// `tekken.json`, the tokenizer the file carries), or Whisper in the CTranslate2 layout
    /// (`model.bin`, `config.json`, `tokenizer.json`).
    #[arg(long)]
    pub model: PathBuf,
    /// Tensor type: f32, f16, bf16 (matrices; 1-D tensors stay f32), q8_0 or q4_0 (the linear
    /// layers and embeddings voxtral.cpp's quantizer packs; other matrices f16). Whisper: the
    /// linear layers' weights in this type, everything else f32.
    #[arg(long = "type", value_parser = |s: &str| s.parse::<OutType>())]
    pub ty: OutType,
    /// Output GGUF file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

/// Run `voxtrace quantize`; prints the tensor count per type and the data size.
///
/// # Errors
/// An unreadable or invalid checkpoint, a Voxtral folder without `tekken.json`, an unwritable
/// output (all named).
pub fn run(args: &QuantizeArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let s = if crate::models::whisper::is_whisper_dir(&args.model) {
        crate::models::whisper::gguf::write_gguf(&args.model, args.ty, &args.out)?
    } else {
        write_gguf(&args.model, args.ty, &args.out)?
    };
    let types: Vec<String> = s.by_type.iter().map(|(t, n)| format!("{n} {t}")).collect();
    println!(
        "{}: {} tensors ({}), {:.1} MiB of tensor data, {:.2} s",
        args.out.display(),
        s.tensors,
        types.join(", "),
        s.data_bytes as f64 / (1024.0 * 1024.0),
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
