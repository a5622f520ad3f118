//! The comparison report: per-tensor results, summary, JSON and the terminal table.
//!
//! JSON schema ([`SCHEMA_VERSION`] = 1), stable: fields are only ever added, never renamed or
//! removed, without bumping `schema_version`.
//!
//! ```text
//! { "schema_version": 1, "tool": "voxtrace compare",
//!   "reference": {path, format, source, tensors}, "actual": {...},
//!   "order_source": "reference" | "actual" | "storage",
//!   "tolerances": {atol, rtol, criterion, equal_nan, inf_equal, overrides: [{pattern, atol, rtol}]},
//!   "tensors": [ {index, name, status, reference: {shape, dtype}, actual: {shape, dtype} | null,
//!                 dtype_differs, atol, rtol, metrics: {...} | null} ],   // execution order
//!   "extra": [ {name, shape, dtype} ],
//!   "summary": {total, compared, passed, failed, missing, shape_mismatch, dtype_differs, extra,
//!               all_passed, first_failure, first_failure_status} }
//! ```
//! `status` is `"pass"`, `"fail"`, `"shape_mismatch"` or `"missing"`. Metric fields are
//! described in [`crate::compare::metrics`].
//!
//! Added within schema 1 (readers of older reports keep working; absent fields in older
//! reports read back as NaN / absent):
//! - `metrics.sqnr_db` for every compared tensor: SQNR in dB, `"inf"` for identical tensors,
//!   `"-inf"` for an all-zero reference with non-zero error.
//! - for logits tensors only, in the same `metrics` object: `vocab`, `positions`,
//!   `kl_positions`, `kl_mean`, `kl_p99`, `kl_p999`, `kl_max` (nats, KL(P_ref‖P_act) per
//!   position), `top1_agree`, `top1_agreement` (fraction in [0, 1]); see
//!   [`crate::compare::logits`]. Non-finite values are the strings `"inf"`, `"-inf"`, `"nan"`.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::dump::{DType, DumpFormat, TensorInfo};
use super::error::CompareError;
use super::metrics::Metrics;
use super::tolerance::{Criterion, Tolerances};

/// Version of the JSON schema written by [`Report::to_json`].
pub const SCHEMA_VERSION: u32 = 1;

/// Outcome for one reference tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Compared; every position within tolerance.
    Pass,
    /// Compared; at least one position out of tolerance (or a non-finite mismatch).
    Fail,
    /// Present in both dumps with different shapes; not compared.
    ShapeMismatch,
    /// Present in the reference, absent from the actual dump.
    Missing,
}

impl Status {
    /// Upper-case label used in the table (`PASS`, `FAIL`, `SHAPE`, `MISSING`).
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::ShapeMismatch => "SHAPE",
            Status::Missing => "MISSING",
        }
    }
}

/// Result for one tensor of the reference dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorResult {
    /// Position in execution order (0-based).
    pub index: usize,
    /// Tensor name (capture name, e.g. `model.audio_tower.layers.0.self_attn.q_proj.out`).
    pub name: String,
    /// Verdict.
    pub status: Status,
    /// Shape and stored dtype in the reference.
    pub reference: TensorInfo,
    /// Shape and stored dtype in the actual dump (`None` if missing).
    pub actual: Option<TensorInfo>,
    /// True when both exist and the stored dtypes differ (reported, still compared).
    pub dtype_differs: bool,
    /// Absolute tolerance applied.
    pub atol: f64,
    /// Relative tolerance applied.
    pub rtol: f64,
    /// Metrics (`None` unless compared, i.e. status `pass` or `fail`).
    pub metrics: Option<Metrics>,
    /// Set when the reference stores a gathered subset of the tensor (`voxtrace.sliced` metadata,
    /// e.g. every 50th encoder frame of Whisper) and the actual tensor had the full shape: the
    /// actual tensor was gathered the same way before comparing. Text: the gathers applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gathered: Option<String>,
}

impl TensorResult {
    /// True if the status is [`Status::Pass`].
    pub fn passed(&self) -> bool {
        self.status == Status::Pass
    }
}

