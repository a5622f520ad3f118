//! Export of a model's traced forward graph to ONNX (run by ONNX Runtime) and to a Google Model
//! Explorer JSON graph.
//!
//! Pipeline: the model runs on Burn's non-executing capture device (`Device::capture()`,
//! crate burn-capture 0.22.1) inside `capture_scope`, with a [`Tracer::graph`] tracer, so the
//! recorded `GraphIr` comes with capture names for every tensor the tracer sees
//! ([`GraphTap`]). [`lower`] turns each Burn op into standard ONNX ops (module docs there),
//! [`onnx`] builds and writes the protobuf (external data above a size threshold), and
//! [`model_explorer`] writes the JSON graph (namespace = module path of the capture name).
//!
//! Parts ([`Part`]): Voxtral `encoder` (`input_features [1, mels, frames]` ->
//! `model.audio_tower.out.last_hidden_state`), `adapter` (encoder output ->
//! `model.multi_modal_projector.out`), `decoder-step` (`input_ids [1, n]` + audio embeddings
//! `model.multi_modal_projector.out [1, n, d]` -> `logits`; from position 0, or with a KV
//! cache as graph inputs/outputs after `past` positions, see [`capture_voxtral`]), `all` (`input_features` + `input_ids` ->
//! `logits`); Whisper `encoder`, `decoder-step` (`input_ids` +
//! `model.encoder.out.last_hidden_state` -> `logits`) and `all`. Graph input names equal the
//! dump names of the same tensors, so an upstream dump supplies them directly.

pub mod fuse;
pub mod lower;
pub mod model_explorer;
pub mod onnx;

use crate::models::voxtral::Voxtral;
use crate::models::whisper::Whisper;
use crate::trace::{GraphTap, NameFilter, Tracer};
use burn::backend::capture::{CapturedGraph, TensorId};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use onnx_protobuf::{GraphProto, ModelProto, OperatorSetIdProto};
use std::path::{Path, PathBuf};

/// Errors of an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A Burn op (or dtype) without an ONNX lowering; `scope` is the module path of the nearest
    /// trace capture name.
    #[error("unsupported operation {op} (in trace scope `{scope}`): no ONNX lowering")]
    Unsupported {
        /// Op family and variant, e.g. `BaseFloat::Flip`.
        op: String,
        /// Module path of the nearest capture name (may be empty at the root).
        scope: String,
    },
    /// Graph capture failed (burn-capture's error, or the model failed on the capture device).
    #[error("graph capture failed: {0}")]
    Capture(String),
    /// Inconsistent graph data or invalid arguments.
    #[error("{0}")]
    Data(String),
    /// An I/O error on the named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Which sub-graph to export (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// Audio encoder.
    Encoder,
    /// Voxtral adapter (multi-modal projector).
    Adapter,
    /// Decoder over `tokens` positions from position 0 (no KV-cache inputs).
    DecoderStep,
    /// The whole teacher-forced forward pass.
    All,
}

/// Export settings.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    /// ONNX opset: 18 (default) or 23.
    pub opset: u32,
    /// List every traced intermediate as an extra graph output.
    pub intermediates: bool,
    /// Move initializer data to `FILE.onnx.data` when it exceeds this many bytes
    /// (default [`DEFAULT_EXTERNAL_THRESHOLD`]).
    pub external_threshold: u64,
}

/// Default threshold for external data: 2e9 bytes (protobuf messages are limited to 2 GiB).
pub const DEFAULT_EXTERNAL_THRESHOLD: u64 = 2_000_000_000;

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            opset: 18,
            intermediates: false,
            external_threshold: DEFAULT_EXTERNAL_THRESHOLD,
        }
    }
}

/// A captured part: the graph, its named runtime inputs and outputs, and the trace taps.
pub struct PartGraph {
    /// The captured op graph and constant values.
    pub captured: CapturedGraph,
    /// Graph inputs `(name, id)`, names equal to dump names.
    pub inputs: Vec<(String, TensorId)>,
    /// Graph outputs `(name, id)`.
    pub outputs: Vec<(String, TensorId)>,
    /// Capture names of intermediate tensors.
    pub taps: Vec<GraphTap>,
    /// Module parameter paths (Burn layout, e.g. `Linear` weights are `[in, out]`), which
    /// name their initializers.
    pub params: Vec<(String, TensorId)>,
}

