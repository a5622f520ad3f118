//! `voxtrace export` on the tiny Voxtral fixture: every part passes `onnx.checker` (full
//! check) and runs in ONNX Runtime; with every traced intermediate as a graph output, ORT
//! matches Burn (same inputs, taken from the Burn trace) within 1e-4 absolute on every name,
//! and ORT fed with the upstream dump's inputs matches the PyTorch dump at the comparator's
//! default tolerances (atol 1e-5, rtol 1e-4) — the three-way PyTorch / Burn / ORT check.
//! Also: an op without lowering fails naming op and trace scope; external data (threshold 0)
//! loads and gives bit-identical results; the Model Explorer graph and drift overlay join by
//! capture name; opset 23.
//!
//! Needs `VOXTRACE_PYTHON` (a Python with onnx and onnxruntime); fails when it is unset.

mod common;
mod export_common;

use common::voxtral_fixture;
use export_common::*;
use std::path::{Path, PathBuf};

const PARTS: [&str; 4] = ["encoder", "adapter", "decoder-step", "all"];

fn upstream() -> PathBuf {
    voxtral_fixture("dumps/cards-001.safetensors")
}

fn burn_trace(layout: &str, out: &Path) {
    voxtrace_ok(&[
        "trace",
        "--model",
        s(&voxtral_fixture(layout)),
        "--tokenizer",
        s(&voxtral_fixture("mistral/tekken.json")),
        "--inputs",
        s(&upstream()),
        "--out",
        s(out),
    ]);
}

/// Export `part` of the fixture (frames/tokens of cards-001: 504 frames, 63 tokens).
fn export(layout: &str, part: &str, out: &Path, extra: &[&str]) {
    let model = voxtral_fixture(layout);
    let tok = voxtral_fixture("mistral/tekken.json");
    let mut args = vec![
        "export",
        "--model",
        s(&model),
        "--tokenizer",
        s(&tok),
        "--part",
        part,
        "--frames",
        "504",
        "--tokens",
        "63",
        "--intermediates",
        "--out",
        s(out),
    ];
    args.extend_from_slice(extra);
    voxtrace_ok(&args);
}

#[test]
fn every_part_runs_in_onnxruntime_and_matches_burn_and_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let up_names = names(&upstream());
    for layout in ["mistral", "hf"] {
        let burn = dir.path().join(format!("{layout}-burn.safetensors"));
        burn_trace(layout, &burn);
        // Burn vs PyTorch (the third side of the triangle), as `voxtrace trace` promises.
        let r = compare(&upstream(), &burn, 1e-5, 1e-4);
        assert_all_pass(&r, &[], &format!("{layout}: pytorch vs burn"));
        for part in PARTS {
            let onnx = dir.path().join(format!("{layout}-{part}.onnx"));
            export(layout, part, &onnx, &[]);

            // ORT vs Burn on Burn's own inputs: every ORT tensor within 1e-4 absolute.
            let ort_burn = dir
                .path()
                .join(format!("{layout}-{part}-ort-burn.safetensors"));
            onnx_run(&onnx, &burn, &ort_burn);
            let ort_names = names(&ort_burn);
            assert!(ort_names.len() >= 8, "{part}: only {ort_names:?}");
            let r = compare(&ort_burn, &burn, 1e-4, 0.0);
            let (n, worst, at) = assert_all_pass(&r, &[], &format!("{layout} {part}: ort vs burn"));
            assert_eq!(n, ort_names.len());
            eprintln!("{layout} {part}: ORT vs Burn {n} tensors, max |diff| {worst:.3e} at {at}");

            // ORT vs PyTorch on the upstream inputs, default tolerances. Names of other parts
            // are missing by design; for `all` only `generated_ids` (made by generation, not
            // by the graph) may be absent.
            let ort_up = dir
                .path()
                .join(format!("{layout}-{part}-ort-up.safetensors"));
            onnx_run(&onnx, &upstream(), &ort_up);
            let ort_names = names(&ort_up);
            let absent: Vec<String> = up_names
                .iter()
                .filter(|n| !ort_names.contains(n))
                .cloned()
                .collect();
            if part == "all" {
                assert_eq!(absent, vec!["generated_ids".to_string()]);
            }
            let r = compare(&upstream(), &ort_up, 1e-5, 1e-4);
            let (n, worst, at) =
                assert_all_pass(&r, &absent, &format!("{layout} {part}: pytorch vs ort"));
            assert!(n >= 8, "{part}: {n}");
            eprintln!(
                "{layout} {part}: PyTorch vs ORT {n} tensors, max |diff| {worst:.3e} at {at}"
            );
        }
    }
}

#[test]
fn an_op_without_lowering_fails_naming_op_and_trace_scope() {
    use burn::tensor::{Tensor, TensorData};
    let part = voxtrace::export::capture(|device, root| {
        let x = Tensor::<2>::from_data(TensorData::new(vec![1f32, 2., 3., 4.], [2, 2]), device);
        let xi = voxtrace::export::id_of(&x)?;
        let h = root.child("block").child("scale").output(x * 2.0);
        let y = h.flip([0]);
        Ok((
            vec![("x".into(), xi)],
            vec![("y".into(), voxtrace::export::id_of(&y)?)],
        ))
    })
    .unwrap();
    let err = voxtrace::export::to_onnx(&part, &Default::default(), "t")
        .err()
        .expect("Flip has no lowering: the export must fail");
    let msg = err.to_string();
    assert!(msg.contains("Flip"), "{msg}");
    assert!(msg.contains("block.scale"), "{msg}");
}

