//! Voxtral Realtime with its linear layers packed as Q8_0 / Q4_0 (`Voxtral::quantize`,
//! `nn::qlinear`): which layers are packed, and what it costs in tokens on the tiny fixture
//! (random weights, the harshest case: its logit margins are small) in both layouts, in the
//! streaming schedule, against the f32 model (itself checked against upstream's ids).

mod common;

use common::voxtral::{clip, stream};
use common::*;
use voxtrace::models::voxtral::{Voxtral, WeightLayout};
use voxtrace::nn::qmatmul::QuantKind;
use voxtrace::tokenizer::Tekken;

const CLIPS: [(&str, &str); 4] = [
    ("001.wav", "cards-001.safetensors"),
    ("goforward.wav", "goforward.e2e.safetensors"),
    ("LJ002-0020.wav", "LJ002-0020.e2e.safetensors"),
    ("synthetic", "synthetic.e2e.safetensors"),
];

fn load(layout: WeightLayout) -> Voxtral {
    let dir = match layout {
        WeightLayout::Mistral => "mistral",
        WeightLayout::Hf => "hf",
    };
    Voxtral::load_layout(&voxtral_fixture(dir), layout, &device()).unwrap()
}

fn upstream_ids(dump: &str) -> Vec<i64> {
    read_dump(&voxtral_fixture(&format!("dumps/{dump}")))
        .get("generated_ids")
        .i64
        .clone()
}

#[test]
fn every_linear_layer_is_packed_and_the_rest_stays_f32() {
    let mut model = load(WeightLayout::Mistral);
    let names: Vec<String> = model.linears_mut().into_iter().map(|(n, _)| n).collect();
    // 2 encoder layers x (q, k, v, o, gate, up, down) + 2 projector layers + 2 decoder layers
    // x 7; the LM head is tied to the embedding (not a LinearWeight, packed with it).
    assert_eq!(names.len(), 2 * 7 + 2 + 2 * 7, "{names:?}");
    assert!(names.contains(&"model.audio_tower.layers.1.self_attn.k_proj".to_string()));
    assert!(names.contains(&"model.multi_modal_projector.linear_2".to_string()));
    assert!(names.contains(&"model.language_model.layers.0.mlp.down_proj".to_string()));
    // Every n_in of the tiny model (64, 128, 256) is a multiple of 32: all are packed.
    // The tied token table is packed too (as voxtral.cpp's converter quantizes
    // `tok_embeddings`): one more.
    assert_eq!(model.quantize(QuantKind::Q8_0).unwrap(), names.len() + 1);
    for (name, l) in model.linears_mut() {
        assert_eq!(l.kind(), Some(QuantKind::Q8_0), "{name}");
    }
    assert_eq!(
        model.net.model.language_model.embed_tokens.precision(),
        "q8_0"
    );
    // Packing twice is a no-op; another kind does not repack (the layers are already packed).
    assert_eq!(model.quantize(QuantKind::Q8_0).unwrap(), names.len() + 1);
    assert_eq!(model.quantize(QuantKind::Q4_0).unwrap(), 0);
}

/// Teacher-forced drift of `q` against `f`: both models run the offline forward pass on the
/// f32 model's streaming sequence; per generated position, the logits' SQNR (dB, over all
/// positions), whether the argmax agrees, and at the first position where `q`'s own free-running
/// stream diverges, f32's top-1 margin and the largest logit change there.
struct Drift {
    sqnr_db: f64,
    agree: usize,
    positions: usize,
    first_divergence: Option<(usize, f32, f32)>,
}

fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |b, (i, &x)| if x > b.1 { (i, x) } else { b },
        )
        .0
}

fn drift(f: &Voxtral, q: &Voxtral, tok: &Tekken, wav: &str) -> (Vec<i64>, Drift) {
    use voxtrace::models::voxtral::pipeline::prepare_offline;
    use voxtrace::trace::Scope;
    let samples = clip(wav);
    let reference = stream(f, tok, &samples, 1280).0;
    let got = stream(q, tok, &samples, 1280).0;
    let inp = prepare_offline(&samples, tok, 480.0, &device()).unwrap();
    let n = inp.n_tokens;
    let mut ids: Vec<i64> = reference.iter().copied().take(n).collect();
    ids.resize(n, *reference.last().unwrap());
    let ids_t = burn::tensor::Tensor::<2, burn::tensor::Int>::from_data(
        burn::tensor::TensorData::new(ids, [1, n]),
        &device(),
    );
    let logits = |m: &Voxtral| {
        to_vec(m.forward(
            inp.features.clone(),
            ids_t.clone(),
            inp.delay_tokens as f32,
            &Scope::off(),
        ))
    };
    let ((shape, lf), (_, lq)) = (logits(f), logits(q));
    let vocab = shape[2];
    let (mut sig, mut noise, mut agree, mut positions) = (0f64, 0f64, 0, 0);
    // Position p predicts reference[p + 1]; the generated ones follow the prompt.
    for p in inp.prompt.len() - 1..(reference.len() - 1).min(n) {
        let (a, b) = (
            &lf[p * vocab..(p + 1) * vocab],
            &lq[p * vocab..(p + 1) * vocab],
        );
        assert_eq!(
            argmax(a) as i64,
            reference[p + 1],
            "{wav}: f32 teacher-forced at {p}"
        );
        for (x, y) in a.iter().zip(b) {
            sig += f64::from(*x) * f64::from(*x);
            noise += f64::from(x - y) * f64::from(x - y);
        }
        agree += usize::from(argmax(a) == argmax(b));
        positions += 1;
    }
    let first_divergence = reference
        .iter()
        .zip(&got)
        .position(|(a, b)| a != b)
        .map(|k| {
            let p = k - 1;
            let (a, b) = (
                &lf[p * vocab..(p + 1) * vocab],
                &lq[p * vocab..(p + 1) * vocab],
            );
            let mut sorted = a.to_vec();
            sorted.sort_by(|x, y| y.total_cmp(x));
            let change = a
                .iter()
                .zip(b)
                .map(|(x, y)| (x - y).abs())
                .fold(0f32, f32::max);
            (k - inp.prompt.len(), sorted[0] - sorted[1], change)
        });
    (
        got,
        Drift {
            sqnr_db: 10.0 * (sig / noise.max(f64::MIN_POSITIVE)).log10(),
            agree,
            positions,
            first_divergence,
        },
    )
}

