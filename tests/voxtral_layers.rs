//! Layer-local parity: every upstream module of the tiny Voxtral Realtime is fed its *upstream*
//! input from the PyTorch dump and the Burn output is compared with the upstream output
//! (atol 1e-5, rtol 1e-4), so each component is checked on its own, free of drift carried in
//! from earlier layers. Runs on both weight layouts (Mistral: interleaved RoPE; HF: half-split).

mod common;

use burn::tensor::{Int, Tensor, TensorData};
use common::*;
use voxtrace::models::voxtral::time_embedding::time_embedding;
use voxtrace::models::voxtral::{Voxtral, WeightLayout};
use voxtrace::nn::RotaryEmbedding;
use voxtrace::nn::attention::Step;
use voxtrace::trace::Scope;

const ATOL: f32 = 1e-5;
const RTOL: f32 = 1e-4;

struct Ctx {
    dump: Dump,
    failures: Vec<String>,
    checked: usize,
}

impl Ctx {
    fn tensor<const D: usize>(&self, name: &str) -> Tensor<D> {
        let t = self.dump.get(name);
        Tensor::from_data(TensorData::new(t.f32.clone(), t.shape.clone()), &device())
    }

    fn ids(&self, name: &str) -> Tensor<2, Int> {
        let t = self.dump.get(name);
        Tensor::from_data(TensorData::new(t.i64.clone(), t.shape.clone()), &device())
    }

    fn check<const D: usize>(&mut self, name: &str, actual: Tensor<D>) {
        let r = self.dump.get(name);
        self.checked += 1;
        if actual.dims().to_vec() != r.shape {
            self.failures.push(format!(
                "{name}: shape {:?} vs {:?}",
                actual.dims(),
                r.shape
            ));
            return;
        }
        let a: Vec<f32> = actual.into_data().convert::<f32>().try_into_vec().unwrap();
        let (ok, max) = allclose(&a, &r.f32, ATOL, RTOL);
        if !ok {
            self.failures.push(format!("{name}: max |diff| {max:e}"));
        }
    }
}

