//! Per-tensor drift comparator: compares a *reference* dump (e.g. PyTorch activations captured
//! with forward hooks) with an *actual* dump (e.g. the Burn port's trace), tensor by tensor in
//! execution order, and reports where they diverge.
//!
//! Semantics follow NVIDIA Polygraphy's comparator
//! (`NVIDIA/TensorRT: tools/Polygraphy/polygraphy/comparator/compare.py`, `CompareFunc.simple`):
//! outputs are matched by name, the reference is the *second* runner (relative error is taken
//! against it), every element is checked (`elemwise`), NaN fails, shapes must match exactly,
//! the report gives the minimum tolerance that would pass, and per-name tolerances are allowed.
//! Differences from Polygraphy, all documented in [`tolerance`] and [`metrics`]: the default
//! element rule is `|a − r| > atol + rtol·|r|` ([`Criterion::Allclose`]; Polygraphy's
//! "exceeds both" rule is [`Criterion::Polygraphy`]); equal infinities compare equal by
//! default; zero references are excluded from `max_rel_err` instead of being divided by ε.
//!
//! Layout: [`dump`] (readers), [`tolerance`], [`metrics`] (single-pass accumulator, including
//! the drift metrics SQNR and cosine), [`logits`] (KL divergence and top-1 agreement of token
//! distributions for logits tensors), [`report`] (results, JSON, table), [`html`]
//! (self-contained HTML report); [`CompareOptions`] and [`execute`] are what `voxtrace compare`
//! (src/cli/compare.rs) runs.
//!
//! Execution: both dumps are memory-mapped (or streamed for compressed `.npz` members); tensors
//! are processed one at a time per worker, large memory-mapped tensors are split into chunks of
//! [`ITEM_ELEMS`] elements, and work is spread over `std::thread::available_parallelism()`
//! threads with `std::thread::scope`. Partial results are merged in index order, so the output
//! is deterministic.

pub mod dump;
pub mod error;
pub mod html;
pub mod logits;
pub mod metrics;
pub mod report;
pub mod tolerance;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

pub use dump::{DType, Dump, DumpFormat, TensorInfo};
pub use error::CompareError;
pub use logits::{LogitsAccumulator, LogitsMetrics, LogitsSelector};
pub use metrics::{Accumulator, Metrics};
pub use report::{DumpSummary, ExtraTensor, OrderSource, Report, Status, TensorResult};
pub use tolerance::{Criterion, ElemTol, TolOverride, Tolerances};

use dump::BLOCK;

/// One comparison as `voxtrace compare` runs it: two dumps, the tolerance settings and the
/// report files to write.
#[derive(Debug, Clone)]
pub struct CompareOptions {
    /// Reference dump (e.g. PyTorch): a .safetensors file, an .npz, or a folder of .npy files.
    pub reference: PathBuf,
    /// Actual dump (e.g. the Burn port), same formats.
    pub actual: PathBuf,
    /// Default absolute tolerance (the tensor's unit).
    pub atol: f64,
    /// Default relative tolerance (fraction of |reference|).
    pub rtol: f64,
    /// Per-name overrides `PATTERN=ATOL,RTOL` (see [`TolOverride::parse`]); the last match wins.
    pub tol: Vec<String>,
    /// Element rule.
    pub criterion: Criterion,
    /// NaN at the same position in both dumps counts as equal.
    pub equal_nan: bool,
    /// Equal infinities at the same position count as a failure.
    pub no_inf_equal: bool,
    /// Write the JSON report here (atomic write).
    pub json: Option<PathBuf>,
    /// Write the self-contained HTML report here (atomic write).
    pub html: Option<PathBuf>,
    /// Extra globs naming logits tensors (`--logits PATTERN`), in addition to names ending in
    /// `logits` (see [`LogitsSelector`]).
    pub logits: Vec<String>,
}

