//! GGUF and its block formats against PyPI `gguf` 0.19.0 (fixtures/quant/, made by
//! reference/gguf_cases.py, checked by reference/gguf_check.py):
//! - `quant::blocks::quantize` gives the package's Q8_0, Q4_0, F16 and BF16 bytes, byte for
//!   byte, on every fixture case (ties, signed zeros, f16 overflow and subnormals, NaN
//!   payloads); `dequantize` gives the package's values; rows that are not whole blocks are
//!   refused as the package refuses them; the packed matrix product reads our bytes as we do;
//! - `quant::gguf` reads the package-written files as the package's own reader does (all
//!   metadata, tensor names, types, dimensions, offsets, bytes), and writing what it read gives
//!   the package's file back byte for byte; a file our writer makes is read by the package's
//!   reader (`$VOXTRACE_PYTHON reference/gguf_read.py`, so this test needs `VOXTRACE_PYTHON`
//!   with `gguf` installed, as `just setup` does, and fails without it);
//! - hostile files: every truncation, unknown types, lying offsets and shapes, overlapping
//!   tensors, absurd counts, lengths, dimensions and nesting give an error naming the file and
//!   the key or tensor, never a panic; random corruption never panics;
//! - property tests: write-then-read round trips of metadata and tensors; F16 / BF16 bytes
//!   survive dequantize-then-quantize (BF16 signalling NaNs come back quiet); Q8_0 / Q4_0 are idempotent on moderate values.

