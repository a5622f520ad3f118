//! CTranslate2 `model.bin` reader and Whisper mapping on small synthetic files written here
//! byte by byte (format of CTranslate2 `python/ctranslate2/specs/model_spec.py` `_serialize`).

use std::path::Path;

mod common;

use proptest::prelude::*;
use voxtrace::models::whisper::ct2::{
    Ct2DType, Ct2Error, Ct2Model, HfTensor, save_hf_safetensors, to_hf_state_dict, whisper_dims,
};

/// One variable to write: name, shape, dtype id, raw bytes.
struct Var {
    name: String,
    shape: Vec<u32>,
    dtype: u8,
    data: Vec<u8>,
}

fn f16_var(name: &str, shape: &[u32], values: &[f32]) -> Var {
    assert_eq!(
        values.len(),
        shape.iter().product::<u32>() as usize,
        "{name}"
    );
    Var {
        name: name.into(),
        shape: shape.to_vec(),
        dtype: 4,
        data: values
            .iter()
            .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
            .collect(),
    }
}

fn i16_scalar(name: &str, v: i16) -> Var {
    Var {
        name: name.into(),
        shape: vec![],
        dtype: 2,
        data: v.to_le_bytes().to_vec(),
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&((s.len() + 1) as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Serialize like `ModelSpec._serialize` (binary version >= 4 layout unless `version < 4`).
fn write_ct2(version: u32, spec: &str, vars: &[Var], aliases: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&version.to_le_bytes());
    if version >= 2 {
        put_str(&mut out, spec);
        out.extend_from_slice(&3u32.to_le_bytes());
    }
    out.extend_from_slice(&(vars.len() as u32).to_le_bytes());
    for v in vars {
        put_str(&mut out, &v.name);
        out.push(v.shape.len() as u8);
        for d in &v.shape {
            out.extend_from_slice(&d.to_le_bytes());
        }
        if version >= 4 {
            out.push(v.dtype);
            out.extend_from_slice(&(v.data.len() as u32).to_le_bytes());
        } else {
            let item = [4u8, 1, 2, 4, 2, 2][v.dtype as usize];
            out.push(item);
            out.extend_from_slice(&((v.data.len() / item as usize) as u32).to_le_bytes());
        }
        out.extend_from_slice(&v.data);
    }
    if version >= 3 {
        out.extend_from_slice(&(aliases.len() as u32).to_le_bytes());
        for (a, t) in aliases {
            put_str(&mut out, a);
            put_str(&mut out, t);
        }
    }
    out
}

/// Deterministic distinct values: base + 0.5 * index (exact in f16 for small counts).
fn ramp(n: usize, base: f32) -> Vec<f32> {
    (0..n).map(|i| base + 0.5 * (i % 64) as f32).collect()
}

const D: u32 = 4; // d_model
const MELS: u32 = 2;
const FFN: u32 = 8;
const VOCAB: u32 = 5;
const SRC_POS: u32 = 6;
const TGT_POS: u32 = 3;

/// A complete tiny WhisperSpec model: d_model 4, 2 heads, 1 encoder + 1 decoder layer.
/// `k_bias` is written into the k part of every fused bias (must be 0 for a valid model).
fn tiny_whisper_vars(k_bias: f32) -> Vec<Var> {
    let d = D as usize;
    let mut v = vec![
        Var {
            name: "decoder/activation".into(),
            shape: vec![],
            dtype: 1,
            data: vec![3],
        },
        f16_var(
            "decoder/embeddings/weight",
            &[VOCAB, D],
            &ramp((VOCAB * D) as usize, 1.0),
        ),
        f16_var("decoder/layer_norm/gamma", &[D], &ramp(d, 2.0)),
        f16_var("decoder/layer_norm/beta", &[D], &ramp(d, -2.0)),
        i16_scalar("decoder/num_heads", 2),
        f16_var(
            "decoder/position_encodings/encodings",
            &[TGT_POS, D],
            &ramp((TGT_POS * D) as usize, 0.25),
        ),
        f16_var(
            "encoder/conv1/weight",
            &[D, MELS, 3],
            &ramp((D * MELS * 3) as usize, 3.0),
        ),
        f16_var("encoder/conv1/bias", &[D], &ramp(d, 4.0)),
        f16_var(
            "encoder/conv2/weight",
            &[D, D, 3],
            &ramp((D * D * 3) as usize, 5.0),
        ),
        f16_var("encoder/conv2/bias", &[D], &ramp(d, 6.0)),
        f16_var("encoder/layer_norm/gamma", &[D], &ramp(d, 7.0)),
        f16_var("encoder/layer_norm/beta", &[D], &ramp(d, 8.0)),
        i16_scalar("encoder/num_heads", 2),
        f16_var(
            "encoder/position_encodings/encodings",
            &[SRC_POS, D],
            &ramp((SRC_POS * D) as usize, 9.0),
        ),
    ];
    for side in ["encoder", "decoder"] {
        let p = format!("{side}/layer_0");
        // Fused q|k|v: rows 0..4 = q (values 100+), 4..8 = k (200+), 8..12 = v (300+).
        let mut w = Vec::new();
        for (r, base) in [100.0f32, 200.0, 300.0].iter().enumerate() {
            let _ = r;
            w.extend(ramp(d * d, *base));
        }
        let mut b = ramp(d, 10.0);
        b.extend(std::iter::repeat_n(k_bias, d));
        b.extend(ramp(d, 30.0));
        v.push(f16_var(
            &format!("{p}/self_attention/linear_0/weight"),
            &[3 * D, D],
            &w,
        ));
        v.push(f16_var(
            &format!("{p}/self_attention/linear_0/bias"),
            &[3 * D],
            &b,
        ));
        v.push(f16_var(
            &format!("{p}/self_attention/linear_1/weight"),
            &[D, D],
            &ramp(d * d, 40.0),
        ));
        v.push(f16_var(
            &format!("{p}/self_attention/linear_1/bias"),
            &[D],
            &ramp(d, 41.0),
        ));
        v.push(f16_var(
            &format!("{p}/self_attention/layer_norm/gamma"),
            &[D],
            &ramp(d, 42.0),
        ));
        v.push(f16_var(
            &format!("{p}/self_attention/layer_norm/beta"),
            &[D],
            &ramp(d, 43.0),
        ));
        v.push(f16_var(
            &format!("{p}/ffn/linear_0/weight"),
            &[FFN, D],
            &ramp((FFN * D) as usize, 50.0),
        ));
        v.push(f16_var(
            &format!("{p}/ffn/linear_0/bias"),
            &[FFN],
            &ramp(FFN as usize, 51.0),
        ));
        v.push(f16_var(
            &format!("{p}/ffn/linear_1/weight"),
            &[D, FFN],
            &ramp((FFN * D) as usize, 52.0),
        ));
        v.push(f16_var(
            &format!("{p}/ffn/linear_1/bias"),
            &[D],
            &ramp(d, 53.0),
        ));
        v.push(f16_var(
            &format!("{p}/ffn/layer_norm/gamma"),
            &[D],
            &ramp(d, 54.0),
        ));
        v.push(f16_var(
            &format!("{p}/ffn/layer_norm/beta"),
            &[D],
            &ramp(d, 55.0),
        ));
        if side == "decoder" {
            v.push(f16_var(
                &format!("{p}/attention/linear_0/weight"),
                &[D, D],
                &ramp(d * d, 60.0),
            ));
            v.push(f16_var(
                &format!("{p}/attention/linear_0/bias"),
                &[D],
                &ramp(d, 61.0),
            ));
            let mut kv = ramp(d * d, 400.0);
            kv.extend(ramp(d * d, 500.0));
            let mut kvb = vec![k_bias; d];
            kvb.extend(ramp(d, 62.0));
            v.push(f16_var(
                &format!("{p}/attention/linear_1/weight"),
                &[2 * D, D],
                &kv,
            ));
            v.push(f16_var(
                &format!("{p}/attention/linear_1/bias"),
                &[2 * D],
                &kvb,
            ));
            v.push(f16_var(
                &format!("{p}/attention/linear_2/weight"),
                &[D, D],
                &ramp(d * d, 63.0),
            ));
            v.push(f16_var(
                &format!("{p}/attention/linear_2/bias"),
                &[D],
                &ramp(d, 64.0),
            ));
            v.push(f16_var(
                &format!("{p}/attention/layer_norm/gamma"),
                &[D],
                &ramp(d, 65.0),
            ));
            v.push(f16_var(
                &format!("{p}/attention/layer_norm/beta"),
                &[D],
                &ramp(d, 66.0),
            ));
        }
    }
    v
}

fn tiny_whisper_file(k_bias: f32) -> Vec<u8> {
    write_ct2(
        6,
        "WhisperSpec",
        &tiny_whisper_vars(k_bias),
        &[("decoder/projection/weight", "decoder/embeddings/weight")],
    )
}

fn parse(bytes: &[u8]) -> Result<Ct2Model, Ct2Error> {
    Ct2Model::parse(bytes, Path::new("synthetic/model.bin"))
}

fn find<'a>(sd: &'a [HfTensor], name: &str) -> &'a HfTensor {
    sd.iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("{name} missing from the mapped state dict"))
}

