//! Lowering of Burn's captured `OperationIr` graph to ONNX nodes.
//!
//! Every supported op becomes one or a few standard ONNX (default domain) nodes; an op without a
//! lowering fails the export with [`ExportError::Unsupported`] naming the op and the capture
//! scope it belongs to, so the exported graph never silently differs from the Burn graph.
//!
//! Node naming: the node that produces a tensor recorded by the tracer is named by that capture
//! name (and its output value carries the same name); other nodes are named
//! `<module path>/op_<index>`, where the module path is the longest common prefix of the
//! module paths of the nearest recorded tensors before (its last capture name, i.e. where it
//! flows next) and after it in execution order.
//! Further names for an already named tensor become `Identity` nodes.
//!
//! Opset 18 spells GELU as `0.5·x·(1 + erf(x/√2))` and exports RMSNorm, RoPE and attention in
//! the elementary ops Burn records; opset 23 uses `Gelu` and fuses RMSNorm and attention into
//! `RMSNormalization` and `Attention` where the pattern fits (see [`super::fuse`]).

use super::ExportError;
use super::onnx::{
    attr_float, attr_int, attr_ints, attr_tensor, i64_tensor, node, onnx_dtype, raw_tensor,
    scalar_tensor, tensor_from_data,
};
use crate::trace::GraphTap;
use burn::backend::capture::TensorId;
use burn::backend::ir::{
    ActivationOperationIr, BaseOperationIr, BoolOperationIr, FloatOperationIr, IntOperationIr,
    ModuleOperationIr, NumericOperationIr, OperationIr, ScalarIr, TensorIr,
};
use burn::tensor::{DType, TensorData};
use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The module path of a capture name: everything before the first `in`/`out` component
/// (`model.audio_tower.layers.0.mlp.out` -> `model.audio_tower.layers.0.mlp`); a top-level
/// name without one (`logits`) has the empty path.
pub fn module_path(name: &str) -> String {
    let parts: Vec<&str> = name.split('.').collect();
    match parts.iter().position(|p| *p == "in" || *p == "out") {
        Some(i) => parts[..i].join("."),
        None => String::new(),
    }
}

fn common_prefix(a: &str, b: &str) -> String {
    let mut out = Vec::new();
    for (x, y) in a.split('.').zip(b.split('.')) {
        if x == y && !x.is_empty() {
            out.push(x);
        } else {
            break;
        }
    }
    out.join(".")
}

/// A short label for an op: family and variant (`BaseFloat::Flip`).
pub fn op_label(op: &OperationIr) -> String {
    let s = format!("{op:?}");
    let mut parts = s.split('(');
    let family = parts.next().unwrap_or("?");
    let variant = parts.next().unwrap_or("");
    let variant = variant.split([' ', '{', ',']).next().unwrap_or("");
    if variant.is_empty() || variant.chars().next().is_some_and(|c| !c.is_uppercase()) {
        family.to_string()
    } else {
        format!("{family}::{variant}")
    }
}

/// One lowered node with its provenance, for the Model Explorer graph.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Index of the Burn op it came from (`None` for `Identity` alias nodes).
    pub op_index: Option<usize>,
    /// Module path (dotted) of the trace scope the node belongs to.
    pub scope: String,
}

/// Result of lowering: nodes, initializers, and per-value metadata.
pub struct Lowered {
    /// Nodes in topological order.
    pub nodes: Vec<NodeProto>,
    /// Provenance of each node (same order as `nodes`).
    pub node_info: Vec<NodeInfo>,
    /// Initializers (weights and constants).
    pub initializers: Vec<TensorProto>,
    /// Value name -> (element type, shape) of every value.
    pub values: HashMap<String, (DataType, Vec<usize>)>,
    /// Tap names in recording order (deduplicated) that name a value in the graph.
    pub tap_names: Vec<String>,
}

/// The lowering state machine.
pub struct Lowerer<'a> {
    opset: u32,
    values: &'a BTreeMap<TensorId, TensorData>,
    names: HashMap<TensorId, String>,
    inputs: HashSet<TensorId>,
    produced: HashSet<TensorId>,
    initialized: HashSet<TensorId>,
    nodes: Vec<NodeProto>,
    node_info: Vec<NodeInfo>,
    initializers: Vec<TensorProto>,
    info: HashMap<String, (DataType, Vec<usize>)>,
    counter: usize,
    cur_name: String,
    cur_scope: String,
    cur_index: usize,
}

fn shape_of(t: &TensorIr) -> Vec<usize> {
    t.shape.to_vec()
}

fn scalar_f64(s: &ScalarIr) -> f64 {
    match *s {
        ScalarIr::Float(x) => x,
        ScalarIr::Int(x) => x as f64,
        ScalarIr::UInt(x) => x as f64,
        ScalarIr::Bool(x) => f64::from(u8::from(x)),
    }
}

