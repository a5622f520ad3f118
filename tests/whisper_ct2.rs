//! CTranslate2 reader and Whisper mapping on the real Whisper tiny.en `model.bin`.
//!
//! Needs the weights: `reference/fetch_whisper_tiny_en.sh` (or `just models`) puts them in
//! `<crate>/models-cache/whisper-tiny.en`; `VOXTRACE_WHISPER_DIR` overrides the folder.
//! These tests FAIL (never skip) when the file is missing.
//!
//! Checked against committed fixtures made by `reference/whisper_reference.py`
//! (transformers 5.23.0): `fixtures/whisper_tiny_en/hf_state_dict_summary.json` (every
//! transformers state-dict name, shape, sums and first values) and the PyTorch activation
//! dumps `fixtures/whisper_tiny_en/dumps/*.safetensors` (Linear, LayerNorm, Conv1d and
//! embedding modules recomputed here from the mapped weights).

mod common;

use std::collections::HashMap;

use common::whisper::{dump_path, fixture, model_dir};
use common::{Fixture, shared_audio};
use safetensors::SafeTensors;
use serde::Deserialize;
use voxtrace::models::whisper::ct2::{
    Ct2DType, Ct2Model, HfTensor, to_hf_state_dict, whisper_dims,
};

const MODEL_SHA256: &str = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a";

fn load_model() -> Ct2Model {
    let path = model_dir().join("model.bin");
    assert!(
        path.is_file(),
        "Whisper tiny.en weights missing: {} does not exist. Run `reference/fetch_whisper_tiny_en.sh` \
         (or `just models`), or set VOXTRACE_WHISPER_DIR to a folder holding model.bin.",
        path.display()
    );
    Ct2Model::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn real_model_bin_has_expected_hash_header_and_variables() {
    use sha2::Digest;
    let path = model_dir().join("model.bin");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}. Run reference/fetch_whisper_tiny_en.sh or set VOXTRACE_WHISPER_DIR.",
            path.display()
        )
    });
    let hash: String = sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        hash,
        MODEL_SHA256,
        "{} is not the pinned file",
        path.display()
    );

    let m = load_model();
    assert_eq!(
        (m.binary_version, m.spec.as_str(), m.spec_revision),
        (6, "WhisperSpec", 3)
    );
    assert_eq!(m.variables.len(), 148);
    assert_eq!(
        m.aliases,
        vec![(
            "decoder/projection/weight".to_string(),
            "decoder/embeddings/weight".to_string()
        )]
    );
    // Scalars (flags and head counts) and their values.
    let mut scalars: Vec<(String, Ct2DType, i64)> = m
        .variables
        .iter()
        .filter(|v| v.shape.is_empty())
        .map(|v| (v.name.clone(), v.dtype, v.to_i64(&m.path).unwrap()[0]))
        .collect();
    scalars.sort_by(|a, b| a.0.cmp(&b.0));
    let want: Vec<(String, Ct2DType, i64)> = [
        ("decoder/activation", Ct2DType::I8, 3),
        ("decoder/alibi", Ct2DType::I8, 0),
        ("decoder/alignment_heads", Ct2DType::I16, 1),
        ("decoder/alignment_layer", Ct2DType::I16, -1),
        ("decoder/num_heads", Ct2DType::I16, 6),
        ("decoder/pre_norm", Ct2DType::I8, 1),
        ("decoder/scale_embeddings", Ct2DType::I8, 0),
        ("decoder/start_from_zero_embedding", Ct2DType::I8, 0),
        ("encoder/num_heads", Ct2DType::I16, 6),
    ]
    .iter()
    .map(|(n, d, v)| (n.to_string(), *d, *v))
    .collect();
    assert_eq!(scalars, want);
    // Every tensor is float16; the byte counts add up.
    let tensors: Vec<_> = m.variables.iter().filter(|v| !v.shape.is_empty()).collect();
    assert_eq!(tensors.len(), 139);
    assert!(tensors.iter().all(|v| v.dtype == Ct2DType::F16));
    let params: usize = tensors.iter().map(|v| v.numel()).sum();
    assert_eq!(
        params, 37_764_864,
        "parameter count (incl. both position tables)"
    );
    let shapes: HashMap<&str, &[usize]> = m
        .variables
        .iter()
        .map(|v| (v.name.as_str(), v.shape.as_slice()))
        .collect();
    for (name, shape) in [
        ("encoder/conv1/weight", &[384usize, 80, 3][..]),
        ("encoder/conv2/weight", &[384, 384, 3]),
        ("encoder/position_encodings/encodings", &[1500, 384]),
        (
            "encoder/layer_3/self_attention/linear_0/weight",
            &[1152, 384],
        ),
        ("encoder/layer_3/ffn/linear_1/weight", &[384, 1536]),
        ("decoder/embeddings/weight", &[51864, 384]),
        ("decoder/position_encodings/encodings", &[448, 384]),
        ("decoder/layer_3/attention/linear_0/weight", &[384, 384]),
        ("decoder/layer_3/attention/linear_1/weight", &[768, 384]),
        ("decoder/layer_3/attention/linear_2/weight", &[384, 384]),
        ("decoder/layer_norm/gamma", &[384]),
    ] {
        assert_eq!(shapes.get(name).copied(), Some(shape), "{name}");
    }
}

