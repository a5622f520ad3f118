//! candle-core's quantized matmul (`candle_core::quantized::QMatMul`, CPU) on the exact packed
//! bytes and activations of one `voxtrace bench qmatmul --dump DIR` run: times it and checks its
//! output against voxtrace's (issue 20: measure candle's Q4_0 / Q8_0 kernels against voxtrace's
//! own and keep the faster).
//!
//! ```text
//! candle-qmatmul --kind q4_0|q8_0 --m M --n-out N --n-in K --dump DIR [--reps R]
//! ```
//!
//! `DIR` holds `weight.bin` (the `[N, K]` weight in GGUF blocks, rows of `K / 32` blocks),
//! `x.bin` (`[M, K]` f32 little-endian) and `y.bin` (voxtrace's `[M, N]` output). The weight is
//! wrapped as a candle `QTensor` through `quantized::ggml_file::qtensor_from_ggml` (the same
//! call candle's GGUF reader makes for each tensor) and multiplied by `QMatMul::forward`, as
//! candle's quantized models do. One untimed warm-up (candle repacks the weight for its
//! AVX-512 VNNI / AVX2 kernels on first use and caches it), then `R` timed products; the median
//! is reported. Threads: rayon's pool, `RAYON_NUM_THREADS` (both programs read it).
//!
//! ## The check
//! Both quantize each activation row to 8 bits and sum exact integer block products scaled in
//! f32, but not with the same activation blocks: voxtrace (as ggml's reference
//! `quantize_row_q8_0`) rounds per block of 32 (`d = max|x| / 127`, `q = round(x / d)`, `d`
//! kept in f32); candle's generic path (`k_quants`, every Q4_0 product on x86) rounds the same
//! way but stores `d` as f16; its repacked AVX-512 VNNI / AVX-VNNI path for Q8_0 weights
//! (`repack_x86`, from mistral.rs) rounds per block of 256 (ggml's Q8_K, `d = max / -127` with
//! the signed extreme). This program replays each of those quantizations exactly (f32
//! arithmetic as there) and computes each scheme's result `Y_p` exactly in f64 from the same
//! bytes, with `T_p` the sum of the magnitudes of its block terms. Per output,
//!
//! `|y_candle - y_voxtrace| <= max_p |Y_p - Y_voxtrace| + 2 (n_blocks + 3) 2^-24 (T_p + T_voxtrace)`
//!
//! over the candle schemes `p` that can apply (Q4_0: the generic one; Q8_0: either): the
//! difference of the schemes themselves plus the f32 rounding of each side's block products and
//! sums, checked on every activation row up to 8 rows (else the first 4 and the last 4). The
//! JSON gives the largest ratio of the difference to that bound
//! (`max_err_over_bound`) and the largest scheme difference; the check fails (exit 1) above 1.

use candle_core::quantized::{GgmlDType, QMatMul, ggml_file};
use candle_core::{Device, Module, Tensor};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

struct Args {
    kind: String,
    m: usize,
    n_out: usize,
    n_in: usize,
    reps: usize,
    dump: PathBuf,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        kind: "q8_0".into(),
        m: 1,
        n_out: 0,
        n_in: 0,
        reps: 20,
        dump: PathBuf::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = |v: &str| v.parse::<usize>().map_err(|e| format!("{flag} {v}: {e}"));
        match flag.as_str() {
            "--kind" => a.kind = v,
            "--m" => a.m = num(&v)?,
            "--n-out" => a.n_out = num(&v)?,
            "--n-in" => a.n_in = num(&v)?,
            "--reps" => a.reps = num(&v)?.max(1),
            "--dump" => a.dump = PathBuf::from(v),
            _ => return Err(format!("unknown argument {flag}")),
        }
    }
    if a.m == 0
        || a.n_out == 0
        || a.n_in == 0
        || !a.n_in.is_multiple_of(32)
        || a.dump.as_os_str().is_empty()
    {
        return Err("--m, --n-out, --n-in (a multiple of 32) and --dump are required".into());
    }
    Ok(a)
}

fn read(path: &std::path::Path, len: usize) -> Result<Vec<u8>, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.len() != len {
        return Err(format!(
            "{}: {} bytes, expected {len}",
            path.display(),
            b.len()
        ));
    }
    Ok(b)
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn f16_to_f64(b: [u8; 2]) -> f64 {
    let h = u16::from_le_bytes(b);
    let (sign, exp, frac) = ((h >> 15) & 1, (h >> 10) & 0x1f, h & 0x3ff);
    let v = match exp {
        0 => f64::from(frac) * 2f64.powi(-24),
        31 => f64::INFINITY,
        e => (1.0 + f64::from(frac) / 1024.0) * 2f64.powi(i32::from(e) - 15),
    };
    if sign == 1 { -v } else { v }
}

