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
//! Both compute, per output, `y_j = sum_b d_w(b) d_x(b) S_b`: the activation row quantized per
//! block of 32 to 8 bits (`d_x = max|x| / 127`, `q = round(x / d_x)`), `S_b` the exact integer
//! dot product of the block. They differ in that ggml and candle store `d_x` as f16 (relative
//! rounding at most 2^-11) where voxtrace keeps it in f32, and in the order of their f32 sums.
//! So, with `T_j = sum_b |d_w(b) d_x(b) S_b|` computed here in f64 from the same bytes,
//! `|y_candle - y_voxtrace| <= (2^-11 + 2 (n_blocks + 2) 2^-24) T_j` must hold for every
//! output; the JSON gives the largest ratio to that bound (`max_err_over_bound`) and the check
//! fails (exit 1) above 1.

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
    if a.m == 0 || a.n_out == 0 || a.n_in == 0 || a.n_in % 32 != 0 || a.dump.as_os_str().is_empty()
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

/// `T_j` of the module doc for every output: per block, ggml's activation quantization
/// (`quantize_row_q8_0_ref`: `d = amax / 127`, `q = round(x / d)`, in f32) and the exact
/// integer dot with the weight block.
fn magnitudes(kind: &str, w: &[u8], x: &[f32], m: usize, n_out: usize, n_in: usize) -> Vec<f64> {
    let nb = n_in / 32;
    let bb = if kind == "q8_0" { 34 } else { 18 };
    let mut out = vec![0f64; m * n_out];
    for r in 0..m {
        let xr = &x[r * n_in..(r + 1) * n_in];
        let qx: Vec<(f64, [i32; 32])> = xr
            .chunks_exact(32)
            .map(|blk| {
                let amax = blk.iter().fold(0f32, |a, v| a.max(v.abs()));
                let d = amax / 127.0;
                let id = if d != 0.0 { 1.0 / d } else { 0.0 };
                let mut q = [0i32; 32];
                for (qi, &v) in q.iter_mut().zip(blk) {
                    *qi = (v * id).round() as i32;
                }
                (f64::from(d), q)
            })
            .collect();
        for j in 0..n_out {
            let row = &w[j * nb * bb..(j + 1) * nb * bb];
            let mut t = 0f64;
            for (b, (dx, qx)) in qx.iter().enumerate() {
                let blk = &row[b * bb..(b + 1) * bb];
                let dw = f16_to_f64([blk[0], blk[1]]);
                let s: i32 = if kind == "q8_0" {
                    (0..32).map(|i| i32::from(blk[2 + i] as i8) * qx[i]).sum()
                } else {
                    (0..16)
                        .map(|i| {
                            let lo = i32::from(blk[2 + i] & 0x0f) - 8;
                            let hi = i32::from(blk[2 + i] >> 4) - 8;
                            lo * qx[i] + hi * qx[i + 16]
                        })
                        .sum()
                };
                t += (dw * dx * f64::from(s)).abs();
            }
            out[r * n_out + j] = t;
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
    let nb = (a.n_in / 32) as f64;
    let rel = 2f64.powi(-11) + 2.0 * (nb + 2.0) * 2f64.powi(-24);
    let t = magnitudes(&a.kind, &w, &x, a.m, a.n_out, a.n_in);
    let (mut max_abs, mut worst, mut y_max) = (0f64, 0f64, 0f64);
    for ((&c, &v), &tj) in y_candle.iter().zip(&y_vox).zip(&t) {
        let d = (f64::from(c) - f64::from(v)).abs();
        max_abs = max_abs.max(d);
        y_max = y_max.max(f64::from(v).abs());
        let bound = rel * tj;
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
                "bound": "|y_candle - y_voxtrace| <= (2^-11 + 2 (n_blocks + 2) 2^-24) * sum_b |d_w d_x S_b| per output",
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
