//! Weight loading for Voxtral Realtime from Mistral `consolidated.safetensors` + `params.json`
//! or HF `model.safetensors` + `config.json`.
//!
//! The file is memory-mapped. BF16 / F16 linear weights and the token table (the released
//! checkpoint is BF16: 8.9 GB) are used as stored ([`crate::nn::half`]): no f32 copy, no
//! widening pass, 2 bytes read per weight. Everything else (norms, conv stem, biases, f32
//! tensors) is loaded through burn-store and cast to f32. On the graph-capture device
//! (`voxtrace export`) every tensor is widened to f32, as the exporter needs plain matmuls.
//!
//! Before any tensor is applied the safetensors header is checked against the tensors the
//! configuration implies (names in HF form, PyTorch shapes): a missing, extra or mis-shaped
//! tensor is a [`CheckpointError::Tensors`] listing every problem with the tensor name, the expected
//! and the found shape. Mistral names are mapped to HF names with the table of the transformers
//! converter (huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/convert_voxtral_realtime_weights_to_hf.py>), without its RoPE
//! permutation: Mistral weights run with interleaved RoPE instead. Layout detection, the tensor
//! check, the burn-store loading and the error type are the shared ones of
//! [`crate::models::checkpoint`].

use super::config::VoxtralConfig;
use super::model::Voxtral;
use crate::models::checkpoint::{
    self, CheckpointError, ExpectedTensors, LayoutSpec, load_safetensors_bytes_into,
    load_safetensors_into, no_problems, read_safetensors_header, safetensors_header_of,
    tensor_problems,
};
use crate::nn::embedding::TokenEmbedding;
use crate::nn::half::{HalfKind, HalfMatrix};
use burn::tensor::Device;
use regex::Regex;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// How BF16 / F16 matrices of a checkpoint are held once loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WeightStorage {
    /// Linear weights and the token table used as stored, memory-mapped (`nn::half`); the
    /// default. On the graph-capture device this falls back to [`WeightStorage::F32`].
    #[default]
    AsStored,
    /// Every tensor widened to f32 Burn parameters (what graph export needs).
    F32,
}

/// Which checkpoint layout a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightLayout {
    /// Mistral: `consolidated.safetensors` + `params.json` (+ `tekken.json`); interleaved RoPE.
    Mistral,
    /// Hugging Face: `model.safetensors` + `config.json`; half-split RoPE.
    Hf,
}

/// The layouts [`detect_layout`] accepts, Mistral first.
pub const LAYOUTS: [LayoutSpec<WeightLayout>; 2] = [
    LayoutSpec {
        layout: WeightLayout::Mistral,
        files: &["consolidated.safetensors", "params.json"],
        config_test: None,
        note: "",
    },
    LayoutSpec {
        layout: WeightLayout::Hf,
        files: &["model.safetensors", "config.json"],
        config_test: None,
        note: "",
    },
];

/// Find the layout of a checkpoint folder (Mistral preferred when both are present).
///
/// # Errors
/// [`CheckpointError::NotFound`] naming the folder and both layouts.
pub fn detect_layout(dir: &Path) -> Result<WeightLayout, CheckpointError> {
    checkpoint::detect_layout(dir, "Voxtral", &LAYOUTS)
}