#[test]
fn real_model_dims_are_whisper_tiny_en() {
    let dims = whisper_dims(&load_model()).unwrap();
    assert_eq!(
        dims,
        voxtrace::models::whisper::WhisperConfig {
            num_mel_bins: 80,
            d_model: 384,
            encoder_layers: 4,
            decoder_layers: 4,
            encoder_attention_heads: 6,
            decoder_attention_heads: 6,
            encoder_ffn_dim: 1536,
            decoder_ffn_dim: 1536,
            vocab_size: 51864,
            max_source_positions: 1500,
            max_target_positions: 448,
        }
    );
}

#[derive(Deserialize)]
struct Summary {
    tensors: Vec<SummaryTensor>,
}

#[derive(Deserialize)]
struct SummaryTensor {
    name: String,
    shape: Vec<usize>,
    sum: f64,
    abs_sum: f64,
    first: Vec<f32>,
}

fn state_dict() -> HashMap<String, HfTensor> {
    to_hf_state_dict(&load_model())
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|t| (t.name.clone(), t))
        .collect()
}

/// The Rust mapping yields exactly the tensors transformers loaded (strictly) in
/// `reference/whisper_reference.py`: same names, order, shapes and values.
#[test]
fn hf_state_dict_matches_transformers_reference_summary() {
    let path = fixture("hf_state_dict_summary.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let summary: Summary = serde_json::from_str(&text).unwrap();
    let sd = to_hf_state_dict(&load_model()).unwrap();
    let got: Vec<&str> = sd.iter().map(|t| t.name.as_str()).collect();
    let want: Vec<&str> = summary.tensors.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        got, want,
        "names/order differ from the transformers state dict"
    );
    assert_eq!(sd.len(), 168);
    for (t, s) in sd.iter().zip(&summary.tensors) {
        assert_eq!(t.shape, s.shape, "{}", t.name);
        assert_eq!(
            t.data.len(),
            t.shape.iter().product::<usize>(),
            "{}",
            t.name
        );
        assert_eq!(
            &t.data[..s.first.len()],
            s.first.as_slice(),
            "{}: first values",
            t.name
        );
        // Sums in f64 of the same f32 values: only summation order differs.
        let sum: f64 = t.data.iter().map(|&x| f64::from(x)).sum();
        let abs: f64 = t.data.iter().map(|&x| f64::from(x).abs()).sum();
        assert!(
            (abs - s.abs_sum).abs() <= 1e-9 * s.abs_sum.max(1.0),
            "{}: |x| sum {abs} vs {}",
            t.name,
            s.abs_sum
        );
        assert!(
            (sum - s.sum).abs() <= 1e-9 * s.abs_sum.max(1.0),
            "{}: sum {sum} vs {}",
            t.name,
            s.sum
        );
    }
}

