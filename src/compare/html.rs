//! Self-contained HTML report (no network access: inline CSS, inline JS, inline SVG).
//!
//! Content: the header (both dumps, tolerances, summary line), an SVG chart of `max_abs_err`
//! and `rel_l2` per tensor in execution order on a log₁₀ scale with each tensor's `atol` as a
//! dashed step line (failing tensors drawn in red; missing / shape-mismatched tensors marked by
//! a shaded column that also breaks the lines; exact zeros drawn on the bottom line, labelled
//! `0`, one decade below the smallest positive value; `inf` on the top edge), next to it an
//! SVG chart of `sqnr_db` per tensor on a linear dB scale (`+inf`, identical tensors, on a
//! line labelled `inf` above the finite range, `−inf` on one labelled `-inf` below it; the
//! line breaks at non-finite values and at missing / shape-mismatched tensors), a table of
//! the token-distribution metrics of logits tensors (if any), then the same table as the
//! terminal, with a name filter and a "failures only" switch. Rendered with minijinja 2 with
//! HTML auto-escaping, so every tensor name and path is escaped.

use minijinja::{AutoEscape, Environment, context};
use serde::Serialize;

use super::error::CompareError;
use super::report::{self, Report, Status};

const W: f64 = 1000.0;
const H: f64 = 340.0;
const ML: f64 = 64.0;
const MR: f64 = 16.0;
const MT: f64 = 16.0;
const MB: f64 = 36.0;

#[derive(Serialize)]
struct Grid {
    y: String,
    label: String,
}

#[derive(Serialize)]
struct Marker {
    x: String,
    y: String,
    fail: bool,
    series: &'static str,
    title: String,
}

#[derive(Serialize)]
struct Gap {
    x: String,
    w: String,
    title: String,
}

#[derive(Serialize)]
struct Chart {
    width: f64,
    height: f64,
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
    grid: Vec<Grid>,
    max_abs_line: String,
    rel_l2_line: String,
    atol_path: String,
    markers: Vec<Marker>,
    gaps: Vec<Gap>,
    n: usize,
}

/// The SQNR chart: linear dB axis, non-finite values on their own labelled lines.
#[derive(Serialize)]
struct SqnrChart {
    grid: Vec<Grid>,
    line: String,
    markers: Vec<Marker>,
    gaps: Vec<Gap>,
}

/// Space reserved above and below the finite dB range for the `inf` / `-inf` lines, as a
/// fraction of the plot height.
const INF_BAND: f64 = 0.08;