/// Mistral-name -> HF-name rules (regex, replacement), applied first match wins.
pub fn mistral_to_hf_rules() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.conv_layers\.0\.conv\.",
            "model.audio_tower.embedder.conv1.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.conv_layers\.1\.conv\.",
            "model.audio_tower.embedder.conv2.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.transformer\.layers\.(\d+)\.attention\.w([qkvo])\.",
            "model.audio_tower.layers.${1}.self_attn.${2}_proj.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.transformer\.layers\.(\d+)\.attention_norm\.",
            "model.audio_tower.layers.${1}.self_attn_layer_norm.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.transformer\.layers\.(\d+)\.ffn_norm\.",
            "model.audio_tower.layers.${1}.final_layer_norm.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.transformer\.layers\.(\d+)\.feed_forward\.w1\.",
            "model.audio_tower.layers.${1}.mlp.gate_proj.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.transformer\.layers\.(\d+)\.feed_forward\.w2\.",
            "model.audio_tower.layers.${1}.mlp.down_proj.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.transformer\.layers\.(\d+)\.feed_forward\.w3\.",
            "model.audio_tower.layers.${1}.mlp.up_proj.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.transformer\.norm\.",
            "model.audio_tower.norm.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.audio_language_projection\.0\.",
            "model.multi_modal_projector.linear_1.",
        ),
        (
            r"^mm_streams_embeddings\.embedding_module\.audio_language_projection\.2\.",
            "model.multi_modal_projector.linear_2.",
        ),
        (
            r"^(mm_streams_embeddings\.embedding_module\.)?tok_embeddings\.",
            "model.language_model.embed_tokens.",
        ),
        (
            r"^layers\.(\d+)\.attention\.w([qkvo])\.",
            "model.language_model.layers.${1}.self_attn.${2}_proj.",
        ),
        (
            r"^layers\.(\d+)\.attention_norm\.",
            "model.language_model.layers.${1}.input_layernorm.",
        ),
        (
            r"^layers\.(\d+)\.ffn_norm\.",
            "model.language_model.layers.${1}.post_attention_layernorm.",
        ),
        (
            r"^layers\.(\d+)\.feed_forward\.w1\.",
            "model.language_model.layers.${1}.mlp.gate_proj.",
        ),
        (
            r"^layers\.(\d+)\.feed_forward\.w2\.",
            "model.language_model.layers.${1}.mlp.down_proj.",
        ),
        (
            r"^layers\.(\d+)\.feed_forward\.w3\.",
            "model.language_model.layers.${1}.mlp.up_proj.",
        ),
        (
            r"^layers\.(\d+)\.ada_rms_norm_t_cond\.0\.",
            "model.language_model.layers.${1}.ada_rms_norm.linear1.",
        ),
        (
            r"^layers\.(\d+)\.ada_rms_norm_t_cond\.2\.",
            "model.language_model.layers.${1}.ada_rms_norm.linear2.",
        ),
        (r"^norm\.", "model.language_model.norm."),
        (r"^output\.", "lm_head."),
    ]
}

impl WeightLayout {
    /// The HF name of a tensor named `name` in this layout (`None`: no Mistral rule matches).
    pub fn hf_name(self, name: &str) -> Option<String> {
        match self {
            WeightLayout::Hf => Some(name.to_string()),
            WeightLayout::Mistral => mistral_to_hf(name),
        }
    }
}

/// `(pattern, replacement)` rules with their patterns compiled.
fn compile_rules(rules: Vec<(&'static str, &'static str)>) -> Vec<(Regex, &'static str)> {
    rules
        .into_iter()
        .map(|(pat, rep)| (Regex::new(pat).expect("static pattern"), rep))
        .collect()
}

