//! Tracing overhead: the same Voxtral forward pass with capture off, and with every capture
//! point recorded (in memory and streamed to a file), as ratios from one run. Writes
//! `reports/bench/trace_overhead.json`. Run with `just bench` (release build).
//!
//! Model: the tiny fixture checkpoint (fixtures/voxtral_tiny/mistral) on the cards-001 inputs,
//! and a wider random model (encoder/decoder d_model 512) on 4 s of features, to see the
//! overhead where compute is not negligible.

use burn::tensor::{Device, Int, Tensor, TensorData};
use std::time::Instant;
use voxtrace::models::voxtral::{Voxtral, VoxtralConfig, WeightLayout};
use voxtrace::trace::{NameFilter, Scope, Tracer};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn measure(
    name: &str,
    model: &Voxtral,
    features: &Tensor<3>,
    ids: &Tensor<2, Int>,
    reps: usize,
) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let run = |mode: u8| -> f64 {
        let t0 = Instant::now();
        match mode {
            0 => {
                let l = model.forward(features.clone(), ids.clone(), 6.0, &Scope::off());
                let _ = l.into_data();
            }
            1 => {
                let tr = Tracer::in_memory(NameFilter::all());
                let l = model.forward(features.clone(), ids.clone(), 6.0, &tr.root());
                let _ = l.into_data();
                tr.finish().unwrap();
            }
            _ => {
                let tr = Tracer::to_file(
                    NameFilter::all(),
                    &dir.path().join("t.safetensors"),
                    "bench",
                )
                .unwrap();
                let l = model.forward(features.clone(), ids.clone(), 6.0, &tr.root());
                let _ = l.into_data();
                tr.finish().unwrap();
            }
        }
        t0.elapsed().as_secs_f64()
    };
    for m in 0..3 {
        run(m);
    }
    // Interleave the modes so drift in machine load hits all of them alike.
    let (mut off, mut mem, mut file) = (vec![], vec![], vec![]);
    for _ in 0..reps {
        off.push(run(0));
        mem.push(run(1));
        file.push(run(2));
    }
    let (o, m, f) = (median(off), median(mem), median(file));
    println!(
        "{name}: capture off {:.2} ms, all in memory {:.2} ms ({:.2}x), all to file {:.2} ms ({:.2}x)",
        o * 1e3,
        m * 1e3,
        m / o,
        f * 1e3,
        f / o
    );
    serde_json::json!({"model": name, "reps": reps, "off_ms": o * 1e3, "memory_ms": m * 1e3, "file_ms": f * 1e3,
        "memory_ratio": m / o, "file_ratio": f / o})
}

fn main() {
    let device = Device::flex();
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fx = root.join("fixtures/voxtral_tiny");
    let tiny = Voxtral::load_layout(&fx.join("mistral"), WeightLayout::Mistral, &device).unwrap();
    let feats = Tensor::<3>::random(
        [1, 128, 504],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![32i64; 63], [1, 63]), &device);
    let mut results = vec![measure(
        "tiny (d_model 64, 2+2 layers, 63 tokens)",
        &tiny,
        &feats,
        &ids,
        30,
    )];

    let mut cfg = VoxtralConfig::from_params_json(&fx.join("mistral/params.json")).unwrap();
    cfg.encoder.d_model = 512;
    cfg.encoder.intermediate_size = 2048;
    cfg.encoder.n_heads = 8;
    cfg.encoder.head_dim = 64;
    cfg.decoder.d_model = 512;
    cfg.decoder.intermediate_size = 1536;
    cfg.decoder.n_heads = 8;
    cfg.decoder.n_kv_heads = 2;
    cfg.decoder.head_dim = 64;
    let wide = Voxtral::random(cfg, &device);
    let feats = Tensor::<3>::random(
        [1, 128, 400],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        &device,
    );
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![32i64; 50], [1, 50]), &device);
    results.push(measure(
        "wide (d_model 512, 2+2 layers, 50 tokens)",
        &wide,
        &feats,
        &ids,
        10,
    ));

    let out = root.join("reports/bench");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("trace_overhead.json"),
        serde_json::to_string_pretty(&results).unwrap(),
    )
    .unwrap();
}
