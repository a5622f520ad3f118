//! A linear layer whose weight is Burn's f32 [`Linear`], BF16 / F16 as stored (multiplied by
//! [`super::half`]'s kernels), or packed in GGUF Q8_0 / Q4_0 blocks and multiplied by
//! [`super::qmatmul`]'s own kernels (never dequantized to f32 first).
//!
//! [`LinearWeight`] is what the models hold where upstream has an `nn.Linear`; its
//! [`LinearLayer::apply`] is called through [`super::mlp::linear`], the traced entry point (so a
//! packed layer records the same `in.0` / `out` captures as an f32 one). A model is loaded in
//! f32 and packed afterwards ([`LinearWeight::quantize`]; for Whisper,
//! `models::whisper::Whisper::quantize`).
//!
//! ## What is packed, what stays f32
//!
//! | tensor                                               | precision                        |
//! |------------------------------------------------------|----------------------------------|
//! | `Linear` weights with `n_in` a multiple of 32        | Q8_0 or Q4_0 (packed, [`PackedMatrix`]) |
//! | `Linear` weights with `n_in % 32 != 0`               | f32 (a block cannot straddle rows) |
//! | `Linear` biases                                      | f32, added after the product     |
//! | activations                                          | f32; quantized per block of 32 to 8 bits inside each product ([`super::qmatmul::quantize_activations`]) |
//! | Voxtral's token table, also its tied LM head          | packed with the linears (`nn::embedding::TokenEmbedding`; voxtral.cpp's converter quantizes `tok_embeddings` too); a lookup dequantizes only its rows |
//! | conv stem, norms, Whisper's embeddings and tied head, position tables, attention maths | f32 (not `LinearWeight`s) |
//!
//! The models decide which of their layers are `LinearWeight`s; the numerically sensitive
//! ones (conv stem, norms, position tables) are plain Burn modules and never packed.
//! Loaded from a BF16 / F16 checkpoint, the same layers (and Voxtral's token table) are used
//! as stored ([`LinearWeight::Half`]) until packed.
//!
//! ## Quantizing
//!
//! Weights are quantized by [`crate::quant::blocks::quantize`], byte-identical with PyPI `gguf`
//! 0.19.0 `gguf.quants` (`Q8_0.quantize_blocks`, `Q4_0.quantize_blocks`, which mirror ggml's
//! `quantize_row_q8_0_ref` / `quantize_row_q4_0_ref`; `tests/quant_gguf.rs` checks the bytes);
//! per block of 32 f32 values `x`:
//! * Q8_0: `d = max|x| / 127`, `id = 1 / d` (0 when `d = 0`), `q = roundf(x * id)` (halves away
//!   from zero: gguf's `np_roundf`), all in f32; `d` stored as f16 (round to nearest even).
//! * Q4_0: `m` = the first element of largest magnitude, sign kept; `d = m / -8`, `id = 1 / d`
//!   (0 when `d = 0`), `q = min(trunc(x * id + 8.5), 15)`, in f32; element `i < 16` in the low
//!   nibble of byte `i`, element `i + 16` in its high nibble; `d` as f16.
//!
//! Burn's `Linear` stores its weight `[n_in, n_out]` (transposed from PyTorch), so packing first
//! transposes it to PyTorch's `[n_out, n_in]` rows, the layout [`PackedMatrix`] (and a GGUF
//! tensor of `ne = [n_in, n_out]`) holds.
//!
//! ## Devices
//!
//! A packed product reads the activations back to the host and writes the result to `x`'s
//! device ([`super::qmatmul::qlinear`]): it runs on Flex and ndarray, not on the graph-capture
//! device (`voxtrace export` works on f32 models only).

use super::half::{HalfCompute, HalfMatrix, half_linear};
use super::qmatmul::{BLOCK, PackedMatrix, QMatmulError, QuantKind, qlinear};
use crate::quant::blocks::{QuantizeError, quantize};
use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
    Param,
};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};
use std::sync::Arc;