/// Collects `(parameter path, capture tensor id)` of a module on the capture device.
struct ParamIds {
    path: Vec<String>,
    out: Vec<(String, TensorId)>,
}

impl burn::module::ModuleVisitor for ParamIds {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<D>>) {
        if let Ok(id) = id_of(&param.val()) {
            self.out.push((self.path.join("."), id));
        }
    }
}

/// `(parameter path, capture tensor id)` of every float parameter of `module` (which must live
/// on the capture device; other parameters are skipped).
pub fn param_ids<M: Module>(module: &M) -> Vec<(String, TensorId)> {
    let mut v = ParamIds {
        path: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// Capture `f` on a fresh capture device. `f` receives the device and the root of a graph
/// tracer and returns `(inputs, outputs)` as `(name, id)` pairs.
///
/// # Errors
/// [`ExportError::Capture`] when the closure fails or burn-capture rejects the boundaries.
pub fn capture<F>(f: F) -> Result<PartGraph, ExportError>
where
    F: FnOnce(&Device, &crate::trace::Scope) -> Result<IoIds, ExportError>,
{
    let device = Device::capture();
    let tracer = Tracer::graph(NameFilter::all());
    let mut io: Option<Result<IoIds, ExportError>> = None;
    let captured = device
        .capture_scope(|scope| {
            let r = f(&device, &tracer.root());
            let (ins, outs) = match &r {
                Ok((i, o)) => (
                    i.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
                    o.iter().map(|(_, id)| *id).collect::<Vec<_>>(),
                ),
                Err(_) => (vec![], vec![]),
            };
            io = Some(r);
            scope.complete(ins, outs)
        })
        .map_err(|e| ExportError::Capture(e.to_string()));
    let (inputs, outputs) = io.ok_or_else(|| ExportError::Capture("closure not run".into()))??;
    let captured = captured?;
    let taps = tracer
        .finish_graph()
        .map_err(|e| ExportError::Capture(e.to_string()))?;
    Ok(PartGraph {
        captured,
        inputs,
        outputs,
        taps,
        params: Vec::new(),
    })
}

/// Named graph inputs and outputs `(Vec<(name, id)>, Vec<(name, id)>)`.
pub type IoIds = (Vec<(String, TensorId)>, Vec<(String, TensorId)>);

/// The capture tensor id of a float tensor.
///
/// # Errors
/// The tensor is not on a capture device.
pub fn id_of<const D: usize>(t: &Tensor<D>) -> Result<TensorId, ExportError> {
    t.clone()
        .try_into_primitive::<burn::backend::capture::CaptureBackend>()
        .map(|p| p.id())
        .map_err(|e| ExportError::Capture(format!("not a capture tensor: {e:?}")))
}

/// The capture tensor id of an integer tensor.
///
/// # Errors
/// The tensor is not on a capture device.
pub fn id_of_int<const D: usize>(t: &Tensor<D, Int>) -> Result<TensorId, ExportError> {
    t.clone()
        .try_into_primitive::<burn::backend::capture::CaptureBackend>()
        .map(|p| p.id())
        .map_err(|e| ExportError::Capture(format!("not a capture tensor: {e:?}")))
}

fn float_input<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D> {
    let n: usize = shape.iter().product();
    Tensor::from_data(TensorData::new(vec![0f32; n], shape), device)
}

fn int_input<const D: usize>(shape: [usize; D], device: &Device) -> Tensor<D, Int> {
    let n: usize = shape.iter().product();
    Tensor::from_data(TensorData::new(vec![0i64; n], shape), device)
}

/// Largest `--frames` [`capture_voxtral`] accepts: 65 536 log-mel frames (655 s of audio at
/// 100 frames/s; the input alone is 32 MiB per 128 mel bins). A graph's shapes are fixed at
/// export, so longer inputs are never needed to export it.
pub const MAX_EXPORT_FRAMES: usize = 1 << 16;

/// Largest `--tokens` and `--past` [`capture_voxtral`] accepts (decoder positions).
pub const MAX_EXPORT_POSITIONS: usize = 1 << 16;

/// `value` of option `name` within `min..=max`, else [`ExportError::Data`] saying so.
fn check_size(name: &str, value: usize, min: usize, max: usize) -> Result<(), ExportError> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(ExportError::Data(format!(
            "{name} {value} is outside {min}..={max}"
        )))
    }
}