impl<'a> Lowerer<'a> {
    fn unsupported(&self, what: String) -> ExportError {
        ExportError::Unsupported {
            op: what,
            scope: self.cur_scope.clone(),
        }
    }

    fn fresh(&mut self, stem: &str) -> String {
        self.counter += 1;
        format!("{}/{stem}_{}", self.cur_name, self.counter)
    }

    fn record_info(&mut self, t: &TensorIr) -> Result<(), ExportError> {
        let name = self.name_of(t.id);
        let elem = onnx_dtype(t.dtype)?;
        self.info.entry(name).or_insert((elem, shape_of(t)));
        Ok(())
    }

    fn name_of(&self, id: TensorId) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("t{}", id.value()))
    }

    /// Name of an input value; creates the initializer on first use of a captured constant.
    fn input(&mut self, t: &TensorIr) -> Result<String, ExportError> {
        let name = self.name_of(t.id);
        if self.inputs.contains(&t.id)
            || self.produced.contains(&t.id)
            || self.initialized.contains(&t.id)
        {
            return Ok(name);
        }
        let data = self.values.get(&t.id).ok_or_else(|| {
            ExportError::Data(format!(
                "tensor {} (read in scope `{}`) has neither a producer nor a value",
                t.id, self.cur_scope
            ))
        })?;
        self.initializers.push(tensor_from_data(&name, data)?);
        self.initialized.insert(t.id);
        self.record_info(t)?;
        Ok(name)
    }

    fn output(&mut self, t: &TensorIr) -> Result<String, ExportError> {
        self.produced.insert(t.id);
        self.record_info(t)?;
        Ok(self.name_of(t.id))
    }

    fn push(&mut self, n: NodeProto) {
        self.nodes.push(n);
        self.node_info.push(NodeInfo {
            op_index: Some(self.cur_index),
            scope: self.cur_scope.clone(),
        });
    }

    /// The node producing the op's output (named by the op).
    fn main(&mut self, op: &str, inputs: &[&str], out: &str, attrs: Vec<AttributeProto>) {
        let name = self.cur_name.clone();
        self.push(node(op, &name, inputs, &[out], attrs));
    }

    /// A helper node; returns its output value name.
    fn aux(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        let out = self.fresh(op);
        self.push(node(op, &out, inputs, &[&out], attrs));
        out
    }

    fn const_i64(&mut self, values: &[i64]) -> String {
        let name = self.fresh("const");
        self.initializers.push(i64_tensor(&name, values));
        name
    }

    fn const_scalar(&mut self, dtype: DType, v: f64) -> Result<String, ExportError> {
        let name = self.fresh("const");
        let elem = onnx_dtype(dtype)?;
        self.initializers.push(scalar_tensor(&name, elem, v)?);
        Ok(name)
    }

    fn unary(&mut self, op: &str, i: &TensorIr, o: &TensorIr) -> Result<(), ExportError> {
        let x = self.input(i)?;
        let y = self.output(o)?;
        self.main(op, &[&x], &y, vec![]);
        Ok(())
    }

    fn binary(
        &mut self,
        op: &str,
        a: &TensorIr,
        b: &TensorIr,
        o: &TensorIr,
    ) -> Result<(), ExportError> {
        let x = self.input(a)?;
        let z = self.input(b)?;
        let y = self.output(o)?;
        self.main(op, &[&x, &z], &y, vec![]);
        Ok(())
    }

    fn scalar_op(
        &mut self,
        op: &str,
        a: &TensorIr,
        s: &ScalarIr,
        o: &TensorIr,
    ) -> Result<(), ExportError> {
        let x = self.input(a)?;
        let c = self.const_scalar(a.dtype, scalar_f64(s))?;
        let y = self.output(o)?;
        self.main(op, &[&x, &c], &y, vec![]);
        Ok(())
    }

    /// `ReduceX(input, axes, keepdims=1)`.
    fn reduce_dim(
        &mut self,
        op: &str,
        i: &TensorIr,
        o: &TensorIr,
        axis: usize,
    ) -> Result<(), ExportError> {
        let x = self.input(i)?;
        let axes = self.const_i64(&[axis as i64]);
        let y = self.output(o)?;
        self.main(op, &[&x, &axes], &y, vec![attr_int("keepdims", 1)]);
        Ok(())
    }

    /// Reduce over every axis, then reshape to Burn's output shape (`[1]`).
    fn reduce_all(&mut self, op: &str, i: &TensorIr, o: &TensorIr) -> Result<(), ExportError> {
        let x = self.input(i)?;
        let r = self.aux(op, &[&x], vec![attr_int("keepdims", 0)]);
        let shape: Vec<i64> = o.shape.iter().map(|&d| d as i64).collect();
        let s = self.const_i64(&shape);
        let y = self.output(o)?;
        self.main("Reshape", &[&r, &s], &y, vec![]);
        Ok(())
    }

    fn reshape_to(&mut self, i: &TensorIr, o: &TensorIr) -> Result<(), ExportError> {
        let x = self.input(i)?;
        let shape: Vec<i64> = o.shape.iter().map(|&d| d as i64).collect();
        let s = self.const_i64(&shape);
        let y = self.output(o)?;
        self.main("Reshape", &[&x, &s], &y, vec![]);
        Ok(())
    }

    fn constant_of_shape(&mut self, o: &TensorIr, value: f64) -> Result<(), ExportError> {
        let shape: Vec<i64> = o.shape.iter().map(|&d| d as i64).collect();
        let s = self.const_i64(&shape);
        let v = scalar_tensor("value", onnx_dtype(o.dtype)?, value)?;
        let mut v = v;
        v.dims = vec![1];
        let y = self.output(o)?;
        self.main("ConstantOfShape", &[&s], &y, vec![attr_tensor("value", v)]);
        Ok(())
    }

    fn cast(&mut self, i: &TensorIr, o: &TensorIr) -> Result<(), ExportError> {
        let x = self.input(i)?;
        let to = onnx_dtype(o.dtype)? as i64;
        let y = self.output(o)?;
        self.main("Cast", &[&x], &y, vec![attr_int("to", to)]);
        Ok(())
    }

    fn base(&mut self, op: &BaseOperationIr, family: &str) -> Result<(), ExportError> {
        use BaseOperationIr as B;
        match op {
            B::Reshape(o) => self.reshape_to(&o.input, &o.out),
            B::SwapDims(o) => {
                let rank = o.input.shape.len();
                let mut perm: Vec<i64> = (0..rank as i64).collect();
                perm.swap(o.dim1, o.dim2);
                let x = self.input(&o.input)?;
                let y = self.output(&o.out)?;
                self.main("Transpose", &[&x], &y, vec![attr_ints("perm", &perm)]);
                Ok(())
            }
            B::Permute(o) => {
                let perm: Vec<i64> = o.axes.iter().map(|&a| a as i64).collect();
                let x = self.input(&o.input)?;
                let y = self.output(&o.out)?;
                self.main("Transpose", &[&x], &y, vec![attr_ints("perm", &perm)]);
                Ok(())
            }
            B::Expand(o) => {
                let x = self.input(&o.input)?;
                let shape: Vec<i64> = o.out.shape.iter().map(|&d| d as i64).collect();
                let s = self.const_i64(&shape);
                let y = self.output(&o.out)?;
                self.main("Expand", &[&x, &s], &y, vec![]);
                Ok(())
            }
            B::Slice(o) => {
                let x = self.input(&o.tensor)?;
                let (mut starts, mut ends, mut axes, mut steps) = (vec![], vec![], vec![], vec![]);
                for (axis, r) in o.ranges.iter().enumerate() {
                    let dim = o.tensor.shape[axis] as isize;
                    if r.step <= 0 {
                        return Err(self.unsupported(format!(
                            "{family}::Slice with step {} (only positive steps are lowered)",
                            r.step
                        )));
                    }
                    let norm = |v: isize| if v < 0 { (v + dim).max(0) } else { v.min(dim) };
                    starts.push(norm(r.start) as i64);
                    ends.push(r.end.map(norm).unwrap_or(dim) as i64);
                    axes.push(axis as i64);
                    steps.push(r.step as i64);
                }
                let s = self.const_i64(&starts);
                let e = self.const_i64(&ends);
                let a = self.const_i64(&axes);
                let st = self.const_i64(&steps);
                let y = self.output(&o.out)?;
                self.main("Slice", &[&x, &s, &e, &a, &st], &y, vec![]);
                Ok(())
            }
            B::Select(o) => {
                let x = self.input(&o.tensor)?;
                let i = self.input(&o.indices)?;
                let y = self.output(&o.out)?;
                self.main(
                    "Gather",
                    &[&x, &i],
                    &y,
                    vec![attr_int("axis", o.dim as i64)],
                );
                Ok(())
            }
            B::Gather(o) => {
                let x = self.input(&o.tensor)?;
                let i = self.input(&o.indices)?;
                let y = self.output(&o.out)?;
                self.main(
                    "GatherElements",
                    &[&x, &i],
                    &y,
                    vec![attr_int("axis", o.dim as i64)],
                );
                Ok(())
            }
            B::MaskWhere(o) => {
                let x = self.input(&o.tensor)?;
                let m = self.input(&o.mask)?;
                let v = self.input(&o.value)?;
                let y = self.output(&o.out)?;
                self.main("Where", &[&m, &v, &x], &y, vec![]);
                Ok(())
            }
            B::MaskFill(o) => {
                let x = self.input(&o.tensor)?;
                let m = self.input(&o.mask)?;
                let v = self.const_scalar(o.tensor.dtype, scalar_f64(&o.value))?;
                let y = self.output(&o.out)?;
                self.main("Where", &[&m, &v, &x], &y, vec![]);
                Ok(())
            }
            B::Equal(o) => self.binary("Equal", &o.lhs, &o.rhs, &o.out),
            B::EqualElem(o) => self.scalar_op("Equal", &o.lhs, &o.rhs, &o.out),
            B::NotEqual(o) => {
                let x = self.input(&o.lhs)?;
                let z = self.input(&o.rhs)?;
                let e = self.aux("Equal", &[&x, &z], vec![]);
                let y = self.output(&o.out)?;
                self.main("Not", &[&e], &y, vec![]);
                Ok(())
            }
            B::Cat(o) => {
                let mut ins = Vec::new();
                for t in &o.tensors {
                    ins.push(self.input(t)?);
                }
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                let y = self.output(&o.out)?;
                self.main("Concat", &refs, &y, vec![attr_int("axis", o.dim as i64)]);
                Ok(())
            }
            B::Cast(o) => self.cast(&o.input, &o.out),
            B::Zeros(o) | B::Empty(o) => self.constant_of_shape(&o.out, 0.0),
            B::Ones(o) => self.constant_of_shape(&o.out, 1.0),
            B::RepeatDim(o) => {
                let x = self.input(&o.tensor)?;
                let mut reps = vec![1i64; o.tensor.shape.len()];
                reps[o.dim] = o.times as i64;
                let r = self.const_i64(&reps);
                let y = self.output(&o.out)?;
                self.main("Tile", &[&x, &r], &y, vec![]);
                Ok(())
            }
            other => Err(self.unsupported(format!(
                "{family}::{}",
                op_label(&OperationIr::BaseFloat(other.clone())).trim_start_matches("BaseFloat::")
            ))),
        }
    }

    fn numeric(&mut self, op: &NumericOperationIr, family: &str) -> Result<(), ExportError> {
        use NumericOperationIr as N;
        match op {
            N::Add(o) => self.binary("Add", &o.lhs, &o.rhs, &o.out),
            N::Sub(o) => self.binary("Sub", &o.lhs, &o.rhs, &o.out),
            N::Mul(o) => self.binary("Mul", &o.lhs, &o.rhs, &o.out),
            N::Div(o) => self.binary("Div", &o.lhs, &o.rhs, &o.out),
            N::AddScalar(o) => self.scalar_op("Add", &o.lhs, &o.rhs, &o.out),
            N::SubScalar(o) => self.scalar_op("Sub", &o.lhs, &o.rhs, &o.out),
            N::MulScalar(o) => self.scalar_op("Mul", &o.lhs, &o.rhs, &o.out),
            N::DivScalar(o) => self.scalar_op("Div", &o.lhs, &o.rhs, &o.out),
            N::Abs(o) => self.unary("Abs", &o.input, &o.out),
            N::Neg(o) => self.unary("Neg", &o.input, &o.out),
            N::Sign(o) => self.unary("Sign", &o.input, &o.out),
            N::Full(o) => self.constant_of_shape(&o.out, scalar_f64(&o.value)),
            N::MeanDim(o) => self.reduce_dim("ReduceMean", &o.input, &o.out, o.axis),
            N::SumDim(o) => self.reduce_dim("ReduceSum", &o.input, &o.out, o.axis),
            N::ProdDim(o) => self.reduce_dim("ReduceProd", &o.input, &o.out, o.axis),
            N::MaxDim(o) => self.reduce_dim("ReduceMax", &o.input, &o.out, o.axis),
            N::MinDim(o) => self.reduce_dim("ReduceMin", &o.input, &o.out, o.axis),
            N::Mean(o) => self.reduce_all("ReduceMean", &o.input, &o.out),
            N::Sum(o) => self.reduce_all("ReduceSum", &o.input, &o.out),
            N::Prod(o) => self.reduce_all("ReduceProd", &o.input, &o.out),
            N::Max(o) => self.reduce_all("ReduceMax", &o.input, &o.out),
            N::Min(o) => self.reduce_all("ReduceMin", &o.input, &o.out),
            N::ArgMax(o) | N::ArgMin(o) => {
                let kind = if matches!(op, N::ArgMax(_)) {
                    "ArgMax"
                } else {
                    "ArgMin"
                };
                let x = self.input(&o.input)?;
                let attrs = vec![attr_int("axis", o.axis as i64), attr_int("keepdims", 1)];
                if o.out.dtype == DType::I64 {
                    let y = self.output(&o.out)?;
                    self.main(kind, &[&x], &y, attrs);
                } else {
                    let a = self.aux(kind, &[&x], attrs);
                    let to = onnx_dtype(o.out.dtype)? as i64;
                    let y = self.output(&o.out)?;
                    self.main("Cast", &[&a], &y, vec![attr_int("to", to)]);
                }
                Ok(())
            }
            N::Greater(o) => self.binary("Greater", &o.lhs, &o.rhs, &o.out),
            N::GreaterElem(o) => self.scalar_op("Greater", &o.lhs, &o.rhs, &o.out),
            N::GreaterEqual(o) => self.binary("GreaterOrEqual", &o.lhs, &o.rhs, &o.out),
            N::GreaterEqualElem(o) => self.scalar_op("GreaterOrEqual", &o.lhs, &o.rhs, &o.out),
            N::Lower(o) => self.binary("Less", &o.lhs, &o.rhs, &o.out),
            N::LowerElem(o) => self.scalar_op("Less", &o.lhs, &o.rhs, &o.out),
            N::LowerEqual(o) => self.binary("LessOrEqual", &o.lhs, &o.rhs, &o.out),
            N::LowerEqualElem(o) => self.scalar_op("LessOrEqual", &o.lhs, &o.rhs, &o.out),
            N::Clamp(o) => {
                let x = self.input(&o.tensor)?;
                let lo = self.const_scalar(o.tensor.dtype, scalar_f64(&o.min))?;
                let hi = self.const_scalar(o.tensor.dtype, scalar_f64(&o.max))?;
                let y = self.output(&o.out)?;
                self.main("Clip", &[&x, &lo, &hi], &y, vec![]);
                Ok(())
            }
            N::ClampMin(o) => self.scalar_op("Max", &o.lhs, &o.rhs, &o.out),
            N::ClampMax(o) => self.scalar_op("Min", &o.lhs, &o.rhs, &o.out),
            N::Powi(o) => self.binary("Pow", &o.lhs, &o.rhs, &o.out),
            N::PowiScalar(o) if scalar_f64(&o.rhs) == 2.0 => {
                // x^2 as x*x: exact, like Burn's integer power.
                let x = self.input(&o.lhs)?;
                let y = self.output(&o.out)?;
                self.main("Mul", &[&x, &x], &y, vec![]);
                Ok(())
            }
            N::PowiScalar(o) => self.scalar_op("Pow", &o.lhs, &o.rhs, &o.out),
            N::CumSum(o) => {
                let x = self.input(&o.input)?;
                let a = self.const_i64(&[o.axis as i64]);
                let a = {
                    // CumSum takes a scalar axis.
                    let s = self.const_i64(&[]);
                    self.aux("Reshape", &[&a, &s], vec![])
                };
                let y = self.output(&o.out)?;
                self.main("CumSum", &[&x, &a], &y, vec![]);
                Ok(())
            }
            other => Err(self.unsupported(format!(
                "{family}::{}",
                op_label(&OperationIr::NumericFloat(DType::F32, other.clone()))
                    .trim_start_matches("NumericFloat::")
            ))),
        }
    }

    fn float(&mut self, op: &FloatOperationIr) -> Result<(), ExportError> {
        use FloatOperationIr as F;
        match op {
            F::Exp(o) => self.unary("Exp", &o.input, &o.out),
            F::Log(o) => self.unary("Log", &o.input, &o.out),
            F::Sqrt(o) => self.unary("Sqrt", &o.input, &o.out),
            F::Cos(o) => self.unary("Cos", &o.input, &o.out),
            F::Sin(o) => self.unary("Sin", &o.input, &o.out),
            F::Tan(o) => self.unary("Tan", &o.input, &o.out),
            F::Tanh(o) => self.unary("Tanh", &o.input, &o.out),
            F::Cosh(o) => self.unary("Cosh", &o.input, &o.out),
            F::Sinh(o) => self.unary("Sinh", &o.input, &o.out),
            F::Erf(o) => self.unary("Erf", &o.input, &o.out),
            F::Floor(o) => self.unary("Floor", &o.input, &o.out),
            F::Ceil(o) => self.unary("Ceil", &o.input, &o.out),
            F::Round(o) => self.unary("Round", &o.input, &o.out),
            F::Recip(o) => self.unary("Reciprocal", &o.input, &o.out),
            F::IsNan(o) => self.unary("IsNaN", &o.input, &o.out),
            F::IsInf(o) => self.unary("IsInf", &o.input, &o.out),
            F::Log1p(o) => {
                let x = self.input(&o.input)?;
                let one = self.const_scalar(o.input.dtype, 1.0)?;
                let a = self.aux("Add", &[&x, &one], vec![]);
                let y = self.output(&o.out)?;
                self.main("Log", &[&a], &y, vec![]);
                Ok(())
            }
            F::PowfScalar(o) if scalar_f64(&o.rhs) == 2.0 => {
                let x = self.input(&o.lhs)?;
                let y = self.output(&o.out)?;
                self.main("Mul", &[&x, &x], &y, vec![]);
                Ok(())
            }
            F::PowfScalar(o) => self.scalar_op("Pow", &o.lhs, &o.rhs, &o.out),
            F::Powf(o) => self.binary("Pow", &o.lhs, &o.rhs, &o.out),
            F::IntoInt(o) => self.cast(&o.input, &o.out),
            F::Matmul(o) => self.binary("MatMul", &o.lhs, &o.rhs, &o.out),
            other => {
                Err(self.unsupported(op_label(&OperationIr::Float(DType::F32, other.clone()))))
            }
        }
    }

    fn module(&mut self, op: &ModuleOperationIr) -> Result<(), ExportError> {
        use ModuleOperationIr as M;
        match op {
            M::Embedding(o) => {
                let w = self.input(&o.weights)?;
                let i = self.input(&o.indices)?;
                let y = self.output(&o.out)?;
                self.main("Gather", &[&w, &i], &y, vec![attr_int("axis", 0)]);
                Ok(())
            }
            M::Linear(o) => {
                let x = self.input(&o.x)?;
                let w = self.input(&o.weight)?;
                match &o.bias {
                    None => {
                        let y = self.output(&o.out)?;
                        self.main("MatMul", &[&x, &w], &y, vec![]);
                    }
                    Some(b) => {
                        let b = self.input(b)?;
                        let m = self.aux("MatMul", &[&x, &w], vec![]);
                        let y = self.output(&o.out)?;
                        self.main("Add", &[&m, &b], &y, vec![]);
                    }
                }
                Ok(())
            }
            M::Conv1d(o) => {
                let x = self.input(&o.x)?;
                let w = self.input(&o.weight)?;
                let mut ins = vec![x, w];
                if let Some(b) = &o.bias {
                    ins.push(self.input(b)?);
                }
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                let k = o.weight.shape[2] as i64;
                let opt = &o.options;
                let attrs = vec![
                    attr_ints("kernel_shape", &[k]),
                    attr_ints("strides", &[opt.stride[0] as i64]),
                    attr_ints("pads", &[opt.padding[0].0 as i64, opt.padding[0].1 as i64]),
                    attr_ints("dilations", &[opt.dilation[0] as i64]),
                    attr_int("group", opt.groups as i64),
                ];
                let y = self.output(&o.out)?;
                self.main("Conv", &refs, &y, attrs);
                Ok(())
            }
            M::LayerNorm(o) => {
                let x = self.input(&o.input)?;
                let g = self.input(&o.gamma)?;
                let mut ins = vec![x, g];
                if let Some(b) = &o.beta {
                    ins.push(self.input(b)?);
                }
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                let y = self.output(&o.out)?;
                self.main(
                    "LayerNormalization",
                    &refs,
                    &y,
                    vec![
                        attr_int("axis", -1),
                        attr_float("epsilon", scalar_f64(&o.epsilon) as f32),
                    ],
                );
                Ok(())
            }
            other => Err(self.unsupported(op_label(&OperationIr::Module(other.clone())))),
        }
    }

    fn activation(&mut self, op: &ActivationOperationIr) -> Result<(), ExportError> {
        use ActivationOperationIr as A;
        match op {
            A::Relu(o) => self.unary("Relu", &o.input, &o.out),
            A::Sigmoid(o) => self.unary("Sigmoid", &o.input, &o.out),
            A::Gelu(o) if self.opset >= 20 => self.unary("Gelu", &o.input, &o.out),
            A::Gelu(o) => {
                // Exact GELU: 0.5 * x * (1 + erf(x / sqrt(2))).
                let x = self.input(&o.input)?;
                let dt = o.input.dtype;
                let inv_sqrt2 = self.const_scalar(dt, std::f64::consts::FRAC_1_SQRT_2)?;
                let half = self.const_scalar(dt, 0.5)?;
                let one = self.const_scalar(dt, 1.0)?;
                let s = self.aux("Mul", &[&x, &inv_sqrt2], vec![]);
                let e = self.aux("Erf", &[&s], vec![]);
                let p = self.aux("Add", &[&e, &one], vec![]);
                let h = self.aux("Mul", &[&x, &half], vec![]);
                let y = self.output(&o.out)?;
                self.main("Mul", &[&h, &p], &y, vec![]);
                Ok(())
            }
            A::Softmax(o) => {
                let x = self.input(&o.input)?;
                let y = self.output(&o.out)?;
                self.main("Softmax", &[&x], &y, vec![attr_int("axis", o.axis as i64)]);
                Ok(())
            }
            A::LogSoftmax(o) => {
                let x = self.input(&o.input)?;
                let y = self.output(&o.out)?;
                self.main(
                    "LogSoftmax",
                    &[&x],
                    &y,
                    vec![attr_int("axis", o.axis as i64)],
                );
                Ok(())
            }
            A::LeakyRelu(o) => {
                let x = self.input(&o.lhs)?;
                let y = self.output(&o.out)?;
                self.main(
                    "LeakyRelu",
                    &[&x],
                    &y,
                    vec![attr_float("alpha", scalar_f64(&o.rhs) as f32)],
                );
                Ok(())
            }
            other => Err(self.unsupported(op_label(&OperationIr::Activation(other.clone())))),
        }
    }

    fn emit_fused(&mut self, f: &super::fuse::Fused) -> Result<(), ExportError> {
        use super::fuse::Fused;
        match f {
            Fused::RmsNorm {
                x,
                weight,
                eps,
                out,
            } => {
                let x = self.input(x)?;
                let w = self.input(weight)?;
                let y = self.output(out)?;
                self.main(
                    "RMSNormalization",
                    &[&x, &w],
                    &y,
                    vec![attr_int("axis", -1), attr_float("epsilon", *eps as f32)],
                );
            }
            Fused::Attention {
                q,
                k,
                v,
                mask,
                scale,
                out,
            } => {
                let q = self.input(q)?;
                let k = self.input(k)?;
                let v = self.input(v)?;
                let mut ins = vec![q, k, v];
                if let Some(m) = mask {
                    // ONNX: true = attend; Burn's mask_fill: true = hidden.
                    let m = self.input(m)?;
                    ins.push(self.aux("Not", &[&m], vec![]));
                }
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                let y = self.output(out)?;
                self.main(
                    "Attention",
                    &refs,
                    &y,
                    vec![attr_float("scale", *scale as f32)],
                );
            }
            Fused::Rope {
                x,
                cos,
                sin,
                interleaved,
                out,
            } => {
                let xi = self.input(x)?;
                let c = self.input(cos)?;
                let s = self.input(sin)?;
                // The tables hold this pass's positions from row 0: position ids 0 .. seq for
                // every batch row, `[batch, seq]`.
                let (batch, seq) = (x.shape[0], x.shape[2]);
                let ids: Vec<i64> = (0..batch).flat_map(|_| 0..seq as i64).collect();
                let pid = self.fresh("position_ids");
                self.initializers.push(raw_tensor(
                    &pid,
                    DataType::INT64,
                    &[batch, seq],
                    ids.iter().flat_map(|v| v.to_le_bytes()).collect(),
                ));
                let y = self.output(out)?;
                self.main(
                    "RotaryEmbedding",
                    &[&xi, &c, &s, &pid],
                    &y,
                    vec![attr_int("interleaved", i64::from(*interleaved))],
                );
            }
        }
        Ok(())
    }

    fn lower_op(&mut self, op: &OperationIr) -> Result<(), ExportError> {
        match op {
            // Constants become initializers on first use (unused weights of other parts are
            // left out).
            OperationIr::Init(_) => Ok(()),
            OperationIr::BaseFloat(b) => self.base(b, "BaseFloat"),
            OperationIr::BaseInt(b) => self.base(b, "BaseInt"),
            OperationIr::BaseBool(b) => self.base(b, "BaseBool"),
            OperationIr::NumericFloat(_, n) => self.numeric(n, "NumericFloat"),
            OperationIr::NumericInt(_, n) => self.numeric(n, "NumericInt"),
            OperationIr::Float(_, f) => self.float(f),
            OperationIr::Int(IntOperationIr::IntoFloat(o)) => self.cast(&o.input, &o.out),
            OperationIr::Int(IntOperationIr::Matmul(o)) => {
                self.binary("MatMul", &o.lhs, &o.rhs, &o.out)
            }
            OperationIr::Bool(BoolOperationIr::IntoFloat(o) | BoolOperationIr::IntoInt(o)) => {
                self.cast(&o.input, &o.out)
            }
            OperationIr::Bool(BoolOperationIr::Not(o)) => self.unary("Not", &o.input, &o.out),
            OperationIr::Bool(BoolOperationIr::And(o)) => {
                self.binary("And", &o.lhs, &o.rhs, &o.out)
            }
            OperationIr::Bool(BoolOperationIr::Or(o)) => self.binary("Or", &o.lhs, &o.rhs, &o.out),
            OperationIr::Bool(BoolOperationIr::Xor(o)) => {
                self.binary("Xor", &o.lhs, &o.rhs, &o.out)
            }
            OperationIr::Module(m) => self.module(m),
            OperationIr::Activation(a) => self.activation(a),
            OperationIr::Drop(_) => Ok(()),
            other => Err(self.unsupported(op_label(other))),
        }
    }
}