/// Why a `Linear` could not be packed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QLinearError {
    /// The weight's values could not be read back as f32 (e.g. a graph-capture tensor).
    #[error("cannot read the linear weight [{n_in}, {n_out}] as f32: {reason}")]
    Values {
        /// Input width.
        n_in: usize,
        /// Output width.
        n_out: usize,
        /// What Burn reported.
        reason: String,
    },
    /// The packed matrix was refused (its input width is not a multiple of 32).
    #[error(transparent)]
    Packed(#[from] QMatmulError),
    /// The quantizer refused the weight (a NaN or infinity, where the reference is undefined).
    #[error("linear weight: {0}")]
    Quantize(#[from] QuantizeError),
}

/// A `Linear` with its weight packed: `y = x · Wᵀ + b` with `W` `[n_out, n_in]` in GGUF blocks
/// and the bias in f32.
#[derive(Debug, Clone)]
pub struct PackedLinear {
    /// `[n_out, n_in]` packed (shared: cloning the layer does not copy the bytes).
    pub weight: Arc<PackedMatrix<'static>>,
    /// `[n_out]`, f32.
    pub bias: Option<Param<Tensor<1>>>,
}

impl PackedLinear {
    /// Pack `layer`'s weight as `kind` ([`crate::quant::blocks::quantize`] on its
    /// `[n_out, n_in]` rows); the bias is kept as it is.
    ///
    /// # Errors
    /// [`QLinearError::Packed`] when `n_in` is not a multiple of 32; [`QLinearError::Values`]
    /// when the weight cannot be read as f32; [`QLinearError::Quantize`] for a non-finite
    /// weight.
    pub fn from_linear(layer: &Linear, kind: QuantKind) -> Result<Self, QLinearError> {
        let w = layer.weight.val();
        let [n_in, n_out] = w.dims();
        if !n_in.is_multiple_of(BLOCK) {
            return Err(QMatmulError::Cols { cols: n_in }.into());
        }
        let values: Vec<f32> = w
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| QLinearError::Values {
                n_in,
                n_out,
                reason: format!("{e:?}"),
            })?;
        if values.len() != n_in * n_out {
            return Err(QLinearError::Values {
                n_in,
                n_out,
                reason: format!("{} values", values.len()),
            });
        }
        // Burn [n_in, n_out] -> PyTorch [n_out, n_in].
        let mut rows = vec![0f32; n_in * n_out];
        for (i, src) in values.chunks_exact(n_out).enumerate() {
            for (o, &v) in src.iter().enumerate() {
                rows[o * n_in + i] = v;
            }
        }
        let bytes = quantize(&rows, n_in, kind.ggml_type())?;
        Ok(Self {
            weight: Arc::new(PackedMatrix::new(kind, n_out, n_in, bytes)?),
            bias: layer.bias.clone(),
        })
    }

    /// `x · Wᵀ + b` through [`qlinear`].
    ///
    /// # Shapes
    /// - `x`: `[..., n_in]`
    /// - returns `[..., n_out]`
    ///
    /// # Panics
    /// When the last dimension of `x` is not `n_in` (as Burn's `Linear::forward` does).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = qlinear(x, &self.weight).unwrap_or_else(|e| panic!("packed linear: {e}"));
        match &self.bias {
            Some(b) => y + b.val().unsqueeze::<D>(),
            None => y,
        }
    }
}

/// A `Linear` with its weight in BF16 / F16 as stored (`nn::half`): `y = x · Wᵀ + b`, `W`
/// `[n_out, n_in]` widened in registers, f32 bias.
#[derive(Debug, Clone)]
pub struct HalfLinear {
    /// `[n_out, n_in]`, 16-bit (shared bytes: cloning does not copy).
    pub weight: HalfMatrix,
    /// `[n_out]`, f32.
    pub bias: Option<Param<Tensor<1>>>,
}

impl HalfLinear {
    /// `x · Wᵀ + b` through [`half_linear`].
    ///
    /// # Shapes
    /// - `x`: `[..., n_in]`
    /// - returns `[..., n_out]`
    ///
    /// # Panics
    /// When the last dimension of `x` is not `n_in` (as Burn's `Linear::forward` does).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let y = half_linear(x, &self.weight).unwrap_or_else(|e| panic!("half linear: {e}"));
        match &self.bias {
            Some(b) => y + b.val().unsqueeze::<D>(),
            None => y,
        }
    }
}

/// The weight of a linear layer: f32 as loaded, 16-bit as stored, or packed.
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// Burn's `Linear`, weight `[n_in, n_out]` f32.
    F32(Linear),
    /// BF16 / F16 weight used as stored, f32 bias.
    Half(HalfLinear),
    /// Packed Q8_0 / Q4_0 weight, f32 bias.
    Packed(PackedLinear),
}

impl From<Linear> for LinearWeight {
    fn from(l: Linear) -> Self {
        LinearWeight::F32(l)
    }
}

