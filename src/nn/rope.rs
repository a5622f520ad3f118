//! Rotary position embedding (RoPE), in both layouts found in checkpoints.
//!
//! * [`RopeStyle::HalfSplit`] (GPT-NeoX style, `rotate_half`): rotates the pairs
//!   `(x[i], x[i + head_dim/2])`. This is what transformers' `apply_rotary_pos_emb` does
//!   (huggingface/transformers
//!   <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>),
//!   so HF weights (whose q/k rows the converter permuted with `permute_for_rope`) need it.
//! * [`RopeStyle::Interleaved`] (GPT-J style): rotates `(x[2i], x[2i+1])`; Mistral's own
//!   `consolidated.safetensors` needs it (vllm-project/vllm `whisper_causal.py`,
//!   `is_neox_style=False`; antirez/voxtral.c `MODEL.md`).
//!
//! Frequencies follow `VoxtralRealtimeRotaryEmbedding.compute_default_rope_parameters` in f32:
//! `inv_freq[i] = 1 / theta^(2i / head_dim)`, angle = `position * inv_freq[i]`.

use burn::tensor::{Device, Tensor, TensorData};

/// Which pairs of a head's channels RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(x[2i], x[2i+1])`: Mistral-format weights.
    Interleaved,
    /// Pairs `(x[i], x[i + head_dim/2])`: HF-format weights.
    HalfSplit,
}

/// Cos/sin tables for a range of positions.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    /// Base frequency (upstream `rope_theta`).
    pub theta: f64,
    /// Channels per head (rotated in full).
    pub head_dim: usize,
}

impl RotaryEmbedding {
    /// Inverse frequencies `1 / theta^(2i / head_dim)`, computed in f32 as upstream does.
    ///
    /// # Shapes
    /// - returns `[head_dim/2]`
    pub fn inv_freq(&self) -> Vec<f32> {
        let dim = self.head_dim as f32;
        (0..self.head_dim / 2)
            .map(|i| {
                let exponent = (2 * i) as f32 / dim;
                1.0f32 / (self.theta as f32).powf(exponent)
            })
            .collect()
    }

    /// `(cos, sin)` of the angles `position * inv_freq[i]` for positions `start .. start + seq`.
    ///
    /// # Shapes
    /// - returns `(cos, sin)`, each `[seq, head_dim/2]` (row `p` is position `start + p`)
    pub fn tables(&self, start: usize, seq: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
        let inv = self.inv_freq();
        let half = inv.len();
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for p in start..start + seq {
            let pf = p as f32;
            for &f in &inv {
                let angle = pf * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        (
            Tensor::from_data(TensorData::new(cos, [seq, half]), device),
            Tensor::from_data(TensorData::new(sin, [seq, half]), device),
        )
    }
}

/// Rotate each head's channel pairs (chosen by `style`) by the angles of `cos`/`sin`.
///
/// # Shapes
/// - `x`: `[batch, n_heads, seq, head_dim]` (queries; keys have `n_kv_heads`)
/// - `cos`, `sin`: `[seq, head_dim/2]`, from [`RotaryEmbedding::tables`]
/// - returns the shape of `x`
pub fn apply_rope(x: Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>, style: RopeStyle) -> Tensor<4> {
    let [b, h, s, d] = x.dims();
    let half = d / 2;
    let c = cos.clone().unsqueeze::<4>();
    let sn = sin.clone().unsqueeze::<4>();
    match style {
        RopeStyle::HalfSplit => {
            let x1 = x.clone().narrow(3, 0, half);
            let x2 = x.narrow(3, half, half);
            let o1 = x1.clone() * c.clone() - x2.clone() * sn.clone();
            let o2 = x2 * c + x1 * sn;
            Tensor::cat(vec![o1, o2], 3)
        }
        RopeStyle::Interleaved => {
            let pairs = x.reshape([b, h, s, half, 2]);
            let x1 = pairs.clone().narrow(4, 0, 1).reshape([b, h, s, half]);
            let x2 = pairs.narrow(4, 1, 1).reshape([b, h, s, half]);
            let o1 = x1.clone() * c.clone() - x2.clone() * sn.clone();
            let o2 = x2 * c + x1 * sn;
            Tensor::stack::<5>(vec![o1, o2], 4).reshape([b, h, s, d])
        }
    }
}