impl CompareOptions {
    /// Options with the default tolerances ([`tolerance::DEFAULT_ATOL`],
    /// [`tolerance::DEFAULT_RTOL`], [`Criterion::Allclose`]) and no report files.
    pub fn new(reference: impl Into<PathBuf>, actual: impl Into<PathBuf>) -> Self {
        CompareOptions {
            reference: reference.into(),
            actual: actual.into(),
            atol: tolerance::DEFAULT_ATOL,
            rtol: tolerance::DEFAULT_RTOL,
            tol: Vec::new(),
            criterion: Criterion::Allclose,
            equal_nan: false,
            no_inf_equal: false,
            json: None,
            html: None,
            logits: Vec::new(),
        }
    }

    /// Build the [`Tolerances`] these options describe.
    ///
    /// # Errors
    /// [`CompareError::InvalidInput`] for a negative or non-finite tolerance or a malformed
    /// override.
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

    /// Build the [`LogitsSelector`] these options describe.
    ///
    /// # Errors
    /// [`CompareError::InvalidInput`] for an empty or invalid `--logits` glob.
    pub fn logits_selector(&self) -> Result<LogitsSelector, CompareError> {
        let mut s = LogitsSelector::new();
        for p in &self.logits {
            s = s.with_pattern(p)?;
        }
        Ok(s)
    }
}

/// Compare and write the requested reports; returns the report, or the error that makes the
/// exit code 2. Prints nothing.
///
/// # Errors
/// Any [`CompareError`]: a missing, unreadable or corrupt dump, a bad tolerance, a report file
/// that could not be written.
pub fn execute(opts: &CompareOptions) -> Result<Report, CompareError> {
    let tol = opts.tolerances()?;
    let sel = opts.logits_selector()?;
    tol.validate()?;
    let rd = Dump::open(&opts.reference)?;
    let ad = Dump::open(&opts.actual)?;
    let report = compare_opened_with(&rd, &ad, &tol, &sel)?;
    if let Some(p) = &opts.json {
        report.write_json(p)?;
    }
    if let Some(p) = &opts.html {
        report.write_html(p)?;
    }
    Ok(report)
}

/// The exit code for an outcome of [`execute`]: 0 every reference tensor passed, 1 at least one
/// failed, is missing or has another shape, 2 the comparison could not be made.
pub fn exit_code(outcome: &Result<Report, CompareError>) -> u8 {
    match outcome {
        Ok(r) => r.exit_code(),
        Err(_) => 2,
    }
}

/// Elements per parallel work item when a tensor is split.
pub const ITEM_ELEMS: usize = 1 << 20;

/// Compare two in-memory tensors (values already converted to `f64`, C order).
///
/// `reference.len()` must equal the product of `ref_shape` and likewise for `actual`
/// (otherwise [`CompareError::InvalidInput`]). Differing shapes give a
/// [`Status::ShapeMismatch`] result without metrics. Both dtypes are recorded as `F64`; the
/// result's `index` is 0. A name ending in `logits` also gets the [`LogitsMetrics`] (the
/// default [`LogitsSelector`]).
pub fn compare_tensors(
    name: &str,
    reference: &[f64],
    ref_shape: &[usize],
    actual: &[f64],
    act_shape: &[usize],
    tol: &Tolerances,
) -> Result<TensorResult, CompareError> {
    tol.validate()?;
    for (what, data, shape) in [
        ("reference", reference, ref_shape),
        ("actual", actual, act_shape),
    ] {
        let numel: usize = shape.iter().product();
        if data.len() != numel {
            return Err(CompareError::InvalidInput(format!(
                "{what} `{name}`: {} values for shape {:?} ({numel} elements)",
                data.len(),
                shape
            )));
        }
    }
    let et = tol.for_name(name);
    let rinfo = TensorInfo {
        shape: ref_shape.to_vec(),
        dtype: DType::F64,
    };
    let ainfo = TensorInfo {
        shape: act_shape.to_vec(),
        dtype: DType::F64,
    };
    if ref_shape != act_shape {
        return Ok(TensorResult {
            index: 0,
            name: name.to_string(),
            status: Status::ShapeMismatch,
            reference: rinfo,
            actual: Some(ainfo),
            dtype_differs: false,
            atol: et.atol,
            rtol: et.rtol,
            metrics: None,
            gathered: None,
        });
    }
    let mut m = accumulate(reference, actual, et).finish(ref_shape);
    if LogitsSelector::new().is_logits(name) {
        m.logits = Some(logits::logits_metrics(reference, actual, ref_shape));
    }
    Ok(TensorResult {
        index: 0,
        name: name.to_string(),
        status: if m.passed() {
            Status::Pass
        } else {
            Status::Fail
        },
        reference: rinfo,
        actual: Some(ainfo),
        dtype_differs: false,
        atol: et.atol,
        rtol: et.rtol,
        metrics: Some(m),
        gathered: None,
    })
}