impl LinearWeight {
    /// `(n_in, n_out)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            LinearWeight::F32(l) => {
                let [i, o] = l.weight.val().dims();
                (i, o)
            }
            LinearWeight::Half(h) => (h.weight.cols(), h.weight.rows()),
            LinearWeight::Packed(p) => (p.weight.cols(), p.weight.rows()),
        }
    }

    /// The packed weight's format, `None` for f32 and 16-bit weights.
    pub fn kind(&self) -> Option<QuantKind> {
        match self {
            LinearWeight::F32(_) | LinearWeight::Half(_) => None,
            LinearWeight::Packed(p) => Some(p.weight.kind()),
        }
    }

    /// Storage of the weight: `f32`, `bf16`, `f16`, `q8_0` or `q4_0`.
    pub fn precision(&self) -> &'static str {
        match self {
            LinearWeight::F32(_) => "f32",
            LinearWeight::Half(h) => h.weight.kind().name(),
            LinearWeight::Packed(p) => p.weight.kind().name(),
        }
    }

    /// Bytes the weight occupies as stored (bias excluded): what one product reads.
    pub fn weight_bytes(&self) -> usize {
        match self {
            LinearWeight::F32(l) => l.weight.val().dims().iter().product::<usize>() * 4,
            LinearWeight::Half(h) => h.weight.bytes().len(),
            LinearWeight::Packed(p) => p.weight.bytes().len(),
        }
    }

    fn bias(&self) -> Option<Param<Tensor<1>>> {
        match self {
            LinearWeight::F32(l) => l.bias.clone(),
            LinearWeight::Half(h) => h.bias.clone(),
            LinearWeight::Packed(p) => p.bias.clone(),
        }
    }

    /// `x · Wᵀ + b`: Burn's own `Linear::forward` for f32 (no hand-written kernel, unlike
    /// [`LinearLayer::apply`]), [`PackedLinear::forward`] when packed.
    ///
    /// # Shapes
    /// - `x`: `[..., n_in]`
    /// - returns `[..., n_out]`
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            LinearWeight::F32(l) => l.forward(x),
            LinearWeight::Half(h) => h.forward(x),
            LinearWeight::Packed(p) => p.forward(x),
        }
    }

    /// Products of a 16-bit weight from now on in `compute` ([`HalfCompute`]); returns whether
    /// the layer runs in bf16 (a BF16 weight on a CPU with AVX512_BF16). f32 and packed
    /// weights are unchanged (false).
    pub fn set_compute(&mut self, compute: HalfCompute) -> bool {
        match self {
            LinearWeight::Half(h) => {
                h.weight.set_compute(compute);
                h.weight.computes_in_bf16()
            }
            _ => false,
        }
    }

    /// [`HalfMatrix::set_tiles_for_every_row`] on a 16-bit weight (others unchanged).
    pub fn set_tiles_for_every_row(&mut self, every_row: bool) {
        if let LinearWeight::Half(h) = self {
            h.weight.set_tiles_for_every_row(every_row);
        }
    }

    /// Replace the weight by a 16-bit `[n_out, n_in]` matrix used as stored (e.g. a slice of a
    /// memory-mapped BF16 checkpoint), keeping the bias. The caller checks the shape.
    pub fn set_half(&mut self, weight: HalfMatrix) {
        let bias = self.bias();
        *self = LinearWeight::Half(HalfLinear { weight, bias });
    }

    /// Replace the weight by an already packed `[n_out, n_in]` matrix (e.g. read from a GGUF
    /// file), keeping the bias. The caller checks that the shape is the layer's.
    pub fn set_packed(&mut self, weight: PackedMatrix<'static>) {
        let bias = self.bias();
        *self = LinearWeight::Packed(PackedLinear {
            weight: Arc::new(weight),
            bias,
        });
    }

    /// Pack an f32 layer as `kind` ([`PackedLinear::from_linear`]). Returns whether the layer
    /// is now packed as `kind`: `false` (and the layer left f32) when `n_in` is not a multiple
    /// of 32. A layer already packed is left as it is (`true` only if already `kind`).
    ///
    /// # Errors
    /// [`QLinearError::Values`] when the weight cannot be read as f32,
    /// [`QLinearError::Quantize`] for a non-finite weight.
    pub fn quantize(&mut self, kind: QuantKind) -> Result<bool, QLinearError> {
        match self {
            LinearWeight::Packed(p) => Ok(p.weight.kind() == kind),
            LinearWeight::Half(h) => {
                let (n_out, n_in) = (h.weight.rows(), h.weight.cols());
                if !n_in.is_multiple_of(BLOCK) {
                    return Ok(false);
                }
                // Already `[n_out, n_in]` rows: quantized as a GGUF converter would.
                let bytes = quantize(&h.weight.to_f32(), n_in, kind.ggml_type())?;
                let weight = Arc::new(PackedMatrix::new(kind, n_out, n_in, bytes)?);
                let bias = h.bias.clone();
                *self = LinearWeight::Packed(PackedLinear { weight, bias });
                Ok(true)
            }
            LinearWeight::F32(l) => {
                let [n_in, _] = l.weight.val().dims();
                if !n_in.is_multiple_of(BLOCK) {
                    return Ok(false);
                }
                *self = LinearWeight::Packed(PackedLinear::from_linear(l, kind)?);
                Ok(true)
            }
        }
    }
}

