//! `voxtrace compare REFERENCE ACTUAL [--atol A] [--rtol R] [--tol PATTERN=A,R ...]
//! [--criterion allclose|polygraphy] [--equal-nan] [--no-inf-equal] [--json FILE] [--html FILE]
//! [--graph-overlay FILE] [--logits PATTERN ...] [--quiet]`
//!
//! Every compared tensor gets its SQNR (dB) and cosine; logits tensors (names ending in
//! `logits`, or matching a `--logits` glob) also get the KL divergence of their token
//! distributions and top-1 agreement ([`crate::compare::logits`]).
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

use crate::compare::tolerance::{DEFAULT_ATOL, DEFAULT_RTOL};
use crate::compare::{CompareError, CompareOptions, Criterion, Report};

/// `--criterion` values (the library's [`Criterion`]).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum CriterionArg {
    /// The element fails iff `d > atol + rtol·r` (the `numpy.isclose` / `torch.isclose` rule).
    Allclose,
    /// Polygraphy's elemwise rule: the element fails iff it exceeds both tolerances.
    Polygraphy,
}

impl From<CriterionArg> for Criterion {
    fn from(c: CriterionArg) -> Self {
        match c {
            CriterionArg::Allclose => Criterion::Allclose,
            CriterionArg::Polygraphy => Criterion::Polygraphy,
        }
    }
}

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
    #[arg(long, value_enum, default_value_t = CriterionArg::Allclose)]
    pub criterion: CriterionArg,
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
    /// Also treat tensors matching this glob as logits (last axis = vocabulary): report the KL
    /// divergence of their softmax distributions and top-1 agreement. Names ending in `logits`
    /// always are. Repeatable.
    #[arg(long = "logits", value_name = "PATTERN")]
    pub logits: Vec<String>,
}

impl CompareArgs {
    /// Arguments with defaults for the given paths (as the command line gives them).
    pub fn new(reference: impl Into<PathBuf>, actual: impl Into<PathBuf>) -> Self {
        CompareArgs {
            reference: reference.into(),
            actual: actual.into(),
            atol: DEFAULT_ATOL,
            rtol: DEFAULT_RTOL,
            tol: Vec::new(),
            criterion: CriterionArg::Allclose,
            equal_nan: false,
            no_inf_equal: false,
            json: None,
            html: None,
            quiet: false,
            graph_overlay: None,
            logits: Vec::new(),
        }
    }

    /// The library options these arguments describe.
    pub fn options(&self) -> CompareOptions {
        CompareOptions {
            reference: self.reference.clone(),
            actual: self.actual.clone(),
            atol: self.atol,
            rtol: self.rtol,
            tol: self.tol.clone(),
            criterion: self.criterion.into(),
            equal_nan: self.equal_nan,
            no_inf_equal: self.no_inf_equal,
            json: self.json.clone(),
            html: self.html.clone(),
            logits: self.logits.clone(),
        }
    }
}

/// Compare, write the requested reports and the Model Explorer overlay.
fn execute(args: &CompareArgs) -> Result<Report, CompareError> {
    let report = crate::compare::execute(&args.options())?;
    if let Some(p) = &args.graph_overlay {
        let json = crate::export::model_explorer::overlay_json(&report);
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        crate::compare::report::write_atomic(p, text.as_bytes())?;
    }
    Ok(report)
}

/// Run `voxtrace compare`: print the table (or only the summary with `--quiet`) to stdout,
/// errors to stderr as `error: <file>: <cause>`, write `--json`/`--html`/`--graph-overlay`, and
/// return exit code 0/1/2. Never returns `Err`.
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
        // Tensor names and dtypes in the message come from the files: escaped.
        Err(e) => eprintln!("error: {}", crate::io::terminal_safe(&e.to_string())),
    }
    Ok(ExitCode::from(crate::compare::exit_code(&outcome)))
}