/// Open two dumps and compare every reference tensor with the same-named actual tensor.
///
/// Order: the reference's `voxtrace.order`, else the actual's (restricted to reference names,
/// followed by the remaining reference names in storage order), else the reference's storage
/// order. Reference names absent from `actual` are [`Status::Missing`]; shape differences are
/// [`Status::ShapeMismatch`] (not compared); dtype differences are flagged and compared
/// numerically; names only in `actual` are listed as extras and do not fail the comparison.
///
/// Errors: any [`CompareError`] from opening or reading either dump, and
/// [`CompareError::EmptyReference`] if the reference holds no tensors.
pub fn compare_dumps(
    reference: &Path,
    actual: &Path,
    tol: &Tolerances,
) -> Result<Report, CompareError> {
    tol.validate()?;
    let rd = Dump::open(reference)?;
    let ad = Dump::open(actual)?;
    compare_opened(&rd, &ad, tol)
}

/// [`compare_dumps`] on already opened dumps (logits tensors chosen by the default
/// [`LogitsSelector`]: names ending in `logits`).
pub fn compare_opened(rd: &Dump, ad: &Dump, tol: &Tolerances) -> Result<Report, CompareError> {
    compare_opened_with(rd, ad, tol, &LogitsSelector::new())
}

/// [`compare_opened`] with the logits tensors chosen by `sel`: those also get
/// [`LogitsMetrics`] (computed row by row in the same pass; such tensors are not split into
/// parallel chunks).
pub fn compare_opened_with(
    rd: &Dump,
    ad: &Dump,
    tol: &Tolerances,
    sel: &LogitsSelector,
) -> Result<Report, CompareError> {
    if rd.is_empty() {
        return Err(CompareError::EmptyReference {
            path: rd.path().to_path_buf(),
        });
    }
    let (order, order_source): (Vec<&str>, OrderSource) = if rd.declared_order().is_some() {
        (rd.names_in_order(), OrderSource::Reference)
    } else if let Some(aorder) = ad.declared_order() {
        let mut seen = std::collections::HashSet::new();
        let mut o: Vec<&str> = aorder
            .iter()
            .map(String::as_str)
            .filter(|n| rd.contains(n) && seen.insert(*n))
            .collect();
        for n in rd.names_in_storage_order() {
            if seen.insert(n) {
                o.push(n);
            }
        }
        (o, OrderSource::Actual)
    } else {
        (rd.names_in_storage_order(), OrderSource::Storage)
    };

    // Plan: results with status decided up-front for missing / shape mismatch; jobs for the rest.
    let mut results: Vec<TensorResult> = Vec::with_capacity(order.len());
    struct Job {
        result: usize,
        numel: usize,
        split: bool,
        gather: Option<Sliced>,
        logits: bool,
    }
    let sliced = sliced_metadata(rd)?;
    let mut jobs: Vec<Job> = Vec::new();
    for (index, &name) in order.iter().enumerate() {
        let rinfo = rd.info(name).cloned().ok_or_else(|| {
            CompareError::read(rd.path(), name, "listed in the order but not stored")
        })?;
        let et = tol.for_name(name);
        let ainfo = ad.info(name).cloned();
        let gather = match (&ainfo, sliced.get(name)) {
            (Some(a), Some(g)) if a.shape != rinfo.shape && a.shape == g.full_shape => {
                Some(g.clone())
            }
            _ => None,
        };
        let status = match &ainfo {
            None => Status::Missing,
            Some(a) if a.shape != rinfo.shape && gather.is_none() => Status::ShapeMismatch,
            Some(_) => Status::Pass, // provisional
        };
        let dtype_differs = ainfo.as_ref().is_some_and(|a| a.dtype != rinfo.dtype);
        if status == Status::Pass {
            let numel = rinfo.numel();
            let logits = sel.is_logits(name);
            let split = gather.is_none()
                && !logits
                && numel > ITEM_ELEMS
                && rd.mapped(name).is_some()
                && ad.mapped(name).is_some();
            jobs.push(Job {
                result: results.len(),
                numel,
                split,
                gather: gather.clone(),
                logits,
            });
        }
        results.push(TensorResult {
            index,
            name: name.to_string(),
            status,
            reference: rinfo,
            actual: ainfo,
            dtype_differs,
            atol: et.atol,
            rtol: et.rtol,
            metrics: None,
            gathered: gather.map(|g| g.describe()),
        });
    }

    // Work items: (job, start, len). Split jobs get one item per ITEM_ELEMS chunk.
    let mut items: Vec<(usize, usize, usize)> = Vec::new();
    let mut item_range: Vec<(usize, usize)> = Vec::with_capacity(jobs.len());
    for (j, job) in jobs.iter().enumerate() {
        let first = items.len();
        if job.split {
            let mut start = 0;
            while start < job.numel {
                let len = ITEM_ELEMS.min(job.numel - start);
                items.push((j, start, len));
                start += len;
            }
        } else {
            items.push((j, 0, job.numel));
        }
        item_range.push((first, items.len()));
    }

    type Slot = (Accumulator, Option<LogitsAccumulator>);
    let slots: Vec<Mutex<Option<Slot>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<CompareError>> = Mutex::new(None);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(items.len())
        .max(1);

    let worker = || {
        let mut rbuf = vec![0.0f64; BLOCK];
        let mut abuf = vec![0.0f64; BLOCK];
        loop {
            if failed.load(Ordering::Relaxed) {
                return;
            }
            let k = next.fetch_add(1, Ordering::Relaxed);
            if k >= items.len() {
                return;
            }
            let (j, start, len) = items[k];
            let res = &results[jobs[j].result];
            let et = ElemTol {
                atol: res.atol,
                rtol: res.rtol,
                ..tol.for_name(&res.name)
            };
            let mut lacc = jobs[j]
                .logits
                .then(|| LogitsAccumulator::new(&res.reference.shape));
            let outcome = if let Some(g) = &jobs[j].gather {
                run_gathered(rd, ad, &res.name, g, et, lacc.as_mut())
            } else if jobs[j].split {
                Ok(run_mapped(
                    rd, ad, &res.name, start, len, et, &mut rbuf, &mut abuf,
                ))
            } else {
                run_streamed(rd, ad, &res.name, et, &mut rbuf, &mut abuf, lacc.as_mut())
            };
            match outcome {
                Ok(acc) => {
                    if let Ok(mut s) = slots[k].lock() {
                        *s = Some((acc, lacc));
                    }
                }
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    if let Ok(mut fe) = first_error.lock()
                        && fe.is_none()
                    {
                        *fe = Some(e);
                    }
                    return;
                }
            }
        }
    };
    if threads == 1 {
        worker();
    } else {
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(worker);
            }
        });
    }
    if let Some(e) = first_error.into_inner().ok().flatten() {
        return Err(e);
    }

    let mut slots: Vec<Option<Slot>> = slots
        .into_iter()
        .map(|m| m.into_inner().ok().flatten())
        .collect();
    for (j, job) in jobs.iter().enumerate() {
        let (a, b) = item_range[j];
        let mut acc: Option<Accumulator> = None;
        let mut lacc: Option<LogitsAccumulator> = None;
        for slot in slots[a..b].iter_mut() {
            let (part, lpart) = slot.take().ok_or_else(|| {
                CompareError::InvalidInput("internal: a work item produced no result".into())
            })?;
            match acc.as_mut() {
                None => acc = Some(part),
                Some(x) => x.merge(&part),
            }
            // Logits jobs are never split: at most one item carries a logits accumulator.
            if lpart.is_some() {
                lacc = lpart;
            }
        }
        let res = &mut results[job.result];
        if let Some(acc) = acc {
            let mut m = acc.finish(&res.reference.shape);
            m.logits = lacc.map(LogitsAccumulator::finish);
            res.status = if m.passed() {
                Status::Pass
            } else {
                Status::Fail
            };
            res.metrics = Some(m);
        }
    }

    let extra = ad
        .names_in_order()
        .into_iter()
        .filter(|n| !rd.contains(n))
        .filter_map(|n| {
            ad.info(n).map(|i| ExtraTensor {
                name: n.to_string(),
                shape: i.shape.clone(),
                dtype: i.dtype,
            })
        })
        .collect();
    let summary = |d: &Dump| DumpSummary {
        path: d.path().display().to_string(),
        format: d.format(),
        source: d.source().map(str::to_string),
        tensors: d.len(),
    };
    Ok(Report::new(
        summary(rd),
        summary(ad),
        order_source,
        tol.into(),
        results,
        extra,
    ))
}