/// A tensor present only in the actual dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtraTensor {
    /// Name.
    pub name: String,
    /// Shape.
    pub shape: Vec<usize>,
    /// Stored dtype.
    pub dtype: DType,
}

/// Description of one input dump.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DumpSummary {
    /// Path as given.
    pub path: String,
    /// Container format.
    pub format: DumpFormat,
    /// `voxtrace.source` metadata, if any.
    pub source: Option<String>,
    /// Number of tensors.
    pub tensors: usize,
}

/// Where the execution order came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderSource {
    /// `voxtrace.order` of the reference.
    Reference,
    /// `voxtrace.order` of the actual dump (the reference had none).
    Actual,
    /// Neither had one: reference storage order.
    Storage,
}

/// One override as recorded in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverrideSummary {
    /// Glob pattern.
    pub pattern: String,
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
}

/// Tolerance settings as recorded in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TolSummary {
    /// Default absolute tolerance.
    pub atol: f64,
    /// Default relative tolerance.
    pub rtol: f64,
    /// Element criterion.
    pub criterion: Criterion,
    /// NaN == NaN.
    pub equal_nan: bool,
    /// Same-signed Inf == Inf.
    pub inf_equal: bool,
    /// Overrides in the order given (last match wins).
    pub overrides: Vec<OverrideSummary>,
}

impl From<&Tolerances> for TolSummary {
    fn from(t: &Tolerances) -> Self {
        TolSummary {
            atol: t.atol,
            rtol: t.rtol,
            criterion: t.criterion,
            equal_nan: t.equal_nan,
            inf_equal: t.inf_equal,
            overrides: t
                .overrides
                .iter()
                .map(|o| OverrideSummary {
                    pattern: o.pattern.clone(),
                    atol: o.atol,
                    rtol: o.rtol,
                })
                .collect(),
        }
    }
}

/// Counts over the whole comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Reference tensors.
    pub total: usize,
    /// Tensors compared numerically (pass + fail).
    pub compared: usize,
    /// Tensors that passed.
    pub passed: usize,
    /// Tensors compared that failed.
    pub failed: usize,
    /// Reference tensors absent from the actual dump.
    pub missing: usize,
    /// Tensors with different shapes.
    pub shape_mismatch: usize,
    /// Tensors whose stored dtypes differ.
    pub dtype_differs: usize,
    /// Tensors only in the actual dump (do not make the comparison fail).
    pub extra: usize,
    /// True iff every reference tensor passed.
    pub all_passed: bool,
    /// First tensor in execution order that did not pass.
    pub first_failure: Option<String>,
    /// Its status.
    pub first_failure_status: Option<Status>,
}

/// Full result of comparing two dumps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Always `"voxtrace compare"`.
    pub tool: String,
    /// The reference dump.
    pub reference: DumpSummary,
    /// The actual dump.
    pub actual: DumpSummary,
    /// Where the execution order came from.
    pub order_source: OrderSource,
    /// Tolerance settings.
    pub tolerances: TolSummary,
    /// One entry per reference tensor, in execution order.
    pub tensors: Vec<TensorResult>,
    /// Tensors only in the actual dump, in its order.
    pub extra: Vec<ExtraTensor>,
    /// Counts.
    pub summary: Summary,
}

impl Report {
    /// Assemble a report and compute its summary.
    pub fn new(
        reference: DumpSummary,
        actual: DumpSummary,
        order_source: OrderSource,
        tolerances: TolSummary,
        tensors: Vec<TensorResult>,
        extra: Vec<ExtraTensor>,
    ) -> Report {
        let count = |s: Status| tensors.iter().filter(|t| t.status == s).count();
        let first = tensors.iter().find(|t| t.status != Status::Pass);
        let summary = Summary {
            total: tensors.len(),
            compared: count(Status::Pass) + count(Status::Fail),
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            missing: count(Status::Missing),
            shape_mismatch: count(Status::ShapeMismatch),
            dtype_differs: tensors.iter().filter(|t| t.dtype_differs).count(),
            extra: extra.len(),
            all_passed: first.is_none(),
            first_failure: first.map(|t| t.name.clone()),
            first_failure_status: first.map(|t| t.status),
        };
        Report {
            schema_version: SCHEMA_VERSION,
            tool: "voxtrace compare".to_string(),
            reference,
            actual,
            order_source,
            tolerances,
            tensors,
            extra,
            summary,
        }
    }

