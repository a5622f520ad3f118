//! Voxtral Realtime GGUF in voxtral.cpp's naming (`models::voxtral::gguf`, `voxtrace quantize`):
//! the file `voxtrace quantize` writes equals, tensor by tensor and key by key, the one
//! `reference/voxtral_cpp_gguf.py` writes with PyPI `gguf` (its `gguf.quants.quantize` for the
//! Q8_0 / Q4_0 bytes); a reference-written file loads here, with the model the file holds
//! (packed weights used in place, the others widened to f32) and its tokenizer; and transcribes
//! like the checkpoint it came from.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use voxtrace::models::voxtral::Voxtral;
use voxtrace::nn::embedding::TokenEmbedding;
use voxtrace::nn::qlinear::LinearWeight;
use voxtrace::quant::GgmlType;
use voxtrace::quant::gguf::{Gguf, Value, map_file};

fn python() -> String {
    std::env::var("VOXTRACE_PYTHON").unwrap_or_else(|_| {
        root()
            .join(".venv/bin/python")
            .to_string_lossy()
            .into_owned()
    })
}

/// Run `reference/voxtral_cpp_gguf.py` on the tiny fixture (Mistral layout).
fn reference_gguf(ty: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("ref-{ty}.gguf"));
    let st = std::process::Command::new(python())
        .arg(root().join("reference/voxtral_cpp_gguf.py"))
        .arg("--model")
        .arg(voxtral_fixture("mistral"))
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

fn ours(ty: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("ours-{ty}.gguf"));
    voxtrace_ok(&[
        "quantize",
        "--model",
        s(&voxtral_fixture("mistral")),
        "--type",
        ty,
        "--out",
        s(&out),
    ]);
    out
}

#[test]
fn quantize_writes_what_the_reference_writes() {
    let tmp = tempfile::tempdir().unwrap();
    for ty in ["f32", "f16", "q8_0", "q4_0"] {
        let (r, o) = (reference_gguf(ty, tmp.path()), ours(ty, tmp.path()));
        let (rm, om) = (map_file(&r).unwrap(), map_file(&o).unwrap());
        let (rg, og) = (Gguf::parse(&rm, &r).unwrap(), Gguf::parse(&om, &o).unwrap());
        // Tensors: same names, types, shapes and bytes (the mel filter bank within f32 rounding:
        // both compute it in f64, numpy's and libm's exp/log may differ in the last bit).
        let names = |g: &Gguf| -> Vec<String> {
            let mut v: Vec<String> = g.tensors().iter().map(|t| t.name.to_string()).collect();
            v.sort();
            v
        };
        assert_eq!(names(&og), names(&rg), "{ty}: tensor names");
        let mut types = BTreeMap::new();
        for rt in rg.tensors() {
            let ot = og.tensor(rt.name).unwrap();
            assert_eq!((ot.ty, &ot.dims), (rt.ty, &rt.dims), "{ty}: {}", rt.name);
            *types.entry(rt.ty.name()).or_insert(0) += 1;
            if rt.name == "audio.mel_filters" {
                let f = |b: &[u8]| -> Vec<f32> {
                    b.chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                        .collect()
                };
                let (a, b) = (f(ot.data), f(rt.data));
                let (ok, worst) = allclose(&a, &b, 1e-7, 1e-6);
                assert!(ok, "{ty}: mel filters differ by {worst}");
            } else {
                assert!(ot.data == rt.data, "{ty}: tensor {} bytes differ", rt.name);
            }
        }
        // The quantized files quantize the matrices voxtral.cpp's quantizer does: 2 x 7
        // encoder and 2 x 7 decoder linear layers, the 2 adapter layers, 2 x 2 ADA-norm
        // matrices and the token embedding; the conv kernels stay F16.
        match ty {
            "q8_0" => assert_eq!(types.get("Q8_0"), Some(&35), "{types:?}"),
            "q4_0" => assert_eq!(types.get("Q4_0"), Some(&35), "{types:?}"),
            _ => {}
        }
        if ty != "f32" {
            assert_eq!(
                types.get("F16"),
                Some(&if ty == "f16" { 37 } else { 2 }),
                "{types:?}"
            );
        }
        // Metadata: every reference key with the same value (ours adds `voxtrace.*` keys).
        for (k, rv) in rg.metadata() {
            let ov = og
                .get(k)
                .unwrap_or_else(|| panic!("{ty}: metadata key {k} missing"));
            let (rv, ov) = (rv.to_value(), ov.to_value());
            if k == &"voxtral.audio.mel_filters_sha256" {
                continue; // the hash of the bank above
            }
            assert_eq!(ov, rv, "{ty}: metadata {k}");
        }
        for (k, _) in og.metadata() {
            assert!(
                rg.get(k).is_some() || k.starts_with("voxtrace."),
                "{ty}: extra key {k}"
            );
        }
    }
}

