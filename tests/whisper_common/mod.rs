//! Helpers for the Whisper integration tests: weights folder, dumps with their gather
//! metadata, tensor gathering and comparison.
#![allow(dead_code)]

use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};
use std::collections::BTreeMap;
use std::path::PathBuf;
use voxtrace::models::whisper::Whisper;

/// Weights folder: `VOXTRACE_WHISPER_DIR` or `<crate>/models-cache/whisper-tiny.en`.
pub fn model_dir() -> PathBuf {
    std::env::var_os("VOXTRACE_WHISPER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/models-cache/whisper-tiny.en"
            ))
        })
}

/// Fails (never skips) when the weights are missing.
pub fn require_weights() -> PathBuf {
    let dir = model_dir();
    for f in ["model.bin", "config.json", "tokenizer.json"] {
        assert!(
            dir.join(f).is_file(),
            "Whisper tiny.en weights missing: {} does not exist. Run `reference/fetch_whisper_tiny_en.sh` \
             (or `just models`), or set VOXTRACE_WHISPER_DIR to a folder holding model.bin, config.json, tokenizer.json.",
            dir.join(f).display()
        );
    }
    dir
}

pub fn device() -> Device {
    Device::flex()
}

pub fn load_model() -> Whisper {
    let dir = require_weights();
    Whisper::load(&dir, &device()).unwrap_or_else(|e| panic!("{e}"))
}

pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/whisper_tiny_en"
    ))
    .join(rel)
}

/// The shared speech clips: `$VOXTRACE_AUDIO_DIR` if set, else `<crate>/../shared/audio`.
pub fn audio_dir() -> PathBuf {
    std::env::var_os("VOXTRACE_AUDIO_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/audio")))
}

/// A tensor of a dump.
#[derive(Debug, Clone)]
pub struct T {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

/// One gather of the dump metadata: along `axis` keep `indices`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Gather {
    pub axis: usize,
    pub indices: Vec<usize>,
}

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sliced {
    pub full_shape: Vec<usize>,
    pub gathers: Vec<Gather>,
}

pub struct Dump {
    pub tensors: BTreeMap<String, T>,
    pub order: Vec<String>,
    pub sliced: BTreeMap<String, Sliced>,
}

impl Dump {
    pub fn get(&self, name: &str) -> &T {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("dump has no tensor {name}"))
    }

    pub fn float(&self, name: &str, device: &Device) -> Tensor<3> {
        let t = self.get(name);
        assert_eq!(t.shape.len(), 3, "{name}: rank");
        Tensor::from_data(
            TensorData::new(t.f32.clone(), [t.shape[0], t.shape[1], t.shape[2]]),
            device,
        )
    }

    pub fn ids(&self, name: &str, device: &Device) -> Tensor<2, Int> {
        let t = self.get(name);
        Tensor::from_data(
            TensorData::new(t.i64.clone(), [t.shape[0], t.shape[1]]),
            device,
        )
    }

    /// Gather `data` (full shape) the way the dump gathered `name`; unchanged if not sliced.
    pub fn gather_like(&self, name: &str, shape: &[usize], data: &[f32]) -> (Vec<usize>, Vec<f32>) {
        let mut shape = shape.to_vec();
        let mut data = data.to_vec();
        if let Some(s) = self.sliced.get(name) {
            assert_eq!(s.full_shape, shape, "{name}: full shape");
            for g in &s.gathers {
                (shape, data) = gather(&shape, &data, g.axis, &g.indices);
            }
        }
        (shape, data)
    }
}

pub fn dump(clip: &str) -> Dump {
    let path = fixture(&format!("dumps/{clip}.safetensors"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let md = meta.metadata().clone().unwrap_or_default();
    let order: Vec<String> = serde_json::from_str(&md["voxtrace.order"]).unwrap();
    let sliced: BTreeMap<String, Sliced> = serde_json::from_str(&md["voxtrace.sliced"]).unwrap();
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
            T {
                shape: view.shape().to_vec(),
                f32: f,
                i64: i,
            },
        );
    }
    Dump {
        tensors,
        order,
        sliced,
    }
}

/// Keep `indices` along `axis` of a row-major tensor.
pub fn gather(
    shape: &[usize],
    data: &[f32],
    axis: usize,
    indices: &[usize],
) -> (Vec<usize>, Vec<f32>) {
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let n = shape[axis];
    let mut out = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            let start = (o * n + i) * inner;
            out.extend_from_slice(&data[start..start + inner]);
        }
    }
    let mut s = shape.to_vec();
    s[axis] = indices.len();
    (s, out)
}

pub fn to_vec<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    (
        shape,
        t.into_data().convert::<f32>().try_into_vec().unwrap(),
    )
}

/// Max |a - r| and whether |a - r| <= atol + rtol |r| everywhere (NaN fails).
pub fn allclose(actual: &[f32], reference: &[f32], atol: f32, rtol: f32) -> (bool, f32) {
    assert_eq!(actual.len(), reference.len());
    let mut ok = true;
    let mut max = 0f32;
    for (&a, &r) in actual.iter().zip(reference) {
        let d = (a - r).abs();
        if d.is_nan() || d > atol + rtol * r.abs() {
            ok = false;
        }
        if d.is_nan() {
            max = f32::INFINITY;
        } else if d > max {
            max = d;
        }
    }
    (ok, max)
}

/// Clips with dumps.
pub const DUMP_CLIPS: [&str; 2] = ["goforward", "1272-128104-0000"];