    /// True iff every reference tensor passed (extras do not count).
    pub fn passed(&self) -> bool {
        self.summary.all_passed
    }

    /// The first tensor in execution order whose status is not `Pass` (fail, shape mismatch or
    /// missing).
    pub fn first_failure(&self) -> Option<&TensorResult> {
        self.tensors.iter().find(|t| t.status != Status::Pass)
    }

    /// The first tensor in execution order that was compared and failed numerically.
    pub fn first_numeric_failure(&self) -> Option<&TensorResult> {
        self.tensors.iter().find(|t| t.status == Status::Fail)
    }

    /// Result for a tensor by name.
    pub fn get(&self, name: &str) -> Option<&TensorResult> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Names in the reference but not the actual dump, in execution order.
    pub fn missing(&self) -> Vec<&str> {
        self.names_with(Status::Missing)
    }

    /// Names whose shapes differ, in execution order.
    pub fn shape_mismatches(&self) -> Vec<&str> {
        self.names_with(Status::ShapeMismatch)
    }

    /// Names whose stored dtypes differ, in execution order.
    pub fn dtype_differences(&self) -> Vec<&str> {
        self.tensors
            .iter()
            .filter(|t| t.dtype_differs)
            .map(|t| t.name.as_str())
            .collect()
    }

    fn names_with(&self, s: Status) -> Vec<&str> {
        self.tensors
            .iter()
            .filter(|t| t.status == s)
            .map(|t| t.name.as_str())
            .collect()
    }

    /// Process exit code: 0 if all passed, 1 otherwise (2 is reserved for [`CompareError`]).
    pub fn exit_code(&self) -> u8 {
        if self.passed() { 0 } else { 1 }
    }

