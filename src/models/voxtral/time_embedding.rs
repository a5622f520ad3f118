//! Sinusoidal time conditioning `t_cond` for the decoder's ADA RMSNorm.
//!
//! Mirrors `VoxtralRealtimeTimeEmbedding` (huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>;
//! vLLM `TimeEmbedding`):
//! `inv_freq[i] = exp(-ln(10000) * i / (d/2))`, `emb = t * inv_freq`,
//! `t_cond = cat(cos(emb), sin(emb))` (cos first), `t` = number of delay tokens (80 ms each).

use burn::tensor::{Device, Tensor, TensorData};

/// `t_cond` for `t` delay tokens, computed in f32 like upstream's f32 run.
///
/// # Shapes
/// - returns `[d_model]`: `cos(emb)` in the first `d_model / 2` entries, `sin(emb)` in the rest
pub fn time_embedding(t: f32, d_model: usize, device: &Device) -> Tensor<1> {
    let half = d_model / 2;
    let ln_theta = 10000.0f64.ln() as f32;
    let mut cos = Vec::with_capacity(half);
    let mut sin = Vec::with_capacity(half);
    for i in 0..half {
        // torch: exp(-log(theta) * arange(half).float() / half), all f32.
        let inv = (-ln_theta * i as f32 / half as f32).exp();
        let e = t * inv;
        cos.push(e.cos());
        sin.push(e.sin());
    }
    cos.extend(sin);
    Tensor::from_data(TensorData::new(cos, [d_model]), device)
}
