//! Whisper tiny.en as one self-contained GGUF (`models::whisper::gguf`, `voxtrace quantize`):
//!
//! * the file `voxtrace quantize` writes equals, tensor by tensor (names, types, shapes, bytes)
//!   and key by key, the one `reference/whisper_gguf.py` writes with PyPI `gguf` (its
//!   `gguf.quants.quantize` for the Q8_0 / Q4_0 / F16 / BF16 bytes), for every type;
//! * a reference-written file loads with every linear weight packed from the file's own bytes
//!   (the bytes in-memory packing produces) and the rest equal to the file's f32 values;
//! * transcripts of corpus clips from the file equal the in-memory model's token for token
//!   (f32 against the CTranslate2 folder, q8_0 / q4_0 against `Whisper::quantize`), through
//!   the library and through `voxtrace transcribe`, `trace` and `eval`;
//! * damaged or incomplete Whisper GGUFs (a tensor missing or mis-shaped, a metadata key or
//!   the tokenizer missing, truncated) are refused naming the file and the tensor or key,
//!   exit 2, no panic.

mod common;

use common::whisper::require_weights;
use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use voxtrace::models::whisper::Whisper;
use voxtrace::nn::qlinear::LinearWeight;
use voxtrace::nn::qmatmul::QuantKind;
use voxtrace::quant::GgmlType;
use voxtrace::quant::gguf::{Gguf, TensorSpec, Value, map_file, write_gguf};
use voxtrace::tokenizer::WhisperTokenizer;

fn python() -> String {
    std::env::var("VOXTRACE_PYTHON").unwrap_or_else(|_| {
        root()
            .join(".venv/bin/python")
            .to_string_lossy()
            .into_owned()
    })
}

/// Run `reference/whisper_gguf.py` on the Whisper tiny.en folder.
fn reference_gguf(ty: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("ref-{ty}.gguf"));
    let st = std::process::Command::new(python())
        .arg(root().join("reference/whisper_gguf.py"))
        .arg("--model")
        .arg(require_weights())
        .args(["--type", ty, "--out"])
        .arg(&out)
        .output()
        .expect("run the reference script (VOXTRACE_PYTHON with PyPI gguf)");
    assert!(
        st.status.success(),
        "reference script: {}",
        String::from_utf8_lossy(&st.stderr)
    );
    out
}

/// `voxtrace quantize` on the Whisper tiny.en folder.
fn ours(ty: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("ours-{ty}.gguf"));
    voxtrace_ok(&[
        "quantize",
        "--model",
        s(&require_weights()),
        "--type",
        ty,
        "--out",
        s(&out),
    ]);
    out
}

/// The 64 linear weights of tiny.en: 4 encoder layers x 6, 4 decoder layers x 10.
const LINEARS: usize = 4 * 6 + 4 * 10;

#[test]
fn quantize_writes_what_the_reference_writes() {
    let tmp = tempfile::tempdir().unwrap();
    for (ty, linear_ty) in [
        ("f32", GgmlType::F32),
        ("f16", GgmlType::F16),
        ("bf16", GgmlType::BF16),
        ("q8_0", GgmlType::Q8_0),
        ("q4_0", GgmlType::Q4_0),
    ] {
        let (r, o) = (reference_gguf(ty, tmp.path()), ours(ty, tmp.path()));
        let (rm, om) = (map_file(&r).unwrap(), map_file(&o).unwrap());
        let (rg, og) = (Gguf::parse(&rm, &r).unwrap(), Gguf::parse(&om, &o).unwrap());
        let names = |g: &Gguf| -> Vec<String> {
            let mut v: Vec<String> = g.tensors().iter().map(|t| t.name.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&og), names(&rg), "{ty}: tensor names");
        let mut types: BTreeMap<&str, usize> = BTreeMap::new();
        for rt in rg.tensors() {
            let ot = og.tensor(rt.name).unwrap();
            assert_eq!((ot.ty, &ot.dims), (rt.ty, &rt.dims), "{ty}: {}", rt.name);
            assert!(ot.data == rt.data, "{ty}: tensor {} bytes differ", rt.name);
            *types.entry(rt.ty.name()).or_insert(0) += 1;
        }
        // The linear weights in the type asked for, everything else (conv stem, norms, biases,
        // position tables, token embedding) F32; no tied `proj_out`.
        let total = rg.tensors().len();
        assert_eq!(total, 167, "{ty}: {types:?}");
        if linear_ty == GgmlType::F32 {
            assert_eq!(types.get("F32"), Some(&total), "{types:?}");
        } else {
            assert_eq!(types.get(linear_ty.name()), Some(&LINEARS), "{types:?}");
            assert_eq!(types.get("F32"), Some(&(total - LINEARS)), "{types:?}");
        }
        assert!(rg.tensor("proj_out.weight").is_none());
        // Metadata: the same keys with the same values, both ways.
        for (k, rv) in rg.metadata() {
            let ov = og
                .get(k)
                .unwrap_or_else(|| panic!("{ty}: metadata key {k} missing"));
            assert_eq!(ov.to_value(), rv.to_value(), "{ty}: metadata {k}");
        }
        for (k, _) in og.metadata() {
            assert!(rg.get(k).is_some(), "{ty}: extra key {k}");
        }
    }
}

