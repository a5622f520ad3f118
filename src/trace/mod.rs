//! Recording of intermediate tensors under stable, hierarchical capture names.
//!
//! A capture name is the upstream PyTorch module path (as `named_modules()` of the transformers
//! model prints it) followed by `.in.<i|kwarg>` or `.out[.<i|field>]`, exactly like the forward
//! hooks in `reference/` name their dumps, so a Burn dump and a PyTorch dump join name by name.
//! Where the Burn structure has no upstream twin, the name starts with `voxtrace.` to say so.
//!
//! Models take a [`Scope`] in their forward functions. A disabled scope (the default,
//! [`Scope::off`]) carries no path and makes every `record` call a single branch, so capture
//! costs nothing measurable when off. An enabled scope forwards tensors to a [`Tracer`], which
//! applies a name filter *before* reading any tensor data and then hands the values to a sink:
//! in memory ([`Tracer::in_memory`]) or streamed to a temporary file and finalised as a
//! safetensors dump in the `trace-v1` format ([`Tracer::to_file`]).
//!
//! A third sink, [`Tracer::graph`], is for graph capture (`Device::capture()`, see
//! the ONNX exporter, `export`): nothing executes there, so instead of reading values it records which
//! capture tensor id each accepted name refers to ([`GraphTap`]).
//!
//! # The `trace-v1` file format
//! A safetensors file; tensor names are capture names; `__metadata__` holds
//! `voxtrace.format = "trace-v1"`, `voxtrace.order` (JSON array of names in execution order),
//! `voxtrace.source` (free text: framework, backend, dtype) and optional `voxtrace.*` keys.

mod filter;
mod writer;

pub use filter::NameFilter;
pub use writer::{TraceError, TraceWriter, trace_v1_bytes};

use burn::tensor::{DType, Int, Tensor, TensorData};
use std::path::Path;
use std::sync::Mutex;

/// One recorded tensor, held in memory: name, shape, dtype and values.
#[derive(Debug, Clone)]
pub struct Captured {
    /// Capture name (see module docs).
    pub name: String,
    /// Shape in upstream layout, e.g. `[batch, seq, d_model]`.
    pub shape: Vec<usize>,
    /// Values; floats are stored as f32, integer tensors as i64.
    pub data: CapturedData,
}

/// Values of a [`Captured`] tensor.
#[derive(Debug, Clone, PartialEq)]
pub enum CapturedData {
    /// Float tensor values, row-major.
    F32(Vec<f32>),
    /// Integer tensor values (token ids), row-major.
    I64(Vec<i64>),
}

impl CapturedData {
    /// Values as f32 (integers converted), row-major.
    pub fn to_f32(&self) -> Vec<f32> {
        match self {
            CapturedData::F32(v) => v.clone(),
            CapturedData::I64(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }
}

enum Sink {
    Memory(Vec<Captured>),
    File(TraceWriter),
    Graph(Vec<GraphTap>),
}

/// A capture name bound to a tensor of a graph being captured on `Device::capture()`
/// (recorded by a [`Tracer::graph`] tracer instead of values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphTap {
    /// Capture name (see module docs).
    pub name: String,
    /// Id of the tensor in the captured `GraphIr`.
    pub id: burn::backend::capture::TensorId,
    /// Whether the tensor is an integer tensor (token ids) rather than float.
    pub int: bool,
}

/// Block inputs to substitute during a forward pass ([`Tracer::with_feed`]): full name
/// (`<block path>.in.0`) -> (shape, row-major f32 values).
pub type FeedMap = std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>;

/// Receives tensors from enabled [`Scope`]s; owns the name filter and the sink.
///
/// Errors while streaming to disk (disk full, ...) are kept and returned by
/// [`Tracer::finish`]; recording never panics.
pub struct Tracer {
    filter: NameFilter,
    state: Mutex<TracerState>,
    /// Inputs to substitute ([`Scope::fed_input`]).
    feed: FeedMap,
    /// Names actually substituted, in order.
    fed: Mutex<Vec<String>>,
}

struct TracerState {
    sink: Sink,
    error: Option<TraceError>,
    count: usize,
}

impl Tracer {
    /// A tracer that keeps every accepted tensor in memory (tests, small models).
    pub fn in_memory(filter: NameFilter) -> Self {
        Self::with_sink(filter, Sink::Memory(Vec::new()))
    }

    /// A tracer that streams accepted tensors to a temporary file next to `out` and, on
    /// [`Tracer::finish`], writes a `trace-v1` safetensors file at `out` (atomic rename), so a
    /// long clip never needs all tensors in memory.
    ///
    /// # Errors
    /// The temporary file cannot be created in the folder of `out`.
    pub fn to_file(filter: NameFilter, out: &Path, source: &str) -> Result<Self, TraceError> {
        Ok(Self::with_sink(
            filter,
            Sink::File(TraceWriter::create(out, source)?),
        ))
    }