/// `name` renamed by the first rule whose pattern matches (`None`: none does).
fn rename(rules: &[(Regex, &'static str)], name: &str) -> Option<String> {
    rules
        .iter()
        .find(|(re, _)| re.is_match(name))
        .map(|(re, rep)| re.replace(name, *rep).into_owned())
}

/// Map one Mistral tensor name to its HF name (`None` when no rule matches).
pub fn mistral_to_hf(name: &str) -> Option<String> {
    static RULES: std::sync::LazyLock<Vec<(Regex, &'static str)>> =
        std::sync::LazyLock::new(|| compile_rules(mistral_to_hf_rules()));
    rename(&RULES, name)
}

/// HF-name -> Mistral-name rules (regex, replacement), first match wins: the inverse of
/// [`mistral_to_hf_rules`] (the token table maps to its full Mistral name,
/// `mm_streams_embeddings.embedding_module.tok_embeddings.weight`). Names only: an HF folder's
/// q/k rows are also permuted for half-split RoPE, see [`interleave_rope_rows`].
pub fn hf_to_mistral_rules() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            r"^model\.audio_tower\.embedder\.conv1\.",
            "mm_streams_embeddings.embedding_module.whisper_encoder.conv_layers.0.conv.",
        ),
        (
            r"^model\.audio_tower\.embedder\.conv2\.",
            "mm_streams_embeddings.embedding_module.whisper_encoder.conv_layers.1.conv.",
        ),
        (
            r"^model\.audio_tower\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.",
            "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.${1}.attention.w${2}.",
        ),
        (
            r"^model\.audio_tower\.layers\.(\d+)\.self_attn_layer_norm\.",
            "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.${1}.attention_norm.",
        ),
        (
            r"^model\.audio_tower\.layers\.(\d+)\.final_layer_norm\.",
            "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.${1}.ffn_norm.",
        ),
        (
            r"^model\.audio_tower\.layers\.(\d+)\.mlp\.gate_proj\.",
            "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.${1}.feed_forward.w1.",
        ),
        (
            r"^model\.audio_tower\.layers\.(\d+)\.mlp\.down_proj\.",
            "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.${1}.feed_forward.w2.",
        ),
        (
            r"^model\.audio_tower\.layers\.(\d+)\.mlp\.up_proj\.",
            "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.layers.${1}.feed_forward.w3.",
        ),
        (
            r"^model\.audio_tower\.norm\.",
            "mm_streams_embeddings.embedding_module.whisper_encoder.transformer.norm.",
        ),
        (
            r"^model\.multi_modal_projector\.linear_1\.",
            "mm_streams_embeddings.embedding_module.audio_language_projection.0.",
        ),
        (
            r"^model\.multi_modal_projector\.linear_2\.",
            "mm_streams_embeddings.embedding_module.audio_language_projection.2.",
        ),
        (
            r"^model\.language_model\.embed_tokens\.",
            "mm_streams_embeddings.embedding_module.tok_embeddings.",
        ),
        (
            r"^model\.language_model\.layers\.(\d+)\.self_attn\.([qkvo])_proj\.",
            "layers.${1}.attention.w${2}.",
        ),
        (
            r"^model\.language_model\.layers\.(\d+)\.input_layernorm\.",
            "layers.${1}.attention_norm.",
        ),
        (
            r"^model\.language_model\.layers\.(\d+)\.post_attention_layernorm\.",
            "layers.${1}.ffn_norm.",
        ),
        (
            r"^model\.language_model\.layers\.(\d+)\.mlp\.gate_proj\.",
            "layers.${1}.feed_forward.w1.",
        ),
        (
            r"^model\.language_model\.layers\.(\d+)\.mlp\.down_proj\.",
            "layers.${1}.feed_forward.w2.",
        ),
        (
            r"^model\.language_model\.layers\.(\d+)\.mlp\.up_proj\.",
            "layers.${1}.feed_forward.w3.",
        ),
        (
            r"^model\.language_model\.layers\.(\d+)\.ada_rms_norm\.linear1\.",
            "layers.${1}.ada_rms_norm_t_cond.0.",
        ),
        (
            r"^model\.language_model\.layers\.(\d+)\.ada_rms_norm\.linear2\.",
            "layers.${1}.ada_rms_norm_t_cond.2.",
        ),
        (r"^model\.language_model\.norm\.", "norm."),
        (r"^lm_head\.", "output."),
    ]
}

