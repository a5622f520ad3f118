//! Weight loading for Whisper from a CTranslate2 folder (`model.bin` + `config.json` +
//! `tokenizer.json`, read with [`super::ct2`]) or a transformers folder (`model.safetensors` +
//! `config.json` [+ `generation_config.json`], read with burn-store).
//!
//! Both paths check the tensors against the set the configuration implies
//! ([`expected_tensors`]: transformers names, PyTorch shapes) before building anything: a
//! missing, unexpected or mis-shaped tensor is a [`CheckpointError::Tensors`] naming each tensor
//! with its expected and found shape. `proj_out.weight` is tied to
//! `model.decoder.embed_tokens.weight`: it may be present (it must then have the same shape)
//! and is not loaded. Layout detection, the tensor check and the error type are the shared
//! ones of [`crate::models::checkpoint`].

use super::config::{GenerationSettings, WhisperConfig};
use super::ct2::{Ct2Model, HfTensor, to_hf_state_dict, whisper_dims};
use super::model::{
    WhisperAttention, WhisperDecoder, WhisperDecoderLayer, WhisperEncoder, WhisperEncoderLayer,
    WhisperForConditionalGeneration, WhisperModel,
};
use crate::models::checkpoint::{
    self, CheckpointError, ExpectedTensors, FoundTensor, LayoutSpec, StoredMatrix,
    load_safetensors_into, no_problems, read_safetensors_header, tensor_problems,
};
use crate::nn::conv::Conv1d;
use crate::nn::qlinear::{HalfLinear, LinearWeight, PackedLinear, QLinearError};
use crate::nn::qmatmul::QuantKind;
use burn::module::Param;
use burn::nn::{Embedding, LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Which checkpoint layout a folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhisperLayout {
    /// CTranslate2 (faster-whisper): `model.bin` + `config.json` + `tokenizer.json`.
    Ct2,
    /// transformers: `model.safetensors` + `config.json` (`model_type` = `whisper`).
    Hf,
}

/// The layouts [`detect_layout`] accepts, CTranslate2 first. A CTranslate2 `config.json`
/// holds `suppress_ids`; a transformers one has `model_type` `whisper`.
pub const LAYOUTS: [LayoutSpec<WhisperLayout>; 2] = [
    LayoutSpec {
        layout: WhisperLayout::Ct2,
        // `model.bin` is CTranslate2's alone: the folder is taken as CTranslate2 Whisper
        // whatever config.json holds, so a broken config.json is reported as such by the
        // loader instead of "no checkpoint found".
        files: &["model.bin", "config.json", "tokenizer.json"],
        config_test: None,
        note: "",
    },
    LayoutSpec {
        layout: WhisperLayout::Hf,
        files: &["model.safetensors", "config.json"],
        config_test: Some(|c| c.get("model_type").and_then(|t| t.as_str()) == Some("whisper")),
        note: "with model_type \"whisper\"",
    },
];

/// Whether `dir` holds a Whisper checkpoint this module can load: a CTranslate2 folder
/// (`model.bin` + `tokenizer.json` + `config.json`, whose contents the loader checks) or a transformers
/// folder (`model.safetensors` + `config.json` whose `model_type` is `whisper`). Never fails:
/// unreadable files mean `false`.
pub fn is_whisper_dir(dir: &Path) -> bool {
    detect_layout(dir).is_ok()
}

/// Find the layout of a checkpoint folder (CTranslate2 preferred when both are present).
///
/// # Errors
/// [`CheckpointError::NotFound`] when neither layout is complete.
pub fn detect_layout(dir: &Path) -> Result<WhisperLayout, CheckpointError> {
    checkpoint::detect_layout(dir, "Whisper", &LAYOUTS)
}

/// Every tensor the configuration implies: transformers names, PyTorch shapes
/// (`nn.Linear` `[out, in]`, `nn.Conv1d` `[c_out, c_in, kernel]`). `proj_out.weight` is
/// tied to `model.decoder.embed_tokens.weight`: it may be present (with the same shape) and is
/// not loaded.
pub fn expected_tensors(cfg: &WhisperConfig) -> ExpectedTensors {
    let d = cfg.d_model;
    let mut m = BTreeMap::new();
    let mut ins = |k: String, v: Vec<usize>| {
        m.insert(k, v);
    };
    let e = "model.encoder";
    ins(format!("{e}.conv1.weight"), vec![d, cfg.num_mel_bins, 3]);
    ins(format!("{e}.conv1.bias"), vec![d]);
    ins(format!("{e}.conv2.weight"), vec![d, d, 3]);
    ins(format!("{e}.conv2.bias"), vec![d]);
    ins(
        format!("{e}.embed_positions.weight"),
        vec![cfg.max_source_positions, d],
    );
    let attn = |ins: &mut dyn FnMut(String, Vec<usize>), p: &str| {
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            ins(format!("{p}.{proj}.weight"), vec![d, d]);
            if proj != "k_proj" {
                ins(format!("{p}.{proj}.bias"), vec![d]);
            }
        }
    };
    let ln = |ins: &mut dyn FnMut(String, Vec<usize>), p: &str| {
        ins(format!("{p}.weight"), vec![d]);
        ins(format!("{p}.bias"), vec![d]);
    };
    let fc = |ins: &mut dyn FnMut(String, Vec<usize>), p: &str, ffn: usize| {
        ins(format!("{p}.fc1.weight"), vec![ffn, d]);
        ins(format!("{p}.fc1.bias"), vec![ffn]);
        ins(format!("{p}.fc2.weight"), vec![d, ffn]);
        ins(format!("{p}.fc2.bias"), vec![d]);
    };
    for i in 0..cfg.encoder_layers {
        let p = format!("{e}.layers.{i}");
        attn(&mut ins, &format!("{p}.self_attn"));
        ln(&mut ins, &format!("{p}.self_attn_layer_norm"));
        fc(&mut ins, &p, cfg.encoder_ffn_dim);
        ln(&mut ins, &format!("{p}.final_layer_norm"));
    }
    ln(&mut ins, &format!("{e}.layer_norm"));
    let dd = "model.decoder";
    ins(format!("{dd}.embed_tokens.weight"), vec![cfg.vocab_size, d]);
    ins(
        format!("{dd}.embed_positions.weight"),
        vec![cfg.max_target_positions, d],
    );
    for i in 0..cfg.decoder_layers {
        let p = format!("{dd}.layers.{i}");
        attn(&mut ins, &format!("{p}.self_attn"));
        ln(&mut ins, &format!("{p}.self_attn_layer_norm"));
        attn(&mut ins, &format!("{p}.encoder_attn"));
        ln(&mut ins, &format!("{p}.encoder_attn_layer_norm"));
        fc(&mut ins, &p, cfg.decoder_ffn_dim);
        ln(&mut ins, &format!("{p}.final_layer_norm"));
    }
    ln(&mut ins, &format!("{dd}.layer_norm"));
    let tied = BTreeMap::from([(
        "proj_out.weight".to_string(),
        (vec![cfg.vocab_size, d], "embed_tokens".to_string()),
    )]);
    ExpectedTensors { required: m, tied }
}