use proptest::prelude::*;
use safetensors::SafeTensors;
use serde_json::{Value as Json, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use voxtrace::nn::qmatmul::{PackedMatrix, QuantKind};
use voxtrace::quant::GgmlType;
use voxtrace::quant::blocks::{QuantizeError, dequantize, quantize};
use voxtrace::quant::gguf::{
    Gguf, GgufErrorKind, GgufWriter, MetaValue, TensorSpec, Value, ValueType, map_file, write_gguf,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/quant")
}

fn ty_of(name: &str) -> GgmlType {
    GgmlType::from_name(name).unwrap_or_else(|| panic!("unknown type {name}"))
}

fn cases() -> Json {
    let text = std::fs::read_to_string(fixtures().join("cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// The tensor `name` of blocks.safetensors as raw bytes, with its shape.
fn raw<'a>(st: &'a SafeTensors<'a>, name: &str) -> (Vec<usize>, &'a [u8]) {
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("fixture tensor {name}: {e}"));
    (t.shape().to_vec(), t.data())
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// `ours` equals the package's dequantized values: bit for bit, except that a NaN made by
/// arithmetic (Q8_0 / Q4_0: an infinite scale times 0) only has to be a NaN, its payload being
/// the CPU's choice.
fn assert_dequantized(ours: &[f32], theirs: &[f32], ty: GgmlType, label: &str) {
    assert_eq!(ours.len(), theirs.len(), "{label}: length");
    let arithmetic = matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0);
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        let same = a.to_bits() == b.to_bits() || (arithmetic && a.is_nan() && b.is_nan());
        assert!(
            same,
            "{label}: element {i}: ours {a:e} ({:#010x}), gguf {b:e} ({:#010x})",
            a.to_bits(),
            b.to_bits()
        );
    }
}

#[test]
fn quantizers_give_the_package_bytes() {
    let bytes = std::fs::read(fixtures().join("blocks.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cases = cases();
    let mut checked = 0;
    for case in cases["quantize"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let (shape, input) = raw(&st, &format!("quantize/{name}/input"));
        let input = f32s(input);
        let row_len = *shape.last().unwrap();
        for t in case["types"].as_array().unwrap() {
            let t = t.as_str().unwrap();
            let ty = ty_of(t);
            let label = format!("{name} as {t}");
            let ours = quantize(&input, row_len, ty).unwrap_or_else(|e| panic!("{label}: {e}"));
            let (_, theirs) = raw(&st, &format!("quantize/{name}/{t}"));
            assert_eq!(ours.len(), theirs.len(), "{label}: byte count");
            let block = ty.type_size() as usize;
            for (b, (x, y)) in ours.chunks(block).zip(theirs.chunks(block)).enumerate() {
                assert_eq!(x, y, "{label}: block {b} differs");
            }
            let (_, deq) = raw(&st, &format!("quantize/{name}/{t}.dequantized"));
            let ours_deq = dequantize(&ours, ty).unwrap();
            assert_dequantized(&ours_deq, &f32s(deq), ty, &label);
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} case/type pairs");
}

#[test]
fn dequantize_gives_the_package_values() {
    let bytes = std::fs::read(fixtures().join("blocks.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let cases = cases();
    let list = cases["dequantize"].as_array().unwrap();
    assert_eq!(list.len(), 5);
    for case in list {
        let (name, t) = (
            case["name"].as_str().unwrap(),
            case["type"].as_str().unwrap(),
        );
        let ty = ty_of(t);
        let (_, input) = raw(&st, &format!("dequantize/{name}/{t}"));
        let (_, theirs) = raw(&st, &format!("dequantize/{name}/{t}.dequantized"));
        let ours = dequantize(input, ty).unwrap();
        assert_dequantized(&ours, &f32s(theirs), ty, name);
    }
}

#[test]
fn rows_the_package_refuses_are_refused() {
    let cases = cases();
    let refused = cases["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 2);
    for r in refused {
        let ty = ty_of(r["type"].as_str().unwrap());
        let shape: Vec<usize> = r["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        let x = vec![1.0f32; shape.iter().product()];
        let e = quantize(&x, shape[1], ty).unwrap_err();
        assert!(
            matches!(e, QuantizeError::RowLength { row_len: 48, .. }),
            "{ty}: {e}"
        );
    }
}

/// The packed matrix product (`nn::qmatmul`) reads the bytes `quant::blocks` writes as the
/// same values.
#[test]
fn packed_matmul_reads_our_blocks_as_we_do() {
    let (rows, cols) = (3, 96);
    let x: Vec<f32> = (0..rows * cols)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013)
        .collect();
    for (ty, kind) in [
        (GgmlType::Q8_0, QuantKind::Q8_0),
        (GgmlType::Q4_0, QuantKind::Q4_0),
    ] {
        let q = quantize(&x, cols, ty).unwrap();
        let ours = dequantize(&q, ty).unwrap();
        let packed = PackedMatrix::new(kind, rows, cols, q.as_slice()).unwrap();
        assert_eq!(packed.dequantize(), ours, "{ty}");
    }
}

/// Type names as `gguf.GGUFValueType` spells them.
fn value_type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::U8 => "UINT8",
        ValueType::I8 => "INT8",
        ValueType::U16 => "UINT16",
        ValueType::I16 => "INT16",
        ValueType::U32 => "UINT32",
        ValueType::I32 => "INT32",
        ValueType::F32 => "FLOAT32",
        ValueType::Bool => "BOOL",
        ValueType::String => "STRING",
        ValueType::Array => "ARRAY",
        ValueType::U64 => "UINT64",
        ValueType::I64 => "INT64",
        ValueType::F64 => "FLOAT64",
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The reader's type list: an array's own type, then its first element's, recursively.
fn types(v: &MetaValue<'_>, out: &mut Vec<Json>) {
    out.push(json!(value_type_name(v.value_type())));
    if let MetaValue::Array(a) = v
        && let Some(first) = a.iter().next()
    {
        types(&first, out);
    }
}

/// The leaves, flattened, formatted as reference/gguf_read.py formats them.
fn leaves(v: &MetaValue<'_>, out: &mut Vec<Json>) {
    let s = match *v {
        MetaValue::U8(x) => x.to_string(),
        MetaValue::I8(x) => x.to_string(),
        MetaValue::U16(x) => x.to_string(),
        MetaValue::I16(x) => x.to_string(),
        MetaValue::U32(x) => x.to_string(),
        MetaValue::I32(x) => x.to_string(),
        MetaValue::U64(x) => x.to_string(),
        MetaValue::I64(x) => x.to_string(),
        MetaValue::F32(x) => format!("{:08x}", x.to_bits()),
        MetaValue::F64(x) => format!("{:016x}", x.to_bits()),
        MetaValue::Bool(x) => x.to_string(),
        MetaValue::String(b) => hex(b),
        MetaValue::Array(a) => {
            for item in a.iter() {
                leaves(&item, out);
            }
            return;
        }
    };
    out.push(json!(s));
}

/// A parsed file in reference/gguf_read.py's description format.
fn describe(g: &Gguf<'_>) -> Json {
    let metadata: Vec<Json> = g
        .metadata()
        .iter()
        .map(|(k, v)| {
            let (mut t, mut l) = (Vec::new(), Vec::new());
            types(v, &mut t);
            leaves(v, &mut l);
            json!({"key": k, "types": t, "values": l})
        })
        .collect();
    let tensors: Vec<Json> = g
        .tensors()
        .iter()
        .map(|t| {
            let mut e = json!({
                "name": t.name,
                "type": t.ty.name(),
                "dims": t.dims,
                "start": t.range.start,
                "n_bytes": t.data.len(),
                "data": hex(t.data),
            });
            if let Ok(deq) = dequantize(t.data, t.ty) {
                let bits: Vec<u32> = deq.iter().map(|v| v.to_bits()).collect();
                e["dequantized"] = json!(bits);
            }
            e
        })
        .collect();
    json!({
        "version": g.version(),
        "alignment": g.alignment(),
        "data_offset": g.data_offset(),
        "metadata": metadata,
        "tensors": tensors,
    })
}

fn assert_same_description(ours: &Json, theirs: &Json, label: &str) {
    for key in ["version", "alignment", "data_offset"] {
        assert_eq!(ours[key], theirs[key], "{label}: {key}");
    }
    let (om, tm) = (
        ours["metadata"].as_array().unwrap(),
        theirs["metadata"].as_array().unwrap(),
    );
    assert_eq!(om.len(), tm.len(), "{label}: metadata count");
    for (a, b) in om.iter().zip(tm) {
        assert_eq!(a, b, "{label}: metadata entry");
    }
    let (ot, tt) = (
        ours["tensors"].as_array().unwrap(),
        theirs["tensors"].as_array().unwrap(),
    );
    assert_eq!(ot.len(), tt.len(), "{label}: tensor count");
    for (a, b) in ot.iter().zip(tt) {
        assert_eq!(a, b, "{label}: tensor {}", b["name"]);
    }
}

#[test]
fn reads_the_package_files_as_the_package_does() {
    for name in ["small", "small_align64"] {
        let path = fixtures().join(format!("{name}.gguf"));
        let map = map_file(&path).unwrap();
        let g = Gguf::parse(&map, &path).unwrap();
        let theirs: Json = serde_json::from_str(
            &std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_same_description(&describe(&g), &theirs, name);
    }
    // Spot checks, in our own terms.
    let path = fixtures().join("small.gguf");
    let bytes = std::fs::read(&path).unwrap();
    let g = Gguf::parse(&bytes, &path).unwrap();
    assert_eq!(
        g.get("general.architecture").unwrap().as_str(),
        Some("voxtrace-test")
    );
    assert_eq!(
        g.get("test.string").unwrap().as_str(),
        Some("grüße, voxtrace ✓")
    );
    assert_eq!(g.get("test.u64").unwrap().as_u64(), Some((1 << 63) + 5));
    let nested = g.get("test.nested").unwrap().as_array().unwrap();
    assert_eq!(nested.elem_type(), ValueType::Array);
    assert_eq!(nested.len(), 2);
    let q = g.tensor("q8_0.matrix").unwrap();
    assert_eq!(
        (q.ty, q.dims.as_slice(), q.shape()),
        (GgmlType::Q8_0, &[64u64, 2][..], vec![2, 64])
    );
    assert_eq!(q.data.len(), 2 * 2 * 34);
    let t4 = g.tensor("f32.4d").unwrap();
    assert_eq!(t4.shape(), vec![1, 2, 3, 4]);
    assert_eq!(t4.n_elements(), 24);
}

/// Owned metadata entries, as the writer takes them.
type Metadata = Vec<(String, Value)>;
/// Owned tensors: spec and bytes.
type Tensors = Vec<(TensorSpec, Vec<u8>)>;

/// Metadata and tensors of a parsed file, owned, for the writer.
fn owned(g: &Gguf<'_>) -> (Metadata, Tensors) {
    let metadata = g
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_value()))
        .collect();
    let tensors = g
        .tensors()
        .iter()
        .map(|t| {
            (
                TensorSpec {
                    name: t.name.to_string(),
                    ty: t.ty,
                    dims: t.dims.clone(),
                },
                t.data.to_vec(),
            )
        })
        .collect();
    (metadata, tensors)
}

fn write(path: &Path, metadata: &[(String, Value)], tensors: &[(TensorSpec, Vec<u8>)]) {
    let refs: Vec<(TensorSpec, &[u8])> = tensors
        .iter()
        .map(|(s, b)| (s.clone(), b.as_slice()))
        .collect();
    write_gguf(path, metadata, &refs).unwrap();
}

#[test]
fn writing_what_we_read_gives_the_package_file_back() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["small", "small_align64"] {
        let path = fixtures().join(format!("{name}.gguf"));
        let bytes = std::fs::read(&path).unwrap();
        let g = Gguf::parse(&bytes, &path).unwrap();
        let (metadata, tensors) = owned(&g);
        let out = dir.path().join(format!("{name}.gguf"));
        write(&out, &metadata, &tensors);
        let ours = std::fs::read(&out).unwrap();
        assert_eq!(ours.len(), bytes.len(), "{name}: length");
        if let Some(i) = ours.iter().zip(&bytes).position(|(a, b)| a != b) {
            panic!("{name}: first difference at byte {i}");
        }
    }
}

/// `VOXTRACE_PYTHON`, a Python with `gguf` (`just setup`); the test fails when it is unset.
fn python() -> PathBuf {
    let p = std::env::var_os("VOXTRACE_PYTHON")
        .map(PathBuf::from)
        .expect(
            "VOXTRACE_PYTHON is not set: it must point at a Python with gguf==0.19.0 \
             (`just setup`, then `just test` sets it)",
        );
    assert!(p.exists(), "VOXTRACE_PYTHON={} does not exist", p.display());
    p
}

/// Metadata of every value type, nested and empty arrays, non-UTF-8 string bytes included.
fn all_kinds_metadata() -> Vec<(String, Value)> {
    let kv = |k: &str, v: Value| (k.to_string(), v);
    vec![
        kv("general.architecture", Value::string("voxtrace-test")),
        kv("general.alignment", Value::U32(16)),
        kv("t.u8", Value::U8(255)),
        kv("t.i8", Value::I8(-128)),
        kv("t.u16", Value::U16(65535)),
        kv("t.i16", Value::I16(-32768)),
        kv("t.u32", Value::U32(u32::MAX)),
        kv("t.i32", Value::I32(i32::MIN)),
        kv("t.f32", Value::F32(-0.0)),
        kv("t.u64", Value::U64(u64::MAX)),
        kv("t.i64", Value::I64(i64::MIN)),
        kv("t.f64", Value::F64(f64::MIN_POSITIVE)),
        kv("t.bool", Value::Bool(true)),
        kv("t.string", Value::string("Ünïcödé ✓")),
        kv("t.raw_bytes", Value::String(vec![0xff, 0x00, 0xc3])),
        kv("t.empty_string", Value::string("")),
        kv("t.strings", Value::strings(&["a", "", "ß"])),
        kv(
            "t.f32s",
            Value::Array {
                elem: ValueType::F32,
                items: vec![Value::F32(1.5), Value::F32(f32::INFINITY)],
            },
        ),
        kv(
            "t.i64s",
            Value::Array {
                elem: ValueType::I64,
                items: vec![Value::I64(-1), Value::I64(1 << 40)],
            },
        ),
        kv(
            "t.bools",
            Value::Array {
                elem: ValueType::Bool,
                items: vec![Value::Bool(false), Value::Bool(true)],
            },
        ),
        kv(
            "t.empty",
            Value::Array {
                elem: ValueType::U32,
                items: vec![],
            },
        ),
        kv(
            "t.nested",
            Value::Array {
                elem: ValueType::Array,
                items: vec![
                    Value::Array {
                        elem: ValueType::U16,
                        items: vec![Value::U16(1), Value::U16(2)],
                    },
                    Value::Array {
                        elem: ValueType::U16,
                        items: vec![Value::U16(3)],
                    },
                ],
            },
        ),
    ]
}

/// Deterministic values with a spread of magnitudes.
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
    (0..n)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let u = (s as f32 / u32::MAX as f32) * 2.0 - 1.0;
            u * 10f32.powi((i / 32 % 7) as i32 - 3)
        })
        .collect()
}

fn our_tensors() -> Vec<(TensorSpec, Vec<u8>)> {
    let mut out = Vec::new();
    for (i, (name, ty, shape)) in [
        ("w.q8_0", GgmlType::Q8_0, vec![4usize, 64]),
        ("w.q4_0", GgmlType::Q4_0, vec![2, 3, 32]),
        ("w.f16", GgmlType::F16, vec![7]),
        ("w.bf16", GgmlType::BF16, vec![3, 5]),
        ("w.f32", GgmlType::F32, vec![1, 2, 2, 3]),
    ]
    .into_iter()
    .enumerate()
    {
        let n = shape.iter().product();
        let x = values(n, i as u32);
        let bytes = quantize(&x, *shape.last().unwrap(), ty).unwrap();
        out.push((TensorSpec::from_shape(name, ty, &shape), bytes));
    }
    out
}

#[test]
fn the_package_reads_our_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ours.gguf");
    let metadata = all_kinds_metadata();
    let tensors = our_tensors();
    write(&path, &metadata, &tensors);
    let out = Command::new(python())
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/gguf_read.py"))
        .arg(&path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "gguf_read.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: Json = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let g = Gguf::parse(&bytes, &path).unwrap();
    assert_same_description(&describe(&g), &theirs, "ours.gguf");
    assert_eq!(theirs["alignment"], json!(16));
    // And what we read back is what we wrote.
    let (m, t) = owned(&g);
    assert_eq!(m, metadata);
    assert_eq!(t, tensors);
}

#[test]
fn the_writer_follows_symlinks_and_refuses_bad_specs() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("target.gguf");
    let link = dir.path().join("link.gguf");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let tensors = our_tensors();
    write(&link, &all_kinds_metadata(), &tensors);
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let bytes = std::fs::read(&target).unwrap();
    Gguf::parse(&bytes, &target).unwrap();

    let out = dir.path().join("bad.gguf");
    let spec = |name: &str, ty, dims: Vec<u64>| TensorSpec {
        name: name.into(),
        ty,
        dims,
    };
    let md = vec![("a".to_string(), Value::U8(1))];
    let err = |m: &[(String, Value)], t: &[TensorSpec]| {
        GgufWriter::create(&out, m, t).unwrap_err().to_string()
    };
    let e = err(&md, &[spec("x", GgmlType::Q8_0, vec![48])]);
    assert!(
        e.contains("bad.gguf") && e.contains("\"x\"") && e.contains("block"),
        "{e}"
    );
    let e = err(&md, &[spec("x", GgmlType::F32, vec![1, 1, 1, 1, 1])]);
    assert!(e.contains("5 dimensions"), "{e}");
    let e = err(
        &md,
        &[
            spec("x", GgmlType::F32, vec![1]),
            spec("x", GgmlType::F32, vec![1]),
        ],
    );
    assert!(e.contains("twice"), "{e}");
    let e = err(&[md[0].clone(), md[0].clone()], &[]);
    assert!(e.contains("twice"), "{e}");
    let e = err(&[("general.alignment".into(), Value::U32(24))], &[]);
    assert!(e.contains("power of two"), "{e}");
    let mixed = Value::Array {
        elem: ValueType::U8,
        items: vec![Value::U8(1), Value::I8(1)],
    };
    let e = err(&[("m".into(), mixed)], &[]);
    assert!(e.contains("\"m\"[1]"), "{e}");
    // Wrong byte counts and missing tensors; nothing reaches the path.
    let mut w = GgufWriter::create(&out, &md, &[spec("x", GgmlType::F32, vec![2])]).unwrap();
    let e = w.write_tensor(&[0u8; 4]).unwrap_err().to_string();
    assert!(e.contains("4 bytes given") && e.contains("8"), "{e}");
    let e = w.finish().unwrap_err().to_string();
    assert!(e.contains("0 of 1 tensors"), "{e}");
    assert!(!out.exists());
}

// ---- hostile files ----------------------------------------------------------------------

/// A GGUF file assembled field by field, to say exactly what is wrong in it.
#[derive(Default)]
struct Raw(Vec<u8>);

impl Raw {
    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        let mut r = Raw(b"GGUF".to_vec());
        r.u32(version).u64(n_tensors).u64(n_kv);
        r
    }
    fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend(v.to_le_bytes());
        self
    }
    fn str(&mut self, s: &[u8]) -> &mut Self {
        self.u64(s.len() as u64);
        self.0.extend(s);
        self
    }
    fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.str(key.as_bytes()).u32(ValueType::U32.id()).u32(v)
    }
    fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut Self {
        self.str(name.as_bytes()).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Zero padding to `align`, then `n` data bytes.
    fn data(&mut self, align: usize, n: usize) -> &mut Self {
        let len = self.0.len().next_multiple_of(align) + n;
        self.0.resize(len, 0x5a);
        self
    }
    fn bytes(&self) -> Vec<u8> {
        self.0.clone()
    }
}

