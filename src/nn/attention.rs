//! Causal sliding-window multi-head attention with grouped-query heads (GQA) and a KV cache.
//!
//! Mirrors `VoxtralRealtimeAttention` (encoder: q, v, o biases, no k bias) and
//! `VoxtralRealtimeTextAttention` (decoder: no biases, GQA) with `eager_attention_forward` in
//! huggingface/transformers
//! <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/voxtral_realtime/modeling_voxtral_realtime.py>.
//! The window
//! includes the current position: key `j` is visible from query `i` when `i - window < j <= i`
//! (transformers `create_sliding_window_causal_mask`; vLLM passes `(window - 1, 0)`).

use super::dense_attention::{DENSE_MIN_KEYS, DENSE_MIN_QUERIES, dense_attention};
use super::linear::{is_capture, is_flex};
use super::mlp::linear;
use super::qlinear::{LinearLayer, LinearWeight};
use super::rope::{RopeStyle, apply_rope};
use super::softmax::softmax_last;
use crate::trace::Scope;
use burn::module::Module;
use burn::nn::LinearConfig;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// Everything an attention layer needs besides its weights for one call: where the queries
/// sit, their RoPE tables, the weights' RoPE layout and the sliding window.
pub struct Step<'a> {
    /// Absolute position of the first frame.
    pub pos0: usize,
    /// RoPE cos `[seq, head_dim/2]`.
    pub cos: &'a Tensor<2>,
    /// RoPE sin `[seq, head_dim/2]`.
    pub sin: &'a Tensor<2>,
    /// RoPE layout of the weights.
    pub style: RopeStyle,
    /// Sliding window (positions, including the current one).
    pub window: usize,
    /// Position inputs in upstream form, built only when capture is on.
    pub traced: Option<TracedPositions>,
}

/// Position inputs as upstream passes them to each layer (`position_embeddings` = (cos, sin)
/// each `[1, seq, head_dim]` in half-split form, `position_ids [1, seq]`), for capture only.
pub struct TracedPositions {
    /// `[1, seq, head_dim]`.
    pub cos: Tensor<3>,
    /// `[1, seq, head_dim]`.
    pub sin: Tensor<3>,
    /// `[1, seq]` absolute positions.
    pub ids: Tensor<2, Int>,
}

impl TracedPositions {
    /// Build the upstream-form position inputs for `seq` positions from `pos0`.
    ///
    /// # Shapes
    /// - `cos`, `sin`: `[seq, head_dim/2]`
    /// - the fields become `cos`, `sin` `[1, seq, head_dim]` (`cat(t, t)`) and `ids` `[1, seq]`
    pub fn new(cos: &Tensor<2>, sin: &Tensor<2>, pos0: usize, seq: usize) -> Self {
        let full = |t: &Tensor<2>| Tensor::cat(vec![t.clone(), t.clone()], 1).unsqueeze::<3>();
        let ids: Vec<i64> = (pos0..pos0 + seq).map(|p| p as i64).collect();
        Self {
            cos: full(cos),
            sin: full(sin),
            ids: Tensor::from_data(TensorData::new(ids, [1, seq]), &cos.device()),
        }
    }

    /// Record `in.position_embeddings.0/.1` and `in.position_ids` under `scope`.
    pub fn record(&self, scope: &Scope) {
        scope.record("in.position_embeddings.0", &self.cos);
        scope.record("in.position_embeddings.1", &self.sin);
        scope.record_int("in.position_ids", &self.ids);
    }
}

/// Record the rotary module as upstream calls it (`in.0` = hidden states, `in.position_ids`)
/// and returns it (`out.0` = cos, `out.1` = sin, each `[1, seq, head_dim]` = `cat(t, t)`: the
/// frequency content is the same for both RoPE layouts). Returns the traced position inputs
/// for the layers, or `None` when capture is off.
///
/// # Shapes
/// - `hidden`: `[batch, seq, d_model]` (recorded only)
/// - `cos`, `sin`: `[seq, head_dim/2]`
pub fn record_rope(
    scope: &Scope,
    hidden: &Tensor<3>,
    cos: &Tensor<2>,
    sin: &Tensor<2>,
    pos0: usize,
) -> Option<TracedPositions> {
    if !scope.enabled() {
        return None;
    }
    let tp = TracedPositions::new(cos, sin, pos0, cos.dims()[0]);
    scope.input(hidden);
    scope.record_int("in.position_ids", &tp.ids);
    scope.record("out.0", &tp.cos);
    scope.record("out.1", &tp.sin);
    Some(tp)
}

