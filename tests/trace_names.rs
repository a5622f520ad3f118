//! Freezes the full list of capture names (in execution order) of one Voxtral Realtime forward
//! pass, and checks the file tracer: filter applied before data is read, `trace-v1` metadata,
//! and a round trip through the safetensors file.
// Needs tensor capture (the default `record` feature).
#![cfg(feature = "record")]

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use voxtrace::models::voxtral::{Voxtral, VoxtralConfig};
use voxtrace::trace::{NameFilter, Tracer};

fn tiny_random() -> (Voxtral, Tensor<3>, Tensor<2, Int>) {
    let device = common::device();
    let cfg =
        VoxtralConfig::from_params_json(&common::voxtral_fixture("mistral/params.json")).unwrap();
    let model = Voxtral::random(cfg, &device);
    // 8 audio tokens = 64 mel frames.
    let features = Tensor::<3>::zeros([1, 128, 64], &device);
    let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![1i64; 8], [1, 8]), &device);
    (model, features, ids)
}

#[test]
fn capture_names_are_frozen() {
    let (model, features, ids) = tiny_random();
    let tracer = Tracer::in_memory(NameFilter::all());
    model.forward(features, ids, 6.0, &tracer.root());
    let names: Vec<String> = tracer
        .finish()
        .unwrap()
        .into_iter()
        .map(|c| format!("{} {:?}", c.name, c.shape))
        .collect();
    insta::assert_snapshot!(names.join("\n"));
}

#[test]
fn capture_names_equal_upstream_hook_names() {
    // Every upstream hook name in the reference dump (minus the run's inputs/outputs) is
    // produced by the Burn model, and nothing else is.
    let dump = common::read_dump(&common::voxtral_fixture("dumps/cards-001.safetensors"));
    let (model, features, ids) = tiny_random();
    let tracer = Tracer::in_memory(NameFilter::all());
    model.forward(features, ids, 6.0, &tracer.root());
    let ours: std::collections::BTreeSet<String> = tracer
        .finish()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    let theirs: std::collections::BTreeSet<String> = dump
        .tensors
        .keys()
        .filter(|n| !["generated_ids", "input_features", "input_ids"].contains(&n.as_str()))
        .cloned()
        .collect();
    let only_ours: Vec<_> = ours.difference(&theirs).collect();
    let only_theirs: Vec<_> = theirs.difference(&ours).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "only Burn: {only_ours:?}\nonly upstream: {only_theirs:?}"
    );
}

#[test]
fn filter_limits_capture_and_file_round_trips() {
    let (model, features, ids) = tiny_random();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run.safetensors");
    let filter =
        NameFilter::parse(&[r"re:^model\.audio_tower\.layers\.\d+\.out$", "logits"]).unwrap();
    let tracer = Tracer::to_file(filter, &out, "test").unwrap();
    model.forward(features, ids, 6.0, &tracer.root());
    tracer.finish().unwrap();
    let dump = common::read_dump(&out);
    assert_eq!(
        dump.order,
        vec![
            "model.audio_tower.layers.0.out",
            "model.audio_tower.layers.1.out",
            "logits"
        ]
    );
    assert_eq!(dump.get("logits").shape, vec![1, 8, 2048]);
    // No temporary files are left next to the output.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
}

#[test]
fn disabled_scope_records_nothing() {
    let (model, features, ids) = tiny_random();
    let off = voxtrace::trace::Scope::off();
    assert!(!off.enabled());
    assert_eq!(off.child("model").path(), "");
    let logits = model.forward(features, ids, 6.0, &off);
    assert_eq!(logits.dims(), [1, 8, 2048]);
}