/// Per-tensor gathers of a dump that stores subsets of large tensors (`voxtrace.sliced`
/// metadata written by `reference/whisper_reference.py`): `{name: {"full_shape": [..],
/// "gathers": [{"axis": a, "indices": [..]}, ..]}}`, applied in order.
#[derive(Clone, Debug, serde::Deserialize)]
struct Sliced {
    full_shape: Vec<usize>,
    gathers: Vec<Gather>,
}

#[derive(Clone, Debug, serde::Deserialize)]
struct Gather {
    axis: usize,
    indices: Vec<usize>,
}

impl Sliced {
    fn describe(&self) -> String {
        let g: Vec<String> = self
            .gathers
            .iter()
            .map(|g| format!("axis {} at {} indices", g.axis, g.indices.len()))
            .collect();
        format!(
            "actual {:?} gathered per reference voxtrace.sliced: {}",
            self.full_shape,
            g.join(", ")
        )
    }

    /// Gathers `data` (`full_shape`, row-major) into the stored subset.
    fn apply(&self, data: Vec<f64>) -> Result<Vec<f64>, String> {
        let mut shape = self.full_shape.clone();
        let mut data = data;
        for g in &self.gathers {
            if g.axis >= shape.len() {
                return Err(format!("gather axis {} >= rank {}", g.axis, shape.len()));
            }
            if let Some(&bad) = g.indices.iter().find(|&&i| i >= shape[g.axis]) {
                return Err(format!(
                    "gather index {bad} out of range for axis {} of length {}",
                    g.axis, shape[g.axis]
                ));
            }
            let outer: usize = shape[..g.axis].iter().product();
            let inner: usize = shape[g.axis + 1..].iter().product();
            let len = shape[g.axis];
            let mut out = Vec::with_capacity(outer * g.indices.len() * inner);
            for o in 0..outer {
                for &i in &g.indices {
                    let start = (o * len + i) * inner;
                    out.extend_from_slice(&data[start..start + inner]);
                }
            }
            shape[g.axis] = g.indices.len();
            data = out;
        }
        Ok(data)
    }
}