/// Map one HF tensor name to its Mistral name (`None` when no rule matches); the inverse of
/// [`mistral_to_hf`].
pub fn hf_to_mistral(name: &str) -> Option<String> {
    static RULES: std::sync::LazyLock<Vec<(Regex, &'static str)>> =
        std::sync::LazyLock::new(|| compile_rules(hf_to_mistral_rules()));
    rename(&RULES, name)
}

/// How many RoPE heads the rows of the tensor `mistral_name` hold, for the tensors whose rows
/// the transformers converter permutes (`permute_for_rope`): the decoder's `wq` (n_heads) and
/// `wk` (n_kv_heads), the encoder's `wq` weight and bias and `wk` weight (n_heads). `None` for
/// every other tensor.
pub fn rope_permuted_heads(cfg: &VoxtralConfig, mistral_name: &str) -> Option<usize> {
    static DEC: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(r"^layers\.\d+\.attention\.w([qk])\.weight$").expect("static pattern")
    });
    static ENC: std::sync::LazyLock<Regex> = std::sync::LazyLock::new(|| {
        Regex::new(
            r"^mm_streams_embeddings\.embedding_module\.whisper_encoder\.transformer\.layers\.\d+\.attention\.w(q\.(weight|bias)|k\.weight)$",
        )
        .expect("static pattern")
    });
    if let Some(c) = DEC.captures(mistral_name) {
        return Some(if &c[1] == "q" {
            cfg.decoder.n_heads
        } else {
            cfg.decoder.n_kv_heads
        });
    }
    ENC.is_match(mistral_name).then_some(cfg.encoder.n_heads)
}

/// Undo the transformers converter's `permute_for_rope` on `values`, a row-major
/// `[rows, cols]` tensor (`cols` = 1 for a bias) whose rows are `n_heads` heads of half-split
/// RoPE channels: row `h * head_dim + j * head_dim / 2 + i` (HF) moves to
/// `h * head_dim + 2 * i + j` (Mistral, interleaved pairs), `j` in {0, 1}.
///
/// # Errors
/// A message when `rows` is not `n_heads` times an even head width or `values` is not
/// `rows * cols` long.
pub fn interleave_rope_rows(
    values: &[f32],
    rows: usize,
    cols: usize,
    n_heads: usize,
) -> Result<Vec<f32>, String> {
    if n_heads == 0 || !rows.is_multiple_of(n_heads) || !(rows / n_heads).is_multiple_of(2) {
        return Err(format!(
            "{rows} rows are not {n_heads} RoPE heads of an even width"
        ));
    }
    if values.len() != rows * cols {
        return Err(format!(
            "{} values for a [{rows}, {cols}] tensor",
            values.len()
        ));
    }
    let head_dim = rows / n_heads;
    let half = head_dim / 2;
    let mut out = vec![0.0f32; values.len()];
    for h in 0..n_heads {
        for j in 0..2 {
            for i in 0..half {
                let src = (h * head_dim + j * half + i) * cols;
                let dst = (h * head_dim + 2 * i + j) * cols;
                out[dst..dst + cols].copy_from_slice(&values[src..src + cols]);
            }
        }
    }
    Ok(out)
}

