//! Opset-23 fusions: find Burn's elementary spelling of RMSNorm and of scaled dot-product
//! attention in the captured op list and replace each with one ONNX `RMSNormalization` or
//! `Attention` node (both new in opset 23).
//!
//! A chain is fused only when every intermediate tensor has exactly one consumer and no capture
//! name, so no traced tensor disappears from the graph.
//!
//! * RMSNorm (`crate::nn::RMSNorm::forward`): `sq = x²` (`PowiScalar 2`),
//!   `var = mean_dim(sq, last)`, `+ eps`, `sqrt`, `recip`, `normed = x · r`,
//!   `out = normed · reshape(w)` -> `RMSNormalization(x, w, axis=-1, epsilon=eps)`.
//! * Attention (`crate::nn::attention::attend`, Whisper's `attend_with_weights` when the
//!   weights are not recorded): `scores = q · swap_dims(k, 2, 3)`, optional `· scale`,
//!   optional `mask_fill(mask, -inf)`, `softmax(last)`, `· v` ->
//!   `Attention(q, k, v, not(mask), scale=scale)` on `[batch, heads, seq, head_dim]`. The GQA
//!   spelling (queries reshaped to `[b, n_kv, n_rep * s, hd]`, scores back to `[b, h, s, t]`,
//!   probabilities to `[b, n_kv, n_rep * s, t]` and the output to `[b, h, s, hd]`) becomes one
//!   `Attention` with keys and values of `n_kv` heads.
//!
//! RoPE is not fused: Burn's tables are precomputed constants and the rotation is spelled with
//! slices (half-split) or a pair reshape (interleaved), which `RotaryEmbedding`'s cache inputs
//! and `interleaved` attribute could express, but the pattern is not matched yet.

use burn::backend::capture::TensorId;
use burn::backend::ir::{
    ActivationOperationIr, BaseOperationIr, FloatOperationIr, NumericOperationIr, OperationIr,
    ScalarIr, TensorIr,
};
use std::collections::{HashMap, HashSet};

/// A fused replacement, emitted at the index of the chain's last op.
#[derive(Debug, Clone)]
pub enum Fused {
    /// `RMSNormalization(x, weight)`.
    RmsNorm {
        /// Input.
        x: TensorIr,
        /// 1-D scale.
        weight: TensorIr,
        /// Epsilon.
        eps: f64,
        /// Output.
        out: TensorIr,
    },
    /// `Attention(q, k, v, attn_mask)`.
    Attention {
        /// `[b, h, s, d]`.
        q: TensorIr,
        /// `[b, h, t, d]`.
        k: TensorIr,
        /// `[b, h, t, d]`.
        v: TensorIr,
        /// Boolean mask, `true` = hidden (Burn's `mask_fill` convention).
        mask: Option<TensorIr>,
        /// Softmax scale.
        scale: f64,
        /// Output.
        out: TensorIr,
    },
}

/// The fusion plan: fused node per emitting op index, and the op indices it replaces.
#[derive(Debug, Default)]
pub struct Plan {
    /// Op index -> fused node emitted there (instead of that op).
    pub fused: HashMap<usize, Fused>,
    /// Ops absorbed into a fused node (not lowered).
    pub skipped: HashSet<usize>,
}

fn scalar(s: &ScalarIr) -> f64 {
    match *s {
        ScalarIr::Float(x) => x,
        ScalarIr::Int(x) => x as f64,
        ScalarIr::UInt(x) => x as f64,
        ScalarIr::Bool(x) => f64::from(u8::from(x)),
    }
}