/// Max |a - b| / (1 + max |b|): f32 dot products of length <= 1536 from PyTorch (MKL/
/// oneDNN blocked sums) and here (sequential f64) differ by a few ulps of the partial sums.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f64, |m, &x| m.max(f64::from(x).abs()));
    let diff = a.iter().zip(b).fold(0f64, |m, (&x, &y)| {
        m.max((f64::from(x) - f64::from(y)).abs())
    });
    diff / (1.0 + scale)
}

fn linear(x: &[f32], w: &HfTensor, b: Option<&HfTensor>) -> Vec<f32> {
    let (out_f, in_f) = (w.shape[0], w.shape[1]);
    assert_eq!(x.len() % in_f, 0);
    let mut y = Vec::with_capacity(x.len() / in_f * out_f);
    for row in x.chunks_exact(in_f) {
        for o in 0..out_f {
            let wr = &w.data[o * in_f..(o + 1) * in_f];
            let mut s: f64 = b.map_or(0.0, |b| f64::from(b.data[o]));
            for (a, c) in row.iter().zip(wr) {
                s += f64::from(*a) * f64::from(*c);
            }
            y.push(s as f32);
        }
    }
    y
}

fn layer_norm(x: &[f32], g: &HfTensor, b: &HfTensor) -> Vec<f32> {
    let d = g.data.len();
    let mut y = Vec::with_capacity(x.len());
    for row in x.chunks_exact(d) {
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / d as f64;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / d as f64;
        let inv = 1.0 / (var + 1e-5).sqrt();
        for (i, &v) in row.iter().enumerate() {
            y.push(
                ((f64::from(v) - mean) * inv * f64::from(g.data[i]) + f64::from(b.data[i])) as f32,
            );
        }
    }
    y
}

const TOL: f64 = 2e-5;

/// Every Linear and LayerNorm module recorded by PyTorch, recomputed with the Rust-mapped
/// weights, reproduces PyTorch's output; so names, splits and layouts are right.
#[test]
fn mapped_weights_reproduce_pytorch_module_outputs() {
    let sd = state_dict();
    let get = |n: &str| {
        sd.get(n)
            .unwrap_or_else(|| panic!("{n} not in mapped state dict"))
    };
    for clip in ["goforward", "1272-128104-0000"] {
        let dump = Fixture::open(dump_path(clip));
        let names = dump.names();
        let mut checked_linear = 0;
        let mut checked_ln = 0;
        let mut worst = 0f64;
        for name in &names {
            let Some(module) = name.strip_suffix(".out") else {
                continue;
            };
            let leaf = module.rsplit('.').next().unwrap();
            const LINEAR: [&str; 6] = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"];
            const NORM: [&str; 4] = [
                "self_attn_layer_norm",
                "encoder_attn_layer_norm",
                "final_layer_norm",
                "layer_norm",
            ];
            if !LINEAR.contains(&leaf) && !NORM.contains(&leaf) {
                continue;
            }
            let (_, x) = dump.f32(&format!("{module}.in.0"));
            let (shape, y) = dump.f32(name);
            let ours = match leaf {
                "q_proj" | "k_proj" | "v_proj" | "out_proj" | "fc1" | "fc2" => {
                    checked_linear += 1;
                    let w = get(&format!("{module}.weight"));
                    assert_eq!(*shape.last().unwrap(), w.shape[0], "{clip}: {name}");
                    linear(&x, w, sd.get(&format!("{module}.bias")))
                }
                "self_attn_layer_norm"
                | "encoder_attn_layer_norm"
                | "final_layer_norm"
                | "layer_norm" => {
                    checked_ln += 1;
                    layer_norm(
                        &x,
                        get(&format!("{module}.weight")),
                        get(&format!("{module}.bias")),
                    )
                }
                _ => continue,
            };
            let e = rel_err(&ours, &y);
            worst = worst.max(e);
            assert!(e <= TOL, "{clip}: {name}: rel err {e:.3e} > {TOL:.0e}");
        }
        // 4 enc layers x 6 linears + 4 dec layers x 10 linears; 4x2 + 4x3 + 2 layer norms.
        assert_eq!(checked_linear, 4 * 6 + 4 * 10, "{clip}");
        assert_eq!(checked_ln, 4 * 2 + 4 * 3 + 2, "{clip}");
        eprintln!("{clip}: worst linear/layer-norm rel err {worst:.3e}");
    }
}

