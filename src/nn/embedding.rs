//! A token embedding that is also the tied LM head, in the precision it is stored in.
//!
//! Mirrors `nn.Embedding` used both as `embed_tokens` and, tied, as `lm_head` (upstream
//! `tie_word_embeddings`). The table `[vocab, d_model]` has the layout of an `nn.Linear` weight
//! `[n_out, n_in]` for the head, so a BF16 / F16 table is used as stored ([`HalfMatrix`]) and a
//! packed one ([`PackedMatrix`], GGUF `tok_embeddings` as voxtral.cpp writes it) goes through
//! the packed kernels; a lookup widens (or dequantizes) only the rows it reads. At the
//! released Voxtral's size the table is 131072 x 3072: 1.6 GB in f32, 0.8 GB in BF16, 0.23 GB
//! in Q4_0, and the head reads all of it at every decoder step.

use super::half::{HalfMatrix, half_linear};
use super::linear::{is_capture, matmul_transposed};
use super::qlinear::QLinearError;
use super::qmatmul::{BLOCK, PackedMatrix, QuantKind, qlinear};
use crate::quant::blocks::quantize;
use burn::module::{
    Content, Devices, Module, ModuleDisplay, ModuleDisplayDefault, ModuleMapper, ModuleVisitor,
};
use burn::nn::Embedding;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::sync::Arc;

/// The `[vocab, d_model]` token table.
#[derive(Debug, Clone)]
pub enum TokenEmbedding {
    /// Burn's `Embedding` (f32; the only form on the graph-capture device).
    F32(Embedding),
    /// BF16 / F16 as stored.
    Half(HalfMatrix),
    /// Q8_0 / Q4_0 blocks (rows of `d_model`).
    Packed(Arc<PackedMatrix<'static>>),
}

impl From<Embedding> for TokenEmbedding {
    fn from(e: Embedding) -> Self {
        TokenEmbedding::F32(e)
    }
}

impl TokenEmbedding {
    /// `(vocab, d_model)`.
    pub fn dims(&self) -> (usize, usize) {
        match self {
            TokenEmbedding::F32(e) => {
                let [v, d] = e.weight.val().dims();
                (v, d)
            }
            TokenEmbedding::Half(h) => (h.rows(), h.cols()),
            TokenEmbedding::Packed(p) => (p.rows(), p.cols()),
        }
    }

    /// Storage: `f32`, `bf16`, `f16`, `q8_0` or `q4_0`.
    pub fn precision(&self) -> &'static str {
        match self {
            TokenEmbedding::F32(_) => "f32",
            TokenEmbedding::Half(h) => h.kind().name(),
            TokenEmbedding::Packed(p) => p.kind().name(),
        }
    }

    /// Bytes of the table as stored (what the tied head reads per product).
    pub fn weight_bytes(&self) -> usize {
        match self {
            TokenEmbedding::F32(e) => e.weight.val().dims().iter().product::<usize>() * 4,
            TokenEmbedding::Half(h) => h.bytes().len(),
            TokenEmbedding::Packed(p) => p.bytes().len(),
        }
    }

    /// Rows of `ids` (`embed_tokens(ids)`).
    ///
    /// # Shapes
    /// - `ids`: `[batch, seq]`
    /// - returns `[batch, seq, d_model]`
    ///
    /// # Panics
    /// An id outside `0..vocab` (as `nn.Embedding` raises).
    pub fn forward(&self, ids: Tensor<2, Int>) -> Tensor<3> {
        let table = match self {
            TokenEmbedding::F32(e) => return e.forward(ids),
            other => other,
        };
        let (vocab, d) = self.dims();
        let [b, n] = ids.dims();
        let device = ids.device();
        let ids: Vec<i64> = ids
            .into_data()
            .convert::<i64>()
            .try_into_vec::<i64>()
            .unwrap_or_default();
        let mut out = vec![0f32; ids.len() * d];
        for (row, &id) in out.chunks_exact_mut(d.max(1)).zip(&ids) {
            let j = usize::try_from(id)
                .ok()
                .filter(|&j| j < vocab)
                .unwrap_or_else(|| panic!("token id {id} outside the vocabulary 0..{vocab}"));
            match table {
                TokenEmbedding::Half(h) => h.row_into(j, row).expect("row checked"),
                TokenEmbedding::Packed(p) => {
                    row.copy_from_slice(&p.dequantize_row(j).expect("row checked"))
                }
                TokenEmbedding::F32(_) => unreachable!("returned above"),
            }
        }
        Tensor::from_data(TensorData::new(out, [b, n, d]), &device)
    }

