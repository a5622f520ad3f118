//! `voxtrace bench MODE`: the benchmark workers of [`crate::bench`], one per subcommand, each
//! printing one JSON object on stdout for the drivers in `reference/` (`just bench`).

use crate::bench;
use std::path::PathBuf;
use std::process::ExitCode;

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
        /// Whisper folder (CTranslate2 `model.bin` + `tokenizer.json` + `config.json`) or
        /// Whisper GGUF file.
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
    /// Packed Q8_0 / Q4_0 weight product (`nn::qmatmul`, every kernel this CPU has) against
    /// the same shape in f32: median seconds and GB/s of weight bytes read.
    Qmatmul {
        /// Block format: q8_0 or q4_0.
        #[arg(long, default_value = "q8_0")]
        kind: String,
        /// Activation rows.
        #[arg(long, default_value_t = 1)]
        m: usize,
        /// Output features (weight rows).
        #[arg(long, default_value_t = 4096)]
        n_out: usize,
        /// Input features (a multiple of 32).
        #[arg(long, default_value_t = 3072)]
        n_in: usize,
        /// Timed repetitions (median reported).
        #[arg(long, default_value_t = 20)]
        reps: usize,
        /// Also write the run's inputs and output to this folder, for a peer to multiply the
        /// same bytes (`peers/candle-qmatmul`): `weight.bin` (the packed blocks),
        /// `x.bin` and `y.bin` (the detected kernel's output), f32 little-endian, row-major.
        #[arg(long)]
        dump: Option<std::path::PathBuf>,
        /// Also time one pass over this many different copies of the weight (so they come
        /// from memory, not cache, as in a decoder step), with the detected kernel, split over
        /// the spinning helpers (`nn::spin_pool`) and over Rayon: µs per product and GB/s.
        #[arg(long, default_value_t = 0)]
        rotate: usize,
    },
    /// BF16 weight product (`nn::half`): f32 compute, and bf16 compute on AVX-512 BF16 and on
    /// AMX tiles where present: median seconds, GFLOP/s and GB/s of weight bytes read.
    Half {
        /// Activation rows.
        #[arg(long, default_value_t = 1)]
        m: usize,
        /// Output features (weight rows).
        #[arg(long, default_value_t = 4096)]
        n_out: usize,
        /// Input features.
        #[arg(long, default_value_t = 3072)]
        n_in: usize,
        /// Timed repetitions (median reported).
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
        BenchMode::Whisper { model, audio } => bench::whisper(model, audio, &device)?,
        BenchMode::VoxtralEncoderLayer {
            seconds,
            reps,
            export,
            seed,
        } => bench::encoder_layer(*seconds, *reps, export.as_deref(), *seed, &device)?,
        BenchMode::VoxtralDecoderStep {
            pos,
            reps,
            export,
            seed,
        } => bench::decoder_step(*pos, *reps, export.as_deref(), *seed, &device)?,
        BenchMode::VoxtralStream { steps } => bench::stream(*steps, &device)?,
        BenchMode::Bandwidth { mib, reps } => bench::bandwidth(*mib, *reps, &device)?,
        BenchMode::Trace { modes, reps } => bench::trace(modes, *reps, &device)?,
        BenchMode::Qmatmul {
            kind,
            m,
            n_out,
            n_in,
            reps,
            dump,
            rotate,
        } => bench::qmatmul_bench(
            kind.parse()?,
            (*m, *n_out, *n_in),
            (*reps, *rotate),
            dump.as_deref(),
            &device,
        )?,
        BenchMode::Half {
            m,
            n_out,
            n_in,
            reps,
        } => bench::half_bench((*m, *n_out, *n_in), *reps)?,
    };
    println!("{out}");
    Ok(ExitCode::SUCCESS)
}
