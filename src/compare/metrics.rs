//! Per-tensor error metrics, computed in one streaming pass with `f64` accumulators.
//!
//! Notation: `r` reference element, `a` actual element, `d = a − r`, all in `f64` (every stored
//! dtype is converted exactly, except integers above 2^53). A *finite pair* is a position where
//! both `r` and `a` are finite; all norm/error metrics are computed over finite pairs only, and
//! non-finite positions are accounted for by the NaN/Inf counts and the pass/fail rule:
//!
//! | position | verdict |
//! |---|---|
//! | finite pair | judged by the [`Criterion`] with the tensor's `atol`/`rtol` |
//! | NaN in both | equal iff `equal_nan` (default: **fails**, as numpy and Polygraphy) |
//! | same infinity in both | equal iff `inf_equal` (default: **equal**, as numpy/torch `isclose`) |
//! | anything else non-finite (NaN vs number, inf vs number, +inf vs −inf) | **fails** |
//!
//! Metric definitions (`Σ` over finite pairs, `n_f` their count):
//! - `max_abs_err = max |d|` (0 if `n_f = 0`), `mean_abs_err = Σ|d| / n_f` (0 if `n_f = 0`).
//! - `max_rel_err = max |d|/|r|` over finite pairs with `r ≠ 0`; 0 if there is none. Elements
//!   with `r = 0` are *excluded*: Polygraphy instead adds ε = 2.22e-16 to zero references, which
//!   turns any non-zero `a` there into a relative error near `4.5e15·|a|` and hides every other
//!   value; their error is still covered by `max_abs_err` and by the `atol` part of the rule.
//! - `rel_l2 = ‖d‖₂ / ‖r‖₂` and `nmse = ‖d‖₂² / ‖r‖₂²` (the brief's definition, not llama.cpp's
//!   MSE/Var). When `‖r‖ = 0`: 0 if `‖d‖ = 0`, else `+inf`.
//! - `cosine = Σ a·r / (‖a‖ ‖r‖)`, clamped to `[−1, 1]`. Both norms 0 (e.g. two zero tensors,
//!   or an empty tensor): **1** (identical). Exactly one norm 0: **0**. This is the cosine of
//!   torch.ao.ns's numeric suite (`compute_cosine_similarity`) on the flattened tensors.
//! - `sqnr_db = 10·log₁₀(Σ r² / Σ d²)`, the signal-to-quantization-noise ratio in dB as
//!   torch.ao.ns's `compute_sqnr` (`20·log₁₀(‖r‖/‖d‖)`, the same value), computed from the
//!   `f64` sums (equivalently `−10·log₁₀(nmse)`). Higher is better; each halving of the error
//!   adds 6.02 dB. Edge cases: `Σ d² = 0` (identical over the finite pairs, including two
//!   all-zero tensors and an empty tensor): **`+inf`**; all-zero reference with a non-zero
//!   error (`Σ r² = 0 < Σ d²`): **`−inf`** (no signal, only noise). In JSON these are the
//!   strings `"inf"` / `"-inf"` like every other non-finite metric (see [`json_f64`]); `null`
//!   is never written, so a reader can tell "identical" from "not computed" (`metrics: null`).
//!   Non-finite positions do not enter the sums (they are counted separately, as above).
//! - `out_of_tol`: number of failing positions (finite pairs failing the criterion plus
//!   non-finite mismatches); `frac_out_of_tol = out_of_tol / numel` (0 for an empty tensor).
//! - `min_atol`: the smallest `atol` with which the tensor passes at its `rtol`, exact up to one
//!   floating-point rounding step (the tensor *does* pass at `min_atol`). `Allclose`:
//!   `max(0, max(|d| − rtol·|r|))`; `Polygraphy`: the largest `|d|` among elements whose
//!   relative error exceeds `rtol`, else 0. `+inf` if any non-finite mismatch exists (no `atol`
//!   helps).
//! - `max_abs_err_index`: multi-index of the first position where `|d| = max_abs_err`, `None`
//!   when `max_abs_err = 0`.
//! - Logits tensors only: the token-distribution metrics of [`LogitsMetrics`] (`kl_mean`,
//!   `kl_p99`, `kl_p999`, `kl_max`, `top1_agreement`, ...), defined in
//!   [`crate::compare::logits`].

use serde::{Deserialize, Serialize};

use super::logits::LogitsMetrics;
use super::tolerance::{Criterion, ElemTol, POLYGRAPHY_EPS};