#[test]
fn external_data_loads_and_gives_identical_results() {
    let dir = tempfile::tempdir().unwrap();
    let inline = dir.path().join("inline.onnx");
    let ext = dir.path().join("ext.onnx");
    export("mistral", "encoder", &inline, &[]);
    export("mistral", "encoder", &ext, &["--external-threshold", "0"]);
    let data = dir.path().join("ext.onnx.data");
    assert!(data.is_file(), "no external data file");
    assert!(!dir.path().join("inline.onnx.data").exists());
    let (a, b) = (
        std::fs::metadata(&inline).unwrap().len(),
        std::fs::metadata(&ext).unwrap().len(),
    );
    assert!(b < a / 2, "external model {b} bytes vs inline {a}");
    let (ra, rb) = (dir.path().join("a.st"), dir.path().join("b.st"));
    onnx_run(&inline, &upstream(), &ra);
    onnx_run(&ext, &upstream(), &rb);
    let r = compare(&ra, &rb, 0.0, 0.0);
    let (n, worst, _) = assert_all_pass(&r, &[], "inline vs external");
    assert!(n > 10);
    assert_eq!(worst, 0.0);
}

#[test]
fn graph_json_and_drift_overlay_join_by_capture_name() {
    let dir = tempfile::tempdir().unwrap();
    let onnx = dir.path().join("m.onnx");
    let graph = dir.path().join("m.json");
    export("mistral", "all", &onnx, &["--graph-json", s(&graph)]);
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&graph).unwrap()).unwrap();
    let nodes = g["graphs"][0]["nodes"].as_array().unwrap();
    let by_id = |id: &str| nodes.iter().find(|n| n["id"] == id).cloned();
    let q = by_id("model.audio_tower.layers.0.self_attn.q_proj.out").expect("named node");
    assert_eq!(
        q["namespace"],
        "model/audio_tower/layers/0/self_attn/q_proj"
    );
    let logits = by_id("logits").expect("logits node");
    assert!(!logits["incomingEdges"].as_array().unwrap().is_empty());
    // Unnamed nodes live in the module of their neighbours.
    assert!(
        nodes.iter().any(|n| n["id"]
            .as_str()
            .unwrap()
            .starts_with("model.audio_tower.layers.0.self_attn/op_")),
        "attention internals are not grouped under self_attn"
    );

    let ort = dir.path().join("ort.safetensors");
    onnx_run(&onnx, &upstream(), &ort);
    let overlay = dir.path().join("overlay.json");
    let json = dir.path().join("r.json");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_voxtrace"))
        .args([
            "compare",
            s(&upstream()),
            s(&ort),
            "--json",
            s(&json),
            "--graph-overlay",
            s(&overlay),
        ])
        .output()
        .unwrap();
    // generated_ids is not a graph tensor: missing, so exit 1; every other tensor passes.
    assert_eq!(o.status.code(), Some(1));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for t in report["tensors"].as_array().unwrap() {
        if t["name"] != "generated_ids" {
            assert_eq!(t["status"], "pass", "{}", t["name"]);
        }
    }
    let ov: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&overlay).unwrap()).unwrap();
    let results = ov["main"]["results"].as_object().unwrap();
    assert!(results.len() > 150, "{}", results.len());
    let mut joined = 0;
    for (name, v) in results {
        if name == "generated_ids" {
            assert!(
                v["value"].as_f64().unwrap() > 1.0,
                "missing must colour as failing"
            );
            continue;
        }
        assert!(v["value"].as_f64().unwrap() <= 1.0, "{name}: {v}");
        if by_id(name).is_some() || name == "input_features" || name == "input_ids" {
            joined += 1;
        }
    }
    assert_eq!(
        joined,
        results.len() - 1,
        "every graph tensor's drift lands on a node"
    );
}

#[test]
fn opset_23_runs_and_matches_burn() {
    let dir = tempfile::tempdir().unwrap();
    let burn = dir.path().join("burn.safetensors");
    burn_trace("mistral", &burn);
    let onnx = dir.path().join("m23.onnx");
    export("mistral", "all", &onnx, &["--opset", "23"]);
    // The fused ops are there: 2 encoder + 2 decoder layers, 2 norms each plus 2 final norms.
    let model = {
        use onnx_protobuf::Message;
        onnx_protobuf::ModelProto::parse_from_bytes(&std::fs::read(&onnx).unwrap()).unwrap()
    };
    let count = |op: &str| model.graph.node.iter().filter(|n| n.op_type == op).count();
    assert_eq!(model.opset_import[0].version, 23);
    assert_eq!(count("Attention"), 4);
    assert_eq!(count("RMSNormalization"), 10);
    assert_eq!(count("Gelu"), 5);
    assert_eq!(count("Softmax"), 0);
    let ort = dir.path().join("ort.safetensors");
    onnx_run(&onnx, &burn, &ort);
    let r = compare(&ort, &burn, 1e-4, 0.0);
    let (n, worst, at) = assert_all_pass(&r, &[], "opset 23: ort vs burn");
    assert!(n > 150);
    eprintln!("opset 23 all: ORT vs Burn {n} tensors, max |diff| {worst:.3e} at {at}");
}