/// Weight value `t` (0..32) of a block as its integer `q` (`w = d * q`).
fn wq(kind: &str, blk: &[u8], t: usize) -> i32 {
    if kind == "q8_0" {
        i32::from(blk[2 + t] as i8)
    } else if t < 16 {
        i32::from(blk[2 + t] & 0x0f) - 8
    } else {
        i32::from(blk[2 + t - 16] >> 4) - 8
    }
}

/// One activation quantization: per element its integer and the f64 scale applied to it.
struct Scheme {
    q: Vec<i32>,
    d: Vec<f64>,
}

/// ggml's `quantize_row_q8_0` (voxtrace's; candle's with `f16_scale`): per block of 32,
/// `d = amax / 127`, `q = round(x * (1 / d))` in f32.
fn q8_0_scheme(x: &[f32], f16_scale: bool) -> Scheme {
    let (mut q, mut d) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    for blk in x.chunks(32) {
        let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let s = amax / 127.0;
        let id = if s != 0.0 { 1.0 / s } else { 0.0 };
        let stored = if f16_scale {
            f64::from(half::f16::from_f32(s).to_f32())
        } else {
            f64::from(s)
        };
        for &v in blk {
            q.push((v * id).round() as i32);
            d.push(stored);
        }
    }
    Scheme { q, d }
}

/// ggml's / candle's `quantize_row_q8_K`: per block of 256, `iscale = -127 / max` (the signed
/// extreme), `q = clamp(round(iscale * x), -128, 127)`, `d = 1 / iscale`, in f32.
fn q8_k_scheme(x: &[f32]) -> Scheme {
    let (mut q, mut d) = (Vec::with_capacity(x.len()), Vec::with_capacity(x.len()));
    for blk in x.chunks(256) {
        let (mut amax, mut max) = (0f32, 0f32);
        for &v in blk {
            if amax < v.abs() {
                amax = v.abs();
                max = v;
            }
        }
        let (iscale, s) = if amax == 0.0 {
            (0.0, 0.0)
        } else {
            let i = -127f32 / max;
            (i, 1.0 / i)
        };
        for &v in blk {
            q.push((iscale * v).round().clamp(-128.0, 127.0) as i32);
            d.push(f64::from(s));
        }
    }
    Scheme { q, d }
}

/// Activation rows checked: all of them up to 8, else the first 4 and the last 4 (the exact
/// replay costs `n_out * n_in` per row and scheme).
fn checked_rows(m: usize) -> Vec<usize> {
    if m <= 8 {
        (0..m).collect()
    } else {
        (0..4).chain(m - 4..m).collect()
    }
}