/// Error metrics of one compared tensor. See the module documentation for exact definitions
/// and edge cases. Non-finite values (`rel_l2`/`nmse`/`min_atol` may be `+inf`) are written to
/// JSON as the strings `"inf"`, `"-inf"`, `"nan"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Number of elements (product of the shape).
    pub numel: u64,
    /// Positions where both values are finite (the domain of the norm metrics).
    pub finite_pairs: u64,
    /// `max |a − r|` over finite pairs.
    #[serde(with = "json_f64")]
    pub max_abs_err: f64,
    /// C-order multi-index of the first maximum of `|a − r|`; `None` if `max_abs_err = 0`.
    pub max_abs_err_index: Option<Vec<usize>>,
    /// Mean of `|a − r|` over finite pairs.
    #[serde(with = "json_f64")]
    pub mean_abs_err: f64,
    /// `max |a − r| / |r|` over finite pairs with `r ≠ 0`.
    #[serde(with = "json_f64")]
    pub max_rel_err: f64,
    /// `‖a − r‖₂ / ‖r‖₂`.
    #[serde(with = "json_f64")]
    pub rel_l2: f64,
    /// `‖a − r‖₂² / ‖r‖₂²`.
    #[serde(with = "json_f64")]
    pub nmse: f64,
    /// Cosine similarity of `a` and `r` (flattened).
    #[serde(with = "json_f64")]
    pub cosine: f64,
    /// Signal-to-quantization-noise ratio `10·log₁₀(Σ r² / Σ (a − r)²)`, dB; `+inf` for
    /// identical tensors, `−inf` for an all-zero reference with non-zero error. Reports
    /// written before this field existed read back as NaN.
    #[serde(with = "json_f64", default = "nan")]
    pub sqnr_db: f64,
    /// Number of failing positions.
    pub out_of_tol: u64,
    /// `out_of_tol / numel`.
    #[serde(with = "json_f64")]
    pub frac_out_of_tol: f64,
    /// Smallest `atol` that passes at this tensor's `rtol`.
    #[serde(with = "json_f64")]
    pub min_atol: f64,
    /// NaN count in the reference.
    pub ref_nan: u64,
    /// ±Inf count in the reference.
    pub ref_inf: u64,
    /// NaN count in the actual tensor.
    pub act_nan: u64,
    /// ±Inf count in the actual tensor.
    pub act_inf: u64,
    /// Non-finite positions that count as failures (see the table in the module docs).
    pub nonfinite_mismatch: u64,
    /// Token-distribution metrics, for logits tensors only ([`crate::compare::logits`]).
    /// Flattened: in JSON its fields (`kl_mean`, `kl_p999`, `top1_agreement`, ...) sit in
    /// this object and are absent for other tensors.
    #[serde(flatten)]
    pub logits: Option<LogitsMetrics>,
}

fn nan() -> f64 {
    f64::NAN
}

/// `10·log₁₀(signal / noise)` in dB for sums of squares `signal`, `noise ≥ 0`: `+inf` when
/// `noise = 0`, `−inf` when `signal = 0 < noise`. Falls back to the difference of logarithms
/// when the ratio over- or underflows.
pub fn sqnr_db(signal: f64, noise: f64) -> f64 {
    if noise == 0.0 {
        f64::INFINITY
    } else if signal == 0.0 {
        f64::NEG_INFINITY
    } else {
        let q = signal / noise;
        if q.is_normal() {
            10.0 * q.log10()
        } else {
            10.0 * (signal.log10() - noise.log10())
        }
    }
}

impl Metrics {
    /// True when no position fails.
    pub fn passed(&self) -> bool {
        self.out_of_tol == 0
    }
}

/// Streaming accumulator. Feed aligned blocks of reference/actual values with
/// [`Accumulator::update`]; combine partial results over consecutive ranges with
/// [`Accumulator::merge`] (in index order); call [`Accumulator::finish`].
#[derive(Debug, Clone)]
pub struct Accumulator {
    tol: ElemTol,
    numel: u64,
    finite: u64,
    max_abs: f64,
    argmax: Option<u64>,
    sum_abs: f64,
    max_rel: f64,
    sum_d2: f64,
    sum_r2: f64,
    sum_a2: f64,
    sum_ar: f64,
    fail: u64,
    min_atol: f64,
    ref_nan: u64,
    ref_inf: u64,
    act_nan: u64,
    act_inf: u64,
    nonfinite_mismatch: u64,
}