fn build_sqnr_chart(r: &Report) -> SqnrChart {
    let n = r.tensors.len().max(1);
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let values: Vec<Option<f64>> = r
        .tensors
        .iter()
        .map(|t| t.metrics.as_ref().map(|m| m.sqnr_db))
        .collect();
    let finite: Vec<f64> = values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let (mut lo, mut hi) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        lo = 0.0;
        hi = 100.0;
    }
    let mut step = 10.0;
    lo = (lo / step).floor() * step;
    hi = (hi / step).ceil() * step;
    if hi <= lo {
        hi = lo + step;
    }
    while (hi - lo) / step > 10.0 {
        step *= 2.0;
    }
    let lo = (lo / step).floor() * step;
    let hi = (hi / step).ceil() * step;
    let any_pinf = values.iter().flatten().any(|&v| v == f64::INFINITY);
    let any_ninf = values.iter().flatten().any(|&v| v == f64::NEG_INFINITY);
    let y_top = MT + INF_BAND * ph;
    let y_bot = MT + (1.0 - INF_BAND) * ph;
    let ymap = |v: f64| -> f64 {
        if v == f64::INFINITY {
            MT
        } else if v == f64::NEG_INFINITY {
            MT + ph
        } else {
            y_bot - (y_bot - y_top) * (v - lo) / (hi - lo)
        }
    };
    let xmap = |i: usize| ML + pw * (i as f64 + 0.5) / n as f64;
    let f = |v: f64| format!("{v:.2}");
    let mut grid = Vec::new();
    if any_pinf {
        grid.push(Grid {
            y: f(MT),
            label: "inf".into(),
        });
    }
    let mut g = lo;
    while g <= hi + 1e-9 {
        grid.push(Grid {
            y: f(ymap(g)),
            label: format!("{g:.0}"),
        });
        g += step;
    }
    if any_ninf {
        grid.push(Grid {
            y: f(MT + ph),
            label: "-inf".into(),
        });
    }
    let half = pw / n as f64 / 2.0;
    let mut line = String::new();
    let mut markers = Vec::new();
    let mut gaps = Vec::new();
    let mut broken = true;
    for (i, (t, v)) in r.tensors.iter().zip(&values).enumerate() {
        let x = xmap(i);
        match v {
            Some(v) if !v.is_nan() => {
                let y = ymap(*v);
                if v.is_finite() {
                    let cmd = if broken { 'M' } else { 'L' };
                    line.push_str(&format!("{cmd}{} {} ", f(x), f(y)));
                    broken = false;
                } else {
                    // Do not draw a slope into infinity.
                    broken = true;
                }
                markers.push(Marker {
                    x: f(x),
                    y: f(y),
                    fail: t.status == Status::Fail,
                    series: if v.is_finite() { "sqnr" } else { "sqnr_inf" },
                    title: format!(
                        "#{} {}: sqnr_db={} ({})",
                        t.index,
                        t.name,
                        report::fmt_db(*v),
                        t.status.label()
                    ),
                });
            }
            Some(_) => broken = true,
            None => {
                broken = true;
                gaps.push(Gap {
                    x: f(x - half),
                    w: f((2.0 * half).max(1.0)),
                    title: format!("#{} {}: {}", t.index, t.name, t.status.label()),
                });
            }
        }
    }
    SqnrChart {
        grid,
        line: line.trim_end().to_string(),
        markers,
        gaps,
    }
}

#[derive(Serialize)]
struct Row {
    cells: Vec<String>,
    status: &'static str,
    fail: bool,
}

fn build_chart(r: &Report) -> Chart {
    let n = r.tensors.len().max(1);
    let pw = W - ML - MR;
    let ph = H - MT - MB;
    let mut positives: Vec<f64> = Vec::new();
    for t in &r.tensors {
        positives.push(t.atol);
        if let Some(m) = &t.metrics {
            positives.push(m.max_abs_err);
            positives.push(m.rel_l2);
        }
    }
    positives.retain(|v| v.is_finite() && *v > 0.0);
    let (mut lo, mut hi) = positives
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v.log10()), b.max(v.log10()))
        });
    if !lo.is_finite() {
        lo = -6.0;
        hi = 0.0;
    }
    lo = lo.floor() - 1.0; // one spare decade at the bottom for zeros
    hi = hi.ceil();
    if hi <= lo {
        hi = lo + 1.0;
    }
    let ymap = |v: f64| -> f64 {
        if v.is_nan() || v <= 0.0 {
            MT + ph
        } else if v.is_infinite() {
            MT
        } else {
            MT + ph * (1.0 - (v.log10() - lo) / (hi - lo))
        }
    };
    let xmap = |i: usize| ML + pw * (i as f64 + 0.5) / n as f64;
    let f = |v: f64| format!("{v:.2}");

    let mut grid = Vec::new();
    let step = ((hi - lo) / 10.0).ceil().max(1.0) as i64;
    let mut e = lo as i64;
    while e as f64 <= hi {
        grid.push(Grid {
            y: f(ymap(10f64.powi(e as i32))),
            // The bottom decade holds only exact zeros (lo is one decade below every
            // positive value), so its line is labelled 0.
            label: if e as f64 == lo {
                "0".to_string()
            } else {
                format!("1e{e}")
            },
        });
        e += step;
    }

    let mut max_abs_line = String::new();
    let mut rel_l2_line = String::new();
    let mut atol_path = String::new();
    let mut markers = Vec::new();
    let mut gaps = Vec::new();
    let half = pw / n as f64 / 2.0;
    let mut prev_gap = false;
    for (i, t) in r.tensors.iter().enumerate() {
        let x = xmap(i);
        let ya = ymap(t.atol);
        if atol_path.is_empty() {
            atol_path = format!("M{} {}", f(x - half), f(ya));
        } else {
            atol_path.push_str(&format!(" V{}", f(ya)));
        }
        atol_path.push_str(&format!(" H{}", f(x + half)));
        match &t.metrics {
            Some(m) => {
                let fail = t.status == Status::Fail;
                let was_gap = std::mem::replace(&mut prev_gap, false);
                for (series, v, line) in [
                    ("max_abs", m.max_abs_err, &mut max_abs_line),
                    ("rel_l2", m.rel_l2, &mut rel_l2_line),
                ] {
                    let y = ymap(v);
                    // Start a new sub-path after a tensor without metrics, so that the line
                    // does not bridge missing / shape-mismatched tensors.
                    let cmd = if line.is_empty() || was_gap { 'M' } else { 'L' };
                    line.push_str(&format!("{cmd}{} {} ", f(x), f(y)));
                    markers.push(Marker {
                        x: f(x),
                        y: f(y),
                        fail,
                        series,
                        title: format!(
                            "#{} {}: {}={} ({}; atol={})",
                            t.index,
                            t.name,
                            series,
                            report::fmt_sci(v),
                            t.status.label(),
                            report::fmt_sci(t.atol)
                        ),
                    });
                }
            }
            None => {
                prev_gap = true;
                gaps.push(Gap {
                    x: f(x - half),
                    w: f((2.0 * half).max(1.0)),
                    title: format!("#{} {}: {}", t.index, t.name, t.status.label()),
                });
            }
        }
    }
    Chart {
        width: W,
        height: H,
        left: ML,
        right: W - MR,
        top: MT,
        bottom: H - MB,
        grid,
        max_abs_line: max_abs_line.trim_end().to_string(),
        rel_l2_line: rel_l2_line.trim_end().to_string(),
        atol_path,
        markers,
        gaps,
        n: r.tensors.len(),
    }
}