#[test]
fn parses_header_variables_dtypes_and_aliases() {
    let bytes = tiny_whisper_file(0.0);
    let m = parse(&bytes).expect("valid synthetic file");
    assert_eq!(m.binary_version, 6);
    assert_eq!(m.spec, "WhisperSpec");
    assert_eq!(m.spec_revision, 3);
    assert_eq!(m.variables.len(), tiny_whisper_vars(0.0).len());
    assert_eq!(
        m.aliases,
        vec![(
            "decoder/projection/weight".to_string(),
            "decoder/embeddings/weight".to_string()
        )]
    );
    let act = m.get("decoder/activation").unwrap();
    assert_eq!((act.dtype, act.shape.clone()), (Ct2DType::I8, vec![]));
    assert_eq!(m.scalar_i64("encoder/num_heads").unwrap(), 2);
    let conv = m.get("encoder/conv1/weight").unwrap();
    assert_eq!(conv.shape, vec![4, 2, 3]);
    assert_eq!(conv.dtype, Ct2DType::F16);
    assert_eq!(conv.to_f32(&m.path).unwrap()[..3], [3.0, 3.5, 4.0]);
    // The alias resolves to the embeddings.
    let p = m.get("decoder/projection/weight").unwrap();
    assert_eq!(p.name, "decoder/embeddings/weight");
    // Data offsets point at the bytes in the file.
    let off = conv.data_offset;
    assert_eq!(&bytes[off..off + conv.data.len()], conv.data.as_slice());
}

