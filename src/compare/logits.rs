//! Token-distribution drift of logits tensors: KL divergence of the softmax distributions and
//! top-1 agreement, per position, as llama.cpp's `llama-perplexity --kl-divergence` reports
//! them for a quantized model against its base model (`tools/perplexity/perplexity.cpp`).
//!
//! A *logits tensor* is one whose name ends in `logits` or matches a `--logits PATTERN` glob
//! ([`LogitsSelector`]). Its last axis is the vocabulary (`V` = last dimension); every other
//! index is a *position* (`positions = numel / V`; a rank-0 tensor is one position of `V = 1`).
//! For each position, with `x` the reference row and `y` the actual row (both in `f64`):
//!
//! - `log P_i = x_i − LSE(x)`, `log Q_i = y_i − LSE(y)`, `LSE(x) = m + ln Σ exp(x_j − m)` with
//!   `m = max x` (stable log-sum-exp, as llama.cpp's `log_softmax`).
//! - `KL(P‖Q) = Σ_{i: P_i > 0} P_i (log P_i − log Q_i)` in nats (natural log), the direction
//!   llama.cpp uses (base model = reference). Terms with `P_i = 0` (a `−inf` reference logit,
//!   or `exp` underflow) contribute 0; a term with `P_i > 0` and `Q_i = 0` (an actual logit of
//!   `−inf`) makes the KL `+inf`. The sum is clamped at 0 from below: KL ≥ 0 holds exactly,
//!   and a rounding residue of order 1e-17 for near-identical rows would otherwise be
//!   negative (llama.cpp prints such values; we do not).
//! - top-1: the position *agrees* iff `argmax x = argmax y`, where `argmax` is the **first**
//!   index of the maximum (ties broken towards the lower index, as `numpy.argmax`,
//!   `torch.argmax` and llama.cpp's `imax` loop). A tie in the actual row therefore agrees
//!   only if the reference's argmax is the first of the tied indices.
//!
//! Undefined rows: a row *defines a distribution* iff it has no NaN, no `+inf` and at least
//! one finite value (`−inf` entries are allowed: masked tokens, probability 0).
//! - reference row undefined: the position is skipped (not in `kl_positions`, not in the
//!   statistics);
//! - reference row defined, actual row undefined: `KL = +inf` and top-1 disagrees — a broken
//!   position of the actual model is reported, never hidden.
//!
//! Summary over the `kl_positions` positions measured: `kl_mean` (arithmetic mean),
//! `kl_p99` and `kl_p999` (99th and 99.9th percentile, linear interpolation between the two
//! nearest ranks: numpy's default `percentile` method and llama.cpp's `percentile` lambda),
//! `kl_max`, `top1_agreement = top1_agree / kl_positions` (a fraction in [0, 1]; the table
//! prints it as %). With `kl_positions = 0` every statistic is NaN (written `"nan"` in JSON).

use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};

use super::error::CompareError;
use super::metrics::json_f64;

/// Token-distribution metrics of one logits tensor (see the module documentation for the
/// exact definitions). In the JSON report these fields sit in the tensor's `metrics` object
/// next to `sqnr_db` and `cosine`, only for logits tensors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogitsMetrics {
    /// Length of the last axis (the vocabulary).
    pub vocab: u64,
    /// Number of positions (`numel / vocab`).
    pub positions: u64,
    /// Positions measured (reference row defines a distribution); the denominator of
    /// `kl_mean` and `top1_agreement`.
    pub kl_positions: u64,
    /// Mean of `KL(P_ref‖P_act)` over measured positions, nats.
    #[serde(with = "json_f64")]
    pub kl_mean: f64,
    /// 99th percentile of the per-position KL (linear interpolation), nats.
    #[serde(with = "json_f64")]
    pub kl_p99: f64,
    /// 99.9th percentile of the per-position KL (linear interpolation), nats.
    #[serde(with = "json_f64")]
    pub kl_p999: f64,
    /// Largest per-position KL, nats.
    #[serde(with = "json_f64")]
    pub kl_max: f64,
    /// Measured positions whose first-index argmax agrees.
    pub top1_agree: u64,
    /// `top1_agree / kl_positions`, a fraction in [0, 1].
    #[serde(with = "json_f64")]
    pub top1_agreement: f64,
}

/// Which tensors are logits: names ending in `logits`, plus any matching one of the
/// `--logits` globs (`*` crosses dots, as in `--tol`).
#[derive(Debug, Clone, Default)]
pub struct LogitsSelector {
    patterns: Vec<(String, GlobMatcher)>,
}

impl LogitsSelector {
    /// The default rule only (name ends in `logits`).
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the glob `pattern` (matched against the whole name).
    ///
    /// # Errors
    /// [`CompareError::InvalidInput`] for an invalid glob or an empty pattern.
    pub fn with_pattern(mut self, pattern: &str) -> Result<Self, CompareError> {
        if pattern.is_empty() {
            return Err(CompareError::InvalidInput(
                "bad --logits pattern: empty".to_string(),
            ));
        }
        let m = Glob::new(pattern)
            .map_err(|e| {
                CompareError::InvalidInput(format!("bad --logits pattern `{pattern}`: {e}"))
            })?
            .compile_matcher();
        self.patterns.push((pattern.to_string(), m));
        Ok(self)
    }

    /// The patterns added with [`LogitsSelector::with_pattern`], in order.
    pub fn patterns(&self) -> Vec<&str> {
        self.patterns.iter().map(|(p, _)| p.as_str()).collect()
    }

    /// True if `name` is treated as a logits tensor.
    pub fn is_logits(&self, name: &str) -> bool {
        name.ends_with("logits") || self.patterns.iter().any(|(_, m)| m.is_match(name))
    }
}