/// conv1 (on the full input_features), token and position embeddings and the tied
/// output projection, checked against the dumps.
#[test]
fn mapped_conv1_embeddings_and_proj_out_reproduce_pytorch() {
    let sd = state_dict();
    let dump = Fixture::open(dump_path("goforward"));
    let (_, header) = SafeTensors::read_metadata(dump.bytes()).unwrap();
    let meta: HashMap<String, String> = header
        .metadata()
        .clone()
        .expect("goforward dump has no __metadata__");
    assert_eq!(
        meta.get("voxtrace.format").map(String::as_str),
        Some("trace-v1")
    );
    let sliced: serde_json::Value = serde_json::from_str(&meta["voxtrace.sliced"]).unwrap();
    let conv_info = &sliced["model.encoder.conv1.out"];
    assert_eq!(conv_info["full_shape"], serde_json::json!([1, 384, 3000]));
    let frames: Vec<usize> = conv_info["gathers"][0]["indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();

    // conv1: Conv1d(80 -> 384, k=3, padding=1) at the gathered frames.
    let (fshape, feats) = dump.f32("input_features");
    assert_eq!(fshape, [1, 80, 3000]);
    let (cshape, conv_out) = dump.f32("model.encoder.conv1.out");
    assert_eq!(cshape, [1, 384, frames.len()]);
    let w = &sd["model.encoder.conv1.weight"];
    let b = &sd["model.encoder.conv1.bias"];
    let mut ours = vec![0f32; 384 * frames.len()];
    for c in 0..384 {
        for (j, &t) in frames.iter().enumerate() {
            let mut s = f64::from(b.data[c]);
            for ci in 0..80 {
                for k in 0..3 {
                    let src = t as isize + k as isize - 1;
                    if (0..3000).contains(&src) {
                        s += f64::from(w.data[(c * 80 + ci) * 3 + k])
                            * f64::from(feats[ci * 3000 + src as usize]);
                    }
                }
            }
            ours[c * frames.len() + j] = s as f32;
        }
    }
    let e = rel_err(&ours, &conv_out);
    assert!(e <= TOL, "conv1 rel err {e:.3e}");

    // Token and position embeddings: exact row lookups.
    let (_, ids) = dump.i64("model.decoder.embed_tokens.in.0");
    let (_, input_ids) = dump.i64("input_ids");
    assert_eq!(ids, input_ids);
    let (_, emb) = dump.f32("model.decoder.embed_tokens.out");
    let table = &sd["model.decoder.embed_tokens.weight"];
    let want: Vec<f32> = ids
        .iter()
        .flat_map(|&i| table.data[i as usize * 384..(i as usize + 1) * 384].to_vec())
        .collect();
    assert_eq!(emb, want, "embed_tokens rows");
    let (pshape, pos) = dump.f32("model.decoder.embed_positions.out");
    let t = ids.len();
    assert_eq!(pos.len(), t * 384, "{pshape:?}");
    assert_eq!(
        pos,
        sd["model.decoder.embed_positions.weight"].data[..t * 384].to_vec()
    );

    // Tied output projection: logits = decoder final hidden @ proj_out^T.
    let (_, h) = dump.f32("proj_out.in.0");
    let (lshape, logits) = dump.f32("logits");
    assert_eq!(lshape, [1, t, 51864]);
    let ours = linear(&h, &sd["proj_out.weight"], None);
    let e = rel_err(&ours, &logits);
    assert!(e <= TOL, "proj_out rel err {e:.3e}");
    // Greedy check: argmax of the teacher-forced logits is the generated continuation.
    let (_, generated) = dump.i64("generated_ids");
    for (p, row) in logits.chunks_exact(51864).enumerate() {
        let arg = row
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |m, (i, &v)| if v > m.1 { (i, v) } else { m },
            )
            .0;
        assert_eq!(arg as i64, generated[p + 1], "position {p}");
    }
}