    /// The tied LM head: `h · tableᵀ`.
    ///
    /// # Shapes
    /// - `h`: `[batch, seq, d_model]`
    /// - returns `[batch, seq, vocab]`
    ///
    /// # Panics
    /// When the last dimension of `h` is not `d_model`.
    pub fn logits(&self, h: Tensor<3>) -> Tensor<3> {
        match self {
            TokenEmbedding::F32(e) if is_capture(&h.device()) => {
                h.matmul(e.weight.val().transpose().unsqueeze::<3>())
            }
            TokenEmbedding::F32(e) => {
                let [b, n, d] = h.dims();
                let w = e.weight.val();
                let vocab = w.dims()[0];
                matmul_transposed(h.reshape([b * n, d]), w).reshape([b, n, vocab])
            }
            TokenEmbedding::Half(w) => {
                half_linear(h, w).unwrap_or_else(|e| panic!("tied LM head: {e}"))
            }
            TokenEmbedding::Packed(w) => {
                qlinear(h, w).unwrap_or_else(|e| panic!("tied LM head: {e}"))
            }
        }
    }

    /// Pack the table as `kind` (GGUF `tok_embeddings` as voxtral.cpp's converter quantizes
    /// it). Returns whether it is now `kind`: `false` when `d_model` is not a multiple of 32 or
    /// it is already packed otherwise.
    ///
    /// # Errors
    /// [`QLinearError::Values`] when the f32 table cannot be read back,
    /// [`QLinearError::Quantize`] for a non-finite value.
    pub fn quantize(&mut self, kind: QuantKind) -> Result<bool, QLinearError> {
        let (vocab, d) = self.dims();
        if !d.is_multiple_of(BLOCK) {
            return Ok(false);
        }
        let values = match self {
            TokenEmbedding::Packed(p) => return Ok(p.kind() == kind),
            TokenEmbedding::Half(h) => h.to_f32(),
            TokenEmbedding::F32(e) => e
                .weight
                .val()
                .into_data()
                .convert::<f32>()
                .try_into_vec::<f32>()
                .map_err(|err| QLinearError::Values {
                    n_in: d,
                    n_out: vocab,
                    reason: format!("{err:?}"),
                })?,
        };
        let bytes = quantize(&values, d, kind.ggml_type())?;
        *self = TokenEmbedding::Packed(Arc::new(PackedMatrix::new(kind, vocab, d, bytes)?));
        Ok(true)
    }
}

// By hand, as `LinearWeight`: an f32 table visits as the `Embedding` it holds (parameter path
// `….weight`), a 16-bit or packed one has no parameters.
impl Module for TokenEmbedding {
    fn collect_devices(&self, devices: Devices) -> Devices {
        match self {
            TokenEmbedding::F32(e) => e.collect_devices(devices),
            _ => devices,
        }
    }

    fn fork(self, device: &Device) -> Self {
        match self {
            TokenEmbedding::F32(e) => TokenEmbedding::F32(e.fork(device)),
            other => other,
        }
    }

    fn to_device(self, device: &Device) -> Self {
        match self {
            TokenEmbedding::F32(e) => TokenEmbedding::F32(e.to_device(device)),
            other => other,
        }
    }

    fn train(self) -> Self {
        match self {
            TokenEmbedding::F32(e) => TokenEmbedding::F32(e.train()),
            other => other,
        }
    }

    fn valid(&self) -> Self {
        match self {
            TokenEmbedding::F32(e) => TokenEmbedding::F32(e.valid()),
            other => other.clone(),
        }
    }

    fn materialize(self) -> Self {
        match self {
            TokenEmbedding::F32(e) => TokenEmbedding::F32(e.materialize()),
            other => other,
        }
    }

    fn visit<V: ModuleVisitor>(&self, visitor: &mut V) {
        if let TokenEmbedding::F32(e) = self {
            e.visit(visitor);
        }
    }

    fn map<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        match self {
            TokenEmbedding::F32(e) => TokenEmbedding::F32(e.map(mapper)),
            other => other,
        }
    }
}

impl ModuleDisplayDefault for TokenEmbedding {
    fn content(&self, content: Content) -> Option<Content> {
        match self {
            TokenEmbedding::F32(e) => e.content(content),
            other => {
                let (vocab, d) = other.dims();
                content
                    .add_formatted(&format!(
                        "TokenEmbedding {{precision: {}, vocab: {vocab}, d_model: {d}}}",
                        other.precision()
                    ))
                    .optional()
            }
        }
    }
}

impl ModuleDisplay for TokenEmbedding {}