/// Shape and bias settings of an attention block.
#[derive(Debug, Clone)]
pub struct AttentionConfig {
    /// Model width.
    pub d_model: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Channels per head.
    pub head_dim: usize,
    /// Biases on q, k, v, o.
    pub biases: [bool; 4],
}

/// Multi-head attention projections (`q_proj`, `k_proj`, `v_proj`, `o_proj`).
#[derive(Module, Debug)]
pub struct Attention {
    /// `[d_model] -> [n_heads * head_dim]`.
    pub q_proj: LinearWeight,
    /// `[d_model] -> [n_kv_heads * head_dim]`.
    pub k_proj: LinearWeight,
    /// `[d_model] -> [n_kv_heads * head_dim]`.
    pub v_proj: LinearWeight,
    /// `[n_heads * head_dim] -> [d_model]`.
    pub o_proj: LinearWeight,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Channels per head.
    pub head_dim: usize,
}

/// Keys and values of past positions for one attention layer, bounded by the sliding window.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    /// `[batch, n_kv_heads, cached, head_dim]` after RoPE.
    pub k: Option<Tensor<4>>,
    /// `[batch, n_kv_heads, cached, head_dim]`.
    pub v: Option<Tensor<4>>,
    /// Absolute position of the first cached entry.
    pub start: usize,
}

impl KvCache {
    /// Number of cached positions.
    pub fn len(&self) -> usize {
        self.k.as_ref().map(|k| k.dims()[2]).unwrap_or(0)
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Absolute position one past the last cached entry.
    pub fn end(&self) -> usize {
        self.start + self.len()
    }
}

impl Attention {
    /// Randomly initialised projections (replaced by a checkpoint when loading).
    pub fn new(cfg: &AttentionConfig, device: &Device) -> Self {
        let q = cfg.n_heads * cfg.head_dim;
        let kv = cfg.n_kv_heads * cfg.head_dim;
        let [bq, bk, bv, bo] = cfg.biases;
        Self {
            q_proj: LinearConfig::new(cfg.d_model, q)
                .with_bias(bq)
                .init(device)
                .into(),
            k_proj: LinearConfig::new(cfg.d_model, kv)
                .with_bias(bk)
                .init(device)
                .into(),
            v_proj: LinearConfig::new(cfg.d_model, kv)
                .with_bias(bv)
                .init(device)
                .into(),
            o_proj: LinearConfig::new(q, cfg.d_model)
                .with_bias(bo)
                .init(device)
                .into(),
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim,
        }
    }

