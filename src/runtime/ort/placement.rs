//! Where ONNX Runtime placed each node of a session, read back with
//! `Session_GetEpGraphAssignmentInfo` (ORT ≥ 1.24, session config
//! `session.record_ep_graph_assignment_info = 1`), and the policy that keeps a CUDA session from
//! silently computing on the CPU.
//!
//! ONNX Runtime's CUDA provider deliberately leaves small int64 shape arithmetic on the CPU: the
//! output of `Shape` lives in host memory, and `GetCpuPreferredNodes`
//! (`onnxruntime/core/framework/fallback_cpu_capability.cc`) moves its consumers (our
//! `Concat`s building `[batch, -1, ...]` reshape targets and the `[S_txt, S_img]` split sizes) to
//! the CPU provider. ORT's own `session.disable_cpu_ep_fallback = 1` rejects *any* node on the CPU
//! provider, those included, so for graphs with dynamic shapes [`CpuFallback::ShapeOnly`] (the
//! default) checks the recorded placement instead: CPU nodes are allowed only for shape operators,
//! every compute node must be on CUDA.

use std::collections::BTreeMap;
use std::ffi::{c_char, CStr};

use ::ort::session::Session;
use ::ort::sys;
use ::ort::AsPointer;

/// Session config key that makes ONNX Runtime record node placement.
pub(crate) const RECORD_ASSIGNMENT: &str = "session.record_ep_graph_assignment_info";
/// ONNX Runtime's name of its CPU provider.
pub const CPU_EP: &str = "CPUExecutionProvider";

/// Operators that may stay on the CPU provider of a CUDA session: int64 shape arithmetic. The
/// elementwise ones (`Div`, `Mul`, `Add`, `Sub`, ...) appear when ONNX Runtime expands function
/// ops such as `GroupNormalization` (channel / group counts); the CUDA provider has kernels for
/// them in every float type we export, so one of them on the CPU can only be shape arithmetic
/// that ONNX Runtime chose to keep there, never a float computation without a CUDA kernel.
pub const SHAPE_OPS: [&str; 19] = [
    "Shape",
    "Size",
    "Concat",
    "Unsqueeze",
    "Squeeze",
    "Gather",
    "Slice",
    "Cast",
    "Range",
    "Reshape",
    "Div",
    "Mul",
    "Add",
    "Sub",
    "Equal",
    "Where",
    "ConstantOfShape",
    "Expand",
    "ReduceProd",
];

/// What a CUDA session may leave on the CPU provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum CpuFallback {
    /// Only shape operators ([`SHAPE_OPS`]) may run on the CPU; checked after the session is
    /// created from ONNX Runtime's recorded placement (default).
    #[default]
    ShapeOnly,
    /// ONNX Runtime's `session.disable_cpu_ep_fallback = 1`: session creation fails if any node,
    /// shape arithmetic included, is placed on the CPU provider.
    Forbid,
    /// No check (the placement is still recorded and logged).
    Allow,
}

impl std::str::FromStr for CpuFallback {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "shape-only" => Ok(CpuFallback::ShapeOnly),
            "forbid" => Ok(CpuFallback::Forbid),
            "allow" => Ok(CpuFallback::Allow),
            o => Err(format!("unknown CPU fallback policy `{o}` (shape-only, forbid, allow)")),
        }
    }
}

/// One node as placed by ONNX Runtime (after its graph optimizations).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PlacedNode {
    pub name: String,
    pub op_type: String,
    pub domain: String,
}

/// Node placement of one session.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Placement {
    /// Nodes per execution provider.
    pub nodes_per_provider: BTreeMap<String, usize>,
    /// Every node placed on the CPU provider.
    pub cpu_nodes: Vec<PlacedNode>,
}

