//! `voxtrace trace --feed REF_DUMP`: each block runs on the reference's recorded input, so a
//! comparison shows the block's own error (local) apart from what earlier blocks accumulated.
//! Checked on the tiny Voxtral fixture, f32 reference against the model packed as Q8_0.

mod common;

use common::*;
use std::collections::HashMap;

fn floats(path: &std::path::Path) -> HashMap<String, Vec<f32>> {
    read_tensors(path)
        .into_iter()
        .filter(|(_, dt, _, _)| *dt == safetensors::Dtype::F32)
        .map(|(n, _, _, b)| {
            (
                n,
                b.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
            )
        })
        .collect()
}

fn sqnr_db(r: &[f32], a: &[f32]) -> f64 {
    let (mut s, mut n) = (0f64, 0f64);
    for (x, y) in r.iter().zip(a) {
        s += f64::from(*x).powi(2);
        n += f64::from(x - y).powi(2);
    }
    10.0 * (s / n).log10()
}

#[test]
fn fed_blocks_run_on_the_reference_inputs_and_show_local_error() {
    let tmp = tempfile::tempdir().unwrap();
    let model = voxtral_fixture("mistral");
    let (a, b, c) = (
        tmp.path().join("f32.safetensors"),
        tmp.path().join("q8_0.acc.safetensors"),
        tmp.path().join("q8_0.local.safetensors"),
    );
    let clip = voxtral_fixture("synthetic.wav");
    voxtrace_ok(&["trace", "--model", s(&model), "--out", s(&a), s(&clip)]);
    let q = [
        "trace",
        "--model",
        s(&model),
        "--quant",
        "q8_0",
        "--inputs",
        s(&a),
    ];
    voxtrace_ok(&[&q[..], &["--out", s(&b)]].concat());
    let err = voxtrace_ok(&[&q[..], &["--feed", s(&a), "--out", s(&c)]].concat());
    assert!(err.contains("fed "), "{err}");
    let (ra, rb, rc) = (floats(&a), floats(&b), floats(&c));
    let layers = [
        "model.audio_tower.layers.0",
        "model.audio_tower.layers.1",
        "model.multi_modal_projector",
        "model.language_model.layers.0",
        "model.language_model.layers.1",
        "lm_head",
    ];
    for l in layers {
        let name = format!("{l}.in.0");
        let r = &ra[&name];
        // Fed: exactly the reference's input. Not fed: its own, already drifted (except the
        // first encoder layer, whose input comes before any packed layer).
        assert!(
            rc[&name] == *r,
            "{name}: fed input differs from the reference"
        );
        if l != "model.audio_tower.layers.0" {
            assert!(rb[&name] != *r, "{name}: unfed input equals the reference");
        }
    }
    // The last decoder layer's own error is smaller than the error accumulated up to it.
    let out = "model.language_model.layers.1.out";
    let (local, acc) = (sqnr_db(&ra[out], &rc[out]), sqnr_db(&ra[out], &rb[out]));
    println!("{out}: local {local:.1} dB, accumulated {acc:.1} dB");
    assert!(
        local > acc + 1.0,
        "local {local:.1} dB vs accumulated {acc:.1} dB"
    );
    // A dump without block inputs is refused, naming the file.
    let ids_only = tmp.path().join("ids.safetensors");
    voxtrace_ok(&[
        "trace",
        "--model",
        s(&model),
        "--filter",
        "generated_ids",
        "--out",
        s(&ids_only),
        s(&clip),
    ]);
    let o = voxtrace(&[&q[..], &["--feed", s(&ids_only), "--out", s(&c)]].concat());
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ids.safetensors"));
}