/// Measure `kind` against f32 in both layouts on four clips; returns (SQNR dB minimum, top-1
/// agreement share, clips whose free-running stream is token-exact).
fn measure(kind: QuantKind) -> (f64, f64, usize) {
    let tok = Tekken::from_file(voxtral_fixture("mistral/tekken.json")).unwrap();
    let (mut min_sqnr, mut agree, mut positions, mut exact) = (f64::INFINITY, 0, 0, 0);
    for layout in [WeightLayout::Mistral, WeightLayout::Hf] {
        let f32_model = load(layout);
        let mut q = load(layout);
        q.quantize(kind).unwrap();
        for (wav, dump) in CLIPS {
            let reference = stream(&f32_model, &tok, &clip(wav), 1280).0;
            assert_eq!(reference, upstream_ids(dump), "{layout:?} {wav}: f32");
            let (got, d) = drift(&f32_model, &q, &tok, wav);
            exact += usize::from(got == reference);
            println!(
                "{} {layout:?} {wav}: logits SQNR {:.1} dB, top-1 {}/{}, {}",
                kind.name(),
                d.sqnr_db,
                d.agree,
                d.positions,
                match d.first_divergence {
                    None => "token-exact".to_string(),
                    Some((k, margin, change)) => format!(
                        "diverges at generated token {k}: f32 top-1 margin {margin:.4}, largest logit change {change:.4}"
                    ),
                }
            );
            min_sqnr = min_sqnr.min(d.sqnr_db);
            agree += d.agree;
            positions += d.positions;
        }
    }
    (min_sqnr, agree as f64 / positions as f64, exact)
}

/// Q8_0 on the tiny random-weight fixture. Bounds: 8-bit blocks of 32 Gaussian-like weights
/// quantize each product at about 40 dB SQNR (step `max|w| / 127` ~ `2.5 sigma / 127`, error
/// `step / sqrt(12)`), and about ten products lie in series from features to logits, so the
/// logits stay well above 25 dB; a wrong block layout or scale gives under 10 dB. Top-1
/// agreement teacher-forced must stay at 90% or more of the generated positions. Measured
/// with the tied token table / LM head packed too: 32.6-33.6 dB, 96.1%; 2 of 8 streams
/// token-exact (LJ002-0020 in both layouts), the others diverge where f32's own top-1 margin
/// (0.03-0.15) is below twice the largest Q8_0 logit change there (0.21-0.45): the printed
/// lines give each clip.
#[test]
fn q8_0_logits_drift_is_small_and_mostly_token_exact() {
    let (sqnr, agree, exact) = measure(QuantKind::Q8_0);
    println!("q8_0: min SQNR {sqnr:.1} dB, top-1 agreement {agree:.3}, {exact}/8 streams exact");
    assert!(sqnr > 25.0, "q8_0 logits SQNR {sqnr:.1} dB");
    assert!(agree >= 0.9, "q8_0 top-1 agreement {agree:.3}");
}

/// Q4_0 (16 levels per block: about 24 dB less per product than Q8_0). Measured on this
/// fixture (random weights, small logit margins), tied head packed too: logits SQNR
/// 11.2-12.3 dB, teacher-forced top-1 agreement 48.0%, no stream token-exact. The bounds, 8 dB and 40%, sit below that
/// with room for kernel summation-order changes, and far above a broken Q4_0 path (wrong
/// nibble order or offset: unrelated logits, about 0 dB and 1/2048 agreement).
#[test]
fn q4_0_logits_drift_is_bounded() {
    let (sqnr, agree, exact) = measure(QuantKind::Q4_0);
    println!("q4_0: min SQNR {sqnr:.1} dB, top-1 agreement {agree:.3}, {exact}/8 streams exact");
    assert!(sqnr > 8.0, "q4_0 logits SQNR {sqnr:.1} dB");
    assert!(agree >= 0.4, "q4_0 top-1 agreement {agree:.3}");
}