/// A reference-written Q8_0 / Q4_0 file loads with every linear layer packed from the file's
/// own bytes, which are the bytes `Whisper::quantize` packs from the CTranslate2 folder; the
/// other tensors (F32 in the file) load as stored; the tokenizer is the folder's.
#[test]
fn quantized_gguf_loads_the_files_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = require_weights();
    for kind in [QuantKind::Q8_0, QuantKind::Q4_0] {
        let file = reference_gguf(kind.name(), tmp.path());
        let (mut model, tok) = Whisper::load_gguf(&file, &device()).unwrap();
        let mut packed_in_memory = Whisper::load(&dir, &device()).unwrap();
        assert_eq!(packed_in_memory.quantize(kind).unwrap(), LINEARS);
        assert_eq!(model.config, packed_in_memory.config);
        assert_eq!(model.generation, packed_in_memory.generation);
        let mm = map_file(&file).unwrap();
        let g = Gguf::parse(&mm, &file).unwrap();
        let mut n = 0;
        for (l, m) in model
            .net
            .linears_mut()
            .into_iter()
            .zip(packed_in_memory.net.linears_mut())
        {
            let (LinearWeight::Packed(a), LinearWeight::Packed(b)) = (&*l, &*m) else {
                panic!("{}: loaded as {}", kind.name(), l.precision());
            };
            assert!(a.weight.bytes() == b.weight.bytes(), "layer {n}: bytes");
            assert!(
                g.tensors().iter().any(|t| t.data == a.weight.bytes()),
                "layer {n}: not a tensor of the file"
            );
            n += 1;
        }
        assert_eq!(n, LINEARS);
        let t = g
            .tensor("model.decoder.layers.2.final_layer_norm.weight")
            .unwrap();
        assert_eq!(t.ty, GgmlType::F32);
        let want = voxtrace::quant::blocks::dequantize(t.data, t.ty).unwrap();
        let got = model.net.model.decoder.layers[2]
            .final_layer_norm
            .gamma
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got, want);
        let folder_tok = WhisperTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
        let ids = [50257, 1770, 13, 50256, 440, 2068];
        assert_eq!(tok.decode(&ids).unwrap(), folder_tok.decode(&ids).unwrap());
    }
}

/// Generated ids (prompt and EOT included) of every window, per clip.
fn ids_of(model: &Whisper, tok: &WhisperTokenizer, clips: &[PathBuf]) -> Vec<Vec<Vec<u32>>> {
    clips
        .iter()
        .map(|c| {
            let s = voxtrace::audio::load_mono_16k(c).unwrap();
            let t = model.transcribe(&s, tok, &device()).unwrap();
            t.windows.into_iter().map(|w| w.output.token_ids).collect()
        })
        .collect()
}