/// KL divergence and top-1 agreement of one position. `reference` and `actual` are the two
/// rows (equal length); returns `None` if the reference row does not define a distribution,
/// else `(KL(P_ref‖P_act) in nats, argmax agrees)`. See the module documentation.
pub fn position_kl(reference: &[f64], actual: &[f64]) -> Option<(f64, bool)> {
    let rp = RowStats::of(reference)?;
    let Some(ap) = RowStats::of(actual) else {
        return Some((f64::INFINITY, false));
    };
    let mut kl = 0.0f64;
    for (&x, &y) in reference.iter().zip(actual) {
        let lp = x - rp.lse;
        let p = lp.exp();
        if p > 0.0 {
            let lq = y - ap.lse;
            kl += p * (lp - lq);
        }
    }
    Some((kl.max(0.0), rp.argmax == ap.argmax))
}

/// Maximum, first argmax and log-sum-exp of a row that defines a distribution.
struct RowStats {
    argmax: usize,
    lse: f64,
}

impl RowStats {
    fn of(row: &[f64]) -> Option<RowStats> {
        let mut m = f64::NEG_INFINITY;
        let mut argmax = None;
        for (i, &v) in row.iter().enumerate() {
            if v.is_nan() || v == f64::INFINITY {
                return None;
            }
            if v > m {
                m = v;
                argmax = Some(i);
            }
        }
        let argmax = argmax?; // all −inf (or empty): no distribution
        let s: f64 = row.iter().map(|&v| (v - m).exp()).sum();
        Some(RowStats {
            argmax,
            lse: m + s.ln(),
        })
    }
}

/// Percentile `q` (in [0, 100]) of ascending `sorted` values by linear interpolation between
/// the two nearest ranks (numpy's default method, llama.cpp's `percentile`): the virtual index
/// is `q/100 · (n − 1)`; interpolated as numpy's `_lerp`. NaN for an empty slice.
pub fn percentile_linear(sorted: &[f64], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let virt = (q / 100.0) * (n - 1) as f64;
    let lo = (virt.floor() as usize).min(n - 1);
    let hi = (lo + 1).min(n - 1);
    let t = virt - lo as f64;
    let (a, b) = (sorted[lo], sorted[hi]);
    if t == 0.0 || a == b {
        return a;
    }
    // numpy's _lerp: a + (b − a)·t, or b − (b − a)·(1 − t) for t ≥ 0.5. An infinite upper
    // value (a +inf KL) gives +inf, not inf − inf = NaN.
    let d = b - a;
    if t >= 0.5 && d.is_finite() {
        b - d * (1.0 - t)
    } else {
        a + d * t
    }
}

/// Streaming per-position accumulator: feed aligned blocks of both tensors in C order with
/// [`LogitsAccumulator::update`] (any block sizes); each complete row of `vocab` values is
/// measured when it is full. Memory: two rows plus one `f64` per position.
#[derive(Debug, Clone)]
pub struct LogitsAccumulator {
    vocab: usize,
    rrow: Vec<f64>,
    arow: Vec<f64>,
    positions: u64,
    kls: Vec<f64>,
    agree: u64,
}

impl LogitsAccumulator {
    /// An accumulator for a tensor of `shape` (vocabulary = last dimension, 1 for rank 0).
    pub fn new(shape: &[usize]) -> Self {
        LogitsAccumulator {
            vocab: shape.last().copied().unwrap_or(1),
            rrow: Vec::new(),
            arow: Vec::new(),
            positions: 0,
            kls: Vec::new(),
            agree: 0,
        }
    }

    /// Add the next values of both tensors (slices of equal length; extra elements of the
    /// longer one are ignored).
    pub fn update(&mut self, reference: &[f64], actual: &[f64]) {
        if self.vocab == 0 {
            return;
        }
        let n = reference.len().min(actual.len());
        let mut k = 0;
        while k < n {
            let take = (self.vocab - self.rrow.len()).min(n - k);
            self.rrow.extend_from_slice(&reference[k..k + take]);
            self.arow.extend_from_slice(&actual[k..k + take]);
            k += take;
            if self.rrow.len() == self.vocab {
                self.positions += 1;
                if let Some((kl, agree)) = position_kl(&self.rrow, &self.arow) {
                    self.kls.push(kl);
                    self.agree += agree as u64;
                }
                self.rrow.clear();
                self.arow.clear();
            }
        }
    }

    /// The summary (see the module documentation).
    pub fn finish(mut self) -> LogitsMetrics {
        let n = self.kls.len();
        self.kls.sort_by(f64::total_cmp);
        let (kl_mean, top1) = if n == 0 {
            (f64::NAN, f64::NAN)
        } else {
            (
                self.kls.iter().sum::<f64>() / n as f64,
                self.agree as f64 / n as f64,
            )
        };
        LogitsMetrics {
            vocab: self.vocab as u64,
            positions: self.positions,
            kl_positions: n as u64,
            kl_mean,
            kl_p99: percentile_linear(&self.kls, 99.0),
            kl_p999: percentile_linear(&self.kls, 99.9),
            kl_max: self.kls.last().copied().unwrap_or(f64::NAN),
            top1_agree: self.agree,
            top1_agreement: top1,
        }
    }
}

/// Logits metrics of two equal-length in-memory tensors of `shape`.
pub fn logits_metrics(reference: &[f64], actual: &[f64], shape: &[usize]) -> LogitsMetrics {
    let mut acc = LogitsAccumulator::new(shape);
    acc.update(reference, actual);
    acc.finish()
}