/// Every tensor the configuration implies, HF names with PyTorch shapes. With tied embeddings
/// `lm_head.weight` may be present (transformers may save the tied copy) and is ignored.
pub fn expected_tensors(cfg: &VoxtralConfig) -> ExpectedTensors {
    let mut m = BTreeMap::new();
    let e = &cfg.encoder;
    let d = &cfg.decoder;
    let a = "model.audio_tower";
    m.insert(
        format!("{a}.embedder.conv1.weight"),
        vec![e.d_model, e.num_mel_bins, 3],
    );
    m.insert(format!("{a}.embedder.conv1.bias"), vec![e.d_model]);
    m.insert(
        format!("{a}.embedder.conv2.weight"),
        vec![e.d_model, e.d_model, 3],
    );
    m.insert(format!("{a}.embedder.conv2.bias"), vec![e.d_model]);
    let eq = e.n_heads * e.head_dim;
    for i in 0..e.n_layers {
        let p = format!("{a}.layers.{i}");
        m.insert(format!("{p}.self_attn_layer_norm.weight"), vec![e.d_model]);
        m.insert(format!("{p}.final_layer_norm.weight"), vec![e.d_model]);
        m.insert(format!("{p}.self_attn.q_proj.weight"), vec![eq, e.d_model]);
        m.insert(format!("{p}.self_attn.q_proj.bias"), vec![eq]);
        m.insert(format!("{p}.self_attn.k_proj.weight"), vec![eq, e.d_model]);
        m.insert(format!("{p}.self_attn.v_proj.weight"), vec![eq, e.d_model]);
        m.insert(format!("{p}.self_attn.v_proj.bias"), vec![eq]);
        m.insert(format!("{p}.self_attn.o_proj.weight"), vec![e.d_model, eq]);
        m.insert(format!("{p}.self_attn.o_proj.bias"), vec![e.d_model]);
        m.insert(
            format!("{p}.mlp.gate_proj.weight"),
            vec![e.intermediate_size, e.d_model],
        );
        m.insert(
            format!("{p}.mlp.up_proj.weight"),
            vec![e.intermediate_size, e.d_model],
        );
        m.insert(
            format!("{p}.mlp.down_proj.weight"),
            vec![e.d_model, e.intermediate_size],
        );
        m.insert(format!("{p}.mlp.down_proj.bias"), vec![e.d_model]);
    }
    m.insert(format!("{a}.norm.weight"), vec![e.d_model]);
    m.insert(
        "model.multi_modal_projector.linear_1.weight".into(),
        vec![d.d_model, e.d_model * cfg.downsample_factor],
    );
    m.insert(
        "model.multi_modal_projector.linear_2.weight".into(),
        vec![d.d_model, d.d_model],
    );
    let l = "model.language_model";
    m.insert(
        format!("{l}.embed_tokens.weight"),
        vec![d.vocab_size, d.d_model],
    );
    let q = d.n_heads * d.head_dim;
    let kv = d.n_kv_heads * d.head_dim;
    for i in 0..d.n_layers {
        let p = format!("{l}.layers.{i}");
        m.insert(format!("{p}.input_layernorm.weight"), vec![d.d_model]);
        m.insert(
            format!("{p}.post_attention_layernorm.weight"),
            vec![d.d_model],
        );
        m.insert(format!("{p}.self_attn.q_proj.weight"), vec![q, d.d_model]);
        m.insert(format!("{p}.self_attn.k_proj.weight"), vec![kv, d.d_model]);
        m.insert(format!("{p}.self_attn.v_proj.weight"), vec![kv, d.d_model]);
        m.insert(format!("{p}.self_attn.o_proj.weight"), vec![d.d_model, q]);
        m.insert(
            format!("{p}.ada_rms_norm.linear1.weight"),
            vec![d.ada_t_cond_dim, d.d_model],
        );
        m.insert(
            format!("{p}.ada_rms_norm.linear2.weight"),
            vec![d.d_model, d.ada_t_cond_dim],
        );
        m.insert(
            format!("{p}.mlp.gate_proj.weight"),
            vec![d.intermediate_size, d.d_model],
        );
        m.insert(
            format!("{p}.mlp.up_proj.weight"),
            vec![d.intermediate_size, d.d_model],
        );
        m.insert(
            format!("{p}.mlp.down_proj.weight"),
            vec![d.d_model, d.intermediate_size],
        );
    }
    m.insert(format!("{l}.norm.weight"), vec![d.d_model]);
    let mut tied = BTreeMap::new();
    let lm_head = vec![d.vocab_size, d.d_model];
    if d.tied_embeddings {
        tied.insert(
            "lm_head.weight".to_string(),
            (lm_head, format!("{l}.embed_tokens.weight")),
        );
    } else {
        m.insert("lm_head.weight".into(), lm_head);
    }
    ExpectedTensors { required: m, tied }
}