/// A loaded Whisper model: network, shape and greedy-generation settings.
#[derive(Debug)]
pub struct Whisper {
    /// The network (`WhisperForConditionalGeneration`).
    pub net: WhisperForConditionalGeneration,
    /// Shape.
    pub config: WhisperConfig,
    /// Prompt, EOS, suppression lists, `max_length`.
    pub generation: GenerationSettings,
}

/// Builds Burn modules from a transformers-named f32 state dict, plus linear weights kept as
/// stored (`stored`, by weight name; their f32 copy is then absent from `map`).
struct Builder<'a> {
    map: HashMap<String, HfTensor>,
    stored: HashMap<String, StoredMatrix>,
    device: &'a Device,
}

impl Builder<'_> {
    fn take(&mut self, name: &str) -> HfTensor {
        // Presence and shapes were checked by `tensor_problems` before building.
        self.map
            .remove(name)
            .unwrap_or_else(|| unreachable!("tensor {name} checked present"))
    }

    fn t1(&mut self, name: &str) -> Param<Tensor<1>> {
        let t = self.take(name);
        let n = t.data.len();
        Param::from_tensor(Tensor::from_data(TensorData::new(t.data, [n]), self.device))
    }

    fn t2(&mut self, name: &str) -> Tensor<2> {
        let t = self.take(name);
        Tensor::from_data(
            TensorData::new(t.data, [t.shape[0], t.shape[1]]),
            self.device,
        )
    }

    fn linear(&mut self, p: &str, bias: bool) -> LinearWeight {
        if let Some(w) = self.stored.remove(&format!("{p}.weight")) {
            let bias = bias.then(|| self.t1(&format!("{p}.bias")));
            return match w {
                StoredMatrix::Packed(m) => LinearWeight::Packed(PackedLinear {
                    weight: Arc::new(m),
                    bias,
                }),
                StoredMatrix::Half(m) => LinearWeight::Half(HalfLinear { weight: m, bias }),
            };
        }
        // PyTorch [out, in] -> Burn [in, out], transposed on the host so the tensor is contiguous.
        let t = self.take(&format!("{p}.weight"));
        let (o, i) = (t.shape[0], t.shape[1]);
        let mut w = vec![0f32; o * i];
        for r in 0..o {
            for c in 0..i {
                w[c * o + r] = t.data[r * i + c];
            }
        }
        Linear {
            weight: Param::from_tensor(Tensor::from_data(TensorData::new(w, [i, o]), self.device)),
            bias: bias.then(|| self.t1(&format!("{p}.bias"))),
        }
        .into()
    }

    fn layer_norm(&mut self, p: &str, template: LayerNorm) -> LayerNorm {
        let mut ln = template;
        ln.gamma = self.t1(&format!("{p}.weight"));
        ln.beta = Some(self.t1(&format!("{p}.bias")));
        ln
    }

    fn conv(&mut self, p: &str, template: Conv1d) -> Conv1d {
        let t = self.take(&format!("{p}.weight"));
        let shape = [t.shape[0], t.shape[1], t.shape[2]];
        Conv1d {
            weight: Param::from_tensor(Tensor::from_data(
                TensorData::new(t.data, shape),
                self.device,
            )),
            bias: self.t1(&format!("{p}.bias")),
            ..template
        }
    }

    fn embedding(&mut self, name: &str) -> Embedding {
        Embedding {
            weight: Param::from_tensor(self.t2(name)),
        }
    }

    fn attention(&mut self, p: &str, template: WhisperAttention) -> WhisperAttention {
        WhisperAttention {
            q_proj: self.linear(&format!("{p}.q_proj"), true),
            k_proj: self.linear(&format!("{p}.k_proj"), false),
            v_proj: self.linear(&format!("{p}.v_proj"), true),
            out_proj: self.linear(&format!("{p}.out_proj"), true),
            ..template
        }
    }

    /// Fill `template` (the randomly initialised model of the right shape) with the weights.
    fn build(
        &mut self,
        template: WhisperForConditionalGeneration,
    ) -> WhisperForConditionalGeneration {
        let WhisperModel { encoder, decoder } = template.model;
        let e = "model.encoder";
        let enc_layers = encoder
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let p = format!("{e}.layers.{i}");
                WhisperEncoderLayer {
                    self_attn: self.attention(&format!("{p}.self_attn"), l.self_attn),
                    self_attn_layer_norm: self
                        .layer_norm(&format!("{p}.self_attn_layer_norm"), l.self_attn_layer_norm),
                    fc1: self.linear(&format!("{p}.fc1"), true),
                    fc2: self.linear(&format!("{p}.fc2"), true),
                    final_layer_norm: self
                        .layer_norm(&format!("{p}.final_layer_norm"), l.final_layer_norm),
                }
            })
            .collect();
        let encoder = WhisperEncoder {
            conv1: self.conv(&format!("{e}.conv1"), encoder.conv1),
            conv2: self.conv(&format!("{e}.conv2"), encoder.conv2),
            embed_positions: self.embedding(&format!("{e}.embed_positions.weight")),
            layers: enc_layers,
            layer_norm: self.layer_norm(&format!("{e}.layer_norm"), encoder.layer_norm),
        };
        let d = "model.decoder";
        let dec_layers = decoder
            .layers
            .into_iter()
            .enumerate()
            .map(|(i, l)| {
                let p = format!("{d}.layers.{i}");
                WhisperDecoderLayer {
                    self_attn: self.attention(&format!("{p}.self_attn"), l.self_attn),
                    self_attn_layer_norm: self
                        .layer_norm(&format!("{p}.self_attn_layer_norm"), l.self_attn_layer_norm),
                    encoder_attn: self.attention(&format!("{p}.encoder_attn"), l.encoder_attn),
                    encoder_attn_layer_norm: self.layer_norm(
                        &format!("{p}.encoder_attn_layer_norm"),
                        l.encoder_attn_layer_norm,
                    ),
                    fc1: self.linear(&format!("{p}.fc1"), true),
                    fc2: self.linear(&format!("{p}.fc2"), true),
                    final_layer_norm: self
                        .layer_norm(&format!("{p}.final_layer_norm"), l.final_layer_norm),
                }
            })
            .collect();
        let decoder = WhisperDecoder {
            embed_tokens: self.embedding(&format!("{d}.embed_tokens.weight")),
            embed_positions: self.embedding(&format!("{d}.embed_positions.weight")),
            layers: dec_layers,
            layer_norm: self.layer_norm(&format!("{d}.layer_norm"), decoder.layer_norm),
        };
        WhisperForConditionalGeneration {
            model: WhisperModel { encoder, decoder },
        }
    }
}

