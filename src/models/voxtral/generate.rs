//! Offline greedy transcription schedule (upstream `generate()` with the whole file at once).
//!
//! vllm-project/vllm `voxtral_realtime.py` + mistral-common OFFLINE mode; transformers
//! `VoxtralRealtimeForConditionalGeneration.generate`
//! (<https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>):
//! the prompt `[BOS] + [STREAMING_PAD] x
//! (left_pad + delay)` is prefilled with `A[p] + E(prompt[p])`; each later position `p` feeds
//! `A[p] + E(previous token)`; greedy argmax; stop at EOS or when the audio tokens run out.

use super::model::Voxtral;
use crate::nn::attention::KvCache;
use crate::trace::Scope;
use burn::tensor::{Int, Tensor, TensorData};

/// Result of offline greedy decoding.
#[derive(Debug, Clone)]
pub struct Generation {
    /// Prompt followed by generated ids, as upstream `generate` returns them (at most the
    /// number of audio tokens `n`).
    pub sequence: Vec<i64>,
    /// Number of prompt tokens at the start of `sequence`.
    pub prompt_len: usize,
}

impl Generation {
    /// The generated ids only (after the prompt).
    pub fn generated(&self) -> &[i64] {
        &self.sequence[self.prompt_len..]
    }
}

/// Greedy offline decoding of padded log-mel `features` after `prompt` ids, with
/// `delay_tokens` for the time conditioning. Stops after EOS (kept in the output, as upstream)
/// or at `n` total tokens, `n` the number of audio tokens.
///
/// # Shapes
/// - `features`: `[1, n_mels, frames]`, `frames = 8 * n`
/// - `prompt`: `[prompt_len]` ids
pub fn generate_offline(
    model: &Voxtral,
    features: Tensor<3>,
    prompt: &[i64],
    delay_tokens: f32,
    eos: Option<i64>,
) -> Generation {
    let device = features.device();
    let off = Scope::off();
    let audio = model.audio_embeds(features, &off);
    let n = audio.dims()[1];
    let t_cond = model.t_cond(delay_tokens, &off, &device);
    let mut caches = vec![KvCache::default(); model.config.decoder.n_layers];
    let mut sequence = prompt.to_vec();
    let l = prompt.len().min(n);
    if l == 0 || l >= n {
        sequence.truncate(n);
        return Generation {
            sequence,
            prompt_len: l,
        };
    }
    let ids = Tensor::<2, Int>::from_data(TensorData::new(prompt[..l].to_vec(), [1, l]), &device);
    let emb = model.embed(ids, &off) + audio.clone().narrow(1, 0, l);
    let logits = model.decode_step_last(emb, &t_cond, 0, &mut caches);
    let mut next = argmax_last(logits);
    sequence.push(next);
    let mut pos = l;
    while sequence.len() < n && Some(next) != eos {
        let ids = Tensor::<2, Int>::from_data(TensorData::new(vec![next], [1, 1]), &device);
        let emb = model.embed(ids, &off) + audio.clone().narrow(1, pos, 1);
        let logits = model.decode_step_last(emb, &t_cond, pos, &mut caches);
        next = argmax_last(logits);
        sequence.push(next);
        pos += 1;
    }
    Generation {
        sequence,
        prompt_len: l,
    }
}

/// Greedy choice at the last position of `logits`.
///
/// # Shapes
/// - `logits`: `[1, seq, vocab]`
pub(crate) fn argmax_last(logits: Tensor<3>) -> i64 {
    let [_, s, v] = logits.dims();
    let last = logits.narrow(1, s - 1, 1).reshape([v]);
    let idx: Vec<i64> = last
        .argmax(0)
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .expect("argmax is an integer tensor");
    idx[0]
}
