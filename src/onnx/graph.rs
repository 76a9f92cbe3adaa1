//! A small ONNX graph builder: unique value names, cached constants, inline initializers and
//! the list of externally stored (checkpoint) weights.

use std::collections::HashMap;

use onnx_protobuf::{AttributeProto, NodeProto, TensorProto, ValueInfoProto};

use super::proto::{self, Dim};
use crate::checkpoint::TensorRef;
use crate::tensor::{encode_into, DType};

/// A checkpoint tensor stored in the external-data file (bytes borrowed until written).
pub struct ExternalWeight<'a> {
    /// Initializer name (canonical parameter or fused-group name).
    pub name: String,
    pub shape: Vec<usize>,
    /// Element type written to the data file (unless `fp8_scales` is set).
    pub dtype: DType,
    pub source: TensorRef<'a>,
    /// Stored as FLOAT8E4M3FN, quantized with these scales (one per row, or one for all).
    pub fp8_scales: Option<Vec<f32>>,
}

impl ExternalWeight<'_> {
    pub fn nbytes(&self) -> u64 {
        let elem = if self.fp8_scales.is_some() { 1 } else { self.dtype.size() };
        (self.shape.iter().product::<usize>() * elem) as u64
    }
    /// ONNX data type code of the stored tensor.
    pub fn onnx_code(&self) -> i32 {
        if self.fp8_scales.is_some() {
            super::fp8::e4m3::ONNX_CODE
        } else {
            self.dtype.onnx_code()
        }
    }
}

pub struct Graph<'a> {
    /// Compute / weight element type.
    pub dtype: DType,
    pub nodes: Vec<NodeProto>,
    pub inline: Vec<TensorProto>,
    pub external: Vec<ExternalWeight<'a>>,
    pub inputs: Vec<ValueInfoProto>,
    pub outputs: Vec<ValueInfoProto>,
    scope: Vec<String>,
    counter: usize,
    i64_consts: HashMap<Vec<i64>, String>,
    f_consts: HashMap<(Vec<u32>, bool), String>,
}

impl<'a> Graph<'a> {
    pub fn new(dtype: DType) -> Self {
        Graph {
            dtype,
            nodes: Vec::new(),
            inline: Vec::new(),
            external: Vec::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            scope: Vec::new(),
            counter: 0,
            i64_consts: HashMap::new(),
            f_consts: HashMap::new(),
        }
    }

    /// Runs `f` with `name` pushed on the naming scope (node names read `/a/b/Op_N`).
    pub fn scoped<T>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> T) -> T {
        self.scope.push(name.to_string());
        let r = f(self);
        self.scope.pop();
        r
    }

    fn fresh(&mut self, op: &str) -> String {
        self.counter += 1;
        format!("/{}/{op}_{}", self.scope.join("/"), self.counter)
    }

    /// Adds a node with `n` outputs and returns their names.
    pub fn op_n(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, n: usize) -> Vec<String> {
        let name = self.fresh(op);
        let outs: Vec<String> = if n == 1 { vec![format!("{name}:0")] } else { (0..n).map(|i| format!("{name}:{i}")).collect() };
        self.nodes.push(proto::node(op, name, inputs, &outs, attrs));
        outs
    }

    /// Adds a single-output node.
    pub fn op(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>) -> String {
        self.op_n(op, inputs, attrs, 1).remove(0)
    }

    /// A node whose output gets a fixed name (graph outputs).
    pub fn op_named(&mut self, op: &str, inputs: &[&str], attrs: Vec<AttributeProto>, out: &str) {
        let name = self.fresh(op);
        self.nodes.push(proto::node(op, name, inputs, &[out.to_string()], attrs));
    }

    /// An int64 constant (1-D), cached by value.
    pub fn i64s(&mut self, v: &[i64]) -> String {
        if let Some(n) = self.i64_consts.get(v) {
            return n.clone();
        }
        let name = format!("const.i64.{}", self.i64_consts.len());
        let raw = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.inline.push(proto::tensor_inline(&name, proto::INT64, &[v.len()], raw));
        self.i64_consts.insert(v.to_vec(), name.clone());
        name
    }

    /// A float constant in the compute dtype (`fp32 == false`) or in f32, cached by value.
    /// `dims` empty means a scalar.
    pub fn floats(&mut self, dims: &[usize], v: &[f32], fp32: bool) -> String {
        let mut key: Vec<u32> = dims.iter().map(|d| *d as u32).collect();
        key.push(u32::MAX);
        key.extend(v.iter().map(|x| x.to_bits()));
        if let Some(n) = self.f_consts.get(&(key.clone(), fp32)) {
            return n.clone();
        }
        let dt = if fp32 { DType::F32 } else { self.dtype };
        let name = format!("const.{}.{}", dt.name(), self.f_consts.len());
        let mut raw = Vec::new();
        encode_into(dt, v, &mut raw);
        self.inline.push(proto::tensor_inline(&name, dt.onnx_code(), dims, raw));
        self.f_consts.insert((key, fp32), name.clone());
        name
    }

    /// A named inline initializer in the compute dtype (`dims` empty = scalar).
    pub fn named_floats(&mut self, name: &str, dims: &[usize], v: &[f32]) -> String {
        let mut raw = Vec::new();
        encode_into(self.dtype, v, &mut raw);
        self.inline.push(proto::tensor_inline(name, self.dtype.onnx_code(), dims, raw));
        name.to_string()
    }

    /// A scalar in the compute dtype.
    pub fn scalar(&mut self, v: f32) -> String {
        self.floats(&[], &[v], false)
    }

    /// An all-zero inline initializer of `dtype` that is also a graph input (overridable).
    pub fn overridable_zeros(&mut self, name: &str, dims: &[usize], dtype: DType) {
        let n: usize = dims.iter().product();
        self.inline.push(proto::tensor_inline(name, dtype.onnx_code(), dims, vec![0u8; n * dtype.size()]));
        let d: Vec<Dim> = dims.iter().map(|x| Dim::Fixed(*x)).collect();
        self.inputs.push(proto::value_info(name, dtype.onnx_code(), &d));
    }

    /// Registers a checkpoint weight stored externally; returns its initializer name.
    pub fn external(&mut self, name: String, source: TensorRef<'a>) -> String {
        self.external.push(ExternalWeight { name: name.clone(), shape: source.shape.clone(), dtype: self.dtype, source, fp8_scales: None });
        name
    }

    /// Registers a checkpoint weight stored as FLOAT8E4M3FN, quantized with `scales`.
    pub fn external_fp8(&mut self, name: String, source: TensorRef<'a>, scales: Vec<f32>) -> String {
        self.external.push(ExternalWeight { name: name.clone(), shape: source.shape.clone(), dtype: self.dtype, source, fp8_scales: Some(scales) });
        name
    }

    /// Casts `x` to the compute dtype (no node when it already is).
    pub fn to_compute(&mut self, x: &str) -> String {
        if self.dtype == DType::F32 {
            x.to_string()
        } else {
            let to = self.dtype.onnx_code() as i64;
            self.op("Cast", &[x], vec![proto::attr_int("to", to)])
        }
    }

    /// Casts compute-dtype `x` to f32 (no node for fp32 graphs).
    pub fn to_f32(&mut self, x: &str) -> String {
        if self.dtype == DType::F32 {
            x.to_string()
        } else {
            self.op("Cast", &[x], vec![proto::attr_int("to", proto::FLOAT as i64)])
        }
    }
}