#[test]
fn reads_f32_bf16_i32_and_legacy_versions() {
    let vals = [1.5f32, -2.25, 1e-3];
    let vars = vec![
        Var {
            name: "a".into(),
            shape: vec![3],
            dtype: 0,
            data: vals.iter().flat_map(|x| x.to_le_bytes()).collect(),
        },
        Var {
            name: "b".into(),
            shape: vec![1, 3],
            dtype: 5,
            data: vals
                .iter()
                .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                .collect(),
        },
        Var {
            name: "c".into(),
            shape: vec![2],
            dtype: 3,
            data: [-7i32, 70000]
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect(),
        },
    ];
    let m = parse(&write_ct2(6, "X", &vars, &[])).unwrap();
    assert_eq!(m.get("a").unwrap().to_f32(&m.path).unwrap(), vals);
    let b: Vec<f32> = vals
        .iter()
        .map(|&x| half::bf16::from_f32(x).to_f32())
        .collect();
    assert_eq!(m.get("b").unwrap().to_f32(&m.path).unwrap(), b);
    assert_eq!(m.get("c").unwrap().to_i64(&m.path).unwrap(), [-7, 70000]);
    let err = m.get("c").unwrap().to_f32(&m.path).unwrap_err().to_string();
    assert!(
        err.contains("synthetic/model.bin") && err.contains("not a float"),
        "{err}"
    );

    // Version 3: item size + element count instead of dtype id + byte count.
    let legacy = write_ct2(3, "X", &vars[..1], &[]);
    let m3 = parse(&legacy).unwrap();
    assert_eq!(m3.get("a").unwrap().dtype, Ct2DType::F32);
    assert_eq!(m3.get("a").unwrap().to_f32(&m3.path).unwrap(), vals);
    // Version 1: no spec, no aliases.
    let m1 = parse(&write_ct2(1, "", &vars[..1], &[])).unwrap();
    assert_eq!((m1.spec.as_str(), m1.spec_revision), ("", 1));
}

