//! Reader tests for `voxtrace::compare::Dump`: files written by the Rust `safetensors` and
//! `npyz` crates, and committed fixtures written by torch/numpy
//! (`reference/make_compare_fixtures.py`).

mod common;

use std::collections::BTreeMap;

use common::compare::*;
use safetensors::Dtype;
use serde::Deserialize;
use voxtrace::compare::{DType, Dump, DumpFormat, OrderSource, Status, Tolerances, compare_dumps};

#[test]
fn safetensors_every_dtype_roundtrip() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("all.safetensors");
    let fv = [1.5f32, -2.25, 0.0, 65504.0];
    let tensors = vec![
        st("f64", Dtype::F64, &[2], f64_bytes(&[1e300, -0.1])),
        st_f32("f32", &[2, 2], &fv),
        st("f16", Dtype::F16, &[4], f16_bytes(&fv)),
        st(
            "bf16",
            Dtype::BF16,
            &[4],
            bf16_bytes(&[1.5, -2.25, 0.0, 3.0e38]),
        ),
        st("i64", Dtype::I64, &[3], i64_bytes(&[-(1 << 40), 0, 7])),
        st(
            "i32",
            Dtype::I32,
            &[2],
            [-5i32, 6].iter().flat_map(|x| x.to_le_bytes()).collect(),
        ),
        st(
            "i16",
            Dtype::I16,
            &[2],
            [-300i16, 300]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        ),
        st("i8", Dtype::I8, &[3], vec![0x80, 0, 0x7f]),
        st("u8", Dtype::U8, &[3], vec![0, 1, 255]),
        st("bool", Dtype::BOOL, &[3], vec![1, 0, 1]),
        st("scalar", Dtype::F32, &[], f32_bytes(&[7.0])),
        st("empty", Dtype::F32, &[0, 3], vec![]),
    ];
    let order = [
        "bool", "f16", "f32", "f64", "bf16", "i64", "i32", "i16", "i8", "u8", "scalar", "empty",
    ];
    let oj = order_json(&order);
    write_safetensors(
        &p,
        &tensors,
        Some(&[
            ("voxtrace.order", oj.as_str()),
            ("voxtrace.source", "unit test"),
        ]),
    );
    let d = Dump::open(&p).unwrap();
    assert_eq!(d.format(), DumpFormat::Safetensors);
    assert_eq!(d.len(), 12);
    assert_eq!(d.names_in_order(), order);
    assert_eq!(d.source(), Some("unit test"));
    // Storage order is data-offset order: a permutation of the names.
    let mut s = d.names_in_storage_order();
    s.sort();
    let mut o = order.to_vec();
    o.sort();
    assert_eq!(s, o);

    let info = d.info("f32").unwrap();
    assert_eq!((info.shape.clone(), info.dtype), (vec![2, 2], DType::F32));
    assert_eq!(d.info("bf16").unwrap().dtype, DType::BF16);
    assert_eq!(d.info("scalar").unwrap().shape, Vec::<usize>::new());
    assert!(d.info("nope").is_none());

    assert_eq!(d.read_f64("f64").unwrap(), vec![1e300, -0.1]);
    assert_eq!(d.read_f64("f32").unwrap(), vec![1.5, -2.25, 0.0, 65504.0]);
    assert_eq!(d.read_f64("f16").unwrap(), vec![1.5, -2.25, 0.0, 65504.0]);
    let bf = d.read_f64("bf16").unwrap();
    assert_eq!(&bf[..3], &[1.5, -2.25, 0.0]);
    assert_eq!(bf[3], half::bf16::from_f32(3.0e38).to_f64());
    assert_eq!(
        d.read_f64("i64").unwrap(),
        vec![-(1i64 << 40) as f64, 0.0, 7.0]
    );
    assert_eq!(d.read_f64("i32").unwrap(), vec![-5.0, 6.0]);
    assert_eq!(d.read_f64("i16").unwrap(), vec![-300.0, 300.0]);
    assert_eq!(d.read_f64("i8").unwrap(), vec![-128.0, 0.0, 127.0]);
    assert_eq!(d.read_f64("u8").unwrap(), vec![0.0, 1.0, 255.0]);
    assert_eq!(d.read_f64("bool").unwrap(), vec![1.0, 0.0, 1.0]);
    assert_eq!(d.read_f64("scalar").unwrap(), vec![7.0]);
    assert_eq!(d.read_f64("empty").unwrap(), Vec::<f64>::new());
    assert_eq!(
        d.read_f32("f16").unwrap(),
        vec![1.5f32, -2.25, 0.0, 65504.0]
    );
}