fn parse_err(bytes: &[u8]) -> (GgufErrorKind, String) {
    let path = Path::new("hostile.gguf");
    let e = Gguf::parse(bytes, path).unwrap_err();
    let msg = e.to_string();
    assert!(msg.starts_with("hostile.gguf: "), "{msg}");
    (*e.kind, msg)
}

#[test]
fn a_well_formed_raw_file_parses() {
    // The builder itself makes valid files: the hostile cases below differ from this in one
    // field each.
    let mut r = Raw::header(3, 2, 1);
    r.kv_u32("k", 7)
        .tensor("a", &[8], GgmlType::F32.id(), 0)
        .tensor("b", &[32, 2], GgmlType::Q8_0.id(), 32)
        .data(32, 32 + 68);
    let b = r.bytes();
    let g = Gguf::parse(&b, Path::new("ok.gguf")).unwrap();
    assert_eq!(g.tensors().len(), 2);
    assert_eq!(g.tensor("b").unwrap().data.len(), 68);
}

#[test]
fn every_truncation_is_an_error_or_loses_only_trailing_padding() {
    for name in ["small", "small_align64"] {
        let path = fixtures().join(format!("{name}.gguf"));
        let bytes = std::fs::read(&path).unwrap();
        let full = Gguf::parse(&bytes, &path).unwrap();
        let data_end = full.tensors().iter().map(|t| t.range.end).max().unwrap();
        assert!(data_end < bytes.len(), "{name} ends with padding");
        for len in 0..bytes.len() {
            match Gguf::parse(&bytes[..len], &path) {
                Err(e) => {
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("{name}.gguf")), "{msg}");
                    if len >= full.data_offset() as usize {
                        assert!(
                            matches!(*e.kind, GgufErrorKind::OutOfFile { .. }),
                            "{name}[..{len}]: {msg}"
                        );
                    }
                }
                Ok(g) => {
                    assert!(len >= data_end, "{name}[..{len}] parsed");
                    assert_eq!(g.tensors(), full.tensors());
                }
            }
        }
    }
}

