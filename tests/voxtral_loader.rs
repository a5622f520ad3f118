//! Loader errors: a missing, extra or mis-shaped tensor names the tensor with the expected and
//! the found shape; a truncated or corrupt file names the file; nothing panics.

mod common;

use common::{OwnedTensor, device, read_tensors, voxtral_fixture, write_tensors};
use voxtrace::models::CheckpointError;
use voxtrace::models::voxtral::{Voxtral, WeightLayout};

type Owned = Vec<OwnedTensor>;

/// A copy of the Mistral checkpoint folder whose weights are edited by `edit`.
fn load_edited(edit: impl FnOnce(&mut Owned)) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for f in ["params.json", "tekken.json"] {
        std::fs::copy(voxtral_fixture(&format!("mistral/{f}")), dir.path().join(f)).unwrap();
    }
    let mut t = read_tensors(&voxtral_fixture("mistral/consolidated.safetensors"));
    edit(&mut t);
    write_tensors(&dir.path().join("consolidated.safetensors"), &t);
    let err = Voxtral::load_layout(dir.path(), WeightLayout::Mistral, &device())
        .expect_err("edited checkpoint must not load");
    (err.to_string(), dir)
}

#[test]
fn missing_tensor_is_named_with_its_expected_shape() {
    let (msg, _d) = load_edited(|t| t.retain(|x| x.0 != "layers.1.attention.wk.weight"));
    assert!(
        msg.contains("missing tensor model.language_model.layers.1.self_attn.k_proj.weight: expected shape [32, 64]"),
        "{msg}"
    );
}

#[test]
fn mis_shaped_tensor_names_expected_and_found_shapes() {
    let (msg, _d) = load_edited(|t| {
        let x = t.iter_mut().find(|x| x.0 == "norm.weight").unwrap();
        x.2 = vec![32];
        x.3.truncate(32 * 2);
    });
    assert!(
        msg.contains("tensor norm.weight: expected shape [64], found [32]"),
        "{msg}"
    );
}

#[test]
fn extra_tensor_is_reported() {
    let (msg, _d) = load_edited(|t| {
        t.push((
            "layers.9.attention.wq.weight".into(),
            safetensors::Dtype::BF16,
            vec![2],
            vec![0; 4],
        ));
        t.push((
            "something.else".into(),
            safetensors::Dtype::BF16,
            vec![2],
            vec![0; 4],
        ));
    });
    assert!(
        msg.contains("unexpected tensor layers.9.attention.wq.weight [2]"),
        "{msg}"
    );
    assert!(
        msg.contains("unexpected tensor something.else [2]"),
        "{msg}"
    );
}

#[test]
fn truncated_file_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for f in ["params.json", "tekken.json"] {
        std::fs::copy(voxtral_fixture(&format!("mistral/{f}")), dir.path().join(f)).unwrap();
    }
    let bytes = std::fs::read(voxtral_fixture("mistral/consolidated.safetensors")).unwrap();
    let path = dir.path().join("consolidated.safetensors");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = Voxtral::load_layout(dir.path(), WeightLayout::Mistral, &device()).unwrap_err();
    assert!(matches!(err, CheckpointError::File { .. }), "{err:?}");
    assert!(
        err.to_string().contains("consolidated.safetensors"),
        "{err}"
    );
}

#[test]
fn folder_without_a_checkpoint_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Voxtral::load(dir.path(), &device()).unwrap_err();
    assert!(matches!(err, CheckpointError::NotFound { .. }), "{err:?}");
}

#[test]
fn bad_params_json_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        voxtral_fixture("mistral/consolidated.safetensors"),
        dir.path().join("consolidated.safetensors"),
    )
    .unwrap();
    std::fs::write(dir.path().join("params.json"), r#"{"dim": 64}"#).unwrap();
    let err = Voxtral::load(dir.path(), &device()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("params.json") && msg.contains("missing"),
        "{msg}"
    );
}