impl Accumulator {
    /// An empty accumulator judging elements with `tol`.
    pub fn new(tol: ElemTol) -> Self {
        Accumulator {
            tol,
            numel: 0,
            finite: 0,
            max_abs: 0.0,
            argmax: None,
            sum_abs: 0.0,
            max_rel: 0.0,
            sum_d2: 0.0,
            sum_r2: 0.0,
            sum_a2: 0.0,
            sum_ar: 0.0,
            fail: 0,
            min_atol: 0.0,
            ref_nan: 0,
            ref_inf: 0,
            act_nan: 0,
            act_inf: 0,
            nonfinite_mismatch: 0,
        }
    }

    /// Add the elements `reference[i]`, `actual[i]` whose flat (C-order) index is
    /// `first_index + i`. The slices must have equal length (extra elements of the longer one
    /// are ignored).
    pub fn update(&mut self, reference: &[f64], actual: &[f64], first_index: u64) {
        let ElemTol {
            atol,
            rtol,
            criterion,
            equal_nan,
            inf_equal,
        } = self.tol;
        let n = reference.len().min(actual.len());
        let (reference, actual) = (&reference[..n], &actual[..n]);
        // Local copies so that the compiler keeps them in registers.
        let (mut finite, mut max_abs, mut argmax, mut sum_abs) =
            (0u64, self.max_abs, self.argmax, 0.0f64);
        let (mut max_rel, mut sum_d2, mut sum_r2, mut sum_a2, mut sum_ar) =
            (self.max_rel, 0.0f64, 0.0f64, 0.0f64, 0.0f64);
        let (mut fail, mut min_atol) = (0u64, self.min_atol);
        for (i, (&r, &a)) in reference.iter().zip(actual).enumerate() {
            if r.is_finite() && a.is_finite() {
                let d = a - r;
                let ad = d.abs();
                let ar = r.abs();
                finite += 1;
                sum_abs += ad;
                sum_d2 += d * d;
                sum_r2 += r * r;
                sum_a2 += a * a;
                sum_ar += a * r;
                if ad > max_abs {
                    max_abs = ad;
                    argmax = Some(first_index + i as u64);
                }
                if ar > 0.0 {
                    let rel = ad / ar;
                    if rel > max_rel {
                        max_rel = rel;
                    }
                }
                match criterion {
                    Criterion::Allclose => {
                        if ad > atol + rtol * ar {
                            fail += 1;
                        }
                        let need = ad - rtol * ar;
                        if need > min_atol {
                            min_atol = allclose_passing_atol(need, ad, ar, rtol);
                        }
                    }
                    Criterion::Polygraphy => {
                        let den = if ar == 0.0 { POLYGRAPHY_EPS } else { ar };
                        if ad / den > rtol {
                            if ad > atol {
                                fail += 1;
                            }
                            if ad > min_atol {
                                min_atol = ad;
                            }
                        }
                    }
                }
            } else {
                self.nonfinite(r, a, equal_nan, inf_equal);
            }
        }
        self.numel += n as u64;
        self.finite += finite;
        self.max_abs = max_abs;
        self.argmax = argmax;
        self.sum_abs += sum_abs;
        self.max_rel = max_rel;
        self.sum_d2 += sum_d2;
        self.sum_r2 += sum_r2;
        self.sum_a2 += sum_a2;
        self.sum_ar += sum_ar;
        self.fail += fail;
        if min_atol > self.min_atol {
            self.min_atol = min_atol;
        }
    }

    #[cold]
    fn nonfinite(&mut self, r: f64, a: f64, equal_nan: bool, inf_equal: bool) {
        self.ref_nan += r.is_nan() as u64;
        self.ref_inf += r.is_infinite() as u64;
        self.act_nan += a.is_nan() as u64;
        self.act_inf += a.is_infinite() as u64;
        let matched =
            (equal_nan && r.is_nan() && a.is_nan()) || (inf_equal && r.is_infinite() && a == r);
        if !matched {
            self.fail += 1;
            self.nonfinite_mismatch += 1;
            self.min_atol = f64::INFINITY;
        }
    }

