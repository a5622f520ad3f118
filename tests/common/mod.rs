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