/// `(bound, scheme difference)` of the module doc (The check) for every output of `rows`
/// (`[rows.len(), n_out]`).
fn bounds(
    kind: &str,
    w: &[u8],
    x: &[f32],
    rows: &[usize],
    n_out: usize,
    n_in: usize,
) -> Vec<(f64, f64)> {
    let nb = n_in / 32;
    let bb = if kind == "q8_0" { 34 } else { 18 };
    let rel = 2.0 * (nb as f64 + 3.0) * 2f64.powi(-24);
    let mut out = Vec::with_capacity(rows.len() * n_out);
    for &r in rows {
        let xr = &x[r * n_in..(r + 1) * n_in];
        let vox = q8_0_scheme(xr, false);
        let mut candle = vec![q8_0_scheme(xr, true)];
        if kind == "q8_0" && n_in.is_multiple_of(256) {
            candle.push(q8_k_scheme(xr));
        }
        for j in 0..n_out {
            let row = &w[j * nb * bb..(j + 1) * nb * bb];
            // (Y, T) per scheme: voxtrace first.
            let mut yt = vec![(0f64, 0f64); 1 + candle.len()];
            for b in 0..nb {
                let blk = &row[b * bb..(b + 1) * bb];
                let dw = f16_to_f64([blk[0], blk[1]]);
                for (k, s) in std::iter::once(&vox).chain(&candle).enumerate() {
                    // Per 32-block term: d_w * sum_t q_w q_x d_x (d_x constant within a
                    // 32-block in every scheme).
                    let i0 = b * 32;
                    let sum: i64 = (0..32)
                        .map(|t| i64::from(wq(kind, blk, t)) * i64::from(s.q[i0 + t]))
                        .sum();
                    let term = dw * s.d[i0] * sum as f64;
                    yt[k].0 += term;
                    yt[k].1 += term.abs();
                }
            }
            let (yv, tv) = yt[0];
            let mut bound = 0f64;
            let mut diff = 0f64;
            for &(yc, tc) in &yt[1..] {
                diff = diff.max((yc - yv).abs());
                bound = bound.max((yc - yv).abs() + rel * (tc + tv));
            }
            out.push((bound, diff));
        }
    }
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn run(a: &Args) -> Result<(serde_json::Value, bool), String> {
    let (dtype, bb) = match a.kind.as_str() {
        "q8_0" => (GgmlDType::Q8_0, 34),
        "q4_0" => (GgmlDType::Q4_0, 18),
        k => return Err(format!("--kind {k}: q8_0 or q4_0")),
    };
    let e = |e: candle_core::Error| e.to_string();
    let w = read(&a.dump.join("weight.bin"), a.n_out * a.n_in / 32 * bb)?;
    let x = f32s(&read(&a.dump.join("x.bin"), a.m * a.n_in * 4)?);
    let y_vox = f32s(&read(&a.dump.join("y.bin"), a.m * a.n_out * 4)?);
    let dev = Device::Cpu;
    let qt = ggml_file::qtensor_from_ggml(dtype, &w, vec![a.n_out, a.n_in], &dev).map_err(e)?;
    let mm = QMatMul::from_qtensor(qt).map_err(e)?;
    let xt = Tensor::from_vec(x.clone(), (a.m, a.n_in), &dev).map_err(e)?;
    let t0 = Instant::now();
    let y = mm.forward(&xt).map_err(e)?;
    let first_s = t0.elapsed().as_secs_f64();
    let mut all = Vec::with_capacity(a.reps);
    for _ in 0..a.reps {
        let t = Instant::now();
        let y = mm.forward(&xt).map_err(e)?;
        // Force the result (CPU ops are eager; this only guards against a lazy future).
        let _ = y.dims();
        all.push(t.elapsed().as_secs_f64());
    }
    let y_candle: Vec<f32> = y.flatten_all().and_then(|t| t.to_vec1()).map_err(e)?;
    if y_candle.len() != y_vox.len() {
        return Err(format!(
            "candle gave {} outputs, voxtrace {}",
            y_candle.len(),
            y_vox.len()
        ));
    }
    let rows = checked_rows(a.m);
    let t = bounds(&a.kind, &w, &x, &rows, a.n_out, a.n_in);
    let pick = |y: &[f32]| -> Vec<f32> {
        rows.iter()
            .flat_map(|&r| y[r * a.n_out..(r + 1) * a.n_out].iter().copied())
            .collect()
    };
    let (yc, yv) = (pick(&y_candle), pick(&y_vox));
    let (mut max_abs, mut worst, mut y_max, mut scheme_diff) = (0f64, 0f64, 0f64, 0f64);
    for ((&c, &v), &(bound, sd)) in yc.iter().zip(&yv).zip(&t) {
        scheme_diff = scheme_diff.max(sd);
        let d = (f64::from(c) - f64::from(v)).abs();
        max_abs = max_abs.max(d);
        y_max = y_max.max(f64::from(v).abs());
        let r = if bound > 0.0 {
            d / bound
        } else if d == 0.0 {
            0.0
        } else {
            f64::INFINITY
        };
        worst = worst.max(r);
    }
    let pass = worst <= 1.0 && y_candle.iter().all(|v| v.is_finite());
    let med = median(all.clone());
    Ok((
        serde_json::json!({
            "peer": "candle-core 0.11 quantized::QMatMul (CPU)",
            "kind": a.kind, "m": a.m, "n_out": a.n_out, "n_in": a.n_in, "reps": a.reps,
            "threads": candle_core::utils::get_num_threads(),
            "weight_bytes": w.len(),
            "first_call_s": first_s,
            "median_s": med, "all_s": all,
            "weight_gb_per_s": w.len() as f64 / med / 1e9,
            "check": {
                "against": "voxtrace bench qmatmul y (detected kernel), same weight bytes and x",
                "bound": "|y_candle - y_voxtrace| <= max_p |Y_p - Y_voxtrace| + 2 (n_blocks + 3) 2^-24 (T_p + T_voxtrace) per output (Y_p: each activation-quantization scheme replayed exactly; candle's 32-block f16-scale scheme, and for Q8_0 its 256-block Q8_K one)",
                "max_scheme_diff": scheme_diff,
                "rows_checked": rows,
                "max_abs_diff": max_abs, "max_abs_y": y_max,
                "max_err_over_bound": worst, "pass": pass,
            },
        }),
        pass,
    ))
}

fn main() -> ExitCode {
    let a = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&a) {
        Ok((j, pass)) => {
            println!("{j}");
            if pass {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: candle's output is outside the bound of voxtrace's");
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