/// The reference's `voxtrace.sliced` entries (empty when absent).
fn sliced_metadata(rd: &Dump) -> Result<std::collections::HashMap<String, Sliced>, CompareError> {
    match rd.metadata().get("voxtrace.sliced") {
        None => Ok(Default::default()),
        Some(text) => serde_json::from_str(text).map_err(|e| {
            CompareError::format(
                rd.path(),
                format!("metadata `voxtrace.sliced` is not valid: {e}"),
            )
        }),
    }
}

/// Compares a reference that stores a gathered subset with a full-shape actual tensor.
fn run_gathered(
    rd: &Dump,
    ad: &Dump,
    name: &str,
    g: &Sliced,
    et: ElemTol,
    lacc: Option<&mut LogitsAccumulator>,
) -> Result<Accumulator, CompareError> {
    let reference = rd.read_f64(name)?;
    let actual = g
        .apply(ad.read_f64(name)?)
        .map_err(|m| CompareError::read(rd.path(), name, format!("voxtrace.sliced: {m}")))?;
    if actual.len() != reference.len() {
        return Err(CompareError::read(
            rd.path(),
            name,
            format!(
                "voxtrace.sliced gathers give {} elements, the reference stores {}",
                actual.len(),
                reference.len()
            ),
        ));
    }
    if let Some(l) = lacc {
        l.update(&reference, &actual);
    }
    Ok(accumulate(&reference, &actual, et))
}