const TEMPLATE: &str = r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>voxtrace compare: {{ verdict }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .4em 0; }
.verdict-PASSED { color: #17803d; } .verdict-FAILED { color: #c62828; }
dl { display: grid; grid-template-columns: max-content auto; gap: .2em 1em; font-size: .9em; }
dt { font-weight: 600; } dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
.summary { font-family: ui-monospace, monospace; background: #f4f4f4; padding: .6em; border-radius: 4px; }
svg { max-width: 100%; height: auto; background: #fff; border: 1px solid #ddd; }
svg text { font: 11px ui-monospace, monospace; fill: #444; }
.grid { stroke: #e5e5e5; } .axis { stroke: #888; }
.l-max_abs { fill: none; stroke: #1f6fb4; stroke-width: 1.2; }
.l-rel_l2 { fill: none; stroke: #e08a00; stroke-width: 1.2; }
.l-atol { fill: none; stroke: #666; stroke-dasharray: 5 3; stroke-width: 1; }
.m-max_abs { fill: #1f6fb4; } .m-rel_l2 { fill: #e08a00; }
.l-sqnr { fill: none; stroke: #6a3d9a; stroke-width: 1.2; }
.m-sqnr { fill: #6a3d9a; } .m-sqnr_inf { fill: #fff; stroke: #6a3d9a; stroke-width: 1.2; }
.m-fail { fill: #c62828; stroke: #7a0000; }
.gap { fill: #f7c6c6; opacity: .6; }
.legend span { display: inline-block; margin-right: 1.2em; font-size: .85em; }
.sw { display: inline-block; width: 18px; height: 3px; vertical-align: middle; margin-right: .3em; }
table { border-collapse: collapse; font: 12px ui-monospace, monospace; margin-top: .8em; }
th, td { padding: 2px 8px; border-bottom: 1px solid #eee; text-align: right; white-space: nowrap; }
th { background: #fafafa; position: sticky; top: 0; }
td.l, th.l { text-align: left; }
tr.fail td { background: #fdecea; }
td.s-PASS { color: #17803d; font-weight: 600; } td.s-FAIL, td.s-SHAPE, td.s-MISSING { color: #c62828; font-weight: 600; }
.controls { margin-top: 1em; font-size: .9em; }
ul { font: 12px ui-monospace, monospace; }
</style>
</head>
<body>
<h1>voxtrace compare: <span class="verdict-{{ verdict }}">{{ verdict }}</span></h1>
<dl>
<dt>reference</dt><dd>{{ report.reference.path }}{% if report.reference.source %} ({{ report.reference.source }}){% endif %} &middot; {{ report.reference.format }} &middot; {{ report.reference.tensors }} tensors</dd>
<dt>actual</dt><dd>{{ report.actual.path }}{% if report.actual.source %} ({{ report.actual.source }}){% endif %} &middot; {{ report.actual.format }} &middot; {{ report.actual.tensors }} tensors</dd>
<dt>tolerance</dt><dd>{{ tolerance }}</dd>
<dt>order</dt><dd>{{ report.order_source }}</dd>
<dt>schema</dt><dd>{{ report.schema_version }}</dd>
</dl>
<p class="summary">{{ summary_line }}</p>

<h2 style="font-size:1.05em">Error per tensor (execution order, log scale)</h2>
<div class="legend">
<span><i class="sw" style="background:#1f6fb4"></i>max abs error</span>
<span><i class="sw" style="background:#e08a00"></i>rel L2 (&#8214;a&minus;r&#8214;/&#8214;r&#8214;)</span>
<span><i class="sw" style="background:repeating-linear-gradient(90deg,#666 0 5px,transparent 5px 8px)"></i>atol</span>
<span><i class="sw" style="background:#c62828;height:8px;width:8px;border-radius:4px"></i>failing tensor</span>
<span><i class="sw" style="background:#f7c6c6;height:10px"></i>missing / shape mismatch</span>
</div>
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {{ chart.width }} {{ chart.height }}" width="{{ chart.width }}" height="{{ chart.height }}" role="img" aria-label="error per tensor">
{% for g in chart.gaps %}<rect class="gap" x="{{ g.x }}" y="{{ chart.top }}" width="{{ g.w }}" height="{{ chart.bottom - chart.top }}"><title>{{ g.title }}</title></rect>
{% endfor %}{% for g in chart.grid %}<line class="grid" x1="{{ chart.left }}" x2="{{ chart.right }}" y1="{{ g.y }}" y2="{{ g.y }}"/><text x="{{ chart.left - 6 }}" y="{{ g.y }}" text-anchor="end" dominant-baseline="middle">{{ g.label }}</text>
{% endfor %}<line class="axis" x1="{{ chart.left }}" x2="{{ chart.left }}" y1="{{ chart.top }}" y2="{{ chart.bottom }}"/>
<line class="axis" x1="{{ chart.left }}" x2="{{ chart.right }}" y1="{{ chart.bottom }}" y2="{{ chart.bottom }}"/>
<text x="{{ (chart.left + chart.right) / 2 }}" y="{{ chart.height - 8 }}" text-anchor="middle">tensor # in execution order (0&#8211;{{ chart.n - 1 }})</text>
{% if chart.atol_path %}<path class="l-atol" d="{{ chart.atol_path }}"/>{% endif %}
{% if chart.max_abs_line %}<path class="l-max_abs" d="{{ chart.max_abs_line }}"/>{% endif %}
{% if chart.rel_l2_line %}<path class="l-rel_l2" d="{{ chart.rel_l2_line }}"/>{% endif %}
{% for m in chart.markers %}<circle class="m-{{ m.series }}{% if m.fail %} m-fail{% endif %}" cx="{{ m.x }}" cy="{{ m.y }}" r="{% if m.fail %}3.5{% else %}2.5{% endif %}"><title>{{ m.title }}</title></circle>
{% endfor %}</svg>

<h2 style="font-size:1.05em">SQNR per tensor (dB = 10&middot;log&#8321;&#8320;(&Sigma;r&sup2;/&Sigma;(a&minus;r)&sup2;), higher is better)</h2>
<div class="legend">
<span><i class="sw" style="background:#6a3d9a"></i>SQNR (dB)</span>
<span><i class="sw" style="background:#fff;border:1px solid #6a3d9a;height:8px;width:8px;border-radius:4px"></i>inf: identical / -inf: zero reference</span>
<span><i class="sw" style="background:#c62828;height:8px;width:8px;border-radius:4px"></i>failing tensor</span>
</div>
<svg viewBox="0 0 {{ chart.width }} {{ chart.height }}" width="{{ chart.width }}" height="{{ chart.height }}" role="img" aria-label="SQNR per tensor">
{% for g in sqnr.gaps %}<rect class="gap" x="{{ g.x }}" y="{{ chart.top }}" width="{{ g.w }}" height="{{ chart.bottom - chart.top }}"><title>{{ g.title }}</title></rect>
{% endfor %}{% for g in sqnr.grid %}<line class="grid" x1="{{ chart.left }}" x2="{{ chart.right }}" y1="{{ g.y }}" y2="{{ g.y }}"/><text x="{{ chart.left - 6 }}" y="{{ g.y }}" text-anchor="end" dominant-baseline="middle">{{ g.label }}</text>
{% endfor %}<line class="axis" x1="{{ chart.left }}" x2="{{ chart.left }}" y1="{{ chart.top }}" y2="{{ chart.bottom }}"/>
<line class="axis" x1="{{ chart.left }}" x2="{{ chart.right }}" y1="{{ chart.bottom }}" y2="{{ chart.bottom }}"/>
<text x="{{ (chart.left + chart.right) / 2 }}" y="{{ chart.height - 8 }}" text-anchor="middle">tensor # in execution order (0&#8211;{{ chart.n - 1 }})</text>
{% if sqnr.line %}<path class="l-sqnr" d="{{ sqnr.line }}"/>{% endif %}
{% for m in sqnr.markers %}<circle class="m-{{ m.series }}{% if m.fail %} m-fail{% endif %}" cx="{{ m.x }}" cy="{{ m.y }}" r="{% if m.fail %}3.5{% else %}2.5{% endif %}"><title>{{ m.title }}</title></circle>
{% endfor %}</svg>
{% if logits_rows %}
<h2 style="font-size:1.05em">Token distributions of logits tensors</h2>
<p style="font-size:.9em">KL(P<sub>ref</sub>&#8214;P<sub>act</sub>) per position of the softmax over the last axis, in nats (mean, 99th and 99.9th percentile, maximum); top-1 agreement = share of positions whose first argmax is the same.</p>
<table id="lt">
<thead><tr>{% for h in logits_header %}<th{% if loop.index0 == 1 %} class="l"{% endif %}>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in logits_rows %}<tr>{% for c in r %}<td{% if loop.index0 == 1 %} class="l"{% endif %}>{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% endif %}

<div class="controls">
<label>filter names: <input id="q" type="search" placeholder="substring"></label>
<label><input id="onlyfail" type="checkbox"> failures only</label>
<span id="shown"></span>
</div>
<table id="t">
<thead><tr>{% for h in header %}<th{% if loop.index0 in [1, 2, 3] %} class="l"{% endif %}>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in rows %}<tr class="{% if r.fail %}fail{% endif %}" data-fail="{{ r.fail }}">{% for c in r.cells %}<td class="{% if loop.index0 in [1, 2, 3] %}l{% endif %}{% if loop.last %} s-{{ r.status }}{% endif %}">{{ c }}</td>{% endfor %}</tr>
{% endfor %}</tbody>
</table>
{% if missing %}<h3>Missing in actual ({{ missing|length }})</h3><ul>{% for n in missing %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
{% if report.extra %}<h3>Extra in actual ({{ report.extra|length }})</h3><ul>{% for e in report.extra %}<li>{{ e.name }} {{ e.shape }} {{ e.dtype }}</li>{% endfor %}</ul>{% endif %}
{% if shape_lines %}<h3>Shape mismatches ({{ shape_lines|length }})</h3><ul>{% for n in shape_lines %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
{% if dtype_lines %}<h3>Dtype differences, compared numerically ({{ dtype_lines|length }})</h3><ul>{% for n in dtype_lines %}<li>{{ n }}</li>{% endfor %}</ul>{% endif %}
<script>
(function () {
  var q = document.getElementById('q'), only = document.getElementById('onlyfail');
  var rows = Array.prototype.slice.call(document.querySelectorAll('#t tbody tr'));
  var shown = document.getElementById('shown');
  function apply() {
    var s = q.value.toLowerCase(), n = 0;
    rows.forEach(function (r) {
      var name = r.children[1].textContent.toLowerCase();
      var ok = name.indexOf(s) >= 0 && (!only.checked || r.getAttribute('data-fail') === 'true');
      r.style.display = ok ? '' : 'none';
      if (ok) n++;
    });
    shown.textContent = n + ' of ' + rows.length + ' shown';
  }
  q.addEventListener('input', apply); only.addEventListener('change', apply); apply();
})();
</script>
</body>
</html>
"#;

/// Render the HTML report. Errors only if the template engine fails
/// ([`CompareError::InvalidInput`], which would be a bug).
pub fn render_html(r: &Report) -> Result<String, CompareError> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_template("report.html", TEMPLATE)
        .map_err(|e| CompareError::InvalidInput(format!("HTML template: {e}")))?;
    let tmpl = env
        .get_template("report.html")
        .map_err(|e| CompareError::InvalidInput(format!("HTML template: {e}")))?;
    let rows: Vec<Row> = r
        .tensors
        .iter()
        .map(|t| Row {
            cells: report::table_row(t),
            status: t.status.label(),
            fail: t.status != Status::Pass,
        })
        .collect();
    let shape_lines: Vec<String> = r
        .tensors
        .iter()
        .filter(|t| t.status == Status::ShapeMismatch)
        .map(|t| {
            format!(
                "{}: reference {} vs actual {}",
                t.name,
                report::fmt_shape(&t.reference.shape),
                t.actual
                    .as_ref()
                    .map(|a| report::fmt_shape(&a.shape))
                    .unwrap_or_default()
            )
        })
        .collect();
    let dtype_lines: Vec<String> = r
        .tensors
        .iter()
        .filter(|t| t.dtype_differs)
        .map(|t| {
            format!(
                "{}: reference {} vs actual {}",
                t.name,
                t.reference.dtype,
                t.actual.as_ref().map(|a| a.dtype.as_str()).unwrap_or("")
            )
        })
        .collect();
    let tol = &r.tolerances;
    let mut tolerance = format!(
        "atol={} rtol={} criterion={} equal_nan={} inf_equal={}",
        report::fmt_tol(tol.atol),
        report::fmt_tol(tol.rtol),
        report::criterion_name(tol.criterion),
        tol.equal_nan,
        tol.inf_equal
    );
    for o in &tol.overrides {
        tolerance.push_str(&format!(
            "; {}={},{}",
            o.pattern,
            report::fmt_tol(o.atol),
            report::fmt_tol(o.rtol)
        ));
    }
    tmpl.render(context! {
        report => r,
        verdict => if r.passed() { "PASSED" } else { "FAILED" },
        summary_line => r.summary_line(),
        tolerance => tolerance,
        chart => build_chart(r),
        sqnr => build_sqnr_chart(r),
        logits_header => report::LOGITS_HEADER,
        logits_rows => r.tensors.iter().filter_map(report::logits_row).collect::<Vec<_>>(),
        header => report::TABLE_HEADER,
        rows => rows,
        missing => r.missing(),
        shape_lines => shape_lines,
        dtype_lines => dtype_lines,
    })
    .map_err(|e| CompareError::InvalidInput(format!("rendering HTML: {e}")))
}

impl Report {
    /// The self-contained HTML report (see [`crate::compare::html`]).
    pub fn render_html(&self) -> Result<String, CompareError> {
        render_html(self)
    }

    /// Write [`Report::render_html`] to `path` atomically.
    pub fn write_html(&self, path: &Path) -> Result<(), CompareError> {
        report::write_atomic(path, self.render_html()?.as_bytes())
    }
}

use std::path::Path;
