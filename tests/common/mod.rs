//! Helpers shared by the integration tests, each written once: crate paths, the compute
//! device, running the `voxtrace` binary, reading safetensors fixtures and upstream dumps,
//! and comparing tensors. Helpers of one topic live in the submodules [`audio`], [`eval_corpus`],
//! [`compare`], [`export`], [`voxtral`] and [`whisper`].
//!
//! Every test binary declares `mod common;` and uses its own subset, so `dead_code` is
//! allowed for the whole module tree.
#![allow(dead_code)]

pub mod audio;
pub mod compare;
pub mod eval_corpus;
pub mod export;
pub mod voxtral;
pub mod whisper;

use burn::tensor::{Device, Int, Tensor, TensorData};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Cases per property test: `PROPTEST_CASES` when set (`just fuzz` raises it), else
/// `default`.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Crate root (`CARGO_MANIFEST_DIR`).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `fixtures/` of this crate.
pub fn fixtures() -> PathBuf {
    root().join("fixtures")
}

/// `fixtures/voxtral_tiny/<rel>`.
pub fn voxtral_fixture(rel: &str) -> PathBuf {
    root().join("fixtures/voxtral_tiny").join(rel)
}

/// The shared speech clips: `$VOXTRACE_AUDIO_DIR` if set, else `<crate>/../shared/audio`.
pub fn shared_audio() -> PathBuf {
    match std::env::var_os("VOXTRACE_AUDIO_DIR") {
        Some(d) => PathBuf::from(d),
        None => root().join("../shared/audio"),
    }
}

/// The device the tests run on: Flex, Burn's default CPU backend
/// (`voxtrace::backend::device("flex")`).
pub fn device() -> Device {
    device_named("flex")
}

/// The device `name` (`flex`, `ndarray`, `wgpu`) from `voxtrace::backend::device`; panics
/// when this build lacks it.
pub fn device_named(name: &str) -> Device {
    voxtrace::backend::device(name).unwrap_or_else(|e| panic!("{e}"))
}

/// Run the `voxtrace` binary with `args` and return its output, whatever its exit status.
pub fn voxtrace(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_voxtrace"))
        .args(args)
        .output()
        .expect("run voxtrace")
}

/// Run the `voxtrace` binary; panics with its stderr on failure, else returns its stderr.
pub fn voxtrace_ok(args: &[&str]) -> String {
    let o = voxtrace(args);
    assert!(
        o.status.success(),
        "voxtrace {args:?} failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `&Path` as `&str` (panics on a non-UTF-8 path).
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A safetensors file read once and decoded tensor by tensor on request: each accessor
/// checks the dtype and panics naming the file and the tensor.
pub struct Fixture {
    pub path: PathBuf,
    bytes: Vec<u8>,
}

impl Fixture {
    pub fn open(path: PathBuf) -> Self {
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("cannot read fixture {}: {e}", path.display()));
        Self { path, bytes }
    }

    /// The whole file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The file parsed as safetensors.
    pub fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", self.path.display()))
    }

    /// The `__metadata__` map (empty when absent).
    pub fn metadata(&self) -> HashMap<String, String> {
        let (_, meta) = SafeTensors::read_metadata(&self.bytes).expect("metadata");
        meta.metadata().clone().unwrap_or_default()
    }

    /// Names of the stored tensors, in the order `safetensors` lists them.
    pub fn names(&self) -> Vec<String> {
        self.st().names().into_iter().map(str::to_string).collect()
    }

    /// Shape and values of the `F32` tensor `name`.
    pub fn f32(&self, name: &str) -> (Vec<usize>, Vec<f32>) {
        self.decode(name, Dtype::F32, f32::from_le_bytes)
    }

    /// Shape and values of the `F64` tensor `name`.
    pub fn f64(&self, name: &str) -> (Vec<usize>, Vec<f64>) {
        self.decode(name, Dtype::F64, f64::from_le_bytes)
    }

    /// Shape and values of the `I16` tensor `name`.
    pub fn i16(&self, name: &str) -> (Vec<usize>, Vec<i16>) {
        self.decode(name, Dtype::I16, i16::from_le_bytes)
    }

    /// Shape and values of the `I64` tensor `name`.
    pub fn i64(&self, name: &str) -> (Vec<usize>, Vec<i64>) {
        self.decode(name, Dtype::I64, i64::from_le_bytes)
    }

    /// Shape and values of `name`, checked to be `dtype`, each value read from `N`
    /// little-endian bytes by `from_le`.
    fn decode<T, const N: usize>(
        &self,
        name: &str,
        dtype: Dtype,
        from_le: fn([u8; N]) -> T,
    ) -> (Vec<usize>, Vec<T>) {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("{}: {name}: {e}", self.path.display()));
        assert_eq!(t.dtype(), dtype, "{}: {name} dtype", self.path.display());
        let data = t
            .data()
            .chunks_exact(N)
            .map(|b| from_le(b.try_into().unwrap()))
            .collect();
        (t.shape().to_vec(), data)
    }
}