impl Whisper {
    /// Pack the network's linear layers as `kind` (Q8_0 / Q4_0, multiplied by
    /// [`crate::nn::qmatmul`]'s kernels): see
    /// [`WhisperForConditionalGeneration::quantize`] for which layers, and
    /// [`crate::nn::qlinear`] for the precision of everything else. Returns how many layers
    /// are packed.
    ///
    /// # Errors
    /// [`QLinearError::Values`] when a weight cannot be read back as f32.
    pub fn quantize(&mut self, kind: QuantKind) -> Result<usize, QLinearError> {
        self.net.quantize(kind)
    }

    /// Load a checkpoint folder (layout from [`detect_layout`]) onto `device`.
    ///
    /// # Errors
    /// [`CheckpointError`] naming the file and, for tensor problems, each tensor with its expected
    /// and found shape.
    pub fn load(dir: &Path, device: &Device) -> Result<Self, CheckpointError> {
        match detect_layout(dir)? {
            WhisperLayout::Ct2 => Self::load_ct2(dir, device),
            WhisperLayout::Hf => Self::load_hf(dir, device),
        }
    }

    /// Load a CTranslate2 folder: `model.bin` through [`super::ct2::to_hf_state_dict`]
    /// (f16 -> f32, exact), suppression lists from `config.json`.
    ///
    /// # Errors
    /// See [`Whisper::load`]; reader errors ([`CheckpointError::Ct2`]) name the byte offset.
    pub fn load_ct2(dir: &Path, device: &Device) -> Result<Self, CheckpointError> {
        let path = dir.join("model.bin");
        let ct2 = Ct2Model::load(&path)?;
        Self::from_ct2(ct2, &path, device, |config| {
            GenerationSettings::from_ct2_config_json(
                &dir.join("config.json"),
                config.max_target_positions,
                config.vocab_size,
            )
        })
    }