/// Capture a Voxtral part. `frames`: log-mel frames of the audio input (a multiple of 8 for the
/// adapter and `all`); `tokens`: decoder positions; `delay_tokens`: transcription delay in
/// 80 ms tokens (6 = 480 ms). Shapes: see the module docs.
///
/// `past > 0` (decoder-step only) makes an incremental step with a KV cache: extra inputs
/// `past_key_values.{layer}.key|value [1, n_kv_heads, past, head_dim]` (positions `0..past`,
/// keys after RoPE, as [`crate::nn::KvCache`] holds them), the `tokens` new positions start at
/// `past` (RoPE tables and mask are built for that position), and extra outputs
/// `present.{layer}.key|value`: the cache after the step, trimmed to the sliding window like
/// Burn's own decoding does.
///
/// # Errors
/// Inconsistent sizes, or sizes above [`MAX_EXPORT_FRAMES`] / [`MAX_EXPORT_POSITIONS`];
/// capture failures.
pub fn capture_voxtral(
    model: &Voxtral,
    part: Part,
    frames: usize,
    tokens: usize,
    delay_tokens: f32,
    past: usize,
) -> Result<PartGraph, ExportError> {
    if past > 0 && part != Part::DecoderStep {
        return Err(ExportError::Data(
            "a KV cache (--past) only applies to --part decoder-step".into(),
        ));
    }
    check_size("--frames", frames, 1, MAX_EXPORT_FRAMES)?;
    check_size("--tokens", tokens, 1, MAX_EXPORT_POSITIONS)?;
    check_size("--past", past, 0, MAX_EXPORT_POSITIONS)?;
    let cfg = model.config.clone();
    let mels = cfg.encoder.num_mel_bins;
    let group = 2 * cfg.downsample_factor;
    if matches!(part, Part::Adapter | Part::All | Part::Encoder) && !frames.is_multiple_of(group) {
        return Err(ExportError::Data(format!(
            "--frames {frames} must be a multiple of {group} (conv stride 2 x downsample {})",
            cfg.downsample_factor
        )));
    }
    if part == Part::All && tokens != frames / group {
        return Err(ExportError::Data(format!(
            "part all needs tokens = frames / {group} = {} (got {tokens})",
            frames / group
        )));
    }
    let mut params = Vec::new();
    let mut part_graph = capture(|device, root| {
        let m = Voxtral {
            net: model.net.clone().to_device(device),
            config: cfg.clone(),
        };
        params = param_ids(&m.net);
        let ms = root.child("model");
        match part {
            Part::Encoder => {
                let x = float_input([1, mels, frames], device);
                let xi = id_of(&x)?;
                let enc = m.net.model.audio_tower.forward(
                    x,
                    &cfg.encoder,
                    cfg.rope_style,
                    &ms.child("audio_tower"),
                );
                Ok((
                    vec![("input_features".into(), xi)],
                    vec![(
                        "model.audio_tower.out.last_hidden_state".into(),
                        id_of(&enc)?,
                    )],
                ))
            }
            Part::Adapter => {
                let x = float_input([1, frames / 2, cfg.encoder.d_model], device);
                let xi = id_of(&x)?;
                let grouped =
                    crate::models::voxtral::adapter::group_frames(x, cfg.downsample_factor);
                let out = m
                    .net
                    .model
                    .multi_modal_projector
                    .forward(grouped, &ms.child("multi_modal_projector"));
                Ok((
                    vec![("model.audio_tower.out.last_hidden_state".into(), xi)],
                    vec![("model.multi_modal_projector.out".into(), id_of(&out)?)],
                ))
            }
            Part::DecoderStep => {
                let ids = int_input([1, tokens], device);
                let audio = float_input([1, tokens, cfg.decoder.d_model], device);
                let mut inputs = vec![
                    ("input_ids".to_string(), id_of_int(&ids)?),
                    (
                        "model.multi_modal_projector.out".to_string(),
                        id_of(&audio)?,
                    ),
                ];
                let d = &cfg.decoder;
                let mut caches = Vec::new();
                if past > 0 {
                    for i in 0..d.n_layers {
                        let k = float_input([1, d.n_kv_heads, past, d.head_dim], device);
                        let v = float_input([1, d.n_kv_heads, past, d.head_dim], device);
                        inputs.push((format!("past_key_values.{i}.key"), id_of(&k)?));
                        inputs.push((format!("past_key_values.{i}.value"), id_of(&v)?));
                        caches.push(crate::nn::KvCache {
                            k: Some(k),
                            v: Some(v),
                            start: 0,
                        });
                    }
                }
                let lm = ms.child("language_model");
                let tok = m.embed(ids, &lm);
                let t_cond = m.t_cond(delay_tokens, &ms, device);
                let h = m.net.model.language_model.forward(
                    tok + audio,
                    &t_cond,
                    past,
                    &cfg.decoder,
                    cfg.rope_style,
                    (past > 0).then_some(caches.as_mut_slice()),
                    &lm,
                );
                let logits = m.lm_head(h, root);
                root.record("logits", &logits);
                let mut outputs = vec![("logits".to_string(), id_of(&logits)?)];
                for (i, c) in caches.iter().enumerate() {
                    for (kind, t) in [("key", &c.k), ("value", &c.v)] {
                        let t = t.as_ref().ok_or_else(|| {
                            ExportError::Capture(format!(
                                "layer {i}: no {kind} cache after the step"
                            ))
                        })?;
                        let name = format!("present.{i}.{kind}");
                        root.record(&name, t);
                        outputs.push((name, id_of(t)?));
                    }
                }
                Ok((inputs, outputs))
            }
            Part::All => {
                let x = float_input([1, mels, frames], device);
                let ids = int_input([1, tokens], device);
                let (xi, ii) = (id_of(&x)?, id_of_int(&ids)?);
                let logits = m.forward(x, ids, delay_tokens, root);
                Ok((
                    vec![("input_features".into(), xi), ("input_ids".into(), ii)],
                    vec![("logits".into(), id_of(&logits)?)],
                ))
            }
        }
    })?;
    part_graph.params = params;
    Ok(part_graph)
}

