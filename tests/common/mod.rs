//! Helpers shared by integration tests: reading upstream dumps and comparing tensors.
#![allow(dead_code)]

use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Crate root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `fixtures/voxtral_tiny/...`.
pub fn voxtral_fixture(rel: &str) -> PathBuf {
    root().join("fixtures/voxtral_tiny").join(rel)
}

/// A tensor read from a dump: shape and values (floats as f32, ints as i64).
#[derive(Debug, Clone)]
pub struct DumpTensor {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

/// A whole dump: tensors by name plus the execution order from `voxtrace.order`.
pub struct Dump {
    pub tensors: BTreeMap<String, DumpTensor>,
    pub order: Vec<String>,
}

impl Dump {
    pub fn get(&self, name: &str) -> &DumpTensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("dump has no tensor {name}"))
    }
}

pub fn read_dump(path: &Path) -> Dump {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let order: Vec<String> = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("voxtrace.order"))
        .map(|s| serde_json::from_str(s).unwrap())
        .unwrap_or_default();
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = view.data();
        let (f, i) = match view.dtype() {
            Dtype::F32 => (
                data.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                    .collect(),
                vec![],
            ),
            Dtype::I64 => {
                let v: Vec<i64> = data
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                    .collect();
                (v.iter().map(|&x| x as f32).collect(), v)
            }
            other => panic!("unexpected dtype {other:?} for {name}"),
        };
        tensors.insert(
            name.clone(),
            DumpTensor {
                shape: view.shape().to_vec(),
                f32: f,
                i64: i,
            },
        );
    }
    Dump { tensors, order }
}

/// Largest |a - r| and whether every element satisfies |a - r| <= atol + rtol * |r|
/// (NVIDIA Polygraphy semantics); NaN anywhere fails.
pub fn allclose(actual: &[f32], reference: &[f32], atol: f32, rtol: f32) -> (bool, f32) {
    assert_eq!(actual.len(), reference.len());
    let mut ok = true;
    let mut max = 0f32;
    for (&a, &r) in actual.iter().zip(reference) {
        let d = (a - r).abs();
        if d.is_nan() || d > atol + rtol * r.abs() {
            ok = false;
        }
        if d.is_nan() || d > max {
            max = if d.is_nan() { f32::INFINITY } else { d };
        }
    }
    (ok, max)
}

/// How many times upstream's own float32 error a difference between two f32 runs of Whisper
/// tiny.en may reach: |a - b| <= |a - x| + |b - x| for the exact result x, with each run
/// allowed upstream's distance from x. Measured 2026-12-03 over every pair of torch f32, Flex
/// (gemm's AVX2 and AVX-512 kernels), ndarray and ONNX Runtime, both dump clips, all 1500
/// frames (`reference/whisper_f32_error.py --pairs CLIP LABEL=DUMP...` on full traces): where
/// an atol above 5e-4 is needed, a pair needed at most 1.14x upstream's error (AVX2 vs
/// AVX-512 Flex at goforward `model.encoder.layers.3.fc1.out`).
pub const F32_ERROR_FACTOR: f64 = 2.0;

/// `tol` with each tensor's atol raised, where needed, to [`F32_ERROR_FACTOR`] x upstream's
/// own float32 error on that tensor for `clip` (`max_err`, max |x_f32 - x_f64| of
/// transformers over the whole tensor, in `fixtures/whisper_tiny_en/f32_error.json`, written
/// by `reference/whisper_f32_error.py`). A flat atol below that rejects correct f32
/// implementations at ill-conditioned tensors (encoder layer 3's FFN: `fc1` sums 384 products
/// of inputs up to ~90 into outputs up to ~560, `fc2` 1536 products; transformers itself is
/// 1.2e-3 to 1.8e-3 from float64 there); elsewhere `tol`
/// is unchanged. Prints the names whose atol was raised. Panics on a missing or malformed
/// fixture, or a clip it does not hold.
pub fn lift_to_f32_error(
    mut tol: voxtrace::compare::Tolerances,
    clip: &str,
) -> voxtrace::compare::Tolerances {
    let path = root().join("fixtures/whisper_tiny_en/f32_error.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let per = v["clips"][clip]
        .as_object()
        .unwrap_or_else(|| panic!("{}: no clip {clip}", path.display()));
    assert!(
        per.len() > 250,
        "{}: {} tensors for {clip}",
        path.display(),
        per.len()
    );
    let mut lifted = Vec::new();
    for (name, st) in per {
        let e = st["max_err"]
            .as_f64()
            .unwrap_or_else(|| panic!("{}: {clip}/{name}: no max_err", path.display()));
        let cur = tol.for_name(name);
        if F32_ERROR_FACTOR * e > cur.atol {
            assert!(
                !name.contains(['*', '?', '[', ']', '{', '}']),
                "{name}: glob characters in a capture name"
            );
            // Exact names, so the override cannot change another name's `for_name`.
            tol = tol.with_override(
                voxtrace::compare::TolOverride::new(name, F32_ERROR_FACTOR * e, cur.rtol).unwrap(),
            );
            lifted.push(format!("{name} {:.2e}", F32_ERROR_FACTOR * e));
        }
    }
    eprintln!("{clip}: atol raised to {F32_ERROR_FACTOR}x upstream's f32 error at {lifted:?}");
    tol
}