    /// [`Whisper::load_ct2`] from the bytes of the folder's `model.bin` and `config.json` (a
    /// browser's `fetch`, no file system); `dir` only names the files in errors.
    ///
    /// # Errors
    /// See [`Whisper::load_ct2`].
    pub fn load_ct2_bytes(
        model_bin: &[u8],
        config_json: &[u8],
        dir: &Path,
        device: &Device,
    ) -> Result<Self, CheckpointError> {
        let path = dir.join("model.bin");
        let ct2 = Ct2Model::parse(model_bin, &path)?;
        Self::from_ct2(ct2, &path, device, |config| {
            GenerationSettings::from_ct2_config_bytes(
                config_json,
                &dir.join("config.json"),
                config.max_target_positions,
                config.vocab_size,
            )
        })
    }

    /// The network of a parsed CTranslate2 `model.bin` (`path`, named in errors), with the
    /// generation settings `generation` reads for its configuration.
    fn from_ct2(
        ct2: Ct2Model,
        path: &Path,
        device: &Device,
        generation: impl FnOnce(&WhisperConfig) -> Result<GenerationSettings, CheckpointError>,
    ) -> Result<Self, CheckpointError> {
        let config = whisper_dims(&ct2)?;
        let tensors = to_hf_state_dict(&ct2)?;
        drop(ct2);
        let generation = generation(&config)?;
        let net = Self::from_state_dict(&config, tensors, path, device)?;
        Ok(Self {
            net,
            config,
            generation,
        })
    }

