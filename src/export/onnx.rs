//! ONNX protobuf building blocks (`onnx-protobuf` messages, rust-protobuf 3.4) and the writer
//! with optional external data.
//!
//! External data follows the ONNX spec (`onnx/onnx: docs/ExternalData.md`): each initializer
//! whose bytes move out of the model gets `data_location = EXTERNAL` and `external_data`
//! entries `location` (file name relative to the model), `offset` and `length` (bytes); the
//! side file is `FILE.onnx.data`. Both files are written to temporary files in the destination
//! folder and renamed into place.

use super::ExportError;
use crate::io::OutputFile;
use burn::tensor::{DType, TensorData};
use onnx_protobuf::tensor_proto::{DataLocation, DataType};
use onnx_protobuf::{
    AttributeProto, Message, ModelProto, NodeProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto, attribute_proto::AttributeType,
    tensor_shape_proto, type_proto,
};
use std::io::Write;
use std::path::Path;

/// ONNX element type of a Burn dtype.
///
/// # Errors
/// Quantized dtypes have no ONNX equivalent here.
pub fn onnx_dtype(dtype: DType) -> Result<DataType, ExportError> {
    Ok(match dtype {
        DType::F64 => DataType::DOUBLE,
        DType::F32 | DType::Flex32 => DataType::FLOAT,
        DType::F16 => DataType::FLOAT16,
        DType::BF16 => DataType::BFLOAT16,
        DType::I64 => DataType::INT64,
        DType::I32 => DataType::INT32,
        DType::I16 => DataType::INT16,
        DType::I8 => DataType::INT8,
        DType::U64 => DataType::UINT64,
        DType::U32 => DataType::UINT32,
        DType::U16 => DataType::UINT16,
        DType::U8 => DataType::UINT8,
        DType::Bool(_) => DataType::BOOL,
        other => {
            return Err(ExportError::Unsupported {
                op: format!("tensor dtype {other:?}"),
                scope: String::new(),
            });
        }
    })
}

/// A tensor type with a fixed shape.
pub fn tensor_type(elem: DataType, shape: &[usize]) -> TypeProto {
    let mut shp = TensorShapeProto::new();
    for &d in shape {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(tensor_shape_proto::dimension::Value::DimValue(d as i64));
        shp.dim.push(dim);
    }
    let mut t = type_proto::Tensor::new();
    t.elem_type = elem as i32;
    t.shape = Some(shp).into();
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(t));
    tp
}

/// A `ValueInfoProto` (graph input/output, value_info) of fixed shape.
pub fn value_info(name: &str, elem: DataType, shape: &[usize]) -> ValueInfoProto {
    let mut v = ValueInfoProto::new();
    v.name = name.to_string();
    v.type_ = Some(tensor_type(elem, shape)).into();
    v
}

/// A tensor with raw little-endian bytes.
pub fn raw_tensor(name: &str, elem: DataType, shape: &[usize], raw: Vec<u8>) -> TensorProto {
    let mut t = TensorProto::new();
    t.name = name.to_string();
    t.data_type = elem as i32;
    t.dims = shape.iter().map(|&d| d as i64).collect();
    t.raw_data = raw;
    t
}

/// An ONNX tensor holding Burn tensor data (booleans as one byte each).
///
/// # Errors
/// Unsupported dtype.
pub fn tensor_from_data(name: &str, data: &TensorData) -> Result<TensorProto, ExportError> {
    let elem = onnx_dtype(data.dtype())?;
    let raw = match data.dtype() {
        DType::Bool(_) => data
            .clone()
            .convert::<bool>()
            .try_into_vec::<bool>()
            .map_err(|e| ExportError::Data(format!("{name}: {e:?}")))?
            .into_iter()
            .map(u8::from)
            .collect(),
        DType::Flex32 => data.clone().convert::<f32>().as_bytes().to_vec(),
        _ => data.as_bytes().to_vec(),
    };
    Ok(raw_tensor(name, elem, data.shape(), raw))
}

/// A 1-D int64 tensor.
pub fn i64_tensor(name: &str, values: &[i64]) -> TensorProto {
    let raw = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    raw_tensor(name, DataType::INT64, &[values.len()], raw)
}