/// The dumps are well-formed trace-v1 files: `voxtrace.order` lists exactly the stored
/// tensors, every gathered tensor's axis has as many entries as its index list, and the
/// generated sequence starts with the English no-timestamps prompt and ends with EOT.
#[test]
fn dumps_are_consistent_trace_v1_files() {
    for clip in ["goforward", "1272-128104-0000"] {
        let dump = Fixture::open(dump_path(clip));
        let (_, header) = SafeTensors::read_metadata(dump.bytes()).unwrap();
        let meta = header.metadata().clone().expect("no __metadata__");
        assert_eq!(meta["voxtrace.format"], "trace-v1");
        let order: Vec<String> = serde_json::from_str(&meta["voxtrace.order"]).unwrap();
        let mut names = dump.names();
        let mut sorted_order = order.clone();
        names.sort();
        sorted_order.sort();
        assert_eq!(sorted_order, names, "{clip}: order vs stored names");
        assert_eq!(order.first().map(String::as_str), Some("input_features"));
        let sliced: HashMap<String, serde_json::Value> =
            serde_json::from_str(&meta["voxtrace.sliced"]).unwrap();
        assert!(
            sliced.len() > 50,
            "{clip}: {} gathered tensors",
            sliced.len()
        );
        let st = dump.st();
        for (name, info) in &sliced {
            let shape = st.tensor(name).unwrap().shape().to_vec();
            let full: Vec<usize> = serde_json::from_value(info["full_shape"].clone()).unwrap();
            assert_eq!(shape.len(), full.len(), "{clip}: {name}");
            for g in info["gathers"].as_array().unwrap() {
                let axis = g["axis"].as_u64().unwrap() as usize;
                let n = g["indices"].as_array().unwrap().len();
                assert_eq!(shape[axis], n, "{clip}: {name} axis {axis}");
                assert!([1500, 3000].contains(&full[axis]), "{clip}: {name}");
            }
        }
        let (_, generated) = dump.i64("generated_ids");
        assert_eq!(&generated[..2], &[50257, 50362], "{clip}");
        assert_eq!(*generated.last().unwrap(), 50256, "{clip}");
        let (_, input_ids) = dump.i64("input_ids");
        assert_eq!(input_ids, generated[..input_ids.len()].to_vec(), "{clip}");
    }
}

/// `transformers_transcripts.json` has one entry per clip of both corpus manifests, each a
/// full greedy sequence [SOT, NO_TIMESTAMPS, ..., EOT] with non-empty text.
#[test]
fn transformers_transcripts_cover_every_corpus_clip() {
    let dir = shared_audio();
    let mut ids = Vec::new();
    for manifest in [dir.join("manifest.tsv"), dir.join("tts/manifest.tsv")] {
        let text = std::fs::read_to_string(&manifest)
            .unwrap_or_else(|e| panic!("{}: {e} (set VOXTRACE_AUDIO_DIR)", manifest.display()));
        ids.extend(
            text.lines()
                .skip(1)
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.split('\t').next().unwrap().to_string()),
        );
    }
    let path = fixture("transformers_transcripts.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let clips = json["clips"].as_array().unwrap();
    let got: Vec<String> = clips
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ids);
    for c in clips {
        let toks: Vec<i64> = serde_json::from_value(c["token_ids"].clone()).unwrap();
        assert_eq!(&toks[..2], &[50257, 50362], "{}", c["id"]);
        assert_eq!(*toks.last().unwrap(), 50256, "{}", c["id"]);
        assert!(
            toks[2..toks.len() - 1]
                .iter()
                .all(|&t| (0..50256).contains(&t)),
            "{}",
            c["id"]
        );
        assert!(!c["text"].as_str().unwrap().is_empty(), "{}", c["id"]);
    }
}
