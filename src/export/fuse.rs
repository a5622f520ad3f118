//! Opset-23 fusions: find Burn's elementary spelling of RMSNorm, RoPE and scaled dot-product
//! attention in the captured op list and replace each with one ONNX `RMSNormalization`,
//! `RotaryEmbedding` or `Attention` node (all three new in opset 23).
//!
//! A chain is fused only when every intermediate tensor is read only inside the chain and has
//! no capture name, so no traced tensor disappears from the graph.
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
//! * RoPE (`crate::nn::rope::apply_rope`): with `c`/`s` the unsqueezed `[seq, head_dim/2]`
//!   cos/sin tables, `cat([x1·c − x2·s, x2·c + x1·s], 3)` where `x1`/`x2` are the two halves
//!   of the head (`narrow`, half-split) or the even/odd channels (pair reshape, `narrow`,
//!   `stack`, reshape back: interleaved) -> `RotaryEmbedding(x, cos, sin, position_ids,
//!   interleaved=0|1)` with the tables as `cos_cache`/`sin_cache` and position ids
//!   `0 .. seq` (the tables already start at the pass's first position).

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
    /// `RotaryEmbedding(x, cos_cache, sin_cache, position_ids)`.
    Rope {
        /// `[b, h, s, head_dim]`.
        x: TensorIr,
        /// `[s, head_dim/2]` cosines of positions `0 .. s` of the pass.
        cos: TensorIr,
        /// `[s, head_dim/2]` sines.
        sin: TensorIr,
        /// GPT-J pairs `(x[2i], x[2i+1])` (Mistral layout) rather than halves.
        interleaved: bool,
        /// Output, `[b, h, s, head_dim]`.
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
    let mut users: HashMap<TensorId, Vec<usize>> = HashMap::new();
    for (i, op) in ops.iter().enumerate() {
        if matches!(op, OperationIr::Init(_)) {
            continue;
        }
        for t in op.outputs() {
            producer.insert(t.id, i);
        }
        for t in op.inputs() {
            users.entry(t.id).or_default().push(i);
        }
    }
    let private =
        |t: &TensorIr| users.get(&t.id).is_some_and(|u| u.len() == 1) && !tapped.contains(&t.id);
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
        // RoPE: out = cat([x1·c − x2·s, x2·c + x1·s], 3), or the interleaved spelling that
        // stacks the two on a new last axis and reshapes back.
        let rope_tail = match op {
            OperationIr::BaseFloat(BaseOperationIr::Cat(c))
                if c.dim == 3 && c.tensors.len() == 2 =>
            {
                Some((None, c, &c.out, false))
            }
            OperationIr::BaseFloat(BaseOperationIr::Reshape(r)) => match prod(&r.input) {
                Some((i, OperationIr::BaseFloat(BaseOperationIr::Cat(c))))
                    if c.dim == 4 && c.tensors.len() == 2 =>
                {
                    Some((Some(i), c, &r.out, true))
                }
                _ => None,
            },
            _ => None,
        };
        if let Some((cat_index, cat, out, interleaved)) = rope_tail {
            let found = (|| {
                let mut chain: Vec<usize> = cat_index.into_iter().collect();
                let reshape_input = |t: &TensorIr| match prod(t) {
                    Some((i, OperationIr::BaseFloat(BaseOperationIr::Reshape(r)))) => {
                        Some((i, &r.input))
                    }
                    _ => None,
                };
                let (mut o1, mut o2) = (&cat.tensors[0], &cat.tensors[1]);
                if interleaved {
                    // `stack` unsqueezes each half to `[b, h, s, half, 1]`.
                    let (i1, t1) = reshape_input(o1)?;
                    let (i2, t2) = reshape_input(o2)?;
                    chain.extend([i1, i2]);
                    (o1, o2) = (t1, t2);
                }
                let (si, sop) = prod(o1)?;
                let OperationIr::NumericFloat(_, NumericOperationIr::Sub(sub)) = sop else {
                    return None;
                };
                let (ai, aop) = prod(o2)?;
                let OperationIr::NumericFloat(_, NumericOperationIr::Add(add)) = aop else {
                    return None;
                };
                chain.extend([si, ai]);
                let mul = |t: &TensorIr| match prod(t) {
                    Some((i, OperationIr::NumericFloat(_, NumericOperationIr::Mul(m)))) => {
                        Some((i, &m.lhs, &m.rhs))
                    }
                    _ => None,
                };
                let (ia, x1, c) = mul(&sub.lhs)?;
                let (ib, x2, sn) = mul(&sub.rhs)?;
                let (ic, x2b, cb) = mul(&add.lhs)?;
                let (id, x1b, snb) = mul(&add.rhs)?;
                if x1.id != x1b.id || x2.id != x2b.id || c.id != cb.id || sn.id != snb.id {
                    return None;
                }
                chain.extend([ia, ib, ic, id]);
                let (ci, cos) = reshape_input(c)?;
                let (sj, sin) = reshape_input(sn)?;
                chain.extend([ci, sj]);
                let slice = |t: &TensorIr| match prod(t) {
                    Some((i, OperationIr::BaseFloat(BaseOperationIr::Slice(s)))) => Some((i, s)),
                    _ => None,
                };
                // `r` takes exactly `a .. b` of an axis of length `dim`, step 1.
                let takes = |r: &burn::tensor::Slice, dim: usize, a: usize, b: usize| {
                    r.step == 1 && r.start == a as isize && r.end.map_or(dim, |e| e as usize) == b
                };
                let only_axis =
                    |s: &burn::backend::ir::SliceOpIr, axis: usize, a: usize, b: usize| {
                        let shape = &s.tensor.shape;
                        s.ranges.len() == shape.len()
                            && s.ranges.iter().enumerate().all(|(k, r)| {
                                if k == axis {
                                    takes(r, shape[k], a, b)
                                } else {
                                    takes(r, shape[k], 0, shape[k])
                                }
                            })
                    };
                let x = if interleaved {
                    let (i1, r1) = reshape_input(x1)?;
                    let (i2, r2) = reshape_input(x2)?;
                    let (j1, s1) = slice(r1)?;
                    let (j2, s2) = slice(r2)?;
                    if s1.tensor.id != s2.tensor.id
                        || !only_axis(s1, 4, 0, 1)
                        || !only_axis(s2, 4, 1, 2)
                    {
                        return None;
                    }
                    let (k, x) = reshape_input(&s1.tensor)?;
                    let [b, h, sq, d] = x.shape[..] else {
                        return None;
                    };
                    if s1.tensor.shape[..] != [b, h, sq, d / 2, 2] {
                        return None;
                    }
                    chain.extend([i1, i2, j1, j2, k]);
                    x
                } else {
                    let (j1, s1) = slice(x1)?;
                    let (j2, s2) = slice(x2)?;
                    let d = *s1.tensor.shape.last()?;
                    if s1.tensor.id != s2.tensor.id
                        || s1.tensor.shape.len() != 4
                        || !only_axis(s1, 3, 0, d / 2)
                        || !only_axis(s2, 3, d / 2, d)
                    {
                        return None;
                    }
                    chain.extend([j1, j2]);
                    &s1.tensor
                };
                let [_, _, sq, d] = x.shape[..] else {
                    return None;
                };
                if d % 2 != 0
                    || cos.shape[..] != [sq, d / 2]
                    || sin.shape[..] != [sq, d / 2]
                    || out.shape[..] != x.shape[..]
                {
                    return None;
                }
                // Every value made inside the chain is read only inside it and has no capture
                // name, so nothing traced disappears.
                let inside: HashSet<usize> = chain.iter().copied().chain([h]).collect();
                for &i in &chain {
                    for t in ops[i].outputs() {
                        let escapes = users
                            .get(&t.id)
                            .is_some_and(|u| u.iter().any(|j| !inside.contains(j)));
                        if tapped.contains(&t.id) || escapes {
                            return None;
                        }
                    }
                }
                Some((
                    chain,
                    Fused::Rope {
                        x: x.clone(),
                        cos: cos.clone(),
                        sin: sin.clone(),
                        interleaved,
                        out: out.clone(),
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