/// One stored tensor, owned: name, dtype, shape, raw little-endian bytes.
pub type OwnedTensor = (String, Dtype, Vec<usize>, Vec<u8>);

/// Every tensor of a safetensors file, in the order `safetensors` lists them.
pub fn read_tensors(path: &Path) -> Vec<OwnedTensor> {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
        .collect()
}

/// Write `tensors` as a safetensors file without metadata.
pub fn write_tensors(path: &Path, tensors: &[OwnedTensor]) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// A tensor read from a dump: shape and values (floats as f32, ints as i64 and as f32).
#[derive(Debug, Clone)]
pub struct DumpTensor {
    pub shape: Vec<usize>,
    pub f32: Vec<f32>,
    pub i64: Vec<i64>,
}

/// One gather of a dump's `voxtrace.sliced` metadata: along `axis` keep `indices`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Gather {
    pub axis: usize,
    pub indices: Vec<usize>,
}

/// How a dump stored a tensor gathered: its full shape and the gathers applied in turn.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Sliced {
    pub full_shape: Vec<usize>,
    pub gathers: Vec<Gather>,
}

/// A whole dump: tensors by name, the execution order from `voxtrace.order`, and the
/// gathered tensors from `voxtrace.sliced`.
pub struct Dump {
    pub tensors: BTreeMap<String, DumpTensor>,
    pub order: Vec<String>,
    pub sliced: BTreeMap<String, Sliced>,
}

impl Dump {
    pub fn get(&self, name: &str) -> &DumpTensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("dump has no tensor {name}"))
    }

    /// Rank-3 float tensor `name` on `device`.
    pub fn float(&self, name: &str, device: &Device) -> Tensor<3> {
        let t = self.get(name);
        assert_eq!(t.shape.len(), 3, "{name}: rank");
        Tensor::from_data(
            TensorData::new(t.f32.clone(), [t.shape[0], t.shape[1], t.shape[2]]),
            device,
        )
    }

    /// Rank-2 integer tensor `name` on `device`.
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

/// Read a dump; `voxtrace.order` and `voxtrace.sliced` are empty when absent.
pub fn read_dump(path: &Path) -> Dump {
    read_dump_impl(path, false)
}

/// Read a dump that must carry `voxtrace.order` and `voxtrace.sliced` (panics otherwise).
pub fn read_sliced_dump(path: &Path) -> Dump {
    read_dump_impl(path, true)
}

fn read_dump_impl(path: &Path, require_meta: bool) -> Dump {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(&bytes).unwrap();
    let md = meta.metadata().clone().unwrap_or_default();
    let key = |k: &str| {
        let v = md.get(k);
        assert!(
            v.is_some() || !require_meta,
            "{}: no {k} metadata",
            path.display()
        );
        v
    };
    let order: Vec<String> = key("voxtrace.order")
        .map(|s| serde_json::from_str(s).unwrap())
        .unwrap_or_default();
    let sliced: BTreeMap<String, Sliced> = key("voxtrace.sliced")
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

/// Shape and f32 values of a float tensor.
pub fn to_vec<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Vec<f32>) {
    let shape = t.dims().to_vec();
    (
        shape,
        t.into_data().convert::<f32>().try_into_vec().unwrap(),
    )
}

/// Largest |a - r| and whether every element satisfies |a - r| <= atol + rtol * |r|
/// (NVIDIA Polygraphy semantics); NaN anywhere fails (and makes the largest |a - r| infinite).
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