fn run(layout: WeightLayout) {
    let dir = voxtral_fixture(match layout {
        WeightLayout::Mistral => "mistral",
        WeightLayout::Hf => "hf",
    });
    let model = Voxtral::load_layout(&dir, layout, &device()).unwrap();
    let cfg = model.config.clone();
    let mut c = Ctx {
        dump: read_dump(&voxtral_fixture("dumps/cards-001.safetensors")),
        failures: vec![],
        checked: 0,
    };
    let off = Scope::off();
    let m = &model.net.model;

    // Conv stem.
    let a = "model.audio_tower";
    let x: Tensor<3> = c.tensor(&format!("{a}.embedder.conv1.in.0"));
    c.check(
        &format!("{a}.embedder.conv1.out"),
        m.audio_tower.embedder.conv1.forward(x),
    );
    let x: Tensor<3> = c.tensor(&format!("{a}.embedder.conv2.in.0"));
    c.check(
        &format!("{a}.embedder.conv2.out"),
        m.audio_tower.embedder.conv2.forward(x),
    );
    let x: Tensor<3> = c.tensor(&format!("{a}.embedder.in.0"));
    c.check(
        &format!("{a}.embedder.out"),
        m.audio_tower.embedder.forward(x, &off),
    );

    // Encoder RoPE tables and layers.
    let t_enc = c.dump.get(&format!("{a}.embedder.out")).shape[1];
    let rope = RotaryEmbedding {
        theta: cfg.encoder.rope_theta,
        head_dim: cfg.encoder.head_dim,
    };
    let (cos, sin) = rope.tables(0, t_enc, &device());
    let full = |t: &Tensor<2>| Tensor::cat(vec![t.clone(), t.clone()], 1).unsqueeze::<3>();
    c.check(&format!("{a}.rotary_emb.out.0"), full(&cos));
    c.check(&format!("{a}.rotary_emb.out.1"), full(&sin));
    let step = Step {
        pos0: 0,
        cos: &cos,
        sin: &sin,
        style: cfg.rope_style,
        window: cfg.encoder.sliding_window,
        traced: None,
    };
    for (i, layer) in m.audio_tower.layers.iter().enumerate() {
        let p = format!("{a}.layers.{i}");
        let x: Tensor<3> = c.tensor(&format!("{p}.in.0"));
        c.check(&format!("{p}.out"), layer.forward(x, &step, None, &off));
        let x: Tensor<3> = c.tensor(&format!("{p}.self_attn_layer_norm.in.0"));
        c.check(
            &format!("{p}.self_attn_layer_norm.out"),
            layer.self_attn_layer_norm.forward(x),
        );
        let x: Tensor<3> = c.tensor(&format!("{p}.self_attn.in.hidden_states"));
        let y = layer.self_attn.forward(x, &step, None, &off);
        c.check(&format!("{p}.self_attn.out.0"), y);
        let x: Tensor<3> = c.tensor(&format!("{p}.final_layer_norm.in.0"));
        c.check(
            &format!("{p}.final_layer_norm.out"),
            layer.final_layer_norm.forward(x),
        );
        let x: Tensor<3> = c.tensor(&format!("{p}.mlp.in.0"));
        c.check(&format!("{p}.mlp.out"), layer.mlp.forward(x, &off));
    }
    let x: Tensor<3> = c.tensor(&format!("{a}.norm.in.0"));
    c.check(&format!("{a}.norm.out"), m.audio_tower.norm.forward(x));

    // Adapter and time embedding.
    let p = "model.multi_modal_projector";
    let x: Tensor<3> = c.tensor(&format!("{p}.in.0"));
    c.check(
        &format!("{p}.out"),
        m.multi_modal_projector.forward(x, &off),
    );
    c.check(
        "model.time_embedding.out",
        time_embedding(6.0, cfg.decoder.d_model, &device()),
    );

    // Decoder.
    let l = "model.language_model";
    let ids = c.ids(&format!("{l}.embed_tokens.in.0"));
    c.check(
        &format!("{l}.embed_tokens.out"),
        m.language_model.embed_tokens.forward(ids),
    );
    let n = c.dump.get(&format!("{l}.in.inputs_embeds")).shape[1];
    let rope = RotaryEmbedding {
        theta: cfg.decoder.rope_theta,
        head_dim: cfg.decoder.head_dim,
    };
    let (cos, sin) = rope.tables(0, n, &device());
    c.check(&format!("{l}.rotary_emb.out.0"), full(&cos));
    c.check(&format!("{l}.rotary_emb.out.1"), full(&sin));
    let step = Step {
        pos0: 0,
        cos: &cos,
        sin: &sin,
        style: cfg.rope_style,
        window: cfg.decoder.sliding_window,
        traced: None,
    };
    for (i, layer) in m.language_model.layers.iter().enumerate() {
        let p = format!("{l}.layers.{i}");
        let x: Tensor<3> = c.tensor(&format!("{p}.in.0"));
        let t: Tensor<2> = c.tensor(&format!("{p}.in.t_cond"));
        c.check(&format!("{p}.out"), layer.forward(x, &t, &step, None, &off));
        let x: Tensor<3> = c.tensor(&format!("{p}.input_layernorm.in.0"));
        c.check(
            &format!("{p}.input_layernorm.out"),
            layer.input_layernorm.forward(x),
        );
        let x: Tensor<3> = c.tensor(&format!("{p}.self_attn.in.hidden_states"));
        let y = layer.self_attn.forward(x, &step, None, &off);
        c.check(&format!("{p}.self_attn.out.0"), y);
        let x: Tensor<3> = c.tensor(&format!("{p}.post_attention_layernorm.in.0"));
        c.check(
            &format!("{p}.post_attention_layernorm.out"),
            layer.post_attention_layernorm.forward(x),
        );
        let x: Tensor<2> = c.tensor(&format!("{p}.ada_rms_norm.in.0"));
        c.check(
            &format!("{p}.ada_rms_norm.out"),
            layer.ada_rms_norm.forward(x, &off),
        );
        let x: Tensor<3> = c.tensor(&format!("{p}.mlp.in.0"));
        c.check(&format!("{p}.mlp.out"), layer.mlp.forward(x, &off));
    }
    let x: Tensor<3> = c.tensor(&format!("{l}.norm.in.0"));
    c.check(&format!("{l}.norm.out"), m.language_model.norm.forward(x));
    let x: Tensor<3> = c.tensor("lm_head.in.0");
    c.check("lm_head.out", model.lm_head(x, &off));

    assert_eq!(c.checked, 35, "every module family must be checked");
    assert!(
        c.failures.is_empty(),
        "{layout:?}: {} of {} modules differ from upstream:\n{}",
        c.failures.len(),
        c.checked,
        c.failures.join("\n")
    );
}

#[test]
fn each_upstream_module_matches_on_its_upstream_input_hf_layout() {
    run(WeightLayout::Hf);
}

#[test]
fn each_upstream_module_matches_on_its_upstream_input_mistral_layout() {
    run(WeightLayout::Mistral);
}
