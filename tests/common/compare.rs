//! Helpers for the `compare_*` integration tests: writers for safetensors (the
//! `safetensors` crate), `.npy` and `.npz` (the `npyz` crate).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use npyz::WriterBuilder;
use safetensors::Dtype;

/// One tensor to write: name, dtype, shape, raw little-endian bytes.
pub struct St {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

pub fn st(name: &str, dtype: Dtype, shape: &[usize], bytes: Vec<u8>) -> St {
    St {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        bytes,
    }
}

pub fn st_f32(name: &str, shape: &[usize], v: &[f32]) -> St {
    st(name, Dtype::F32, shape, f32_bytes(v))
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
pub fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}
pub fn f16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
        .collect()
}
pub fn bf16_bytes(v: &[f32]) -> Vec<u8> {
    v.iter()
        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
        .collect()
}
pub fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Write a safetensors file with optional `__metadata__`.
pub fn write_safetensors(path: &Path, tensors: &[St], meta: Option<&[(&str, &str)]>) {
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|t| {
            (
                t.name.clone(),
                safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.bytes).unwrap(),
            )
        })
        .collect();
    let meta: Option<HashMap<String, String>> = meta.map(|m| {
        m.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    });
    safetensors::serialize_to_file(views, meta, path).unwrap();
}

/// JSON array of names, as stored in `voxtrace.order`.
pub fn order_json(names: &[&str]) -> String {
    serde_json::to_string(names).unwrap()
}

/// Write a C-order `.npy` file of `f32` with npyz.
pub fn write_npy_f32(path: &Path, shape: &[u64], data: &[f32]) {
    write_npy(path, shape, data)
}

/// Write a C-order `.npy` file of `f64` with npyz.
pub fn write_npy_f64(path: &Path, shape: &[u64], data: &[f64]) {
    write_npy(path, shape, data)
}

/// Write a C-order `.npy` file of `T` (its default numpy dtype) with npyz.
fn write_npy<T: npyz::AutoSerialize + Copy>(path: &Path, shape: &[u64], data: &[T]) {
    if let Some(p) = path.parent() {
        std::fs::create_dir_all(p).unwrap();
    }
    let f = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::new()
        .default_dtype()
        .shape(shape)
        .writer(std::io::BufWriter::new(f))
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// An array for [`write_npz`].
pub enum Arr<'a> {
    F32(&'a [u64], &'a [f32]),
    F64(&'a [u64], &'a [f64]),
    I64(&'a [u64], &'a [i64]),
    U8(&'a [u64], &'a [u8]),
}

/// Write an `.npz` with npyz, members stored (`compressed = false`) or deflated.
pub fn write_npz(path: &Path, arrays: &[(&str, Arr<'_>)], compressed: bool) {
    use npyz::zip::{CompressionMethod, write::FileOptions};
    let mut npz = npyz::npz::NpzWriter::create(path).unwrap();
    let opts = FileOptions::default().compression_method(if compressed {
        CompressionMethod::Deflated
    } else {
        CompressionMethod::Stored
    });
    for (name, arr) in arrays {
        match arr {
            Arr::F32(shape, d) => npz_member(&mut npz, name, opts, shape, d),
            Arr::F64(shape, d) => npz_member(&mut npz, name, opts, shape, d),
            Arr::I64(shape, d) => npz_member(&mut npz, name, opts, shape, d),
            Arr::U8(shape, d) => npz_member(&mut npz, name, opts, shape, d),
        }
    }
    npz.zip_writer().finish().unwrap();
}

/// One `.npz` member `name` of `T` (its default numpy dtype), C order.
fn npz_member<T: npyz::AutoSerialize + Copy, W: std::io::Write + std::io::Seek>(
    npz: &mut npyz::npz::NpzWriter<W>,
    name: &str,
    opts: npyz::zip::write::FileOptions,
    shape: &[u64],
    data: &[T],
) {
    let mut w = npz
        .array::<T>(name, opts)
        .unwrap()
        .default_dtype()
        .shape(shape)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// `fixtures/compare/<rel>` in the crate.
pub fn fixture(rel: &str) -> PathBuf {
    super::fixtures().join("compare").join(rel)
}
