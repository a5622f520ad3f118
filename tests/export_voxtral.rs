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
// The exporter names ONNX nodes through the tracer taps, which exist only with `record`.
#![cfg(feature = "record")]

mod common;

use common::export::*;
use common::{OwnedTensor, s, voxtrace_ok, voxtral_fixture, write_tensors};
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
            let absent = absent_from(&up_names, &ort_up);
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

/// Opset 23 on both layouts: Mistral weights use interleaved RoPE, HF weights half-split, so
/// both `RotaryEmbedding` spellings are fused and run.
#[test]
fn opset_23_runs_and_matches_burn() {
    for layout in ["mistral", "hf"] {
        opset_23_layout(layout);
    }
}

fn opset_23_layout(layout: &str) {
    let dir = tempfile::tempdir().unwrap();
    let burn = dir.path().join("burn.safetensors");
    burn_trace(layout, &burn);
    let onnx = dir.path().join("m23.onnx");
    export(layout, "all", &onnx, &["--opset", "23"]);
    // The fused ops are there: 2 encoder + 2 decoder layers, 2 norms each plus 2 final norms;
    // RoPE on q and k in each of the 4 layers, with the layout's pairing.
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
    assert_eq!(count("RotaryEmbedding"), 8);
    let interleaved = i64::from(layout == "mistral");
    for n in model
        .graph
        .node
        .iter()
        .filter(|n| n.op_type == "RotaryEmbedding")
    {
        let a = n
            .attribute
            .iter()
            .find(|a| a.name == "interleaved")
            .unwrap();
        assert_eq!(a.i, interleaved, "{layout}: {}", n.name);
    }
    // No elementary RoPE is left: its `x1·c − x2·s` held every Sub of the opset-18 graph.
    assert_eq!(count("Sub"), 0, "{layout}");
    // Weights are named by their module parameter path.
    let inits: Vec<&str> = model
        .graph
        .initializer
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    for w in [
        "model.audio_tower.embedder.conv1.weight",
        "model.language_model.layers.1.mlp.down_proj.weight",
        "model.language_model.embed_tokens.weight",
    ] {
        assert!(inits.contains(&w), "no initializer {w}");
    }
    let ort = dir.path().join("ort.safetensors");
    onnx_run(&onnx, &burn, &ort);
    let r = compare(&ort, &burn, 1e-4, 0.0);
    let (n, worst, at) = assert_all_pass(&r, &[], &format!("opset 23 {layout}: ort vs burn"));
    assert!(n > 150);
    eprintln!("opset 23 {layout} all: ORT vs Burn {n} tensors, max |diff| {worst:.3e} at {at}");
}

/// A tensor to write: name, shape, f32 values (`Ok`) or i64 values (`Err`).
type NamedValues = (String, Vec<usize>, Result<Vec<f32>, Vec<i64>>);