/// Five corpus clips of different speakers and lengths (1.5 s to 11 s).
fn clips() -> Vec<PathBuf> {
    [
        "jfk",
        "1272-128104-0000",
        "LJ002-0020",
        "sense_and_sensibility_01_austen_64kb-0870",
        "goforward",
    ]
    .iter()
    .map(|c| shared_audio().join(format!("{c}.wav")))
    .collect()
}

/// Token-exact: the f32 file against the CTranslate2 folder, the q8_0 and q4_0 files (as
/// `voxtrace quantize` writes them) against the folder packed in memory. The f16 and bf16
/// files are reported only (their products are `nn::half`'s, not the f32 ones).
#[test]
fn gguf_transcribes_token_exact_with_the_in_memory_model() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = require_weights();
    let clips = clips();
    let dev = device();
    let folder_tok = WhisperTokenizer::from_file(&dir.join("tokenizer.json")).unwrap();
    let f32_ids = ids_of(&Whisper::load(&dir, &dev).unwrap(), &folder_tok, &clips);
    for ty in ["f32", "q8_0", "q4_0", "f16", "bf16"] {
        let file = ours(ty, tmp.path());
        let (m, tok) = Whisper::load_gguf(&file, &dev).unwrap();
        let got = ids_of(&m, &tok, &clips);
        let want = match ty.parse::<QuantKind>() {
            Ok(kind) => {
                let mut q = Whisper::load(&dir, &dev).unwrap();
                q.quantize(kind).unwrap();
                ids_of(&q, &folder_tok, &clips)
            }
            Err(_) => f32_ids.clone(),
        };
        if ty.starts_with("bf") || ty == "f16" {
            let same = got.iter().zip(&want).filter(|(a, b)| a == b).count();
            eprintln!("{ty}: {same} of {} clips token-exact with f32", clips.len());
            continue;
        }
        for ((c, a), b) in clips.iter().zip(&got).zip(&want) {
            assert_eq!(a, b, "{ty}: {}", c.display());
        }
        eprintln!("{ty}: {} clips token-exact", clips.len());
    }
}