#[test]
fn safetensors_without_order_uses_offset_order() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("plain.safetensors");
    write_safetensors(
        &p,
        &[st_f32("b", &[1], &[1.0]), st_f32("a", &[2], &[1.0, 2.0])],
        None,
    );
    let d = Dump::open(&p).unwrap();
    assert!(d.declared_order().is_none());
    assert_eq!(d.names_in_order(), d.names_in_storage_order());
}

#[test]
fn order_entries_not_in_file_are_dropped_and_unlisted_names_appended() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("o.safetensors");
    let oj = order_json(&["c", "ghost", "a", "c"]);
    write_safetensors(
        &p,
        &[
            st_f32("a", &[1], &[1.0]),
            st_f32("b", &[1], &[1.0]),
            st_f32("c", &[1], &[1.0]),
        ],
        Some(&[("voxtrace.order", oj.as_str())]),
    );
    let d = Dump::open(&p).unwrap();
    assert_eq!(d.declared_order().unwrap(), ["c", "a"]);
    assert_eq!(d.names_in_order(), ["c", "a", "b"]);
}

#[test]
fn npz_written_by_npyz_stored_and_deflated() {
    let dir = tempfile::tempdir().unwrap();
    for compressed in [false, true] {
        let p = dir.path().join(format!("x{compressed}.npz"));
        write_npz(
            &p,
            &[
                ("z.last", Arr::F32(&[2, 2], &[1.0, 2.0, 3.0, 4.5])),
                ("a.first", Arr::F64(&[3], &[0.1, 0.2, -0.3])),
                ("ids", Arr::I64(&[2], &[5, -6])),
                ("bytes", Arr::U8(&[1, 2], &[9, 200])),
            ],
            compressed,
        );
        let d = Dump::open(&p).unwrap();
        assert_eq!(d.format(), DumpFormat::Npz);
        assert_eq!(d.names_in_order(), ["z.last", "a.first", "ids", "bytes"]);
        assert_eq!(d.info("z.last").unwrap().shape, vec![2, 2]);
        assert_eq!(d.info("ids").unwrap().dtype, DType::I64);
        assert_eq!(d.info("bytes").unwrap().dtype, DType::U8);
        assert_eq!(d.read_f64("z.last").unwrap(), vec![1.0, 2.0, 3.0, 4.5]);
        assert_eq!(d.read_f64("a.first").unwrap(), vec![0.1, 0.2, -0.3]);
        assert_eq!(d.read_f64("ids").unwrap(), vec![5.0, -6.0]);
        assert_eq!(d.read_f64("bytes").unwrap(), vec![9.0, 200.0]);
        assert_eq!(d.is_memory_mapped("z.last"), !compressed);
    }
}

#[test]
fn npy_folder_written_by_npyz() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("dump");
    write_npy_f32(&root.join("model/layers/10/out.npy"), &[2], &[10.0, 10.5]);
    write_npy_f32(&root.join("model/layers/2/out.npy"), &[2], &[2.0, 2.5]);
    write_npy_f32(&root.join("model/layers/9/out.npy"), &[1, 2], &[9.0, 9.5]);
    write_npy_f64(&root.join("logits.npy"), &[], &[0.125]);
    std::fs::write(root.join("notes.txt"), "ignored").unwrap();
    std::fs::write(root.join(".hidden.npy"), "ignored").unwrap();
    let d = Dump::open(&root).unwrap();
    assert_eq!(d.format(), DumpFormat::NpyDir);
    assert_eq!(
        d.names_in_order(),
        [
            "logits",
            "model.layers.2.out",
            "model.layers.9.out",
            "model.layers.10.out"
        ]
    );
    assert_eq!(d.info("model.layers.9.out").unwrap().shape, vec![1, 2]);
    assert_eq!(d.read_f64("model.layers.10.out").unwrap(), vec![10.0, 10.5]);
    assert_eq!(d.read_f64("logits").unwrap(), vec![0.125]);
    assert_eq!(d.info("logits").unwrap().dtype, DType::F64);
}