/// Write tensors as safetensors.
fn write_st(path: &Path, tensors: Vec<NamedValues>) {
    let owned: Vec<OwnedTensor> = tensors
        .into_iter()
        .map(|(n, shape, v)| match v {
            Ok(f) => (
                n,
                safetensors::Dtype::F32,
                shape,
                f.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
            Err(i) => (
                n,
                safetensors::Dtype::I64,
                shape,
                i.iter().flat_map(|x| x.to_le_bytes()).collect(),
            ),
        })
        .collect();
    write_tensors(path, &owned);
}

/// `decoder-step --past P`: the KV cache is graph input and output. Burn decodes the first P
/// positions incrementally, then one cached step over T more positions; ORT, fed Burn's cache
/// after the prefill, gives the step's logits and the updated cache within 1e-4.
#[test]
fn decoder_step_with_kv_cache_matches_burn_incremental_decoding() {
    use burn::tensor::{Int, Tensor, TensorData};
    use voxtrace::models::voxtral::{Voxtral, loader::detect_layout};
    use voxtrace::nn::KvCache;
    use voxtrace::trace::Scope;
    let (past, steps) = (10usize, 2usize);
    let device = common::device();
    let dir = voxtral_fixture("mistral");
    let model = Voxtral::load_layout(&dir, detect_layout(&dir).unwrap(), &device).unwrap();
    let tok =
        voxtrace::tokenizer::Tekken::from_file(voxtral_fixture("mistral/tekken.json")).unwrap();
    let delay = tok.audio().unwrap().n_delay_tokens(Some(480.0)).unwrap() as f32;
    let dump = common::read_dump(&upstream());
    let ids = dump.get("input_ids").i64.clone();
    let audio = dump.get("model.multi_modal_projector.out");
    let d = audio.shape[2];
    let off = Scope::off();
    let t_cond = model.t_cond(delay, &off, &device);
    let embeds = |from: usize, n: usize| {
        let i = Tensor::<2, Int>::from_data(
            TensorData::new(ids[from..from + n].to_vec(), [1, n]),
            &device,
        );
        let a = Tensor::<3>::from_data(
            TensorData::new(audio.f32[from * d..(from + n) * d].to_vec(), [1, n, d]),
            &device,
        );
        model.embed(i, &off) + a
    };
    let n_layers = model.config.decoder.n_layers;
    let mut caches = vec![KvCache::default(); n_layers];
    let _ = model.decode_step(embeds(0, past), &t_cond, 0, &mut caches);
    let vals = |t: &Tensor<4>| {
        t.clone()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()
    };
    let mut inputs = vec![
        (
            "input_ids".to_string(),
            vec![1, steps],
            Err(ids[past..past + steps].to_vec()),
        ),
        (
            "model.multi_modal_projector.out".to_string(),
            vec![1, steps, d],
            Ok(audio.f32[past * d..(past + steps) * d].to_vec()),
        ),
    ];
    for (i, c) in caches.iter().enumerate() {
        for (kind, t) in [
            ("key", c.k.as_ref().unwrap()),
            ("value", c.v.as_ref().unwrap()),
        ] {
            inputs.push((
                format!("past_key_values.{i}.{kind}"),
                t.dims().to_vec(),
                Ok(vals(t)),
            ));
        }
    }
    let logits = model.decode_step(embeds(past, steps), &t_cond, past, &mut caches);
    // Burn's own consistency: the cached step equals the uncached pass at those positions.
    let mut fresh = vec![KvCache::default(); n_layers];
    let full = model.decode_step(embeds(0, past + steps), &t_cond, 0, &mut fresh);
    let full_tail = full.narrow(1, past, steps);
    let diff: f32 = (full_tail - logits.clone()).abs().max().into_scalar();
    assert!(
        diff < 1e-4,
        "Burn cached vs uncached logits differ by {diff}"
    );

    let mut reference = vec![(
        "logits".to_string(),
        logits.dims().to_vec(),
        Ok(logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap()),
    )];
    for (i, c) in caches.iter().enumerate() {
        for (kind, t) in [
            ("key", c.k.as_ref().unwrap()),
            ("value", c.v.as_ref().unwrap()),
        ] {
            reference.push((
                format!("present.{i}.{kind}"),
                t.dims().to_vec(),
                Ok(vals(t)),
            ));
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let (inp, refp) = (
        tmp.path().join("in.safetensors"),
        tmp.path().join("ref.safetensors"),
    );
    write_st(&inp, inputs);
    write_st(&refp, reference);
    let onnx = tmp.path().join("step.onnx");
    voxtrace_ok(&[
        "export",
        "--model",
        s(&dir),
        "--part",
        "decoder-step",
        "--past",
        &past.to_string(),
        "--tokens",
        &steps.to_string(),
        "--out",
        s(&onnx),
    ]);
    let ort = tmp.path().join("ort.safetensors");
    onnx_run(&onnx, &inp, &ort);
    let r = compare(&refp, &ort, 1e-4, 0.0);
    let (n, worst, at) = assert_all_pass(&r, &[], "kv step: burn vs ort");
    assert_eq!(n, 1 + 2 * n_layers);
    eprintln!(
        "decoder-step --past {past} --tokens {steps}: ORT vs Burn {n} tensors, max |diff| {worst:.3e} at {at}"
    );
}