#[test]
fn every_truncation_is_an_error_naming_file_and_offset() {
    let bytes = tiny_whisper_file(0.0);
    for cut in 0..bytes.len() {
        match parse(&bytes[..cut]) {
            Err(Ct2Error::Truncated {
                path,
                offset,
                available,
                ..
            }) => {
                assert_eq!(path, Path::new("synthetic/model.bin"));
                assert!(offset <= cut, "cut {cut}: offset {offset}");
                assert_eq!(available, cut - offset, "cut {cut}");
            }
            other => panic!(
                "cut at {cut}/{}: expected an error, got {other:?}",
                bytes.len()
            ),
        }
    }
    let msg = parse(&bytes[..100]).unwrap_err().to_string();
    assert!(
        msg.starts_with("synthetic/model.bin: truncated") && msg.contains("byte offset"),
        "{msg}"
    );
}

#[test]
fn truncated_real_layout_file_on_disk_reports_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.bin");
    let bytes = tiny_whisper_file(0.0);
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let err = Ct2Model::load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(matches!(err, Ct2Error::Truncated { .. }), "{err:?}");
    let missing = Ct2Model::load(dir.path().join("nope.bin")).unwrap_err();
    assert!(matches!(missing, Ct2Error::Io { .. }), "{missing:?}");
    assert!(missing.to_string().contains("nope.bin"));
}

