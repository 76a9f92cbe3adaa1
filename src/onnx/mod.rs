//! ONNX exporter: a FLUX.1 [`Checkpoint`](crate::Checkpoint) plus a [`SlotPlan`](crate::SlotPlan)
//! → `model.onnx` + `model.onnx.data` + `manifest.json`.
//!
//! # Graph contract (opset 23, IR version 10)
//! Inputs, always float32 (cast inside for fp16/bf16 graphs):
//! `hidden_states [batch, img_seq, in_channels]`, `encoder_hidden_states [batch, txt_seq, context_dim]`,
//! `pooled_projections [batch, pooled_dim]`, `timestep [batch]` (σ ∈ [0, 1]; ×1000 inside like
//! diffusers), `guidance [batch]` (guidance variants only; ×1000 inside), `rope_cos`/`rope_sin
//! [joint_seq, head_dim/2]` (see [`crate::flux::rope_tables`]; `joint_seq = txt_seq + img_seq`).
//! Output: `sample [batch, img_seq, out_channels]` float32.
//!
//! # LoRA slots
//! For every slot of the plan (`slots.rs`): initializers `lora.<module>.A [max_rank, in]` and
//! `lora.<module>.B [out, max_rank]` in the precision's float dtype, all zeros, stored inline and
//! also listed as graph inputs ("overridable initializers": ONNX Runtime takes feeds for them per
//! run; TensorRT's parser keeps them as weights named after the initializers, refittable by name).
//! A Linear with a slot computes `Gemm(x, W, b, transB=1) + Gemm(Gemm(x, A, transB=1), B, transB=1)`
//! on activations flattened to 2-D, so base weights are stored byte-identical to the checkpoint
//! (`[out, in]`). Base q/k/v (double blocks, per stream) and `linear1` (single blocks: q, k, v,
//! proj_mlp) are one fused GEMM each ([`crate::flux::FluxConfig::fused_groups`]); the members'
//! deltas are concatenated in member order and added to the fused output (or added to their
//! column ranges when only some members have slots).
//!
//! # Attention
//! Joint attention uses the ONNX `Attention` operator (opset 23) on 4-D `[B, heads, S, D]` Q/K/V
//! over the sequence `[txt; img]`, scale `1/√head_dim`. Chosen over MatMul→Softmax→MatMul because
//! TensorRT's ONNX parser turns it into one `IAttention` layer (countable, fused by the builder)
//! and ONNX Runtime's CPU provider runs it directly.
//!
//! # Numerics
//! Follows diffusers `FluxTransformer2DModel`: QK RMSNorm (eps 1e-6) and RoPE in float32,
//! LayerNorm without affine (eps 1e-6, `LayerNormalization` with constant ones/zeros), GELU tanh
//! (`Gelu approximate="tanh"`), modulation chunks in diffusers order (AdaLayerNormZero: shift,
//! scale, gate, shift, scale, gate; single blocks: shift, scale, gate; `norm_out`: scale, shift),
//! the sinusoidal time/guidance embedding in float32, fp16 graphs clip the residual streams to
//! ±65504 where diffusers does.
//!
//! # FP8
//! `Precision::Fp8`: E4M3 Q/DQ on the transformer blocks' base GEMMs (weights stored as
//! FLOAT8E4M3FN, per-channel or per-tensor scales; activations with calibrated static scales);
//! the exact quantized set, scale rules and float dtypes are documented in [`fp8`].
//!
//! # External data
//! Every checkpoint tensor is an initializer with `data_location = EXTERNAL` in
//! `model.onnx.data`, offsets aligned to 4096, written streaming (see [`weights`]).

mod blocks;
pub mod components;
mod error;
mod export;
pub mod fp8;
pub mod graph;
mod proto;
mod slots;
pub mod weights;

pub use error::OnnxError;
pub use export::{build_calibration_model, build_model, export, finish_graph, write_model, write_model_files, BuiltModel, ExportOptions, ExportReport};

/// ONNX opset of the exported graph.
pub const OPSET: i64 = 23;
/// ONNX IR version of the exported model.
pub const IR_VERSION: i64 = 10;
/// Model file name inside an engine folder.
pub const MODEL_FILE: &str = "model.onnx";
/// External-data file name inside an engine folder.
pub const DATA_FILE: &str = "model.onnx.data";