/// Metrics accumulated over two equal-length in-memory arrays, block by block.
fn accumulate(reference: &[f64], actual: &[f64], et: ElemTol) -> Accumulator {
    let mut acc = Accumulator::new(et);
    for (k, (r, a)) in reference
        .chunks(BLOCK)
        .zip(actual.chunks(BLOCK))
        .enumerate()
    {
        acc.update(r, a, (k * BLOCK) as u64);
    }
    acc
}

#[allow(clippy::too_many_arguments)]
fn run_mapped(
    rd: &Dump,
    ad: &Dump,
    name: &str,
    start: usize,
    len: usize,
    et: ElemTol,
    rbuf: &mut [f64],
    abuf: &mut [f64],
) -> Accumulator {
    let mut acc = Accumulator::new(et);
    if let (Some(rt), Some(at)) = (rd.mapped(name), ad.mapped(name)) {
        let mut pos = start;
        while pos < start + len {
            let n = BLOCK.min(start + len - pos);
            rt.decode_range(pos, &mut rbuf[..n]);
            at.decode_range(pos, &mut abuf[..n]);
            acc.update(&rbuf[..n], &abuf[..n], pos as u64);
            pos += n;
        }
        rt.release(start, len);
        at.release(start, len);
    }
    acc
}

fn run_streamed(
    rd: &Dump,
    ad: &Dump,
    name: &str,
    et: ElemTol,
    rbuf: &mut [f64],
    abuf: &mut [f64],
    mut lacc: Option<&mut LogitsAccumulator>,
) -> Result<Accumulator, CompareError> {
    let mut acc = Accumulator::new(et);
    rd.with_source(name, &mut |rsrc| {
        ad.with_source(name, &mut |asrc| {
            let mut pos = 0u64;
            loop {
                let n = rsrc.next_block(rbuf)?;
                if n == 0 {
                    return Ok(());
                }
                let mut got = 0;
                while got < n {
                    let m = asrc.next_block(&mut abuf[got..n])?;
                    if m == 0 {
                        return Err(CompareError::read(
                            ad.path(),
                            name,
                            "fewer elements than the header announces",
                        ));
                    }
                    got += m;
                }
                acc.update(&rbuf[..n], &abuf[..n], pos);
                if let Some(l) = lacc.as_deref_mut() {
                    l.update(&rbuf[..n], &abuf[..n]);
                }
                pos += n as u64;
            }
        })
    })?;
    Ok(acc)
}