/// Lower `operations` to ONNX nodes.
///
/// `inputs` name the runtime inputs (graph inputs, not initializers); `taps` (from a
/// [`crate::trace::Tracer::graph`] tracer) name intermediate tensors; `params` name the
/// initializers of module parameters (others are `t<id>`). `values` hold the
/// captured constants (weights, tables, masks), which become initializers.
///
/// # Errors
/// [`ExportError::Unsupported`] for an op without a lowering (naming the op and the nearest
/// trace scope); [`ExportError::Data`] for a tensor read without producer or value.
pub fn lower(
    operations: &[OperationIr],
    values: &BTreeMap<TensorId, TensorData>,
    inputs: &[(String, TensorId)],
    taps: &[GraphTap],
    params: &[(String, TensorId)],
    opset: u32,
) -> Result<Lowered, ExportError> {
    // First tap name per tensor id, and per-op anchors.
    let mut primary: HashMap<TensorId, String> = HashMap::new();
    // Last name per tensor: where the value flows next (`x.out` is also `next.in.0`).
    let mut latest: HashMap<String, String> = HashMap::new();
    for t in taps {
        let first = primary.entry(t.id).or_insert_with(|| t.name.clone());
        latest.insert(first.clone(), t.name.clone());
    }
    let input_ids: HashSet<TensorId> = inputs.iter().map(|(_, id)| *id).collect();
    let mut names: HashMap<TensorId, String> = HashMap::new();
    for (n, id) in params {
        names.entry(*id).or_insert_with(|| n.clone());
    }
    for (n, id) in inputs {
        names.insert(*id, n.clone());
    }
    let mut anchors: Vec<Option<String>> = Vec::with_capacity(operations.len());
    for op in operations {
        let anchor = if matches!(op, OperationIr::Init(_)) {
            None
        } else {
            op.outputs()
                .into_iter()
                .find_map(|t| primary.get(&t.id).cloned())
        };
        if let Some(a) = &anchor {
            for t in op.outputs() {
                if primary.get(&t.id) == Some(a) && !input_ids.contains(&t.id) {
                    names.insert(t.id, a.clone());
                }
            }
        }
        anchors.push(anchor);
    }
    // Scope of each op: own anchor, else common prefix of the neighbouring anchors' paths.
    let n = operations.len();
    let mut prev: Vec<Option<String>> = vec![None; n];
    let mut last = None;
    for i in 0..n {
        if let Some(a) = &anchors[i] {
            last = Some(module_path(latest.get(a).unwrap_or(a)));
        }
        prev[i] = last.clone();
    }
    let mut next: Vec<Option<String>> = vec![None; n];
    let mut upcoming = None;
    for i in (0..n).rev() {
        if let Some(a) = &anchors[i] {
            upcoming = Some(module_path(a));
        }
        next[i] = upcoming.clone();
    }

    let mut lw = Lowerer {
        opset,
        values,
        names,
        inputs: input_ids,
        produced: HashSet::new(),
        initialized: HashSet::new(),
        nodes: Vec::new(),
        node_info: Vec::new(),
        initializers: Vec::new(),
        info: HashMap::new(),
        counter: 0,
        cur_name: String::new(),
        cur_scope: String::new(),
        cur_index: 0,
    };
    for (_, id) in inputs {
        if let Some(t) = operations
            .iter()
            .flat_map(|o| o.nodes())
            .find(|t| t.id == *id)
        {
            lw.record_info(t)?;
        }
    }
    let tapped: HashSet<TensorId> = taps.iter().map(|t| t.id).collect();
    let plan = if opset >= 23 {
        super::fuse::plan(operations, &tapped)
    } else {
        super::fuse::Plan::default()
    };
    for (i, op) in operations.iter().enumerate() {
        if plan.skipped.contains(&i) {
            continue;
        }
        let scope = match (&anchors[i], &prev[i], &next[i]) {
            (Some(a), _, _) => module_path(a),
            (None, Some(p), Some(q)) => common_prefix(p, q),
            (None, Some(p), None) => p.clone(),
            (None, None, Some(q)) => q.clone(),
            (None, None, None) => String::new(),
        };
        lw.cur_name = match &anchors[i] {
            Some(a) => a.clone(),
            None if scope.is_empty() => format!("op_{i}"),
            None => format!("{scope}/op_{i}"),
        };
        lw.cur_scope = scope;
        lw.cur_index = i;
        match plan.fused.get(&i) {
            Some(f) => lw.emit_fused(f)?,
            None => lw.lower_op(op)?,
        }
    }
    // Aliases: further names of an already named value become Identity nodes.
    let mut tap_names = Vec::new();
    let mut seen = HashSet::new();
    for t in taps {
        if !seen.insert(t.name.clone()) {
            continue;
        }
        let value = lw.name_of(t.id);
        if !lw.info.contains_key(&value) {
            // Recorded but never used by any op (e.g. a constant only logged): materialise.
            if let Some(data) = values.get(&t.id) {
                lw.initializers.push(tensor_from_data(&value, data)?);
                let elem = onnx_dtype(data.dtype())?;
                lw.info.insert(value.clone(), (elem, data.shape().to_vec()));
            } else {
                continue;
            }
        }
        if value != t.name {
            let info = lw.info[&value].clone();
            lw.nodes
                .push(node("Identity", &t.name, &[&value], &[&t.name], vec![]));
            lw.node_info.push(NodeInfo {
                op_index: None,
                scope: module_path(&t.name),
            });
            lw.info.insert(t.name.clone(), info);
        }
        tap_names.push(t.name.clone());
    }
    Ok(Lowered {
        nodes: lw.nodes,
        node_info: lw.node_info,
        initializers: lw.initializers,
        values: lw.info,
        tap_names,
    })
}