/// Capture a Whisper part (`encoder`, `decoder-step`, `all`; features are always
/// `[1, mels, 2 * max_source_positions]`).
///
/// # Errors
/// `adapter` (Whisper has none); `tokens` not in `1..=max_target_positions`; forward errors;
/// capture failures.
pub fn capture_whisper(
    model: &Whisper,
    part: Part,
    tokens: usize,
) -> Result<PartGraph, ExportError> {
    let cfg = model.config;
    check_size("--tokens", tokens, 1, cfg.max_target_positions)?;
    let frames = 2 * cfg.max_source_positions;
    let fwd = |e: crate::models::whisper::model::ForwardError| ExportError::Data(e.to_string());
    let mut params = Vec::new();
    let mut part_graph = capture(|device, root| {
        let net = model.net.clone().to_device(device);
        params = param_ids(&net);
        let ms = root.child("model");
        match part {
            Part::Adapter => Err(ExportError::Data(
                "Whisper has no adapter part (use encoder, decoder-step or all)".into(),
            )),
            Part::Encoder => {
                let x = float_input([1, cfg.num_mel_bins, frames], device);
                let xi = id_of(&x)?;
                let enc = net
                    .model
                    .encoder
                    .forward(x, &ms.child("encoder"))
                    .map_err(fwd)?;
                Ok((
                    vec![("input_features".into(), xi)],
                    vec![("model.encoder.out.last_hidden_state".into(), id_of(&enc)?)],
                ))
            }
            Part::DecoderStep => {
                let ids = int_input([1, tokens], device);
                let enc = float_input([1, cfg.max_source_positions, cfg.d_model], device);
                let (ii, ei) = (id_of_int(&ids)?, id_of(&enc)?);
                let dec = net
                    .model
                    .decoder
                    .forward(ids, &enc, 0, None, &ms.child("decoder"))
                    .map_err(fwd)?;
                let logits = net.proj_out(dec, root);
                root.record("logits", &logits);
                Ok((
                    vec![
                        ("input_ids".into(), ii),
                        ("model.encoder.out.last_hidden_state".into(), ei),
                    ],
                    vec![("logits".into(), id_of(&logits)?)],
                ))
            }
            Part::All => {
                let x = float_input([1, cfg.num_mel_bins, frames], device);
                let ids = int_input([1, tokens], device);
                let (xi, ii) = (id_of(&x)?, id_of_int(&ids)?);
                let logits = net.forward(x, ids, root).map_err(fwd)?;
                Ok((
                    vec![("input_features".into(), xi), ("input_ids".into(), ii)],
                    vec![("logits".into(), id_of(&logits)?)],
                ))
            }
        }
    })?;
    part_graph.params = params;
    Ok(part_graph)
}