#[test]
fn natural_order() {
    use std::cmp::Ordering::*;
    use voxtrace::compare::dump::natural_cmp;
    assert_eq!(natural_cmp("layers.2", "layers.10"), Less);
    assert_eq!(natural_cmp("layers.10", "layers.9"), Greater);
    assert_eq!(natural_cmp("a", "a"), Equal);
    assert_eq!(natural_cmp("a.1", "a.01"), Less);
    assert_eq!(natural_cmp("a", "a.0"), Less);
    assert_eq!(natural_cmp("b", "a.0"), Greater);
}

// ---- Python-written fixtures -----------------------------------------------------------------

#[derive(Deserialize)]
struct ExpTensor {
    shape: Vec<usize>,
    dtype: String,
    bits: Vec<u64>,
}

#[derive(Deserialize)]
struct ExpFile {
    tensors: BTreeMap<String, ExpTensor>,
    offset_order: Option<Vec<String>>,
    declared_order: Option<Vec<String>>,
    archive_order: Option<Vec<String>>,
}

fn expected() -> BTreeMap<String, serde_json::Value> {
    let s = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&s).unwrap()
}

fn check_against_expected(file: &str, exp: &ExpFile) {
    let d = Dump::open(&fixture(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert_eq!(d.len(), exp.tensors.len(), "{file}");
    for (name, t) in &exp.tensors {
        let info = d
            .info(name)
            .unwrap_or_else(|| panic!("{file}: missing {name}"));
        assert_eq!(info.shape, t.shape, "{file}:{name} shape");
        assert_eq!(info.dtype.as_str(), t.dtype, "{file}:{name} dtype");
        let got = d.read_f64(name).unwrap();
        assert_eq!(got.len(), t.bits.len(), "{file}:{name} length");
        for (i, (g, b)) in got.iter().zip(&t.bits).enumerate() {
            let want = f64::from_bits(*b);
            if want.is_nan() {
                assert!(g.is_nan(), "{file}:{name}[{i}]: want NaN, got {g}");
            } else {
                assert_eq!(g.to_bits(), *b, "{file}:{name}[{i}]: want {want}, got {g}");
            }
        }
    }
    if let Some(o) = &exp.offset_order {
        assert_eq!(&d.names_in_storage_order(), o, "{file} offset order");
    }
    if let Some(o) = &exp.declared_order {
        assert_eq!(&d.names_in_order(), o, "{file} declared order");
    }
    if let Some(o) = &exp.archive_order {
        assert_eq!(&d.names_in_order(), o, "{file} archive order");
    }
}

#[test]
fn python_fixtures_decode_exactly() {
    let all = expected();
    let mut checked = 0;
    for file in [
        "torch_ref.safetensors",
        "torch_act.safetensors",
        "numpy_compressed.npz",
        "numpy_stored.npz",
        "npy_dir",
    ] {
        let exp: ExpFile = serde_json::from_value(all[file].clone()).unwrap();
        check_against_expected(file, &exp);
        checked += exp.tensors.len();
    }
    assert_eq!(checked, 6 + 6 + 12 + 12 + 5);
}

#[test]
fn python_npz_covers_big_endian_fortran_and_specials() {
    let d = Dump::open(&fixture("numpy_compressed.npz")).unwrap();
    assert!(
        !d.is_memory_mapped("f64"),
        "savez_compressed members are deflated"
    );
    assert!(
        Dump::open(&fixture("numpy_stored.npz"))
            .unwrap()
            .is_memory_mapped("f64")
    );
    // np.asfortranarray(np.arange(12).reshape(3, 4)) read back in C order.
    assert_eq!(
        d.read_f64("fortran_f32").unwrap(),
        (0..12).map(|i| i as f64).collect::<Vec<_>>()
    );
    assert_eq!(d.info("fortran_f32").unwrap().shape, vec![3, 4]);
    assert_eq!(
        d.read_f64("f32_big_endian").unwrap(),
        vec![-3.0, -1.5, 0.0, 1.5, 3.0]
    );
    let s = d.read_f64("special_f32").unwrap();
    assert!(s[0].is_nan());
    assert_eq!(&s[1..], &[f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0]);
    assert!(s[4].is_sign_negative());
    assert_eq!(d.info("scalar_f32").unwrap().shape, Vec::<usize>::new());
    assert_eq!(d.read_f64("i8").unwrap(), vec![-128.0, 0.0, 127.0]);
    assert_eq!(d.read_f64("bool").unwrap(), vec![1.0, 0.0, 1.0, 1.0]);
}

#[test]
fn npz_compressed_vs_stored_vs_itself() {
    let c = fixture("numpy_compressed.npz");
    let s = fixture("numpy_stored.npz");
    // Default: NaN == NaN is a failure, so only `special_f32` fails (one NaN position).
    let r = compare_dumps(&c, &s, &Tolerances::new(0.0, 0.0).unwrap()).unwrap();
    assert_eq!(r.summary.compared, 12);
    assert_eq!(r.summary.failed, 1);
    let sp = r.get("special_f32").unwrap();
    assert_eq!(sp.status, Status::Fail);
    let m = sp.metrics.as_ref().unwrap();
    assert_eq!(
        (
            m.nonfinite_mismatch,
            m.ref_nan,
            m.ref_inf,
            m.act_nan,
            m.act_inf
        ),
        (1, 1, 2, 1, 2)
    );
    assert_eq!(r.order_source, OrderSource::Storage);
    // With equal_nan everything passes at zero tolerance.
    let mut t = Tolerances::new(0.0, 0.0).unwrap();
    t.equal_nan = true;
    let r = compare_dumps(&c, &s, &t).unwrap();
    assert!(r.passed(), "{}", r.render_table());
}

#[test]
fn torch_fixture_pair() {
    let r = compare_dumps(
        &fixture("torch_ref.safetensors"),
        &fixture("torch_act.safetensors"),
        &Tolerances::default(),
    )
    .unwrap();
    assert_eq!(r.order_source, OrderSource::Reference);
    let names: Vec<&str> = r.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "input_features",
            "model.audio_tower.conv1.out",
            "model.audio_tower.layers.0.out",
            "model.language_model.embed_tokens.out",
            "model.attention_mask",
            "generated_ids",
        ]
    );
    let st: Vec<Status> = r.tensors.iter().map(|t| t.status).collect();
    assert_eq!(
        st,
        [
            Status::Pass,
            Status::Pass,
            Status::Fail,
            Status::Missing,
            Status::ShapeMismatch,
            Status::Pass
        ]
    );
    assert_eq!(r.dtype_differences(), ["model.audio_tower.conv1.out"]);
    assert_eq!(r.missing(), ["model.language_model.embed_tokens.out"]);
    assert_eq!(r.shape_mismatches(), ["model.attention_mask"]);
    assert_eq!(r.extra.len(), 1);
    assert_eq!(r.extra[0].name, "model.extra_debug.out");
    assert_eq!(
        r.first_failure().unwrap().name,
        "model.audio_tower.layers.0.out"
    );
    assert_eq!(
        r.reference
            .source
            .as_deref()
            .map(|s| s.starts_with("pytorch ")),
        Some(true)
    );
    // The one changed element: [1, 2], increased by 0.5 in bf16 arithmetic.
    let exp = expected();
    let bits = |file: &str| -> Vec<f64> {
        exp[file]["tensors"]["model.audio_tower.layers.0.out"]["bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| f64::from_bits(b.as_u64().unwrap()))
            .collect()
    };
    let (rv, av) = (bits("torch_ref.safetensors"), bits("torch_act.safetensors"));
    let diffs: Vec<usize> = (0..10).filter(|&i| rv[i] != av[i]).collect();
    assert_eq!(diffs, vec![7]);
    let m = r.tensors[2].metrics.as_ref().unwrap();
    assert_eq!(m.max_abs_err, (av[7] - rv[7]).abs());
    assert_eq!(m.max_abs_err_index, Some(vec![1, 2]));
    assert_eq!(m.out_of_tol, 1);
    assert_eq!(m.max_rel_err, (av[7] - rv[7]).abs() / rv[7].abs());
    assert_eq!(r.exit_code(), 1);
}