    /// Pretty-printed JSON (schema in the module docs), ending with a newline.
    pub fn to_json(&self) -> String {
        // Serializing plain data with string keys cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Parse a report written by [`Report::to_json`].
    pub fn from_json(s: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(s)
    }

    /// Write [`Report::to_json`] to `path` atomically (temporary file in the same folder, then
    /// rename).
    pub fn write_json(&self, path: &Path) -> Result<(), CompareError> {
        write_atomic(path, self.to_json().as_bytes())
    }

    /// The terminal table: a header naming both dumps and the tolerances, one aligned row per
    /// reference tensor in execution order (`#`, name, shape, dtype, max_abs, mean_abs,
    /// max_rel, rel_l2, cosine, sqnr_db, out-of-tol %, min_atol, NaN/Inf, status), then a
    /// block with the token-distribution metrics of logits tensors (if any), lists of
    /// missing/extra/shape/dtype differences and a summary line. No colour codes.
    pub fn render_table(&self) -> String {
        let mut out = String::new();
        let src = |d: &DumpSummary| {
            d.source
                .as_deref()
                .map(|s| format!(" ({})", safe(s)))
                .unwrap_or_default()
        };
        let _ = writeln!(
            out,
            "reference: {}{}",
            safe(&self.reference.path),
            src(&self.reference)
        );
        let _ = writeln!(
            out,
            "actual:    {}{}",
            safe(&self.actual.path),
            src(&self.actual)
        );
        let _ = writeln!(
            out,
            "tolerance: atol={} rtol={} criterion={}{}",
            fmt_tol(self.tolerances.atol),
            fmt_tol(self.tolerances.rtol),
            criterion_name(self.tolerances.criterion),
            if self.tolerances.overrides.is_empty() {
                String::new()
            } else {
                format!(
                    " overrides: {}",
                    self.tolerances
                        .overrides
                        .iter()
                        .map(|o| format!(
                            "{}={},{}",
                            safe(&o.pattern),
                            fmt_tol(o.atol),
                            fmt_tol(o.rtol)
                        ))
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            }
        );
        out.push('\n');

        let header: Vec<String> = TABLE_HEADER.iter().map(|s| s.to_string()).collect();
        let rows: Vec<Vec<String>> = self.tensors.iter().map(table_row).collect();
        let ncol = header.len();
        let mut width = vec![0usize; ncol];
        for r in std::iter::once(&header).chain(rows.iter()) {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let left = [false, true, true, true];
        let line = |cells: &[String]| {
            let mut l = String::new();
            for (k, c) in cells.iter().enumerate() {
                if k > 0 {
                    l.push_str("  ");
                }
                let pad = width[k] - c.chars().count();
                let is_left = left.get(k).copied().unwrap_or(false) || k == ncol - 1;
                if is_left {
                    l.push_str(c);
                    if k != ncol - 1 {
                        l.push_str(&" ".repeat(pad));
                    }
                } else {
                    l.push_str(&" ".repeat(pad));
                    l.push_str(c);
                }
            }
            l.trim_end().to_string()
        };
        let _ = writeln!(out, "{}", line(&header));
        for r in &rows {
            let _ = writeln!(out, "{}", line(r));
        }
        out.push_str(&self.render_logits_block());

        let list = |out: &mut String, title: &str, names: &[&str]| {
            if !names.is_empty() {
                let _ = writeln!(out, "\n{title} ({}):", names.len());
                for n in names {
                    let _ = writeln!(out, "  {}", safe(n));
                }
            }
        };
        list(&mut out, "missing in actual", &self.missing());
        if !self.extra.is_empty() {
            let _ = writeln!(out, "\nextra in actual ({}):", self.extra.len());
            for e in &self.extra {
                let _ = writeln!(
                    out,
                    "  {}  {}  {}",
                    safe(&e.name),
                    fmt_shape(&e.shape),
                    e.dtype
                );
            }
        }
        let shape_lines: Vec<String> = self
            .tensors
            .iter()
            .filter(|t| t.status == Status::ShapeMismatch)
            .map(|t| {
                format!(
                    "{}  reference {} vs actual {}",
                    safe(&t.name),
                    fmt_shape(&t.reference.shape),
                    t.actual
                        .as_ref()
                        .map(|a| fmt_shape(&a.shape))
                        .unwrap_or_default()
                )
            })
            .collect();
        list(
            &mut out,
            "shape mismatches",
            &shape_lines.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let dtype_lines: Vec<String> = self
            .tensors
            .iter()
            .filter(|t| t.dtype_differs)
            .map(|t| {
                format!(
                    "{}  reference {} vs actual {}",
                    safe(&t.name),
                    t.reference.dtype,
                    t.actual.as_ref().map(|a| a.dtype.as_str()).unwrap_or("")
                )
            })
            .collect();
        list(
            &mut out,
            "dtype differences (compared numerically)",
            &dtype_lines.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        out.push('\n');
        out.push_str(&self.summary_line());
        out.push('\n');
        out
    }

    /// One-line summary: verdict, counts, and the first failing tensor.
    pub fn summary_line(&self) -> String {
        let s = &self.summary;
        let mut l = format!(
            "{}: {} tensors, {} compared, {} passed, {} failed, {} missing, {} shape mismatch, {} dtype differences, {} extra",
            if s.all_passed { "PASSED" } else { "FAILED" },
            s.total,
            s.compared,
            s.passed,
            s.failed,
            s.missing,
            s.shape_mismatch,
            s.dtype_differs,
            s.extra
        );
        if let Some(f) = self.first_failure() {
            let _ = write!(
                l,
                "; first failure: #{} {} ({})",
                f.index,
                safe(&f.name),
                f.status.label()
            );
            if f.status != Status::Fail
                && let Some(n) = self.first_numeric_failure()
            {
                let _ = write!(l, "; first numeric failure: #{} {}", n.index, safe(&n.name));
            }
        }
        l
    }
}

pub(crate) const TABLE_HEADER: [&str; 14] = [
    "#",
    "name",
    "shape",
    "dtype",
    "max_abs",
    "mean_abs",
    "max_rel",
    "rel_l2",
    "cosine",
    "sqnr_db",
    "out_tol",
    "min_atol",
    "nan/inf ref|act",
    "status",
];

/// [`crate::io::terminal_safe`]: names, dtypes and paths come from the dump files.
fn safe(text: &str) -> std::borrow::Cow<'_, str> {
    crate::io::terminal_safe(text)
}

pub(crate) fn criterion_name(c: Criterion) -> &'static str {
    match c {
        Criterion::Allclose => "allclose",
        Criterion::Polygraphy => "polygraphy",
    }
}

/// Format a tolerance compactly (`1e-5`, `0.001`).
pub(crate) fn fmt_tol(v: f64) -> String {
    format!("{v:e}")
}

/// `[1, 2, 3]`.
pub(crate) fn fmt_shape(s: &[usize]) -> String {
    format!(
        "[{}]",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Scientific notation with 3 significant decimals, `0` for exact zero, `inf`/`nan` spelled.
pub(crate) fn fmt_sci(v: f64) -> String {
    if v == 0.0 {
        "0".to_string()
    } else if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        // Rust prints `1.000e-5`; use the C-style `1.000e-05` so that columns line up.
        let s = format!("{v:.3e}");
        match s.split_once('e') {
            Some((mant, exp)) => {
                let e: i32 = exp.parse().unwrap_or(0);
                format!("{mant}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
            }
            None => s,
        }
    }
}

/// Cosine with 7 decimals (differences from 1 show up to 1e-7).
pub(crate) fn fmt_cos(v: f64) -> String {
    format!("{v:.7}")
}

/// Decibels with 2 decimals, `inf` / `-inf` / `nan` spelled.
pub(crate) fn fmt_db(v: f64) -> String {
    if v.is_nan() {
        "nan".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else {
        format!("{v:.2}")
    }
}

/// Header of the logits block (terminal and HTML).
pub(crate) const LOGITS_HEADER: [&str; 9] = [
    "#",
    "name",
    "vocab",
    "positions",
    "kl_mean",
    "kl_p99",
    "kl_p99.9",
    "kl_max",
    "top1_agreement",
];

/// Cells of one logits row (same order as [`LOGITS_HEADER`]); `None` for a tensor without
/// logits metrics.
pub(crate) fn logits_row(t: &TensorResult) -> Option<Vec<String>> {
    let l = t.metrics.as_ref()?.logits.as_ref()?;
    let positions = if l.kl_positions == l.positions {
        l.positions.to_string()
    } else {
        format!("{} of {}", l.kl_positions, l.positions)
    };
    let top1 = if l.kl_positions == 0 {
        "-".to_string()
    } else {
        format!(
            "{} ({}/{})",
            fmt_top1(l.top1_agreement),
            l.top1_agree,
            l.kl_positions
        )
    };
    Some(vec![
        t.index.to_string(),
        safe(&t.name).into_owned(),
        l.vocab.to_string(),
        positions,
        fmt_sci(l.kl_mean),
        fmt_sci(l.kl_p99),
        fmt_sci(l.kl_p999),
        fmt_sci(l.kl_max),
        top1,
    ])
}

/// Top-1 agreement as a percentage with 2 decimals; `100%` only when every position agrees.
pub(crate) fn fmt_top1(frac: f64) -> String {
    if frac == 1.0 {
        "100%".to_string()
    } else {
        // Never round a disagreement up to 100.00%.
        let p = (frac * 10000.0).floor() / 100.0;
        format!("{p:.2}%")
    }
}

/// Aligned text table: columns separated by two spaces, `left` columns left-aligned, the rest
/// right-aligned, trailing spaces trimmed.
fn aligned(header: &[&str], rows: &[Vec<String>], left: &[usize]) -> String {
    let hdr: Vec<String> = header.iter().map(|s| s.to_string()).collect();
    let mut width = vec![0usize; header.len()];
    for r in std::iter::once(&hdr).chain(rows.iter()) {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&hdr).chain(rows.iter()) {
        let mut l = String::new();
        for (k, c) in r.iter().enumerate() {
            if k > 0 {
                l.push_str("  ");
            }
            let pad = " ".repeat(width[k].saturating_sub(c.chars().count()));
            if left.contains(&k) {
                l.push_str(c);
                l.push_str(&pad);
            } else {
                l.push_str(&pad);
                l.push_str(c);
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    }
    out
}

impl Report {
    /// The logits block of [`Report::render_table`]: an empty string when no tensor has
    /// logits metrics, else a title line and one aligned row per logits tensor (`#`, name,
    /// vocab, positions measured, KL mean / p99 / p99.9 / max in nats, top-1 agreement).
    pub fn render_logits_block(&self) -> String {
        let rows: Vec<Vec<String>> = self.tensors.iter().filter_map(logits_row).collect();
        if rows.is_empty() {
            return String::new();
        }
        let mut out = String::from(
            "\nlogits: KL(P_ref||P_act) per position of softmax(last axis), nats; top-1 = same first argmax\n",
        );
        out.push_str(&aligned(&LOGITS_HEADER, &rows, &[1]));
        out
    }
}

/// Percentage with adaptive precision (`0%`, `0.0012%`, `12.5%`, `100%`).
pub(crate) fn fmt_pct(frac: f64, count: u64) -> String {
    if count == 0 {
        return "0%".to_string();
    }
    let p = frac * 100.0;
    if p >= 1.0 {
        format!("{p:.1}%")
    } else {
        format!("{p:.2e}%")
    }
}

pub(crate) fn fmt_dtype(t: &TensorResult) -> String {
    match &t.actual {
        Some(a) if a.dtype != t.reference.dtype => format!("{}/{}", t.reference.dtype, a.dtype),
        _ => t.reference.dtype.to_string(),
    }
}

pub(crate) fn fmt_shape_pair(t: &TensorResult) -> String {
    match &t.actual {
        Some(a) if a.shape != t.reference.shape => format!(
            "{} vs {}",
            fmt_shape(&t.reference.shape),
            fmt_shape(&a.shape)
        ),
        _ => fmt_shape(&t.reference.shape),
    }
}

pub(crate) fn fmt_nonfinite(m: &Metrics) -> String {
    if m.ref_nan + m.ref_inf + m.act_nan + m.act_inf == 0 {
        "-".to_string()
    } else {
        format!("{}/{}|{}/{}", m.ref_nan, m.ref_inf, m.act_nan, m.act_inf)
    }
}

/// Cells of one table row (same order as [`TABLE_HEADER`]).
pub(crate) fn table_row(t: &TensorResult) -> Vec<String> {
    let mut row = vec![
        t.index.to_string(),
        safe(&t.name).into_owned(),
        fmt_shape_pair(t),
        fmt_dtype(t),
    ];
    match &t.metrics {
        Some(m) => row.extend([
            fmt_sci(m.max_abs_err),
            fmt_sci(m.mean_abs_err),
            fmt_sci(m.max_rel_err),
            fmt_sci(m.rel_l2),
            fmt_cos(m.cosine),
            fmt_db(m.sqnr_db),
            fmt_pct(m.frac_out_of_tol, m.out_of_tol),
            fmt_sci(m.min_atol),
            fmt_nonfinite(m),
        ]),
        None => row.extend(std::iter::repeat_n("-".to_string(), 9)),
    }
    row.push(t.status.label().to_string());
    row
}

/// Write `bytes` to `path` atomically ([`crate::io::write_atomic`]).
///
/// # Errors
/// [`CompareError::Write`] naming `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CompareError> {
    crate::io::write_atomic(path, bytes).map_err(|e| CompareError::Write {
        path: e.path,
        detail: e.detail,
    })
}