/// An exported model: the ONNX proto and the Model Explorer graph.
pub struct Exported {
    /// The ONNX model (initializers inline; [`onnx::write_model`] may move them out).
    pub model: ModelProto,
    /// Model Explorer graph collection (JSON).
    pub graph_json: serde_json::Value,
    /// Number of ONNX nodes.
    pub node_count: usize,
}

/// Lower a captured part to ONNX.
///
/// # Errors
/// Unsupported opset or op (see [`lower::lower`]).
pub fn to_onnx(
    part: &PartGraph,
    opts: &ExportOptions,
    label: &str,
) -> Result<Exported, ExportError> {
    if opts.opset != 18 && opts.opset != 23 {
        return Err(ExportError::Data(format!(
            "opset {} is not supported (use 18 or 23)",
            opts.opset
        )));
    }
    let lowered = lower::lower(
        &part.captured.graph.operations,
        &part.captured.values,
        &part.inputs,
        &part.taps,
        &part.params,
        opts.opset,
    )?;
    let mut g = GraphProto::new();
    g.name = label.to_string();
    for (name, _) in &part.inputs {
        let (elem, shape) = lowered.values.get(name).cloned().ok_or_else(|| {
            ExportError::Data(format!("graph input {name} is not used by the graph"))
        })?;
        g.input.push(onnx::value_info(name, elem, &shape));
    }
    let mut out_names: Vec<String> = Vec::new();
    for (name, id) in &part.outputs {
        // The output value is named by its tap when there is one; else alias it.
        let value = lowered
            .tap_names
            .iter()
            .find(|n| *n == name)
            .cloned()
            .or_else(|| {
                part.taps
                    .iter()
                    .find(|t| t.id == *id)
                    .map(|t| t.name.clone())
            })
            .unwrap_or_else(|| format!("t{}", id.value()));
        if !out_names.contains(&value) {
            out_names.push(value);
        }
    }
    if opts.intermediates {
        for n in &lowered.tap_names {
            if !out_names.contains(n) && !part.inputs.iter().any(|(i, _)| i == n) {
                out_names.push(n.clone());
            }
        }
    }
    for name in &out_names {
        let (elem, shape) = lowered
            .values
            .get(name)
            .cloned()
            .ok_or_else(|| ExportError::Data(format!("graph output {name} has no value")))?;
        g.output.push(onnx::value_info(name, elem, &shape));
    }
    for n in &lowered.tap_names {
        if !out_names.contains(n)
            && let Some((elem, shape)) = lowered.values.get(n)
        {
            g.value_info.push(onnx::value_info(n, *elem, shape));
        }
    }
    let graph_json = model_explorer::graph_json(label, &lowered, &part.inputs, &out_names);
    let node_count = lowered.nodes.len();
    g.node = lowered.nodes;
    g.initializer = lowered.initializers;
    let mut model = ModelProto::new();
    model.ir_version = if opts.opset >= 23 { 11 } else { 8 };
    model.producer_name = "voxtrace".into();
    model.producer_version = env!("CARGO_PKG_VERSION").into();
    let mut os = OperatorSetIdProto::new();
    os.domain = String::new();
    os.version = i64::from(opts.opset);
    model.opset_import.push(os);
    model.graph = Some(g).into();
    Ok(Exported {
        model,
        graph_json,
        node_count,
    })
}

/// Write an export: `.onnx` (external data above the threshold) and, if asked, the Model
/// Explorer JSON graph (atomic writes). Returns whether external data was used.
///
/// # Errors
/// I/O errors naming the file.
pub fn write(
    exported: Exported,
    out: &Path,
    graph_json: Option<&Path>,
    opts: &ExportOptions,
) -> Result<bool, ExportError> {
    if let Some(p) = graph_json {
        let text = serde_json::to_string_pretty(&exported.graph_json)
            .map_err(|e| ExportError::Data(e.to_string()))?;
        crate::io::write_atomic(p, text.as_bytes())
            .map_err(|e| ExportError::Data(e.to_string()))?;
    }
    onnx::write_model(exported.model, out, opts.external_threshold)
}