    /// Build the network from a transformers-named f32 state dict (as
    /// [`super::ct2::to_hf_state_dict`] returns); `source` names the file in errors.
    ///
    /// # Errors
    /// [`CheckpointError::Tensors`] listing every missing, unexpected or mis-shaped tensor (and any
    /// tensor whose data length does not match its shape).
    pub fn from_state_dict(
        config: &WhisperConfig,
        tensors: Vec<HfTensor>,
        source: &Path,
        device: &Device,
    ) -> Result<WhisperForConditionalGeneration, CheckpointError> {
        let found: Vec<FoundTensor> = tensors
            .iter()
            .map(|t| FoundTensor::named(&t.name, &t.shape, None))
            .collect();
        let mut problems = tensor_problems(&expected_tensors(config), &found);
        for t in &tensors {
            let n: usize = t.shape.iter().product();
            if n != t.data.len() {
                problems.push(format!(
                    "tensor {}: shape {:?} needs {n} values, found {}",
                    t.name,
                    t.shape,
                    t.data.len()
                ));
            }
        }
        no_problems(source, problems)?;
        Ok(Self::build_checked(config, tensors, HashMap::new(), device))
    }

    /// Build the network from tensors already checked against [`expected_tensors`]: f32
    /// `tensors` plus linear weights kept as stored (`stored`, by weight name, shapes checked
    /// by the caller; their names are absent from `tensors`).
    pub(crate) fn build_checked(
        config: &WhisperConfig,
        tensors: Vec<HfTensor>,
        stored: HashMap<String, StoredMatrix>,
        device: &Device,
    ) -> WhisperForConditionalGeneration {
        let map = tensors.into_iter().map(|t| (t.name.clone(), t)).collect();
        let mut b = Builder {
            map,
            stored,
            device,
        };
        b.build(WhisperForConditionalGeneration::new(config, device))
    }

    /// Load a transformers folder: `config.json`, `model.safetensors` (through burn-store,
    /// cast to f32) and `generation_config.json` (required: it holds `suppress_tokens` and
    /// `begin_suppress_tokens`, which greedy decoding needs to match transformers).
    ///
    /// # Errors
    /// See [`Whisper::load`].
    pub fn load_hf(dir: &Path, device: &Device) -> Result<Self, CheckpointError> {
        let config = WhisperConfig::from_hf_config_json(&dir.join("config.json"))?;
        let generation = GenerationSettings::from_hf_generation_json(
            &dir.join("generation_config.json"),
            config.max_target_positions,
            config.vocab_size,
        )?;
        let weights = dir.join("model.safetensors");
        let net = Self::load_safetensors(&config, &weights, device)?;
        Ok(Self {
            net,
            config,
            generation,
        })
    }

    /// Fill a network of shape `config` from a transformers `model.safetensors` with
    /// burn-store (`PyTorchToBurnAdapter`: Linear weights transposed, LayerNorm
    /// `weight/bias` -> `gamma/beta`; any float dtype cast to f32). The header is checked
    /// first with [`tensor_problems`].
    ///
    /// # Errors
    /// [`CheckpointError::File`] for an unreadable or corrupt file, [`CheckpointError::Tensors`] for
    /// tensor problems.
    pub fn load_safetensors(
        config: &WhisperConfig,
        weights: &Path,
        device: &Device,
    ) -> Result<WhisperForConditionalGeneration, CheckpointError> {
        let found = read_safetensors_header(weights, |name| Some(name.to_string()))?;
        no_problems(weights, tensor_problems(&expected_tensors(config), &found))?;
        let mut net = WhisperForConditionalGeneration::new(config, device);
        load_safetensors_into(&mut net, weights, None)?;
        Ok(net)
    }
}