/// A layer computing `F.linear(x, W, b)`; what [`super::mlp::linear`] records around.
pub trait LinearLayer {
    /// `x · Wᵀ + b`.
    ///
    /// # Shapes
    /// - `x`: `[..., n_in]`
    /// - returns `[..., n_out]`
    fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D>;
}

impl LinearLayer for Linear {
    /// [`super::linear::linear`].
    fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        super::linear::linear(self, x)
    }
}

impl LinearLayer for LinearWeight {
    /// f32: [`super::linear::linear`]; packed: [`PackedLinear::forward`].
    fn apply<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            LinearWeight::F32(l) => super::linear::linear(l, x),
            LinearWeight::Half(h) => h.forward(x),
            LinearWeight::Packed(p) => p.forward(x),
        }
    }
}

/// Container name under which a packed or 16-bit layer's bias is visited.
const PACKED_CONTAINER: &str = "Struct:PackedLinear";

impl LinearWeight {
    /// The same layer with `f` applied to the bias of a packed or 16-bit weight (an f32
    /// layer is given to `g` whole).
    fn map_parts(
        self,
        g: impl FnOnce(Linear) -> Linear,
        f: impl FnOnce(Option<Param<Tensor<1>>>) -> Option<Param<Tensor<1>>>,
    ) -> Self {
        match self {
            LinearWeight::F32(l) => LinearWeight::F32(g(l)),
            LinearWeight::Half(h) => LinearWeight::Half(HalfLinear {
                bias: f(h.bias),
                weight: h.weight,
            }),
            LinearWeight::Packed(p) => LinearWeight::Packed(PackedLinear {
                bias: f(p.bias),
                weight: p.weight,
            }),
        }
    }

    fn bias_ref(&self) -> Option<&Option<Param<Tensor<1>>>> {
        match self {
            LinearWeight::F32(_) => None,
            LinearWeight::Half(h) => Some(&h.bias),
            LinearWeight::Packed(p) => Some(&p.bias),
        }
    }
}

// Written by hand, not derived: the derive would add the variant name to every parameter path
// (`q_proj.F32.weight`). Here an f32 layer visits as the `Linear` it holds (paths
// `….weight` / `….bias` with `Struct:Linear`, so burn-store's PyTorch adapter transposes it as
// before) and a packed or 16-bit one visits only its f32 bias; their weight bytes are not
// parameters.
impl Module for LinearWeight {
    fn collect_devices(&self, devices: Devices) -> Devices {
        match (self, self.bias_ref()) {
            (LinearWeight::F32(l), _) => l.collect_devices(devices),
            (_, Some(b)) => b.collect_devices(devices),
            (_, None) => devices,
        }
    }

    fn fork(self, device: &Device) -> Self {
        self.map_parts(|l| l.fork(device), |b| b.fork(device))
    }

    fn to_device(self, device: &Device) -> Self {
        self.map_parts(|l| l.to_device(device), |b| b.to_device(device))
    }

    fn train(self) -> Self {
        self.map_parts(|l| l.train(), |b| b.train())
    }

    fn valid(&self) -> Self {
        self.clone().map_parts(|l| l.valid(), |b| b.valid())
    }

    fn materialize(self) -> Self {
        self.map_parts(|l| l.materialize(), |b| b.materialize())
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        match (self, self.bias_ref()) {
            (LinearWeight::F32(l), _) => l.visit(visitor),
            (_, Some(b)) => {
                visitor.enter_module("bias", PACKED_CONTAINER);
                b.visit(visitor);
                visitor.exit_module("bias", PACKED_CONTAINER);
            }
            (_, None) => {}
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        match self {
            LinearWeight::F32(l) => LinearWeight::F32(l.map(mapper)),
            other => other.map_parts(
                |l| l,
                |b| {
                    mapper.enter_module("bias", PACKED_CONTAINER);
                    let b = Module::map(b, mapper);
                    mapper.exit_module("bias", PACKED_CONTAINER);
                    b
                },
            ),
        }
    }
}

impl ModuleDisplayDefault for LinearWeight {
    fn content(&self, content: Content) -> Option<Content> {
        match self {
            LinearWeight::F32(l) => l.content(content),
            other => {
                let (n_in, n_out) = other.dims();
                content
                    .add_formatted(&format!(
                        "LinearWeight {{precision: {}, n_in: {n_in}, n_out: {n_out}, bias: {}}}",
                        other.precision(),
                        other.bias_ref().is_some_and(Option::is_some)
                    ))
                    .optional()
            }
        }
    }
}

impl ModuleDisplay for LinearWeight {}