#[test]
fn corrupt_fields_are_rejected_with_reason() {
    let good = tiny_whisper_file(0.0);
    // Unsupported version.
    let mut b = good.clone();
    b[..4].copy_from_slice(&7u32.to_le_bytes());
    let e = parse(&b).unwrap_err().to_string();
    assert!(
        e.contains("unsupported binary version 7") && e.contains("offset 0"),
        "{e}"
    );
    // Unknown dtype id on the first variable: header = 4 + (2+12) + 4 + 4 = 26 bytes,
    // then name "decoder/activation" (2 + 19), rank 1 byte -> dtype at 26 + 21 + 1 = 48.
    let mut b = good.clone();
    assert_eq!(b[48], 1, "layout assumption");
    b[48] = 9;
    let e = parse(&b).unwrap_err().to_string();
    assert!(
        e.contains("unknown dtype id 9") && e.contains("offset 48"),
        "{e}"
    );
    // Byte count that does not match the shape.
    let mut b = good.clone();
    b[49..53].copy_from_slice(&2u32.to_le_bytes());
    let e = parse(&b).unwrap_err().to_string();
    assert!(e.contains("2 data bytes but shape [] of i8 needs 1"), "{e}");
    // Trailing garbage.
    let mut b = good.clone();
    b.extend_from_slice(&[0, 1, 2]);
    let e = parse(&b).unwrap_err().to_string();
    assert!(e.contains("3 unexpected trailing bytes"), "{e}");
    // Huge variable count.
    let mut b = good.clone();
    b[22..26].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = parse(&b).unwrap_err().to_string();
    assert!(
        e.contains("truncated") && e.contains("4294967295 variables"),
        "{e}"
    );
    // Alias to a missing variable; duplicate names.
    let vars = tiny_whisper_vars(0.0);
    let e = parse(&write_ct2(6, "WhisperSpec", &vars, &[("x", "missing")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("points to missing variable"), "{e}");
    let dup = vec![i16_scalar("n", 1), i16_scalar("n", 2)];
    let e = parse(&write_ct2(6, "S", &dup, &[]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("duplicate variable name"), "{e}");
    // Invalid UTF-8 name.
    let mut bad = write_ct2(6, "S", &[i16_scalar("ab", 1)], &[]);
    let pos = bad.windows(2).position(|w| w == b"ab").unwrap();
    bad[pos] = 0xff;
    let e = parse(&bad).unwrap_err().to_string();
    assert!(e.contains("not UTF-8"), "{e}");
}

#[test]
fn maps_tiny_whisper_to_hf_names_and_splits_fused_projections() {
    let m = parse(&tiny_whisper_file(0.0)).unwrap();
    let dims = whisper_dims(&m).unwrap();
    assert_eq!(
        (
            dims.d_model,
            dims.num_mel_bins,
            dims.encoder_layers,
            dims.decoder_layers
        ),
        (4, 2, 1, 1)
    );
    assert_eq!(
        (dims.encoder_attention_heads, dims.decoder_attention_heads),
        (2, 2)
    );
    assert_eq!(
        (
            dims.vocab_size,
            dims.max_source_positions,
            dims.max_target_positions
        ),
        (5, 6, 3)
    );
    assert_eq!((dims.encoder_ffn_dim, dims.decoder_ffn_dim), (8, 8));

    let sd = to_hf_state_dict(&m).unwrap();
    // 5 + 15 per encoder layer + 2 + 2 + 24 per decoder layer + 2 + 1 (proj_out).
    let names: Vec<&str> = sd.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(sd.len(), 5 + 15 + 2 + 2 + 24 + 2 + 1, "{names:?}");
    let mut uniq = names.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), names.len(), "duplicate names");
    assert!(
        !names.iter().any(|n| n.ends_with("k_proj.bias")),
        "k_proj must have no bias"
    );

    for side in ["encoder", "decoder"] {
        let p = format!("model.{side}.layers.0.self_attn");
        for (proj, base) in [("q_proj", 100.0f32), ("k_proj", 200.0), ("v_proj", 300.0)] {
            let t = find(&sd, &format!("{p}.{proj}.weight"));
            assert_eq!(t.shape, [4, 4]);
            assert_eq!(t.data, ramp(16, base), "{p}.{proj}.weight");
        }
        assert_eq!(find(&sd, &format!("{p}.q_proj.bias")).data, ramp(4, 10.0));
        assert_eq!(find(&sd, &format!("{p}.v_proj.bias")).data, ramp(4, 30.0));
        let fc1 = find(&sd, &format!("model.{side}.layers.0.fc1.weight"));
        assert_eq!(fc1.shape, [8, 4]);
        assert_eq!(
            find(&sd, &format!("model.{side}.layers.0.fc2.weight")).shape,
            [4, 8]
        );
        assert_eq!(
            find(
                &sd,
                &format!("model.{side}.layers.0.final_layer_norm.weight")
            )
            .data,
            ramp(4, 54.0)
        );
    }
    let x = "model.decoder.layers.0.encoder_attn";
    assert_eq!(
        find(&sd, &format!("{x}.q_proj.weight")).data,
        ramp(16, 60.0)
    );
    assert_eq!(
        find(&sd, &format!("{x}.k_proj.weight")).data,
        ramp(16, 400.0)
    );
    assert_eq!(
        find(&sd, &format!("{x}.v_proj.weight")).data,
        ramp(16, 500.0)
    );
    assert_eq!(find(&sd, &format!("{x}.v_proj.bias")).data, ramp(4, 62.0));
    assert_eq!(find(&sd, &format!("{x}.out_proj.bias")).data, ramp(4, 64.0));
    assert_eq!(
        find(&sd, "model.decoder.layers.0.encoder_attn_layer_norm.bias").data,
        ramp(4, 66.0)
    );
    let conv1 = find(&sd, "model.encoder.conv1.weight");
    assert_eq!(conv1.shape, [4, 2, 3]);
    assert_eq!(
        find(&sd, "model.encoder.embed_positions.weight").shape,
        [6, 4]
    );
    assert_eq!(
        find(&sd, "model.decoder.embed_positions.weight").shape,
        [3, 4]
    );
    let emb = find(&sd, "model.decoder.embed_tokens.weight");
    let proj = find(&sd, "proj_out.weight");
    assert_eq!(emb.data, proj.data);
    assert_eq!(proj.source, "decoder/projection/weight");
    assert_eq!(
        find(&sd, "model.encoder.layers.0.self_attn.k_proj.weight").source,
        "encoder/layer_0/self_attention/linear_0/weight[4..8]"
    );
}

#[test]
fn nonzero_k_bias_is_refused() {
    let m = parse(&tiny_whisper_file(0.5)).unwrap();
    let e = to_hf_state_dict(&m).unwrap_err().to_string();
    assert!(
        e.contains("encoder/layer_0/self_attention/linear_0/bias")
            && e.contains("k_proj has no bias"),
        "{e}"
    );
}

#[test]
fn mapping_errors_missing_unmapped_nan_and_quantized() {
    // Missing variable.
    let mut vars = tiny_whisper_vars(0.0);
    vars.retain(|v| v.name != "decoder/layer_0/ffn/layer_norm/beta");
    let m = parse(&write_ct2(6, "WhisperSpec", &vars, &[])).unwrap();
    let e = to_hf_state_dict(&m).unwrap_err().to_string();
    assert!(
        e.contains("decoder/layer_0/ffn/layer_norm/beta") && e.contains("not in the model"),
        "{e}"
    );
    // Extra non-scalar variable nobody maps.
    let mut vars = tiny_whisper_vars(0.0);
    vars.push(f16_var("encoder/extra", &[2], &[1.0, 2.0]));
    let m = parse(&write_ct2(6, "WhisperSpec", &vars, &[])).unwrap();
    let e = to_hf_state_dict(&m).unwrap_err().to_string();
    assert!(
        e.contains("no transformers name") && e.contains("encoder/extra"),
        "{e}"
    );
    // NaN in a weight.
    let mut vars = tiny_whisper_vars(0.0);
    let i = vars
        .iter()
        .position(|v| v.name == "encoder/conv2/bias")
        .unwrap();
    vars[i] = f16_var("encoder/conv2/bias", &[D], &[0.0, f32::NAN, 0.0, 0.0]);
    let m = parse(&write_ct2(6, "WhisperSpec", &vars, &[])).unwrap();
    let e = to_hf_state_dict(&m).unwrap_err().to_string();
    assert!(
        e.contains("encoder/conv2/bias") && e.contains("non-finite value NaN at flat index 1"),
        "{e}"
    );
    // int8 (quantized) weight.
    let mut vars = tiny_whisper_vars(0.0);
    let i = vars
        .iter()
        .position(|v| v.name == "encoder/layer_0/ffn/linear_0/weight")
        .unwrap();
    vars[i] = Var {
        name: "encoder/layer_0/ffn/linear_0/weight".into(),
        shape: vec![FFN, D],
        dtype: 1,
        data: vec![1; (FFN * D) as usize],
    };
    let m = parse(&write_ct2(6, "WhisperSpec", &vars, &[])).unwrap();
    let e = to_hf_state_dict(&m).unwrap_err().to_string();
    assert!(e.contains("dtype i8") && e.contains("_scale"), "{e}");
    // Wrong shape.
    let mut vars = tiny_whisper_vars(0.0);
    let i = vars
        .iter()
        .position(|v| v.name == "encoder/layer_norm/gamma")
        .unwrap();
    vars[i] = f16_var("encoder/layer_norm/gamma", &[3], &[1.0, 1.0, 1.0]);
    let m = parse(&write_ct2(6, "WhisperSpec", &vars, &[])).unwrap();
    let e = to_hf_state_dict(&m).unwrap_err().to_string();
    assert!(
        e.contains("encoder/layer_norm/gamma") && e.contains("shape [3], expected [4]"),
        "{e}"
    );
    // Not a Whisper model.
    let m = parse(&write_ct2(
        6,
        "TransformerSpec",
        &tiny_whisper_vars(0.0),
        &[],
    ))
    .unwrap();
    let e = to_hf_state_dict(&m).unwrap_err().to_string();
    assert!(e.contains("expected \"WhisperSpec\""), "{e}");
}

#[test]
fn save_hf_safetensors_round_trips() {
    let m = parse(&tiny_whisper_file(0.0)).unwrap();
    let sd = to_hf_state_dict(&m).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_hf_safetensors(&sd, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.len(), sd.len());
    for t in &sd {
        let v = st.tensor(&t.name).unwrap();
        assert_eq!(v.shape(), t.shape.as_slice(), "{}", t.name);
        let vals: Vec<f32> = v
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(vals, t.data, "{}", t.name);
    }
    // No temporary file left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1);
    // Shape/data mismatch is an error, not a panic.
    let mut bad = sd.clone();
    bad[0].shape = vec![1];
    let e = save_hf_safetensors(&bad, &path).unwrap_err().to_string();
    assert!(e.contains(&bad[0].name), "{e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(common::proptest_cases(256)))]
    /// Arbitrary bytes, and arbitrary single-byte corruptions of a valid file, never panic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse(&bytes);
        let mut b = 6u32.to_le_bytes().to_vec();
        b.extend_from_slice(&bytes);
        if let Ok(m) = parse(&b) {
            let _ = to_hf_state_dict(&m);
        }
    }

    #[test]
    fn corrupted_valid_file_never_panics(pos in 0usize..4096, val in any::<u8>()) {
        let mut b = tiny_whisper_file(0.0);
        let pos = pos % b.len();
        b[pos] = val;
        if let Ok(m) = parse(&b) {
            let _ = to_hf_state_dict(&m);
        }
    }
}
