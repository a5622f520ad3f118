//! Tolerances: the default `(atol, rtol)`, per-name overrides, and the element criterion.
//!
//! Defaults: `atol = 1e-5`, `rtol = 1e-4` ([`DEFAULT_ATOL`], [`DEFAULT_RTOL`]). Polygraphy
//! (`NVIDIA/TensorRT: tools/Polygraphy/polygraphy/comparator/compare.py`) defaults to
//! `atol = rtol = 1e-5`; we use a looser `rtol` because a Burn port re-orders float
//! reductions, which gives relative differences of a few `1e-5` on f32 activations.
//!
//! Overrides: `PATTERN=ATOL,RTOL` where `PATTERN` is a glob (`globset` syntax: `*` matches any
//! run of characters including `.`, `?` one character, `{a,b}` alternatives, `[0-9]` classes)
//! matched against the whole tensor name. When several overrides match, **the last one given
//! wins**; when none match, the default applies.

use globset::{Glob, GlobMatcher};
use serde::{Deserialize, Serialize};

use super::error::CompareError;

/// Default absolute tolerance.
pub const DEFAULT_ATOL: f64 = 1e-5;
/// Default relative tolerance (a fraction of `|reference|`).
pub const DEFAULT_RTOL: f64 = 1e-4;
/// The ε Polygraphy adds to zero reference values before dividing (`2.220446049250313e-16`,
/// `np.finfo(np.float64).eps`); used only by [`Criterion::Polygraphy`].
pub const POLYGRAPHY_EPS: f64 = 2.220446049250313e-16;

/// How an element is judged, given `d = |actual − reference|` (finite pair) and `r = |reference|`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Criterion {
    /// The element fails iff `d > atol + rtol·r` (the `numpy.isclose` / `torch.isclose` rule).
    /// Default.
    #[default]
    Allclose,
    /// Polygraphy's `check_error_stat="elemwise"` rule: the element fails iff it exceeds
    /// **both** tolerances, `d > atol` and `d / r' > rtol`, where `r' = r`, or ε = 2.22e-16
    /// (`POLYGRAPHY_EPS`) where `r = 0`. More lenient than `Allclose`.
    Polygraphy,
}

/// The tolerance that applies to one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ElemTol {
    /// Absolute tolerance (same unit as the tensor's values).
    pub atol: f64,
    /// Relative tolerance (fraction of `|reference|`).
    pub rtol: f64,
    /// The element criterion.
    pub criterion: Criterion,
    /// NaN in both tensors at the same position counts as equal (default false, as in
    /// `numpy.isclose(equal_nan=False)` and Polygraphy, where NaN always fails).
    pub equal_nan: bool,
    /// The same infinity (`+inf`/`+inf` or `-inf`/`-inf`) in both tensors at the same position
    /// counts as equal (default true, as `numpy.isclose` and `torch.isclose` do and as
    /// Polygraphy's `infinities_compare_equal=True`; masks filled with `-inf` must match).
    pub inf_equal: bool,
}

/// One `--tol PATTERN=ATOL,RTOL` override.
#[derive(Debug, Clone)]
pub struct TolOverride {
    /// The glob as given.
    pub pattern: String,
    matcher: GlobMatcher,
    /// Absolute tolerance for matching names.
    pub atol: f64,
    /// Relative tolerance for matching names.
    pub rtol: f64,
}

impl TolOverride {
    /// Build an override. Errors ([`CompareError::InvalidInput`]) on an invalid glob or a
    /// negative / non-finite tolerance.
    pub fn new(pattern: &str, atol: f64, rtol: f64) -> Result<Self, CompareError> {
        check_tol(atol, rtol)?;
        let matcher = Glob::new(pattern)
            .map_err(|e| CompareError::InvalidInput(format!("bad --tol pattern `{pattern}`: {e}")))?
            .compile_matcher();
        Ok(TolOverride {
            pattern: pattern.to_string(),
            matcher,
            atol,
            rtol,
        })
    }

    /// Parse `PATTERN=ATOL,RTOL` (split at the last `=`), e.g. `model.audio_tower.*=1e-4,1e-3`.
    pub fn parse(spec: &str) -> Result<Self, CompareError> {
        let bad = |why: &str| {
            CompareError::InvalidInput(format!(
                "bad --tol `{spec}`: {why} (expected PATTERN=ATOL,RTOL, e.g. `*.mlp.*=1e-4,1e-3`)"
            ))
        };
        let (pattern, tols) = spec.rsplit_once('=').ok_or_else(|| bad("missing `=`"))?;
        if pattern.is_empty() {
            return Err(bad("empty pattern"));
        }
        let (a, r) = tols.split_once(',').ok_or_else(|| bad("missing `,`"))?;
        let atol: f64 = a.trim().parse().map_err(|_| bad("ATOL is not a number"))?;
        let rtol: f64 = r.trim().parse().map_err(|_| bad("RTOL is not a number"))?;
        Self::new(pattern, atol, rtol)
    }

    /// True if the glob matches the whole name.
    pub fn matches(&self, name: &str) -> bool {
        self.matcher.is_match(name)
    }
}

fn check_tol(atol: f64, rtol: f64) -> Result<(), CompareError> {
    if !(atol.is_finite() && atol >= 0.0 && rtol.is_finite() && rtol >= 0.0) {
        return Err(CompareError::InvalidInput(format!(
            "tolerances must be finite and >= 0 (got atol={atol}, rtol={rtol})"
        )));
    }
    Ok(())
}

/// Tolerance settings for a whole comparison.
#[derive(Debug, Clone)]
pub struct Tolerances {
    /// Default absolute tolerance ([`DEFAULT_ATOL`]).
    pub atol: f64,
    /// Default relative tolerance ([`DEFAULT_RTOL`]).
    pub rtol: f64,
    /// Per-name overrides; the last matching one wins.
    pub overrides: Vec<TolOverride>,
    /// Element criterion (default [`Criterion::Allclose`]).
    pub criterion: Criterion,
    /// See [`ElemTol::equal_nan`] (default false).
    pub equal_nan: bool,
    /// See [`ElemTol::inf_equal`] (default true).
    pub inf_equal: bool,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            atol: DEFAULT_ATOL,
            rtol: DEFAULT_RTOL,
            overrides: Vec::new(),
            criterion: Criterion::Allclose,
            equal_nan: false,
            inf_equal: true,
        }
    }
}

impl Tolerances {
    /// Defaults with the given `atol`/`rtol`. Errors on negative or non-finite values.
    pub fn new(atol: f64, rtol: f64) -> Result<Self, CompareError> {
        check_tol(atol, rtol)?;
        Ok(Tolerances {
            atol,
            rtol,
            ..Default::default()
        })
    }

    /// Add an override (appended, so it takes precedence over earlier ones).
    pub fn with_override(mut self, o: TolOverride) -> Self {
        self.overrides.push(o);
        self
    }

    /// The tolerance for tensor `name`: the last matching override, else the default.
    pub fn for_name(&self, name: &str) -> ElemTol {
        let (atol, rtol) = self
            .overrides
            .iter()
            .rev()
            .find(|o| o.matches(name))
            .map(|o| (o.atol, o.rtol))
            .unwrap_or((self.atol, self.rtol));
        ElemTol {
            atol,
            rtol,
            criterion: self.criterion,
            equal_nan: self.equal_nan,
            inf_equal: self.inf_equal,
        }
    }

    /// Check the default tolerances (overrides are checked when built).
    pub fn validate(&self) -> Result<(), CompareError> {
        check_tol(self.atol, self.rtol)
    }
}