/// Check a safetensors file's header against the configuration with
/// [`tensor_problems`]: every problem is listed. Returns nothing when the file matches.
///
/// # Errors
/// [`CheckpointError::File`] for an unreadable or corrupt file, [`CheckpointError::Tensors`]
/// listing the tensor problems.
pub fn check_header(
    path: &Path,
    cfg: &VoxtralConfig,
    layout: WeightLayout,
) -> Result<(), CheckpointError> {
    let found = read_safetensors_header(path, |name| layout.hf_name(name))?;
    no_problems(path, tensor_problems(&expected_tensors(cfg), &found))
}

impl Voxtral {
    /// Load a checkpoint folder (layout detected with [`detect_layout`]) onto `device`.
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file and, for tensor problems, each tensor with its expected
    /// and found shape.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, CheckpointError> {
        let layout = detect_layout(dir)?;
        Self::load_layout(dir, layout, device)
    }

    /// Load a checkpoint folder of the given layout.
    ///
    /// # Errors
    /// See [`Voxtral::load`].
    pub fn load_layout(
        dir: &Path,
        layout: WeightLayout,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        Self::load_layout_as(dir, layout, WeightStorage::AsStored, device)
    }

    /// Load a checkpoint folder of the given layout with `storage` (e.g.
    /// [`WeightStorage::F32`] for `voxtrace export`, whose graph capture needs f32 matmuls).
    ///
    /// # Errors
    /// See [`Voxtral::load`].
    pub fn load_layout_as(
        dir: &Path,
        layout: WeightLayout,
        storage: WeightStorage,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        let (cfg, weights) = match layout {
            WeightLayout::Mistral => (
                VoxtralConfig::from_params_json(&dir.join("params.json"))?,
                dir.join("consolidated.safetensors"),
            ),
            WeightLayout::Hf => (
                VoxtralConfig::from_hf_config_json(&dir.join("config.json"))?,
                dir.join("model.safetensors"),
            ),
        };
        Self::load_weights_as(cfg, &weights, layout, storage, device)
    }

    /// Build a model of shape `cfg` and fill it from `weights` (a safetensors file in
    /// `layout`). The header is checked first (see [`check_header`]).
    ///
    /// # Errors
    /// See [`Voxtral::load`].
    pub fn load_weights(
        cfg: VoxtralConfig,
        weights: &Path,
        layout: WeightLayout,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        Self::load_weights_as(cfg, weights, layout, WeightStorage::AsStored, device)
    }

    /// [`Voxtral::load_weights`] with a choice of [`WeightStorage`].
    ///
    /// # Errors
    /// See [`Voxtral::load`].
    pub fn load_weights_as(
        cfg: VoxtralConfig,
        weights: &Path,
        layout: WeightLayout,
        storage: WeightStorage,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        check_header(weights, &cfg, layout)?;
        let mut model = Voxtral::random(cfg, device);
        if storage == WeightStorage::AsStored && !crate::nn::linear::is_capture(device) {
            let file = std::fs::File::open(weights)
                .map_err(|e| CheckpointError::file(weights, e.to_string()))?;
            let map = crate::io::map_file(&file)
                .map_err(|e| CheckpointError::file(weights, e.to_string()))?;
            model.use_stored_matrices(&bytes::Bytes::from_owner(map), weights, layout)?;
        }
        let rules = (layout == WeightLayout::Mistral).then(mistral_to_hf_rules);
        load_safetensors_into(&mut model.net, weights, rules.as_deref())?;
        Ok(model)
    }

    /// [`Voxtral::load_weights_as`] from the whole safetensors file's bytes (a browser's
    /// `fetch`, no file system); `source` only names the file in errors. The same header
    /// check, stored BF16 / F16 matrices used in place (slices of `bytes`) and burn-store load.
    ///
    /// # Errors
    /// See [`Voxtral::load`].
    pub fn load_weights_bytes(
        cfg: VoxtralConfig,
        bytes: bytes::Bytes,
        source: &Path,
        layout: WeightLayout,
        storage: WeightStorage,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        let found = safetensors_header_of(&bytes, source, |name| layout.hf_name(name))?;
        no_problems(source, tensor_problems(&expected_tensors(&cfg), &found))?;
        let mut model = Voxtral::random(cfg, device);
        if storage == WeightStorage::AsStored && !crate::nn::linear::is_capture(device) {
            model.use_stored_matrices(&bytes, source, layout)?;
        }
        let rules = (layout == WeightLayout::Mistral).then(mistral_to_hf_rules);
        load_safetensors_bytes_into(&mut model.net, bytes.to_vec(), source, rules.as_deref())?;
        Ok(model)
    }

    /// Point every linear weight and the token table that `bytes` (the safetensors file
    /// `weights`, usually memory-mapped) stores in BF16 / F16 at its bytes (the matrices then
    /// hold the mapping open); they are no longer Burn parameters, so burn-store loads only the
    /// rest. The header was checked.
    fn use_stored_matrices(
        &mut self,
        bytes: &bytes::Bytes,
        weights: &Path,
        layout: WeightLayout,
    ) -> Result<(), CheckpointError> {
        let st = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| CheckpointError::file(weights, e.to_string()))?;
        let base = bytes.as_ptr() as usize;
        let mut stored: HashMap<String, HalfMatrix> = HashMap::new();
        for (name, view) in st.tensors() {
            let kind = match view.dtype() {
                safetensors::Dtype::BF16 => HalfKind::Bf16,
                safetensors::Dtype::F16 => HalfKind::F16,
                _ => continue,
            };
            let (&[rows, cols], Some(hf)) = (view.shape(), layout.hf_name(&name)) else {
                continue;
            };
            let start = view.data().as_ptr() as usize - base;
            let m = HalfMatrix::new(
                kind,
                rows,
                cols,
                bytes.slice(start..start + view.data().len()),
            )
            .map_err(|e| CheckpointError::file(weights, format!("tensor {name}: {e}")))?;
            stored.insert(hf, m);
        }
        for (name, l) in self.linears_mut() {
            if let Some(m) = stored.remove(&format!("{name}.weight")) {
                l.set_half(m);
            }
        }
        if let Some(m) = stored.remove("model.language_model.embed_tokens.weight") {
            self.net.model.language_model.embed_tokens = TokenEmbedding::Half(m);
        }
        Ok(())
    }
}