    /// Fold in the accumulator of the range that immediately follows this one.
    pub fn merge(&mut self, o: &Accumulator) {
        self.numel += o.numel;
        self.finite += o.finite;
        if o.max_abs > self.max_abs {
            self.max_abs = o.max_abs;
            self.argmax = o.argmax;
        }
        self.sum_abs += o.sum_abs;
        self.max_rel = self.max_rel.max(o.max_rel);
        self.sum_d2 += o.sum_d2;
        self.sum_r2 += o.sum_r2;
        self.sum_a2 += o.sum_a2;
        self.sum_ar += o.sum_ar;
        self.fail += o.fail;
        self.min_atol = self.min_atol.max(o.min_atol);
        self.ref_nan += o.ref_nan;
        self.ref_inf += o.ref_inf;
        self.act_nan += o.act_nan;
        self.act_inf += o.act_inf;
        self.nonfinite_mismatch += o.nonfinite_mismatch;
    }

    /// Final metrics for a tensor of `shape` (used to turn the arg-max into a multi-index).
    pub fn finish(&self, shape: &[usize]) -> Metrics {
        let ratio = |num: f64, den: f64| {
            if den > 0.0 {
                num / den
            } else if num == 0.0 {
                0.0
            } else {
                f64::INFINITY
            }
        };
        let norm_d = self.sum_d2.sqrt();
        let norm_r = self.sum_r2.sqrt();
        let norm_a = self.sum_a2.sqrt();
        let cosine = if norm_a == 0.0 && norm_r == 0.0 {
            1.0
        } else if norm_a == 0.0 || norm_r == 0.0 {
            0.0
        } else {
            // sqrt(x·y) rather than sqrt(x)·sqrt(y): for x = y (a tensor against itself)
            // sqrt(fl(x²)) = x exactly, so the cosine is exactly 1. Fall back to the product of
            // the norms if x·y over- or underflows.
            let prod = self.sum_a2 * self.sum_r2;
            let den = if prod.is_normal() {
                prod.sqrt()
            } else {
                norm_a * norm_r
            };
            (self.sum_ar / den).clamp(-1.0, 1.0)
        };
        Metrics {
            numel: self.numel,
            finite_pairs: self.finite,
            max_abs_err: self.max_abs,
            max_abs_err_index: if self.max_abs > 0.0 {
                self.argmax.map(|i| unravel(i, shape))
            } else {
                None
            },
            mean_abs_err: if self.finite > 0 {
                self.sum_abs / self.finite as f64
            } else {
                0.0
            },
            max_rel_err: self.max_rel,
            rel_l2: ratio(norm_d, norm_r),
            nmse: ratio(self.sum_d2, self.sum_r2),
            cosine,
            sqnr_db: sqnr_db(self.sum_r2, self.sum_d2),
            out_of_tol: self.fail,
            frac_out_of_tol: if self.numel > 0 {
                self.fail as f64 / self.numel as f64
            } else {
                0.0
            },
            min_atol: self.min_atol,
            ref_nan: self.ref_nan,
            ref_inf: self.ref_inf,
            act_nan: self.act_nan,
            act_inf: self.act_inf,
            nonfinite_mismatch: self.nonfinite_mismatch,
            logits: None,
        }
    }
}

/// The smallest representable `atol ≥ need` for which `ad <= atol + rtol * ar` holds in
/// floating point (`need = ad − rtol·ar` may miss by one rounding step).
#[cold]
fn allclose_passing_atol(need: f64, ad: f64, ar: f64, rtol: f64) -> f64 {
    let mut atol = need;
    while ad > atol + rtol * ar {
        atol = atol.next_up();
    }
    atol
}

/// Flat C-order index → multi-index for `shape`.
pub fn unravel(mut flat: u64, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0usize; shape.len()];
    for (k, &dim) in shape.iter().enumerate().rev() {
        if dim > 0 {
            idx[k] = (flat % dim as u64) as usize;
            flat /= dim as u64;
        }
    }
    idx
}

/// Serialize `f64` as a JSON number when finite and as `"inf"`, `"-inf"` or `"nan"` otherwise
/// (JSON has no non-finite numbers; `serde_json` would write `null`).
pub mod json_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serialize (see the module docs).
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("nan")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum NumOrStr {
        Num(f64),
        Str(String),
    }

    /// Deserialize the representation written by [`serialize`].
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match NumOrStr::deserialize(d)? {
            NumOrStr::Num(v) => Ok(v),
            NumOrStr::Str(s) => match s.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, \"inf\", \"-inf\" or \"nan\", got {other:?}"
                ))),
            },
        }
    }
}