    /// A tracer for graph capture: each accepted name is bound to the capture tensor id of the
    /// recorded tensor ([`GraphTap`]); no tensor data is read. Recording a tensor that does not
    /// live on a capture device is an error returned by [`Tracer::finish_graph`].
    pub fn graph(filter: NameFilter) -> Self {
        Self::with_sink(filter, Sink::Graph(Vec::new()))
    }

    /// Substitute recorded inputs during the forward pass (`voxtrace trace --feed`): where a
    /// block calls [`Scope::fed_input`] and `feed` holds its `<path>.in.0` with the same shape,
    /// the block runs on that tensor instead of its own input (onnxruntime's `qdq_err`: a
    /// block's own error, separated from what earlier blocks accumulated).
    pub fn with_feed(
        mut self,
        feed: std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    ) -> Self {
        self.feed = feed;
        self
    }

    /// The names whose inputs were substituted so far, in order.
    pub fn fed(&self) -> Vec<String> {
        self.fed.lock().map(|f| f.clone()).unwrap_or_default()
    }

    /// Whether this tracer records capture tensor ids instead of values.
    pub fn is_graph(&self) -> bool {
        self.state
            .lock()
            .map(|s| matches!(s.sink, Sink::Graph(_)))
            .unwrap_or(false)
    }

    /// Finish a [`Tracer::graph`] tracer: the taps in recording order.
    ///
    /// # Errors
    /// A recorded tensor was not on a capture device, or this is not a graph tracer.
    pub fn finish_graph(self) -> Result<Vec<GraphTap>, TraceError> {
        let state = self.state.into_inner().map_err(|_| TraceError::Poisoned)?;
        if let Some(e) = state.error {
            return Err(e);
        }
        match state.sink {
            Sink::Graph(v) => Ok(v),
            _ => Err(TraceError::Data {
                name: String::new(),
                message: "finish_graph called on a tracer that records values".into(),
            }),
        }
    }

    #[cfg_attr(not(feature = "record"), allow(dead_code))]
    fn push_tap(
        &self,
        name: String,
        id: Result<burn::backend::capture::TensorId, String>,
        int: bool,
    ) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.error.is_some() {
            return;
        }
        match (id, &mut state.sink) {
            (Ok(id), Sink::Graph(v)) => {
                v.push(GraphTap { name, id, int });
                state.count += 1;
            }
            (Err(message), _) => state.error = Some(TraceError::Data { name, message }),
            _ => {}
        }
    }

    fn with_sink(filter: NameFilter, sink: Sink) -> Self {
        Self {
            filter,
            state: Mutex::new(TracerState {
                sink,
                error: None,
                count: 0,
            }),
            feed: std::collections::HashMap::new(),
            fed: Mutex::new(Vec::new()),
        }
    }

    /// The root scope of this tracer: an empty module path.
    pub fn root(&self) -> Scope<'_> {
        Scope {
            tracer: Some(self),
            path: String::new(),
        }
    }

    /// Whether a tensor of this name would be recorded.
    pub fn accepts(&self, name: &str) -> bool {
        self.filter.matches(name)
    }

    /// Number of tensors recorded so far.
    pub fn len(&self) -> usize {
        self.state.lock().map(|s| s.count).unwrap_or(0)
    }

    /// Whether nothing has been recorded yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    #[cfg_attr(not(feature = "record"), allow(dead_code))]
    fn push(&self, name: String, data: TensorData) {
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        if state.error.is_some() {
            return;
        }
        let shape = data.shape().to_vec();
        let values = match data.dtype() {
            DType::I64 | DType::I32 | DType::I16 | DType::I8 | DType::U8 | DType::U32 => data
                .convert::<i64>()
                .try_into_vec::<i64>()
                .map(CapturedData::I64),
            _ => data
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map(CapturedData::F32),
        };
        let values = match values {
            Ok(v) => v,
            Err(e) => {
                state.error = Some(TraceError::Data {
                    name,
                    message: format!("{e:?}"),
                });
                return;
            }
        };
        state.count += 1;
        let captured = Captured {
            name,
            shape,
            data: values,
        };
        let result = match &mut state.sink {
            Sink::Memory(v) => {
                v.push(captured);
                Ok(())
            }
            Sink::File(w) => w.append(&captured),
            Sink::Graph(_) => Ok(()),
        };
        if let Err(e) = result {
            state.error = Some(e);
        }
    }

    /// Finish recording. For a file tracer, writes the dump (temporary file, then rename) and
    /// returns no tensors; for a memory tracer, returns the tensors in execution order.
    ///
    /// # Errors
    /// Any error met while recording or writing.
    pub fn finish(self) -> Result<Vec<Captured>, TraceError> {
        let state = self.state.into_inner().map_err(|_| TraceError::Poisoned)?;
        if let Some(e) = state.error {
            return Err(e);
        }
        match state.sink {
            Sink::Memory(v) => Ok(v),
            Sink::File(w) => {
                w.finish()?;
                Ok(Vec::new())
            }
            Sink::Graph(_) => Ok(Vec::new()),
        }
    }
}