/// Find fusable chains in `ops`; `tapped` holds the ids that have capture names.
pub fn plan(ops: &[OperationIr], tapped: &HashSet<TensorId>) -> Plan {
    let mut producer: HashMap<TensorId, usize> = HashMap::new();
    let mut consumers: HashMap<TensorId, usize> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if matches!(op, OperationIr::Init(_)) {
            continue;
        }
        for t in op.outputs() {
            producer.insert(t.id, i);
        }
        for t in op.inputs() {
            *consumers.entry(t.id).or_default() += 1;
        }
    }
    let private = |t: &TensorIr| consumers.get(&t.id) == Some(&1) && !tapped.contains(&t.id);
    let prod = |t: &TensorIr| producer.get(&t.id).map(|&i| (i, &ops[i]));
    let mut p = Plan::default();

    for (h, op) in ops.iter().enumerate() {
        // RMSNorm: out = normed * reshape(w).
        if let OperationIr::NumericFloat(_, NumericOperationIr::Mul(m)) = op {
            let found = (|| {
                let (f, fop) = prod(&m.lhs)?;
                let OperationIr::NumericFloat(_, NumericOperationIr::Mul(fm)) = fop else {
                    return None;
                };
                let x = &fm.lhs;
                let (e, eop) = prod(&fm.rhs)?;
                let OperationIr::Float(_, FloatOperationIr::Recip(eu)) = eop else {
                    return None;
                };
                let (d, dop) = prod(&eu.input)?;
                let OperationIr::Float(_, FloatOperationIr::Sqrt(du)) = dop else {
                    return None;
                };
                let (c, cop) = prod(&du.input)?;
                let OperationIr::NumericFloat(_, NumericOperationIr::AddScalar(cs)) = cop else {
                    return None;
                };
                let (b, bop) = prod(&cs.lhs)?;
                let OperationIr::NumericFloat(_, NumericOperationIr::MeanDim(bm)) = bop else {
                    return None;
                };
                if bm.axis + 1 != x.shape.len() {
                    return None;
                }
                let (a, aop) = prod(&bm.input)?;
                // x² as Burn records it: `powi_scalar(2)`, `powf_scalar(2)` or `x * x`.
                let square_of_x = match aop {
                    OperationIr::NumericFloat(_, NumericOperationIr::PowiScalar(s))
                    | OperationIr::Float(_, FloatOperationIr::PowfScalar(s)) => {
                        s.lhs.id == x.id && scalar(&s.rhs) == 2.0
                    }
                    OperationIr::NumericFloat(_, NumericOperationIr::Mul(b)) => {
                        b.lhs.id == x.id && b.rhs.id == x.id
                    }
                    _ => false,
                };
                if !square_of_x {
                    return None;
                }
                let (g, gop) = prod(&m.rhs)?;
                let OperationIr::BaseFloat(BaseOperationIr::Reshape(gr)) = gop else {
                    return None;
                };
                let d_model = *x.shape.last()?;
                if gr.input.shape.len() != 1 || gr.input.shape[0] != d_model {
                    return None;
                }
                let inner = [
                    &bm.input, &bm.out, &cs.out, &du.out, &eu.out, &fm.out, &m.rhs,
                ];
                if !inner.iter().all(|t| private(t)) {
                    return None;
                }
                Some((
                    vec![a, b, c, d, e, f, g],
                    Fused::RmsNorm {
                        x: x.clone(),
                        weight: gr.input.clone(),
                        eps: scalar(&cs.rhs),
                        out: m.out.clone(),
                    },
                ))
            })();
            if let Some((skip, fused)) = found {
                p.skipped.extend(skip);
                p.fused.insert(h, fused);
                continue;
            }
        }
        // Attention: out = softmax(mask_fill(q·kᵀ·scale)) · v, either on equal head counts or in
        // the GQA spelling of `attend` (query heads of a KV group stacked along the sequence
        // axis by reshapes around both matmuls), which emits at the closing reshape.
        let tail = match op {
            OperationIr::Float(_, FloatOperationIr::Matmul(m2)) => Some((None, m2, &m2.out)),
            OperationIr::BaseFloat(BaseOperationIr::Reshape(r)) => match prod(&r.input) {
                Some((i, OperationIr::Float(_, FloatOperationIr::Matmul(m2))))
                    if private(&r.input) =>
                {
                    Some((Some(i), m2, &r.out))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some((m2_index, m2, out)) = tail {
            let found = (|| {
                if m2.lhs.shape.len() != 4 || out.shape.len() != 4 {
                    return None;
                }
                let mut skip: Vec<usize> = m2_index.into_iter().collect();
                // A private reshape feeding `t`: its index and input.
                let peel = |t: &TensorIr| match prod(t) {
                    Some((i, OperationIr::BaseFloat(BaseOperationIr::Reshape(r))))
                        if private(t) =>
                    {
                        Some((i, &r.input))
                    }
                    _ => None,
                };
                let mut probs = &m2.lhs;
                if let Some((i, input)) = peel(probs) {
                    skip.push(i);
                    probs = input;
                }
                let (sm, smop) = prod(probs)?;
                let OperationIr::Activation(ActivationOperationIr::Softmax(s)) = smop else {
                    return None;
                };
                if s.axis != 3 || !private(probs) {
                    return None;
                }
                skip.push(sm);
                // `[b, h, s, t]` scores as the softmax sees them.
                let scores_shape: Vec<usize> = s.input.shape.to_vec();
                let mut cur = &s.input;
                let mut mask = None;
                if let Some((i, OperationIr::BaseFloat(BaseOperationIr::MaskFill(mf)))) = prod(cur)
                {
                    if scalar(&mf.value) != f64::NEG_INFINITY || !private(cur) {
                        return None;
                    }
                    skip.push(i);
                    mask = Some(mf.mask.clone());
                    cur = &mf.tensor;
                }
                if let Some((i, input)) = peel(cur) {
                    skip.push(i);
                    cur = input;
                }
                let mut scale = 1.0;
                if let Some((i, OperationIr::NumericFloat(_, NumericOperationIr::MulScalar(ms)))) =
                    prod(cur)
                {
                    if !private(cur) {
                        return None;
                    }
                    skip.push(i);
                    scale = scalar(&ms.rhs);
                    cur = &ms.lhs;
                }
                let (m1, m1op) = prod(cur)?;
                let OperationIr::Float(_, FloatOperationIr::Matmul(mm)) = m1op else {
                    return None;
                };
                if !private(cur) {
                    return None;
                }
                skip.push(m1);
                let (kt, ktop) = prod(&mm.rhs)?;
                let OperationIr::BaseFloat(BaseOperationIr::SwapDims(sw)) = ktop else {
                    return None;
                };
                if !(sw.dim1 == 2 && sw.dim2 == 3 || sw.dim1 == 3 && sw.dim2 == 2)
                    || !private(&mm.rhs)
                {
                    return None;
                }
                skip.push(kt);
                // The GQA spelling stacks the queries (`[b, n_kv, n_rep * s, hd]` against an
                // output of `[b, h, s, hd]`); equal head counts take the queries as they come
                // (they may themselves be a reshape, RoPE's, which must stay).
                let mut q = &mm.lhs;
                if q.shape.len() != 4 || q.shape[1..3] != out.shape[1..3] {
                    let (i, input) = peel(q)?;
                    skip.push(i);
                    q = input;
                }
                let (k, v) = (&sw.input, &m2.rhs);
                if q.shape.len() != 4 || k.shape.len() != 4 || v.shape.len() != 4 {
                    return None;
                }
                let [b, h, sq, hd] = [q.shape[0], q.shape[1], q.shape[2], q.shape[3]];
                let (n_kv, t) = (k.shape[1], k.shape[2]);
                // The shapes pin the reshapes down to `attend`'s: queries `[b, h, s, hd]`,
                // keys/values `[b, n_kv, t, hd]` with `h` a multiple of `n_kv`, scores
                // `[b, h, s, t]`, output `[b, h, s, hd_v]` (ONNX `Attention`'s GQA convention:
                // query head `j` uses key/value head `j / (h / n_kv)`, as `repeat_kv`).
                if n_kv == 0
                    || h % n_kv != 0
                    || v.shape[1] != n_kv
                    || k.shape[3] != hd
                    || v.shape[2] != t
                    || scores_shape[..] != [b, h, sq, t]
                    || out.shape[..] != [b, h, sq, v.shape[3]]
                {
                    return None;
                }
                Some((
                    skip,
                    Fused::Attention {
                        q: q.clone(),
                        k: k.clone(),
                        v: v.clone(),
                        mask,
                        scale,
                        out: out.clone(),
                    },
                ))
            })();
            if let Some((skip, fused)) = found {
                p.skipped.extend(skip);
                p.fused.insert(h, fused);
            }
        }
    }
    p
}
