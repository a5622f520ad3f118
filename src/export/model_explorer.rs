//! Google Model Explorer JSON: the exported graph ([`graph_json`]) and per-node drift data
//! ([`overlay_json`]) for `voxtrace compare --graph-overlay`.
//!
//! Formats mirror google-ai-edge/model-explorer `src/server/package/src/model_explorer/`:
//! `graph_builder.py` (`GraphCollection {label, graphs: [Graph {id, nodes: [GraphNode {id,
//! label, namespace, attrs, incomingEdges, outputsMetadata}]}]}`) and `node_data_builder.py`
//! (`ModelNodeData`: `{graph_id: {results: {node_id: {value}}, thresholds: [{value,
//! bgColor}]}}`). Node ids are ONNX node names, so nodes that produce a traced tensor have the
//! capture name as id; namespaces are module paths with `/` separators.

use super::lower::Lowered;
use crate::compare::Report;
use burn::backend::capture::TensorId;
use serde_json::{Value, json};
use std::collections::HashMap;

/// The graph id used in the JSON graph and in overlays.
pub const GRAPH_ID: &str = "main";

/// Model Explorer graph collection for a lowered graph.
pub fn graph_json(
    label: &str,
    lowered: &Lowered,
    inputs: &[(String, TensorId)],
    outputs: &[String],
) -> Value {
    // value name -> (node id, output index)
    let mut producer: HashMap<&str, (String, usize)> = HashMap::new();
    let mut nodes = Vec::new();
    for (name, _) in inputs {
        producer.insert(name.as_str(), (name.clone(), 0));
        let meta = lowered.values.get(name);
        nodes.push(json!({
            "id": name,
            "label": "Input",
            "namespace": "",
            "attrs": [{"key": "name", "value": name}],
            "incomingEdges": [],
            "outputsMetadata": [{"id": "0", "attrs": out_attrs(name, meta)}],
        }));
    }
    for n in &lowered.nodes {
        for (i, o) in n.output.iter().enumerate() {
            producer.insert(o.as_str(), (n.name.clone(), i));
        }
    }
    for (n, info) in lowered.nodes.iter().zip(&lowered.node_info) {
        let mut edges = Vec::new();
        for (k, input) in n.input.iter().enumerate() {
            if let Some((src, idx)) = producer.get(input.as_str()) {
                edges.push(json!({
                    "sourceNodeId": src,
                    "sourceNodeOutputId": idx.to_string(),
                    "targetNodeInputId": k.to_string(),
                }));
            }
        }
        let mut attrs = vec![json!({"key": "onnx_name", "value": n.name})];
        if let Some(i) = info.op_index {
            attrs.push(json!({"key": "burn_op_index", "value": i.to_string()}));
        }
        for a in &n.attribute {
            let v = if !a.ints.is_empty() {
                format!("{:?}", a.ints)
            } else if !a.s.is_empty() {
                String::from_utf8_lossy(&a.s).into_owned()
            } else if a.f != 0.0 {
                a.f.to_string()
            } else {
                a.i.to_string()
            };
            attrs.push(json!({"key": a.name, "value": v}));
        }
        let outs: Vec<Value> = n
            .output
            .iter()
            .enumerate()
            .map(
                |(i, o)| json!({"id": i.to_string(), "attrs": out_attrs(o, lowered.values.get(o))}),
            )
            .collect();
        nodes.push(json!({
            "id": n.name,
            "label": n.op_type,
            "namespace": info.scope.replace('.', "/"),
            "attrs": attrs,
            "incomingEdges": edges,
            "outputsMetadata": outs,
        }));
    }
    for (k, o) in outputs.iter().enumerate() {
        if let Some((src, idx)) = producer.get(o.as_str()) {
            nodes.push(json!({
                "id": format!("output/{k}"),
                "label": "Output",
                "namespace": "",
                "attrs": [{"key": "name", "value": o}],
                "incomingEdges": [{"sourceNodeId": src, "sourceNodeOutputId": idx.to_string(), "targetNodeInputId": "0"}],
            }));
        }
    }
    json!({
        "label": label,
        "graphs": [{"id": GRAPH_ID, "nodes": nodes}],
    })
}

fn out_attrs(
    name: &str,
    meta: Option<&(onnx_protobuf::tensor_proto::DataType, Vec<usize>)>,
) -> Vec<Value> {
    let mut v = vec![json!({"key": "tensor_name", "value": name})];
    if let Some((dt, shape)) = meta {
        v.push(json!({"key": "shape", "value": format!("{shape:?}")}));
        v.push(json!({"key": "dtype", "value": format!("{dt:?}")}));
    }
    v
}

/// Model Explorer node data colouring each compared tensor's node by its drift.
///
/// The value of a node is `min_atol / atol`: the smallest absolute tolerance that would pass
/// at the tensor's `rtol`, relative to the one used (`<= 1` passes; `max |a - r|` when
/// `atol = 0`); missing or shape-mismatched tensors get
/// the value `1e9`. Thresholds: `<= 0.1` green, `<= 1` yellow-green (passes), `<= 10` orange,
/// above red. Keys are capture names, which are the ids of the nodes producing those tensors
/// in graphs written by [`graph_json`].
pub fn overlay_json(report: &Report) -> Value {
    let mut results = serde_json::Map::new();
    for r in &report.tensors {
        let value = match &r.metrics {
            Some(m) if r.atol > 0.0 => m.min_atol / r.atol,
            Some(m) => m.max_abs_err,
            None => 1e9,
        };
        let value = if value.is_finite() { value } else { 1e9 };
        results.insert(r.name.clone(), json!({"value": value}));
    }
    json!({
        GRAPH_ID: {
            "results": results,
            "thresholds": [
                {"value": 0.1, "bgColor": "#a5d6a7"},
                {"value": 1.0, "bgColor": "#e6ee9c"},
                {"value": 10.0, "bgColor": "#ffcc80"},
                {"value": 1e300, "bgColor": "#ef9a9a"},
            ],
        }
    })
}