#[test]
fn hostile_headers_and_metadata_are_refused() {
    use GgufErrorKind as K;
    let (k, _) = parse_err(b"GGML\x03\0\0\0");
    assert!(matches!(k, K::Magic(_)));
    let (k, _) = parse_err(&Raw::header(1, 0, 0).bytes());
    assert_eq!(k, K::Version(1));
    let (k, m) = parse_err(&Raw::header(3u32.swap_bytes(), 0, 0).bytes());
    assert!(matches!(k, K::BigEndian(_)), "{m}");
    // Absurd counts: refused before anything is read or allocated for them.
    let (k, m) = parse_err(&Raw::header(3, 0, u64::MAX).bytes());
    assert!(
        matches!(
            k,
            K::Count {
                count: u64::MAX,
                ..
            }
        ),
        "{m}"
    );
    let (k, m) = parse_err(&Raw::header(3, u64::MAX / 2, 0).bytes());
    assert!(matches!(k, K::Count { .. }), "{m}");
    // A key longer than the file.
    let mut r = Raw::header(3, 0, 1);
    r.u64(u64::MAX - 3).u32(0).u32(0);
    let (k, m) = parse_err(&r.bytes());
    assert!(
        matches!(k, K::Truncated { .. }) && m.contains("metadata entry 0"),
        "{m}"
    );
    // A string value longer than the file.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"name").u32(ValueType::String.id()).u64(1 << 40);
    let (k, m) = parse_err(&r.bytes());
    assert!(
        matches!(k, K::Truncated { need, .. } if need == 1 << 40),
        "{m}"
    );
    assert!(m.contains("\"name\""), "{m}");
    // An unknown value type, and one inside an array.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"weird").u32(13).u32(0);
    let (k, m) = parse_err(&r.bytes());
    assert!(
        matches!(k, K::ValueType { ty: 13, .. }) && m.contains("\"weird\""),
        "{m}"
    );
    let mut r = Raw::header(3, 0, 1);
    r.str(b"arr").u32(ValueType::Array.id()).u32(99).u64(1);
    let (k, m) = parse_err(&r.bytes());
    assert!(
        matches!(k, K::ValueType { ty: 99, .. }) && m.contains("\"arr\""),
        "{m}"
    );
    // An array count beyond the bytes left.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"arr")
        .u32(ValueType::Array.id())
        .u32(ValueType::U64.id())
        .u64(u64::MAX / 4);
    let (k, m) = parse_err(&r.bytes());
    assert!(matches!(k, K::Count { .. }) && m.contains("\"arr\""), "{m}");
    // Arrays nested without end.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"deep").u32(ValueType::Array.id());
    for _ in 0..200 {
        r.u32(ValueType::Array.id()).u64(1);
    }
    let (k, m) = parse_err(&r.bytes());
    assert!(
        matches!(k, K::Nesting { .. }) && m.contains("\"deep\""),
        "{m}"
    );
    // A bool that is not 0 or 1; a key that is not UTF-8; a duplicate key.
    let mut r = Raw::header(3, 0, 1);
    r.str(b"b").u32(ValueType::Bool.id()).0.push(2);
    let (k, _) = parse_err(&r.bytes());
    assert!(matches!(k, K::Bool { byte: 2, .. }));
    let mut r = Raw::header(3, 0, 1);
    r.str(b"\xff\xfe").u32(ValueType::U8.id()).0.push(0);
    let (k, _) = parse_err(&r.bytes());
    assert!(matches!(k, K::Utf8 { .. }));
    let mut r = Raw::header(3, 0, 2);
    r.kv_u32("k", 1).kv_u32("k", 2);
    let (k, _) = parse_err(&r.bytes());
    assert_eq!(k, K::DuplicateKey("k".into()));
    // Alignment: not a power of two, zero, the wrong type.
    for a in [0, 24] {
        let mut r = Raw::header(3, 0, 1);
        r.kv_u32("general.alignment", a);
        let (k, _) = parse_err(&r.bytes());
        assert!(matches!(k, K::Alignment(_)), "{a}");
    }
    let mut r = Raw::header(3, 0, 1);
    r.str(b"general.alignment").u32(ValueType::U64.id()).u64(32);
    let (k, _) = parse_err(&r.bytes());
    assert!(matches!(k, K::Alignment(_)));
}