/// The commands take the file as `--model`: `transcribe` prints what `transcribe --quant q8_0`
/// on the folder prints, `trace` records the packed layers, `eval`'s `whisper:` spec scores it
/// with the file as its weights.
#[test]
fn commands_take_a_whisper_gguf() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = require_weights();
    let file = ours("q8_0", tmp.path());
    let wav = shared_audio().join("jfk.wav");
    let run = |args: &[&str]| {
        let o = voxtrace(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let from_file = run(&["transcribe", "--json", "--model", s(&file), s(&wav)]);
    let packed = run(&[
        "transcribe",
        "--json",
        "--quant",
        "q8_0",
        "--model",
        s(&dir),
        s(&wav),
    ]);
    let text = |out: &str| -> serde_json::Value {
        let j: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
        j["segments"].clone()
    };
    assert_eq!(text(&from_file), text(&packed));
    assert!(
        from_file.contains("ask not what your country"),
        "{from_file}"
    );

    let trace = tmp.path().join("trace.safetensors");
    run(&[
        "trace",
        "--model",
        s(&file),
        s(&wav),
        "--out",
        s(&trace),
        "--filter",
        "model.encoder.layers.0.*",
    ]);
    assert!(trace.is_file());

    let manifest = tmp.path().join("m.tsv");
    std::fs::write(
        &manifest,
        "id\tfile\treference\njfk\tjfk.wav\tAnd so my fellow Americans, ask not what your country can do for you, ask what you can do for your country.\n",
    )
    .unwrap();
    let spec = format!("g=whisper:{}", s(&file));
    let o = voxtrace(&[
        "eval",
        "--manifest",
        s(&manifest),
        "--audio-root",
        s(&shared_audio()),
        "--system",
        &spec,
        "--out",
        s(tmp.path()),
        "--run-id",
        "gguf",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let results = std::fs::read_to_string(tmp.path().join("gguf/results.json")).unwrap();
    assert!(results.contains("linear layers q8_0"), "{results}");
    assert!(results.contains("ours-q8_0.gguf"), "{results}");
}

/// Re-write the GGUF `src` with `edit` applied to its metadata and tensors (name, type, dims
/// in ggml order, bytes).
#[allow(clippy::type_complexity)]
fn rewrite(
    src: &Path,
    out: &Path,
    edit: impl FnOnce(&mut Vec<(String, Value)>, &mut Vec<(TensorSpec, Vec<u8>)>),
) {
    let mm = map_file(src).unwrap();
    let g = Gguf::parse(&mm, src).unwrap();
    let mut kv: Vec<(String, Value)> = g
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_value()))
        .collect();
    let mut tensors: Vec<(TensorSpec, Vec<u8>)> = g
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
    edit(&mut kv, &mut tensors);
    let refs: Vec<(TensorSpec, &[u8])> = tensors
        .iter()
        .map(|(s, b)| (s.clone(), b.as_slice()))
        .collect();
    write_gguf(out, &kv, &refs).unwrap();
}

/// Damaged or incomplete Whisper GGUFs (from the reference script's q8_0 file) are refused by
/// `voxtrace transcribe` with exit 2, the file and the tensor or key named, no panic.
#[test]
fn bad_whisper_ggufs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let good = reference_gguf("q8_0", tmp.path());
    let wav = shared_audio().join("LJ002-0020.wav");
    let p = |n: &str| tmp.path().join(n);
    let q = "model.decoder.layers.1.encoder_attn.q_proj.weight";
    let ln = "model.encoder.layer_norm.weight";
    rewrite(&good, &p("no-tensor.gguf"), |_, t| {
        t.retain(|(s, _)| s.name != q);
    });
    rewrite(&good, &p("shape.gguf"), |_, t| {
        let (spec, bytes) = t.iter_mut().find(|(s, _)| s.name == ln).unwrap();
        spec.dims = vec![383];
        bytes.truncate(383 * 4);
    });
    rewrite(&good, &p("packed-shape.gguf"), |_, t| {
        // [384, 384] Q8_0 claimed as [352, 384]: fewer rows, bytes to match.
        let (spec, bytes) = t.iter_mut().find(|(s, _)| s.name == q).unwrap();
        spec.dims = vec![384, 352];
        bytes.truncate(352 * 384 / 32 * 34);
    });
    rewrite(&good, &p("no-key.gguf"), |kv, _| {
        kv.retain(|(k, _)| k != "whisper.d_model");
    });
    rewrite(&good, &p("no-tokenizer.gguf"), |kv, _| {
        kv.retain(|(k, _)| k != "tokenizer.huggingface.json");
    });
    rewrite(&good, &p("bad-ids.gguf"), |kv, _| {
        for (k, v) in kv.iter_mut() {
            if k == "whisper.generation.suppress_tokens" {
                *v = Value::Array {
                    elem: voxtrace::quant::gguf::ValueType::U32,
                    items: vec![Value::U32(1), Value::U32(99_999)],
                };
            }
        }
    });
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(p("cut.gguf"), &bytes[..bytes.len() - 4096]).unwrap();
    for (name, needles) in [
        ("no-tensor.gguf", vec![format!("missing tensor {q}")]),
        (
            "shape.gguf",
            vec![format!("tensor {ln}: expected shape [384], found [383]")],
        ),
        (
            "packed-shape.gguf",
            vec![format!(
                "tensor {q}: expected shape [384, 384], found [352, 384]"
            )],
        ),
        ("no-key.gguf", vec!["whisper.d_model".to_string()]),
        (
            "no-tokenizer.gguf",
            vec!["tokenizer.huggingface.json".to_string()],
        ),
        (
            "bad-ids.gguf",
            vec![
                "whisper.generation.suppress_tokens".to_string(),
                "99999".to_string(),
            ],
        ),
        ("cut.gguf", vec!["beyond the end of the file".to_string()]),
    ] {
        let file = p(name);
        let out = voxtrace(&["transcribe", "--model", s(&file), s(&wav)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}");
        assert!(err.contains(s(&file)), "{name}: file not named: {err}");
        for n in needles {
            assert!(err.contains(&n), "{name}: {n:?} not in {err}");
        }
        assert!(!err.contains("panicked"), "{name}: {err}");
    }
}