/// A scalar (0-d) tensor of the given element type holding `value` (cast).
pub fn scalar_tensor(name: &str, elem: DataType, value: f64) -> Result<TensorProto, ExportError> {
    let raw: Vec<u8> = match elem {
        DataType::FLOAT => (value as f32).to_le_bytes().to_vec(),
        DataType::DOUBLE => value.to_le_bytes().to_vec(),
        DataType::INT64 => (value as i64).to_le_bytes().to_vec(),
        DataType::INT32 => (value as i32).to_le_bytes().to_vec(),
        DataType::BOOL | DataType::UINT8 => vec![value as u8],
        DataType::FLOAT16 => half::f16::from_f64(value).to_le_bytes().to_vec(),
        DataType::BFLOAT16 => half::bf16::from_f64(value).to_le_bytes().to_vec(),
        other => {
            return Err(ExportError::Unsupported {
                op: format!("scalar constant of type {other:?}"),
                scope: String::new(),
            });
        }
    };
    Ok(raw_tensor(name, elem, &[], raw))
}

/// Attribute builders.
pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INT.into();
    a.i = v;
    a
}

/// `INTS` attribute.
pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::INTS.into();
    a.ints = v.to_vec();
    a
}

/// `FLOAT` attribute.
pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::FLOAT.into();
    a.f = v;
    a
}

/// `STRING` attribute.
pub fn attr_string(name: &str, v: &str) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::STRING.into();
    a.s = v.as_bytes().to_vec();
    a
}

/// `TENSOR` attribute.
pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    let mut a = AttributeProto::new();
    a.name = name.into();
    a.type_ = AttributeType::TENSOR.into();
    a.t = Some(t).into();
    a
}

/// A node.
pub fn node(
    op_type: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op_type.into();
    n.name = name.into();
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    n.attribute = attrs;
    n
}

fn entry(key: &str, value: &str) -> StringStringEntryProto {
    let mut e = StringStringEntryProto::new();
    e.key = key.into();
    e.value = value.into();
    e
}

/// Initializers smaller than this stay inline even with external data (as `onnx`'s own
/// `convert_model_to_external_data(size_threshold=1024)`): shape operands of `Reshape`,
/// `ConstantOfShape` etc. must be readable by shape inference.
pub const EXTERNAL_MIN_BYTES: usize = 1024;

/// Total bytes of initializer data held inline.
pub fn initializer_bytes(model: &ModelProto) -> u64 {
    model
        .graph
        .as_ref()
        .map(|g| g.initializer.iter().map(|t| t.raw_data.len() as u64).sum())
        .unwrap_or(0)
}

/// Write `model` to `out` (temporary file + rename). When the inline initializer bytes exceed
/// `external_threshold`, the data of every initializer of at least [`EXTERNAL_MIN_BYTES`]
/// moves to `<out>.data` (ONNX external data) first. Returns whether external data was written.
///
/// # Errors
/// I/O errors naming the file; protobuf serialisation errors (e.g. a message over 2 GiB).
pub fn write_model(
    mut model: ModelProto,
    out: &Path,
    external_threshold: u64,
) -> Result<bool, ExportError> {
    let write_err = |e: crate::io::WriteError| ExportError::Io {
        path: e.path,
        source: std::io::Error::other(e.detail),
    };
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source: std::io::Error| ExportError::Io { path, source }
    };
    let external = initializer_bytes(&model) > external_threshold;
    let data_path = {
        let mut s = out.as_os_str().to_owned();
        s.push(".data");
        std::path::PathBuf::from(s)
    };
    let mut data_tmp = None;
    if external {
        let location = data_path
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .ok_or_else(|| ExportError::Data(format!("{}: no file name", out.display())))?;
        let mut tmp = OutputFile::create(&data_path).map_err(write_err)?;
        let mut w = std::io::BufWriter::new(tmp.file());
        let mut offset: u64 = 0;
        if let Some(g) = model.graph.as_mut() {
            for t in g.initializer.iter_mut() {
                if t.raw_data.len() < EXTERNAL_MIN_BYTES {
                    continue;
                }
                let raw = std::mem::take(&mut t.raw_data);
                w.write_all(&raw).map_err(io(&data_path))?;
                t.data_location = DataLocation::EXTERNAL.into();
                t.external_data = vec![
                    entry("location", &location),
                    entry("offset", &offset.to_string()),
                    entry("length", &raw.len().to_string()),
                ];
                offset += raw.len() as u64;
            }
        }
        w.flush().map_err(io(&data_path))?;
        drop(w);
        data_tmp = Some(tmp);
    }
    let bytes = model
        .write_to_bytes()
        .map_err(|e| ExportError::Data(format!("{}: protobuf encoding: {e}", out.display())))?;
    let mut tmp = OutputFile::create(out).map_err(write_err)?;
    tmp.file().write_all(&bytes).map_err(io(out))?;
    if let Some(d) = data_tmp {
        d.commit().map_err(write_err)?;
    }
    tmp.commit().map_err(write_err)?;
    Ok(external)
}