impl Placement {
    /// CPU nodes that are not shape operators (what [`CpuFallback::ShapeOnly`] rejects).
    pub fn cpu_compute_nodes(&self) -> Vec<&PlacedNode> {
        self.cpu_nodes.iter().filter(|n| !(n.domain.is_empty() && SHAPE_OPS.contains(&n.op_type.as_str()))).collect()
    }
    pub fn total_nodes(&self) -> usize {
        self.nodes_per_provider.values().sum()
    }
}

fn cstr(p: *const c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: ONNX Runtime returns NUL-terminated strings owned by the session.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}

fn check(status: sys::OrtStatusPtr) -> Result<(), ::ort::Error> {
    // SAFETY: `status` was just returned by an ONNX Runtime call; result_from_status releases it.
    unsafe { ::ort::Error::result_from_status(status) }
}

/// Reads the placement ONNX Runtime recorded for `session` (requires [`RECORD_ASSIGNMENT`]).
pub(crate) fn read(session: &Session) -> Result<Placement, ::ort::Error> {
    let api = ::ort::api();
    let mut subgraphs: *const *const sys::OrtEpAssignedSubgraph = std::ptr::null();
    let mut n_sub = 0usize;
    // SAFETY: valid session pointer; out-pointers are written by ONNX Runtime and stay owned by it.
    check(unsafe { (api.Session_GetEpGraphAssignmentInfo)(session.ptr(), &mut subgraphs, &mut n_sub) })?;
    let mut p = Placement::default();
    for i in 0..n_sub {
        // SAFETY: ONNX Runtime returned an array of `n_sub` subgraph pointers.
        let sg = unsafe { *subgraphs.add(i) };
        let mut name: *const c_char = std::ptr::null();
        check(unsafe { (api.EpAssignedSubgraph_GetEpName)(sg, &mut name) })?;
        let ep = cstr(name);
        let mut nodes: *const *const sys::OrtEpAssignedNode = std::ptr::null();
        let mut n_nodes = 0usize;
        check(unsafe { (api.EpAssignedSubgraph_GetNodes)(sg, &mut nodes, &mut n_nodes) })?;
        *p.nodes_per_provider.entry(ep.clone()).or_default() += n_nodes;
        if ep != CPU_EP {
            continue;
        }
        for j in 0..n_nodes {
            // SAFETY: array of `n_nodes` node pointers owned by the session.
            let node = unsafe { *nodes.add(j) };
            let (mut nm, mut op, mut dom): (*const c_char, *const c_char, *const c_char) = (std::ptr::null(), std::ptr::null(), std::ptr::null());
            check(unsafe { (api.EpAssignedNode_GetName)(node, &mut nm) })?;
            check(unsafe { (api.EpAssignedNode_GetOperatorType)(node, &mut op) })?;
            check(unsafe { (api.EpAssignedNode_GetDomain)(node, &mut dom) })?;
            p.cpu_nodes.push(PlacedNode { name: cstr(nm), op_type: cstr(op), domain: cstr(dom) });
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(op: &str, domain: &str) -> PlacedNode {
        PlacedNode { name: format!("/x/{op}_1"), op_type: op.into(), domain: domain.into() }
    }

    #[test]
    fn only_shape_operators_may_stay_on_the_cpu() {
        let p = Placement {
            nodes_per_provider: [("CUDAExecutionProvider".to_string(), 10), (CPU_EP.to_string(), 4)].into_iter().collect(),
            cpu_nodes: vec![node("Concat", ""), node("Shape", ""), node("DequantizeLinear", ""), node("Concat", "com.microsoft")],
        };
        let bad: Vec<_> = p.cpu_compute_nodes().iter().map(|n| (n.op_type.as_str(), n.domain.as_str())).collect();
        assert_eq!(bad, [("DequantizeLinear", ""), ("Concat", "com.microsoft")]);
        assert_eq!(p.total_nodes(), 14);
        assert_eq!("forbid".parse::<CpuFallback>(), Ok(CpuFallback::Forbid));
        assert!("none".parse::<CpuFallback>().is_err());
    }
}