/// An HF folder (the fixture's `hf/`, which upstream's converter layout gives: f32
/// `model.safetensors` with q/k rows permuted for half-split RoPE, `config.json`) with the
/// checkpoint's `tekken.json` beside it quantizes to the file its Mistral folder gives: every
/// tensor's name, type, shape and bytes (so the q/k rows are back in interleaved order), and
/// every metadata key the HF config determines. The Mistral `params.json` keys that
/// `config.json` has no counterpart for are the only ones missing.
#[test]
fn hf_folder_quantizes_to_the_mistral_folders_file() {
    let tmp = tempfile::tempdir().unwrap();
    let hf = tmp.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    for f in ["model.safetensors", "config.json"] {
        std::fs::copy(voxtral_fixture("hf").join(f), hf.join(f)).unwrap();
    }
    // Without the tokenizer the file would carry: refused, naming it.
    let out = voxtrace(&[
        "quantize",
        "--model",
        s(&hf),
        "--type",
        "q8_0",
        "--out",
        s(&tmp.path().join("x.gguf")),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tekken.json"), "{err}");
    assert!(!tmp.path().join("x.gguf").exists());
    std::fs::copy(
        voxtral_fixture("mistral").join("tekken.json"),
        hf.join("tekken.json"),
    )
    .unwrap();
    let only_in_params_json = [
        "voxtral.params.model_max_length",
        "voxtral.params.model_parallel",
        "voxtral.params.multimodal.whisper_model_args.encoder_args.use_cache",
    ];
    for ty in ["f32", "bf16", "q8_0", "q4_0"] {
        let m = ours(ty, tmp.path());
        let h = tmp.path().join(format!("hf-{ty}.gguf"));
        voxtrace_ok(&["quantize", "--model", s(&hf), "--type", ty, "--out", s(&h)]);
        let (mm, hm) = (map_file(&m).unwrap(), map_file(&h).unwrap());
        let (mg, hg) = (Gguf::parse(&mm, &m).unwrap(), Gguf::parse(&hm, &h).unwrap());
        let names =
            |g: &Gguf| -> Vec<String> { g.tensors().iter().map(|t| t.name.to_string()).collect() };
        assert_eq!(names(&hg), names(&mg), "{ty}: tensor names and order");
        for mt in mg.tensors() {
            let ht = hg.tensor(mt.name).unwrap();
            assert_eq!((ht.ty, &ht.dims), (mt.ty, &mt.dims), "{ty}: {}", mt.name);
            assert!(ht.data == mt.data, "{ty}: tensor {} bytes differ", mt.name);
        }
        let mut missing = Vec::new();
        for (k, mv) in mg.metadata() {
            match hg.get(k) {
                Some(hv) => assert_eq!(hv.to_value(), mv.to_value(), "{ty}: metadata {k}"),
                None => missing.push(k.to_string()),
            }
        }
        missing.sort();
        assert_eq!(
            missing, only_in_params_json,
            "{ty}: keys only the Mistral file has"
        );
        for (k, _) in hg.metadata() {
            assert!(mg.get(k).is_some(), "{ty}: extra key {k}");
        }
    }
}

/// A reference-written f32 file, and one `voxtrace quantize` wrote, load into the exact model: upstream's tokens on a corpus clip
/// and the fixture's synthetic clip, through `voxtrace transcribe --json` (GGUF tokenizer).
#[test]
fn reference_f32_gguf_transcribes_like_the_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    // The reference file (voxtral.cpp's keys only) and ours (with `voxtrace.tekken.audio`).
    for f32_file in [reference_gguf("f32", tmp.path()), ours("f32", tmp.path())] {
        for (wav, dump) in [
            (shared_audio().join("001.wav"), "cards-001.safetensors"),
            (
                voxtral_fixture("synthetic.wav"),
                "synthetic.e2e.safetensors",
            ),
        ] {
            let out = voxtrace(&["transcribe", "--json", "--model", s(&f32_file), s(&wav)]);
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let stdout = String::from_utf8(out.stdout).unwrap();
            let j: serde_json::Value =
                serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
            let ids: Vec<i64> = j["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_i64().unwrap())
                .collect();
            let expected = read_dump(&voxtral_fixture(&format!("dumps/{dump}")))
                .get("generated_ids")
                .i64
                .clone();
            assert_eq!(ids, expected, "{} {}", f32_file.display(), wav.display());
        }
    }
}

/// A reference-written Q8_0 / Q4_0 file loads with every quantized linear layer packed from
/// the file's own bytes (never re-quantized) and every other tensor equal to the file's values
/// widened to f32.
#[test]
fn quantized_gguf_loads_the_files_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    for (ty, gt) in [("q8_0", GgmlType::Q8_0), ("q4_0", GgmlType::Q4_0)] {
        let file = reference_gguf(ty, tmp.path());
        let (mut model, tok) = Voxtral::load_gguf(&file, &device()).unwrap();
        assert!(tok.streaming_pad_id().is_ok());
        let mm = map_file(&file).unwrap();
        let g = Gguf::parse(&mm, &file).unwrap();
        let mut packed = 0;
        for (name, l) in model.linears_mut() {
            let compact = gguf_name(&name);
            let t = g.tensor(&compact).unwrap_or_else(|| panic!("{compact}"));
            assert_eq!(t.ty, gt, "{compact}");
            match l {
                LinearWeight::Packed(p) => {
                    assert!(p.weight.bytes() == t.data, "{ty}: {compact} bytes");
                    packed += 1;
                }
                other => panic!("{ty}: {name} loaded as {}", other.precision()),
            }
        }
        assert_eq!(packed, 30);
        // The token embedding (also the tied head) is quantized in the file too; used as stored.
        let t = g.tensor("tok_embeddings.weight").unwrap();
        assert_eq!(t.ty, gt);
        match &model.net.model.language_model.embed_tokens {
            TokenEmbedding::Packed(p) => assert!(p.bytes() == t.data, "{ty}: tok_embeddings"),
            other => panic!("{ty}: tok_embeddings loaded as {}", other.precision()),
        }
        // A norm (F32 in the file).
        let t = g.tensor("dec.blk.1.ffn_norm.weight").unwrap();
        assert_eq!(t.ty, GgmlType::F32);
        let want = voxtrace::quant::blocks::dequantize(t.data, t.ty).unwrap();
        let got = model.net.model.language_model.layers[1]
            .post_attention_layernorm
            .weight
            .val()
            .into_data()
            .try_to_vec::<f32>()
            .unwrap();
        assert_eq!(got, want, "{ty}: ffn_norm");
        let file_type = g.get("general.file_type").map(|v| v.to_value());
        assert_eq!(
            file_type,
            Some(Value::U32(if ty == "q8_0" { 7 } else { 2 }))
        );
    }
}

/// voxtral.cpp name of an upstream module path's weight.
fn gguf_name(hf: &str) -> String {
    let r =
        |re: &str, rep: &str, s: &str| regex::Regex::new(re).unwrap().replace(s, rep).into_owned();
    let s = r(r"^model\.audio_tower\.layers\.", "enc.blk.", hf);
    let s = r(r"^model\.language_model\.layers\.", "dec.blk.", &s);
    let s = r(r"\.self_attn\.([qkvo])_proj$", ".attn_$1", &s);
    let s = r(r"\.mlp\.gate_proj$", ".ffn_w1", &s);
    let s = r(r"\.mlp\.down_proj$", ".ffn_w2", &s);
    let s = r(r"\.mlp\.up_proj$", ".ffn_w3", &s);
    let s = r(r"^model\.multi_modal_projector\.linear_1$", "adapter.0", &s);
    let s = r(r"^model\.multi_modal_projector\.linear_2$", "adapter.2", &s);
    format!("{s}.weight")
}

/// Damaged or foreign GGUF files are refused with the file named, exit 2, no panic.
#[test]
fn bad_gguf_models_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let good = reference_gguf("q8_0", tmp.path());
    let bytes = std::fs::read(&good).unwrap();
    let clip = voxtral_fixture("synthetic.wav");
    // Truncated: the tensor data ends early.
    let cut = tmp.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    // Another architecture.
    let arch = tmp.path().join("arch.gguf");
    let needle = b"voxtral_realtime";
    let pos = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap();
    let mut other = bytes.clone();
    other[pos..pos + needle.len()].copy_from_slice(b"voxtral_realtimX");
    std::fs::write(&arch, &other).unwrap();
    for (file, needle) in [(&cut, "cut.gguf"), (&arch, "general.architecture")] {
        let out = voxtrace(&["transcribe", "--model", s(file), s(&clip)]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(needle), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// `interleave_rope_rows` on a hand-sized case: per head, HF's half-split rows
/// `[x0, x1, y0, y1]` become Mistral's pairs `[x0, y0, x1, y1]`; sizes that are not whole heads
/// of an even width are errors.
#[test]
fn rope_rows_interleave_per_head() {
    use voxtrace::models::voxtral::loader::interleave_rope_rows;
    // 2 heads of 4 rows, 2 columns; value = 10 * row + column.
    let hf: Vec<f32> = (0..8)
        .flat_map(|r| [10.0 * r as f32, 10.0 * r as f32 + 1.0])
        .collect();
    let out = interleave_rope_rows(&hf, 8, 2, 2).unwrap();
    let rows: Vec<f32> = out.chunks(2).map(|c| c[0] / 10.0).collect();
    assert_eq!(rows, [0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    assert!(out.chunks(2).all(|c| c[1] == c[0] + 1.0));
    assert!(interleave_rope_rows(&hf, 8, 2, 3).is_err());
    assert!(interleave_rope_rows(&hf[..6], 6, 1, 2).is_err());
    assert!(interleave_rope_rows(&hf, 8, 2, 0).is_err());
    assert!(interleave_rope_rows(&hf, 8, 1, 2).is_err());
}