    /// The four projections with their upstream names: `[("q_proj", ..), ("k_proj", ..),
    /// ("v_proj", ..), ("o_proj", ..)]`.
    pub fn projections_mut(&mut self) -> [(&'static str, &mut LinearWeight); 4] {
        [
            ("q_proj", &mut self.q_proj),
            ("k_proj", &mut self.k_proj),
            ("v_proj", &mut self.v_proj),
            ("o_proj", &mut self.o_proj),
        ]
    }

    /// Attend `x` at absolute positions `step.pos0 .. step.pos0 + seq`.
    ///
    /// With a `cache`, the new keys and values are appended and entries older than
    /// `window - 1` positions before the last query are dropped afterwards, so the cache never
    /// exceeds `window` entries after a single-token step. Records `in.hidden_states`, the
    /// projections and `out.0`.
    ///
    /// # Shapes
    /// - `x`: `[batch, seq, d_model]`
    /// - `step.cos`, `step.sin`: `[seq, head_dim/2]` for those positions
    /// - `cache`: keys and values `[batch, n_kv_heads, cached, head_dim]`, keys after RoPE
    /// - returns `[batch, seq, d_model]` (`o_proj` of the `[batch, seq, n_heads * head_dim]`
    ///   concatenated heads)
    ///
    /// # Panics
    /// When `cache` ends at another position than `step.pos0` (a caller bug).
    pub fn forward(
        &self,
        x: Tensor<3>,
        step: &Step,
        cache: Option<&mut KvCache>,
        scope: &Scope,
    ) -> Tensor<3> {
        let Step {
            pos0,
            cos,
            sin,
            style,
            window,
            ..
        } = *step;
        scope.record("in.hidden_states", &x);
        let [b, s, _] = x.dims();
        let hd = self.head_dim;
        let q = rope_proj(&self.q_proj, x.clone(), hd, style, &scope.child("q_proj"));
        let k = rope_proj(&self.k_proj, x.clone(), hd, style, &scope.child("k_proj"));
        let v = linear(&self.v_proj, x, &scope.child("v_proj"));
        let q = q.reshape([b, s, self.n_heads, hd]).swap_dims(1, 2);
        let k = k.reshape([b, s, self.n_kv_heads, hd]).swap_dims(1, 2);
        let v = v.reshape([b, s, self.n_kv_heads, hd]).swap_dims(1, 2);
        let q = apply_rope(q, cos, sin, style);
        let k = apply_rope(k, cos, sin, style);

        let (k_all, v_all, k_start) = match cache {
            None => (k, v, pos0),
            Some(c) => {
                let cached_end = c.end();
                let (k_all, v_all, start) = match (c.k.take(), c.v.take()) {
                    (Some(pk), Some(pv)) => {
                        assert_eq!(cached_end, pos0, "KV cache positions must be contiguous");
                        (
                            Tensor::cat(vec![pk, k], 2),
                            Tensor::cat(vec![pv, v], 2),
                            c.start,
                        )
                    }
                    _ => (k, v, pos0),
                };
                // Keep what the next query (at pos0 + s) can still see: positions > pos0 + s - window.
                let total = k_all.dims()[2];
                let keep_from = (pos0 + s)
                    .saturating_sub(window.saturating_sub(1))
                    .max(start);
                let drop = keep_from - start;
                if drop > 0 {
                    c.k = Some(k_all.clone().narrow(2, drop, total - drop));
                    c.v = Some(v_all.clone().narrow(2, drop, total - drop));
                    c.start = start + drop;
                } else {
                    c.k = Some(k_all.clone());
                    c.v = Some(v_all.clone());
                    c.start = start;
                }
                (k_all, v_all, start)
            }
        };

        let out = attend(
            q,
            k_all,
            v_all,
            pos0,
            k_start,
            window,
            self.n_heads / self.n_kv_heads,
        );
        let out = out.swap_dims(1, 2).reshape([b, s, self.n_heads * hd]);
        let out = linear(&self.o_proj, out, &scope.child("o_proj"));
        scope.record("out.0", &out);
        out
    }
}

/// Apply a q or k projection and record it. Capture names promise the upstream tensor, and
/// upstream (transformers) holds q/k rows in half-split order; with interleaved (Mistral)
/// weights the recorded `out` is therefore permuted back to half-split order per head (the
/// inverse of the converter's `permute_for_rope`), so Mistral and HF runs join name by name.
fn rope_proj(
    layer: &LinearWeight,
    x: Tensor<3>,
    head_dim: usize,
    style: RopeStyle,
    scope: &Scope,
) -> Tensor<3> {
    scope.input(&x);
    let y = layer.apply(x);
    if scope.enabled() {
        match style {
            RopeStyle::HalfSplit => scope.record("out", &y),
            RopeStyle::Interleaved => {
                let [b, s, w] = y.dims();
                let heads = w / head_dim;
                let upstream = y
                    .clone()
                    .reshape([b, s, heads, head_dim / 2, 2])
                    .swap_dims(3, 4)
                    .reshape([b, s, w]);
                scope.record("out", &upstream);
            }
        }
    }
    y
}

/// Scaled dot-product attention with a causal sliding-window mask built from absolute
/// positions: queries at `q0 .. q0 + seq`, keys and values at `k0 .. k0 + kv_seq`.
/// Query head `j` uses key/value head `j / n_rep` (transformers `repeat_kv`).
///
/// On Flex this runs Burn's fused attention ([`fused_attention`]). Elsewhere it spells out
/// matmul, mask, softmax, matmul as upstream's `eager_attention_forward` does
/// ([`attend_explicit`]): on the graph-capture device that is the pattern `voxtrace export`
/// lowers, and Burn's generic attention (ndarray, wgpu) has no grouped-query heads.
///
/// More than [`ATTEND_CHUNK`] queries (except on the graph-capture device, whose graph stays
/// upstream's pattern) are split into chunks of that many, each against only the keys its
/// window reaches: the same visible keys per query, so the same result up to f32 summation
/// order, in memory and time linear in `seq` for a fixed window.
///
/// # Shapes
/// - `q`: `[batch, n_heads, seq, head_dim]`
/// - `k`, `v`: `[batch, n_kv_heads, kv_seq, head_dim]`, with `n_heads = n_kv_heads * n_rep`
/// - returns `[batch, n_heads, seq, head_dim]`
pub fn attend(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    q0: usize,
    k0: usize,
    window: usize,
    n_rep: usize,
) -> Tensor<4> {
    let s = q.dims()[2];
    let t = k.dims()[2];
    if s <= ATTEND_CHUNK || is_capture(&q.device()) {
        return attend_block(q, k, v, q0, k0, window, n_rep);
    }
    // Chunk the queries; each chunk sees only the keys its window can reach, so the mask and
    // the work are `ATTEND_CHUNK x (ATTEND_CHUNK + window)` per chunk instead of `seq x kv_seq`.
    let mut outs = Vec::with_capacity(s.div_ceil(ATTEND_CHUNK));
    let mut i = 0;
    while i < s {
        let c = ATTEND_CHUNK.min(s - i);
        let qa = q0 + i;
        // Visible key positions: (qa - window, qa + c - 1], clipped to the keys given.
        let lo = (qa + 1).saturating_sub(window).max(k0);
        let hi = (qa + c).min(k0 + t);
        let (kc, vc, kc0) = if hi > lo {
            (
                k.clone().narrow(2, lo - k0, hi - lo),
                v.clone().narrow(2, lo - k0, hi - lo),
                lo,
            )
        } else {
            // No key visible from any query of the chunk (a caller bug upstream too): keep
            // the unchunked behaviour for it.
            (k.clone(), v.clone(), k0)
        };
        outs.push(attend_block(
            q.clone().narrow(2, i, c),
            kc,
            vc,
            qa,
            kc0,
            window,
            n_rep,
        ));
        i += c;
    }
    Tensor::cat(outs, 2)
}

/// Queries per chunk when [`attend`] splits a long attention (`seq` above it): the Voxtral
/// encoder's whole-file pass over an hour of audio has 180 000 positions, whose
/// `[seq, kv_seq]` sliding-window mask alone would be 32 GB; chunked, each chunk's mask is
/// `ATTEND_CHUNK x (ATTEND_CHUNK + window - 1)` booleans and memory stays linear in `seq`.
/// Shorter inputs (20 s of encoder frames at 50 Hz) run in one block, as before.
pub const ATTEND_CHUNK: usize = 1024;

/// [`attend`] on one block of queries, with all of `k`, `v`: one mask of `[seq, kv_seq]`.
fn attend_block(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    q0: usize,
    k0: usize,
    window: usize,
    n_rep: usize,
) -> Tensor<4> {
    let [_, h, s, _] = q.dims();
    let [_, n_kv, t, _] = k.dims();
    debug_assert_eq!(h, n_kv * n_rep, "n_heads must be n_kv_heads * n_rep");
    if !is_flex(&q.device()) {
        return attend_explicit(q, k, v, q0, k0, window, n_rep);
    }
    let mask = window_hides_any(q0, s, k0, t, window)
        .then(|| sliding_window_mask(q0, s, k0, t, window, &q.device()));
    fused_attention(q, k, v, None, mask)
}

/// [`attend`] spelled out as upstream's `eager_attention_forward`: scores
/// `q·kᵀ·head_dim^-0.5`, `-inf` where [`sliding_window_mask`] hides, softmax over keys, times
/// `v`. Same arguments and result as [`attend`], on any device.
///
/// GQA without copying K/V: the `n_rep` query heads that share a key/value head are stacked
/// along the sequence axis (`[batch, n_kv_heads, n_rep * seq, head_dim]`, a free reshape since
/// heads are consecutive) and multiplied against the un-repeated keys and values, which gives
/// the same scores as `repeat_kv` (each score is still the dot product of one query and one key
/// row) without materialising `n_rep` copies of the cache.
///
/// # Shapes
/// - `q`: `[batch, n_heads, seq, head_dim]`
/// - `k`, `v`: `[batch, n_kv_heads, kv_seq, head_dim]`, with `n_heads = n_kv_heads * n_rep`
/// - returns `[batch, n_heads, seq, head_dim]` (the scores in between are
///   `[batch, n_heads, seq, kv_seq]`)
pub fn attend_explicit(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    q0: usize,
    k0: usize,
    window: usize,
    n_rep: usize,
) -> Tensor<4> {
    let [b, h, s, hd] = q.dims();
    let [_, n_kv, t, _] = k.dims();
    let scale = (hd as f64).powf(-0.5);
    let q = if n_rep == 1 {
        q
    } else {
        q.reshape([b, n_kv, n_rep * s, hd])
    };
    let scores = q.matmul(k.swap_dims(2, 3)) * scale;
    let scores = scores.reshape([b, h, s, t]);
    let mask = sliding_window_mask(q0, s, k0, t, window, &scores.device());
    let scores = scores.mask_fill(
        mask.unsqueeze::<4>().expand([b, h, s, t]),
        f32::NEG_INFINITY,
    );
    let probs = softmax_last(scores);
    if n_rep == 1 {
        probs.matmul(v)
    } else {
        probs
            .reshape([b, n_kv, n_rep * s, t])
            .matmul(v)
            .reshape([b, h, s, hd])
    }
}

/// Scaled dot-product attention in one fused kernel (Burn `module::attention`; Flex runs an
/// online-softmax "flash" kernel, Rayon-parallel over heads, that never materialises the
/// `[batch, n_heads, seq, kv_seq]` scores). On Flex `n_heads` may be a multiple of
/// `n_kv_heads` (query head `j` uses key/value head `j / (n_heads / n_kv_heads)`, as
/// transformers `repeat_kv`); Burn's generic fallback on other backends needs
/// `n_heads == n_kv_heads`. `scale` defaults to `head_dim^-0.5`; `mask` hides keys where
/// `true`.
///
/// Agrees with the explicit matmul/softmax/matmul of [`attend`] and [`attend_with_weights`]
/// up to f32 summation order (`tests/fused_kernels.rs`). Every query row must see at least one
/// key (a fully hidden row has no softmax).
///
/// Without a mask, with at least [`DENSE_MIN_QUERIES`] queries and [`DENSE_MIN_KEYS`] keys
/// on Flex (Whisper's encoder), [`dense_attention`] runs instead of Flex's kernel.
///
/// # Shapes
/// - `q`: `[batch, n_heads, seq, head_dim]`
/// - `k`, `v`: `[batch, n_kv_heads, kv_seq, head_dim]`
/// - `mask`: `[seq, kv_seq]`
/// - returns `[batch, n_heads, seq, head_dim]`
pub fn fused_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: Option<f64>,
    mask: Option<Tensor<2, Bool>>,
) -> Tensor<4> {
    let [_, _, s, hd] = q.dims();
    let t = k.dims()[2];
    if mask.is_none() && s >= DENSE_MIN_QUERIES && t >= DENSE_MIN_KEYS && is_flex(&q.device()) {
        let scale = scale.unwrap_or((hd as f64).powf(-0.5)) as f32;
        if let Some(out) = dense_attention(&q, &k, &v, scale) {
            return out;
        }
    }
    let options = AttentionModuleOptions {
        scale,
        softcap: None,
        is_causal: false,
    };
    let mask = mask.map(|m| m.unsqueeze::<4>());
    attention(q, k, v, mask, None, options)
}

/// Whether [`sliding_window_mask`] would hide any key: some key is in the future of the first
/// query, or `window` or more positions behind the last one.
pub fn window_hides_any(q0: usize, s: usize, k0: usize, t: usize, window: usize) -> bool {
    if s == 0 || t == 0 {
        return false;
    }
    let future = k0 + t - 1 > q0;
    let too_old = k0 + window < q0 + s;
    future || too_old
}

/// Repeat each key/value head `n_rep` times consecutively (transformers `repeat_kv`).
///
/// # Shapes
/// - `x`: `[batch, n_kv_heads, kv_seq, head_dim]`
/// - returns `[batch, n_kv_heads * n_rep, kv_seq, head_dim]`
pub fn repeat_kv(x: Tensor<4>, n_rep: usize) -> Tensor<4> {
    if n_rep == 1 {
        return x;
    }
    let [b, n_kv, t, hd] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, n_kv, n_rep, t, hd])
        .reshape([b, n_kv * n_rep, t, hd])
}