/// Whether `path` is a GGUF file (a regular file starting with the magic `GGUF`).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && magic == crate::quant::gguf::MAGIC
}

impl Voxtral {
    /// Load a model with its tokenizer from any source a `--model` names: a voxtral.cpp GGUF
    /// file ([`Voxtral::load_gguf`], tokenizer from its metadata) or a checkpoint folder
    /// ([`Voxtral::load`], tokenizer `tekken.json` in it). `tokenizer` overrides either.
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file; a tokenizer that cannot be read is
    /// [`CheckpointError::Invalid`] naming it.
    pub fn open(
        model: &Path,
        tokenizer: Option<&Path>,
        device: &Device,
    ) -> Result<(Self, crate::tokenizer::Tekken), CheckpointError> {
        let read_tok = |p: &Path| {
            crate::tokenizer::Tekken::from_file(p)
                .map_err(|e| CheckpointError::invalid(p, e.to_string()))
        };
        if is_gguf(model) {
            let (m, tok) = Self::load_gguf(model, device)?;
            let tok = match tokenizer {
                Some(p) => read_tok(p)?,
                None => tok,
            };
            return Ok((m, tok));
        }
        let m = Self::load(model, device)?;
        let tok =
            read_tok(&tokenizer.map_or_else(|| model.join("tekken.json"), Path::to_path_buf))?;
        Ok((m, tok))
    }
}