/// A position in the module tree during a forward pass: the tracer (if capture is on) and the
/// module path of the current module.
///
/// Cloning is cheap when capture is off (no path is built).
#[derive(Clone)]
pub struct Scope<'a> {
    tracer: Option<&'a Tracer>,
    path: String,
}

impl Scope<'static> {
    /// A disabled scope: every record call is a no-op.
    pub fn off() -> Self {
        Scope {
            tracer: None,
            path: String::new(),
        }
    }
}

impl<'a> Scope<'a> {
    /// Whether this scope records anything (always `false` without the `record` feature).
    #[inline(always)]
    pub fn enabled(&self) -> bool {
        cfg!(feature = "record") && self.tracer.is_some()
    }

    /// The module path of this scope (`""` at the root or when disabled).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The scope of a child module, e.g. `scope.child("layers").child("0")`.
    pub fn child(&self, name: &str) -> Scope<'a> {
        if !self.enabled() {
            return Scope::off();
        }
        match self.tracer {
            None => Scope {
                tracer: None,
                path: String::new(),
            },
            Some(t) => Scope {
                tracer: Some(t),
                path: if self.path.is_empty() {
                    name.to_string()
                } else {
                    format!("{}.{}", self.path, name)
                },
            },
        }
    }

    /// The child scope for element `index` of a module list (`layers.3`).
    pub fn index(&self, index: usize) -> Scope<'a> {
        if !self.enabled() {
            return Scope::off();
        }
        self.child(&index.to_string())
    }

    #[cfg_attr(not(feature = "record"), allow(dead_code))]
    fn full_name(&self, suffix: &str) -> String {
        if self.path.is_empty() {
            suffix.to_string()
        } else {
            format!("{}.{}", self.path, suffix)
        }
    }

    /// Record a float tensor as `<path>.<suffix>`, e.g. `suffix = "out"` or `"in.0"`.
    /// A no-op without the `record` feature.
    #[inline(always)]
    pub fn record<const D: usize>(&self, suffix: &str, tensor: &Tensor<D>) {
        #[cfg(not(feature = "record"))]
        let _ = (suffix, tensor);
        #[cfg(feature = "record")]
        if let Some(t) = self.tracer {
            let name = self.full_name(suffix);
            if t.accepts(&name) {
                if t.is_graph() {
                    let id = tensor
                        .clone()
                        .try_into_primitive::<burn::backend::capture::CaptureBackend>()
                        .map(|p| p.id())
                        .map_err(|e| format!("not a capture-device tensor: {e:?}"));
                    t.push_tap(name, id, false);
                } else {
                    t.push(name, tensor.clone().into_data());
                }
            }
        }
    }

    /// Record an integer tensor (token ids) as `<path>.<suffix>`.
    /// A no-op without the `record` feature.
    #[inline(always)]
    pub fn record_int<const D: usize>(&self, suffix: &str, tensor: &Tensor<D, Int>) {
        #[cfg(not(feature = "record"))]
        let _ = (suffix, tensor);
        #[cfg(feature = "record")]
        if let Some(t) = self.tracer {
            let name = self.full_name(suffix);
            if t.accepts(&name) {
                if t.is_graph() {
                    let id = tensor
                        .clone()
                        .try_into_primitive::<burn::backend::capture::CaptureBackend>()
                        .map(|p| p.id())
                        .map_err(|e| format!("not a capture-device tensor: {e:?}"));
                    t.push_tap(name, id, true);
                } else {
                    t.push(name, tensor.clone().into_data());
                }
            }
        }
    }

    /// A block's input, replaced by the feed's `<path>.in.0` when the tracer has one of the
    /// same shape ([`Tracer::with_feed`]), then recorded as `in.0`.
    ///
    /// # Shapes
    /// - `tensor`: any; returned as it is or as the fed tensor of the same shape
    pub fn fed_input<const D: usize>(&self, tensor: Tensor<D>) -> Tensor<D> {
        #[cfg(feature = "record")]
        if let Some(t) = self.tracer
            && !t.feed.is_empty()
        {
            let name = self.full_name("in.0");
            if let Some((shape, values)) = t.feed.get(&name)
                && shape.as_slice() == tensor.dims().as_slice()
            {
                let fed = Tensor::<D>::from_data(
                    burn::tensor::TensorData::new(values.clone(), shape.clone()),
                    &tensor.device(),
                );
                if let Ok(mut f) = t.fed.lock() {
                    f.push(name);
                }
                self.input(&fed);
                return fed;
            }
        }
        self.input(&tensor);
        tensor
    }

    /// Record the input (`in.0`) of this module.
    #[inline(always)]
    pub fn input<const D: usize>(&self, tensor: &Tensor<D>) {
        self.record("in.0", tensor);
    }

    /// Record the output (`out`) of this module and return it, for use in expressions.
    #[inline(always)]
    pub fn output<const D: usize>(&self, tensor: Tensor<D>) -> Tensor<D> {
        self.record("out", &tensor);
        tensor
    }
}
