//! `voxtrace compare REFERENCE ACTUAL [--atol A] [--rtol R] [--tol PATTERN=A,R ...]
//! [--criterion allclose|polygraphy] [--equal-nan] [--no-inf-equal] [--json FILE] [--html FILE]
//! [--graph-overlay FILE] [--quiet]`
//!
//! Exit-code contract (returned by [`run`] as an `ExitCode`, never as `Err`):
//! - **0**: every reference tensor passed (extra tensors in ACTUAL are allowed);
//! - **1**: at least one reference tensor failed, is missing from ACTUAL, or has a different
//!   shape;
//! - **2**: the comparison could not be made: a path does not exist, a file is unreadable,
//!   corrupt or truncated, a header lies about sizes/offsets, a dtype is unknown or
//!   unsupported, the reference holds no tensors, an argument is invalid, or a report file
//!   could not be written. A one-line message naming the file and the cause goes to stderr.

use std::path::PathBuf;
use std::process::ExitCode;

use super::error::CompareError;
use super::report::Report;
use super::tolerance::{Criterion, DEFAULT_ATOL, DEFAULT_RTOL, TolOverride, Tolerances};

/// Arguments of `voxtrace compare`.
#[derive(clap::Args, Debug, Clone)]
pub struct CompareArgs {
    /// Reference dump (e.g. PyTorch): a .safetensors file, an .npz, or a folder of .npy files.
    pub reference: PathBuf,
    /// Actual dump (e.g. the Burn port), same formats.
    pub actual: PathBuf,
    /// Default absolute tolerance.
    #[arg(long, default_value_t = DEFAULT_ATOL)]
    pub atol: f64,
    /// Default relative tolerance (fraction of |reference|).
    #[arg(long, default_value_t = DEFAULT_RTOL)]
    pub rtol: f64,
    /// Per-name override `PATTERN=ATOL,RTOL` (glob on the full name, `*` crosses dots);
    /// repeatable, the last matching one wins.
    #[arg(long = "tol", value_name = "PATTERN=ATOL,RTOL")]
    pub tol: Vec<String>,
    /// Element rule: `allclose` fails where |a-r| > atol + rtol*|r|; `polygraphy` fails only
    /// where both |a-r| > atol and |a-r|/|r| > rtol.
    #[arg(long, value_enum, default_value_t = Criterion::Allclose)]
    pub criterion: Criterion,
    /// Treat NaN in both dumps at the same position as equal (default: NaN always fails).
    #[arg(long)]
    pub equal_nan: bool,
    /// Treat equal infinities at the same position as a failure (default: they are equal).
    #[arg(long)]
    pub no_inf_equal: bool,
    /// Write the JSON report here (atomic write).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the self-contained HTML report here (atomic write).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// Print only the summary line, not the table.
    #[arg(long, short)]
    pub quiet: bool,
    /// Write Google Model Explorer node data here, colouring each node of a graph written by
    /// `voxtrace export --graph-json` by its tensor's drift (atomic write).
    #[arg(long, value_name = "FILE")]
    pub graph_overlay: Option<PathBuf>,
}

impl CompareArgs {
    /// Arguments with defaults for the given paths.
    pub fn new(reference: impl Into<PathBuf>, actual: impl Into<PathBuf>) -> Self {
        CompareArgs {
            reference: reference.into(),
            actual: actual.into(),
            atol: DEFAULT_ATOL,
            rtol: DEFAULT_RTOL,
            tol: Vec::new(),
            criterion: Criterion::Allclose,
            equal_nan: false,
            no_inf_equal: false,
            json: None,
            html: None,
            quiet: false,
            graph_overlay: None,
        }
    }

    /// Build the [`Tolerances`] these arguments describe.
    pub fn tolerances(&self) -> Result<Tolerances, CompareError> {
        let mut t = Tolerances::new(self.atol, self.rtol)?;
        for spec in &self.tol {
            t = t.with_override(TolOverride::parse(spec)?);
        }
        t.criterion = self.criterion;
        t.equal_nan = self.equal_nan;
        t.inf_equal = !self.no_inf_equal;
        Ok(t)
    }
}

/// Compare and write the requested reports; returns the report, or the error that makes the
/// exit code 2. Prints nothing.
pub fn execute(args: &CompareArgs) -> Result<Report, CompareError> {
    let tol = args.tolerances()?;
    let report = super::compare_dumps(&args.reference, &args.actual, &tol)?;
    if let Some(p) = &args.json {
        report.write_json(p)?;
    }
    if let Some(p) = &args.html {
        report.write_html(p)?;
    }
    if let Some(p) = &args.graph_overlay {
        let json = crate::export::model_explorer::overlay_json(&report);
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        super::report::write_atomic(p, text.as_bytes())?;
    }
    Ok(report)
}

/// The exit code for an outcome of [`execute`]: 0, 1 or 2 (see the module docs).
pub fn exit_code(outcome: &Result<Report, CompareError>) -> u8 {
    match outcome {
        Ok(r) => r.exit_code(),
        Err(_) => 2,
    }
}

/// Run `voxtrace compare`: print the table (or only the summary with `--quiet`) to stdout,
/// errors to stderr as `error: <file>: <cause>`, write `--json`/`--html`, and return exit code
/// 0/1/2. Never returns `Err`.
pub fn run(args: &CompareArgs) -> anyhow::Result<ExitCode> {
    let outcome = execute(args);
    match &outcome {
        Ok(r) => {
            if args.quiet {
                println!("{}", r.summary_line());
            } else {
                print!("{}", r.render_table());
            }
        }
        Err(e) => eprintln!("error: {e}"),
    }
    Ok(ExitCode::from(exit_code(&outcome)))
}