#[test]
fn hostile_tensor_infos_are_refused_naming_the_tensor() {
    use GgufErrorKind as K;
    let one = |name: &str, dims: &[u64], ty: u32, offset: u64, data: usize| {
        let mut r = Raw::header(3, 1, 0);
        r.tensor(name, dims, ty, offset).data(32, data);
        parse_err(&r.bytes())
    };
    // Unknown and retired ggml types.
    for ty in [4, 31, 99, u32::MAX] {
        let (k, m) = one("w", &[4], ty, 0, 16);
        assert_eq!(
            k,
            K::UnknownType {
                name: "w".into(),
                ty
            },
            "{m}"
        );
    }
    // Too many dimensions, dimensions of 2^63 and beyond, overflowing products.
    let (k, m) = one("w", &[1, 1, 1, 1, 1], 0, 0, 4);
    assert!(
        matches!(k, K::Shape { .. }) && m.contains("\"w\"") && m.contains("5 dimensions"),
        "{m}"
    );
    let (k, m) = one("w", &[1 << 63], 0, 0, 4);
    assert!(matches!(k, K::Shape { .. }), "{m}");
    let (k, m) = one("w", &[1 << 62, 1 << 62], 0, 0, 4);
    assert!(
        matches!(k, K::Shape { .. }) && m.contains("2^63 elements"),
        "{m}"
    );
    let (k, m) = one("w", &[1 << 61, 2], GgmlType::F64.id(), 0, 4);
    assert!(
        matches!(k, K::Shape { .. }) && m.contains("overflow"),
        "{m}"
    );
    // Rows that are not whole blocks.
    let (k, m) = one("q", &[48, 2], GgmlType::Q8_0.id(), 0, 200);
    assert!(
        matches!(k, K::Shape { .. }) && m.contains("block of 32"),
        "{m}"
    );
    // A shape that says more bytes than the file holds (a lying shape).
    let (k, m) = one("big", &[1 << 20, 1 << 20], GgmlType::F32.id(), 0, 64);
    assert!(
        matches!(k, K::OutOfFile { .. }) && m.contains("\"big\""),
        "{m}"
    );
    // Lying offsets: misaligned, beyond the end, wrapping around.
    let (k, m) = one("w", &[4], 0, 3, 64);
    assert_eq!(
        k,
        K::Misaligned {
            name: "w".into(),
            offset: 3,
            alignment: 32
        },
        "{m}"
    );
    let (k, m) = one("w", &[4], 0, 1 << 20, 64);
    assert!(matches!(k, K::OutOfFile { .. }), "{m}");
    let (k, m) = one("w", &[4], 0, u64::MAX - 31, 64);
    assert!(matches!(k, K::OutOfFile { .. }), "{m}");
    // Overlapping tensors, duplicate names.
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[16], 0, 0)
        .tensor("b", &[8], 0, 32)
        .data(32, 64);
    let (k, m) = parse_err(&r.bytes());
    assert!(
        matches!(k, K::Overlap { .. }) && m.contains("\"a\"") && m.contains("\"b\""),
        "{m}"
    );
    let mut r = Raw::header(3, 2, 0);
    r.tensor("a", &[8], 0, 0)
        .tensor("a", &[8], 0, 32)
        .data(32, 64);
    let (k, _) = parse_err(&r.bytes());
    assert_eq!(k, K::DuplicateTensor("a".into()));
    // A tensor count the bytes after the metadata cannot hold.
    let mut r = Raw::header(3, 1000, 0);
    r.tensor("a", &[8], 0, 0);
    let (k, _) = parse_err(&r.bytes());
    assert!(matches!(k, K::Count { count: 1000, .. }));
    // A name that is not UTF-8, and one that runs past the end.
    let mut r = Raw::header(3, 1, 0);
    r.str(b"\xc3").u32(1).u64(1).u32(0).u64(0).data(32, 4);
    let (k, _) = parse_err(&r.bytes());
    assert!(matches!(k, K::Utf8 { .. }));
    let mut r = Raw::header(3, 1, 0);
    r.u64(1 << 50).u64(0).u64(0);
    let (k, m) = parse_err(&r.bytes());
    assert!(
        matches!(k, K::Truncated { .. }) && m.contains("tensor info 0"),
        "{m}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Random corruption of a real file: an error or a parse, never a panic; whatever parses
    /// keeps every tensor inside the file.
    #[test]
    fn corrupted_files_never_panic(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = std::fs::read(fixtures().join("small.gguf")).unwrap();
        for (i, b) in edits {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let keep = bytes.len() - cut.index(bytes.len() / 4 + 1);
        bytes.truncate(keep);
        if let Ok(g) = Gguf::parse(&bytes, Path::new("fuzz.gguf")) {
            for t in g.tensors() {
                prop_assert!(t.range.end <= bytes.len());
            }
        }
    }

    /// Metadata and tensors written and read back are what was written.
    #[test]
    fn write_then_read_round_trips(
        ints in prop::collection::vec(any::<i32>(), 0..20),
        words in prop::collection::vec("[a-zé✓]{0,12}", 0..8),
        f in any::<f64>(),
        align_pow in 0u32..8,
        rows in 1usize..4,
        blocks in 1usize..4,
        seed in any::<u32>(),
    ) {
        let metadata = vec![
            ("general.alignment".to_string(), Value::U32(1 << align_pow)),
            ("ints".to_string(), Value::Array {
                elem: ValueType::I32,
                items: ints.iter().map(|&i| Value::I32(i)).collect(),
            }),
            ("words".to_string(), Value::strings(&words)),
            ("f".to_string(), Value::F64(f)),
        ];
        let cols = blocks * 32;
        let x = values(rows * cols, seed);
        let tensors: Vec<(TensorSpec, Vec<u8>)> = [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::BF16]
            .into_iter()
            .map(|ty| (
                TensorSpec::from_shape(format!("t.{ty}"), ty, &[rows, cols]),
                quantize(&x, cols, ty).unwrap(),
            ))
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rt.gguf");
        write(&path, &metadata, &tensors);
        let bytes = std::fs::read(&path).unwrap();
        let g = Gguf::parse(&bytes, &path).unwrap();
        let (m, t) = owned(&g);
        // f64 NaN != NaN: compare the bits.
        prop_assert_eq!(m.len(), metadata.len());
        for ((k1, v1), (k2, v2)) in m.iter().zip(&metadata) {
            prop_assert_eq!(k1, k2);
            match (v1, v2) {
                (Value::F64(a), Value::F64(b)) => prop_assert_eq!(a.to_bits(), b.to_bits()),
                _ => prop_assert_eq!(v1, v2),
            }
        }
        prop_assert_eq!(t, tensors);
        prop_assert_eq!(g.alignment(), 1u64 << align_pow);
        for ti in g.tensors() {
            prop_assert_eq!(ti.offset % g.alignment(), 0);
        }
    }

    /// Every F16 pattern (NaN payloads included, as numpy converts them) and every BF16 one
    /// but the signalling NaNs survives dequantize-then-quantize.
    #[test]
    fn half_precision_bytes_survive_a_round_trip(bits in prop::collection::vec(any::<u16>(), 1..64)) {
        let bf: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        let x = dequantize(&bf, GgmlType::BF16).unwrap();
        // A signalling NaN comes back quiet (ggml's rule); every other pattern unchanged.
        let back = quantize(&x, x.len(), GgmlType::BF16).unwrap();
        for (i, (a, b)) in back.chunks(2).zip(bf.chunks(2)).enumerate() {
            let (a, b) = (u16::from_le_bytes([a[0], a[1]]), u16::from_le_bytes([b[0], b[1]]));
            if x[i].is_nan() { prop_assert_eq!(a, b | 0x0040); } else { prop_assert_eq!(a, b); }
        }
        let h: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
        let x = dequantize(&h, GgmlType::F16).unwrap();
        let back = quantize(&x, x.len(), GgmlType::F16).unwrap();
        prop_assert_eq!(back, h);
    }

    /// Q8_0 and Q4_0 are idempotent on moderate values: quantizing what a quantization
    /// dequantizes to gives the same bytes.
    #[test]
    fn block_quantization_is_idempotent(
        x in prop::collection::vec(-1e3f32..1e3, 32..=32),
        scale in -3i32..3,
    ) {
        let x: Vec<f32> = x.iter().map(|v| v * 10f32.powi(scale)).collect();
        // Blocks whose scale rounds to an f16 subnormal or zero lose the values themselves.
        prop_assume!(x.iter().fold(0.0f32, |m, v| m.max(v.abs())) > 1e-2);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0] {
            let q = quantize(&x, 32, ty).unwrap();
            let y = dequantize(&q, ty).unwrap();
            prop_assert_eq!(quantize(&y, 32, ty).unwrap(), q);
        }
    }
}
