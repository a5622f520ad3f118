//! `voxtrace verify-real --model MODEL [--golden DIR]`: run every clip of a golden folder
//! through the port's streaming decode and compare with the golden records (see
//! [`crate::verify`]). Exit 0 when every clip's ids and first logits match, 1 on a mismatch,
//! 2 when it cannot run (missing or malformed files, a model that does not load).

use crate::io::terminal_safe;
use crate::models::voxtral::streaming::TokenBudget;
use crate::verify::{self, ClipReport, RunOptions, Tolerance, golden::Divergence};
use std::path::PathBuf;
use std::process::ExitCode;

/// The golden folder used without `--golden` and `VOXTRACE_GOLDEN_DIR`, relative to the
/// working directory (the checkout: the shared folder sits next to it).
pub const DEFAULT_GOLDEN_DIR: &str = "../shared/golden/voxtral-mini-4b-realtime";

/// How many ids the port generates after the audio ends.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Budget {
    /// One id per audio token from the prompt's last on (`N - 38`; vLLM, voxtral.cpp: the
    /// golden records).
    EveryAudioToken,
    /// As transformers `generate` (`N - 39`).
    Generate,
}

/// Arguments of `voxtrace verify-real`.
#[derive(clap::Args, Debug)]
pub struct VerifyRealArgs {
    /// Voxtral checkpoint: Mistral folder (consolidated.safetensors + params.json + tekken.json)
    /// or HF folder (model.safetensors + config.json). A .gguf file is recognised but not
    /// loadable yet.
    #[arg(long)]
    pub model: PathBuf,
    /// Golden folder (`<id>.json`, `<id>.txt`, `<id>.wav`); default $VOXTRACE_GOLDEN_DIR, else
    /// ../shared/golden/voxtral-mini-4b-realtime.
    #[arg(long)]
    pub golden: Option<PathBuf>,
    /// Folder of the `<id>.wav` files when not in the golden folder.
    #[arg(long)]
    pub audio_dir: Option<PathBuf>,
    /// Tekken tokenizer (default: MODEL/tekken.json).
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Transcription delay in ms.
    #[arg(long, default_value_t = 480.0)]
    pub delay_ms: f64,
    /// How many ids to generate at the end of the audio.
    #[arg(long, value_enum, default_value_t = Budget::EveryAudioToken)]
    pub budget: Budget,
    /// Absolute tolerance of the first-logits check (voxtral.cpp's harness: 1e-2).
    #[arg(long, default_value_t = 1e-2)]
    pub atol: f32,
    /// Relative tolerance of the first-logits check (voxtral.cpp's harness: 1e-2).
    #[arg(long, default_value_t = 1e-2)]
    pub rtol: f32,
    /// Write the per-clip reports as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Compute device: flex (default), ndarray or wgpu when compiled in.
    #[arg(long, default_value = "flex")]
    pub device: String,
}

/// The `--json` document.
#[derive(serde::Serialize)]
struct JsonReport<'a> {
    model: String,
    golden: String,
    budget: &'static str,
    tolerance: Tolerance,
    pass: bool,
    clips: &'a [ClipReport],
}

fn describe_divergence(d: &Divergence) -> String {
    let side = |id: Option<i64>, piece: &Option<String>| match (id, piece) {
        (Some(id), Some(p)) => format!("{id} \"{}\"", terminal_safe(p)),
        _ => "(ended)".to_string(),
    };
    let margin = d.margin.map_or_else(String::new, |m| {
        format!(", port margin logit[port] - logit[golden] = {m:.4}")
    });
    format!(
        "first divergence at generated id {} (decoder position {}): golden {} vs port {}{margin}",
        d.index,
        d.decoder_position,
        side(d.golden_id, &d.golden_piece),
        side(d.port_id, &d.port_piece),
    )
}

fn print_clip(r: &ClipReport) {
    let verdict = if r.pass { "PASS" } else { "FAIL" };
    println!("{}: {verdict}", terminal_safe(&r.id));
    if r.ids_match {
        println!("  ids: match ({} of {})", r.common_prefix, r.golden_len);
    } else {
        println!(
            "  ids: DIFFER: common prefix {}, golden {} ids, port {} ids",
            r.common_prefix, r.golden_len, r.port_len
        );
    }
    if let Some(d) = &r.divergence {
        println!("  {}", describe_divergence(d));
    }
    match &r.logits {
        Some(l) => println!(
            "  first logits: {} values, max |diff| {:.3e} (id {}): {}; sha256 of all {}",
            l.compared,
            l.max_abs_diff,
            l.max_abs_diff_id,
            if l.pass { "pass" } else { "FAIL" },
            if l.sha256_equal { "equal" } else { "differs" },
        ),
        None => println!("  first logits: none (the port generated nothing)"),
    }
    println!(
        "  text: WER {:.2}% (golden text {:.2}%), port \"{}\"",
        100.0 * r.port_wer,
        100.0 * r.golden_wer,
        terminal_safe(&r.port_text)
    );
}

/// Run `voxtrace verify-real`.
///
/// # Errors
/// Anything that stops the run (exit 2): see [`crate::verify::VerifyError`].
pub fn run(args: &VerifyRealArgs) -> anyhow::Result<ExitCode> {
    let device = super::device(&args.device)?;
    let golden = args
        .golden
        .clone()
        .or_else(|| std::env::var_os("VOXTRACE_GOLDEN_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_GOLDEN_DIR));
    let clips = verify::read_golden_dir(&golden, args.audio_dir.as_deref())?;
    let (model, tok) = verify::load_model(&args.model, args.tokenizer.as_deref(), &device)?;
    let opts = RunOptions {
        delay_ms: args.delay_ms,
        budget: match args.budget {
            Budget::EveryAudioToken => TokenBudget::EveryAudioToken,
            Budget::Generate => TokenBudget::Generate,
        },
        ..RunOptions::default()
    };
    let tol = Tolerance {
        atol: args.atol,
        rtol: args.rtol,
    };
    println!(
        "verify-real: {} clips of {} against {}",
        clips.len(),
        golden.display(),
        args.model.display()
    );
    let mut reports = Vec::with_capacity(clips.len());
    for clip in &clips {
        let r = verify::verify_clip(&model, &tok, clip, opts, tol, &device)?;
        print_clip(&r);
        reports.push(r);
    }
    let passed = reports.iter().filter(|r| r.pass).count();
    let pass = passed == reports.len();
    println!(
        "result: {passed}/{} clips match: {}",
        reports.len(),
        if pass { "PASS" } else { "FAIL" }
    );
    if let Some(path) = &args.json {
        let doc = JsonReport {
            model: args.model.display().to_string(),
            golden: golden.display().to_string(),
            budget: match args.budget {
                Budget::EveryAudioToken => "every-audio-token",
                Budget::Generate => "generate",
            },
            tolerance: tol,
            pass,
            clips: &reports,
        };
        let mut text = serde_json::to_string_pretty(&doc)?;
        text.push('\n');
        crate::io::write_atomic(path, text.as_bytes())
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    Ok(if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
