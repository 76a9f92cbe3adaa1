//! Thin builders over the `onnx-protobuf` messages: attributes, value infos, tensors.

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_proto::DataLocation, tensor_shape_proto, type_proto, AttributeProto, NodeProto, StringStringEntryProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use protobuf::{EnumOrUnknown, MessageField};

/// A graph dimension: fixed, or a named dynamic one (`dim_param`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    Fixed(usize),
    Named(&'static str),
}

pub fn attr_int(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: name.into(), type_: EnumOrUnknown::new(AttributeType::INT), i: v, ..Default::default() }
}

pub fn attr_ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto { name: name.into(), type_: EnumOrUnknown::new(AttributeType::INTS), ints: v.to_vec(), ..Default::default() }
}

pub fn attr_float(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: name.into(), type_: EnumOrUnknown::new(AttributeType::FLOAT), f: v, ..Default::default() }
}

pub fn attr_str(name: &str, v: &str) -> AttributeProto {
    AttributeProto { name: name.into(), type_: EnumOrUnknown::new(AttributeType::STRING), s: v.as_bytes().to_vec(), ..Default::default() }
}

pub fn node(op: &str, name: String, inputs: &[&str], outputs: &[String], attrs: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name,
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.to_vec(),
        attribute: attrs,
        ..Default::default()
    }
}

/// A tensor value info with element type `elem` (ONNX `DataType` code).
pub fn value_info(name: &str, elem: i32, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Fixed(n) => tensor_shape_proto::dimension::Value::DimValue(*n as i64),
                Dim::Named(p) => tensor_shape_proto::dimension::Value::DimParam((*p).to_string()),
            }),
            ..Default::default()
        })
        .collect();
    let tensor = type_proto::Tensor { elem_type: elem, shape: MessageField::some(TensorShapeProto { dim, ..Default::default() }), ..Default::default() };
    ValueInfoProto {
        name: name.into(),
        type_: MessageField::some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}

/// An initializer holding `raw` (little-endian element bytes) inline.
pub fn tensor_inline(name: &str, elem: i32, dims: &[usize], raw: Vec<u8>) -> TensorProto {
    TensorProto { name: name.into(), data_type: elem, dims: dims.iter().map(|d| *d as i64).collect(), raw_data: raw, ..Default::default() }
}

/// An initializer whose bytes live in the external-data file `location` at `offset`.
pub fn tensor_external(name: &str, elem: i32, dims: &[usize], location: &str, offset: u64, length: u64) -> TensorProto {
    let kv = |k: &str, v: String| StringStringEntryProto { key: k.into(), value: v, ..Default::default() };
    TensorProto {
        name: name.into(),
        data_type: elem,
        dims: dims.iter().map(|d| *d as i64).collect(),
        data_location: EnumOrUnknown::new(DataLocation::EXTERNAL),
        external_data: vec![kv("location", location.into()), kv("offset", offset.to_string()), kv("length", length.to_string())],
        ..Default::default()
    }
}

/// ONNX `DataType` code of int64.
pub const INT64: i32 = 7;
/// ONNX `DataType` code of float32.
pub const FLOAT: i32 = 1;