/// Boolean mask, `true` where key position `k0 + j` is NOT visible from query position
/// `q0 + i` (future, or `window` or more positions back).
///
/// # Shapes
/// - returns `[s, t]`: `s` queries (`seq`) by `t` keys (`kv_seq`)
pub fn sliding_window_mask(
    q0: usize,
    s: usize,
    k0: usize,
    t: usize,
    window: usize,
    device: &Device,
) -> Tensor<2, Bool> {
    let mut m = Vec::with_capacity(s * t);
    for i in 0..s {
        let qp = q0 + i;
        for j in 0..t {
            let kp = k0 + j;
            m.push(kp > qp || kp + window <= qp);
        }
    }
    Tensor::from_data(TensorData::new(m, [s, t]), device)
}

/// Plain multi-head scaled dot-product attention that also returns the attention
/// probabilities, for models without RoPE, GQA or sliding windows (Whisper).
///
/// `scores = q·kᵀ · scale`, then positions where `mask` is `true` are set to `-inf` (no mask:
/// every key is visible, as in cross-attention), softmax over the key axis. Returns
/// `(output, weights)`. Mirrors `eager_attention_forward` in huggingface/transformers
/// <https://github.com/huggingface/transformers/blob/v5.23.0/src/transformers/models/whisper/modeling_whisper.py>
/// (which adds a float mask of `finfo.min` instead; both give exactly 0 after softmax).
///
/// # Shapes
/// - `q`: `[batch, n_heads, seq, head_dim]`
/// - `k`, `v`: `[batch, n_heads, kv_seq, head_dim]`
/// - `mask`: `[seq, kv_seq]`
/// - returns `(output [batch, n_heads, seq, head_dim], weights [batch, n_heads, seq, kv_seq])`
pub fn attend_with_weights(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    scale: f64,
    mask: Option<Tensor<2, Bool>>,
) -> (Tensor<4>, Tensor<4>) {
    let [b, h, s, _] = q.dims();
    let t = k.dims()[2];
    let scores = q.matmul(k.swap_dims(2, 3));
    let scores = if scale == 1.0 { scores } else { scores * scale };
    let scores = match mask {
        Some(m) => scores.mask_fill(m.unsqueeze::<4>().expand([b, h, s, t]), f32::NEG_INFINITY),
        None => scores,
    };
    let weights = softmax_last(scores);
    (weights.clone().matmul(v), weights)
}

/// Causal mask (`true` = not visible) for queries at absolute positions `q0 .. q0 + s` over
/// keys at `0 .. t`: key `j` is hidden from query `i` when `j > q0 + i`.
///
/// # Shapes
/// - returns `[s, t]`: `s` queries (`seq`) by `t` keys (`kv_seq`)
pub fn causal_mask(q0: usize, s: usize, t: usize, device: &Device) -> Tensor<2, Bool> {
    sliding_window_mask(q0, s, 0, t, q0 + s + 1, device)
}
